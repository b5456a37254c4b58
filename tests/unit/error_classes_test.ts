/**
 * Every adapter sorts the errors its driver really throws (recorded from the
 * local stack in tests/fixtures/driver_errors.json) by who can cure them
 * (SPEC §3): nothing but an operator (permanent: the job stops), other input
 * (the enrolment or message fails alone), or time (an outage, waited out).
 */
import assert from "node:assert/strict";
import { classifyCassandraError } from "../../lib/cassandra_client.ts";
import { classifyKafkaError } from "../../lib/kafka.ts";
import { InputRejectedError, PermanentError } from "../../lib/ports.ts";
import { classifyRedisError } from "../../lib/redis.ts";
import { driverError, driverErrorIds } from "../support/driver_errors.ts";

type Class = "permanent" | "input" | "passing";

function classOf(error: unknown): Class {
  if (error instanceof PermanentError) return "permanent";
  if (error instanceof InputRejectedError) return "input";
  return "passing";
}

const EXPECTED: Record<string, [Class, (e: unknown) => unknown]> = {
  // Cassandra: a key too long or a value a column cannot hold is the input's.
  "key-too-long-update": ["input", classifyCassandraError],
  "key-too-long-select": ["input", classifyCassandraError],
  "key-too-long-composite": ["input", classifyCassandraError],
  "clustering-key-too-long": ["input", classifyCassandraError],
  "wrong-type-string-for-int": ["input", classifyCassandraError],
  "wrong-type-number-for-text": ["input", classifyCassandraError],
  "int-out-of-range": ["input", classifyCassandraError],
  "null-key": ["input", classifyCassandraError],
  "empty-partition-key": ["input", classifyCassandraError],
  "batch-too-large": ["input", classifyCassandraError],
  // A missing table, column or keyspace, or a syntax error: no input cures it.
  "unconfigured-table": ["permanent", classifyCassandraError],
  "unknown-column": ["permanent", classifyCassandraError],
  "keyspace-does-not-exist": ["permanent", classifyCassandraError],
  "syntax-error": ["permanent", classifyCassandraError],
  // Timeouts and unreachable hosts pass.
  "client-read-timeout": ["passing", classifyCassandraError],
  "client-read-timeout-idempotent": ["passing", classifyCassandraError],
  "all-hosts-down-connect": ["passing", classifyCassandraError],
  "all-hosts-down-execute": ["passing", classifyCassandraError],
  // Redis: one course's structure stored as another type fails that course.
  "wrongtype": ["input", classifyRedisError],
  "wrongtype-pipeline": ["input", classifyRedisError],
  "noauth": ["permanent", classifyRedisError],
  "wrongpass-error-event": ["permanent", classifyRedisError],
  // connectRedis surfaces the WRONGPASS of the 'error' event; the rejection itself says less.
  "wrongpass": ["passing", classifyRedisError],
  "command-timeout-blpop": ["passing", classifyRedisError],
  "command-timeout-debug-sleep": ["passing", classifyRedisError],
  "closed-connection": ["passing", classifyRedisError],
  "refused-offline-queue-off": ["passing", classifyRedisError],
  "refused-connect": ["passing", classifyRedisError],
  "refused-error-event": ["passing", classifyRedisError],
  "refused-max-retries": ["passing", classifyRedisError],
  // Kafka: an event over the broker's limit is that event's; a bad topic name is permanent.
  "message-too-large": ["input", classifyKafkaError],
  "record-batch-too-large": ["input", classifyKafkaError],
  "invalid-topic-name": ["permanent", classifyKafkaError],
  "unknown-topic": ["passing", classifyKafkaError],
  "closed-port-producer-connect": ["passing", classifyKafkaError],
  "closed-port-consumer-connect": ["passing", classifyKafkaError],
  "closed-port-admin-connect": ["passing", classifyKafkaError],
  "stale-generation-commit": ["passing", classifyKafkaError],
};

for (const [id, [expected, classify]] of Object.entries(EXPECTED)) {
  Deno.test(`a recorded ${id} error is ${expected}`, () => {
    const original = driverError(id);
    const classified = classify(original);
    assert.equal(classOf(classified), expected, String(original));
    if (expected !== "passing") {
      assert.equal((classified as Error).cause, original, "the original is kept as cause");
    } else {
      assert.equal(classified, original, "a passing error is returned unchanged");
    }
  });
}

Deno.test("every recorded Cassandra, Redis and Kafka case has an expected class", () => {
  const recorded = ["cassandra", "redis", "kafka"].flatMap((d) =>
    driverErrorIds(d as "cassandra" | "redis" | "kafka")
  );
  const unclassified = recorded.filter((id) => !(id in EXPECTED) && id !== "debug-disabled");
  assert.deepEqual(unclassified, []);
});
