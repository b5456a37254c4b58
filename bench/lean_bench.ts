/**
 * Lean and fast, in one run against the local stack: the job's peak memory
 * while draining backlogs, its throughput next to the drivers' ceiling for
 * the same workload, and its end-to-end latency at half its maximum rate.
 *
 * Run: `bash bench/run.sh` (saves the output under bench/results/), or
 * `scripts/deno.sh run --allow-all bench/lean_bench.ts`.
 * Options: `--backlogs=10000,50000 --interval=1s --seed=7 --timeout=600
 * --ceiling-concurrency=32,64,128 --latency-seconds=20 --latency-fraction=0.5
 * --latency-rate=<events/s> --v8-flags=<flags>|none
 * --malloc-env=none|KEY=VALUE;KEY=VALUE --job-env=KEY=VALUE;KEY=VALUE
 * --job-deno-flags=<flags> --no-ceiling --busy-replay-ms=N --json --repeat=N`
 * (`--latency-seconds=0` skips the latency phase; `--repeat` runs it all N
 * times and ends with the medians, {@linkcode formatRepeats};
 * `--busy-replay-ms` adds a replay that spends N ms of its own CPU after each
 * wave of stages, a model of the job's work, reported beside the ceiling).
 *
 * For each backlog (input messages, ~2 units each, on 4 partitions; one
 * enrolment per ~10 messages) the job starts as a child process with the
 * default window (`THRESHOLD_BATCH_READ_SIZE` 1000) and the V8 flags of
 * `scripts/compile.sh --print-v8-flags` (which `deno task start` and the
 * compiled binary use too), and is timed from `/readyz` = 200 until every
 * message is committed. Its RSS is sampled from `/proc/<pid>/status` every
 * 100 ms (`VmRSS`; `VmHWM` at the end is the peak). Every enrolment,
 * certificate and AUDIT event is then checked, as in `e2e_bench.ts`.
 *
 * The ceiling (`ceiling.ts`) replays exactly the requests the job sends for
 * the same workload (a copy with ids of its own, seeded the same, cut into
 * the job's own windows, which the commits of its `window done` lines name)
 * on the bare drivers, at each `--ceiling-concurrency`; the best is the
 * ceiling. The job starts, and each replay starts, once the machine is
 * quiet ({@linkcode quietMachine}).
 *
 * Latency: after the first backlog, events for new enrolments arrive at
 * `--latency-fraction` of the rate the job drained it at, for
 * `--latency-seconds`; p50/p95/p99 are interpolated in the job's own
 * histogram (`activity_agg_end_to_end_latency_seconds`, the difference of
 * two scrapes).
 *
 * The last line is `units/s <job> ceiling <ceiling> ratio <r>% peak_rss_mib
 * <m> p99_ms <p>`: throughputs over all backlogs together (units / seconds),
 * the highest peak RSS.
 *
 * @module
 */

import { delay } from "../lib/async.ts";
import { loadConfig, parseDuration } from "../lib/config.ts";
import { JobProcess, type Stack, stackCassandra, waitFor } from "../tests/support/stack.ts";
import {
  connectDrivers,
  countRequests,
  type JobWindowCommits,
  jobWindowEvents,
  recordWorkload,
  replay,
  type ReplayOptions,
  type RequestCounts,
} from "./ceiling.ts";
import { flags, fmt, markdownTable, mib } from "./data.ts";
import {
  cpuSecondsInStat,
  keyspaceOfOwn,
  type ServiceCpu,
  serviceCpuSpan,
  settleCassandra,
} from "./stack_state.ts";
import {
  assertRedisUnchanged,
  generateRun,
  openStack,
  redisRunId,
  seed,
  StackDisturbed,
  verify,
  withRestartRetry,
} from "./e2e_bench.ts";
import { type Histogram, histogram, quantile, samples, subtract } from "./prometheus.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const LATENCY = "activity_agg_end_to_end_latency_seconds";

/** Options of a run; see the module doc. */
export interface LeanOptions {
  backlogs: number[];
  interval: string;
  seed: number;
  timeoutSeconds: number;
  ceilingConcurrency: number[];
  latencySeconds: number;
  latencyFraction: number;
  /** Events per second of the latency phase instead of the fraction (`--latency-rate`, 0: off). */
  latencyRate: number;
  /** V8 flags for the job, comma-separated; "" for none. */
  v8Flags: string;
  /**
   * The allocator settings of `scripts/compile.sh` (`--malloc-env=none`: glibc's
   * defaults; `--malloc-env=KEY=VALUE;KEY=VALUE`: others, for the job and its
   * runtime's replay alike).
   */
  mallocEnv: Record<string, string>;
  /** More environment for the job (`--job-env=KEY=VALUE;KEY=VALUE`), e.g. other fetch sizes. */
  jobEnv: Record<string, string>;
  /** Deno flags for the job (`--job-deno-flags=--cpu-prof,--cpu-prof-dir=/tmp/prof`). */
  jobDenoFlags: string[];
  /** Milliseconds of CPU after each wave of stages in one more replay (`--busy-replay-ms`, 0: none). */
  busyReplayMs: number;
}

