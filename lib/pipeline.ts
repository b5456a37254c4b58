/**
 * Drives one closed window through the job's ports, as a short list of named
 * steps; "step n" always means SPEC §6's numbering:
 *
 * - routeFailedMessages: failed messages become failed events (SPEC §3)
 * - dropDuplicates: group by enrolment, drop duplicate units (SPEC §4)
 * - resolveStructure: step 1; a missing structure goes to SPEC §7
 * - readState: step 2, one partition per enrolment
 * - readUnitStructure: the sets of step 7
 * - planAll: steps 3–9 as pure code (lib/aggregate.ts)
 * - applyCompletions: step 8's completions: certificate pairs, then at once
 *   a marker of their acknowledgement, then their status-2 writes
 * - applyEffects: steps 6 and 7 beside step 9, then once step 9's events are
 *   acknowledged steps 4 and 8 (in progress); for in-progress enrolments
 *   alongside applyCompletions, for completed ones after it
 * - sendFailures: failed messages and enrolments to the failed topic (SPEC §8)
 * - storeChecksums: step 10
 *
 * Every step that does I/O runs through {@linkcode runIsolated}: an outage is
 * waited out, and an error that belongs to some enrolments fails those alone
 * (failed topic, no checksum) while the rest of the window goes on.
 *
 * @module
 */

import {
  courseLeafNodes,
  type EnrolmentPlan,
  mergedStatuses,
  planEnrolment,
  structureKey,
  type StructureSets,
  unitsOf,
} from "./aggregate.ts";
import { allSettled, mapConcurrent } from "./async.ts";
import { certificateMarker, unitChecksum } from "./checksum.ts";
import { type EnrolmentKey, type Unit } from "./event.ts";
import { type IsolateOptions, runIsolated } from "./isolate.ts";
import { logger } from "./log.ts";
import type { JobMetrics } from "./metrics.ts";
import { failedEnrolment, failedMessage, failedSync, type Failure, type Stamp } from "./output.ts";
import type {
  Clock,
  CollectionStatusLookup,
  ConsumptionRow,
  DedupStore,
  EnrolmentRow,
  EventSink,
  IdSource,
  OutputEvent,
  ProgressStore,
  ProgressWrites,
  RelationCache,
} from "./ports.ts";
import { type EnrolmentGroup, groupByEnrolment, sourceOf, type Window } from "./window.ts";

const log = logger("pipeline");

/** The ports and settings a window is processed with. */
export interface PipelineDeps {
  progress: ProgressStore;
  relations: RelationCache;
  dedup: DedupStore;
  collections: CollectionStatusLookup;
  sink: EventSink;
  clock: Clock;
  newId: IdSource;
  metrics: JobMetrics;
  /** Retries, waits and backoff of every I/O step. */
  isolate: IsolateOptions;
  settings: PipelineSettings;
  /** Told what happened to each enrolment (for the `reconcile` command). */
  observe?: (outcome: EnrolmentOutcome) => void;
}

/** The behaviour switches and topic names the pipeline needs. */
export interface PipelineSettings {
  dedupEnabled: boolean;
  moduleAggsEnabled: boolean;
  filterProcessedEnrolments: boolean;
  /** Partition reads in flight at once. */
  readConcurrency: number;
  /** `KAFKA_FAILED_EVENT_MAX_BYTES`. */
  failedEventMaxBytes: number;
  topics: { audit: string; certIssue: string; failed: string };
}

/** What happened to a window, for its log line. */
export interface WindowSummary {
  messages: number;
  units: number;
  duplicates: number;
  enrolments: number;
  syncRequests: number;
  processed: number;
  filtered: number;
  retired: number;
  failedEnrolments: number;
  failedMessages: number;
  skippedMessages: number;
  completions: number;
  /** Certificate requests sent: completions but those a crash had already sent. */
  certificates: number;
}

/** What happened to one enrolment of a window. */
export interface EnrolmentOutcome {
  key: EnrolmentKey;
  /** The enrolment row before, when it was read. */
  before: EnrolmentRow | null;
  /** Progress and status written, or null when the row was left alone. */
  after: { progress: number; status: number | null } | null;
  certificate: boolean;
  /** `retired` (SPEC §7), `failed`, or `processed`. */
  result: "processed" | "retired" | "failed";
  reason?: string;
}

