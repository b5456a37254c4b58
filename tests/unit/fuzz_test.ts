/**
 * Fuzz suite for SPEC §3's "hostile input" rules: a seeded corpus of
 * valid and hostile messages (`tests/support/hostile.ts`) goes as raw bytes
 * through the real `Runner` and `processWindow` on the in-memory stubs, and
 * the outcome is checked against an independent model of SPEC §3, §4, §6
 * and §8 written here (no lib code computes an expectation).
 *
 * `FUZZ_SEED=<n>` replays a corpus; `FUZZ_COUNT=<n>` changes its size.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { produceRequests } from "../../lib/kafka.ts";
import { processWindow, type WindowSummary } from "../../lib/pipeline.ts";
import type { InputMessage, OutputEvent } from "../../lib/ports.ts";
import { Runner } from "../../lib/runner.ts";
import type { Window } from "../../lib/window.ts";
import { MemorySource, parseInput, stubWorld } from "../support/stubs.ts";
import { describeError, rebuildError, recordedCases } from "../support/driver_errors.ts";
import {
  generateCorpus,
  type HostileMessage,
  LONG_MARKER,
  Prng,
  worldSets,
  worldStatuses,
} from "../support/hostile.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 20261125);
const COUNT = Number(Deno.env.get("FUZZ_COUNT") ?? 10_500);
const BIG_MESSAGES = 6;
const PARTITIONS = 3;
const TOPIC = "input";
/** SPEC §2 `KAFKA_FAILED_EVENT_MAX_BYTES` default. */
const FAILED_MAX_BYTES = 921_600;
/** SPEC §3: the `value` of a truncated failed event. */
const TRUNCATED_VALUE_MAX_BYTES = 65_536;
const ID_MAX_BYTES = 512;
/** The broker's default `message.max.bytes`. */
const BROKER_MAX_BYTES = 1_048_588;
const ACTION = "batch-enrolment-update";

const encoder = new TextEncoder();
const utf8Length = (s: string) => encoder.encode(s).length;
const lossy = new TextDecoder("utf-8");
const strict = new TextDecoder("utf-8", { fatal: true });
const md5 = (s: string) => createHash("md5").update(encoder.encode(s)).digest("hex");
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

// ------------------------------------------------------------------ the model (SPEC §3)

interface Key {
  userId: string;
  courseId: string;
  batchId: string;
}

type Outcome =
  | { kind: "failed" }
  /** `fields`: the identifiers over 512 bytes (any may be named); `wouldBe`: checksums of the units it would have had. */
  | { kind: "failed-id"; fields: string[]; wouldBe: string[] }
  | { kind: "skipped" }
  | { kind: "units"; key: Key; contents: string[] };

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const own = (o: Record<string, unknown>, k: string) => Object.hasOwn(o, k) ? o[k] : undefined;
const checksum = (k: Key, contentId: string) =>
  md5(`${k.courseId}|${k.batchId}|${k.userId}|${contentId}|2`).toUpperCase();
/** The marker of an acknowledged certificate request, kept beside the checksums. */
const certificateMarker = (k: Key) =>
  `CERT-${md5(`${k.courseId}|${k.batchId}|${k.userId}|issue-certificate`).toUpperCase()}`;

/** What SPEC §3 says `value` amounts to. */
function classify(value: Uint8Array | null): Outcome {
  if (value === null || value.length === 0) return { kind: "failed" };
  let json: unknown;
  try {
    json = JSON.parse(strict.decode(value));
  } catch {
    return { kind: "failed" };
  }
  if (!isObject(json)) return { kind: "failed" };
  const edata = own(json, "edata");
  if (!isObject(edata)) return { kind: "failed" };
  const action = own(edata, "action");
  if (typeof action !== "string" || action.toLowerCase() !== ACTION) return { kind: "skipped" };
  const ids = ["userId", "courseId", "batchId"].map((f) => own(edata, f));
  if (!ids.every((v) => typeof v === "string" && v !== "")) return { kind: "failed" };
  const [userId, courseId, batchId] = ids as string[];
  const key = { userId, courseId, batchId };
  const list = own(edata, "contents");
  const entries = Array.isArray(list) ? list : [];
  const units: string[] = [];
  for (const entry of entries) {
    if (!isObject(entry)) continue;
    const id = own(entry, "contentId");
    if (own(entry, "status") === 2 && typeof id === "string" && id.trim() !== "") units.push(id);
  }
  if (units.length === 0) return { kind: "skipped" };
  const fields = (["userId", "courseId", "batchId"] as const).filter((f) =>
    utf8Length(key[f]) > ID_MAX_BYTES
  ) as string[];
  const longUnits = units.filter((c) => utf8Length(c) > ID_MAX_BYTES);
  if (longUnits.length > 0) fields.push("contentId");
  if (fields.length > 0) {
    // Checksums only a unit with a long identifier has (others may come from valid events).
    const wouldBe = (fields.some((f) => f !== "contentId") ? units : longUnits)
      .map((c) => checksum(key, c));
    return { kind: "failed-id", fields, wouldBe };
  }
  return { kind: "units", key, contents: [...new Set(units)] };
}

// ------------------------------------------------------------------ harness

