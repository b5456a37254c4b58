/**
 * Every adapter sorts the errors its driver really throws (recorded from the
 * local stack in tests/fixtures/driver_errors.json) by who can cure them
 * (SPEC §3): nothing but an operator (permanent: the job stops), other input
 * (the enrolment or message fails alone), or time (an outage, waited out).
 */
import assert from "node:assert/strict";
import { classifyError } from "../../lib/cassandra.ts";
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
  "key-too-long-update": ["input", classifyError],
  "key-too-long-select": ["input", classifyError],
  "key-too-long-composite": ["input", classifyError],
  "clustering-key-too-long": ["input", classifyError],
  "wrong-type-string-for-int": ["input", classifyError],
  "wrong-type-number-for-text": ["input", classifyError],
  "int-out-of-range": ["input", classifyError],
  "null-key": ["input", classifyError],
  "empty-partition-key": ["input", classifyError],
  "batch-too-large": ["input", classifyError],
  // A missing table, column or keyspace, or a syntax error: no input cures it.
  "unconfigured-table": ["permanent", classifyError],
  "unknown-column": ["permanent", classifyError],
  "keyspace-does-not-exist": ["permanent", classifyError],
  "syntax-error": ["permanent", classifyError],
  // Timeouts and unreachable hosts pass.
  "client-read-timeout": ["passing", classifyError],
  "client-read-timeout-idempotent": ["passing", classifyError],
  "all-hosts-down-connect": ["passing", classifyError],
  "all-hosts-down-execute": ["passing", classifyError],
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
