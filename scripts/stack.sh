#!/usr/bin/env bash
# The local service stack for dev and tests: Redis, Kafka (KRaft) and Cassandra,
# on ports of their own, bound to 127.0.0.1, with all state under $STACK_HOME
# (default ~/.cache/activity-aggregate-updater/stack).
#
#   scripts/stack.sh [up] [redis|kafka|cassandra ...]   install what is missing, start, wait, provision
#   scripts/stack.sh stop [redis|kafka|cassandra ...]   stop cleanly and wait for the exit
#   scripts/stack.sh status                             one line per service; exit 1 unless all run
#   scripts/stack.sh env                                KEY=value lines pointing the job at the stack
#   scripts/stack.sh reset                              stop all and wipe their data (jars are kept)
#   scripts/stack.sh nodetool <command> [args]          Cassandra's nodetool on the stack (JMX, loopback)
#   scripts/stack.sh prune                              delete every test run's topics and groups (none may run)
#
# `up` is idempotent: a service that already answers on its port is reused, also
# when another clone started it. Kafka and Cassandra run from Maven Central jars
# (no tarball can be downloaded here), fetched once with scripts/stack/pom.xml
# into ~/.m2 and copied to $STACK_HOME/lib/. On success it prints one line per
# service with the time it took; progress and errors go to stderr, stdout is
# kept for `env` and `status`. Logs: $STACK_HOME/logs/; tunables: STACK_*_TIMEOUT,
# STACK_MAX_WAIT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONF="$ROOT/scripts/stack"  # config templates, checked in
# Runtime state, outside any checkout: the ports are the machine's, so the data
# must be too; a service restarted from another clone finds the same data.
STACK="${STACK_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/activity-aggregate-updater/stack}"
LIB="$STACK/lib"

KAFKA_VERSION=3.9.1
CASSANDRA_VERSION=5.0.9
# Any fixed, valid cluster id: storage is formatted once, and the broker refuses
# to start on a log dir formatted with another id.
KAFKA_CLUSTER_ID=MkU3OEVBNTcwNTJENDM2Qk

REDIS_PORT=16379
KAFKA_PORT=19092
KAFKA_CONTROLLER_PORT=19093
CASSANDRA_PORT=19042
CASSANDRA_STORAGE_PORT=17000
CASSANDRA_JMX_PORT=17199

# How long each service may take to answer (seconds). Cassandra is the slow one
# (5-11 s here on 2 cores), far more when the machine is busy with a build.
REDIS_TIMEOUT=${STACK_REDIS_TIMEOUT:-30}
KAFKA_TIMEOUT=${STACK_KAFKA_TIMEOUT:-120}
CASSANDRA_TIMEOUT=${STACK_CASSANDRA_TIMEOUT:-240}
STOP_TIMEOUT=${STACK_STOP_TIMEOUT:-90}

SERVICES=(redis kafka cassandra)

log() { echo "stack: $*" >&2; }
die() { echo "stack: error: $*" >&2; exit 1; }

# Seconds since $1 (an $EPOCHREALTIME), one decimal.
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

# ---------------------------------------------------------------------------
# Installing what is missing
# ---------------------------------------------------------------------------

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

APT_UPDATED=0
apt_install() {
  log "installing $* (apt-get)"
  local out="$STACK/logs/apt.log"
  mkdir -p "$STACK/logs"
  # A fresh machine has no package lists: update once, then install.
  if [ "$APT_UPDATED" -eq 0 ] && ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
    as_root apt-get update -q >>"$out" 2>&1 || { tail -n 20 "$out" >&2; die "apt-get update failed"; }
    APT_UPDATED=1
  fi
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >>"$out" 2>&1; then
    # The lists may be stale (a package version gone from the mirror): update and retry.
    as_root apt-get update -q >>"$out" 2>&1 || true
    APT_UPDATED=1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >>"$out" 2>&1 ||
      { tail -n 20 "$out" >&2; die "apt-get install $* failed (log: $out)"; }
  fi
}

need_java() {
  local v
  if command -v java >/dev/null 2>&1; then
    v="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
    [ "${v:-0}" -ge 17 ] && return 0
  fi
  apt_install openjdk-17-jre-headless
}

need_mvn() { command -v mvn >/dev/null 2>&1 || apt_install maven; }

need_redis() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
  # Debian's package would also start a system Redis on 6379 where an init
  # system runs; ours is a separate process with its own config.
  apt_install redis-server redis-tools
}