/** Up to three examples and a count per broken property. */
class Violations {
  readonly found = new Map<string, { count: number; examples: string[] }>();
  add(property: string, example: string): void {
    const v = this.found.get(property) ?? { count: 0, examples: [] };
    v.count++;
    if (v.examples.length < 3) v.examples.push(example);
    this.found.set(property, v);
  }
  /** Throws with the count and first examples of `property`'s violations. */
  check(property: string): void {
    const v = this.found.get(property);
    if (!v) return;
    assert.fail(`${property}: ${v.count} violation(s); first:\n  - ${v.examples.join("\n  - ")}`);
  }
}

const enrolmentKey = (k: Key) => `${k.userId}|${k.courseId}|${k.batchId}`;
const show = (s: string, n = 160) => JSON.stringify(s.length > n ? `${s.slice(0, n)}…` : s);

interface Delivered {
  index: number;
  message: HostileMessage;
  input: InputMessage;
  outcome: Outcome;
}

function describeMessage(d: Delivered): string {
  const text = d.message.value === null ? "<null value>" : lossy.decode(d.message.value);
  return `#${d.index} [${d.message.category}] p${d.input.partition}@${d.input.offset} ` +
    `${d.message.value?.length ?? 0} B ${show(text)}`;
}

/** Records every string a store is called with, so long identifiers can be caught. */
function spy<T extends object>(
  target: T,
  name: string,
  onCall: (what: string, args: unknown[]) => void,
): T {
  return new Proxy(target, {
    get(t, prop, receiver) {
      const value = Reflect.get(t, prop, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        onCall(`${name}.${String(prop)}`, args);
        return value.apply(t, args);
      };
    },
  });
}

function* strings(value: unknown, depth = 0): Generator<string> {
  if (typeof value === "string") yield value;
  else if (depth > 6 || value === null || typeof value !== "object") return;
  else if (value instanceof Map) {
    for (const [k, v] of value) {
      yield* strings(k, depth + 1);
      yield* strings(v, depth + 1);
    }
  } else if (Array.isArray(value) || value instanceof Set) {
    for (const v of value) yield* strings(v, depth + 1);
  } else {
    for (const [k, v] of Object.entries(value)) {
      yield k;
      yield* strings(v, depth + 1);
    }
  }
}

// ------------------------------------------------------------------ the run

interface RunResult {
  delivered: Delivered[];
  bySource: Map<string, Delivered>;
  world: ReturnType<typeof stubWorld>;
  summaries: WindowSummary[];
  windows: number[][];
  escapes: string[];
  source: MemorySource;
  storeCalls: { what: string; args: unknown[] }[];
  seeds: Seeds;
  runtimeMs: number;
  stoppedEarly: string | null;
}

interface SeedRow {
  status: number;
  viewCount: number;
  completedCount: number;
}
interface Seeds {
  rows: Map<string, Map<string, SeedRow>>;
  /** Enrolment status as seeded; absent: no row. */
  enrolments: Map<string, number | null>;
  keys: Map<string, Key>;
}

const sourceId = (topic: unknown, partition: unknown, offset: unknown) =>
  `${String(topic)}/${String(partition)}/${String(offset)}`;

function partitionOf(key: string | null, index: number): number {
  if (key === null) return index % PARTITIONS;
  return parseInt(md5(key).slice(0, 8), 16) % PARTITIONS;
}

/**
 * Seeds what upstream writes before it publishes (SPEC §1): a status-2
 * consumption row for every content a valid event completes, some other
 * rows, and the enrolment row (status 1, 2, null, or none).
 */
function seedWorld(
  world: ReturnType<typeof stubWorld>,
  delivered: Delivered[],
  seed: number,
): Seeds {
  const r = new Prng(seed ^ 0x5eed);
  const seeds: Seeds = { rows: new Map(), enrolments: new Map(), keys: new Map() };
  const sets = worldSets();
  for (const d of delivered) {
    if (d.outcome.kind !== "units") continue;
    const { key, contents } = d.outcome;
    const id = enrolmentKey(key);
    let rows = seeds.rows.get(id);
    if (!rows) {
      rows = new Map();
      seeds.rows.set(id, rows);
      seeds.keys.set(id, key);
      const roll = r.next();
      const status = roll < 0.6 ? 1 : roll < 0.7 ? 2 : roll < 0.8 ? null : undefined;
      if (status !== undefined) {
        seeds.enrolments.set(id, status);
        world.progress.seedEnrolment(key, status);
      }
      // Other contents of the course the learner has rows for.
      const leaves = sets[`${key.courseId}:${key.courseId}:leafnodes`] ?? [];
      for (const leaf of leaves) {
        if (r.chance(0.4)) {
          const s = r.chance(0.6) ? 2 : 1;
          const row = { status: s, viewCount: 1 + r.int(3), completedCount: s === 2 ? 1 : 0 };
          rows.set(leaf, row);
        }
      }
    }
    for (const c of contents) {
      const existing = rows.get(c);
      if (existing?.status === 2) continue;
      const viewCount = existing ? existing.viewCount : r.pick([0, 0, 1, 3]);
      const completedCount = viewCount === 0 ? 0 : r.pick([0, 1, 2]);
      rows.set(c, { status: 2, viewCount, completedCount });
    }
  }
  for (const [id, rows] of seeds.rows) {
    for (const [contentId, row] of rows) {
      world.progress.seedConsumption(seeds.keys.get(id)!, { contentId, ...row });
    }
  }
  return seeds;
}