/** One window's progress through the steps. */
interface Run {
  deps: PipelineDeps;
  stamp: Stamp;
  summary: WindowSummary;
  /** Failed messages and enrolments, for step 9. */
  failedEvents: OutputEvent[];
}

/** An enrolment with its units after de-duplication. */
interface Enrolment {
  group: EnrolmentGroup;
  /** The units that count (SPEC §4), repeats included when de-duplication is off. */
  units: Unit[];
  /** Their checksums, for step 10 (empty when de-duplication is off). */
  checksums: string[];
}

/** An enrolment with the state read for it. */
interface ReadEnrolment extends Enrolment {
  rows: ConsumptionRow[];
  enrolment: EnrolmentRow | null;
}

/** An enrolment with its plan. */
interface PlannedEnrolment extends ReadEnrolment {
  plan: EnrolmentPlan;
}

/** Processes a closed window; resolves once every effect is durable. */
export async function processWindow(window: Window, deps: PipelineDeps): Promise<WindowSummary> {
  const run: Run = {
    deps,
    stamp: { now: deps.clock.now(), newId: deps.newId },
    summary: emptySummary(window),
    failedEvents: [],
  };
  routeFailedMessages(run, window);
  const enrolments = await dropDuplicates(run, groupByEnrolment(window.messages));
  const { structured, settled, courseSets } = await resolveStructure(run, enrolments);
  const read = await readState(run, structured);
  const { sets, usable } = await readUnitStructure(run, read, courseSets);
  const planned = planAll(run, usable, sets);
  // Enrolments are independent: in-progress ones are written while the
  // completions go through their longer chain; only their events wait, so
  // that the certificate pairs go out first, on their own.
  const pairsSent = Promise.withResolvers<void>();
  const [inProgress, completed] = await allSettled([
    applyEffects(run, planned.filter((p) => !p.plan.completed), pairsSent.promise),
    applyCompletions(run, planned.filter((p) => p.plan.completed), pairsSent.resolve)
      .then((done) => applyEffects(run, done)),
  ]);
  const applied = [...inProgress, ...completed];
  await sendFailures(run);
  await storeChecksums(run, [...applied, ...settled]);
  for (const p of applied) observe(run, p, "processed");
  countSummary(deps.metrics, run.summary);
  return run.summary;
}

/** Failed messages become replayable events (SPEC §3); skips only count. */
function routeFailedMessages(run: Run, window: Window): void {
  const { settings } = run.deps;
  for (const { message, parsed } of window.messages) {
    if (parsed.kind === "failed") {
      const failure = { reason: parsed.reason, stage: "input", source: sourceOf(message) };
      run.failedEvents.push({
        topic: settings.topics.failed,
        key: failedEventKey(message.key),
        value: failedMessage({
          original: parsed.original,
          raw: message.value,
          failure,
          maxBytes: settings.failedEventMaxBytes,
        }, run.stamp),
      });
      run.summary.failedMessages++;
    } else if (parsed.kind === "skipped") {
      run.summary.skippedMessages++;
    } else if (parsed.kind === "sync") {
      run.summary.syncRequests++;
    }
  }
}

/** SPEC §4. Enrolments left with no unit and no sync request have nothing to do. */
async function dropDuplicates(run: Run, groups: EnrolmentGroup[]): Promise<Enrolment[]> {
  const { settings, dedup } = run.deps;
  if (!settings.dedupEnabled) {
    run.summary.enrolments = groups.length;
    return groups.map((group) => ({ group, units: group.units, checksums: [] }));
  }

  const distinct = groups.map((group) => {
    const byChecksum = new Map(group.units.map((u) => [unitChecksum(u), u]));
    return { group, byChecksum };
  });
  const stored = new Set<string>();
  const failed = await runIsolated("dedup-check", distinct, async (subset) => {
    const found = await dedup.existing(subset.flatMap((d) => [...d.byChecksum.keys()]));
    found.forEach((sum) => stored.add(sum));
  }, run.deps.isolate);
  const enrolments: Enrolment[] = [];
  for (const d of distinct) {
    if (failed.has(d)) {
      failEnrolment(
        run,
        { group: d.group, units: [...d.byChecksum.values()], checksums: [] },
        "dedup-check",
        failed.get(d),
      );
      continue;
    }
    const fresh = [...d.byChecksum].filter(([sum]) => !stored.has(sum));
    run.summary.duplicates += d.group.units.length - fresh.length;
    if (fresh.length > 0 || d.group.sync) {
      enrolments.push({
        group: d.group,
        units: fresh.map(([, u]) => u),
        checksums: fresh.map(([sum]) => sum),
      });
    }
  }
  run.summary.enrolments = enrolments.length;
  return enrolments;
}

