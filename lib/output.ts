/**
 * Output event formats (SPEC §8): content and enrolment AUDIT telemetry,
 * certificate-issue requests, and replayable failed events.
 *
 * @module
 */

import { type EnrolmentKey, enrolmentUpdate, type Unit } from "./event.ts";
import type { IdSource } from "./ports.ts";

/** A content action found in SPEC §6 step 3. */
export type ContentAction = "start" | "complete";

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
  return audit(unit.userId, stamp, [{ type: "CourseBatch", id: unit.batchId }], {
    id: unit.contentId,
    type: "Content",
    rollup: { l1: unit.courseId },
  }, { type: action, props: AUDIT_PROPS[action] });
}

/** The AUDIT event of an enrolment's completion. */
export function enrolCompleteAudit(key: EnrolmentKey, stamp: Stamp): Record<string, unknown> {
  return audit(
    key.userId,
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
    mid: `LP.${stamp.now}.${stamp.newId()}`,
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

/** Why and where processing failed; added to every failed event. */
export interface Failure {
  reason: string;
  stage: string;
}

/** A failed input message: its original value with a `failure` object added. */
export function failedMessage(
  original: Record<string, unknown> | string,
  failure: Failure,
  stamp: Stamp,
): Record<string, unknown> {
  const body = typeof original === "string" ? { value: original } : { ...original };
  return { ...body, failure: failureObject(failure, stamp) };
}

/**
 * A failed enrolment as a `batch-enrolment-update` request carrying its units,
 * so that re-publishing it to the input topic processes it again.
 */
export function failedEnrolment(
  key: EnrolmentKey,
  units: Unit[],
  failure: Failure,
  stamp: Stamp,
): Record<string, unknown> {
  const request = enrolmentUpdate(key, units.map((u) => ({ contentId: u.contentId, status: 2 })));
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
}

function failureObject(failure: Failure, stamp: Stamp) {
  return { ...failure, at: stamp.now, job: "activity-aggregate-updater" };
}

function audit(
  userId: string,
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
    mid: `LP.AUDIT.${stamp.newId()}`,
    actor: { id: userId, type: "User" },
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
