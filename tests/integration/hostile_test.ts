/**
 * The messages that once stopped the job (SPEC §3, "Hostile input"), on the
 * real stack: each gets its outcome, the job stays up and ready, every offset
 * is committed, and the valid events around them are applied.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { enrolmentUpdate } from "../../lib/event.ts";
import { exampleSets } from "../support/fixtures.ts";
import { JobProcess, Stack, unique, waitFor } from "../support/stack.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

type Failed = Record<string, unknown> & {
  failure: { reason: string; stage: string; source: { topic: string; offset: string } };
};

Deno.test(
  "deep JSON, 1 MB of invalid JSON, a 1 MB courseId and a 70 KB userId never stop the job",
  opts,
  async () => {
    const stack = await Stack.open({ partitions: 2 });
    const job = new JobProcess(stack.envForJob());
    try {
      const courseId = unique("C");
      await stack.seedSets(exampleSets(courseId));
      const valid = Array.from({ length: 8 }, () => {
        const key = { userId: unique("U"), courseId, batchId: unique("B") };
        return { key, event: enrolmentUpdate(key, [{ contentId: "R1", status: 2 }]) };
      });
      for (const { key } of valid) await stack.seedEnrolment(key, 1);

      const ids = { courseId, batchId: "B-hostile" };
      const deep = `{"eid":"BE_JOB_REQUEST","edata":{"action":"batch-enrolment-update",` +
        `"courseId":"${courseId}","batchId":"B","deep":${'{"a":'.repeat(10_000)}1${
          "}".repeat(10_000)
        }}}`;
      const invalidJson = `{"edata": "${"x".repeat(1_000_000)}`;
      const hugeCourse = enrolmentUpdate({
        userId: unique("U"),
        ...ids,
        courseId: "c".repeat(1_000_000),
      }, [
        { contentId: "R1", status: 2 },
      ]);
      const longUser = enrolmentUpdate({ userId: "u".repeat(70_000), ...ids }, [
        { contentId: "R1", status: 2 },
      ]);
      const hostile = [deep, invalidJson, hugeCourse, longUser];

      const failedEvents = await stack.collect(stack.topics.failed) as Failed[];
      await job.ready();
      const started = performance.now();
      const messages: unknown[] = [];
      hostile.forEach((bad, i) =>
        messages.push(bad, ...valid.slice(2 * i, 2 * i + 2).map((v) => v.event))
      );
      for (const message of messages) await stack.produce([message]);

      await waitFor(
        "every offset to be committed",
        async () => (await stack.committedInput()) === messages.length,
        60_000,
      );
      const committedMs = performance.now() - started;
      // Still up, and ready: no outage was reported for any of them.
      await job.ready(10_000);

      for (const { key } of valid) {
        assert.equal((await stack.aggregate(courseId, key)) ?? null, 1, key.userId);
        assert.equal((await stack.enrolment(key))?.progress, 1, key.userId);
      }

      await waitFor("four failed events", () => failedEvents.length === 4);
      const bySize = (value: string | unknown) =>
        new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
      const sha256 = (value: unknown) => createHash("sha256").update(bySize(value)).digest("hex");
      const withReason = (pattern: RegExp) =>
        failedEvents.find((e) => pattern.test(e.failure.reason));
      const deepFailed = withReason(/edata\.userId/);
      const invalidFailed = failedEvents.find((e) => e.sha256 === sha256(invalidJson));
      const courseFailed = failedEvents.find((e) => e.sha256 === sha256(hugeCourse));
      const userFailed = withReason(/identifier too long: userId/);
      for (const e of failedEvents) {
        assert.equal(e.failure.source.topic, stack.topics.input);
        assert.ok(bySize(e).length <= 921_600, "fits the failed-event limit");
      }
      assert.ok(deepFailed, "the deep message failed for its missing userId");
      for (
        const [event, bad] of [[invalidFailed, invalidJson], [courseFailed, hugeCourse]] as const
      ) {
        assert.ok(event, "a truncated failed event for each 1 MB message");
        assert.equal(event.truncated, true);
        assert.equal(event.bytes, bySize(bad).length);
        assert.equal(bySize(event.value).length, 65_536);
      }
      assert.match(invalidFailed!.failure.reason, /not JSON/);
      assert.equal(courseFailed!.failure.reason, "identifier too long: courseId");
      assert.equal(userFailed!.failure.reason, "identifier too long: userId");
      assert.equal((userFailed!.edata as { userId: string }).userId.length, 70_000);

      const peakKiB = Number(
        /VmHWM:\s+(\d+)/.exec(await Deno.readTextFile(`/proc/${job.pid}/status`))![1],
      );
      console.log(
        `hostile: ${messages.length} messages committed in ${Math.round(committedMs)} ms; ` +
          `peak RSS ${Math.round(peakKiB / 1024)} MiB`,
      );
    } finally {
      await job.stop();
      await stack.close();
    }
  },
);
