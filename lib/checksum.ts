/**
 * Unit checksums for de-duplication (SPEC §4).
 *
 * @example
 * ```ts
 * unitChecksum({ courseId: "C1", batchId: "B1", userId: "U-1", contentId: "R2" });
 * // "322336B1929A7EFC58D9DBDC919F2938"
 * ```
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { EnrolmentKey, Unit } from "./event.ts";

/** MD5 of `courseId|batchId|userId|contentId|2`, as 32 upper-case hex digits. */
export function unitChecksum(unit: Unit): string {
  const text = `${unit.courseId}|${unit.batchId}|${unit.userId}|${unit.contentId}|2`;
  return createHash("md5").update(text, "utf8").digest("hex").toUpperCase();
}

/**
 * The de-duplication key recording that Kafka acknowledged an enrolment's
 * certificate request: `CERT-` and the MD5 of
 * `courseId|batchId|userId|issue-certificate`, upper-case hex. Stored as soon
 * as the request is acknowledged, it spares a replay the repeat when a crash
 * comes before the status-2 write.
 */
export function certificateMarker(key: EnrolmentKey): string {
  const text = `${key.courseId}|${key.batchId}|${key.userId}|issue-certificate`;
  return `CERT-${createHash("md5").update(text, "utf8").digest("hex").toUpperCase()}`;
}
