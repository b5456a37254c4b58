import assert from "node:assert/strict";
import { Partitioners, type PartitionMetadata } from "kafkajs";
import { KeyPartitioner, murmur2, partitionOf } from "../../lib/partitioner.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

const partition = (partitionId: number, leader: number): PartitionMetadata => ({
  partitionErrorCode: 0,
  partitionId,
  leader,
  replicas: [0],
  isr: [0],
});

Deno.test("murmur2 matches the hashes of Kafka's own UtilsTest", () => {
  const cases: [string, number][] = [
    ["21", -973932308],
    ["foobar", -790332482],
    ["a-little-bit-long-string", -985981536],
    ["a-little-bit-longer-string", -1486304829],
    ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
    ["abc", 479470107],
  ];
  for (const [key, hash] of cases) assert.equal(murmur2(bytes(key)), hash, key);
});

Deno.test("keyed messages land where KafkaJS's default partitioner puts them", () => {
  let seed = 42;
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const alphabet = "abcdefXYZ0189-_|:é中😀";
  const theirs = Partitioners.DefaultPartitioner();
  const ours = KeyPartitioner();
  for (const partitions of [1, 3, 4, 12, 100]) {
    const partitionMetadata = Array.from({ length: partitions }, (_, i) => partition(i, 0));
    for (let n = 0; n < 500; n++) {
      const chars = Array.from(
        { length: Math.floor(random() * 60) },
        () => [...alphabet][Math.floor(random() * [...alphabet].length)],
      );
      const key = chars.join("");
      const message = { key, value: "v" };
      const expected = theirs({ topic: "t", partitionMetadata, message });
      assert.equal(ours({ topic: "t", partitionMetadata, message }), expected, `key ${key}`);
      assert.equal(partitionOf(bytes(key), partitions), expected, `bytes of ${key}`);
    }
  }
});

Deno.test("an explicit partition wins; keyless messages go round robin over partitions with a leader", () => {
  const ours = KeyPartitioner();
  const partitionMetadata = [0, 1, 2].map((i) => partition(i, i === 1 ? -1 : 0));
  assert.equal(
    ours({ topic: "t", partitionMetadata, message: { key: "k", value: "v", partition: 7 } }),
    7,
  );
  const keyless = Array.from(
    { length: 6 },
    () => ours({ topic: "t", partitionMetadata, message: { key: null, value: "v" } }),
  );
  assert.deepEqual(new Set(keyless), new Set([0, 2]));
  assert.ok(keyless.every((p, i) => i === 0 || p !== keyless[i - 1]), keyless.join());
});