/** One backlog drained by the job, and the ceiling for the same workload. */
export interface DrainResult {
  messages: number;
  units: number;
  enrolments: number;
  drainSeconds: number;
  unitsPerSecond: number;
  /**
   * Units per second from the end of the job's first window to the end of
   * its last: warm, as the replay is after its warm-up window.
   */
  warmUnitsPerSecond: number;
  windows: number;
  /** CPU seconds the job used while draining, and the machine's busy share meanwhile. */
  cpu: { seconds: number; machineBusy: number };
  /** CPU seconds the stack's services used while the job drained. */
  services: ServiceCpu;
  /** Mean units per window, mean processing time, and the share of the drain inside windows. */
  windowUnits: number;
  windowMs: number;
  inWindowsShare: number;
  rss: { readyMib: number; peakMib: number; sampledMaxMib: number; endMib: number };
  /** RSS and V8 heap used after the job idled `IDLE_SECONDS`: what it keeps, not what it waits to free. */
  idle: { rssMib: number; heapUsedMib: number };
  heap: { maxTotalMib: number; maxUsedMib: number; maxExternalMib: number };
  counters: Record<string, number>;
  checks: string[];
  ceiling: {
    counts: RequestCounts;
    windows: number;
    byConcurrency: ReplayMeasurement[];
    unitsPerSecond: number;
    /**
     * The replay at the best concurrency in a process of its own with the
     * job's V8 flags and allocator settings: the drivers in the job's runtime.
     */
    sameRuntime: { unitsPerSecond: number; cpuSeconds: number; machineBusy: number } | null;
    /**
     * The replay at the best concurrency once more, spending `busyMs` of its
     * own CPU after each wave of stages (`--busy-replay-ms`); not part of the
     * ceiling.
     */
    busy: (ReplayMeasurement & { busyMs: number }) | null;
  };
  load: number[];
}

/** One replay of the ceiling's requests on a copy of its own. */
export interface ReplayMeasurement {
  concurrency: number;
  seconds: number;
  unitsPerSecond: number;
  /** CPU seconds of the replaying process, and the machine's busy share meanwhile. */
  cpuSeconds: number;
  machineBusy: number;
  /** CPU seconds the stack's services used meanwhile. */
  services: ServiceCpu;
}

/** Latency while the job keeps up. */
export interface LatencyResult {
  rate: number;
  events: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  windowUnits: number;
  windowMs: number;
  /** The job's CPU seconds from the first event sent to the last committed, and the machine's busy share. */
  cpu: { seconds: number; machineBusy: number };
  /** Units the phase's events carry. */
  units: number;
  histogram: Histogram;
}