/** Batches of 1–64 messages of one partition, partitions interleaved, as a consumer fetches them. */
function* batches(delivered: Delivered[], seed: number): Generator<Delivered[]> {
  const r = new Prng(seed ^ 0xba7c4);
  const queues: Delivered[][] = Array.from({ length: PARTITIONS }, () => []);
  for (const d of delivered) queues[d.input.partition].push(d);
  for (;;) {
    const pending = queues.filter((q) => q.length > 0);
    if (pending.length === 0) return;
    yield r.pick(pending).splice(0, 1 + r.int(64));
  }
}

async function run(seed: number): Promise<RunResult> {
  const corpus = generateCorpus(seed, { count: COUNT, bigMessages: BIG_MESSAGES });
  const offsets = new Array(PARTITIONS).fill(0);
  const delivered: Delivered[] = corpus.map((message, index) => {
    const partition = partitionOf(message.key, index);
    const input: InputMessage = {
      topic: TOPIC,
      partition,
      offset: String(offsets[partition]++),
      key: message.key,
      value: message.value,
      timestamp: 1_700_000_000_000 + index,
    };
    return { index, message, input, outcome: classify(message.value) };
  });
  const bySource = new Map(
    delivered.map((d) => [sourceId(TOPIC, d.input.partition, d.input.offset), d]),
  );

  const world = stubWorld({ sets: worldSets(), statuses: worldStatuses() });
  const seeds = seedWorld(world, delivered, seed);
  const storeCalls: { what: string; args: unknown[] }[] = [];
  const record = (what: string, args: unknown[]) => storeCalls.push({ what, args });
  const deps = {
    ...world.deps,
    progress: spy(world.progress, "progress", record),
    relations: spy(world.relations, "relations", record),
    dedup: spy(world.dedup, "dedup", record),
    collections: spy(world.collections, "collections", record),
  };

  const source = new MemorySource();
  const summaries: WindowSummary[] = [];
  const windows: number[][] = [];
  const escapes: string[] = [];
  const runner = new Runner({
    source,
    parse: parseInput,
    clock: world.clock,
    limits: { maxUnits: 200, maxWaitMs: 25 },
    metrics: world.metrics,
    process: async (window: Window) => {
      const indices = window.messages.map(({ message: m }) =>
        bySource.get(sourceId(m.topic, m.partition, m.offset))?.index ?? -1
      );
      windows.push(indices);
      try {
        const summary = await processWindow(window, deps);
        summaries.push(summary);
        return summary;
      } catch (error) {
        const first = indices.slice(0, 3).map((i) => describeMessage(delivered[i])).join("; ");
        escapes.push(
          `window of ${indices.length} messages (${first}…) rejected: ${
            String(error).slice(0, 300)
          }`,
        );
        throw error;
      }
    },
  });

  const onRejection = (e: PromiseRejectionEvent) => {
    escapes.push(`unhandled rejection: ${String(e.reason).slice(0, 300)}`);
    e.preventDefault();
  };
  const onError = (e: ErrorEvent) => {
    escapes.push(`uncaught error: ${String(e.error ?? e.message).slice(0, 300)}`);
    e.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  const started = performance.now();
  let stoppedEarly: string | null = null;
  try {
    let ended: unknown = null;
    const running = runner.run().catch((error) => {
      ended = error ?? new Error("rejected");
    });
    for (const batch of batches(delivered, seed)) {
      try {
        await source.deliverMessages(batch.map((d) => d.input));
      } catch (error) {
        escapes.push(
          `handle() rejected on a batch from ${describeMessage(batch[0])}: ${
            String(error).slice(0, 300)
          }`,
        );
      }
      world.clock.advance(10);
      if (ended !== null) {
        stoppedEarly = `runner stopped at a batch from message #${
          batch[0].index
        } of ${delivered.length}: ${String(ended).slice(0, 300)}`;
        break;
      }
    }
    await runner.stop(30_000);
    await running;
    if (ended !== null && stoppedEarly === null) stoppedEarly = `runner ended: ${String(ended)}`;
  } finally {
    globalThis.removeEventListener("unhandledrejection", onRejection);
    globalThis.removeEventListener("error", onError);
  }
  const runtimeMs = performance.now() - started;
  return {
    delivered,
    bySource,
    world,
    summaries,
    windows,
    escapes,
    source,
    storeCalls,
    seeds,
    runtimeMs,
    stoppedEarly,
  };
}

// ------------------------------------------------------------------ expectations (SPEC §4, §6)

interface Expected {
  rows: Map<string, Map<string, SeedRow>>;
  aggregates: Map<string, number>;
  enrolments: Map<
    string,
    {
      status: number | null;
      progress?: number;
      contentStatus: Record<string, number>;
      completed: boolean;
    }
  >;
  audits: Map<string, number>;
  certs: Map<string, number>;
  checksums: Set<string>;
  /** Enrolments whose course has no structure and is not retired. */
  failedEnrolments: Map<string, Set<string>>;
  mids: Map<string, string>;
}

function midOf(prefix: string, k: Key, contentId: string, type: string): string {
  const h = md5(`${k.userId}|${k.courseId}|${k.batchId}|${contentId}|${type}`);
  return `${prefix}.${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${
    h.slice(20)
  }`;
}

const auditKey = (k: Key, objectId: string, type: string) =>
  [k.userId, k.courseId, k.batchId, objectId, type].join("\u0001");

function expectations(result: RunResult): Expected {
  const sets = worldSets();
  const statuses = worldStatuses();
  const set = (k: string) => sets[k] ?? [];
  const inputs = new Map<string, { key: Key; contents: Set<string> }>();
  for (const d of result.delivered) {
    if (d.outcome.kind !== "units") continue;
    const id = enrolmentKey(d.outcome.key);
    const e = inputs.get(id) ?? { key: d.outcome.key, contents: new Set<string>() };
    d.outcome.contents.forEach((c) => e.contents.add(c));
    inputs.set(id, e);
  }
  const ex: Expected = {
    rows: new Map(),
    aggregates: new Map(),
    enrolments: new Map(),
    audits: new Map(),
    certs: new Map(),
    checksums: new Set(),
    failedEnrolments: new Map(),
    mids: new Map(),
  };
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  for (const [id, rows] of result.seeds.rows) {
    ex.rows.set(id, new Map([...rows].map(([c, r]) => [c, { ...r }])));
  }
  for (const [id, status] of result.seeds.enrolments) {
    ex.enrolments.set(id, { status, contentStatus: {}, completed: false });
  }
  for (const [id, { key, contents }] of inputs) {
    const { courseId: c, batchId: b, userId: u } = key;
    const L = set(`${c}:${c}:leafnodes`);
    if (L.length === 0) {
      if (statuses[c] === "Retired") contents.forEach((x) => ex.checksums.add(checksum(key, x)));
      else ex.failedEnrolments.set(id, contents);
      continue;
    }
    const rows = result.seeds.rows.get(id)!;
    // Step 3/4: counters once per content (de-duplication on), AUDIT by the stored counters.
    for (const x of contents) {
      const seed = rows.get(x)!;
      ex.rows.get(id)!.set(x, {
        status: seed.status,
        viewCount: seed.viewCount + 1,
        completedCount: seed.completedCount + 1,
      });
      if (seed.viewCount === 0) {
        bump(ex.audits, auditKey(key, x, "start"));
        ex.mids.set(auditKey(key, x, "start"), midOf("LP.AUDIT", key, x, "start"));
      }
      if (seed.completedCount === 0) {
        bump(ex.audits, auditKey(key, x, "complete"));
        ex.mids.set(auditKey(key, x, "complete"), midOf("LP.AUDIT", key, x, "complete"));
      }
      ex.checksums.add(checksum(key, x));
    }
    // Step 5: every input is already a status-2 row (seeded as upstream writes it).
    const M = new Map([...rows].map(([x, r]) => [x, r.status]));
    for (const x of contents) M.set(x, 2);
    const D = new Set([...M].filter(([, s]) => s === 2).map(([x]) => x));
    const without = (a: string[], o: string[]) => a.filter((x) => !o.includes(x));
    const R = without(L, set(`${c}:${c}:optionalnodes`));
    const k = R.filter((x) => D.has(x)).length;
    const complete = k >= R.length;
    ex.aggregates.set(`${c}|cb:${b}|${u}`, k);
    const units = new Set<string>();
    for (const x of M.keys()) set(`${c}:${x}:ancestors`).forEach((a) => a !== c && units.add(a));
    for (const unit of units) {
      const Ru = without(set(`${c}:${unit}:leafnodes`), set(`${c}:${unit}:optionalnodes`));
      ex.aggregates.set(`${unit}|cb:${b}|${u}`, Ru.filter((x) => D.has(x)).length);
    }
    // Step 8 with the filter on.
    const seeded = result.seeds.enrolments.get(id);
    if (!result.seeds.enrolments.has(id) || seeded === 2) continue;
    ex.enrolments.set(id, {
      status: complete ? 2 : 1,
      progress: k,
      contentStatus: Object.fromEntries(M),
      completed: complete,
    });
    if (complete) {
      bump(ex.audits, auditKey(key, u, "enrol-complete"));
      ex.mids.set(auditKey(key, u, "enrol-complete"), midOf("LP.AUDIT", key, "", "enrol-complete"));
      bump(ex.certs, id);
      ex.mids.set(`cert\u0001${id}`, midOf("LP.CERT", key, "", "issue-certificate"));
      ex.checksums.add(certificateMarker(key));
    }
  }
  return ex;
}

// ------------------------------------------------------------------ checks

function checkOutcomes(r: RunResult, v: Violations, ex: Expected): void {
  const P = "every message has exactly one outcome";
  const N = r.delivered.length;
  const sum = (f: keyof WindowSummary) =>
    r.summaries.reduce((s, w) => s + (typeof w[f] === "number" ? (w[f] as number) : 0), 0);
  const modelFailed = r.delivered.filter((d) =>
    d.outcome.kind === "failed" || d.outcome.kind === "failed-id"
  );
  const modelSkipped = r.delivered.filter((d) => d.outcome.kind === "skipped");
  if (sum("messages") !== N) {
    v.add(P, `windows hold ${sum("messages")} messages, ${N} were delivered`);
  }
  if (sum("skippedMessages") !== modelSkipped.length) {
    v.add(P, `${sum("skippedMessages")} skipped counted, ${modelSkipped.length} expected`);
  }
  if (sum("failedMessages") !== modelFailed.length) {
    v.add(P, `${sum("failedMessages")} failed messages counted, ${modelFailed.length} expected`);
  }
  const seen = new Map<number, number>();
  for (const event of r.world.sink.events.filter((e) => e.topic === "failed")) {
    const failure = (event.value as { failure?: { source?: Record<string, unknown> } }).failure;
    const s = failure?.source;
    if (!s) {
      v.add(P, `a failed event without failure.source: ${show(JSON.stringify(event.value), 200)}`);
      continue;
    }
    const d = r.bySource.get(sourceId(s.topic, s.partition, s.offset));
    if (!d) {
      v.add(P, `failure.source ${JSON.stringify(s)} names no input message`);
      continue;
    }
    if (d.outcome.kind === "units") {
      if (!ex.failedEnrolments.has(enrolmentKey(d.outcome.key))) {
        v.add(P, `a failed event for a message that should not fail: ${describeMessage(d)}`);
      }
      continue; // a failed enrolment: checked below
    }
    if (d.outcome.kind === "skipped") {
      v.add(P, `a failed event for a message that should be skipped: ${describeMessage(d)}`);
      continue;
    }
    seen.set(d.index, (seen.get(d.index) ?? 0) + 1);
  }
  for (const d of modelFailed) {
    const n = seen.get(d.index) ?? 0;
    if (n !== 1) v.add(P, `${n} failed events (expected 1) for ${describeMessage(d)}`);
  }
  // Failed enrolments: replayable, naming the last message of the enrolment in its window.
  const windowOf = new Map<number, number>();
  r.windows.forEach((w, i) => w.forEach((m) => windowOf.set(m, i)));
  const covered = new Map<string, Set<string>>();
  for (const event of r.world.sink.events.filter((e) => e.topic === "failed")) {
    const value = event.value as Record<string, unknown> & {
      failure?: { source?: Record<string, unknown> };
    };
    const s = value.failure?.source;
    const d = s && r.bySource.get(sourceId(s.topic, s.partition, s.offset));
    if (!d || d.outcome.kind !== "units") continue;
    const id = enrolmentKey(d.outcome.key);
    const replay = classify(encoder.encode(JSON.stringify({ ...value, failure: undefined })));
    if (replay.kind !== "units" || enrolmentKey(replay.key) !== id) {
      v.add(
        P,
        `failed enrolment ${show(id)} is not a replayable event of it: ${
          show(JSON.stringify(value), 200)
        }`,
      );
      continue;
    }
    const set = covered.get(id) ?? new Set();
    replay.contents.forEach((c) => set.add(c));
    covered.set(id, set);
    const w = windowOf.get(d.index);
    const last = Math.max(
      ...(r.windows[w!] ?? []).filter((i) => {
        const o = r.delivered[i].outcome;
        return o.kind === "units" && enrolmentKey(o.key) === id;
      }).map((i) => Number(r.delivered[i].input.offset)),
    );
    if (Number(d.input.offset) !== last) {
      v.add(
        P,
        `failed enrolment ${
          show(id)
        } names offset ${d.input.offset}, its last message in the window is ${last}`,
      );
    }
  }
  for (const [id, contents] of ex.failedEnrolments) {
    const got = covered.get(id) ?? new Set();
    const missing = [...contents].filter((c) => !got.has(c));
    if (missing.length > 0) {
      v.add(P, `failed enrolment ${show(id)}: units ${show(missing.join(","))} in no failed event`);
    }
  }
  // Everything consumed is committed.
  const committed = new Map<number, string>();
  for (const batch of r.source.commits) for (const c of batch) committed.set(c.partition, c.offset);
  const counts = new Array(PARTITIONS).fill(0);
  r.delivered.forEach((d) => counts[d.input.partition]++);
  counts.forEach((n, p) => {
    if (n > 0 && committed.get(p) !== String(n)) {
      v.add(P, `partition ${p}: committed ${committed.get(p)}, ${n} messages delivered`);
    }
  });
}

function checkApplied(r: RunResult, v: Violations, ex: Expected): void {
  const P = "every valid event is applied as SPEC §6 says";
  const { progress, dedup, sink } = r.world;
  for (const [id, rows] of ex.rows) {
    const got = progress.consumption.get(id) ?? new Map();
    for (const [c, want] of rows) {
      const g = got.get(c);
      if (!g || g.viewCount !== want.viewCount || g.completedCount !== want.completedCount) {
        v.add(
          P,
          `counters of ${show(id)} / ${show(c)}: got ${
            JSON.stringify(g && { view: g.viewCount, completed: g.completedCount })
          }, want ${JSON.stringify({ view: want.viewCount, completed: want.completedCount })}`,
        );
      }
    }
    for (const c of got.keys()) {
      if (!rows.has(c)) {
        v.add(P, `counters written for ${show(id)} / ${show(c)}, which is no input`);
      }
    }
  }
  for (const [k, want] of ex.aggregates) {
    const got = progress.aggregates.get(k)?.completedCount;
    if (got !== want) v.add(P, `aggregate ${show(k)}: got ${got}, want ${want}`);
  }
  for (const k of progress.aggregates.keys()) {
    if (!ex.aggregates.has(k)) v.add(P, `unexpected aggregate row ${show(k)}`);
  }
  for (const [id, want] of ex.enrolments) {
    const got = progress.enrolments.get(id);
    const problems: string[] = [];
    if (!got) problems.push("row missing");
    else {
      if (got.status !== want.status) problems.push(`status ${got.status}, want ${want.status}`);
      if (got.progress !== want.progress) {
        problems.push(`progress ${got.progress}, want ${want.progress}`);
      }
      try {
        assert.deepEqual(got.contentStatus, want.contentStatus);
      } catch {
        problems.push(
          `contentstatus ${show(JSON.stringify(got.contentStatus), 120)}, want ${
            show(JSON.stringify(want.contentStatus), 120)
          }`,
        );
      }
      if (want.completed !== (typeof got.completedOn === "number")) {
        problems.push(`completedon ${got.completedOn}, want ${want.completed ? "set" : "unset"}`);
      }
    }
    if (problems.length > 0) v.add(P, `enrolment ${show(id)}: ${problems.join("; ")}`);
  }
  for (const id of progress.enrolments.keys()) {
    if (!ex.enrolments.has(id)) v.add(P, `an enrolment row was created for ${show(id)}`);
  }
  const audits = new Map<string, number>();
  for (const a of sink.on("audit")) {
    const k = auditKeyOf(a);
    audits.set(k, (audits.get(k) ?? 0) + 1);
  }
  const diff = (name: string, got: Map<string, number>, want: Map<string, number>) => {
    for (const k of new Set([...got.keys(), ...want.keys()])) {
      if ((got.get(k) ?? 0) !== (want.get(k) ?? 0)) {
        v.add(
          P,
          `${name} ${show(k.replaceAll("\u0001", " / "))}: ${got.get(k) ?? 0} sent, ${
            want.get(k) ?? 0
          } expected`,
        );
      }
    }
  };
  diff("AUDIT", audits, ex.audits);
  const certs = new Map<string, number>();
  for (const c of sink.on("cert")) {
    const e = c.edata as { userIds: string[]; courseId: string; batchId: string };
    const k = enrolmentKey({ userId: e.userIds[0], courseId: e.courseId, batchId: e.batchId });
    certs.set(k, (certs.get(k) ?? 0) + 1);
  }
  diff("certificate", certs, ex.certs);
  const stored = new Set(dedup.keys.keys());
  for (const c of ex.checksums) if (!stored.has(c)) v.add(P, `checksum ${c} not stored`);
  for (const c of stored) if (!ex.checksums.has(c)) v.add(P, `checksum ${c} stored, not expected`);
  for (const e of sink.events) {
    const u = e.value as { actor?: { id?: string }; edata?: { userIds?: string[] } };
    const userId = e.topic === "audit"
      ? u.actor?.id
      : e.topic === "cert"
      ? u.edata?.userIds?.[0]
      : undefined;
    if (userId !== undefined && e.key !== userId) {
      v.add(P, `${e.topic} event keyed ${show(e.key)}, its user is ${show(userId)}`);
    }
  }
}

/** The model's key of an AUDIT event as sent: its enrolment, object and action. */
function auditKeyOf(a: Record<string, unknown>): string {
  const ctx = a.context as { cdata?: { type: string; id: string }[] };
  const obj = a.object as { id: string; rollup?: { l1?: string } };
  return auditKey(
    {
      userId: (a.actor as { id: string }).id,
      courseId: String(obj.rollup?.l1),
      batchId: String(ctx.cdata?.find((c) => c.type === "CourseBatch")?.id),
    },
    obj.id,
    (a.edata as { type: string }).type,
  );
}

function checkMids(r: RunResult, v: Violations, ex: Expected): void {
  const P = "AUDIT and certificate mids are deterministic (SPEC §8)";
  for (const a of r.world.sink.on("audit")) {
    const k = auditKeyOf(a);
    const want = ex.mids.get(k);
    if (want && a.mid !== want) {
      v.add(P, `AUDIT ${show(k.replaceAll("\u0001", " / "))}: mid ${a.mid}, want ${want}`);
    }
  }
  for (const c of r.world.sink.on("cert")) {
    const e = c.edata as { userIds: string[]; courseId: string; batchId: string };
    const want = ex.mids.get(
      `cert\u0001${
        enrolmentKey({ userId: e.userIds[0], courseId: e.courseId, batchId: e.batchId })
      }`,
    );
    if (want && c.mid !== want) {
      v.add(P, `certificate of ${show(e.userIds[0])}: mid ${c.mid}, want ${want}`);
    }
  }
}

function depthOf(text: string): number {
  let depth = 0, max = 0, inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 92) i++;
      else if (ch === 34) inString = false;
    } else if (ch === 34) inString = true;
    else if (ch === 91 || ch === 123) max = Math.max(max, ++depth);
    else if (ch === 93 || ch === 125) depth--;
  }
  return max;
}