/**
 * Step 1, course structure. An enrolment whose course has none is settled
 * when its collection is retired (SPEC §7) and failed otherwise.
 */
async function resolveStructure(
  run: Run,
  enrolments: Enrolment[],
): Promise<{ structured: Enrolment[]; settled: Enrolment[]; courseSets: StructureSets }> {
  const { sets, failed } = await readSets(
    run,
    "read-structure",
    enrolments,
    ({ group: { key } }) => [
      structureKey.leafNodes(key.courseId, key.courseId),
      structureKey.optionalNodes(key.courseId, key.courseId),
    ],
  );
  const structured: Enrolment[] = [];
  const settled: Enrolment[] = [];
  for (const e of enrolments) {
    if (failed.has(e)) {
      failEnrolment(run, e, "read-structure", failed.get(e));
    } else if (courseLeafNodes(e.group.key.courseId, sets).length > 0) {
      structured.push(e);
    } else {
      const reason = await missingStructure(e.group.key.courseId, run.deps.collections);
      if (reason === null) {
        settled.push(e);
        run.summary.retired++;
        observe(run, { ...e, rows: [], enrolment: null }, "retired");
      } else {
        failEnrolment(run, e, "course-structure", reason);
      }
    }
  }
  return { structured, settled, courseSets: sets };
}

/** Step 2: consumption rows and enrolment row, one partition read each. */
async function readState(run: Run, enrolments: Enrolment[]): Promise<ReadEnrolment[]> {
  const { progress, settings, metrics } = run.deps;
  const read = new Map<Enrolment, ReadEnrolment>();
  const failed = await runIsolated("read-state", enrolments, async (subset) => {
    await mapConcurrent(subset, settings.readConcurrency, async (e) => {
      // The status is read with the filter off too: knowing it is 1 spares an
      // in-progress update its conditional (LWT) write.
      const [rows, enrolment] = await Promise.all([
        progress.readConsumption(e.group.key),
        progress.readEnrolment(e.group.key),
      ]);
      read.set(e, { ...e, rows, enrolment });
    });
    metrics.inc("dbReads", subset.length * 2);
  }, run.deps.isolate);
  return survivors(run, enrolments, failed, "read-state").map((e) => read.get(e)!);
}

/** The sets of step 7: ancestors of every merged content, then the sets of their units. */
async function readUnitStructure(
  run: Run,
  enrolments: ReadEnrolment[],
  courseSets: StructureSets,
): Promise<{ sets: StructureSets; usable: ReadEnrolment[] }> {
  const sets: StructureSets = new Map(courseSets);
  if (!run.deps.settings.moduleAggsEnabled || enrolments.length === 0) {
    return { sets, usable: enrolments };
  }
  const contents = new Map(
    enrolments.map((e) => [e, [...mergedStatuses(e.rows, e.units).keys()]]),
  );
  const ancestors = await readSets(
    run,
    "read-structure",
    enrolments,
    (e) => contents.get(e)!.map((c) => structureKey.ancestors(e.group.key.courseId, c)),
  );
  ancestors.sets.forEach((v, k) => sets.set(k, v));
  const units = await readSets(
    run,
    "read-structure",
    enrolments.filter((e) => !ancestors.failed.has(e)),
    (e) =>
      unitsOf(e.group.key.courseId, contents.get(e)!, ancestors.sets).flatMap((u) => [
        structureKey.leafNodes(e.group.key.courseId, u),
        structureKey.optionalNodes(e.group.key.courseId, u),
      ]),
  );
  units.sets.forEach((v, k) => sets.set(k, v));
  const failed = new Map([...ancestors.failed, ...units.failed]);
  return { sets, usable: survivors(run, enrolments, failed, "read-structure") };
}

