/**
 * End to end against the local stack (`bash scripts/stack.sh up`): seed
 * enrolments, put a backlog of `batch-enrolment-update` events on a
 * 4-partition input topic, start the job as a child process and time how long
 * it takes to commit every event. Repeated for each `THRESHOLD_BATCH_READ_SIZE`.
 *
 * Run: `scripts/deno.sh run --allow-all bench/e2e_bench.ts`.
 * Options: `--enrolments=2000 --events=20000 --courses=20 --rows=10
 * --completing=0.1 --sizes=100,1000 --interval=1s --seed=7 --timeout=240
 * --audit-partitions=1 --steady-rate=100 --steady-seconds=10 --json`.
 * `--events` is a target: each enrolment gets `events / enrolments` events on
 * average (of 1–3 contents each), so the real count is printed.
 *
 * Each setting gets topics, courses and users of its own (a fresh `Stack`),
 * so runs never see each other's data, nor other engineers' tests on the
 * shared stack. Times are printed, never asserted; the correctness checks at
 * the end (statuses, certificates, AUDIT counts) stop the run if they fail.
 *
 * @module
 */

import { mapConcurrent } from "../lib/async.ts";
import { enrolmentId } from "../lib/event.ts";
import { JobProcess, Stack, unique, waitFor } from "../tests/support/stack.ts";
import { provision } from "../scripts/provision.ts";
import {
  type EnrolmentPlanData,
  flags,
  fmt,
  interleavedEvents,
  makeCourse,
  makeEnrolment,
  markdownTable,
  mib,
  seededRandom,
  storedRows,
} from "./data.ts";
import {
  distribution,
  type Histogram,
  histogram,
  quantile,
  samples,
  subtract,
} from "./prometheus.ts";

/** Options of one run; see the module doc for the flags. */
export interface E2eOptions {
  enrolments: number;
  events: number;
  courses: number;
  rows: number;
  completing: number;
  batchReadSize: number;
  interval: string;
  seed: number;
  timeoutSeconds: number;
  /**
   * Partitions of the AUDIT topic (`Stack` makes it 1). A full window sends
   * over 1 MiB of AUDIT events to one partition; the job splits them into
   * requests under the broker's limit (this bench found that it once did not).
   */
  auditPartitions: number;
  /**
   * After the backlog, events per second sent at a steady pace for
   * `steadySeconds`, to new enrolments: latency while the job keeps up (the
   * backlog's latency is only the age of the queue). 0 skips the phase.
   */
  steadyRate: number;
  steadySeconds: number;
}

/** What one run measured. */
export interface E2eResult {
  options: E2eOptions;
  events: number;
  units: number;
  seededRows: number;
  seedSeconds: number;
  produceSeconds: number;
  startupSeconds: number;
  drainSeconds: number;
  eventsPerSecond: number;
  unitsPerSecond: number;
  /** Over the backlog: mostly how long an event queued before the job reached it. */
  latency: LatencySummary | null;
  /** Over the steady phase, when the job keeps up. */
  steady: {
    events: number;
    rate: number;
    latency: LatencySummary | null;
    windowUnits: number;
    windowMs: number;
  } | null;
  windowUnits: { mean: number; count: number; distribution: string } | null;
  windowSeconds: { p50: number; p95: number; mean: number; total: number } | null;
  rss: {
    /** Once connected, before the first window: the runtime and its libraries. */
    readyBytes: number;
    /** After the steady phase, when the job is idle again. */
    endBytes: number;
    peakHwmBytes: number;
    peakSampledBytes: number;
    /** prom-client's `process_resident_memory_bytes` after the backlog, to compare. */
    promBytes: number | null;
  };
  counters: Record<string, number>;
  checks: string[];
}

/** Quantiles (interpolated within the job's buckets) and the exact mean, in seconds. */
export interface LatencySummary {
  p50: number;
  p95: number;
  mean: number;
}

function latencySummary(h: Histogram | null): LatencySummary | null {
  if (!h || h.count === 0) return null;
  return { p50: quantile(h, 0.5), p95: quantile(h, 0.95), mean: h.sum / h.count };
}

/** Counters of `/metrics` reported in the results (suffix `_total` dropped). */
const COUNTERS = [
  "total_events",
  "batch_enrolment_update_events",
  "duplicate_units",
  "processed_enrolments",
  "filtered_enrolments",
  "failed_events",
  "db_reads",
  "db_writes",
  "cache_reads",
  "cache_misses",
  "enrolment_completions",
  "cert_issue_events",
  "retries",
  "commit_failures",
];

