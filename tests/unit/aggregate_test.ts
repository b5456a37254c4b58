/**
 * The pure per-enrolment computation (lib/aggregate.ts) on SPEC §12's
 * worked example: with the example event's units (SPEC §6), and with no
 * input at all, as a sync request or `reconcile` computes it (SPEC §13).
 */

import assert from "node:assert/strict";
import { planEnrolment, type PlanOptions } from "../../lib/aggregate.ts";
import type { Unit } from "../../lib/event.ts";
import type { ConsumptionRow, EnrolmentRow } from "../../lib/ports.ts";
import { EXAMPLE_CONTENTS, EXAMPLE_KEY, EXAMPLE_ROWS, exampleSets } from "../support/fixtures.ts";
import { sequentialIds } from "../support/stubs.ts";

const NOW = 1_700_000_000_000;
const options = (overrides: Partial<PlanOptions> = {}): PlanOptions => ({
  moduleAggs: true,
  filterProcessed: true,
  now: NOW,
  newId: sequentialIds(),
  topics: { audit: "audit", certIssue: "cert" },
  ...overrides,
});
const sets = new Map(Object.entries(exampleSets()));
const exampleUnits: Unit[] = EXAMPLE_CONTENTS.filter((c) => c.status === 2).map((c) => ({
  ...EXAMPLE_KEY,
  contentId: c.contentId,
}));
const inProgress: EnrolmentRow = { status: 1, progress: 1 };

function plan(
  units: Unit[],
  rows: ConsumptionRow[] = EXAMPLE_ROWS,
  enrolment: EnrolmentRow | null = inProgress,
  overrides: Partial<PlanOptions> = {},
) {
  return planEnrolment({ key: EXAMPLE_KEY, units, rows, sets, enrolment }, options(overrides));
}

const aggregatesOf = (p: ReturnType<typeof plan>) =>
  Object.fromEntries(p.aggregates.map((a) => [a.activityId, a.completedCount]));
const edata = (e: { value: Record<string, unknown> }) =>
  e.value.edata as { type?: string; action?: string };

Deno.test("SPEC §12 at plan level: counters, aggregates, completion and events", () => {
  const p = plan(exampleUnits);
  assert.deepEqual(p.counters, [
    { key: EXAMPLE_KEY, contentId: "R2", viewCount: 1, completedCount: 1 },
    { key: EXAMPLE_KEY, contentId: "R3", viewCount: 3, completedCount: 1 },
  ]);
  assert.deepEqual(aggregatesOf(p), { C1: 3, U1: 2, U2: 1 });
  assert.ok(p.aggregates.every((a) => a.contextId === "cb:B1" && a.userId === "U-1"));
  assert.equal(p.completed, true);
  assert.deepEqual(p.enrolment, {
    key: EXAMPLE_KEY,
    progress: 3,
    contentStatus: { R1: 2, R2: 2, R3: 2 },
    at: NOW,
    statusChange: { status: 2, completedOn: NOW },
  });
  assert.deepEqual(
    p.completionEvents.map((e) => [e.topic, e.key, edata(e).action ?? edata(e).type]),
    [["cert", "U-1", "issue-certificate"], ["audit", "U-1", "enrol-complete"]],
  );
  assert.deepEqual(
    p.contentEvents.map((e) => `${(e.value.object as { id: string }).id}:${edata(e).type}`),
    ["R2:start", "R2:complete", "R3:complete"],
  );
});

Deno.test("no input: stored rows alone give the progress; no counters, no content events", () => {
  // SPEC §12's rows: R1 done, R3 started. Progress 1 of R = {R1, R2, R3}.
  const partial = plan([]);
  assert.deepEqual(partial.counters, []);
  assert.deepEqual(partial.contentEvents, []);
  assert.deepEqual(partial.completionEvents, []);
  assert.equal(partial.completed, false);
  assert.deepEqual(aggregatesOf(partial), { C1: 1, U1: 1, U2: 0 });
  assert.deepEqual(partial.enrolment, {
    key: EXAMPLE_KEY,
    progress: 1,
    contentStatus: { R1: 2, R3: 1 },
    at: NOW,
  }, "status already 1: no status change");

  // The rows as they stand after SPEC §12's event: the same result as the event gave.
  const after: ConsumptionRow[] = [
    { contentId: "R1", status: 2, viewCount: 1, completedCount: 1 },
    { contentId: "R2", status: 2, viewCount: 1, completedCount: 1 },
    { contentId: "R3", status: 2, viewCount: 3, completedCount: 1 },
  ];
  const full = plan([], after);
  const withEvent = plan(exampleUnits);
  assert.deepEqual(full.counters, []);
  assert.deepEqual(full.contentEvents, []);
  assert.deepEqual(aggregatesOf(full), aggregatesOf(withEvent));
  assert.deepEqual(full.enrolment, withEvent.enrolment);
  assert.equal(full.completed, true);
  assert.deepEqual(full.completionEvents.map((e) => edata(e).action ?? edata(e).type), [
    "issue-certificate",
    "enrol-complete",
  ]);
  // Deterministic mids (SPEC §8): the same pair as the event's completion.
  assert.deepEqual(
    full.completionEvents.map((e) => e.value.mid),
    withEvent.completionEvents.map((e) => e.value.mid),
  );
});

Deno.test("no input: an optional node alone does not count, and no rows mean progress 0", () => {
  const optionalOnly = plan([], [{ contentId: "R4", status: 2, viewCount: 1, completedCount: 1 }]);
  assert.equal(optionalOnly.enrolment?.progress, 0);
  assert.deepEqual(aggregatesOf(optionalOnly), { C1: 0, U2: 0 });
  assert.deepEqual(optionalOnly.enrolment?.contentStatus, { R4: 2 });

  const nothing = plan([], [], { status: null, progress: null });
  assert.equal(nothing.enrolment?.progress, 0);
  assert.deepEqual(nothing.enrolment?.statusChange, { status: 1 });
  assert.deepEqual(aggregatesOf(nothing), { C1: 0 }, "no content: no unit aggregates");
});

Deno.test("no input: the filter leaves a completed or missing row alone, aggregates still computed", () => {
  for (const enrolment of [{ status: 2, progress: 3 }, null]) {
    const p = plan([], EXAMPLE_ROWS, enrolment);
    assert.equal(p.enrolment, null);
    assert.equal(p.completed, false);
    assert.deepEqual(p.completionEvents, []);
    assert.deepEqual(aggregatesOf(p), { C1: 1, U1: 1, U2: 0 });
  }
  // With the filter off, a missing row is written with status 1.
  const unfiltered = plan([], EXAMPLE_ROWS, null, { filterProcessed: false });
  assert.deepEqual(unfiltered.enrolment?.statusChange, { status: 1 });
  assert.equal(unfiltered.enrolment?.progress, 1);
});

Deno.test("no input with unit aggregates off: the course aggregate only", () => {
  const p = plan([], EXAMPLE_ROWS, inProgress, { moduleAggs: false });
  assert.deepEqual(aggregatesOf(p), { C1: 1 });
});