/** Steps 3–9 for each enrolment, as pure code. */
function planAll(run: Run, enrolments: ReadEnrolment[], sets: StructureSets): PlannedEnrolment[] {
  const { settings } = run.deps;
  const planned: PlannedEnrolment[] = [];
  for (const e of enrolments) {
    try {
      const plan = planEnrolment(
        { key: e.group.key, units: e.units, rows: e.rows, sets, enrolment: e.enrolment },
        {
          moduleAggs: settings.moduleAggsEnabled,
          filterProcessed: settings.filterProcessedEnrolments,
          now: run.stamp.now,
          newId: run.stamp.newId,
          topics: settings.topics,
        },
      );
      if (plan.enrolment === null) run.summary.filtered++;
      planned.push({ ...e, plan });
    } catch (error) {
      failEnrolment(run, e, "plan", error);
    }
  }
  return planned;
}

/**
 * Step 8's completions. The certificate requests and enrol-complete events
 * go to Kafka on their own; as soon as Kafka has acknowledged them, a marker
 * per enrolment in the de-duplication store records it, and the status-2
 * writes follow. A crash before a status-2 write replays the enrolment, and
 * the marker spares it a second certificate: only a crash inside the Redis
 * round trip between the acknowledgement and the markers repeats the pairs.
 * `pairsSent` is called once the pairs are acknowledged or have failed.
 * Resolves to the enrolments completed.
 */
async function applyCompletions(
  run: Run,
  completing: PlannedEnrolment[],
  pairsSent: () => void,
): Promise<PlannedEnrolment[]> {
  const { progress, dedup, metrics, isolate } = run.deps;
  const { checked, toSend, unsent } = await sendPairs(run, completing).finally(pairsSent);
  const sent = survivors(run, toSend, unsent, "send-certificates");
  const unmarked = await runIsolated(
    "mark-certificates",
    sent,
    (subset) => dedup.store(subset.map(markerOf)),
    isolate,
  );
  survivors(run, sent, unmarked, "mark-certificates");
  run.summary.certificates = sent.length - unmarked.size;
  const writable = checked.filter((p) => !unsent.has(p) && !unmarked.has(p));
  const unwritten = await runIsolated("write-completions", writable, async (subset) => {
    await progress.writeEnrolments(subset.map((p) => p.plan.enrolment!));
    metrics.inc("dbWrites", subset.length);
  }, isolate);
  const done = survivors(run, writable, unwritten, "write-completions");
  run.summary.completions = done.length;
  return done;
}

/**
 * The certificate pairs of `completing`, but of those whose marker says a
 * crash already sent them: the enrolments checked, those sent to, and those
 * whose send failed.
 */
async function sendPairs(run: Run, completing: PlannedEnrolment[]) {
  const { sink, dedup, isolate } = run.deps;
  const acknowledged = new Set<string>();
  const unchecked = await runIsolated("check-certificates", completing, async (subset) => {
    (await dedup.existing(subset.map(markerOf))).forEach((m) => acknowledged.add(m));
  }, isolate);
  const checked = survivors(run, completing, unchecked, "check-certificates");
  const toSend = checked.filter((p) => !acknowledged.has(markerOf(p)));
  const unsent = await runIsolated(
    "send-certificates",
    toSend,
    (subset) => sink.send(subset.flatMap((p) => p.plan.completionEvents)),
    isolate,
  );
  return { checked, toSend, unsent };
}

/** The de-duplication key that records an enrolment's acknowledged certificate pair. */
function markerOf(p: PlannedEnrolment): string {
  return certificateMarker(p.group.key);
}

/**
 * Steps 4, 6, 7, 8 (in progress) and 9: counters, aggregates, in-progress
 * enrolment rows and content AUDIT events, the events sent once `eventsAfter`
 * resolves. Content AUDIT events are at-least-once (SPEC §5), and a replay
 * finds a content's `start` and `complete` only while its counters are still
 * 0: so an enrolment's counters are written only once its events are
 * acknowledged, its aggregates meanwhile. Its counters and enrolment row go
 * together (one partition, one request). Resolves to the enrolments fully
 * applied.
 */