/** `VmRSS` and `VmHWM` (peak RSS) of `pid` in bytes, or null once it has exited. */
async function memoryOf(pid: number): Promise<{ rss: number; hwm: number } | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kb = (field: string) =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
    return { rss: kb("VmRSS") * 1024, hwm: kb("VmHWM") * 1024 };
  } catch {
    return null;
  }
}

/**
 * Waits until the job has committed `total` input messages. Fails fast, with
 * the job's own words, when it exits or a stage keeps failing: a stalled job
 * would otherwise only show as a timeout minutes later.
 */
async function drain(stack: Stack, job: JobProcess, total: number, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  job.exited.then(() => exited = true);
  for (;;) {
    if ((await stack.committedInput()) >= total) return;
    const stalled = /failed \(attempt 5\)/.exec(job.log);
    if (exited || stalled || Date.now() > deadline) {
      const reason = exited ? "the job exited" : stalled ? "a stage keeps failing" : "timed out";
      const lastWarning = job.log.split("\n").filter((l) => /WARN|ERROR/.test(l)).at(-1);
      throw new Error(
        `${reason} before committing ${total} messages (${await stack.committedInput()} ` +
          `committed); last warning: ${lastWarning ?? "none"}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Seeds relation-cache sets, consumption rows and enrolment rows; returns rows written. */
export async function seed(stack: Stack, data: EnrolmentPlanData[]): Promise<number> {
  const courses = new Map(data.map((e) => [e.course.id, e.course]));
  await stack.seedSets(Object.assign({}, ...[...courses.values()].map((c) => c.sets)));
  const rows = data.flatMap((e) =>
    storedRows(e).map((row) => ({
      key: e.key,
      // Counters upstream never set are null in Cassandra, not 0.
      row: {
        ...row,
        viewCount: row.viewCount || undefined,
        completedCount: row.completedCount || undefined,
      },
    }))
  );
  // Many requests in flight: one at a time would spend the run on round trips.
  await mapConcurrent(rows, 64, ({ key, row }) => stack.seedConsumption(key, row));
  await mapConcurrent(data, 64, (e) => stack.seedEnrolment(e.key, 1));
  return rows.length;
}

/** What the job must have produced for `data`, to check against what it did. */
function expectations(data: EnrolmentPlanData[]) {
  let audits = 0;
  for (const e of data) {
    const stored = new Map(e.rows.map((r) => [r.contentId, r]));
    for (const c of e.targets) {
      const row = stored.get(c);
      if ((row?.viewCount ?? 0) === 0) audits++; // start
      if ((row?.completedCount ?? 0) === 0) audits++; // complete
    }
    if (e.completes) audits++; // enrol-complete
  }
  return { audits, completions: data.filter((e) => e.completes).length };
}

/** The course's completed count the job should write for `e`. */
function expectedProgress(e: EnrolmentPlanData): number {
  const done = new Set([
    ...e.rows.filter((r) => r.status === 2).map((r) => r.contentId),
    ...e.targets,
  ]);
  return e.course.required.filter((c) => done.has(c)).length;
}

/** Verifies every enrolment's status and every certificate; returns what was checked. */
export async function verify(
  stack: Stack,
  data: EnrolmentPlanData[],
  outputs: { certs: Record<string, unknown>[]; audits: Record<string, unknown>[] },
  failed: Record<string, unknown>[],
): Promise<string[]> {
  const expected = expectations(data);
  const problems: string[] = [];
  await waitFor(
    `${expected.completions} certificate and ${expected.audits} AUDIT events`,
    () => outputs.certs.length >= expected.completions && outputs.audits.length >= expected.audits,
    30_000,
  ).catch((error) => problems.push(String(error)));
  // Give a duplicate a moment to show up before counting exactly.
  await new Promise((r) => setTimeout(r, 1000));

  const certsPerEnrolment = new Map<string, number>();
  for (const cert of outputs.certs) {
    const edata = cert.edata as { userIds: string[]; courseId: string; batchId: string };
    const id = enrolmentId({ userId: edata.userIds[0], ...edata });
    certsPerEnrolment.set(id, (certsPerEnrolment.get(id) ?? 0) + 1);
  }
  const rows = await mapConcurrent(data, 32, (e) => stack.enrolment(e.key));
  let wrongStatus = 0;
  let wrongProgress = 0;
  let wrongCerts = 0;
  data.forEach((e, i) => {
    const row = rows[i];
    if (row?.status !== (e.completes ? 2 : 1)) wrongStatus++;
    if (row?.progress !== expectedProgress(e)) wrongProgress++;
    if ((certsPerEnrolment.get(enrolmentId(e.key)) ?? 0) !== (e.completes ? 1 : 0)) wrongCerts++;
  });
  // Aggregates on a sample: one read each, and the enrolment row already covers progress.
  const sample = data.filter((_, i) => i % Math.max(1, Math.floor(data.length / 50)) === 0);
  let wrongAggregates = 0;
  for (const e of sample) {
    if ((await stack.aggregate(e.key.courseId, e.key)) !== expectedProgress(e)) wrongAggregates++;
  }
  const checks = [
    `${data.length} enrolments: status ${wrongStatus === 0 ? "ok" : `WRONG for ${wrongStatus}`}`,
    `progress ${wrongProgress === 0 ? "ok" : `WRONG for ${wrongProgress}`}`,
    `certificates: ${outputs.certs.length} for ${expected.completions} completions, ${
      wrongCerts === 0 ? "exactly one each" : `WRONG for ${wrongCerts} enrolments`
    }`,
    `AUDIT events: ${outputs.audits.length} of ${expected.audits} expected`,
    `course aggregate of ${sample.length} sampled enrolments: ${
      wrongAggregates === 0 ? "ok" : `WRONG for ${wrongAggregates}`
    }`,
    `failed topic: ${failed.length} events`,
  ];
  if (
    wrongStatus + wrongProgress + wrongCerts + wrongAggregates > 0 ||
    outputs.audits.length !== expected.audits || failed.length > 0
  ) {
    problems.push(...checks);
  }
  return problems.length > 0 ? [...problems.map((p) => `FAILED: ${p}`)] : checks;
}

/** Data of one run: enrolments, their events in publishing order, and the unit count. */
export function generateRun(
  opts: Pick<E2eOptions, "enrolments" | "events" | "courses" | "rows" | "completing" | "seed">,
) {
  const random = seededRandom(opts.seed);
  // Ids of this run only: the relation cache and tables are shared with other tests.
  const prefix = unique("bench").replaceAll("-", "");
  const courses = Array.from({ length: opts.courses }, (_, i) => makeCourse(`${prefix}C${i}`));
  // Contents per enrolment: events × ~2 contents each, spread over its enrolments.
  const targetCount = Math.max(1, Math.round((opts.events / opts.enrolments) * 2));
  const data = Array.from({ length: opts.enrolments }, (_, e) => {
    const course = courses[e % courses.length];
    const key = { userId: `${prefix}U${e}`, courseId: course.id, batchId: `${course.id}B` };
    return makeEnrolment(random, key, course, {
      completes: random() < opts.completing,
      rowCount: opts.rows,
      targetCount,
    });
  });
  const events = interleavedEvents(random, data);
  const units = data.reduce((n, e) => n + e.targets.length, 0);
  return { data, events, units };
}

/**
 * A fresh `Stack` (topics of its own, 4 input partitions) with the AUDIT
 * topic grown to `auditPartitions`; see {@linkcode E2eOptions.auditPartitions}.
 */
export async function openStack(auditPartitions: number): Promise<Stack> {
  // Redis may be mid-restart (another engineer's outage test): wait it out.
  let stack: Stack | null = null;
  for (let attempt = 1; !stack; attempt++) {
    try {
      stack = await Stack.open({ partitions: 4 });
    } catch (error) {
      if (attempt >= 15) throw error;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  if (auditPartitions > 1) {
    await provision({
      cassandra: false,
      topics: [{ topic: stack.topics.audit, numPartitions: auditPartitions }],
    });
  }
  return stack;
}

/**
 * Thrown when the shared stack was disturbed during a run: other engineers'
 * outage tests restart Redis (which keeps nothing, `save ""`, so the seeded
 * course structure is gone) and Cassandra. Such a run measures retries and
 * failures, not the job; the caller runs it again.
 */
export class StackDisturbed extends Error {
  override name = "StackDisturbed";
}

/** The Redis server's run id: it changes on every restart. */
export async function redisRunId(stack: Stack): Promise<string> {
  const info = await stack.relations.info("server");
  return /run_id:(\w+)/.exec(info)?.[1] ?? "unknown";
}

/** Throws {@linkcode StackDisturbed} when Redis is not the server `runId` names. */
export async function assertRedisUnchanged(stack: Stack, runId: string): Promise<void> {
  const now = await redisRunId(stack).catch(() => "unreachable");
  if (now !== runId) {
    throw new StackDisturbed(`the shared Redis restarted during the run (${runId} → ${now})`);
  }
}

/** Runs `run`, again (up to `attempts` times) when the shared Redis restarted under it. */
export async function withRestartRetry<T>(run: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (!(error instanceof StackDisturbed) || attempt >= attempts) throw error;
      console.error(`${error.message}; running again (attempt ${attempt + 1} of ${attempts})`);
    }
  }
}

/**
 * Sends `events` at `opts.steadyRate` per second to the running job (which
 * has committed `before` messages), waits for their commits and returns what
 * the histograms observed meanwhile.
 */
async function steadyPhase(
  stack: Stack,
  job: JobProcess,
  events: Record<string, unknown>[],
  opts: E2eOptions,
  before: number,
  metricsBefore: string,
): Promise<NonNullable<E2eResult["steady"]>> {
  const tick = 100;
  const perTick = opts.steadyRate * tick / 1000;
  const started = performance.now();
  let sent = 0;
  // Paced by the clock, not by sleeps alone, so a slow produce does not lower the rate.
  while (sent < events.length) {
    const due = Math.min(
      events.length,
      Math.round(((performance.now() - started) / tick + 1) * perTick),
    );
    if (due > sent) {
      await stack.produce(events.slice(sent, due));
      sent = due;
    }
    await new Promise((r) => setTimeout(r, tick));
  }
  const rate = events.length / ((performance.now() - started) / 1000);
  await drain(stack, job, before + events.length, 60_000);
  const after = await job.metrics();
  const diff = (name: string) => {
    const later = histogram(after, name);
    return later && subtract(later, histogram(metricsBefore, name));
  };
  const sizes = diff("activity_agg_window_units");
  const durations = diff("activity_agg_window_processing_seconds");
  return {
    events: events.length,
    rate,
    latency: latencySummary(diff("activity_agg_end_to_end_latency_seconds")),
    windowUnits: sizes && sizes.count > 0 ? sizes.sum / sizes.count : NaN,
    windowMs: durations && durations.count > 0 ? (1000 * durations.sum) / durations.count : NaN,
  };
}

/** One run: a fresh stack namespace, seeded data, a backlog, the job draining it. */
export async function runE2e(opts: E2eOptions): Promise<E2eResult> {
  const { data, events, units } = generateRun(opts);
  // The steady phase's enrolments: ~10 events each, of their own.
  const steadyEvents = Math.round(opts.steadyRate * opts.steadySeconds);
  const steady = generateRun({
    ...opts,
    enrolments: Math.max(1, Math.ceil(steadyEvents / 10)),
    events: steadyEvents,
    seed: opts.seed + 1,
  });
  if (steadyEvents === 0) steady.events.length = 0;
  const stack = await openStack(opts.auditPartitions);
  let job: JobProcess | null = null;
  try {
    const runId = await redisRunId(stack);
    let t = performance.now();
    const seededRows = await seed(stack, steadyEvents > 0 ? [...data, ...steady.data] : data);
    const seedSeconds = (performance.now() - t) / 1000;

    t = performance.now();
    // Chunks keep each produce request under the broker's 1 MB message limit.
    for (let i = 0; i < events.length; i += 500) await stack.produce(events.slice(i, i + 500));
    const produceSeconds = (performance.now() - t) / 1000;

    const outputs = {
      certs: await stack.collect(stack.topics.cert),
      audits: await stack.collect(stack.topics.audit),
    };
    const failed = await stack.collect(stack.topics.failed);

    const started = performance.now();
    job = new JobProcess(stack.envForJob({
      THRESHOLD_BATCH_READ_SIZE: String(opts.batchReadSize),
      THRESHOLD_BATCH_READ_INTERVAL: opts.interval,
    }));
    const pid = job.pid;
    let peakSampled = 0;
    let sampling = true;
    // Sample RSS alongside: VmHWM gives the peak, the samples show it is not a start-up spike.
    const sampler = (async () => {
      while (sampling) {
        const memory = await memoryOf(pid);
        if (memory) peakSampled = Math.max(peakSampled, memory.rss);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    await job.ready();
    const ready = performance.now();
    const readyBytes = (await memoryOf(pid))?.rss ?? NaN;
    await drain(stack, job, events.length, opts.timeoutSeconds * 1000);
    const drained = performance.now();
    const metricsText = await job.metrics();
    const steadyResult = steadyEvents > 0
      ? await steadyPhase(stack, job, steady.events, opts, events.length, metricsText)
      : null;
    await assertRedisUnchanged(stack, runId);
    // A stage the job had to retry means a service went away mid-run.
    const retried = samples(await job.metrics()).get("activity_agg_retries_total") ?? 0;
    if (retried > 0) {
      throw new StackDisturbed(`the job retried ${retried} times: a service went down mid-run`);
    }
    const peak = await memoryOf(pid);
    sampling = false;
    await sampler;
    const status = await job.stop();
    job = null;
    if (status.code !== 0) throw new Error(`the job exited with ${status.code}`);

    const checks = await verify(
      stack,
      steadyEvents > 0 ? [...data, ...steady.data] : data,
      outputs,
      failed,
    );
    const plain = samples(metricsText);
    const latency = histogram(metricsText, "activity_agg_end_to_end_latency_seconds");
    const sizes = histogram(metricsText, "activity_agg_window_units");
    const durations = histogram(metricsText, "activity_agg_window_processing_seconds");
    const drainSeconds = (drained - ready) / 1000;
    const mean = (h: Histogram) => h.sum / h.count;
    return {
      options: opts,
      events: events.length,
      units,
      seededRows,
      seedSeconds,
      produceSeconds,
      startupSeconds: (ready - started) / 1000,
      drainSeconds,
      eventsPerSecond: events.length / drainSeconds,
      unitsPerSecond: units / drainSeconds,
      latency: latencySummary(latency),
      steady: steadyResult,
      windowUnits: sizes && {
        mean: mean(sizes),
        count: sizes.count,
        distribution: distribution(sizes),
      },
      windowSeconds: durations && {
        p50: quantile(durations, 0.5),
        p95: quantile(durations, 0.95),
        mean: mean(durations),
        total: durations.sum,
      },
      rss: {
        readyBytes,
        endBytes: peak?.rss ?? NaN,
        peakHwmBytes: peak?.hwm ?? NaN,
        peakSampledBytes: peakSampled,
        promBytes: plain.get("process_resident_memory_bytes") ?? null,
      },
      counters: Object.fromEntries(
        COUNTERS.map((name) => [name, plain.get(`activity_agg_${name}_total`) ?? 0]),
      ),
      checks,
    };
  } finally {
    if (job) await job.stop();
    await stack.close();
  }
}

/** Results of several runs side by side, as recorded in bench/README.md. */
export function formatE2e(results: E2eResult[]): string {
  const col = (f: (r: E2eResult) => string) => results.map(f);
  const s = (n: number, digits = 2) => fmt(n, digits);
  const first = results[0];
  const rows: (string | number)[][] = [
    ["metric", ...col((r) => `THRESHOLD_BATCH_READ_SIZE=${r.options.batchReadSize}`)],
    ["events / units", ...col((r) => `${fmt(r.events)} / ${fmt(r.units)}`)],
    [
      "seed (rows) / produce",
      ...col((r) =>
        `${s(r.seedSeconds, 1)} s (${fmt(r.seededRows)}) / ${s(r.produceSeconds, 1)} s`
      ),
    ],
    ["job start-up to ready", ...col((r) => `${s(r.startupSeconds, 1)} s`)],
    ["ready → all committed", ...col((r) => `${s(r.drainSeconds, 1)} s`)],
    ["events/s", ...col((r) => fmt(r.eventsPerSecond))],
    ["units/s", ...col((r) => fmt(r.unitsPerSecond))],
    [
      "backlog: latency p50 / p95 / mean (= queue age)",
      ...col((r) =>
        r.latency
          ? `${s(r.latency.p50, 1)} / ${s(r.latency.p95, 1)} / ${s(r.latency.mean, 1)} s`
          : "n/a"
      ),
    ],
    [
      "steady: events at rate",
      ...col((r) => r.steady ? `${fmt(r.steady.events)} at ${fmt(r.steady.rate)}/s` : "skipped"),
    ],
    [
      "steady: latency p50 / p95 / mean",
      ...col((r) =>
        r.steady?.latency
          ? `${s(r.steady.latency.p50, 2)} / ${s(r.steady.latency.p95, 2)} / ${
            s(r.steady.latency.mean, 2)
          } s`
          : "n/a"
      ),
    ],
    [
      "steady: mean window units / processing",
      ...col((r) =>
        r.steady ? `${s(r.steady.windowUnits, 0)} / ${s(r.steady.windowMs, 0)} ms` : "n/a"
      ),
    ],
    [
      "windows (mean units)",
      ...col((r) =>
        r.windowUnits ? `${fmt(r.windowUnits.count)} (${s(r.windowUnits.mean, 0)})` : "n/a"
      ),
    ],
    ["window units histogram", ...col((r) => r.windowUnits?.distribution ?? "n/a")],
    [
      "window processing p50 / p95 / mean",
      ...col((r) =>
        r.windowSeconds
          ? `${s(r.windowSeconds.p50 * 1000, 0)} / ${s(r.windowSeconds.p95 * 1000, 0)} / ${
            s(r.windowSeconds.mean * 1000, 0)
          } ms`
          : "n/a"
      ),
    ],
    [
      "time in windows / drain",
      ...col((r) =>
        r.windowSeconds
          ? `${s(r.windowSeconds.total, 1)} s / ${s(r.drainSeconds, 1)} s (${
            s(100 * r.windowSeconds.total / r.drainSeconds, 0)
          }%)`
          : "n/a"
      ),
    ],
    [
      "RSS when ready / peak (VmHWM) / sampled max / at end",
      ...col((r) =>
        `${mib(r.rss.readyBytes)} / ${mib(r.rss.peakHwmBytes)} / ${mib(r.rss.peakSampledBytes)} / ${
          mib(r.rss.endBytes)
        } MiB`
      ),
    ],
    [
      "process_resident_memory_bytes after backlog",
      ...col((r) => r.rss.promBytes === null ? "absent" : `${mib(r.rss.promBytes)} MiB`),
    ],
    ...COUNTERS.map((name) => [name, ...col((r) => fmt(r.counters[name]))]),
    [
      "Cassandra reads / enrolment",
      ...col((r) => s(r.counters.db_reads / Math.max(1, r.counters.processed_enrolments), 2)),
    ],
    [
      "processed enrolments / window",
      ...col((r) => s(r.counters.processed_enrolments / Math.max(1, r.windowUnits?.count ?? 1), 1)),
    ],
  ];
  const o = first.options;
  return [
    `e2e bench: ${fmt(o.enrolments)} enrolments over ${o.courses} courses (50 leaves, 5 units), ` +
    `~${o.rows} prior rows, ${fmt(o.completing * 100)}% completing, ` +
    `THRESHOLD_BATCH_READ_INTERVAL=${o.interval}, seed ${o.seed}, 4 input partitions`,
    "",
    markdownTable(rows),
    "",
    "Counters and histograms are of the backlog phase (scraped before the steady phase); " +
    "peak RSS covers both phases.",
    "",
    ...results.map((r) => `- checks (size ${r.options.batchReadSize}): ${r.checks.join("; ")}`),
  ].join("\n");
}

if (import.meta.main) {
  const { num, list, str, has } = flags(Deno.args);
  const interval = str("interval", "1s");
  const results: E2eResult[] = [];
  for (const size of list("sizes", [100, 1000])) {
    const result = await withRestartRetry(() =>
      runE2e({
        enrolments: num("enrolments", 2000),
        events: num("events", 20_000),
        courses: num("courses", 20),
        rows: num("rows", 10),
        completing: num("completing", 0.1),
        batchReadSize: size,
        interval,
        seed: num("seed", 7),
        timeoutSeconds: num("timeout", 240),
        auditPartitions: num("audit-partitions", 1),
        steadyRate: num("steady-rate", 100),
        steadySeconds: num("steady-seconds", 10),
      })
    );
    results.push(result);
    if (!has("json")) {
      console.error(
        `size ${size}: ${fmt(result.eventsPerSecond)} events/s, drained in ${
          fmt(result.drainSeconds, 1)
        } s`,
      );
    }
  }
  console.log(has("json") ? JSON.stringify(results) : formatE2e(results));
  // Numbers from a job that got the answer wrong are not numbers: fail the run.
  const failures = results.flatMap((r) => r.checks.filter((c) => c.startsWith("FAILED")));
  if (failures.length > 0) {
    console.error(`correctness checks failed:\n${failures.join("\n")}`);
    Deno.exitCode = 1;
  }
  if (!has("json")) {
    console.log(
      `\n${Deno.build.target}, ${navigator.hardwareConcurrency} cores shared by the job, ` +
        `this script, Kafka and Cassandra (JVMs) and Redis; load average ${
          Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
        }, deno ${Deno.version.deno}, ${new Date().toISOString()}`,
    );
  }
}