function checkFailedEvents(r: RunResult, v: Violations): void {
  const P = "failed events fit the broker and are truncated as SPEC §3 says";
  const ID = "identifiers over 512 bytes fail with their reason";
  for (const event of r.world.sink.events.filter((e) => e.topic === "failed")) {
    const value = event.value as Record<string, unknown> & {
      failure?: {
        source?: Record<string, unknown>;
        reason?: unknown;
        stage?: unknown;
        at?: unknown;
        job?: unknown;
      };
    };
    let text: string;
    try {
      text = produceRequests([event], { maxBytes: Number.MAX_SAFE_INTEGER, maxMessages: 1 })[0][0]
        .messages[0].value.toString();
    } catch (error) {
      v.add(P, `produceRequests cannot serialise a failed event: ${String(error).slice(0, 200)}`);
      continue;
    }
    const size = utf8Length(text);
    const s = value.failure?.source;
    const d = s && r.bySource.get(sourceId(s.topic, s.partition, s.offset));
    const what = d ? describeMessage(d) : show(text, 120);
    if (size > FAILED_MAX_BYTES) v.add(P, `a failed event of ${size} bytes: ${what}`);
    const f = value.failure;
    if (
      !f || typeof f.reason !== "string" || f.reason === "" || typeof f.stage !== "string" ||
      typeof f.at !== "number" || f.job !== "activity-aggregate-updater"
    ) {
      v.add(P, `failure object incomplete: ${show(JSON.stringify(f ?? null), 200)} for ${what}`);
    }
    if (!d || d.outcome.kind === "units" || d.outcome.kind === "skipped") continue;
    const raw = d.message.value ?? new Uint8Array();
    const decoded = lossy.decode(raw);

    // What the failed event would be whole, without its failure object.
    let parsed: unknown = undefined;
    try {
      parsed = JSON.parse(strict.decode(raw));
    } catch { /* not JSON */ }
    const whole = isObject(parsed) ? { ...parsed, failure: undefined } : { value: decoded };
    const wholeSize = utf8Length(JSON.stringify(whole));
    const deep = depthOf(decoded) > 1000;
    const mustTruncate = wholeSize + 150 > FAILED_MAX_BYTES;
    const mayTruncate = mustTruncate || deep || wholeSize + 8192 > FAILED_MAX_BYTES;
    const truncated = value.truncated === true;
    if (mustTruncate && !truncated) {
      v.add(P, `not truncated (whole it is ~${wholeSize} bytes): ${what}`);
    }
    if (truncated && !mayTruncate) {
      v.add(P, `truncated although it fits (${wholeSize} bytes): ${what}`);
    }
    if (truncated) {
      const keys = Object.keys(value).sort().join(",");
      if (keys !== "bytes,failure,sha256,truncated,value") {
        v.add(P, `truncated form has keys ${keys}: ${what}`);
      }
      if (typeof value.value !== "string") v.add(P, `truncated value is not a string: ${what}`);
      else {
        const n = utf8Length(value.value);
        if (n > TRUNCATED_VALUE_MAX_BYTES) v.add(P, `truncated value of ${n} bytes: ${what}`);
        if (!decoded.startsWith(value.value)) {
          v.add(P, `truncated value is not a prefix of the original decoded as UTF-8: ${what}`);
        }
        if (utf8Length(decoded) > TRUNCATED_VALUE_MAX_BYTES && n < TRUNCATED_VALUE_MAX_BYTES - 3) {
          v.add(
            P,
            `truncated value cut at ${n} bytes, not at the last boundary before ${TRUNCATED_VALUE_MAX_BYTES}: ${what}`,
          );
        }
      }
      if (value.bytes !== raw.length) {
        v.add(P, `bytes ${value.bytes}, the original has ${raw.length}: ${what}`);
      }
      if (value.sha256 !== sha256(raw)) {
        v.add(P, `sha256 ${show(String(value.sha256), 70)} is not that of the original: ${what}`);
      }
    } else if (isObject(parsed)) {
      const { failure: _f, ...rest } = value;
      const { failure: _g, ...orig } = parsed;
      if (JSON.stringify(rest) !== JSON.stringify(orig)) {
        v.add(P, `failed event does not carry the original object: ${what}`);
      }
    } else {
      const ok = value.value === decoded ||
        (parsed !== undefined && JSON.stringify(value.value) === JSON.stringify(parsed)) ||
        (raw.length === 0 &&
          (value.value === "" || value.value === null || value.value === undefined));
      if (!ok) {
        v.add(
          P,
          `failed event value ${show(String(value.value), 60)} is not the original text: ${what}`,
        );
      }
    }
    if (d.outcome.kind === "failed-id") {
      const m = typeof f?.reason === "string" &&
        /^identifier too long: (?:edata\.)?(?:contents\[\d+\]\.)?(userId|courseId|batchId|contentId)$/
          .exec(f.reason);
      if (!m) {
        v.add(
          ID,
          `reason ${show(String(f?.reason), 100)}, want "identifier too long: <field>": ${what}`,
        );
      } else if (!d.outcome.fields.includes(m[1])) {
        v.add(ID, `reason names ${m[1]}, the long ones are ${d.outcome.fields}: ${what}`);
      }
    }
  }
}

