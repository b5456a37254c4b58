/**
 * Drives one closed window through the job's ports in the order SPEC §6
 * prescribes: course structure first, state next, then the pure plan, writes,
 * events before each completion write, and checksums last. A failure of one
 * enrolment's course structure is isolated to that enrolment; an outage of a
 * store pauses the stage in `retry` until it returns.
 *
 * @module
 */

import {
  courseLeafNodes,
  type EnrolmentPlan,
  isAlreadyProcessed,
  mergedStatuses,
  planEnrolment,
  structureKey,
  type StructureSets,
  unitsOf,
} from "./aggregate.ts";
import { mapConcurrent, type Retry } from "./async.ts";
import { unitChecksum } from "./checksum.ts";
import type { Unit } from "./event.ts";
import type { JobMetrics } from "./metrics.ts";
import { failedEnrolment, failedMessage, type Stamp } from "./output.ts";
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
  RelationCache,
} from "./ports.ts";
import { type EnrolmentGroup, groupByEnrolment, type Window } from "./window.ts";

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
  retry: Retry;
  settings: PipelineSettings;
}

/** The behaviour switches and topic names the pipeline needs. */
export interface PipelineSettings {
  dedupEnabled: boolean;
  moduleAggsEnabled: boolean;
  filterProcessedEnrolments: boolean;
  /** Partition reads in flight at once. */
  readConcurrency: number;
  topics: { audit: string; certIssue: string; failed: string };
}

/** What happened to a window, for its log line. */
export interface WindowSummary {
  messages: number;
  units: number;
  duplicates: number;
  enrolments: number;
  processed: number;
  filtered: number;
  retired: number;
  failedEnrolments: number;
  failedMessages: number;
  skippedMessages: number;
  completions: number;
}

/** Processes a closed window; resolves once every effect is durable. */
export async function processWindow(window: Window, deps: PipelineDeps): Promise<WindowSummary> {
  const { settings, metrics, retry } = deps;
  const stamp: Stamp = { now: deps.clock.now(), newId: deps.newId };
  const summary = emptySummary(window);

  // Input outcomes: failed messages are replayable events; skips only count.
  const failedEvents: OutputEvent[] = [];
  for (const { message, parsed } of window.messages) {
    if (parsed.kind === "failed") {
      failedEvents.push({
        topic: settings.topics.failed,
        key: message.key ?? "",
        value: failedMessage(parsed.original, { reason: parsed.reason, stage: "input" }, stamp),
      });
      summary.failedMessages++;
    } else if (parsed.kind === "skipped") {
      summary.skippedMessages++;
    }
  }

  // De-duplication (SPEC §4).
  let units = window.units;
  if (settings.dedupEnabled && units.length > 0) {
    const firstOfEach = new Map<string, Unit>();
    for (const u of units) {
      const sum = unitChecksum(u);
      if (!firstOfEach.has(sum)) firstOfEach.set(sum, u);
    }
    const stored = await retry("dedup-check", () => deps.dedup.existing([...firstOfEach.keys()]));
    units = [...firstOfEach].filter(([sum]) => !stored.has(sum)).map(([, u]) => u);
    summary.duplicates = window.units.length - units.length;
  }
  const groups = groupByEnrolment(units);
  summary.enrolments = groups.length;

  // Step 1: course structure; missing structure goes to SPEC §7.
  const courseSets = await readSets(
    deps,
    groups.flatMap(({ key }) => [
      structureKey.leafNodes(key.courseId, key.courseId),
      structureKey.optionalNodes(key.courseId, key.courseId),
    ]),
  );
  const withStructure: EnrolmentGroup[] = [];
  const settled: EnrolmentGroup[] = []; // nothing to write, but checksums to store
  for (const group of groups) {
    if (courseLeafNodes(group.key.courseId, courseSets).length > 0) {
      withStructure.push(group);
      continue;
    }
    const failure = await missingStructure(group.key.courseId, deps);
    if (failure === null) {
      settled.push(group);
      summary.retired++;
    } else {
      failedEvents.push({
        topic: settings.topics.failed,
        key: group.key.userId,
        value: failedEnrolment(group.key, group.units, {
          reason: failure,
          stage: "course-structure",
        }, stamp),
      });
      summary.failedEnrolments++;
    }
  }

  // Steps 2 and 8: state reads, one partition per enrolment; the filter skips whole
  // enrolments. The status is read with the filter off too: knowing it is 1
  // spares an in-progress update its conditional (LWT) write.
  const states = await retry(
    "read-state",
    () =>
      mapConcurrent(withStructure, settings.readConcurrency, async (group) => {
        const [rows, enrolment] = await Promise.all([
          deps.progress.readConsumption(group.key),
          deps.progress.readEnrolment(group.key),
        ]);
        return { group, rows, enrolment };
      }),
  );
  metrics.inc("dbReads", states.length * 2);
  const active = states.filter(({ group, enrolment }) => {
    if (!settings.filterProcessedEnrolments || !isAlreadyProcessed(enrolment)) return true;
    settled.push(group);
    summary.filtered++;
    return false;
  });

  // Step 7's structure: ancestors of every merged content, then the sets of their units.
  const sets: StructureSets = new Map(courseSets);
  if (settings.moduleAggsEnabled) {
    const merged = active.map((s) => ({
      s,
      contents: [...mergedStatuses(s.rows, s.group.units).keys()],
    }));
    const ancestors = await readSets(
      deps,
      merged.flatMap(({ s, contents }) =>
        contents.map((c) => structureKey.ancestors(s.group.key.courseId, c))
      ),
    );
    ancestors.forEach((v, k) => sets.set(k, v));
    const unitSets = await readSets(
      deps,
      merged.flatMap(({ s, contents }) =>
        unitsOf(s.group.key.courseId, contents, ancestors).flatMap((u) => [
          structureKey.leafNodes(s.group.key.courseId, u),
          structureKey.optionalNodes(s.group.key.courseId, u),
        ])
      ),
    );
    unitSets.forEach((v, k) => sets.set(k, v));
  }

  const plans = active.map(({ group, rows, enrolment }) =>
    plan(group, rows, enrolment, sets, stamp, settings)
  );
  const completing = plans.filter((p) => p.completed);
  summary.processed = plans.length;
  summary.completions = completing.length;

  // Writes and events together; each completion's status-2 write only once its
  // certificate request is acknowledged; checksums last.
  const counters = plans.flatMap((p) => p.counters);
  const aggregates = plans.flatMap((p) => p.aggregates);
  const inProgress = plans.filter((p) => !p.completed).map((p) => p.enrolment);
  const events = [
    ...failedEvents,
    ...plans.flatMap((p) => [...p.completionEvents, ...p.contentEvents]),
  ];
  await allStages([
    plans.length > 0 &&
    retry("write-progress", () => deps.progress.writeProgress(counters, aggregates)),
    inProgress.length > 0 &&
    retry("write-enrolments", () => deps.progress.writeEnrolments(inProgress)),
    events.length > 0 && retry("send-events", () => deps.sink.send(events)),
  ]);
  if (completing.length > 0) {
    await retry(
      "write-completions",
      () => deps.progress.writeEnrolments(completing.map((p) => p.enrolment)),
    );
  }
  metrics.inc("dbWrites", counters.length + aggregates.length + plans.length);

  const done = [...plans.map((p) => p.units), ...settled.map((g) => g.units)].flat();
  if (settings.dedupEnabled && done.length > 0) {
    await retry("store-checksums", () => deps.dedup.store([...new Set(done.map(unitChecksum))]));
  }

  countSummary(metrics, summary);
  return summary;
}