# Copies the jars of one profile of scripts/stack/pom.xml to $STACK/lib/<name>-<version>.
# Maven downloads into ~/.m2 only what it lacks; the copy is skipped once done.
fetch_jars() {
  local profile="$1" version="$2" dest="$LIB/$1-$2"
  [ -f "$dest/.complete" ] && return 0
  need_java
  need_mvn
  log "fetching $profile $version jars (Maven Central, cached in ~/.m2)"
  local tmp="$dest.tmp.$$" out="$STACK/logs/mvn-$profile.log"
  rm -rf "$tmp"
  mkdir -p "$tmp" "$STACK/logs"
  if ! mvn -B -q -f "$CONF/pom.xml" -P "$profile" \
    -Dkafka.version="$KAFKA_VERSION" -Dcassandra.version="$CASSANDRA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
    </dev/null >"$out" 2>&1; then
    tail -n 30 "$out" >&2
    rm -rf "$tmp"
    die "mvn could not fetch the $profile jars (log: $out)"
  fi
  touch "$tmp/.complete"
  rm -rf "$dest"
  mv "$tmp" "$dest"
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

pidfile() { echo "$STACK/run/$1.pid"; }

# A word of the command line that tells the service's process apart.
marker() {
  case "$1" in
    redis) echo "redis-server 127.0.0.1:$REDIS_PORT" ;;
    kafka) echo "kafka.Kafka" ;;
    cassandra) echo "org.apache.cassandra.service.CassandraDaemon" ;;
  esac
}

main_port() {
  case "$1" in
    redis) echo "$REDIS_PORT" ;;
    kafka) echo "$KAFKA_PORT" ;;
    cassandra) echo "$CASSANDRA_PORT" ;;
  esac
}

is_service_pid() {
  local pid="$1" svc="$2"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$(marker "$svc")"
}

# The pid of the process listening on 127.0.0.1:$1, if any.
listener_pid() {
  ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1
}

# The service's pid: from our pid file, else from whoever listens on its port
# when that is the same kind of process (started from another clone, say).
service_pid() {
  local svc="$1" pid=""
  [ -f "$(pidfile "$svc")" ] && pid="$(cat "$(pidfile "$svc")")"
  if is_service_pid "$pid" "$svc"; then echo "$pid"; return 0; fi
  pid="$(listener_pid "$(main_port "$svc")")"
  if is_service_pid "$pid" "$svc"; then echo "$pid"; return 0; fi
  return 1
}

