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

/** What one consumed message amounts to. */
export type ParsedMessage =
  | { kind: "units"; key: EnrolmentKey; units: Unit[] }
  | { kind: "sync"; key: EnrolmentKey }
  | { kind: "skipped"; reason: string }
  | { kind: "failed"; reason: string; original: Record<string, unknown> | string };

/** The action this job handles on the input topic; others are skipped. */
const ENROLMENT_UPDATE_ACTION = "batch-enrolment-update";

/** The action of an enrolment sync request (SPEC §13); others are skipped. */
export const ENROLMENT_SYNC_ACTION = "user-enrolment-sync";

/** Longest identifier, in UTF-8 bytes, that may reach a store (SPEC §3). */
export const MAX_IDENTIFIER_BYTES = 512;

/** Turns a raw input-topic value into units, a skip or a failure (SPEC §3). */
export function parseMessage(value: Uint8Array | null): ParsedMessage {
  const request = readRequest(value, ENROLMENT_UPDATE_ACTION);
  if (request.kind !== "request") return request;
  const { key, edata } = request;
  const contents = Array.isArray(edata.contents) ? edata.contents : [];
  const units: Unit[] = [];
  for (const c of contents) {
    if (!isObject(c) || c.status !== 2 || !isNonEmptyString(c.contentId)) continue;
    if (isTooLong(c.contentId)) return failed("identifier too long: contentId", request.json);
    units.push({ ...key, contentId: c.contentId });
  }
  if (units.length === 0) {
    return { kind: "skipped", reason: "no content with status 2" };
  }
  return { kind: "units", key, units };
}

/** Turns a raw sync-topic value into a sync request, a skip or a failure (SPEC §13). */
export function parseSyncRequest(value: Uint8Array | null): ParsedMessage {
  const request = readRequest(value, ENROLMENT_SYNC_ACTION);
  return request.kind === "request" ? { kind: "sync", key: request.key } : request;
}

/** A request of `action` with valid ids, or why the message is skipped or failed. */
type Request =
  | {
    kind: "request";
    json: Record<string, unknown>;
    edata: Record<string, unknown>;
    key: EnrolmentKey;
  }
  | Exclude<ParsedMessage, { kind: "units" | "sync" }>;

const utf8 = new TextDecoder("utf-8", { fatal: true });
const lossyUtf8 = new TextDecoder("utf-8");

function readRequest(value: Uint8Array | null, expectedAction: string): Request {
  if (value === null || value.length === 0) {
    return failed("message has no value", "");
  }
  let text: string;
  try {
    text = utf8.decode(value);
  } catch {
    return failed("value is not valid UTF-8", lossyUtf8.decode(value));
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return failed(`value is not JSON: ${(e as Error).message.slice(0, 200)}`, text);
  }
  if (!isObject(json)) return failed("value is not a JSON object", text);
  const edata = json.edata;
  if (!isObject(edata)) return failed("edata is missing or not an object", json);

  const action = edata.action;
  if (typeof action !== "string" || action.toLowerCase() !== expectedAction) {
    const shown = typeof action === "string" ? JSON.stringify(action.slice(0, 100)) : typeof action;
    return { kind: "skipped", reason: `action ${shown} is not handled` };
  }
  for (const field of ["userId", "courseId", "batchId"] as const) {
    const id = edata[field];
    if (!isNonEmptyString(id)) {
      return failed(`edata.${field} is missing or not a non-empty string`, json);
    }
    if (isTooLong(id)) return failed(`identifier too long: ${field}`, json);
  }
  const key: EnrolmentKey = {
    userId: edata.userId as string,
    courseId: edata.courseId as string,
    batchId: edata.batchId as string,
  };
  return { kind: "request", json, edata, key };
}

const encoder = new TextEncoder();

/** Whether `id` is longer than {@linkcode MAX_IDENTIFIER_BYTES} in UTF-8. */
function isTooLong(id: string): boolean {
  // A UTF-16 code unit is 1 to 3 UTF-8 bytes: only the middle range needs encoding.
  if (id.length > MAX_IDENTIFIER_BYTES) return true;
  if (id.length * 3 <= MAX_IDENTIFIER_BYTES) return false;
  return encoder.encode(id).length > MAX_IDENTIFIER_BYTES;
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

/** A `user-enrolment-sync` request (SPEC §13): what a failed sync is re-published as. */
export function enrolmentSync(key: EnrolmentKey): { eid: string; edata: Record<string, unknown> } {
  return {
    eid: "BE_JOB_REQUEST",
    edata: {
      action: ENROLMENT_SYNC_ACTION,
      userId: key.userId,
      courseId: key.courseId,
      batchId: key.batchId,
    },
  };
}

/** The string that identifies an enrolment in maps: unambiguous whatever its ids contain. */
export function enrolmentId(key: EnrolmentKey): string {
  return JSON.stringify([key.userId, key.courseId, key.batchId]);
}

function failed(
  reason: string,
  original: Record<string, unknown> | string,
): Extract<ParsedMessage, { kind: "failed" }> {
  return { kind: "failed", reason, original };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isNonEmptyString(v: unknown): v is string {
  return typeof v === "string" && v.trim() !== "";
}
