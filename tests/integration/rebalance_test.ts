/**
 * SPEC §5: when the group rebalances, a member gives up a partition only
 * after the windows holding its messages are committed, so two live members
 * never apply the same message. Members join and leave gracefully a dozen
 * times while a backlog with completions drains; every effect happens once.
 */

import assert from "node:assert/strict";
import { enrolmentUpdate } from "../../lib/event.ts";
import { exampleSets } from "../support/fixtures.ts";
import { HoldingProxy } from "../support/proxy.ts";
import { JobProcess, Stack, stackCassandra, unique, waitFor } from "../support/stack.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const ENROLMENTS = 1000;
const CHANGES = 12;
/** The example course's required contents: completing all three completes the enrolment. */
const CONTENTS = ["R1", "R2", "R3"];

Deno.test(
  "members join and leave 12 times while a backlog drains: no duplicate certificate, exact state",
  opts,
  async () => {
    const stack = await Stack.open({ partitions: 6 });
    const env = () =>
      stack.envForJob({
        // Small windows: the backlog lasts through every membership change,
        // with a window in flight at each.
        THRESHOLD_BATCH_READ_SIZE: "4",
        SHUTDOWN_TIMEOUT: "20s",
      });
    const members: JobProcess[] = [];
    try {
      const courseId = unique("C");
      await stack.seedSets(exampleSets(courseId));
      const keys = await seedCompletableEnrolments(stack, courseId, ENROLMENTS);
      const events = CONTENTS.flatMap((contentId) =>
        keys.map((key) => enrolmentUpdate(key, [{ contentId, status: 2 }]))
      );
      const certs = await stack.collect(stack.topics.cert);
      const audits = await stack.collect(stack.topics.audit);

      // The whole backlog first, then membership changes while it drains.
      await stack.produce(events);
      members.push(new JobProcess(env()));
      await members[0].ready();
      for (let change = 1; change <= CHANGES; change++) {
        // Alternate: a member joins while at most three run, else the oldest leaves.
        if (members.length < 3 && (change % 2 === 1 || members.length === 1)) {
          const joined = new JobProcess(env());
          members.push(joined);
          await joined.ready();
        } else {
          const leaving = members.shift()!;
          const status = await leaving.stop();
          assert.equal(status.code, 0, leaving.log.slice(-2000));
        }
        if (change === 10) {
          const committed = await stack.committedInput();
          assert.ok(committed < events.length, `10 changes during the backlog (${committed})`);
        }
      }
      await waitFor(
        "the backlog to be committed",
        async () => (await stack.committedInput()) === events.length,
        120_000,
      );

      // Every content counted exactly once: no message was applied twice.
      for (const key of keys) {
        assert.deepEqual(await stack.consumption(key), {
          R1: [2, 1, 1],
          R2: [2, 1, 1],
          R3: [2, 1, 1],
        }, key.userId);
        const enrolment = await stack.enrolment(key);
        assert.equal(enrolment?.status, 2, key.userId);
        assert.equal(enrolment?.progress, 3, key.userId);
      }
      await readToEnd(stack, { certs, audits });
      const certUsers = certs.map((c) => (c.edata as { userIds: string[] }).userIds[0]);
      const completed = audits
        .filter((a) => (a.edata as { type: string }).type === "enrol-complete")
        .map((a) => (a.actor as { id: string }).id);
      console.log(
        `rebalance: ${CHANGES} membership changes, ${events.length} events; ` +
          `${certs.length} certificates and ${completed.length} enrol-complete events ` +
          `for ${ENROLMENTS} enrolments, ${audits.length} AUDIT events`,
      );
      assert.equal(certUsers.length, ENROLMENTS, "no duplicate certificate");
      assert.equal(new Set(certUsers).size, ENROLMENTS);
      assert.equal(completed.length, ENROLMENTS, "no duplicate enrol-complete event");
      assert.equal(new Set(completed).size, ENROLMENTS);
      // The content AUDIT events too: start and complete once per content.
      assert.equal(audits.length, ENROLMENTS * (1 + 2 * CONTENTS.length));
    } finally {
      await Promise.all(members.map((m) => m.stop()));
      await stack.close();
    }
  },
);