# True while the process runs. A zombie counts as gone: the init process of some
# machines (this VM's, for one) reaps orphans only every second or so.
alive() {
  local state
  state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
  [[ "$state" != Z* ]]
}

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Starts "$@" detached in its own session (so it outlives this script and the
# caller's process group), stdout/stderr to $2, pid to $1.
spawn() {
  local pid_file="$1" out="$2"
  shift 2
  # The inner shell writes its own pid, then becomes the service by exec.
  # shellcheck disable=SC2016 # expanded by the inner shell
  # 9>&-: the daemon must not inherit (and so hold) the lock of take_lock.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pid_file" "$@" </dev/null >"$out" 2>&1 9>&- &
  local tries=50
  while [ "$tries" -gt 0 ]; do
    [ -s "$pid_file" ] && return 0
    sleep 0.1
    tries=$((tries - 1))
  done
  die "could not start $1"
}

# Fails early, with a clear message, when a port the service needs is taken by
# someone else (the service itself is not running: its main port is closed).
ports_free() {
  local svc="$1" port
  shift
  for port in "$@"; do
    port_open "$port" && die "$svc: port 127.0.0.1:$port is already in use by another process"
  done
  return 0
}

log_tail() {
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 25 "$f" >&2
  done
}

# Waits for a service: $1 name, $2 timeout, $3 check command, then the log files
# to show when it dies or times out. The timeout counts from the last line the
# first log file gained: a broker loading thousands of partitions, or a node
# replaying its commit log, is slow but not stuck. STACK_MAX_WAIT (default 900
# seconds) bounds the whole wait.
wait_for() {
  local svc="$1" limit="$2" check="$3"
  shift 3
  local max="${STACK_MAX_WAIT:-900}"
  local deadline=$((SECONDS + limit)) cap=$((SECONDS + max))
  local seen="" now
  until $check; do
    if ! service_pid "$svc" >/dev/null; then
      log_tail "$@"
      die "$svc exited during startup"
    fi
    now="$(stat -c %s.%Y "$1" 2>/dev/null || true)"
    if [ "$now" != "$seen" ]; then
      seen="$now"
      deadline=$((SECONDS + limit))
    fi
    if [ "$SECONDS" -ge "$deadline" ] || [ "$SECONDS" -ge "$cap" ]; then
      log_tail "$@"
      die "$svc did not answer: no new log line for ${limit}s, or ${max}s in all (left running as pid $(service_pid "$svc"); logs in $STACK/logs)"
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------

redis_answers() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

start_redis() {
  need_redis
  if redis_answers; then echo reused; return 0; fi
  local dir="$STACK/redis"
  mkdir -p "$dir" "$STACK/logs" "$STACK/run"
  # redis-server daemonizes itself and writes its own pid file.
  rm -f "$(pidfile redis)"
  redis-server "$CONF/redis.conf" --dir "$dir" --pidfile "$(pidfile redis)" \
    --logfile "$STACK/logs/redis.log" </dev/null >/dev/null 9>&- ||
    { log_tail "$STACK/logs/redis.log"; die "redis-server failed to start"; }
  echo started
}

wait_redis() { wait_for redis "$REDIS_TIMEOUT" redis_answers "$STACK/logs/redis.log"; }

# ---------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------

kafka_cp() { echo "$LIB/kafka-$KAFKA_VERSION/*"; }

# JVM options from a checked-in file: the lines that start with '-'.
jvm_options() { grep -E '^-' "$1"; }

start_kafka() {
  if service_pid kafka >/dev/null || port_open "$KAFKA_PORT"; then
    # Running (or still starting): wait_kafka tells whether it answers.
    echo reused
    return 0
  fi
  ports_free kafka "$KAFKA_CONTROLLER_PORT"
  fetch_jars kafka "$KAFKA_VERSION"
  need_java
  local dir="$STACK/kafka" logs="$STACK/logs/kafka"
  mkdir -p "$dir/data" "$logs" "$STACK/run"
  # The checked-in properties plus this checkout's data dir.
  { cat "$CONF/kafka-server.properties"; echo "log.dirs=$dir/data"; } >"$dir/server.properties"
  local -a opts
  mapfile -t opts < <(jvm_options "$CONF/kafka-jvm.options")
  opts+=("-Dlog4j.configuration=file:$CONF/kafka-log4j.properties" "-Dkafka.logs.dir=$logs")
  if [ ! -f "$dir/data/meta.properties" ]; then
    # KRaft needs its storage formatted once, with the cluster id.
    java -Xmx256m -cp "$(kafka_cp)" "-Dlog4j.configuration=file:$CONF/kafka-log4j.properties" \
      "-Dkafka.logs.dir=$logs" kafka.tools.StorageTool format \
      --cluster-id "$KAFKA_CLUSTER_ID" --config "$dir/server.properties" --ignore-formatted \
      </dev/null >"$logs/format.log" 2>&1 ||
      { log_tail "$logs/format.log"; die "kafka storage format failed"; }
  fi
  spawn "$(pidfile kafka)" "$logs/stdout.log" \
    java "${opts[@]}" -cp "$(kafka_cp)" kafka.Kafka "$dir/server.properties"
  echo started
}

wait_kafka() {
  local logs="$STACK/logs/kafka"
  # The port opens before the broker serves requests; provision.ts then waits
  # for a metadata request to succeed.
  wait_for kafka "$KAFKA_TIMEOUT" "port_open $KAFKA_PORT" "$logs/server.log" "$logs/stdout.log"
  # Someone else's process on our port gets a short try, not the full timeout.
  local limit="$KAFKA_TIMEOUT"
  service_pid kafka >/dev/null || limit=10
  provision_cmd --only=kafka --wait-only --timeout="$limit" ||
    { log_tail "$logs/server.log" "$logs/stdout.log"; die "kafka did not answer a metadata request"; }
}

# ---------------------------------------------------------------------------
# Cassandra
# ---------------------------------------------------------------------------

cassandra_lib() { echo "$LIB/cassandra-$CASSANDRA_VERSION"; }

start_cassandra() {
  if service_pid cassandra >/dev/null || port_open "$CASSANDRA_PORT"; then
    echo reused
    return 0
  fi
  ports_free cassandra "$CASSANDRA_STORAGE_PORT" "$CASSANDRA_JMX_PORT"
  fetch_jars cassandra "$CASSANDRA_VERSION"
  need_java
  local lib dir="$STACK/cassandra" logs="$STACK/logs/cassandra" jamm
  lib="$(cassandra_lib)"
  mkdir -p "$dir/data" "$dir/triggers" "$logs" "$STACK/run"
  # Cassandra measures memtable sizes with the jamm agent from its own deps.
  jamm="$(find "$lib" -maxdepth 1 -name 'jamm-*.jar' | head -n1)"
  [ -n "$jamm" ] || die "no jamm jar in $lib"
  local -a opts
  mapfile -t opts < <(jvm_options "$CONF/cassandra-jvm.options")
  opts+=(
    "-javaagent:$jamm"
    "-Dcassandra.config=file://$CONF/cassandra.yaml"
    # data/, commitlog/, hints/, saved_caches/ go under here (cassandra.yaml lists none).
    "-Dcassandra.storagedir=$dir/data"
    "-Dcassandra.logdir=$logs"
    "-Dcassandra.triggers_dir=$dir/triggers"
    "-Dlogback.configurationFile=file://$CONF/logback.xml"
    "-Dcassandra.jmx.local.port=$CASSANDRA_JMX_PORT"
    # Stay attached to stdout: spawn() detaches and redirects it.
    "-Dcassandra-foreground=yes"
    "-XX:HeapDumpPath=$logs"
    "-XX:ErrorFile=$logs/hs_err_%p.log"
  )
  spawn "$(pidfile cassandra)" "$logs/stdout.log" \
    java "${opts[@]}" -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon
  echo started
}

# Cassandra's nodetool from the same jars, over the loopback JMX port.
cmd_nodetool() {
  need_java
  [ -d "$(cassandra_lib)" ] || die "no Cassandra jars in $(cassandra_lib): run scripts/stack.sh up first"
  local -a opens
  mapfile -t opens < <(grep -E '^--add-' "$CONF/cassandra-jvm.options")
  java "${opens[@]}" "-Dlogback.configurationFile=file://$CONF/logback-tools.xml" \
    -cp "$(cassandra_lib)/*" org.apache.cassandra.tools.NodeTool \
    -h 127.0.0.1 -p "$CASSANDRA_JMX_PORT" "$@"
}

wait_cassandra() {
  local logs="$STACK/logs/cassandra"
  # The native (CQL) port opens last in Cassandra's startup, so an open port is
  # a node ready for queries; provision.ts then runs a real query.
  wait_for cassandra "$CASSANDRA_TIMEOUT" "port_open $CASSANDRA_PORT" \
    "$logs/system.log" "$logs/stdout.log"
}

# ---------------------------------------------------------------------------
# Provisioning (scripts/provision.ts: topics, schema, protocol-level waits)
# ---------------------------------------------------------------------------

provision_cmd() {
  KAFKA_BROKER_SERVERS="127.0.0.1:$KAFKA_PORT" LMS_CASSANDRA_HOST=127.0.0.1 \
    LMS_CASSANDRA_PORT="$CASSANDRA_PORT" \
    "$ROOT/scripts/deno.sh" run --allow-net --allow-read --allow-env \
    "$ROOT/scripts/provision.ts" "$@" </dev/null
}

# ---------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------

# Picks services from the arguments: none means all.
select_services() {
  local s
  if [ "$#" -eq 0 ]; then echo "${SERVICES[@]}"; return 0; fi
  for s in "$@"; do
    case "$s" in redis | kafka | cassandra) ;; *) die "unknown service: $s (redis, kafka, cassandra)" ;; esac
  done
  # Always in the stack's order, whatever order they were given in.
  for s in "${SERVICES[@]}"; do
    case " $* " in *" $s "*) echo -n "$s " ;; esac
  done
  echo
}

