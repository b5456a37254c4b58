/**
 * The per-enrolment computation of SPEC §6, as pure code: from the state read
 * for an enrolment and its units in a window, the writes to make and the
 * events to emit. No I/O happens here.
 *
 * @module
 */

import type { EnrolmentKey, Unit } from "./event.ts";
import {
  certificateIssue,
  type ContentAction,
  contentAudit,
  enrolCompleteAudit,
} from "./output.ts";
import type {
  AggregateWrite,
  ConsumptionRow,
  CounterWrite,
  EnrolmentRow,
  EnrolmentWrite,
  IdSource,
  OutputEvent,
} from "./ports.ts";

/** Relation-cache set names (SPEC §6 steps 1 and 7). */
export const structureKey = {
  leafNodes: (courseId: string, id: string) => `${courseId}:${id}:leafnodes`,
  optionalNodes: (courseId: string, id: string) => `${courseId}:${id}:optionalnodes`,
  ancestors: (courseId: string, contentId: string) => `${courseId}:${contentId}:ancestors`,
  /** Most courses and units have no optional nodes: an empty set here is normal. */
  isOptionalNodes: (key: string) => key.endsWith(":optionalnodes"),
};

/**
 * Sets fetched from the relation cache, by name; a set not fetched is empty.
 * A window's enrolments share one, unchanged once it is read whole: plans
 * remember what they derive from it (required nodes, units of a content).
 */
export type StructureSets = Map<string, string[]>;

/** What plans derive from a window's sets, remembered per sets object. */
interface Derived {
  /** Required nodes by leaf-node set name. */
  required: Map<string, string[]>;
  /** Units containing a content, by course, then content. */
  units: Map<string, Map<string, string[]>>;
}

const derivedBySets = new WeakMap<StructureSets, Derived>();

function derived(sets: StructureSets): Derived {
  let d = derivedBySets.get(sets);
  if (d === undefined) derivedBySets.set(sets, d = { required: new Map(), units: new Map() });
  return d;
}

/**
 * The leaf nodes of `id` (the course or a unit) that are not optional: what
 * completing it requires. Remembered per `sets`, since every enrolment of a
 * course in a window asks for the same ones.
 */
function requiredNodes(courseId: string, id: string, sets: StructureSets): string[] {
  const remembered = derived(sets).required;
  const key = structureKey.leafNodes(courseId, id);
  let required = remembered.get(key);
  if (required === undefined) {
    const optional = new Set(sets.get(structureKey.optionalNodes(courseId, id)) ?? []);
    required = (sets.get(key) ?? []).filter((c) => !optional.has(c));
    remembered.set(key, required);
  }
  return required;
}

/** The units of `courseId` containing `contentId`: its ancestors but the course. Remembered per `sets`. */
function unitsContaining(courseId: string, contentId: string, sets: StructureSets): string[] {
  const byCourse = derived(sets).units;
  let byContent = byCourse.get(courseId);
  if (byContent === undefined) byCourse.set(courseId, byContent = new Map());
  let units = byContent.get(contentId);
  if (units === undefined) {
    units = (sets.get(structureKey.ancestors(courseId, contentId)) ?? []).filter((a) =>
      a !== courseId
    );
    byContent.set(contentId, units);
  }
  return units;
}

/** The leaf nodes of a course; empty means its structure is missing (SPEC §7). */
export function courseLeafNodes(courseId: string, sets: StructureSets): string[] {
  return sets.get(structureKey.leafNodes(courseId, courseId)) ?? [];
}

/** `M` of SPEC §6 step 5: stored statuses overlaid with the window's contents at status 2. */
export function mergedStatuses(rows: ConsumptionRow[], units: Unit[]): Map<string, number> {
  const merged = new Map(rows.map((r) => [r.contentId, r.status]));
  for (const u of units) merged.set(u.contentId, 2);
  return merged;
}

/** The units (child collections) that contain any of `contentIds`: SPEC §6 step 7's `U`. */
export function unitsOf(courseId: string, contentIds: Iterable<string>, sets: StructureSets) {
  const units = new Set<string>();
  for (const c of contentIds) {
    for (const u of unitsContaining(courseId, c, sets)) units.add(u);
  }
  return [...units];
}

/** Whether the enrolment filter skips this enrolment: it is missing or already completed. */
function isAlreadyProcessed(row: EnrolmentRow | null): boolean {
  return row === null || row.status === 2;
}

/** Everything the computation needs for one enrolment. */
export interface EnrolmentState {
  key: EnrolmentKey;
  /** The window's units of this enrolment, in input order (repeats kept when dedup is off). */
  units: Unit[];
  /** Its `user_content_consumption` rows. */
  rows: ConsumptionRow[];
  /** Course, ancestor and unit sets, including every unit of `unitsOf`. */
  sets: StructureSets;
  /** Its enrolment row, or null when it does not exist. */
  enrolment: EnrolmentRow | null;
}

