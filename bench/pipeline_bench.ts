/**
 * The core without I/O: windows of ~1000 units through `processWindow` on the
 * in-memory stubs of tests/support/stubs.ts, and the pure `planEnrolment` on its own.
 *
 * Run: `scripts/deno.sh task bench` (or `scripts/deno.sh run --allow-all
 * --v8-flags=--expose-gc bench/pipeline_bench.ts` for exact heap numbers).
 * Options: `--windows=200 --enrolments=200 --units=1000 --courses=20
 * --rows=20 --seed=42 --plan-iterations=20000 --json`.
 *
 * Times are wall-clock and machine-dependent: they are printed, never
 * asserted. The only checks are of correctness (every window completes the
 * enrolments it should), so a broken core cannot post a good number.
 *
 * @module
 */

import v8 from "node:v8";
import vm from "node:vm";
import { planEnrolment, type StructureSets } from "../lib/aggregate.ts";
import { processWindow } from "../lib/pipeline.ts";
import { sequentialIds, storeKey, stubWorld, windowOf } from "../tests/support/stubs.ts";
import {
  type Course,
  type EnrolmentPlanData,
  flags,
  fmt,
  interleavedEvents,
  makeCourse,
  makeEnrolment,
  markdownTable,
  mib,
  percentile,
  seededRandom,
  storedRows,
} from "./data.ts";

/** Options of one run; see the module doc for the flags. */
export interface PipelineBenchOptions {
  windows: number;
  warmup: number;
  enrolments: number;
  units: number;
  courses: number;
  rows: number;
  /** Share of enrolments whose window completes them. */
  completing: number;
  seed: number;
  planIterations: number;
}

/** What one run measured. */
export interface PipelineBenchResult {
  options: PipelineBenchOptions;
  units: number;
  messages: number;
  enrolments: number;
  completions: number;
  processSeconds: number;
  unitsPerSecond: number;
  windowsPerSecond: number;
  windowMs: { p50: number; p95: number; max: number };
  parseMsPerWindow: number;
  heap: {
    method: "gc" | "floor";
    startBytes: number;
    endBytes: number;
    growthBytes: number;
    rssStartBytes: number;
    rssEndBytes: number;
  };
  plan: { iterations: number; microsPerEnrolment: number; enrolmentsPerSecond: number };
}

/**
 * A forced full GC, so heap readings are the live heap rather than whatever
 * garbage happens to be waiting. `--v8-flags=--expose-gc` provides it; without
 * it (as `deno task bench` runs) the flag is set at run time and the function
 * fetched from a fresh context, a known V8 idiom that `node:v8` supports.
 */
const gc: (() => void) | undefined = (globalThis as { gc?: () => void }).gc ?? (() => {
  try {
    v8.setFlagsFromString("--expose-gc");
    const fn = vm.runInNewContext("gc");
    return typeof fn === "function" ? fn as () => void : undefined;
  } catch {
    return undefined;
  }
})();

/** The live heap now: exact after a forced GC when `--expose-gc` is on, else as is. */
function heapUsed(): number {
  gc?.();
  return Deno.memoryUsage().heapUsed;
}

/** The enrolments of window `w`: new users each window, so no window sees another's state. */
function windowEnrolments(
  random: () => number,
  courses: Course[],
  w: number,
  opts: PipelineBenchOptions,
): EnrolmentPlanData[] {
  const perEnrolment = Math.round(opts.units / opts.enrolments);
  return Array.from({ length: opts.enrolments }, (_, e) => {
    const course = courses[Math.floor(random() * courses.length)];
    const key = { userId: `U-${w}-${e}`, courseId: course.id, batchId: `B-${course.id}` };
    return makeEnrolment(random, key, course, {
      completes: random() < opts.completing,
      rowCount: opts.rows,
      targetCount: perEnrolment,
    });
  });
}