cmd_up() {
  local -a svcs
  read -ra svcs <<<"$(select_services "$@")"
  local t0="$EPOCHREALTIME" svc
  declare -A how
  mkdir -p "$STACK/logs" "$STACK/run"
  # Start everything first, then wait for each: the JVMs boot side by side.
  # Redis takes no time; Cassandra, the slowest, goes before Kafka so that it
  # boots while Kafka's jars are fetched on a first run.
  for svc in redis cassandra kafka; do
    case " ${svcs[*]} " in *" $svc "*) how[$svc]="$("start_$svc")" ;; esac
  done
  local -a provision_for=()
  for svc in redis kafka cassandra; do
    case " ${svcs[*]} " in *" $svc "*) ;; *) continue ;; esac
    "wait_$svc"
    log "$svc: ${how[$svc]} and answering on 127.0.0.1:$(main_port "$svc") after $(elapsed "$t0")"
    [ "$svc" = redis ] || provision_for+=("$svc")
  done
  if [ "${#provision_for[@]}" -gt 0 ]; then
    local t1="$EPOCHREALTIME" only
    only="$(IFS=,; echo "${provision_for[*]}")"
    provision_cmd --only="$only" --timeout="$KAFKA_TIMEOUT" || die "provisioning failed"
    log "provision ($only): done in $(elapsed "$t1")"
  fi
}