/** Settings and stamps for {@linkcode planEnrolment}. */
export interface PlanOptions {
  moduleAggs: boolean;
  /** `ACTIVITY_FILTER_PROCESSED_ENROLMENTS`: leave missing and completed enrolment rows alone. */
  filterProcessed: boolean;
  now: number;
  newId: IdSource;
  topics: { audit: string; certIssue: string };
}

/** What to write and emit for one enrolment. */
export interface EnrolmentPlan {
  counters: CounterWrite[];
  aggregates: AggregateWrite[];
  /** The enrolment update of step 8, or null when the filter leaves the row alone. */
  enrolment: EnrolmentWrite | null;
  /** Whether this plan completes the enrolment: a status-2 write after its completion events. */
  completed: boolean;
  /** Certificate request and enrol-complete AUDIT: acknowledged before the enrolment write. */
  completionEvents: OutputEvent[];
  /** One AUDIT event per content action. */
  contentEvents: OutputEvent[];
}

/**
 * Computes the writes and events of one enrolment (SPEC §6 steps 3–9). With
 * no units (a sync request, SPEC §13) it recomputes progress from the stored
 * rows alone. The course structure must be present: see
 * {@linkcode courseLeafNodes}.
 */
export function planEnrolment(state: EnrolmentState, opts: PlanOptions): EnrolmentPlan {
  const { key, units, rows, sets } = state;
  const stamp = { now: opts.now, newId: opts.newId };
  const stored = new Map(rows.map((r) => [r.contentId, r]));

  // Step 3–4: counters and actions per distinct input content, in input order.
  const occurrences = new Map<string, Unit[]>();
  for (const u of units) {
    const seen = occurrences.get(u.contentId);
    if (seen === undefined) occurrences.set(u.contentId, [u]);
    else seen.push(u);
  }
  const counters: CounterWrite[] = [];
  const contentEvents: OutputEvent[] = [];
  for (const [contentId, seen] of occurrences) {
    const db = stored.get(contentId);
    const viewCount = db?.viewCount ?? 0;
    const completedCount = db?.completedCount ?? 0;
    counters.push({
      key,
      contentId,
      viewCount: viewCount + seen.length,
      completedCount: completedCount + seen.length,
    });
    const actions: ContentAction[] = [];
    if (viewCount === 0) actions.push("start");
    if (completedCount === 0) actions.push("complete");
    for (const action of actions) {
      contentEvents.push(event(opts.topics.audit, key, contentAudit(seen[0], action, stamp)));
    }
  }

  // Steps 5–7: merged statuses and completed counts of the course and its units.
  const merged = mergedStatuses(rows, units);
  const completedOf = (id: string) => {
    const required = requiredNodes(key.courseId, id, sets);
    let completed = 0;
    for (const c of required) if (merged.get(c) === 2) completed++;
    return { total: required.length, completed };
  };
  const contextId = `cb:${key.batchId}`;
  const aggregate = (activityId: string, completedCount: number): AggregateWrite => ({
    activityId,
    contextId,
    userId: key.userId,
    completedCount,
    at: opts.now,
  });

  const course = completedOf(key.courseId);
  const aggregates = [aggregate(key.courseId, course.completed)];
  if (opts.moduleAggs) {
    for (const unit of unitsOf(key.courseId, merged.keys(), sets)) {
      aggregates.push(aggregate(unit, completedOf(unit).completed));
    }
  }

  // Step 8: the enrolment row, and the completion pair that must precede it.
  // The filter touches this step alone.
  if (opts.filterProcessed && isAlreadyProcessed(state.enrolment)) {
    return {
      counters,
      aggregates,
      enrolment: null,
      completed: false,
      completionEvents: [],
      contentEvents,
    };
  }
  const completed = course.completed >= course.total;
  const priorStatus = state.enrolment?.status ?? null;
  const enrolment: EnrolmentWrite = {
    key,
    progress: course.completed,
    contentStatus: Object.fromEntries(merged),
    at: opts.now,
  };
  if (completed) {
    enrolment.statusChange = { status: 2, completedOn: opts.now };
  } else if (priorStatus !== 1 && priorStatus !== 2) {
    enrolment.statusChange = { status: 1 };
  }
  const completionEvents = completed
    ? [
      event(opts.topics.certIssue, key, certificateIssue(key, stamp)),
      event(opts.topics.audit, key, enrolCompleteAudit(key, stamp)),
    ]
    : [];

  return { counters, aggregates, enrolment, completed, completionEvents, contentEvents };
}

function event(topic: string, key: EnrolmentKey, value: Record<string, unknown>): OutputEvent {
  return { topic, key: key.userId, value };
}
