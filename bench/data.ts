/**
 * Seeded, realistic course data shared by the benchmarks: courses with units
 * and optional leaves, enrolments with prior consumption rows, and
 * `batch-enrolment-update` events carrying 1–3 completed contents each.
 *
 * Everything derives from a seed, so two runs with the same options see the
 * same data and their numbers are comparable.
 *
 * @module
 */

import type { EnrolmentKey } from "../lib/event.ts";
import type { ConsumptionRow } from "../lib/ports.ts";

/** A small, fast PRNG (mulberry32): deterministic for a seed, good enough for test data. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in `[min, max]`. */
export function randomInt(random: () => number, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/** Fisher–Yates shuffle in place. */
export function shuffle<T>(random: () => number, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/** Shape of every generated course. */
export interface CourseShape {
  /** Leaf contents per course. */
  leaves: number;
  /** Units (child collections) per course; leaves are split evenly between them. */
  units: number;
  /** Optional leaves per course, taken from the end of the last unit. */
  optional: number;
}

/** The shape the brief asks for: ~50 leaves in 5 units, a couple of them optional. */
export const DEFAULT_SHAPE: CourseShape = { leaves: 50, units: 5, optional: 2 };

/** One generated course. */
export interface Course {
  id: string;
  /** Leaf content ids, in unit order. */
  leaves: string[];
  /** Leaves that count towards completion (leaves minus optional ones). */
  required: string[];
  /** Relation-cache sets of the course, as other platform jobs write them. */
  sets: Record<string, string[]>;
}

/** A course `id` of `shape`: unit `u` holds a contiguous slice of the leaves. */
export function makeCourse(id: string, shape: CourseShape = DEFAULT_SHAPE): Course {
  const k = (node: string, kind: string) => `${id}:${node}:${kind}`;
  const leaves = Array.from({ length: shape.leaves }, (_, i) => `${id}-R${i}`);
  const optional = leaves.slice(leaves.length - shape.optional);
  const sets: Record<string, string[]> = {
    [k(id, "leafnodes")]: leaves,
    [k(id, "optionalnodes")]: optional,
  };
  const perUnit = Math.ceil(shape.leaves / shape.units);
  for (let u = 0; u < shape.units; u++) {
    const unitId = `${id}-U${u}`;
    const unitLeaves = leaves.slice(u * perUnit, (u + 1) * perUnit);
    sets[k(unitId, "leafnodes")] = unitLeaves;
    const unitOptional = unitLeaves.filter((c) => optional.includes(c));
    if (unitOptional.length > 0) sets[k(unitId, "optionalnodes")] = unitOptional;
    for (const leaf of unitLeaves) sets[k(leaf, "ancestors")] = [unitId, id];
  }
  const optionalSet = new Set(optional);
  return { id, leaves, required: leaves.filter((c) => !optionalSet.has(c)), sets };
}

/** One enrolment's prior state and the contents its events will complete. */
export interface EnrolmentPlanData {
  key: EnrolmentKey;
  course: Course;
  /** Rows before the enrolment's contents were completed; see {@linkcode storedRows}. */
  rows: ConsumptionRow[];
  /** Contents the events complete, in the order they are sent. */
  targets: string[];
  /** Whether the events finish every required leaf, so the enrolment completes. */
  completes: boolean;
}

/**
 * An enrolment whose events complete `targetCount` contents. A completing
 * enrolment has every other required leaf stored at status 2, so the targets
 * finish it; any other enrolment has `rowCount` prior rows and never sees
 * its first required leaf completed, so it stays in progress whatever the
 * random draw.
 */
export function makeEnrolment(
  random: () => number,
  key: EnrolmentKey,
  course: Course,
  opts: { completes: boolean; rowCount: number; targetCount: number },
): EnrolmentPlanData {
  if (opts.completes) {
    const required = shuffle(random, [...course.required]);
    const targets = required.slice(0, opts.targetCount);
    const rows = required.slice(opts.targetCount).map((contentId) => ({
      contentId,
      status: 2,
      viewCount: randomInt(random, 1, 3),
      completedCount: 1,
    }));
    return { key, course, rows, targets, completes: true };
  }
  // The first required leaf is held back: neither stored as 2 nor a target.
  const pool = shuffle(random, course.leaves.filter((c) => c !== course.required[0]));
  const rows: ConsumptionRow[] = pool.slice(0, opts.rowCount).map((contentId) => {
    const done = random() < 0.6;
    return {
      contentId,
      status: done ? 2 : 1,
      viewCount: randomInt(random, 1, 3),
      completedCount: done ? 1 : 0,
    };
  });
  // Targets: mostly contents not yet stored, some started ones (status 1) finishing.
  const started = rows.filter((r) => r.status === 1).map((r) => r.contentId);
  const fresh = pool.slice(opts.rowCount);
  const candidates = shuffle(random, [...fresh, ...started]);
  return {
    key,
    course,
    rows: [
      ...rows,
      { contentId: course.required[0], status: 1, viewCount: 1, completedCount: 0 },
    ],
    targets: candidates.slice(0, opts.targetCount),
    completes: false,
  };
}

/**
 * The rows as they are stored when the job reads them. lms-service writes a
 * content's row with status 2 before it publishes the event (SPEC §1), and
 * the job writes only the counters, never `status`: without these rows, a
 * content completed in one window reads back as status 1 in the next and
 * the enrolment never completes. Counters of a new row are left unset (0
 * here, null in Cassandra), as upstream leaves them.
 *
 * A completing enrolment's last target is withheld (its row appears only
 * through the job's counter write). With every row at status 2 up front, the
 * enrolment would complete on its first event and the filter would then skip
 * its later events and their AUDIT events: correct, but the expected output
 * would depend on where windows happen to close.
 */
export function storedRows(e: EnrolmentPlanData): ConsumptionRow[] {
  const rows = new Map(e.rows.map((r) => [r.contentId, r]));
  const upstream = e.completes ? e.targets.slice(0, -1) : e.targets;
  for (const contentId of upstream) {
    const prior = rows.get(contentId);
    rows.set(contentId, {
      contentId,
      status: 2,
      viewCount: prior?.viewCount ?? 0,
      completedCount: prior?.completedCount ?? 0,
    });
  }
  return [...rows.values()];
}

/** A `batch-enrolment-update` event value, as lms-service publishes it. */
export function updateEvent(key: EnrolmentKey, contentIds: string[]): Record<string, unknown> {
  return {
    eid: "BE_JOB_REQUEST",
    ets: 0,
    mid: `LP.${key.userId}.${contentIds.join("+")}`,
    actor: { id: "Course Batch Updater", type: "System" },
    context: { pdata: { ver: "1.0", id: "org.sunbird.platform" } },
    object: { id: `${key.batchId}_${key.userId}`, type: "CourseBatchEnrolment" },
    edata: {
      action: "batch-enrolment-update",
      iteration: 1,
      ...key,
      contents: contentIds.map((contentId) => ({ contentId, status: 2 })),
    },
  };
}

/**
 * Splits each enrolment's targets into events of 1–3 contents and interleaves
 * the enrolments' events at random, keeping each enrolment's own order (as a
 * learner's progress arrives in order).
 */
export function interleavedEvents(
  random: () => number,
  enrolments: EnrolmentPlanData[],
): Record<string, unknown>[] {
  const queues = enrolments.map((e) => {
    const events: Record<string, unknown>[] = [];
    for (let i = 0; i < e.targets.length;) {
      const n = Math.min(randomInt(random, 1, 3), e.targets.length - i);
      events.push(updateEvent(e.key, e.targets.slice(i, i + n)));
      i += n;
    }
    return events;
  });
  // Draw from the queues in proportion to what they have left: a uniform interleave.
  const slots = queues.flatMap((q, i) => q.map(() => i));
  shuffle(random, slots);
  const next = queues.map(() => 0);
  return slots.map((i) => queues[i][next[i]++]);
}

/** The percentile `p` (0–1) of sorted `values`, nearest rank. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** Formats rows as a Markdown table (first row is the header). */
export function markdownTable(rows: (string | number)[][]): string {
  const [head, ...body] = rows.map((r) => r.map(String));
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...body.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

/** A number with `digits` decimals and thousands separators. */
export function fmt(n: number, digits = 0): string {
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return fmt(bytes / 1024 / 1024, 1);
}

/**
 * `--name=value` and `--name` flags. `num` reads a non-negative number (or
 * the fallback) and stops with a message naming a bad flag; `has` tells a
 * bare switch. No dependency: the benchmarks run offline.
 */
export function flags(args: string[]) {
  const values = new Map<string, string>();
  for (const arg of args) {
    const match = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    if (!match) throw new Error(`unexpected argument ${arg}`);
    values.set(match[1], match[2] ?? "true");
  }
  return {
    num(name: string, fallback: number): number {
      const raw = values.get(name);
      if (raw === undefined) return fallback;
      const value = Number(raw);
      if (!Number.isFinite(value) || value < 0) throw new Error(`--${name}=${raw}: not a number`);
      return value;
    },
    list(name: string, fallback: number[]): number[] {
      const raw = values.get(name);
      if (raw === undefined) return fallback;
      return raw.split(",").map((v) => {
        const value = Number(v);
        if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name}=${raw}: bad list`);
        return value;
      });
    },
    str: (name: string, fallback: string) => values.get(name) ?? fallback,
    has: (name: string) => values.has(name),
  };
}
