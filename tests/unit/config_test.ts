import assert from "node:assert/strict";
import { ConfigError, loadConfig, mergeEnv, parseDotenv, parseDuration } from "../../lib/config.ts";

Deno.test("defaults follow SPEC §2, with {env} substituted", () => {
  const config = loadConfig({ JOB_ENV: "dev" });
  assert.equal(config.kafka.inputTopic, "dev.coursebatch.job.request");
  assert.equal(config.kafka.failedTopic, "dev.activity.agg.failed");
  assert.equal(config.kafka.auditTopic, "dev.telemetry.raw");
  assert.equal(config.kafka.certIssueTopic, "dev.issue.certificate.request");
  assert.equal(config.kafka.groupId, "dev-activity-aggregate-updater-group");
  assert.deepEqual(config.kafka.brokers, ["localhost:9092"]);
  assert.equal(config.cassandra.keyspace, "sunbird_courses");
  assert.equal(config.relationCache.db, 10);
  assert.equal(config.dedup.db, 13);
  assert.equal(config.dedup.expirySeconds, 604800);
  assert.equal(config.window.maxUnits, 1000);
  assert.equal(config.window.maxWaitMs, 1000);
  assert.equal(config.writeBatchSize, 10);
  assert.equal(config.search.statusCacheTtlMs, 3_600_000);
  assert.equal(config.search.basePath, "http://localhost:9000");
  assert.equal(loadConfig({}).kafka.inputTopic, "local.coursebatch.job.request");
});

Deno.test("the dedup server defaults to the relation cache's server", () => {
  const config = loadConfig({ REDIS_HOST: "cache", REDIS_PORT: "7000" });
  assert.equal(config.dedup.host, "cache");
  assert.equal(config.dedup.port, 7000);
  const split = loadConfig({ REDIS_HOST: "cache", DEDUP_REDIS_HOST: "dedup" });
  assert.equal(split.dedup.host, "dedup");
});

Deno.test("durations take seconds, ms, s and m", () => {
  assert.equal(parseDuration("2"), 2000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("2s"), 2000);
  assert.equal(parseDuration("0.5"), 500);
  assert.equal(parseDuration("1m"), 60_000);
  assert.equal(parseDuration("soon"), null);
  assert.equal(loadConfig({ THRESHOLD_BATCH_READ_INTERVAL: "250ms" }).window.maxWaitMs, 250);
});

Deno.test("lists and booleans parse", () => {
  const config = loadConfig({
    KAFKA_BROKER_SERVERS: "a:9092, b:9092",
    ACTIVITY_MODULE_AGGS_ENABLED: "FALSE",
    ACTIVITY_INPUT_DEDUP_ENABLED: "false",
  });
  assert.deepEqual(config.kafka.brokers, ["a:9092", "b:9092"]);
  assert.equal(config.moduleAggsEnabled, false);
  assert.equal(config.dedup.enabled, false);
});

Deno.test("every bad value is reported at once, naming the variable and the value", () => {
  const error = caught(() =>
    loadConfig({
      ACTIVITY_INPUT_DEDUP_ENABLED: "yes",
      THRESHOLD_BATCH_READ_SIZE: "-5",
      THRESHOLD_BATCH_WRITE_SIZE: "ten",
      THRESHOLD_BATCH_READ_INTERVAL: "soon",
      SERVICE_SEARCH_BASEPATH: "not a url",
      REDIS_PORT: "70000",
      DEDUP_REDIS_DATABASE_INDEX: "16",
      LOG_LEVEL: "loud",
    })
  );
  const expected = [
    'ACTIVITY_INPUT_DEDUP_ENABLED="yes"',
    'THRESHOLD_BATCH_READ_SIZE="-5"',
    'THRESHOLD_BATCH_WRITE_SIZE="ten"',
    'THRESHOLD_BATCH_READ_INTERVAL="soon"',
    'SERVICE_SEARCH_BASEPATH="not a url"',
    'REDIS_PORT="70000"',
    'DEDUP_REDIS_DATABASE_INDEX="16"',
    'LOG_LEVEL="loud"',
  ];
  assert.equal(error.problems.length, expected.length);
  for (const prefix of expected) {
    assert.ok(error.problems.some((p) => p.startsWith(prefix)), `${prefix} not reported`);
  }
  assert.match(error.message, /THRESHOLD_BATCH_READ_SIZE="-5": expected a positive integer/);
});

Deno.test("zero is not a positive integer", () => {
  assert.throws(() => loadConfig({ THRESHOLD_BATCH_READ_SIZE: "0" }), /THRESHOLD_BATCH_READ_SIZE/);
});

Deno.test("dotenv parsing, with the real environment winning", () => {
  const file = parseDotenv([
    "# comment",
    "JOB_ENV=staging",
    "export KAFKA_BROKER_SERVERS='k1:9092'",
    'LMS_CASSANDRA_HOST="c1" ',
    "REDIS_HOST=r1 # trailing comment",
    "not a line",
  ].join("\n"));
  assert.deepEqual(file, {
    JOB_ENV: "staging",
    KAFKA_BROKER_SERVERS: "k1:9092",
    LMS_CASSANDRA_HOST: "c1",
    REDIS_HOST: "r1",
  });
  const config = loadConfig(mergeEnv(file, { JOB_ENV: "prod" }));
  assert.equal(config.env, "prod");
  assert.deepEqual(config.kafka.brokers, ["k1:9092"]);
  assert.equal(config.relationCache.host, "r1");
});

function caught(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("config/example.env is valid and documents the defaults", async () => {
  const text = await Deno.readTextFile(new URL("../../config/example.env", import.meta.url));
  assert.deepEqual(loadConfig(parseDotenv(text)), loadConfig({}));
});

Deno.test("`deno task start` runs with the compiled binary's permissions", async () => {
  const root = new URL("../../", import.meta.url);
  const { stdout } = await new Deno.Command("bash", {
    args: ["scripts/compile.sh", "--print-permissions"],
    cwd: root,
    stdout: "piped",
  }).output();
  const compiled = new TextDecoder().decode(stdout).trim().split("\n");
  const tasks = JSON.parse(await Deno.readTextFile(new URL("deno.json", root))).tasks;
  const start = (tasks.start as string).split(" ").filter((w) => w.startsWith("--allow"));
  assert.deepEqual(start.sort(), compiled.sort());
});
