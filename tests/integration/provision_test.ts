/**
 * Scratch environments on the stack's Kafka (`scripts/stack.sh up`): a test's
 * topics and groups go when it closes its stack, and pruning one environment
 * leaves every other topic, and any group that still has members.
 *
 * Run: scripts/deno.sh test --allow-all tests/integration/provision_test.ts
 */

import assert from "node:assert/strict";
import { type Admin, type Consumer, Kafka, logLevel } from "kafkajs";
import { ensureTopics, pruneScratch, scratchJobEnv } from "../../scripts/provision.ts";
import { identifierSuffix, Stack, waitFor } from "../support/stack.ts";

const BROKERS = (Deno.env.get("KAFKA_BROKER_SERVERS") ?? "127.0.0.1:19092").split(",");
const opts = { sanitizeOps: false, sanitizeResources: false };

const kafka = new Kafka({ clientId: "it", brokers: BROKERS, logLevel: logLevel.NOTHING });

async function withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

/** The broker's topics and consumer groups. */
async function listed(): Promise<{ topics: Set<string>; groups: Set<string> }> {
  return await withAdmin(async (admin) => ({
    topics: new Set(await admin.listTopics()),
    groups: new Set((await admin.listGroups()).groups.map((g) => g.groupId)),
  }));
}

/** A group on `topic` with a committed offset and no members. */
async function idleGroup(groupId: string, topic: string): Promise<void> {
  await withAdmin((admin) =>
    admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: "0" }] })
  );
}

/** A group on `topic` with one member, which the caller disconnects. */
async function liveGroup(groupId: string, topic: string): Promise<Consumer> {
  const consumer = kafka.consumer({ groupId });
  const joined = new Promise<void>((resolve) =>
    consumer.on(consumer.events.GROUP_JOIN, () => resolve())
  );
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({ eachMessage: () => Promise.resolve() });
  await joined;
  return consumer;
}

Deno.test(
  "provision: pruning a scratch environment deletes its topics and idle groups, nothing else",
  opts,
  async () => {
    const doomed = scratchJobEnv();
    const neighbour = scratchJobEnv();
    const kept = `keep${identifierSuffix()}`;
    const topic = (env: string) => `${env}.coursebatch.job.request`;
    await ensureTopics(
      BROKERS,
      [doomed, neighbour, kept].map((env) => ({ topic: topic(env), numPartitions: 1 })),
    );
    // A fresh admin client for each step: a client that has seen a topic
    // fails its metadata refreshes once another client deleted it.
    const live = await liveGroup(`${doomed}-live`, topic(doomed));
    try {
      await idleGroup(`${doomed}-idle`, topic(doomed));
      await idleGroup(`${neighbour}-idle`, topic(neighbour));

      const pruned = await pruneScratch(BROKERS, doomed);

      assert.deepEqual(pruned, { topics: [topic(doomed)], groups: [`${doomed}-idle`] });
      const { topics, groups } = await listed();
      assert.deepEqual(
        [topic(doomed), topic(neighbour), topic(kept)].map((t) => topics.has(t)),
        [false, true, true],
      );
      assert.deepEqual(
        [`${doomed}-idle`, `${doomed}-live`, `${neighbour}-idle`].map((g) => groups.has(g)),
        [false, true, true],
      );
    } finally {
      await live.disconnect();
      await pruneScratch(BROKERS, doomed);
      await pruneScratch(BROKERS, neighbour);
      await withAdmin((admin) => admin.deleteTopics({ topics: [topic(kept)] }));
    }
  },
);

Deno.test("provision: only a scratch environment can be pruned", async () => {
  await assert.rejects(pruneScratch(BROKERS, "local"), /not a scratch environment: local/);
});

Deno.test(
  "stack: closing a test's stack deletes its topics and its readers' groups",
  opts,
  async () => {
    const stack = await Stack.open({ partitions: 2 });
    await stack.produce([{ eid: "BE_JOB_REQUEST" }]);
    const read = await stack.collect(stack.topics.input);
    await waitFor("the event on the input topic", () => read.length === 1);
    const before = await listed();
    assert.equal([...before.topics].filter((t) => t.startsWith(`${stack.jobEnv}.`)).length, 4);
    assert.equal(
      [...before.groups].filter((g) => g.startsWith(`${stack.jobEnv}-reader-`)).length,
      1,
    );

    await stack.close();

    const after = await listed();
    assert.deepEqual([...after.topics].filter((t) => t.startsWith(`${stack.jobEnv}.`)), []);
    assert.deepEqual([...after.groups].filter((g) => g.startsWith(`${stack.jobEnv}-`)), []);
  },
);
