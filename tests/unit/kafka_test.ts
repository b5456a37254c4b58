import ConsumerGroup from "kafkajs/src/consumer/consumerGroup.js";
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import { awaitBeforeGroupChange, KafkaInput, produceRequests } from "../../lib/kafka.ts";
import type { OutputEvent } from "../../lib/ports.ts";

const event = (topic: string, key: string, n: number): OutputEvent => ({
  topic,
  key,
  value: { n, pad: "x".repeat(90) },
});

Deno.test("produce requests stay under the byte limit and keep every event in order", () => {
  const events = Array.from(
    { length: 50 },
    (_, i) => event(i % 3 === 0 ? "audit" : "cert", `u${i % 5}`, i),
  );
  const size = (e: OutputEvent) => JSON.stringify(e.value).length + e.key.length;
  const limit = size(events[0]) * 7;
  const requests = produceRequests(events, { maxBytes: limit, maxMessages: 1000 });
  assert.ok(requests.length >= 8, `${requests.length} requests`);
  for (const request of requests) {
    const bytes = request.flatMap((t) => t.messages)
      .reduce((sum, m) => sum + m.value.length + (m.key?.length ?? 0), 0);
    assert.ok(bytes <= limit, `${bytes} > ${limit}`);
  }
  const sent = requests.flatMap((r) =>
    r.flatMap((t) =>
      t.messages.map((m) => ({ topic: t.topic, n: JSON.parse(m.value.toString()).n }))
    )
  );
  for (const topic of ["audit", "cert"]) {
    assert.deepEqual(
      sent.filter((s) => s.topic === topic).map((s) => s.n),
      events.map((e, i) => ({ e, i })).filter(({ e }) => e.topic === topic).map(({ i }) => i),
    );
  }
});

Deno.test("an event larger than the limit goes alone; an empty key is no key", () => {
  const requests = produceRequests([event("t", "", 1), event("t", "u", 2)], {
    maxBytes: 10,
    maxMessages: 1000,
  });
  assert.equal(requests.length, 2);
  assert.equal(requests[0][0].messages[0].key, null);
  assert.equal(requests[1][0].messages[0].key, "u");
});

Deno.test("produce requests carry at most maxMessages messages over all topics", () => {
  const events = Array.from({ length: 10 }, (_, i) => event(i % 2 ? "audit" : "cert", "u", i));
  const requests = produceRequests(events, { maxBytes: 1 << 20, maxMessages: 4 });
  assert.deepEqual(
    requests.map((r) => r.reduce((sum, t) => sum + t.messages.length, 0)),
    [4, 4, 2],
  );
  assert.deepEqual(
    requests.flatMap((r) =>
      r.flatMap((t) => t.messages.map((m) => JSON.parse(m.value.toString()).n))
    )
      .sort((a, b) => a - b),
    events.map((_, i) => i),
  );
});

Deno.test("a KafkaJS request queue with nothing pending arms no timer; one with a waiting request does", () => {
  // lib/kafka.ts, imported above, has patched the queue's prototype.
  const queue = new RequestQueue({
    maxInFlightRequests: 1,
    requestTimeout: 1000,
    enforceRequestTimeout: false,
    clientId: "test",
    broker: "127.0.0.1:1",
    logger: { debug() {}, warn() {} },
  });
  try {
    queue.checkPendingRequests();
    assert.equal(queue.throttleCheckTimeoutId, null, "an idle queue re-armed its check");
    queue.pending.push({});
    queue.throttledUntil = Date.now() + 60_000;
    queue.scheduleCheckPendingRequests();
    assert.notEqual(queue.throttleCheckTimeoutId, null, "a waiting request got no check");
  } finally {
    queue.destroy();
  }
});

Deno.test("a KafkaJS consumer group joins and leaves only once the hooks of its group id have resolved", async () => {
  // lib/kafka.ts, imported above, has patched the group's prototype.
  const group = (groupId: string) => {
    const changes: string[] = [];
    const member = Object.assign(Object.create(ConsumerGroup.prototype), {
      groupId,
      heartbeat: () => Promise.resolve(),
      // joinAndSync's first step: past it, KafkaJS sends JoinGroup.
      retrier: () => Promise.resolve(changes.push("join")),
      // leave's: past it, KafkaJS sends LeaveGroup.
      memberId: "m-1",
      coordinator: { leaveGroup: () => Promise.resolve(changes.push("leave")) },
    });
    return { changes, join: () => member.joinAndSync(), leave: () => member.leave() };
  };
  const committed = Promise.withResolvers<void>();
  const release = awaitBeforeGroupChange("held", () => committed.promise);
  try {
    const held = group("held");
    const other = group("other");
    const joined = held.join();
    const left = held.leave();
    await other.join();
    await other.leave();
    assert.deepEqual(other.changes, ["join", "leave"], "another group's member is not held");
    await Promise.resolve();
    assert.deepEqual(held.changes, [], "joined or left before the hook resolved");
    committed.resolve();
    await Promise.all([joined, left]);
    assert.deepEqual(held.changes.sort(), ["join", "leave"]);
  } finally {
    release();
  }
  const afterRelease = group("held");
  await afterRelease.join();
  assert.deepEqual(afterRelease.changes, ["join"]);
});

Deno.test("pausing a consumer that is not running (between a crash and its restart) is no error", () => {
  // Never connected: KafkaJS has no group, as after a crash until it restarts.
  const kafka = new Kafka({ brokers: ["127.0.0.1:9"], logLevel: logLevel.NOTHING });
  const input = new KafkaInput(kafka, { groupId: "g", topics: ["t"], sessionTimeoutMs: 30_000 });
  assert.doesNotThrow(() => input.pause());
  assert.throws(
    () => kafka.consumer({ groupId: "g" }).pause([{ topic: "t" }]),
    /Consumer group was not initialized/,
  );
});