Deno.test(
  "a member whose window is stuck in an outage keeps its partitions until the window is committed",
  opts,
  async () => {
    const stack = await Stack.open({ partitions: 4 });
    // Member A reaches Cassandra through a proxy the test can hold.
    const proxy = new HoldingProxy({ hostname: "127.0.0.1", port: stackCassandra().port });
    const members: JobProcess[] = [];
    try {
      const courseId = unique("C");
      await stack.seedSets(exampleSets(courseId));
      const keys = await seedCompletableEnrolments(stack, courseId, 100);
      const events = CONTENTS.flatMap((contentId) =>
        keys.map((key) => enrolmentUpdate(key, [{ contentId, status: 2 }]))
      );
      const certs = await stack.collect(stack.topics.cert);
      const audits = await stack.collect(stack.topics.audit);

      const a = new JobProcess(stack.envForJob({ LMS_CASSANDRA_PORT: String(proxy.port) }));
      members.push(a);
      await a.ready();
      await waitFor(
        "A to own every partition",
        () => a.assignment(stack.topics.input)?.length === 4,
      );
      // The whole backlog fits one window, so A's batch handlers return at
      // once and only the join can keep A's partitions while it is stuck.
      proxy.hold();
      await stack.produce(events);
      await waitFor("A to take the backlog", async () => await consumerLagReported(a));

      const b = new JobProcess(stack.envForJob());
      members.push(b);
      await waitFor("A to see the rebalance B starts", () => /rebalanc/i.test(a.log), 30_000);
      // Long enough for B to join and take over, had A given its partitions up.
      const takenOver = await waitFor(
        "B to join while A is stuck",
        () => b.assignment(stack.topics.input) !== null,
        8_000,
      ).then(() => true, () => false);
      assert.equal(takenOver, false, "B was given partitions while A held an uncommitted window");
      assert.equal(await stack.committedInput(), 0, "nothing committed while A is stuck");

      proxy.release();
      await waitFor("B to join once A has committed", () => b.assignment(stack.topics.input));
      await waitFor(
        "the backlog to be committed",
        async () => (await stack.committedInput()) === events.length,
        60_000,
      );
      await readToEnd(stack, { certs, audits });
      assert.equal(certs.length, keys.length, "one certificate per completion");
      assert.equal(
        audits.length,
        keys.length * (1 + 2 * CONTENTS.length),
        "every AUDIT event once",
      );
    } finally {
      await Promise.all(members.map((m) => m.stop()));
      await proxy.close();
      await stack.close();
    }
  },
);

/**
 * Seeds `count` enrolments of `courseId` at status 1 whose three contents
 * upstream has already marked complete: one event per content completes each.
 */
async function seedCompletableEnrolments(stack: Stack, courseId: string, count: number) {
  const keys = Array.from({ length: count }, (_, i) => ({
    userId: `${unique("U")}-${i}`,
    courseId,
    batchId: unique("B"),
  }));
  for (let i = 0; i < keys.length; i += 50) {
    await Promise.all(
      keys.slice(i, i + 50).map(async (key) => {
        await stack.seedEnrolment(key, 1);
        // Upstream writes each content's state row before it publishes the event.
        for (const contentId of CONTENTS) {
          await stack.seedConsumption(key, {
            contentId,
            status: 2,
            viewCount: 0,
            completedCount: 0,
          });
        }
      }),
    );
  }
  return keys;
}

/** Whether `job` has taken batches: KafkaJS reports a partition's lag once its handler returns. */
async function consumerLagReported(job: JobProcess): Promise<boolean> {
  return (await job.metrics()).includes("activity_agg_consumer_lag{");
}

/** Waits until both collections hold their topic to its end: every event the job sent is counted. */
async function readToEnd(
  stack: Stack,
  collected: { certs: unknown[]; audits: unknown[] },
): Promise<void> {
  await waitFor(
    "the certificate topic read to its end",
    async () => collected.certs.length === await endOffset(stack, stack.topics.cert),
  );
  await waitFor(
    "the AUDIT topic read to its end",
    async () => collected.audits.length === await endOffset(stack, stack.topics.audit),
  );
}

/** The end offset of a one-partition topic: how many events it holds. */
async function endOffset(stack: Stack, topic: string): Promise<number> {
  const admin = stack.kafka.admin();
  await admin.connect();
  try {
    const [partition] = await admin.fetchTopicOffsets(topic);
    return Number(partition.high);
  } finally {
    await admin.disconnect();
  }
}
