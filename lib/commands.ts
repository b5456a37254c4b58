/**
 * The `check` and `replay` commands of the command line.
 *
 * @module
 */

import { deadline } from "./async.ts";
import { checkCassandraSchema } from "./cassandra_schema.ts";
import type { Config } from "./config.ts";
import { ENROLMENT_SYNC_ACTION } from "./event.ts";
import { kafkaClient, KafkaSink, missingTopics } from "./kafka.ts";
import type { OutputEvent } from "./ports.ts";
import { closeRedis, connectRedis } from "./redis.ts";
import { searchBody } from "./search.ts";
import { VERSION } from "./version.ts";

/** One line of the `check` report. */
interface CheckResult {
  name: string;
  problems: string[];
}

/**
 * Connects to every service and verifies what the job uses; prints a report.
 * Resolves to whether everything is in order.
 */
export async function checkServices(config: Config, print = console.log): Promise<boolean> {
  const results: CheckResult[] = await Promise.all([
    check("kafka topics", () => checkKafka(config)),
    check("cassandra schema", () => checkCassandraSchema(config.cassandra)),
    check("redis relation cache", () => checkRedis(config.relationCache)),
    check("redis dedup store", () => checkRedis(config.dedup)),
    check("search service", () => checkSearch(config)),
  ]);
  print(`activity-aggregate-updater ${VERSION}: configuration is valid`);
  for (const { name, problems } of results) {
    if (problems.length === 0) print(`  ok    ${name}`);
    for (const problem of problems) print(`  FAIL  ${name}: ${problem}`);
  }
  const failed = results.filter((r) => r.problems.length > 0).length;
  print(failed === 0 ? "all checks passed" : `${failed} of ${results.length} checks failed`);
  return failed === 0;
}

async function check(name: string, fn: () => Promise<string[]>): Promise<CheckResult> {
  try {
    return { name, problems: await fn() };
  } catch (error) {
    return { name, problems: [(error as Error).message] };
  }
}

async function checkKafka(config: Config): Promise<string[]> {
  const { inputTopic, failedTopic, auditTopic, certIssueTopic, syncTopic } = config.kafka;
  const kafka = kafkaClient(config.kafka, "activity-aggregate-updater-check");
  // The sync topic (SPEC §13) only when it is on.
  const topics = [inputTopic, failedTopic, auditTopic, certIssueTopic];
  if (syncTopic) topics.push(syncTopic);
  const missing = await missingTopics(kafka, topics);
  return missing.map((t) => `topic ${t} does not exist`);
}

async function checkRedis(target: Config["relationCache"] | Config["dedup"]): Promise<string[]> {
  const client = await connectRedis(target, { connectTimeoutMs: 3000 });
  try {
    const pong = await deadline(client.ping(), 3000, { what: "redis PING" });
    return pong === "PONG" ? [] : [`unexpected PING answer ${pong}`];
  } finally {
    await closeRedis(client);
  }
}

async function checkSearch(config: Config): Promise<string[]> {
  const response = await fetch(`${config.search.basePath}/v3/search`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(searchBody("activity-aggregate-updater-check")),
    signal: AbortSignal.timeout(config.search.timeoutMs),
  });
  await response.body?.cancel();
  return response.ok ? [] : [`POST /v3/search answered ${response.status}`];
}

/** What `replay` did with a file. */
interface ReplayReport {
  sent: number;
  invalid: { line: number; reason: string }[];
}

/** Reads JSON lines into input events keyed by `edata.userId`; bad lines are reported. */
function replayEvents(text: string, topics: { input: string; sync: string | null }): {
  events: OutputEvent[];
  invalid: ReplayReport["invalid"];
} {
  const events: OutputEvent[] = [];
  const invalid: ReplayReport["invalid"] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    if (raw.trim() === "") return;
    try {
      const value = JSON.parse(raw);
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        throw new Error("not a JSON object");
      }
      const userId = value.edata?.userId;
      // A failed sync request goes back to the sync topic, everything else to the input.
      const sync = value.edata?.action === ENROLMENT_SYNC_ACTION && topics.sync;
      const topic = sync || topics.input;
      events.push({ topic, key: typeof userId === "string" ? userId : "", value });
    } catch (error) {
      invalid.push({ line: i + 1, reason: (error as Error).message });
    }
  });
  return { events, invalid };
}

/**
 * Publishes a file of JSON lines to the input topic, and sync requests to the
 * sync topic when it is on; prints what it sent.
 */
export async function replayFile(
  config: Config,
  path: string,
  print = console.log,
): Promise<boolean> {
  const { events, invalid } = replayEvents(await Deno.readTextFile(path), {
    input: config.kafka.inputTopic,
    sync: config.kafka.syncTopic,
  });
  for (const { line, reason } of invalid) print(`line ${line} not sent: ${reason}`);
  if (events.length > 0) {
    const sink = await KafkaSink.connect(
      kafkaClient(config.kafka, "activity-aggregate-updater-replay"),
    );
    try {
      await sink.send(events);
    } finally {
      await sink.close();
    }
  }
  const counts = new Map<string, number>();
  for (const { topic } of events) counts.set(topic, (counts.get(topic) ?? 0) + 1);
  const sent = [...counts].map(([topic, n]) => `${n} to ${topic}`).join(", ") || "0";
  print(`sent ${sent}; ${invalid.length} not sent`);
  return invalid.length === 0;
}