/** What `scripts/compile.sh <option>` prints (`--print-v8-flags`, `--print-malloc-env`). */
async function compileSetting(option: string): Promise<string> {
  const out = await new Deno.Command("bash", {
    args: [`${ROOT}scripts/compile.sh`, option],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

/** The V8 flags the job is built and started with, from `scripts/compile.sh`. */
export async function jobV8Flags(): Promise<string> {
  const v8 = await compileSetting("--print-v8-flags");
  // deno.json's start task must run the job with the same flags.
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks;
  if (v8 && !String(tasks.start).includes(`--v8-flags=${v8}`)) {
    throw new Error(`deno.json's start task does not pass --v8-flags=${v8}`);
  }
  return v8;
}

/**
 * The allocator settings the job runs with, from `scripts/compile.sh`;
 * `deno task start` and the image must set the same.
 */
export async function jobMallocEnv(): Promise<Record<string, string>> {
  const lines = (await compileSetting("--print-malloc-env")).split("\n").filter(Boolean);
  const start = String(JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks.start);
  const dockerfile = await Deno.readTextFile(`${ROOT}Dockerfile`);
  for (const line of lines) {
    if (!start.includes(line)) throw new Error(`deno.json's start task does not set ${line}`);
    if (!dockerfile.includes(line)) throw new Error(`the Dockerfile does not set ${line}`);
  }
  return Object.fromEntries(
    lines.map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

/** `VmRSS` and `VmHWM` of `pid` in MiB, or null once it has exited. */
async function memoryOf(pid: number): Promise<{ rss: number; hwm: number } | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kb = (field: string) =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
    return { rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024 };
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) that `pid` has used, or NaN once it has exited. */
async function cpuSecondsOf(pid: number | "self"): Promise<number> {
  try {
    return cpuSecondsInStat(await Deno.readTextFile(`/proc/${pid}/stat`));
  } catch {
    return NaN;
  }
}

/** Busy and total jiffies of the whole machine (`/proc/stat`). */
async function machineCpu(): Promise<{ busy: number; total: number }> {
  const line = (await Deno.readTextFile("/proc/stat")).split("\n")[0];
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.split(/\s+/).slice(1, 9)
    .map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait };
}

/** CPU used between two readings: the process's seconds and the machine's busy share. */
async function cpuSpan(pid: number | "self") {
  const [seconds, machine] = [await cpuSecondsOf(pid), await machineCpu()];
  return async () => {
    const [after, m] = [await cpuSecondsOf(pid), await machineCpu()];
    return {
      seconds: after - seconds,
      machineBusy: (m.busy - machine.busy) / Math.max(1, m.total - machine.total),
    };
  };
}

/** Busy share of the machine below which a timed phase may start. */
const QUIET_BUSY = 0.25;
/** Longest wait for a quiet machine before a timed phase starts anyway. */
const QUIET_MAX_SECONDS = 60;

/**
 * Readies the stack for a timed phase: Cassandra's memtables of the run's
 * keyspace flushed and its compactions finished ({@linkcode settleCassandra}),
 * then the machine below {@linkcode QUIET_BUSY} over one second (at most
 * {@linkcode QUIET_MAX_SECONDS}), so that what a previous phase left to
 * Cassandra and Kafka does not land in the next one. Says on stderr how long
 * it waited before `phase`.
 */
async function quietMachine(phase: string): Promise<void> {
  const settled = await settleCassandra(stackCassandra().keyspace);
  const started = performance.now();
  const waited = () => (performance.now() - started) / 1000;
  while (waited() < QUIET_MAX_SECONDS) {
    const span = await cpuSpan("self");
    await delay(1000);
    if ((await span()).machineBusy < QUIET_BUSY) break;
  }
  console.error(
    `cassandra settled after ${fmt(settled, 1)} s, quiet machine after ${
      fmt(waited(), 1)
    } s; ${phase}`,
  );
}

/**
 * How often the job's `/metrics` are read for its V8 heap while it drains.
 * Each read costs the job ~11 ms of its main thread (prom-client's
 * event-loop-delay statistics in Deno): once a second that was 1.4 % of a
 * 50k drain's CPU, a cost Prometheus, scraping every 15–30 s, does not have.
 */
const HEAP_SCRAPE_MS = 5000;

/** How long the job idles after a drain before what it keeps is measured. */
const IDLE_SECONDS = 15;

/**
 * Waits until the job has committed `total` messages (a commit follows the
 * window's effects). Polls the group's offsets, not the job's `/metrics`:
 * rendering them costs the job CPU, and Prometheus scrapes every 15–30 s.
 */
async function waitProcessed(
  stack: Stack,
  job: JobProcess,
  total: number,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  job.exited.then(() => exited = true);
  for (;;) {
    const committed = await stack.committedInput();
    if (committed >= total) return;
    const stalled = /failed \(attempt 5\)/.exec(job.log);
    if (exited || stalled || Date.now() > deadline) {
      const reason = exited ? "the job exited" : stalled ? "a stage keeps failing" : "timed out";
      const lastWarning = job.log.split("\n").filter((l) => /WARN|ERROR/.test(l)).at(-1);
      throw new Error(`${reason} at ${committed} of ${total}; last warning: ${lastWarning}`);
    }
    await delay(100);
  }
}

/** Units (completed contents) that `events` carry. */
function unitsOf(events: Record<string, unknown>[]): number {
  return events.reduce(
    (n, e) => n + ((e.edata as { contents?: unknown[] }).contents?.length ?? 0),
    0,
  );
}

/** Sends `events` at `rate` per second (paced by the clock, in 100 ms ticks). */
async function paced(stack: Stack, events: Record<string, unknown>[], rate: number) {
  const tick = 100;
  const started = performance.now();
  let sent = 0;
  while (sent < events.length) {
    const due = Math.min(
      events.length,
      Math.round(((performance.now() - started) / 1000) * rate + rate * tick / 1000),
    );
    if (due > sent) {
      await stack.produce(events.slice(sent, due));
      sent = due;
    }
    await delay(tick);
  }
  return events.length / ((performance.now() - started) / 1000);
}

/**
 * The job's windows over the backlog `events`, as event indices, from the
 * commits of its `window done` lines (waiting for the last line, which follows
 * the last commit).
 */
async function jobWindowsOf(job: JobProcess, events: Record<string, unknown>[]) {
  const committed = (windows: JobWindowCommits[]) => {
    const last = new Map<number, number>();
    for (const w of windows) for (const c of w) last.set(c.partition, Number(c.offset));
    return [...last.values()].reduce((a, b) => a + b, 0);
  };
  const commitsOf = (r: { properties: Record<string, unknown> }) =>
    r.properties.commits as JobWindowCommits;
  const lines = await waitFor("the job's window lines to cover the backlog", () => {
    const done = job.records().filter((r) => r.message === "window done");
    return committed(done.map(commitsOf)) >= events.length ? done : null;
  }, 10_000);
  // The job's rate once its first window is done, from its own log times.
  const at = (r: (typeof lines)[number]) => Date.parse(r["@timestamp"]);
  const warmUnits = lines.slice(1).reduce((n, r) => n + Number(r.properties.units), 0);
  return {
    windows: jobWindowEvents(events, lines.map(commitsOf)),
    warmUnitsPerSecond: warmUnits / ((at(lines.at(-1)!) - at(lines[0])) / 1000),
  };
}

/** The job on `stack` with the run's interval, V8 flags, allocator settings and environment. */
function startJob(stack: Stack, opts: LeanOptions, denoFlags: string[] = []): JobProcess {
  return new JobProcess(
    stack.envForJob({
      THRESHOLD_BATCH_READ_INTERVAL: opts.interval,
      ...(opts.v8Flags ? { DENO_V8_FLAGS: opts.v8Flags } : {}),
      ...opts.mallocEnv,
      ...opts.jobEnv,
    }),
    ["run"],
    { denoFlags },
  );
}

/** Produces `events` to the input topic, 500 to a request (under the broker's request limit). */
async function produceBacklog(stack: Stack, events: Record<string, unknown>[]): Promise<void> {
  for (let i = 0; i < events.length; i += 500) await stack.produce(events.slice(i, i + 500));
}

/** Messages of the warm-up drain before the first backlog. */
const WARM_UP_MESSAGES = 10_000;

/**
 * Warms the stack's JVMs for the run's keyspace: a job of its own drains a
 * workload of its own. Without it the first timed phase, the job's drain,
 * paid Cassandra's JIT compilation for the new tables (1.2 CPU-seconds of its
 * compiler threads in a 10k drain, against 0.2 in the replays after); after
 * 2,000 messages Cassandra still spent 572 CPU ms per 1,000 units in a 10k
 * drain against 196 in the replays, after 10,000 it spent 253 against 236.
 */
async function warmUp(opts: LeanOptions): Promise<void> {
  const run = generateRun({
    enrolments: WARM_UP_MESSAGES / 10,
    events: WARM_UP_MESSAGES,
    courses: 20,
    rows: 10,
    completing: 0.1,
    seed: opts.seed + 2,
  });
  const stack = await openStack(1);
  let job: JobProcess | null = null;
  try {
    await seed(stack, run.data);
    await produceBacklog(stack, run.events);
    job = startJob(stack, opts);
    await job.ready();
    await waitProcessed(stack, job, run.events.length, opts.timeoutSeconds * 1000);
  } finally {
    await job?.stop();
    await stack.close();
  }
}

/** Drains one backlog, measures latency after it when asked, then the ceiling. */
async function runBacklog(
  messages: number,
  opts: LeanOptions,
  latency: boolean,
): Promise<{ drain: DrainResult; latency: LatencyResult | null }> {
  const shape = {
    enrolments: Math.max(1, Math.round(messages / 10)),
    events: messages,
    courses: 20,
    rows: 10,
    completing: 0.1,
    seed: opts.seed,
  };
  const run = generateRun(shape);
  // Enough new enrolments for the latency phase at up to 2,000 events/s.
  const steadyMax = latency ? Math.ceil(2000 * opts.latencySeconds) : 0;
  const steady = generateRun({
    ...shape,
    enrolments: Math.max(1, Math.ceil(steadyMax / 18)),
    events: Math.max(1, steadyMax),
    seed: opts.seed + 1,
  });
  const stack = await openStack(1);
  let job: JobProcess | null = null;
  try {
    const runId = await redisRunId(stack);
    await seed(stack, latency ? [...run.data, ...steady.data] : run.data);
    await produceBacklog(stack, run.events);
    await quietMachine("the job starts");
    job = startJob(stack, opts, opts.jobDenoFlags);
    const pid = job.pid;
    let sampling = true;
    let sampledMax = 0;
    const heap = { maxTotalMib: 0, maxUsedMib: 0, maxExternalMib: 0 };
    const sampler = (async () => {
      for (let i = 0; sampling; i++) {
        const m = await memoryOf(pid);
        if (m) sampledMax = Math.max(sampledMax, m.rss);
        if (i % (HEAP_SCRAPE_MS / 100) === 5) {
          const plain = samples(await job!.metrics().catch(() => ""));
          const get = (name: string) => (plain.get(name) ?? 0) / 1048576;
          heap.maxTotalMib = Math.max(heap.maxTotalMib, get("nodejs_heap_size_total_bytes"));
          heap.maxUsedMib = Math.max(heap.maxUsedMib, get("nodejs_heap_size_used_bytes"));
          heap.maxExternalMib = Math.max(heap.maxExternalMib, get("nodejs_external_memory_bytes"));
        }
        await delay(100);
      }
    })();
    await job.ready();
    const readyMib = (await memoryOf(pid))?.rss ?? NaN;
    const ready = performance.now();
    const drainCpu = await cpuSpan(pid);
    const drainServices = await serviceCpuSpan();
    await waitProcessed(stack, job, run.events.length, opts.timeoutSeconds * 1000);
    const drainSeconds = (performance.now() - ready) / 1000;
    const cpu = await drainCpu();
    const services = await drainServices();
    const afterDrain = await job.metrics();
    const drainMemory = await memoryOf(pid);
    const { windows: jobWindows, warmUnitsPerSecond } = await jobWindowsOf(job, run.events);

    // Correctness of the backlog, before anything else reaches the output topics.
    const outputs = {
      certs: await stack.collect(stack.topics.cert),
      audits: await stack.collect(stack.topics.audit),
    };
    const failed = await stack.collect(stack.topics.failed);
    const checks = await verify(stack, run.data, outputs, failed);

    let latencyResult: LatencyResult | null = null;
    if (latency) {
      const rate = opts.latencyRate || opts.latencyFraction * run.events.length / drainSeconds;
      const events = steady.events.slice(0, Math.round(rate * opts.latencySeconds));
      await quietMachine("the latency phase starts");
      const before = await job.metrics();
      const phaseCpu = await cpuSpan(pid);
      const sentRate = await paced(stack, events, rate);
      await waitProcessed(stack, job, run.events.length + events.length, 120_000);
      const cpu = await phaseCpu();
      const after = await job.metrics();
      const diff = (name: string) => subtract(histogram(after, name)!, histogram(before, name));
      const h = diff(LATENCY);
      const sizes = diff("activity_agg_window_units");
      const durations = diff("activity_agg_window_processing_seconds");
      latencyResult = {
        rate: sentRate,
        events: events.length,
        cpu,
        units: unitsOf(events),
        p50: quantile(h, 0.5),
        p95: quantile(h, 0.95),
        p99: quantile(h, 0.99),
        mean: h.sum / h.count,
        windowUnits: sizes.sum / Math.max(1, sizes.count),
        windowMs: 1000 * durations.sum / Math.max(1, durations.count),
        histogram: h,
      };
    }
    await assertRedisUnchanged(stack, runId);
    const retried = samples(await job.metrics()).get("activity_agg_retries_total") ?? 0;
    if (retried > 0) throw new StackDisturbed(`the job retried ${retried} times`);
    sampling = false;
    await sampler;
    const end = await memoryOf(pid);
    // V8's memory reducer collects and compacts after ~8 s with little allocation.
    await delay(IDLE_SECONDS * 1000);
    const idle = {
      rssMib: (await memoryOf(pid))?.rss ?? NaN,
      heapUsedMib: (samples(await job.metrics()).get("nodejs_heap_size_used_bytes") ?? NaN) /
        1048576,
    };
    const status = await job.stop();
    job = null;
    if (status.code !== 0) throw new Error(`the job exited with ${status.code}`);

    const plain = samples(afterDrain);
    const sizes = histogram(afterDrain, "activity_agg_window_units");
    const durations = histogram(afterDrain, "activity_agg_window_processing_seconds");
    const counters = Object.fromEntries(
      [
        "db_reads",
        "known_status_reads",
        "db_writes",
        "cache_reads",
        "cache_misses",
        "processed_enrolments",
        "enrolment_completions",
        "retries",
      ].map((n) => [n, plain.get(`activity_agg_${n}_total`) ?? 0]),
    );
    const ceiling = opts.ceilingConcurrency.length > 0
      ? await measureCeiling(shape, opts, jobWindows)
      : {
        counts: countRequests([]),
        windows: 0,
        byConcurrency: [],
        unitsPerSecond: NaN,
        sameRuntime: null,
        busy: null,
      };
    if (ceiling.byConcurrency.length > 0 && (opts.v8Flags || Object.keys(opts.mallocEnv).length)) {
      const best = bestReplay(ceiling)!;
      const [same] =
        (await ceilingInJobRuntime(shape, opts, best.concurrency, jobWindows)).byConcurrency;
      ceiling.sameRuntime = same;
    }
    return {
      drain: {
        messages: run.events.length,
        units: run.units,
        enrolments: run.data.length,
        drainSeconds,
        unitsPerSecond: run.units / drainSeconds,
        warmUnitsPerSecond,
        windows: sizes?.count ?? 0,
        cpu,
        services,
        windowUnits: sizes ? sizes.sum / Math.max(1, sizes.count) : NaN,
        windowMs: durations ? 1000 * durations.sum / Math.max(1, durations.count) : NaN,
        inWindowsShare: durations ? durations.sum / drainSeconds : NaN,
        rss: {
          readyMib,
          // VmHWM covers the whole life of the process; the drain's own peak is
          // the same unless the latency phase went higher (it is lighter).
          peakMib: Math.max(drainMemory?.hwm ?? 0, end?.hwm ?? 0),
          sampledMaxMib: sampledMax,
          endMib: end?.rss ?? NaN,
        },
        idle,
        heap,
        counters,
        checks,
        ceiling,
        load: Deno.loadavg(),
      },
      latency: latencyResult,
    };
  } finally {
    if (job) await job.stop();
    await stack.close();
  }
}

/** The replay at the best concurrency, if the ceiling was measured. */
function bestReplay(ceiling: DrainResult["ceiling"]) {
  return ceiling.byConcurrency.find((b) => b.unitsPerSecond === ceiling.unitsPerSecond);
}

/** What a ceiling measurement needs to know. */
type CeilingOptions = Pick<LeanOptions, "interval" | "ceilingConcurrency" | "busyReplayMs">;

/**
 * {@linkcode measureCeiling} at `concurrency` in a child process with the
 * job's V8 flags and allocator settings.
 */
async function ceilingInJobRuntime(
  shape: Parameters<typeof generateRun>[0],
  opts: LeanOptions,
  concurrency: number,
  jobWindows: number[][],
): Promise<DrainResult["ceiling"]> {
  // The windows run to megabytes: a file, not an argument.
  const request = await Deno.makeTempFile({ prefix: "ceiling-", suffix: ".json" });
  await Deno.writeTextFile(
    request,
    JSON.stringify({ shape, interval: opts.interval, concurrency, jobWindows }),
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      ...opts.v8Flags ? [`--v8-flags=${opts.v8Flags}`] : [],
      new URL(import.meta.url).pathname,
      `--ceiling-child=${request}`,
    ],
    env: opts.mallocEnv,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  await Deno.remove(request);
  if (!out.success) throw new Error(`the ceiling in the job's runtime exited with ${out.code}`);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
}

/**
 * The same workload (ids of its own) in the job's windows (event indices),
 * recorded, seeded and replayed on the bare drivers.
 *
 * Each replay gets a copy of its own, seeded as the job's was, so that it
 * meets the state the job met. Replayed over the state an earlier replay (or
 * its warm-up) left, the same statements cost Cassandra less: conditional
 * writes fail their condition and write nothing, every write overwrites cells
 * already in the memtable, and every read finds its partition in the key and
 * chunk caches.
 */
async function measureCeiling(
  shape: Parameters<typeof generateRun>[0],
  opts: CeilingOptions,
  jobWindows: number[][],
): Promise<DrainResult["ceiling"]> {
  const stack = await openStack(1);
  try {
    const runId = await redisRunId(stack);
    const config = loadConfig({
      ...stack.envForJob(),
      THRESHOLD_BATCH_READ_INTERVAL: opts.interval,
    });
    const seededCopy = async (windows: number[][]) => {
      const run = generateRun(shape);
      await seed(stack, run.data);
      const recorded = await recordWorkload(run.data, run.events, {
        maxUnits: config.window.maxUnits,
        config,
        windows,
      });
      return { units: run.units, ...recorded };
    };
    const drivers = await connectDrivers(config, {
      relations: stack.relations,
      dedup: stack.dedup,
    });
    try {
      // Prepares every statement and opens every connection, as a running job has.
      await replay((await seededCopy(jobWindows.slice(0, 1))).windows, drivers, 32);
      let counts: RequestCounts | undefined;
      const measure = async (
        concurrency: number,
        options: ReplayOptions = {},
      ): Promise<ReplayMeasurement> => {
        const copy = await seededCopy(jobWindows);
        counts ??= copy.counts;
        await quietMachine(`replay at ${concurrency}`);
        const replayCpu = await cpuSpan("self");
        const replayServices = await serviceCpuSpan();
        const seconds = await replay(copy.windows, drivers, concurrency, options);
        const cpu = await replayCpu();
        const services = await replayServices();
        return {
          concurrency,
          seconds,
          unitsPerSecond: copy.units / seconds,
          cpuSeconds: cpu.seconds,
          machineBusy: cpu.machineBusy,
          services,
        };
      };
      const byConcurrency = [];
      for (const concurrency of opts.ceilingConcurrency) {
        byConcurrency.push(await measure(concurrency));
      }
      if (!counts) throw new Error("no --ceiling-concurrency to replay at");
      const ceiling: DrainResult["ceiling"] = {
        counts,
        windows: jobWindows.length,
        byConcurrency,
        unitsPerSecond: Math.max(...byConcurrency.map((c) => c.unitsPerSecond)),
        sameRuntime: null,
        busy: null,
      };
      const busyMs = opts.busyReplayMs;
      if (busyMs > 0) {
        const { concurrency } = bestReplay(ceiling)!;
        ceiling.busy = { busyMs, ...await measure(concurrency, { busyMsPerWave: busyMs }) };
      }
      await assertRedisUnchanged(stack, runId);
      return ceiling;
    } finally {
      await drivers.close();
    }
  } finally {
    await stack.close();
  }
}

/** Runs every backlog; latency after the first. */
export async function runLean(opts: LeanOptions) {
  const drains: DrainResult[] = [];
  let latency: LatencyResult | null = null;
  const keyspace = await keyspaceOfOwn();
  try {
    await withRestartRetry(() => warmUp(opts));
    for (const [i, messages] of opts.backlogs.entries()) {
      const result = await withRestartRetry(() =>
        runBacklog(messages, opts, i === 0 && opts.latencySeconds > 0)
      );
      drains.push(result.drain);
      latency ??= result.latency;
      console.error(
        `backlog ${fmt(messages)}: ${fmt(result.drain.unitsPerSecond)} units/s, ceiling ${
          fmt(result.drain.ceiling.unitsPerSecond)
        }, peak RSS ${mib(result.drain.rss.peakMib * 1048576)} MiB`,
      );
    }
  } finally {
    await keyspace.drop();
  }
  const units = drains.reduce((n, d) => n + d.units, 0);
  const jobRate = units / drains.reduce((s, d) => s + d.drainSeconds, 0);
  const ceilingRate = units / drains.reduce((s, d) => s + d.units / d.ceiling.unitsPerSecond, 0);
  return {
    options: opts,
    drains,
    latency,
    summary: {
      jobUnitsPerSecond: jobRate,
      ceilingUnitsPerSecond: ceilingRate,
      ratio: jobRate / ceilingRate,
      peakRssMib: Math.max(...drains.map((d) => d.rss.peakMib)),
      p99Ms: latency ? latency.p99 * 1000 : NaN,
    },
  };
}

/** The Markdown report, ending with the summary line. */
export function formatLean(result: Awaited<ReturnType<typeof runLean>>): string {
  const { drains, latency, summary, options } = result;
  const col = (f: (d: DrainResult) => string) => drains.map(f);
  const c = (d: DrainResult) => d.ceiling.counts;
  /** Seconds of CPU as milliseconds per 1,000 of the backlog's units. */
  const perK = (d: DrainResult, seconds: number) => fmt(1e6 * seconds / d.units);
  const rows: string[][] = [
    ["metric", ...col((d) => `backlog ${fmt(d.messages)} messages`)],
    ["units / enrolments", ...col((d) => `${fmt(d.units)} / ${fmt(d.enrolments)}`)],
    ["**job**: ready → all committed", ...col((d) => `${fmt(d.drainSeconds, 1)} s`)],
    ["**job units/s**", ...col((d) => `**${fmt(d.unitsPerSecond)}**`)],
    [
      "ceiling units/s by concurrency",
      ...col((d) =>
        d.ceiling.byConcurrency.map((b) => `${b.concurrency}: ${fmt(b.unitsPerSecond)}`).join(", ")
      ),
    ],
    ["**ceiling units/s** (best)", ...col((d) => `**${fmt(d.ceiling.unitsPerSecond)}**`)],
    [
      "ceiling in the job's runtime (its V8 flags and allocator), units/s; job / it",
      ...col((d) =>
        d.ceiling.sameRuntime
          ? `${fmt(d.ceiling.sameRuntime.unitsPerSecond)}; ${
            fmt(100 * d.unitsPerSecond / d.ceiling.sameRuntime.unitsPerSecond)
          } %`
          : "–"
      ),
    ],
    ...(drains.some((d) => d.ceiling.busy) ? [busyReplayRow(drains, perK)] : []),
    [
      "**job / ceiling**",
      ...col((d) => `**${fmt(100 * d.unitsPerSecond / d.ceiling.unitsPerSecond)} %**`),
    ],
    [
      "job after its first window (warm, as the replay is), units/s; / ceiling",
      ...col((d) =>
        `${fmt(d.warmUnitsPerSecond)}; ${
          fmt(100 * d.warmUnitsPerSecond / d.ceiling.unitsPerSecond)
        } %`
      ),
    ],
    [
      "**peak RSS** (VmHWM) / sampled max",
      ...col((d) => `**${fmt(d.rss.peakMib, 1)}** / ${fmt(d.rss.sampledMaxMib, 1)} MiB`),
    ],
    [
      "RSS when ready / at the end",
      ...col((d) => `${fmt(d.rss.readyMib, 1)} / ${fmt(d.rss.endMib, 1)} MiB`),
    ],
    [
      `after ${IDLE_SECONDS} s idle: RSS / V8 heap used`,
      ...col((d) => `${fmt(d.idle.rssMib, 1)} / ${fmt(d.idle.heapUsedMib, 1)} MiB`),
    ],
    [
      "V8 heap total / used / external, max of 5 s scrapes",
      ...col((d) =>
        `${fmt(d.heap.maxTotalMib, 1)} / ${fmt(d.heap.maxUsedMib, 1)} / ${
          fmt(d.heap.maxExternalMib, 1)
        } MiB`
      ),
    ],
    [
      "CPU ms per 1,000 units: job / replay (best) / replay in the job's runtime; machine busy while draining / replaying",
      ...col((d) => {
        const best = bestReplay(d.ceiling);
        const same = d.ceiling.sameRuntime;
        return `${perK(d, d.cpu.seconds)} / ${best ? perK(d, best.cpuSeconds) : "–"} / ${
          same ? perK(d, same.cpuSeconds) : "–"
        }; ${fmt(100 * d.cpu.machineBusy)} / ${best ? fmt(100 * best.machineBusy) : "–"} %`;
      }),
    ],
    [
      "stack CPU ms per 1,000 units while draining / replaying (best): Cassandra (of it compaction); Kafka; Redis",
      ...col((d) => {
        const best = bestReplay(d.ceiling)?.services;
        const both = (f: (s: ServiceCpu) => string) => `${f(d.services)} / ${best ? f(best) : "–"}`;
        return `${both((s) => `${perK(d, s.cassandra)} (${perK(d, s.compaction)})`)}; ${
          both((s) => perK(d, s.kafka))
        }; ${both((s) => perK(d, s.redis))}`;
      }),
    ],
    ["windows (job / ceiling)", ...col((d) => `${fmt(d.windows)} / ${fmt(d.ceiling.windows)}`)],
    [
      "job: mean window units / processing; time in windows / drain",
      ...col((d) =>
        `${fmt(d.windowUnits)} / ${fmt(d.windowMs)} ms; ${fmt(100 * d.inWindowsShare)} %`
      ),
    ],
    [
      "Cassandra reads: job counter / ceiling",
      ...col((d) =>
        `${fmt(d.counters.db_reads - d.counters.known_status_reads)} / ${
          fmt(c(d).cassandraReads)
        } (${fmt(d.counters.known_status_reads)} statuses known in process)`
      ),
    ],
    [
      "Cassandra statements written: job counter / ceiling",
      ...col((d) => `${fmt(d.counters.db_writes)} / ${fmt(c(d).cassandraStatements)}`),
    ],
    [
      "ceiling: write requests (LWT) / Redis pipelines (commands) / Kafka requests (messages)",
      ...col((d) =>
        `${fmt(c(d).cassandraWriteRequests)} (${fmt(c(d).conditionalWrites)}) / ${
          fmt(c(d).redisPipelines)
        } (${fmt(c(d).redisCommands)}) / ${fmt(c(d).kafkaRequests)} (${fmt(c(d).kafkaMessages)})`
      ),
    ],
    [
      "job: processed enrolments / completions",
      ...col((d) =>
        `${fmt(d.counters.processed_enrolments)} / ${fmt(d.counters.enrolment_completions)}`
      ),
    ],
    ["load average (1/5/15 min) after", ...col((d) => d.load.map((l) => l.toFixed(2)).join(" "))],
  ];
  const lines = [
    `lean bench: THRESHOLD_BATCH_READ_SIZE=1000 (default), THRESHOLD_BATCH_READ_INTERVAL=${options.interval}, ` +
    `4 input partitions, seed ${options.seed}, V8 flags ${options.v8Flags || "none"}, ` +
    `allocator ${
      Object.entries(options.mallocEnv).map(([k, v]) => `${k}=${v}`).join(" ") || "glibc's defaults"
    }${Object.entries(options.jobEnv).map(([k, v]) => `, ${k}=${v}`).join("")}`,
    "",
    markdownTable(rows),
    "",
    ...drains.map((d) => `- checks (${fmt(d.messages)}): ${d.checks.join("; ")}`),
  ];
  if (drains.length > 1) {
    const peaks = drains.map((d) => d.rss.peakMib);
    lines.push(
      `- peak RSS spread over backlogs: ${
        fmt(100 * (Math.max(...peaks) / Math.min(...peaks) - 1), 1)
      } % (largest over smallest)`,
    );
  }
  if (latency) {
    lines.push(
      "",
      `latency at ${
        options.latencyRate
          ? "a fixed rate"
          : `${fmt(options.latencyFraction * 100)} % of the drain rate`
      }: ${fmt(latency.events)} events at ${fmt(latency.rate)}/s; mean window ${
        fmt(latency.windowUnits)
      } units, ` +
        `${fmt(latency.windowMs)} ms processing; job CPU ${
          fmt(1e6 * latency.cpu.seconds / latency.units)
        } ms per 1,000 units, machine ${fmt(100 * latency.cpu.machineBusy)} % busy`,
      "",
      markdownTable([
        ["p50", "p95", "p99", "mean", "target (interval + 200 ms)"],
        [
          `${fmt(latency.p50 * 1000)} ms`,
          `${fmt(latency.p95 * 1000)} ms`,
          `${fmt(latency.p99 * 1000)} ms`,
          `${fmt(latency.mean * 1000)} ms`,
          `${fmt((parseDuration(options.interval) ?? NaN) + 200)} ms`,
        ],
      ]),
      "",
      `latency buckets (≤le: n): ${
        latency.histogram.buckets.map((b, i, all) =>
          `${b.le === Infinity ? "+Inf" : b.le}: ${b.count - (i > 0 ? all[i - 1].count : 0)}`
        ).filter((s) => !s.endsWith(": 0")).join(", ")
      }`,
    );
  }
  lines.push(
    "",
    `${Deno.build.target}, ${navigator.hardwareConcurrency} cores shared by the job, this script, ` +
      `Kafka and Cassandra (JVMs), Redis and other engineers' tests; load average ${
        Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
      }, deno ${Deno.version.deno}, ${new Date().toISOString()}`,
    "",
    summaryLine(summary),
  );
  return lines.join("\n");
}

/**
 * The row of `--busy-replay-ms`: the replay that spends CPU of its own after
 * each wave, its rate, CPU and Cassandra's CPU beside the job's.
 */
function busyReplayRow(
  drains: DrainResult[],
  perK: (d: DrainResult, seconds: number) => string,
): string[] {
  const ms = drains.find((d) => d.ceiling.busy)!.ceiling.busy!.busyMs;
  return [
    `replay with ${ms} ms of its own CPU after each wave of stages: units/s; CPU ms per 1,000 units, it / job; Cassandra's, it / job`,
    ...drains.map((d) => {
      const b = d.ceiling.busy;
      return b
        ? `${fmt(b.unitsPerSecond)}; ${perK(d, b.cpuSeconds)} / ${perK(d, d.cpu.seconds)}; ${
          perK(d, b.services.cassandra)
        } / ${perK(d, d.services.cassandra)}`
        : "–";
    }),
  ];
}

/** The report's last line: `units/s <job> ceiling <ceiling> ratio <r>% peak_rss_mib <m> p99_ms <p>`. */
function summaryLine(summary: Awaited<ReturnType<typeof runLean>>["summary"]): string {
  return `units/s ${Math.round(summary.jobUnitsPerSecond)} ceiling ${
    Math.round(summary.ceilingUnitsPerSecond)
  } ratio ${Math.round(summary.ratio * 100)}% peak_rss_mib ${
    Math.round(summary.peakRssMib)
  } p99_ms ${Math.round(summary.p99Ms)}`;
}

/** The middle value (the mean of the middle two for an even count). */
function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Several runs side by side, ending with one summary line: the median of the
 * throughputs and the ratio (one drain varies by ±25 % on this machine), the
 * highest peak RSS and p99 (the worst is what a limit must hold for).
 */
export function formatRepeats(results: Awaited<ReturnType<typeof runLean>>[]): string {
  const summaries = results.map((r) => r.summary);
  const backlogs = results[0].drains.map((d) => d.messages);
  const pct = (x: number) => `${Math.round(x * 100)} %`;
  const row = (label: string, s: (typeof summaries)[number], perBacklog: string[]) => [
    label,
    fmt(s.jobUnitsPerSecond),
    fmt(s.ceilingUnitsPerSecond),
    pct(s.ratio),
    ...perBacklog,
    `${mib(s.peakRssMib * 1048576)} MiB`,
    `${fmt(s.p99Ms)} ms`,
  ];
  const overall = {
    jobUnitsPerSecond: median(summaries.map((s) => s.jobUnitsPerSecond)),
    ceilingUnitsPerSecond: median(summaries.map((s) => s.ceilingUnitsPerSecond)),
    ratio: median(summaries.map((s) => s.ratio)),
    peakRssMib: Math.max(...summaries.map((s) => s.peakRssMib)),
    p99Ms: Math.max(...summaries.map((s) => s.p99Ms)),
  };
  const ratioOf = (d: DrainResult) => d.unitsPerSecond / d.ceiling.unitsPerSecond;
  return [
    `## ${results.length} runs`,
    "",
    markdownTable([
      [
        "run",
        "job units/s",
        "ceiling units/s",
        "ratio",
        ...backlogs.map((m) => `ratio, ${fmt(m)} messages`),
        "peak RSS",
        "p99",
      ],
      ...results.map((r, i) => row(String(i + 1), r.summary, r.drains.map((d) => pct(ratioOf(d))))),
      row(
        "median (peak RSS, p99: highest)",
        overall,
        backlogs.map((_, b) => pct(median(results.map((r) => ratioOf(r.drains[b]))))),
      ),
    ]),
    "",
    summaryLine(overall),
  ].join("\n");
}

/** `KEY=VALUE;KEY=VALUE` as an environment. */
function assignments(list: string): Record<string, string> {
  return Object.fromEntries(
    list.split(";").filter((kv) => kv.includes("=")).map((kv) => {
      const i = kv.indexOf("=");
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
  );
}

if (import.meta.main && Deno.args[0]?.startsWith("--ceiling-child=")) {
  // The child of ceilingInJobRuntime: one measurement, as JSON on the last line.
  const request = await Deno.readTextFile(Deno.args[0].slice("--ceiling-child=".length));
  const { shape, interval, concurrency, jobWindows } = JSON.parse(request);
  const result = await measureCeiling(
    shape,
    { interval, ceilingConcurrency: [concurrency], busyReplayMs: 0 },
    jobWindows,
  );
  console.log(JSON.stringify(result));
  Deno.exit();
} else if (import.meta.main) {
  const { num, list, str, has } = flags(Deno.args);
  const v8 = str("v8-flags", "");
  const malloc = str("malloc-env", "");
  const opts: LeanOptions = {
    backlogs: list("backlogs", [10_000, 50_000]),
    interval: str("interval", "1s"),
    seed: num("seed", 7),
    timeoutSeconds: num("timeout", 600),
    ceilingConcurrency: has("no-ceiling") ? [] : list("ceiling-concurrency", [32, 64, 128]),
    latencySeconds: num("latency-seconds", 20),
    latencyFraction: num("latency-fraction", 0.5),
    latencyRate: num("latency-rate", 0),
    v8Flags: v8 === "none" ? "" : v8 || await jobV8Flags(),
    mallocEnv: malloc === "none" ? {} : malloc ? assignments(malloc) : await jobMallocEnv(),
    jobDenoFlags: str("job-deno-flags", "").split(",").filter(Boolean),
    jobEnv: assignments(str("job-env", "")),
    busyReplayMs: num("busy-replay-ms", 0),
  };
  const repeat = num("repeat", 1);
  const results = [];
  for (let run = 1; run <= repeat; run++) {
    if (repeat > 1) console.log(`${run > 1 ? "\n" : ""}## Run ${run} of ${repeat}\n`);
    const result = await runLean(opts);
    console.log(has("json") ? JSON.stringify(result) : formatLean(result));
    results.push(result);
  }
  if (repeat > 1 && !has("json")) console.log(`\n${formatRepeats(results)}`);
  const failures = results.flatMap((r) => r.drains)
    .flatMap((d) => d.checks.filter((c) => c.startsWith("FAILED")));
  if (failures.length > 0) {
    console.error(`correctness checks failed:\n${failures.join("\n")}`);
    Deno.exitCode = 1;
  }
  // A client of a run that was repeated after a service restart can keep the
  // event loop alive (seen once): the report is out, so end here.
  Deno.exit();
}