async function applyEffects(
  run: Run,
  live: PlannedEnrolment[],
  eventsAfter?: Promise<void>,
): Promise<PlannedEnrolment[]> {
  const { sink, isolate } = run.deps;
  const withEvents = live.filter((p) => p.plan.contentEvents.length > 0);
  const [unwritten, unsent] = await allSettled([
    writeProgress(run, "write-progress", live, (p) => ({
      ...(p.plan.contentEvents.length > 0 ? NO_WRITES : countersAndRow(p)),
      aggregates: p.plan.aggregates,
    })),
    (async () => {
      await eventsAfter;
      return runIsolated(
        "send-events",
        withEvents,
        (subset) => sink.send(subset.flatMap((p) => p.plan.contentEvents)),
        isolate,
      );
    })(),
  ]);
  const sent = withEvents.filter((p) => !unwritten.has(p) && !unsent.has(p));
  const uncounted = await writeProgress(run, "write-counters", sent, countersAndRow);
  const failures = [unwritten, unsent, uncounted];
  const stageNames = ["write-progress", "send-events", "write-counters"];
  const applied: PlannedEnrolment[] = [];
  for (const p of live) {
    const at = failures.findIndex((f) => f.has(p));
    if (at === -1) applied.push(p);
    else failEnrolment(run, p, stageNames[at], failures[at].get(p));
  }
  run.summary.processed += applied.length;
  return applied;
}

const NO_WRITES: ProgressWrites = { counters: [], aggregates: [], enrolments: [] };

/**
 * What of an enrolment waits for its content AUDIT events: its counters, and
 * its row update when it stays in progress (one partition, one request; a
 * completion is written in step 8).
 */
function countersAndRow(p: PlannedEnrolment): ProgressWrites {
  const row = p.plan.enrolment !== null && !p.plan.completed ? [p.plan.enrolment] : [];
  return { counters: p.plan.counters, aggregates: [], enrolments: row };
}

/** One write stage: what `writesOf` picks of each enrolment, isolated per enrolment. */
function writeProgress(
  run: Run,
  stage: string,
  enrolments: PlannedEnrolment[],
  writesOf: (p: PlannedEnrolment) => ProgressWrites,
) {
  const { progress, metrics, isolate } = run.deps;
  return runIsolated(stage, enrolments, async (subset) => {
    const picked = subset.map(writesOf);
    const writes = {
      counters: picked.flatMap((w) => w.counters),
      aggregates: picked.flatMap((w) => w.aggregates),
      enrolments: picked.flatMap((w) => w.enrolments),
    };
    await progress.writeProgress(writes);
    metrics.inc(
      "dbWrites",
      writes.counters.length + writes.aggregates.length + writes.enrolments.length,
    );
  }, isolate);
}

/**
 * The failed topic (SPEC §8). A failed event Kafka still refuses alone (it
 * cannot be, short of a broker limit below 64 KiB) is logged and dropped
 * rather than stalling every partition.
 */
async function sendFailures(run: Run): Promise<void> {
  const refused = await runIsolated(
    "send-failed",
    run.failedEvents,
    (subset) => run.deps.sink.send(subset),
    run.deps.isolate,
  );
  for (const [event, error] of refused) {
    log.error("failed event refused by Kafka, dropped: {error}", {
      error: String(error),
      failure: (event.value as { failure?: unknown }).failure,
    });
  }
}

/** Step 10: checksums of every enrolment whose effects are durable (SPEC §4). */
async function storeChecksums(run: Run, done: Enrolment[]): Promise<void> {
  const { settings, dedup, isolate } = run.deps;
  const withUnits = done.filter((e) => e.units.length > 0);
  if (!settings.dedupEnabled || withUnits.length === 0) return;
  const failed = await runIsolated(
    "store-checksums",
    withUnits,
    (subset) => dedup.store([...new Set(subset.flatMap((e) => e.checksums))]),
    isolate,
  );
  // Effects are durable: a checksum not stored only lets a replay count again.
  for (const [e, error] of failed) {
    log.warn("checksums not stored for {enrolment}: {error}", {
      enrolment: e.group.key,
      error: String(error),
    });
  }
}

/** Reads the sets each item needs, isolating items whose read fails. */
async function readSets<T>(
  run: Run,
  stage: string,
  items: T[],
  keysOf: (item: T) => string[],
): Promise<{ sets: StructureSets; failed: Map<T, unknown> }> {
  const { relations, metrics, isolate } = run.deps;
  const sets: StructureSets = new Map();
  const failed = await runIsolated(stage, items, async (subset) => {
    const keys = [...new Set(subset.flatMap(keysOf))].filter((k) => !sets.has(k));
    if (keys.length === 0) return;
    const found = await relations.members(keys);
    found.forEach((v, k) => sets.set(k, v));
    metrics.inc("cacheReads", keys.length);
    metrics.inc(
      "cacheMisses",
      keys.filter((k) => !structureKey.isOptionalNodes(k) && (found.get(k) ?? []).length === 0)
        .length,
    );
  }, isolate);
  return { sets, failed };
}

