/**
 * End-to-end tests: the job as a process against real Kafka, Cassandra and
 * Redis from `scripts/stack.sh`.
 */

import assert from "node:assert/strict";
import { unitChecksum } from "../../lib/checksum.ts";
import { EXAMPLE_CONTENTS, EXAMPLE_ROWS, exampleSets } from "../fixtures.ts";
import { enrolmentUpdate } from "../stubs.ts";
import { JobProcess, metricValue, Stack, unique, waitFor } from "../../scripts/local_stack.ts";

// KafkaJS and the Cassandra driver keep sockets and timers that outlive a test's
// last await; each test closes every client it opened in its `finally`.
const opts = { sanitizeOps: false, sanitizeResources: false };

/** The worked example of SPEC §12 on a course of its own. */
async function seedExample(stack: Stack) {
  const courseId = unique("C");
  const key = { userId: unique("U"), courseId, batchId: unique("B") };
  await stack.seedSets(exampleSets(courseId));
  for (const row of EXAMPLE_ROWS) await stack.seedConsumption(key, row);
  await stack.seedEnrolment(key, 1);
  return { key, event: enrolmentUpdate(key, EXAMPLE_CONTENTS) };
}

const typeOf = (e: Record<string, unknown>) => (e.edata as { type: string }).type;
const objectOf = (e: Record<string, unknown>) => (e.object as { id: string }).id;

Deno.test("SPEC §12's example end to end, and a replay changes nothing", opts, async () => {
  const stack = await Stack.open();
  const job = new JobProcess(stack.envForJob());
  try {
    const { key, event } = await seedExample(stack);
    const audits = await stack.collect(stack.topics.audit);
    const certs = await stack.collect(stack.topics.cert);
    await job.ready();
    await stack.produce([event]);

    const enrolment = await waitFor("the enrolment to complete", async () => {
      const row = await stack.enrolment(key);
      return row?.status === 2 ? row : null;
    });
    assert.equal(enrolment.progress, 3);
    assert.deepEqual(enrolment.contentStatus, { R1: 2, R2: 2, R3: 2 });
    assert.ok(enrolment.completedOn instanceof Date);
    // The job writes only the counters; `status` is the upstream service's column.
    assert.deepEqual(await stack.consumption(key), {
      R1: [2, 1, 1],
      R2: [null, 1, 1],
      R3: [1, 3, 1],
    });
    assert.equal(await stack.aggregate(key.courseId, key), 3);
    assert.equal(await stack.aggregate("U1", key), 2);
    assert.equal(await stack.aggregate("U2", key), 1);
    for (const contentId of ["R2", "R3"]) {
      assert.ok(await stack.hasChecksum(unitChecksum({ ...key, contentId })), contentId);
    }
    assert.equal(await stack.dedup.ttl(unitChecksum({ ...key, contentId: "R2" })) > 600_000, true);
    await waitFor(
      "four AUDIT events and one certificate",
      () => audits.length === 4 && certs.length === 1,
    );
    assert.deepEqual(
      audits.map((e) => `${objectOf(e)}:${typeOf(e)}`).sort(),
      ["R2:complete", "R2:start", "R3:complete", `${key.userId}:enrol-complete`],
    );
    assert.deepEqual((certs[0].edata as { userIds: string[] }).userIds, [key.userId]);
    await waitFor("the offset to be committed", async () => (await stack.committedInput()) === 1);

    // The same event again: committed, counted as duplicates, nothing written or sent.
    await stack.produce([event]);
    await waitFor("the replay to be committed", async () => (await stack.committedInput()) === 2);
    assert.deepEqual(await stack.consumption(key), {
      R1: [2, 1, 1],
      R2: [null, 1, 1],
      R3: [1, 3, 1],
    });
    assert.equal(audits.length, 4);
    assert.equal(certs.length, 1);
    const metrics = await job.metrics();
    assert.equal(metricValue(metrics, "activity_agg_duplicate_units_total"), 2);
    assert.equal(metricValue(metrics, "activity_agg_processed_enrolments_total"), 1);
    assert.equal(metricValue(metrics, "activity_agg_cert_issue_events_total"), 1);
    assert.equal(metricValue(metrics, "activity_agg_total_events_total"), 2);
  } finally {
    const status = await job.stop();
    await stack.close();
    assert.equal(status.code, 0, job.log);
  }
});
