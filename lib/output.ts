/**
 * Output event formats (SPEC §8): content and enrolment AUDIT telemetry,
 * certificate-issue requests, and replayable failed events.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { type EnrolmentKey, enrolmentSync, enrolmentUpdate, type Unit } from "./event.ts";
import type { IdSource } from "./ports.ts";

/** A content action found in SPEC §6 step 3. */
export type ContentAction = "start" | "complete";

/** The event types whose `mid` is derived from what they are about (SPEC §8). */
export type MidType = ContentAction | "enrol-complete" | "issue-certificate";

/**
 * The deterministic part of a `mid` (SPEC §8): the lower-case hex MD5 of
 * `userId|courseId|batchId|contentId|type`, grouped 8-4-4-4-12, so that a
 * repeat after a crash carries the same `mid` and telemetry de-duplication
 * drops it.
 */
export function midHash(key: EnrolmentKey, contentId: string, type: MidType): string {
  const text = `${key.userId}|${key.courseId}|${key.batchId}|${contentId}|${type}`;
  const h = createHash("md5").update(text, "utf8").digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** `now` and ids for one event; injected so tests are deterministic. */
export interface Stamp {
  now: number;
  newId: IdSource;
}

const AUDIT_PROPS: Record<ContentAction, string[]> = {
  start: ["viewcount"],
  complete: ["viewcount", "completedcount"],
};

/** The AUDIT event for one content action. */
export function contentAudit(
  unit: Unit,
  action: ContentAction,
  stamp: Stamp,
): Record<string, unknown> {
  return audit(unit, midHash(unit, unit.contentId, action), stamp, [
    { type: "CourseBatch", id: unit.batchId },
  ], {
    id: unit.contentId,
    type: "Content",
    rollup: { l1: unit.courseId },
  }, { type: action, props: AUDIT_PROPS[action] });
}

/** The AUDIT event of an enrolment's completion. */
export function enrolCompleteAudit(key: EnrolmentKey, stamp: Stamp): Record<string, unknown> {
  return audit(
    key,
    midHash(key, "", "enrol-complete"),
    stamp,
    [{ type: "CourseBatch", id: key.batchId }, { type: "Course", id: key.courseId }],
    { id: key.userId, type: "User", rollup: { l1: key.courseId } },
    { type: "enrol-complete", props: ["status", "completedon"] },
  );
}

/** The request that asks the certificate pre-processor to issue a certificate. */
export function certificateIssue(key: EnrolmentKey, stamp: Stamp): Record<string, unknown> {
  return {
    eid: "BE_JOB_REQUEST",
    ets: stamp.now,
    mid: `LP.CERT.${midHash(key, "", "issue-certificate")}`,
    actor: { id: "Course Certificate Generator", type: "System" },
    context: { pdata: { ver: "1.0", id: "org.sunbird.platform" } },
    object: { id: `${key.batchId}_${key.courseId}`, type: "CourseCertificateGeneration" },
    edata: {
      userIds: [key.userId],
      action: "issue-certificate",
      iteration: 1,
      trigger: "auto-issue",
      batchId: key.batchId,
      reIssue: false,
      courseId: key.courseId,
    },
  };
}

/** Where a message came from, so it can be read again while the topic retains it. */
export interface MessageSource {
  topic: string;
  partition: number;
  offset: string;
}

/** Why and where processing failed; added to every failed event. */
export interface Failure {
  reason: string;
  stage: string;
  /** The message failed, or the last message of a failed enrolment. */
  source: MessageSource;
}

/** Most bytes of the original a truncated failed event keeps (SPEC §3). */
export const TRUNCATED_VALUE_BYTES = 65_536;

/** A failed input message and the limit its failed event must fit. */
export interface FailedMessageInput {
  /** The parsed original: a JSON object, or the text when it was not one. */
  original: Record<string, unknown> | string;
  /** The original bytes, for the truncated form. */
  raw: Uint8Array | null;
  failure: Failure;
  /** `KAFKA_FAILED_EVENT_MAX_BYTES`. */
  maxBytes: number;
}

/**
 * A failed input message: its original value with a `failure` object added,
 * or, when that would exceed `maxBytes` or cannot be serialised (JSON nested
 * too deep), the truncated form of SPEC §3.
 */
export function failedMessage(input: FailedMessageInput, stamp: Stamp): Record<string, unknown> {
  const failure = failureObject(input.failure, stamp);
  const body = typeof input.original === "string"
    ? { value: input.original }
    : { ...input.original };
  const event = { ...body, failure };
  if (serialisedFits(event, input.maxBytes)) return event;
  const raw = input.raw ?? new Uint8Array();
  return {
    value: cutUtf8(raw, TRUNCATED_VALUE_BYTES),
    truncated: true,
    bytes: raw.length,
    sha256: createHash("sha256").update(raw).digest("hex"),
    failure,
  };
}

/**
 * A failed enrolment as `batch-enrolment-update` requests carrying its units,
 * so that re-publishing them to the input topic processes it again: one
 * request, or several when its units would not fit in `maxBytes` together.
 */
export function failedEnrolment(
  input: { key: EnrolmentKey; units: Unit[]; failure: Failure; maxBytes: number },
  stamp: Stamp,
): Record<string, unknown>[] {
  const { key, units, failure, maxBytes } = input;
  const contents = units.map((u) => ({ contentId: u.contentId, status: 2 }));
  // Ids are at most 512 bytes, so a share of the limit leaves ample room for the envelope.
  const budget = Math.max(1, Math.floor(maxBytes / 2));
  const chunks: (typeof contents)[] = [];
  let chunk: typeof contents = [];
  let bytes = 0;
  for (const c of contents) {
    const size = c.contentId.length * 3 + 32;
    if (chunk.length > 0 && bytes + size > budget) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(c);
    bytes += size;
  }
  chunks.push(chunk);
  return chunks.map((part) => {
    const request = enrolmentUpdate(key, part);
    return {
      eid: request.eid,
      ets: stamp.now,
      mid: `LP.${stamp.now}.${stamp.newId()}`,
      actor: { id: "Course Batch Updater", type: "System" },
      context: { pdata: { ver: "1.0", id: "org.sunbird.platform" } },
      object: { id: `${key.batchId}_${key.userId}`, type: "CourseBatchEnrolment" },
      edata: request.edata,
      failure: failureObject(failure, stamp),
    };
  });
}

/**
 * A failed sync request (SPEC §13) as a `user-enrolment-sync` request, so
 * that re-publishing it to the sync topic reconciles the enrolment again.
 */
export function failedSync(
  key: EnrolmentKey,
  failure: Failure,
  stamp: Stamp,
): Record<string, unknown> {
  const request = enrolmentSync(key);
  return {
    eid: request.eid,
    ets: stamp.now,
    mid: `LP.${stamp.now}.${stamp.newId()}`,
    edata: request.edata,
    failure: failureObject(failure, stamp),
  };
}

/** Whether `value` serialises to JSON of at most `maxBytes` UTF-8 bytes. */
function serialisedFits(value: unknown, maxBytes: number): boolean {
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch {
    return false; // nested too deep for the serialiser's stack
  }
  return text.length * 3 <= maxBytes || encoder.encode(text).length <= maxBytes;
}

const encoder = new TextEncoder();
const lossyUtf8 = new TextDecoder("utf-8");

/** `raw` decoded as UTF-8 (invalid sequences replaced), cut at a character boundary to `maxBytes`. */
export function cutUtf8(raw: Uint8Array, maxBytes: number): string {
  // Re-encoding the lossy decoding gives valid UTF-8, which can be cut at a
  // character boundary: the first byte not of the form 10xxxxxx.
  const valid = encoder.encode(lossyUtf8.decode(raw.subarray(0, maxBytes + 4)));
  if (valid.length <= maxBytes) return lossyUtf8.decode(valid);
  let cut = maxBytes;
  while (cut > 0 && (valid[cut] & 0xc0) === 0x80) cut--;
  return lossyUtf8.decode(valid.subarray(0, cut));
}

function failureObject(failure: Failure, stamp: Stamp) {
  return { ...failure, at: stamp.now, job: "activity-aggregate-updater" };
}

function audit(
  key: EnrolmentKey,
  mid: string,
  stamp: Stamp,
  cdata: { type: string; id: string }[],
  object: Record<string, unknown>,
  edata: { type: string; props: string[] },
): Record<string, unknown> {
  return {
    eid: "AUDIT",
    ver: "3.0",
    ets: stamp.now,
    syncts: stamp.now,
    mid: `LP.AUDIT.${mid}`,
    actor: { id: key.userId, type: "User" },
    context: {
      channel: "in.sunbird",
      env: "Course",
      sid: stamp.newId(),
      did: stamp.newId(),
      pdata: { ver: "3.0", id: "org.sunbird.learning.platform", pid: "course-progress-updater" },
      cdata,
    },
    object,
    edata,
    tags: [],
  };
}
