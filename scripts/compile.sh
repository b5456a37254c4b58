#!/usr/bin/env bash
# Builds the job into one executable, dist/activity-aggregate-updater, with
# `deno compile` and exactly the permissions the job needs (no --allow-all):
#
#   --allow-net    Kafka, Cassandra, Redis, the search service, the operations
#                  endpoint, and the `healthcheck` command's request to it
#   --allow-env    every setting is an environment variable
#   --allow-read   the dotenv file of --env-file / ENV_FILE, and `replay FILE`
#
# Not --allow-sys: nothing the job runs asks for system information
# (tests/integration/ops_test.ts runs the job with exactly these flags).
#
#   scripts/compile.sh [--target TRIPLE] [--output PATH]
#   scripts/compile.sh --print-permissions     the flags above, one per line
#   scripts/compile.sh --print-v8-flags        the V8 flags below, comma-separated
#   scripts/compile.sh --print-malloc-env      the allocator settings below, one per line
#
# V8 flags (`--v8-flags`, embedded in the binary; `deno task start` passes
# the same): a young generation of at most 2 x 4 MiB instead of V8's 2 x 32
# MiB, every collection on the main thread (`--single-threaded-gc`), and
# `gc()` exposed, which the job calls between windows once more than 24 MiB
# of heap are in use and 16 MiB more than after its last call (lib/heap.ts),
# so the heap and the buffers only its collections free stay flat under a
# backlog: peak RSS ~135–150 instead of ~220–250 MiB. With V8's concurrent
# marking and sweeping on worker threads, a 50,000-message drain peaked
# 15–17 % above a 10,000-message one; on the main thread 9 %, at the same
# CPU per unit (on 2 cores the workers had no idle core to use). (V8's
# optimize-for-size mode held memory too, but at nearly twice the CPU per
# unit.) See "Lean and fast" in bench/README.md.
#
# Allocator settings (glibc reads them from the environment at start, so a
# binary cannot carry them: the image sets them with ENV and `deno task start`
# in front of the command; run the bare binary with them too): buffers of 16
# KiB and more (socket reads, fetch responses, produce requests, the drivers'
# frames) are mapped and unmapped instead of fragmenting the heap, free
# memory at its top is returned to the system above 64 KiB and never padded,
# and two malloc arenas serve every thread instead of up to 16. Without them
# the heap's free but fragmented pages grow with the length of a drain: from
# 32 KiB, glibc's heap still grew to ~32 MiB over the first 70 s of a drain
# (then held); from 16 KiB it holds at ~13 MiB.
#
# `deno compile` embeds the program in denort, Deno's runtime without the
# tooling, of the same version as the deno running it. DENORT_BIN, when set,
# names a local denort binary and deno uses it; when it is not set, deno
# downloads denort from Deno's release server, which fails on a machine that
# cannot reach it (this script then says so).
set -euo pipefail

PERMISSIONS=(--allow-net --allow-env --allow-read)
V8_FLAGS="--max-semi-space-size=4,--single-threaded-gc,--expose-gc"
MALLOC_ENV=(MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=16384 MALLOC_TRIM_THRESHOLD_=65536 MALLOC_TOP_PAD_=0)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output="$root/dist/activity-aggregate-updater"
target=()

while [ "$#" -gt 0 ]; do
  case "$1" in
    --print-permissions)
      printf '%s\n' "${PERMISSIONS[@]}"
      exit 0
      ;;
    --print-v8-flags)
      echo "$V8_FLAGS"
      exit 0
      ;;
    --print-malloc-env)
      printf '%s\n' "${MALLOC_ENV[@]}"
      exit 0
      ;;
    --output) output="${2:?--output needs a path}"; shift 2 ;;
    --target) target=(--target "${2:?--target needs a target triple}"); shift 2 ;;
    -h | --help) sed -n '2,38p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compile: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

deno=("$root/scripts/deno.sh")

if [ -n "${DENORT_BIN:-}" ]; then
  [ -f "$DENORT_BIN" ] || { echo "compile: DENORT_BIN=$DENORT_BIN: no such file" >&2; exit 1; }
  # deno reads DENORT_BIN from the environment itself; exported so it surely does.
  export DENORT_BIN
fi

# Deno 2.9 crashes while embedding a file of a few MB ("tokio-runtime-worker has
# overflowed its stack", denoland/deno#36746): bintrees, a prom-client
# dependency, ships a 2 MB test fixture. No package's test directory is needed
# at run time, so every npm package of the lock file has its test directories
# left out.
excludes=()
npm_cache="$("${deno[@]}" info --json | sed -n 's/^ *"npmCache": *"\(.*\)",\{0,1\}$/\1/p')"
if [ -n "$npm_cache" ]; then
  # Lock file entries look like `"bintrees@1.0.2": {` or `"@scope/name@1.2.3": {`.
  while IFS= read -r package; do
    name="${package%@*}"
    version="${package##*@}"
    for sub in test tests; do
      dir="$npm_cache/registry.npmjs.org/$name/$version/$sub"
      if [ -d "$dir" ]; then excludes+=(--exclude "$dir"); fi
    done
  done < <(sed -n 's/^    "\(@\{0,1\}[^"@]*@[0-9][^"]*\)": {$/\1/p' "$root/deno.lock")
fi

mkdir -p "$(dirname "$output")"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cd "$root"
if "${deno[@]}" compile --frozen "${PERMISSIONS[@]}" --v8-flags="$V8_FLAGS" "${excludes[@]}" "${target[@]}" \
  --output "$output" main.ts 2>&1 | tee "$log"; then
  echo "compile: built $output"
  exit 0
fi

if [ -z "${DENORT_BIN:-}" ] && grep -qiE 'denort|error sending request|dns error|download' "$log"; then
  cat >&2 <<EOF

compile: deno compile could not download denort, the runtime binary it embeds
the job in (see the error above): this machine cannot reach Deno's release
server. Download denort-<target>.zip of the same Deno version elsewhere, unzip
it, and run again with DENORT_BIN naming the binary:

  DENORT_BIN=/path/to/denort scripts/compile.sh
EOF
fi
echo "compile: failed" >&2
exit 1
