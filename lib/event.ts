/**
 * Input handling (SPEC §3): a raw message value becomes units, a skip, or a
 * failure with a reason.
 *
 * @example
 * ```ts
 * const text = '{"edata":{"action":"batch-enrolment-update","userId":"U-1",' +
 *   '"courseId":"C1","batchId":"B1","contents":[{"contentId":"R2","status":2}]}}';
 * parseMessage(new TextEncoder().encode(text));
 * // { kind: "units", units: [{ userId: "U-1", courseId: "C1", batchId: "B1", contentId: "R2" }] }
 * ```
 *
 * @module
 */

/** The enrolment a unit belongs to. */
export interface EnrolmentKey {
  userId: string;
  courseId: string;
  batchId: string;
}

/** One completed content of one enrolment: the job's unit of work. */
export interface Unit extends EnrolmentKey {
  contentId: string;
}

/** What one input message amounts to. */
export type ParsedMessage =
  | { kind: "units"; units: Unit[] }
  | { kind: "skipped"; reason: string }
  | { kind: "failed"; reason: string; original: Record<string, unknown> | string };

/** The action this job handles; others are skipped. */
export const ENROLMENT_UPDATE_ACTION = "batch-enrolment-update";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Turns a raw message value into units, a skip or a failure (SPEC §3). */
export function parseMessage(value: Uint8Array | null): ParsedMessage {
  if (value === null || value.length === 0) {
    return failed("message has no value", "");
  }
  let text: string;
  try {
    text = utf8.decode(value);
  } catch {
    return failed("value is not valid UTF-8", new TextDecoder().decode(value));
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return failed(`value is not JSON: ${(e as Error).message}`, text);
  }
  if (!isObject(json)) return failed("value is not a JSON object", text);
  const edata = json.edata;
  if (!isObject(edata)) return failed("edata is missing or not an object", json);

  const action = edata.action;
  if (typeof action !== "string" || action.toLowerCase() !== ENROLMENT_UPDATE_ACTION) {
    return { kind: "skipped", reason: `action ${JSON.stringify(action)} is not handled` };
  }
  for (const field of ["userId", "courseId", "batchId"] as const) {
    if (!isNonEmptyString(edata[field])) {
      return failed(`edata.${field} is missing or not a non-empty string`, json);
    }
  }
  const key: EnrolmentKey = {
    userId: edata.userId as string,
    courseId: edata.courseId as string,
    batchId: edata.batchId as string,
  };
  const contents = Array.isArray(edata.contents) ? edata.contents : [];
  const units = contents
    .filter((c): c is { contentId: string; status: 2 } =>
      isObject(c) && c.status === 2 && typeof c.contentId === "string" && c.contentId.trim() !== ""
    )
    .map((c) => ({ ...key, contentId: c.contentId }));
  if (units.length === 0) {
    return { kind: "skipped", reason: "no content with status 2" };
  }
  return { kind: "units", units };
}

/**
 * A `batch-enrolment-update` request as the course service publishes it:
 * what {@linkcode parseMessage} reads, and what a failed enrolment is
 * re-published as.
 */
export function enrolmentUpdate(
  key: EnrolmentKey,
  contents: { contentId: string; status: number }[],
): { eid: string; edata: Record<string, unknown> } {
  return {
    eid: "BE_JOB_REQUEST",
    edata: {
      action: ENROLMENT_UPDATE_ACTION,
      iteration: 1,
      userId: key.userId,
      courseId: key.courseId,
      batchId: key.batchId,
      contents,
    },
  };
}

/** The string that identifies an enrolment in maps and logs. */
export function enrolmentId(key: EnrolmentKey): string {
  return `${key.userId}|${key.courseId}|${key.batchId}`;
}

function failed(reason: string, original: Record<string, unknown> | string): ParsedMessage {
  return { kind: "failed", reason, original };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isNonEmptyString(v: unknown): v is string {
  return typeof v === "string" && v.trim() !== "";
}