stop_service() {
  local svc="$1" pid t0="$EPOCHREALTIME"
  if ! pid="$(service_pid "$svc")"; then
    rm -f "$(pidfile "$svc")"
    log "$svc: not running"
    return 0
  fi
  # SIGTERM is a clean stop for all three: Redis exits, Kafka does a controlled
  # shutdown, Cassandra drains (flushes memtables) in its shutdown hook.
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while alive "$pid"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$svc: still running ${STOP_TIMEOUT}s after SIGTERM, killing pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.2
  done
  rm -f "$(pidfile "$svc")"
  log "$svc: stopped (pid $pid) in $(elapsed "$t0")"
}

cmd_stop() {
  local -a svcs
  read -ra svcs <<<"$(select_services "$@")"
  local svc pids=()
  # In parallel: Cassandra's drain and Kafka's controlled shutdown each take seconds.
  for svc in "${svcs[@]}"; do
    stop_service "$svc" &
    pids+=("$!")
  done
  local rc=0 p
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return "$rc"
}

cmd_status() {
  local svc pid rc=0 state
  for svc in "${SERVICES[@]}"; do
    if pid="$(service_pid "$svc")"; then
      if port_open "$(main_port "$svc")"; then state="listening"; else state="starting"; rc=1; fi
      echo "$svc: running (pid $pid), $state on 127.0.0.1:$(main_port "$svc")"
    elif port_open "$(main_port "$svc")"; then
      echo "$svc: port 127.0.0.1:$(main_port "$svc") is taken by another process"
      rc=1
    else
      echo "$svc: stopped"
      rc=1
    fi
  done
  return "$rc"
}

cmd_env() {
  cat <<EOF
KAFKA_BROKER_SERVERS=127.0.0.1:$KAFKA_PORT
LMS_CASSANDRA_HOST=127.0.0.1
LMS_CASSANDRA_PORT=$CASSANDRA_PORT
REDIS_HOST=127.0.0.1
REDIS_PORT=$REDIS_PORT
DEDUP_REDIS_HOST=127.0.0.1
DEDUP_REDIS_PORT=$REDIS_PORT
EOF
}

cmd_reset() {
  cmd_stop
  # Data, logs and pid files go; the copied jars stay (a reset is no re-download).
  rm -rf "$STACK/redis" "$STACK/kafka" "$STACK/cassandra" "$STACK/logs"
  rm -f "$STACK"/run/*.pid
  log "reset: data wiped (jars kept in $LIB)"
}

# One up/stop/reset at a time (parallel test runners may all call `up`): the
# second waits, then finds the services running and reuses them.
take_lock() {
  mkdir -p "$STACK/run"
  exec 9>"$STACK/run/stack.lock"
  flock -w 600 9 || die "another scripts/stack.sh held the lock for 10 minutes"
}

main() {
  local cmd="${1:-up}"
  [ "$#" -gt 0 ] && shift
  case "$cmd" in
    up | start | stop | down | reset | redis | kafka | cassandra) take_lock ;;
  esac
  case "$cmd" in
    up | start) cmd_up "$@" ;;
    stop | down) cmd_stop "$@" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    reset) cmd_reset ;;
    nodetool) cmd_nodetool "$@" ;;
    prune) provision_cmd --only=kafka --wait-only --prune-scratch --timeout=10 ;;
    redis | kafka | cassandra) cmd_up "$cmd" "$@" ;;
    -h | --help | help) sed -n '2,/^set -e/{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command: $cmd (up, stop, status, env, reset, nodetool, prune)" ;;
  esac
}

main "$@"
