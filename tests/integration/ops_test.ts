/**
 * Operating the job (issue 4): metrics and health, outages of Redis and
 * Cassandra, a graceful stop in mid-stream, the command line and logs. The
 * job runs as a process against the local stack (`scripts/stack.sh`); the
 * outage tests stop and start one of its services for a few seconds.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { unitChecksum } from "../../lib/checksum.ts";
import type { EnrolmentKey } from "../../lib/event.ts";
import { VERSION } from "../../lib/version.ts";
import { EXAMPLE_CONTENTS, EXAMPLE_ROWS, exampleSets } from "../support/fixtures.ts";
import { enrolmentUpdate } from "../../lib/event.ts";
import { freePort, JobProcess, metricValue, Stack, unique, waitFor } from "../support/stack.ts";

// KafkaJS and the Cassandra driver keep sockets and timers that outlive a test's
// last await; each test closes every client it opened in its `finally`.
const opts = { sanitizeOps: false, sanitizeResources: false };

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Runs a script of the repository with bash; throws with its output when it fails. */
async function script(path: string, ...args: string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command("bash", {
    args: [path, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  if (code !== 0) throw new Error(`bash ${path} ${args.join(" ")} exited ${code}:\n${out}`);
  return out;
}

/**
 * Stops or starts one service of the stack; resolves to the milliseconds it
 * took. Other engineers share the stack: every stop is undone in a `finally`.
 */
async function stackService(action: "stop" | "up", service: string): Promise<number> {
  const started = performance.now();
  await script("scripts/stack.sh", action, service);
  return Math.round(performance.now() - started);
}

/**
 * Stops one service of the stack, runs `during`, and starts the service
 * again, also when `during` fails; resolves to the milliseconds each took.
 */
async function duringOutage(
  service: string,
  during: () => Promise<void>,
): Promise<{ stopMs: number; upMs: number }> {
  const stopMs = await stackService("stop", service);
  let failure: unknown = null;
  try {
    await during();
  } catch (error) {
    failure = error;
  }
  const upMs = await stackService("up", service);
  if (failure) throw failure;
  return { stopMs, upMs };
}

/** Waits for the job's warning that `stage` failed and is being retried. */
function stageWarning(job: JobProcess, stage: string): Promise<LogLine> {
  return waitFor(
    `a warn line naming ${stage}`,
    () =>
      logLines(job.log).find((l) =>
        l.level === "WARN" && l.properties.stage === stage &&
        l.logger === "activity-aggregate-updater.job"
      ),
  );
}

/** One JSON log line of the job (LogTape's JSON Lines format). */
interface LogLine {
  level: string;
  message: string;
  logger: string;
  properties: Record<string, unknown>;
}

/** The job's output lines; throws naming a line that is not a JSON log line. */
function logLines(output: string): LogLine[] {
  return output.split("\n").filter((l) => l.trim() !== "").map((line) => {
    try {
      const parsed = JSON.parse(line);
      assert.equal(typeof parsed.level, "string");
      return parsed as LogLine;
    } catch {
      throw new Error(`not a JSON log line: ${line}`);
    }
  });
}

/** Asserts that `output` has `line` as one of its lines. */
function assertLine(output: string, line: string): void {
  assert.ok(output.split("\n").includes(line), `no line ${JSON.stringify(line)} in:\n${output}`);
}

/** Whether the process has exited by now (without waiting for it). */
async function hasExited(job: { exited: Promise<unknown> }): Promise<boolean> {
  const pending = Symbol();
  return (await Promise.race([job.exited, Promise.resolve(pending)])) !== pending;
}

/** A Prometheus sample with labels, e.g. `name{stage="x"}`, or undefined. */
function labelledValue(text: string, name: string, labels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.split(" ").at(-1));
}

const completed = (contentIds: string[]) =>
  contentIds.map((contentId) => ({ contentId, status: 2 }));

/** Enrolments of a new course: each user's key, the course's structure seeded, status 1. */
async function seedCourse(stack: Stack, users: number) {
  const courseId = unique("C");
  const batchId = unique("B");
  await stack.seedSets(exampleSets(courseId));
  const keys = Array.from({ length: users }, () => ({ userId: unique("U"), courseId, batchId }));
  await Promise.all(keys.map((key) => stack.seedEnrolment(key, 1)));
  return { courseId, keys };
}

/** The events sent during an outage: two learners complete the course, two start it. */
function outageEvents(keys: EnrolmentKey[]) {
  const [done1, done2, partial1, partial2] = keys;
  return [
    enrolmentUpdate(done1, completed(["R1", "R2", "R3"])),
    enrolmentUpdate(done2, completed(["R1", "R2", "R3"])),
    enrolmentUpdate(partial1, completed(["R1"])),
    enrolmentUpdate(partial2, completed(["R1"])),
  ];
}

/** Waits until the events of {@linkcode outageEvents} are applied; asserts each enrolment and checksum. */
async function assertOutageApplied(
  stack: Stack,
  keys: EnrolmentKey[],
  committed: number,
): Promise<void> {
  const [done1, done2, partial1, partial2] = keys;
  await waitFor("every enrolment of the outage applied", async () => {
    const rows = await Promise.all(keys.map((k) => stack.enrolment(k)));
    return rows[0]?.status === 2 && rows[1]?.status === 2 &&
      rows[2]?.progress === 1 && rows[3]?.progress === 1;
  }, 30_000);
  // Completions are written first and checksums last: the window is whole once committed.
  await waitFor(
    "the outage's events committed",
    async () => (await stack.committedInput()) === committed,
    30_000,
  );
  for (const key of [done1, done2]) {
    assert.deepEqual((await stack.enrolment(key))?.contentStatus, { R1: 2, R2: 2, R3: 2 });
  }
  for (const key of [partial1, partial2]) {
    const row = await stack.enrolment(key);
    assert.deepEqual({ status: row?.status, contentStatus: row?.contentStatus }, {
      status: 1,
      contentStatus: { R1: 2 },
    });
  }
  const units = [
    ...[done1, done2].flatMap((k) => ["R1", "R2", "R3"].map((c) => ({ ...k, contentId: c }))),
    ...[partial1, partial2].map((k) => ({ ...k, contentId: "R1" })),
  ];
  for (const unit of units) assert.ok(await stack.hasChecksum(unitChecksum(unit)), unit.userId);
}

Deno.test(
  "/metrics counts a window; process memory, open window; /healthz; a window log line; healthcheck",
  opts,
  async () => {
    // One partition and a window of exactly what is sent (four units, and one
    // each for the two messages without units): one window, known counts.
    const stack = await Stack.open({ partitions: 1 });
    const env = stack.envForJob({
      THRESHOLD_BATCH_READ_SIZE: "6",
      THRESHOLD_BATCH_READ_INTERVAL: "3s",
    });
    const job = new JobProcess(env);
    let status: Deno.CommandStatus;
    try {
      const courseId = unique("C");
      const a = { userId: unique("U"), courseId, batchId: unique("B") };
      const b = { ...a, userId: unique("U") };
      await stack.seedSets(exampleSets(courseId));
      for (const row of EXAMPLE_ROWS) await stack.seedConsumption(a, row);
      await stack.seedEnrolment(a, 1);
      await stack.seedEnrolment(b, 1);
      await job.ready();

      const eventB = enrolmentUpdate(b, completed(["R1"]));
      await stack.produce([
        "not json", // failed
        { eid: "BE_JOB_REQUEST", edata: { action: "something-else", ...a, contents: [] } }, // skipped
        enrolmentUpdate(a, EXAMPLE_CONTENTS), // R2, R3: completes SPEC §12's enrolment
        eventB, // R1: in progress
        eventB, // the same unit again: a duplicate within the window
      ]);
      await waitFor("the window to be committed", async () => (await stack.committedInput()) === 5);

      const text = await job.metrics();
      const value = (name: string) => metricValue(text, name);
      assert.deepEqual({
        total: value("activity_agg_total_events_total"),
        skipped: value("activity_agg_skipped_events_total"),
        batchEnrolmentUpdate: value("activity_agg_batch_enrolment_update_events_total"),
        failed: value("activity_agg_failed_events_total"),
        duplicates: value("activity_agg_duplicate_units_total"),
        processed: value("activity_agg_processed_enrolments_total"),
        completions: value("activity_agg_enrolment_completions_total"),
        certificates: value("activity_agg_cert_issue_events_total"),
        retired: value("activity_agg_retired_collection_events_total"),
        // Two enrolments: consumption rows and enrolment row each.
        dbReads: value("activity_agg_db_reads_total"),
        // Counters R2, R3 (a) and R1 (b); aggregates course+U1+U2 (a) and course+U1 (b);
        // one enrolment row each.
        dbWrites: value("activity_agg_db_writes_total"),
        // Course leaf+optional; ancestors of R1, R2, R3; leaf+optional of U1 and U2.
        cacheReads: value("activity_agg_cache_reads_total"),
        // Every set asked for exists but optional-node sets, whose absence is normal.
        cacheMisses: value("activity_agg_cache_misses_total"),
        windows: value("activity_agg_window_units_count"),
        windowUnits: value("activity_agg_window_units_sum"),
        latencies: value("activity_agg_end_to_end_latency_seconds_count"),
        retries: value("activity_agg_retries_total"),
      }, {
        total: 5,
        skipped: 1,
        batchEnrolmentUpdate: 3,
        failed: 1,
        duplicates: 1,
        processed: 2,
        completions: 1,
        certificates: 1,
        retired: 0,
        dbReads: 4,
        dbWrites: 10,
        cacheReads: 9,
        cacheMisses: 0,
        windows: 1,
        windowUnits: 4,
        latencies: 5,
        retries: 0,
      });
      assert.equal(value("activity_agg_window_processing_seconds_count"), 1);
      // Process memory under the job's own permissions (prom-client's reader would say 0).
      assert.ok(value("process_resident_memory_bytes") > 20_000_000, "resident memory");
      assert.ok(value("nodejs_heap_size_used_bytes") > 0, "heap");
      assert.ok(text.includes("\nactivity_agg_open_window_units 0\n"), "no open window");
      assert.ok(text.includes("\nactivity_agg_open_window_age_seconds 0\n"), "no open window age");
      assert.equal((await stack.enrolment(a))?.status, 2);
      assert.equal((await stack.enrolment(b))?.progress, 1);

      // One window line with the window's counts and its duration.
      const windows = logLines(job.log).filter((l) => l.message === "window done");
      assert.equal(windows.length, 1, job.log);
      assert.equal(windows[0].level, "INFO");
      assert.equal(windows[0].logger, "activity-aggregate-updater.runner");
      const props = windows[0].properties;
      assert.deepEqual(
        {
          messages: props.messages,
          units: props.units,
          duplicates: props.duplicates,
          enrolments: props.enrolments,
          processed: props.processed,
          completions: props.completions,
          failedMessages: props.failedMessages,
          skippedMessages: props.skippedMessages,
        },
        {
          messages: 5,
          units: 4,
          duplicates: 1,
          enrolments: 2,
          processed: 2,
          completions: 1,
          failedMessages: 1,
          skippedMessages: 1,
        },
      );
      assert.equal(typeof props.durationMs, "number");
      assert.ok((props.durationMs as number) >= 0 && (props.durationMs as number) < 10_000);

      const healthz = await fetch(`${job.opsUrl}/healthz`);
      assert.equal(healthz.status, 200);
      assert.deepEqual(await healthz.json(), { alive: true });

      // The `healthcheck` command (the container's HEALTHCHECK), with the same permissions.
      const healthy = new JobProcess(env, ["healthcheck"]);
      assert.equal((await healthy.exited).code, 0, healthy.log);
      assert.match(healthy.log, /^healthy: http:\/\/127\.0\.0\.1:\d+\/healthz answered 200/m);
      const nobody = new JobProcess({ ...env, HTTP_PORT: String(freePort()) }, ["healthcheck"]);
      assert.equal((await nobody.exited).code, 1, nobody.log);
      assert.match(nobody.log, /^unhealthy: http:\/\/127\.0\.0\.1:\d+\/healthz: /m);
    } finally {
      status = await job.stop();
      await stack.close();
    }
    assert.equal(status.code, 0, job.log);
  },
);

Deno.test(
  "Redis stopped: /readyz 503 once a window needs it, a warn line; back up: resumes, nothing lost",
  opts,
  async () => {
    const stack = await Stack.open();
    // The stack's own clients reconnect by themselves; without a listener ioredis
    // prints every refused connection of the outage.
    for (const client of [stack.relations, stack.dedup]) client.on("error", () => {});
    const job = new JobProcess(stack.envForJob());
    let status: Deno.CommandStatus;
    try {
      const { keys: [warm, ...keys] } = await seedCourse(stack, 5);
      const certs = await stack.collect(stack.topics.cert);
      await job.ready();
      // The local stack's Redis keeps nothing across a restart, so the course
      // structure must come from the job's in-process cache afterwards: one
      // enrolment touching every content loads all of its non-empty sets.
      await stack.produce([enrolmentUpdate(warm, completed(["R1", "R2", "R3", "R4"]))]);
      await waitFor(
        "the warm-up window committed",
        async () => (await stack.committedInput()) === 1,
      );
      assert.equal((await stack.enrolment(warm))?.status, 2);

      const { stopMs, upMs } = await duringOutage("redis", async () => {
        // Idle: no stage has failed, so readiness has not changed (ioredis only reconnects).
        assert.equal(await job.readyStatus(), 200);
        await stack.produce(outageEvents(keys));
        await waitFor(
          "/readyz 503 during the outage",
          async () => (await job.readyStatus()) === 503,
        );
        assert.match((await stageWarning(job, "dedup-check")).message, /dedup-check/);
        const during = await job.metrics();
        assert.equal(labelledValue(during, "activity_agg_outage", 'stage="dedup-check"'), 1);
        // Nothing of the window was applied or committed, and the job waits instead of exiting.
        for (const key of keys) assert.equal((await stack.enrolment(key))?.progress, null);
        assert.equal(await stack.committedInput(), 1);
        assert.equal(await hasExited(job), false);
      });
      const upAt = performance.now();
      await job.ready(30_000);
      const readyMs = Math.round(performance.now() - upAt);
      await assertOutageApplied(stack, keys, 1 + outageEvents(keys).length);
      const appliedMs = Math.round(performance.now() - upAt);
      await waitFor(
        "the outage's messages committed",
        async () => (await stack.committedInput()) === 5,
      );
      await waitFor("three certificates", () => certs.length === 3);
      assert.deepEqual(
        certs.map((e) => (e.edata as { userIds: string[] }).userIds[0]).sort(),
        [warm, keys[0], keys[1]].map((k) => k.userId).sort(),
      );
      const after = await job.metrics();
      assert.equal(labelledValue(after, "activity_agg_outage", 'stage="dedup-check"'), 0);
      assert.ok(metricValue(after, "activity_agg_retries_total") >= 1);
      assert.ok(
        logLines(job.log).some((l) =>
          l.level === "INFO" && l.properties.stage === "dedup-check" && /recovered/.test(l.message)
        ),
        "a recovery line",
      );
      assert.equal(await hasExited(job), false);
      console.log(
        `redis: stop ${stopMs} ms, up ${upMs} ms; ready ${readyMs} ms and applied ${appliedMs} ms after up`,
      );
    } finally {
      status = await job.stop();
      await stack.close();
    }
    assert.equal(status.code, 0, job.log);
  },
);

Deno.test(
  "Cassandra stopped: /readyz 503 and a warn line while a window waits; back up: resumes, nothing lost",
  opts,
  async () => {
    const stack = await Stack.open();
    const job = new JobProcess(stack.envForJob());
    let status: Deno.CommandStatus;
    try {
      const { keys } = await seedCourse(stack, 4);
      const certs = await stack.collect(stack.topics.cert);
      await job.ready();

      const { stopMs, upMs } = await duringOutage("cassandra", async () => {
        assert.equal(await job.readyStatus(), 200, "idle: no stage has failed yet");
        await stack.produce(outageEvents(keys));
        await waitFor(
          "/readyz 503 during the outage",
          async () => (await job.readyStatus()) === 503,
        );
        const warned = await stageWarning(job, "read-state");
        assert.match(String(warned.properties.error), /NoHostAvailable|All host\(s\) tried/);
        assert.equal(await stack.committedInput(), 0);
        for (const key of keys) {
          assert.equal(await stack.hasChecksum(unitChecksum({ ...key, contentId: "R1" })), false);
        }
        assert.equal(await hasExited(job), false);
      });
      const upAt = performance.now();
      await job.ready(60_000);
      const readyMs = Math.round(performance.now() - upAt);
      await stack.reconnectCassandra();
      await assertOutageApplied(stack, keys, outageEvents(keys).length);
      const appliedMs = Math.round(performance.now() - upAt);
      await waitFor(
        "the outage's messages committed",
        async () => (await stack.committedInput()) === 4,
      );
      await waitFor("two certificates", () => certs.length === 2);
      const after = await job.metrics();
      assert.equal(labelledValue(after, "activity_agg_outage", 'stage="read-state"'), 0);
      assert.equal(await hasExited(job), false);
      console.log(
        `cassandra: stop ${stopMs} ms, up ${upMs} ms; ready ${readyMs} ms and applied ${appliedMs} ms after up`,
      );
    } finally {
      status = await job.stop();
      await stack.close();
    }
    assert.equal(status.code, 0, job.log);
  },
);

Deno.test(
  "Kafka stopped: /readyz 503 while the consumer restarts; back up: resumes, nothing lost",
  opts,
  async () => {
    const stack = await Stack.open();
    const job = new JobProcess(stack.envForJob());
    let status: Deno.CommandStatus;
    try {
      const { keys } = await seedCourse(stack, 4);
      const certs = await stack.collect(stack.topics.cert);
      await job.ready();
      const [before, ...after] = keys;
      await stack.produce([enrolmentUpdate(before, completed(["R1", "R2", "R3"]))]);
      await waitFor("the first event committed", async () => (await stack.committedInput()) === 1);

      const { stopMs, upMs } = await duringOutage("kafka", async () => {
        await waitFor(
          "/readyz 503 during the outage",
          async () => (await job.readyStatus()) === 503,
        );
        assert.equal(await hasExited(job), false);
      });
      const upAt = performance.now();
      await job.ready(60_000);
      const readyMs = Math.round(performance.now() - upAt);

      await stack.produce(after.map((key) => enrolmentUpdate(key, completed(["R1"]))));
      await waitFor("every event committed", async () => (await stack.committedInput()) === 4);
      assert.equal((await stack.enrolment(before))?.status, 2);
      for (const key of after) assert.equal((await stack.enrolment(key))?.progress, 1);
      await waitFor("the certificate", () => certs.length === 1);
      const metrics = await job.metrics();
      assert.equal(labelledValue(metrics, "activity_agg_outage", 'stage="kafka-consumer"'), 0);
      console.log(`kafka: stop ${stopMs} ms, up ${upMs} ms; ready ${readyMs} ms after up`);
    } finally {
      status = await job.stop();
      await stack.close();
    }
    assert.equal(status.code, 0, job.log);
  },
);

Deno.test(
  "SIGTERM in mid-stream exits 0 within the shutdown timeout; a restart finishes, nothing lost",
  opts,
  async () => {
    const stack = await Stack.open();
    // Small windows, so that a stream of messages takes many of them.
    const env = stack.envForJob({ THRESHOLD_BATCH_READ_SIZE: "10", SHUTDOWN_TIMEOUT: "4s" });
    let job = new JobProcess(env);
    let status: Deno.CommandStatus;
    try {
      const { keys } = await seedCourse(stack, 60);
      // Every learner completes R1, R2 and R3 in three messages: 180 in all. The
      // course service writes each content's state row before its message.
      await Promise.all(
        keys.flatMap((key) =>
          ["R1", "R2", "R3"].map((contentId) =>
            stack.seedConsumption(key, { contentId, status: 2 })
          )
        ),
      );
      const certs = await stack.collect(stack.topics.cert);
      await job.ready();
      const messages = ["R1", "R2", "R3"].flatMap((contentId) =>
        keys.map((key) => enrolmentUpdate(key, completed([contentId])))
      );
      await stack.produce(messages);
      await waitFor("a first window", () => job.log.includes('"window done"'));
      const signalled = performance.now();
      const first = await job.stop();
      const exitMs = Math.round(performance.now() - signalled);
      assert.equal(first.code, 0, job.log);
      assert.ok(exitMs < 4000, `exit took ${exitMs} ms, more than SHUTDOWN_TIMEOUT`);
      assert.ok(logLines(job.log).some((l) => l.message === "stopped cleanly"), job.log);
      const committedAtStop = await stack.committedInput();
      assert.ok(committedAtStop > 0 && committedAtStop < messages.length, `${committedAtStop}`);
      const windowsBefore = logLines(job.log).filter((l) => l.message === "window done").length;

      // The restart logs at warning level: no per-window info lines.
      const restarted = Date.now();
      job = new JobProcess({ ...env, LOG_LEVEL: "warning" });
      await waitFor(
        "every message committed",
        async () => (await stack.committedInput()) === messages.length,
        60_000,
      );
      const finishMs = Date.now() - restarted;
      const rows = await Promise.all(keys.map((key) => stack.enrolment(key)));
      rows.forEach((row, i) =>
        assert.deepEqual(
          { status: row?.status, progress: row?.progress, contentStatus: row?.contentStatus },
          { status: 2, progress: 3, contentStatus: { R1: 2, R2: 2, R3: 2 } },
          keys[i].userId,
        )
      );
      // A graceful stop repeats nothing: one certificate each, and R1's message
      // (which completes the enrolment: its rows all say 2) counted once. R2's
      // and R3's find the enrolment completed and leave it alone, unless they
      // shared R1's window and were merged with it: counted once then too.
      await waitFor("a certificate per learner", () => certs.length >= keys.length);
      const certified = certs.map((e) => (e.edata as { userIds: string[] }).userIds[0]);
      assert.equal(new Set(certified).size, keys.length);
      assert.equal(certified.length, keys.length);
      const counters = await Promise.all(keys.map((key) => stack.consumption(key)));
      counters.forEach((rows, i) => {
        assert.deepEqual(rows.R1, [2, 1, 1], keys[i].userId);
        for (const c of ["R2", "R3"]) {
          assert.ok([null, 1].includes(rows[c][1]) && rows[c][1] === rows[c][2], `${c} ${rows[c]}`);
        }
      });
      const levels = new Set(logLines(job.log).map((l) => l.level));
      assert.ok(!levels.has("INFO") && !levels.has("DEBUG"), [...levels].join());
      console.log(
        `sigterm: exit ${exitMs} ms after the signal, ${committedAtStop}/${messages.length} ` +
          `committed in ${windowsBefore} windows; restart finished in ${finishMs} ms`,
      );
    } finally {
      status = await job.stop();
      await stack.close();
    }
    assert.equal(status.code, 0, job.log);
  },
);

Deno.test(
  "command line: check passes and fails clearly, bad settings, replay of a failed enrolment, help",
  opts,
  async () => {
    const courseId = unique("C");
    // The search service knows the course as Live, but its structure is not in
    // the relation cache yet: its enrolments fail until the structure appears.
    const stack = await Stack.open({ statuses: { [courseId]: "Live" } });
    const env = stack.envForJob();
    const job = new JobProcess(env);
    const dir = await Deno.makeTempDir({ prefix: "ops-test-" });
    const run = async (args: string[], extra: Record<string, string> = {}) => {
      const cli = new JobProcess({ ...env, ...extra }, args);
      return { code: (await cli.exited).code, out: cli.log };
    };
    let status: Deno.CommandStatus;
    try {
      const failed = await stack.collect(stack.topics.failed);
      const key = { userId: unique("U"), courseId, batchId: unique("B") };
      await stack.seedEnrolment(key, 1);
      await job.ready();
      await stack.produce([enrolmentUpdate(key, completed(["R1", "R2", "R3"]))]);

      // Meanwhile, the other commands, side by side.
      const [ok, noKeyspace, noTopic, badSetting, version, ...helps] = await Promise.all([
        run(["check"]),
        run(["check"], { LMS_CASSANDRA_KEYSPACE: "nope" }),
        run(["check"], { KAFKA_AUDIT_TOPIC: "does.not.exist" }),
        run(["run"], { THRESHOLD_BATCH_READ_SIZE: "abc" }),
        run(["version"]),
        run(["--help"]),
        ...["run", "check", "replay", "healthcheck", "version"].map((c) => run([c, "--help"])),
      ]);
      assert.equal(ok.code, 0, ok.out);
      for (
        const name of [
          "kafka topics",
          "cassandra schema",
          "redis relation cache",
          "redis dedup store",
        ]
      ) {
        assertLine(ok.out, `  ok    ${name}`);
      }
      assertLine(ok.out, "  ok    search service");
      assertLine(ok.out, "all checks passed");
      assert.equal(noKeyspace.code, 1, noKeyspace.out);
      assertLine(noKeyspace.out, "  FAIL  cassandra schema: keyspace nope does not exist");
      assertLine(noKeyspace.out, "  ok    kafka topics");
      assertLine(noKeyspace.out, "1 of 5 checks failed");
      assert.equal(noTopic.code, 1, noTopic.out);
      assertLine(noTopic.out, "  FAIL  kafka topics: topic does.not.exist does not exist");
      assert.equal(badSetting.code, 2, badSetting.out);
      assert.match(badSetting.out, /THRESHOLD_BATCH_READ_SIZE="abc": expected a positive integer/);
      assert.equal(version.code, 0);
      assert.equal(version.out.trim(), VERSION);
      const commands = ["main", "run", "check", "replay", "healthcheck", "version"];
      helps.forEach((help, i) => {
        assert.equal(help.code, 0, `${commands[i]}: ${help.out}`);
        assert.match(help.out, /Usage: activity-aggregate-updater/, commands[i]);
      });
      assert.match(helps[0].out, /^ {2}healthcheck /m);

      // The failed enrolment, saved from the failed topic as an operator would.
      const saved = await waitFor("the failed enrolment", () => failed[0]);
      assert.equal((saved.failure as { stage: string }).stage, "course-structure");
      assert.equal(await stack.enrolment(key).then((r) => r?.progress), null);
      const file = `${dir}/failed.jsonl`;
      await Deno.writeTextFile(file, JSON.stringify(saved) + "\n\n");
      await stack.seedSets(exampleSets(courseId));
      const replay = await run(["replay", file]);
      assert.equal(replay.code, 0, replay.out);
      assert.match(replay.out, new RegExp(`sent 1 to ${stack.topics.input}; 0 not sent`));
      await waitFor("both messages committed", async () => (await stack.committedInput()) === 2);
      const row = (await stack.enrolment(key))!;
      assert.equal(row.status, 2);
      assert.deepEqual(row.contentStatus, { R1: 2, R2: 2, R3: 2 });
      assert.ok(await stack.hasChecksum(unitChecksum({ ...key, contentId: "R1" })));
      assert.equal(failed.length, 1);

      // A file with a line that is not JSON sends the rest and exits 1, naming the line.
      await Deno.writeTextFile(file, `${JSON.stringify(saved)}\n{oops\n`);
      const partly = await run(["replay", file]);
      assert.equal(partly.code, 1, partly.out);
      assert.match(partly.out, /^line 2 not sent: /m);
      assert.match(partly.out, /sent 1 to .*; 1 not sent/);
    } finally {
      status = await job.stop();
      await stack.close();
      await Deno.remove(dir, { recursive: true });
    }
    assert.equal(status.code, 0, job.log);
  },
);

Deno.test(
  "SIGTERM during an outage: the window is abandoned uncommitted, exit 0; a restart applies it",
  opts,
  async () => {
    const stack = await Stack.open();
    for (const client of [stack.relations, stack.dedup]) client.on("error", () => {});
    const env = stack.envForJob({ SHUTDOWN_TIMEOUT: "2s" });
    let job = new JobProcess(env);
    let status: Deno.CommandStatus;
    try {
      const { courseId, keys } = await seedCourse(stack, 2);
      await job.ready();
      let exitMs = 0;
      await duringOutage("redis", async () => {
        await stack.produce(
          keys.map((key) => enrolmentUpdate(key, completed(["R1", "R2", "R3"]))),
        );
        await waitFor(
          "/readyz 503 during the outage",
          async () => (await job.readyStatus()) === 503,
        );
        const signalled = performance.now();
        const status = await job.stop();
        exitMs = Math.round(performance.now() - signalled);
        assert.equal(status.code, 0, job.log);
        assert.ok(exitMs < 4000, `exit took ${exitMs} ms with SHUTDOWN_TIMEOUT=2s`);
        const abandoned = logLines(job.log).find((l) => l.message.startsWith("window abandoned"));
        assert.equal(abandoned?.level, "WARN", job.log);
        assert.match(String(abandoned?.properties.reason), /shutdown timeout of 2000 ms/);
        assert.equal(await stack.committedInput(), 0);
      });
      // The stack's Redis keeps nothing across a restart: the course service
      // side (the test) writes the structure again.
      await stack.seedSets(exampleSets(courseId));
      job = new JobProcess(env);
      await waitFor("both enrolments completed after the restart", async () => {
        const rows = await Promise.all(keys.map((k) => stack.enrolment(k)));
        return rows.every((r) => r?.status === 2 && r.progress === 3);
      });
      await waitFor("both messages committed", async () => (await stack.committedInput()) === 2);
      console.log(`sigterm during outage: exit ${exitMs} ms after the signal`);
    } finally {
      status = await job.stop();
      await stack.close();
    }
    assert.equal(status.code, 0, job.log);
  },
);