type UnitPlan = EnrolmentPlan & { units: Unit[] };

function plan(
  group: EnrolmentGroup,
  rows: ConsumptionRow[],
  enrolment: EnrolmentRow | null,
  sets: StructureSets,
  stamp: Stamp,
  settings: PipelineSettings,
): UnitPlan {
  const result = planEnrolment(
    { key: group.key, units: group.units, rows, sets, enrolment },
    {
      moduleAggs: settings.moduleAggsEnabled,
      now: stamp.now,
      newId: stamp.newId,
      topics: settings.topics,
    },
  );
  return { ...result, units: group.units };
}

/** Reads sets through the relation cache, counting reads and misses. */
async function readSets(deps: PipelineDeps, keys: string[]): Promise<StructureSets> {
  const unique = [...new Set(keys)];
  if (unique.length === 0) return new Map();
  const sets = await deps.retry("read-structure", () => deps.relations.members(unique));
  deps.metrics.inc("cacheReads", unique.length);
  deps.metrics.inc(
    "cacheMisses",
    unique.filter((k) => !structureKey.isOptionalNodes(k) && (sets.get(k) ?? []).length === 0)
      .length,
  );
  return sets;
}

/**
 * Waits for stages that run side by side; rejects with the first failure, but
 * only once none of them is still writing.
 */
async function allStages(stages: (Promise<void> | false)[]): Promise<void> {
  const results = await Promise.allSettled(stages);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** SPEC §7: null when the collection is retired, else why the enrolment fails. */
async function missingStructure(courseId: string, deps: PipelineDeps): Promise<string | null> {
  let status: string | null;
  try {
    status = await deps.collections.status(courseId);
  } catch (error) {
    return `course structure of ${courseId} is missing and its status lookup failed: ${
      (error as Error).message
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
    processed: 0,
    filtered: 0,
    retired: 0,
    failedEnrolments: 0,
    failedMessages: 0,
    skippedMessages: 0,
    completions: 0,
  };
}

function countSummary(metrics: JobMetrics, s: WindowSummary): void {
  metrics.inc("totalEvents", s.messages);
  metrics.inc("skippedEvents", s.skippedMessages);
  metrics.inc("batchEnrolmentUpdateEvents", s.messages - s.skippedMessages - s.failedMessages);
  metrics.inc("duplicateUnits", s.duplicates);
  metrics.inc("processedEnrolments", s.processed);
  metrics.inc("filteredEnrolments", s.filtered);
  metrics.inc("failedEvents", s.failedMessages + s.failedEnrolments);
  metrics.inc("retiredCollectionEvents", s.retired);
  metrics.inc("enrolmentCompletions", s.completions);
  metrics.inc("certIssueEvents", s.completions);
  metrics.windowSize.observe(s.units);
}