/** Runs the benchmark and returns its numbers. */
export async function runPipelineBench(opts: PipelineBenchOptions): Promise<PipelineBenchResult> {
  const random = seededRandom(opts.seed);
  const courses = Array.from({ length: opts.courses }, (_, i) => makeCourse(`C${i}`));
  const allSets = Object.assign({}, ...courses.map((c) => c.sets)) as Record<string, string[]>;
  // One world for the whole run, as in the job: its metrics registry and
  // relation cache live as long as the process.
  const world = stubWorld({ sets: allSets });

  const durations: number[] = [];
  let parseMs = 0;
  let units = 0;
  let messages = 0;
  let enrolments = 0;
  let completions = 0;
  let heapStart = 0;
  let rssStart = 0;
  const floor: number[] = [];

  for (let w = 0; w < opts.warmup + opts.windows; w++) {
    const measured = w >= opts.warmup;
    if (w === opts.warmup) {
      heapStart = heapUsed();
      rssStart = Deno.memoryUsage().rss;
    }
    const data = windowEnrolments(random, courses, w, opts);
    for (const e of data) {
      for (const row of storedRows(e)) world.progress.seedConsumption(e.key, row);
      world.progress.seedEnrolment(e.key, 1);
    }
    const parseStart = performance.now();
    const window = windowOf(interleavedEvents(random, data));
    const started = performance.now();
    const summary = await processWindow(window, world.deps);
    const ended = performance.now();

    // Correctness, not speed: a core that skips work must not post a good number.
    const expected = data.filter((e) => e.completes).length;
    if (summary.completions !== expected || summary.processed !== data.length) {
      throw new Error(
        `window ${w}: ${summary.completions} completions of ${expected} expected, ` +
          `${summary.processed} enrolments processed of ${data.length}`,
      );
    }
    if (measured) {
      durations.push(ended - started);
      parseMs += started - parseStart;
      units += summary.units;
      messages += summary.messages;
      enrolments += summary.enrolments;
      completions += summary.completions;
    }

    // Drop what the stubs retained for this window (rows, logs, events,
    // checksums): they stand in for external stores, and keeping them would
    // measure the stubs' growth rather than the pipeline's.
    for (const e of data) {
      world.progress.consumption.delete(storeKey(e.key));
      world.progress.enrolments.delete(storeKey(e.key));
    }
    world.progress.aggregates.clear();
    world.progress.writeLog.length = 0;
    world.progress.enrolmentWriteLog.length = 0;
    world.sink.events.length = 0;
    world.dedup.keys.clear();
    world.relations.calls.length = 0;
    if (measured && !gc) floor.push(Deno.memoryUsage().heapUsed);
  }
  const heapEnd = heapUsed();
  const rssEnd = Deno.memoryUsage().rss;
  // Without a forced GC, the lowest reading of the first and last tenth of
  // the windows approximates the live heap (the floor a GC leaves behind).
  const tenth = Math.max(1, Math.floor(floor.length / 10));
  const start = gc ? heapStart : Math.min(...floor.slice(0, tenth));
  const end = gc ? heapEnd : Math.min(...floor.slice(-tenth));

  const seconds = durations.reduce((a, b) => a + b, 0) / 1000;
  const sorted = [...durations].sort((a, b) => a - b);
  return {
    options: opts,
    units,
    messages,
    enrolments,
    completions,
    processSeconds: seconds,
    unitsPerSecond: units / seconds,
    windowsPerSecond: durations.length / seconds,
    windowMs: {
      p50: percentile(sorted, 0.5),
      p95: percentile(sorted, 0.95),
      max: sorted[sorted.length - 1],
    },
    parseMsPerWindow: parseMs / durations.length,
    heap: {
      method: gc ? "gc" : "floor",
      startBytes: start,
      endBytes: end,
      growthBytes: end - start,
      rssStartBytes: rssStart,
      rssEndBytes: rssEnd,
    },
    plan: benchPlan(random, courses, opts),
  };
}