function checkLongIdsNeverStored(r: RunResult, v: Violations): void {
  const P = "identifiers over 512 bytes never reach a store";
  const forbidden = new Set<string>();
  for (const d of r.delivered) {
    if (d.outcome.kind === "failed-id") d.outcome.wouldBe.forEach((c) => forbidden.add(c));
  }
  for (const { what, args } of r.storeCalls) {
    for (const s of strings(args)) {
      if (s.includes(LONG_MARKER)) {
        v.add(P, `${what} was called with ${show(s, 60)} (${utf8Length(s)} bytes)`);
        break;
      }
      if (forbidden.has(s)) {
        v.add(P, `${what} was called with the checksum ${s} of a unit with a long identifier`);
        break;
      }
    }
  }
  for (const id of r.world.progress.consumption.keys()) {
    if (id.includes(LONG_MARKER)) v.add(P, `a consumption row for ${show(id, 60)}`);
  }
  for (const id of r.world.progress.enrolments.keys()) {
    if (id.includes(LONG_MARKER)) v.add(P, `an enrolment row for ${show(id, 60)}`);
  }
}

function checkProduceRequests(r: RunResult, v: Violations): void {
  const P = "every output event fits a produce request (lib/kafka.ts produceRequests)";
  const limit = 512 * 1024;
  let requests: ReturnType<typeof produceRequests>;
  try {
    requests = produceRequests(r.world.sink.events as OutputEvent[], {
      maxBytes: limit,
      maxMessages: 128,
    });
  } catch (error) {
    v.add(P, `produceRequests threw: ${String(error).slice(0, 300)}`);
    return;
  }
  let count = 0;
  for (const request of requests) {
    let bytes = 0, messages = 0;
    for (const { messages: ms } of request) {
      for (const m of ms) {
        const n = m.value.length + utf8Length(m.key ?? "");
        bytes += n;
        messages++;
        if (n > BROKER_MAX_BYTES - 1024) {
          v.add(
            P,
            `an event of ${n} bytes, over the broker's limit: ${show(m.value.toString(), 100)}`,
          );
        }
      }
    }
    count += messages;
    if (bytes > limit && messages > 1) {
      v.add(P, `a request of ${messages} events and ${bytes} bytes`);
    }
  }
  if (count !== r.world.sink.events.length) {
    v.add(P, `${count} events in requests, ${r.world.sink.events.length} sent`);
  }
}

