/**
 * SPEC §12's worked example, shared by unit and integration tests.
 *
 * @module
 */

import type { EnrolmentKey } from "../../lib/event.ts";

/** The enrolment of the example. */
export const EXAMPLE_KEY: EnrolmentKey = { userId: "U-1", courseId: "C1", batchId: "B1" };

/** Course C1 with units U1 and U2, as the relation cache holds it. */
export function exampleSets(courseId = "C1"): Record<string, string[]> {
  const k = (id: string, kind: string) => `${courseId}:${id}:${kind}`;
  return {
    [k(courseId, "leafnodes")]: ["R1", "R2", "R3", "R4"],
    [k(courseId, "optionalnodes")]: ["R4"],
    [k("U1", "leafnodes")]: ["R1", "R2"],
    [k("U2", "leafnodes")]: ["R3", "R4"],
    [k("U2", "optionalnodes")]: ["R4"],
    [k("R1", "ancestors")]: ["U1", courseId],
    [k("R2", "ancestors")]: ["U1", courseId],
    [k("R3", "ancestors")]: ["U2", courseId],
    [k("R4", "ancestors")]: ["U2", courseId],
  };
}

/** The consumption rows upstream wrote before the event. */
export const EXAMPLE_ROWS = [
  { contentId: "R1", status: 2, viewCount: 1, completedCount: 1 },
  { contentId: "R3", status: 1, viewCount: 2, completedCount: 0 },
];

/** The example event's contents: R2 and R3 completed, R4 only started. */
export const EXAMPLE_CONTENTS = [
  { contentId: "R2", status: 2 },
  { contentId: "R3", status: 2 },
  { contentId: "R4", status: 1 },
];