/** The pure computation alone, on prepared states: no stubs, no promises. */
function benchPlan(
  random: () => number,
  courses: Course[],
  opts: PipelineBenchOptions,
): PipelineBenchResult["plan"] {
  const data = windowEnrolments(random, courses, -1, opts);
  const states = data.map((e) => {
    // The sets the pipeline would have fetched for this enrolment.
    const sets: StructureSets = new Map();
    for (const [k, v] of Object.entries(e.course.sets)) sets.set(k, v);
    return {
      key: e.key,
      units: e.targets.map((contentId) => ({ ...e.key, contentId })),
      rows: storedRows(e),
      sets,
      enrolment: { status: 1, progress: 0 },
    };
  });
  const planOpts = {
    moduleAggs: true,
    filterProcessed: true,
    now: 1_700_000_000_000,
    newId: sequentialIds(),
    topics: { audit: "audit", certIssue: "cert" },
  };
  // Warm up the JIT before timing.
  for (let i = 0; i < Math.min(2000, opts.planIterations); i++) {
    planEnrolment(states[i % states.length], planOpts);
  }
  let sink = 0;
  const started = performance.now();
  for (let i = 0; i < opts.planIterations; i++) {
    sink += planEnrolment(states[i % states.length], planOpts).aggregates.length;
  }
  const ms = performance.now() - started;
  if (sink === 0) throw new Error("planEnrolment produced no aggregates");
  return {
    iterations: opts.planIterations,
    microsPerEnrolment: (ms * 1000) / opts.planIterations,
    enrolmentsPerSecond: opts.planIterations / (ms / 1000),
  };
}

/** The result as the Markdown table recorded in bench/README.md. */
export function formatPipelineResult(r: PipelineBenchResult): string {
  const o = r.options;
  return [
    `pipeline bench: ${o.windows} windows (+${o.warmup} warm-up) of ~${o.units} units, ` +
    `${o.enrolments} enrolments/window over ${o.courses} courses, ~${o.rows} prior rows, ` +
    `${fmt(o.completing * 100)}% completing, seed ${o.seed}`,
    "",
    markdownTable([
      ["metric", "value"],
      ["units processed", fmt(r.units)],
      ["messages", fmt(r.messages)],
      ["enrolments", fmt(r.enrolments)],
      ["completions", fmt(r.completions)],
      ["processWindow time", `${fmt(r.processSeconds, 2)} s`],
      ["units/s", fmt(r.unitsPerSecond)],
      ["windows/s", fmt(r.windowsPerSecond, 1)],
      [
        "window p50 / p95 / max",
        `${fmt(r.windowMs.p50, 2)} / ${fmt(r.windowMs.p95, 2)} / ${fmt(r.windowMs.max, 2)} ms`,
      ],
      ["parse + window build (not in the above)", `${fmt(r.parseMsPerWindow, 2)} ms/window`],
      [
        `heap used (${r.heap.method === "gc" ? "after forced GC" : "post-GC floor"})`,
        `${mib(r.heap.startBytes)} → ${mib(r.heap.endBytes)} MiB ` +
        `(${r.heap.growthBytes >= 0 ? "+" : ""}${
          mib(r.heap.growthBytes)
        } MiB over ${o.windows} windows)`,
      ],
      ["RSS", `${mib(r.heap.rssStartBytes)} → ${mib(r.heap.rssEndBytes)} MiB`],
      ["planEnrolment", `${fmt(r.plan.microsPerEnrolment, 1)} µs/enrolment`],
      ["planEnrolment throughput", `${fmt(r.plan.enrolmentsPerSecond)} enrolments/s`],
    ]),
  ].join("\n");
}

if (import.meta.main) {
  const { num, has } = flags(Deno.args);
  const result = await runPipelineBench({
    windows: num("windows", 200),
    warmup: num("warmup", 20),
    enrolments: num("enrolments", 200),
    units: num("units", 1000),
    courses: num("courses", 20),
    rows: num("rows", 20),
    completing: num("completing", 0.1),
    seed: num("seed", 42),
    planIterations: num("plan-iterations", 20_000),
  });
  console.log(has("json") ? JSON.stringify(result) : formatPipelineResult(result));
  if (!has("json")) {
    console.log(
      `\n${Deno.build.target}, ${navigator.hardwareConcurrency} cores (shared with the stack's ` +
        `JVMs), load average ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")}, ` +
        `deno ${Deno.version.deno}, ${new Date().toISOString()}`,
    );
  }
}