/** The items that did not fail; the failed ones become failed enrolments. */
function survivors<T extends Enrolment>(
  run: Run,
  items: T[],
  failed: Map<T, unknown>,
  stage: string,
): T[] {
  for (const [item, error] of failed) failEnrolment(run, item, stage, error);
  return items.filter((item) => !failed.has(item));
}

/**
 * Sends `e` to the failed topic as replayable requests: its units as
 * `batch-enrolment-update` requests for the input topic, and its sync request
 * as a `user-enrolment-sync` for the sync topic. No checksum; counted once.
 */
function failEnrolment(run: Run, e: Enrolment, stage: string, error: unknown): void {
  const { settings } = run.deps;
  const reason = typeof error === "string" ? error : describe(error);
  const failure: Failure = { reason, stage, source: e.group.source };
  const values = [
    ...e.units.length > 0
      ? failedEnrolment({
        key: e.group.key,
        units: e.units,
        failure,
        maxBytes: settings.failedEventMaxBytes,
      }, run.stamp)
      : [],
    ...e.group.sync ? [failedSync(e.group.key, failure, run.stamp)] : [],
  ];
  for (const value of values) {
    run.failedEvents.push({ topic: settings.topics.failed, key: e.group.key.userId, value });
  }
  run.summary.failedEnrolments++;
  run.deps.observe?.({
    key: e.group.key,
    before: (e as Partial<ReadEnrolment>).enrolment ?? null,
    after: null,
    certificate: false,
    result: "failed",
    reason,
  });
}

function observe(run: Run, e: ReadEnrolment | PlannedEnrolment, result: "processed" | "retired") {
  if (!run.deps.observe) return;
  const plan = (e as Partial<PlannedEnrolment>).plan;
  const write = plan?.enrolment ?? null;
  run.deps.observe({
    key: e.group.key,
    before: e.enrolment,
    after: write === null ? null : {
      progress: write.progress,
      status: write.statusChange?.status ?? e.enrolment?.status ?? null,
    },
    certificate: plan?.completed ?? false,
    result,
  });
}

/** An error's message, short enough for a failed event. */
function describe(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.length > 1000 ? `${text.slice(0, 1000)}…` : text;
}

/** A failed message keeps its key, unless the key alone is too large to be a key. */
function failedEventKey(key: string | null): string {
  return key !== null && key.length <= 512 ? key : "";
}

/** SPEC §7: null when the collection is retired, else why the enrolment fails. */
async function missingStructure(
  courseId: string,
  collections: CollectionStatusLookup,
): Promise<string | null> {
  let status: string | null;
  try {
    status = await collections.status(courseId);
  } catch (error) {
    return `course structure of ${courseId} is missing and its status lookup failed: ${
      describe(error)
    }`;
  }
  if (status === "Retired") return null;
  return status === null
    ? `course structure of ${courseId} is missing and the search service does not know it`
    : `course structure of ${courseId} is missing from the relation cache (collection is ${status})`;
}

/** A summary of `window` with nothing done yet. */
export function emptySummary(window: Window): WindowSummary {
  return {
    messages: window.messages.length,
    units: window.units.length,
    duplicates: 0,
    enrolments: 0,
    syncRequests: 0,
    processed: 0,
    filtered: 0,
    retired: 0,
    failedEnrolments: 0,
    failedMessages: 0,
    skippedMessages: 0,
    completions: 0,
    certificates: 0,
  };
}

function countSummary(metrics: JobMetrics, s: WindowSummary): void {
  metrics.inc("totalEvents", s.messages);
  metrics.inc("skippedEvents", s.skippedMessages);
  metrics.inc(
    "batchEnrolmentUpdateEvents",
    s.messages - s.skippedMessages - s.failedMessages - s.syncRequests,
  );
  metrics.inc("syncRequests", s.syncRequests);
  metrics.inc("duplicateUnits", s.duplicates);
  metrics.inc("processedEnrolments", s.processed);
  metrics.inc("filteredEnrolments", s.filtered);
  metrics.inc("failedEvents", s.failedMessages + s.failedEnrolments);
  metrics.inc("retiredCollectionEvents", s.retired);
  metrics.inc("enrolmentCompletions", s.completions);
  metrics.inc("certIssueEvents", s.certificates);
  metrics.windowSize.observe(s.units);
}