// ------------------------------------------------------------------ tests

let cached: Promise<{ result: RunResult; expected: Expected; v: Violations }> | null = null;

function runOnce() {
  cached ??= (async () => {
    const result = await run(SEED);
    const expected = expectations(result);
    const v = new Violations();
    const N = "nothing escapes the pipeline and the run ends";
    if (result.stoppedEarly) v.add(N, result.stoppedEarly);
    result.escapes.forEach((e) => v.add(N, e));
    for (const k of ["edata", "userId", "courseId", "contents"]) {
      if (k in Object.prototype) v.add(N, `Object.prototype gained ${k}`);
    }
    checkOutcomes(result, v, expected);
    checkApplied(result, v, expected);
    checkMids(result, v, expected);
    checkFailedEvents(result, v);
    checkLongIdsNeverStored(result, v);
    checkProduceRequests(result, v);

    const categories = new Map<string, { n: number; bytes: number }>();
    for (const d of result.delivered) {
      const c = categories.get(d.message.category) ?? { n: 0, bytes: 0 };
      c.n++;
      c.bytes += d.message.value?.length ?? 0;
      categories.set(d.message.category, c);
    }
    const failedEvents = result.world.sink.events.filter((e) => e.topic === "failed");
    const outcomes = new Map<string, number>();
    result.delivered.forEach((d) =>
      outcomes.set(d.outcome.kind, (outcomes.get(d.outcome.kind) ?? 0) + 1)
    );
    console.log(
      `fuzz: seed ${SEED} (FUZZ_SEED to replay), ${result.delivered.length} messages, ` +
        `${result.windows.length} windows, ${Math.round(result.runtimeMs)} ms in the runner\n` +
        `  outcomes (model): ${[...outcomes].map(([k, n]) => `${k} ${n}`).join(", ")}\n` +
        [...categories].sort().map(([k, c]) =>
          `  ${k.padEnd(18)} ${String(c.n).padStart(6)} messages ${
            String(Math.round(c.bytes / 1024)).padStart(7)
          } KiB`
        ).join("\n") +
        `\n  model: ${expected.enrolments.size} enrolment rows, ${
          [...expected.enrolments.values()].filter((e) => e.completed).length
        } completions, ${
          [...expected.audits.values()].reduce((a, b) => a + b, 0)
        } AUDIT, ${expected.checksums.size} checksums, ${expected.aggregates.size} aggregates, ${expected.failedEnrolments.size} failed enrolments` +
        `\n  failed events: ${failedEvents.length} (${
          failedEvents.filter((e) => (e.value as { truncated?: unknown }).truncated === true).length
        } truncated)` +
        `\n  events sent: ${result.world.sink.events.length}; violations: ${
          [...v.found].map(([k, x]) => `${k} (${x.count})`).join("; ") || "none"
        }`,
    );
    return { result, expected, v };
  })();
  return cached;
}

Deno.test("fuzz: the generator's intent agrees with the model of SPEC §3", () => {
  const corpus = generateCorpus(SEED, { count: 3000, bigMessages: 2 });
  const wrong: string[] = [];
  for (const [i, m] of corpus.entries()) {
    if (m.intent === "any") continue;
    const kind = classify(m.value).kind;
    if (kind !== m.intent) {
      wrong.push(
        `#${i} [${m.category}] meant ${m.intent}, is ${kind}: ${
          show(m.value ? lossy.decode(m.value) : "null")
        }`,
      );
    }
  }
  assert.deepEqual(wrong.slice(0, 5), []);
});

Deno.test("fuzz: hostile input through the Runner and processWindow", async (t) => {
  const { result, v } = await runOnce();
  const total = result.delivered.length;
  assert.ok(total >= 10_000 || COUNT < 10_000, `only ${total} messages`);
  for (
    const property of [
      "nothing escapes the pipeline and the run ends",
      "every message has exactly one outcome",
      "every valid event is applied as SPEC §6 says",
      "AUDIT and certificate mids are deterministic (SPEC §8)",
      "failed events fit the broker and are truncated as SPEC §3 says",
      "identifiers over 512 bytes fail with their reason",
      "identifiers over 512 bytes never reach a store",
      "every output event fits a produce request (lib/kafka.ts produceRequests)",
    ]
  ) {
    await t.step(property, () => v.check(property));
  }
});

Deno.test("driver error fixtures rebuild to the recorded shapes", () => {
  const normalise = (x: unknown) => JSON.stringify(x).replace(/…\[\d+ chars\]/g, "…");
  let n = 0;
  for (const c of recordedCases()) {
    if (!c.error) continue;
    const rebuilt = rebuildError(c.error);
    assert.ok(rebuilt instanceof Error, c.id);
    assert.equal(normalise(describeError(rebuilt)), normalise(c.error), c.id);
    n++;
  }
  assert.ok(n >= 30, `only ${n} recorded errors`);
});
