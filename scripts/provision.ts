/**
 * Provisions a Kafka broker and a Cassandra node for local dev and tests: it
 * waits until they answer, creates the job's topics when missing and applies
 * `config/schema.cql` statement by statement. Everything it does is idempotent.
 *
 * `scripts/stack.sh up` runs it as a script:
 *
 * ```sh
 * scripts/deno.sh run --allow-net --allow-read --allow-env scripts/provision.ts \
 *   [--only=kafka,cassandra] [--wait-only] [--prune-scratch] [--timeout=SECONDS]
 * ```
 *
 * Tests import it to provision topics (or a keyspace) of their own:
 *
 * ```ts
 * import { provision } from "../scripts/provision.ts";
 * await provision({ topics: [{ topic: "t1.coursebatch.job.request", numPartitions: 4 }] });
 * ```
 *
 * Settings come from the options, else from the job's environment variables
 * (`KAFKA_BROKER_SERVERS`, `LMS_CASSANDRA_HOST`, `LMS_CASSANDRA_PORT`,
 * `JOB_ENV`, `KAFKA_INPUT_TOPIC`, ...), else from the local stack's ports.
 *
 * @module
 */

import { type Admin, Kafka, logLevel } from "kafkajs";
import cassandra from "cassandra-driver";
import { muteKafkajsTimerWarning } from "../lib/kafka.ts";

/** A topic to create, and the partitions it must have at least. */
export interface TopicSpec {
  topic: string;
  numPartitions: number;
}

/** What {@link provision} does, and where. Every field is optional. */
export interface ProvisionOptions {
  /** Kafka bootstrap servers; default `KAFKA_BROKER_SERVERS` or `127.0.0.1:19092`. */
  brokers?: string[];
  /** Cassandra contact points; default `LMS_CASSANDRA_HOST` or `127.0.0.1`. */
  cassandraHosts?: string[];
  /** Cassandra native port; default `LMS_CASSANDRA_PORT` or `19042`. */
  cassandraPort?: number;
  /** The driver's local data centre; default `LMS_CASSANDRA_LOCAL_DATACENTER` or `datacenter1`. */
  localDataCenter?: string;
  /** Topics to ensure; default {@link defaultTopics} of the environment. */
  topics?: TopicSpec[];
  /** CQL text to apply; default the content of `config/schema.cql`. */
  schema?: string;
  /**
   * Keyspace to create the tables in instead of `sunbird_courses` (tests may
   * want one of their own); default `LMS_CASSANDRA_KEYSPACE` or `sunbird_courses`.
   */
  keyspace?: string;
  /** Provision Kafka (default true). */
  kafka?: boolean;
  /** Provision Cassandra (default true). */
  cassandra?: boolean;
  /** Only wait until the servers answer; create nothing (default false). */
  waitOnly?: boolean;
  /** Once Kafka answers, delete every scratch environment's topics and groups (default false). */
  pruneScratch?: boolean;
  /** How long to wait for each server to answer, in ms (default 120000). */
  timeoutMs?: number;
  /** Progress lines; default: none. */
  log?: (line: string) => void;
}

/** What {@link provision} found and did. */
export interface ProvisionResult {
  /** Topics created by this call. */
  createdTopics: string[];
  /** Topics that already existed (possibly given more partitions). */
  existingTopics: string[];
  /** CQL statements applied. */
  statements: number;
  /** Milliseconds until Kafka answered a metadata request (absent when skipped). */
  kafkaReadyMs?: number;
  /** Milliseconds until Cassandra answered a CQL query (absent when skipped). */
  cassandraReadyMs?: number;
}

type Env = Record<string, string | undefined>;

const STACK_BROKERS = "127.0.0.1:19092";
const STACK_CASSANDRA_HOST = "127.0.0.1";
const STACK_CASSANDRA_PORT = 19042;
const SCHEMA_KEYSPACE = "sunbird_courses";
const SCHEMA_URL = new URL("../config/schema.cql", import.meta.url);

function envObject(): Env {
  return Deno.env.toObject();
}

function list(value: string | undefined, fallback: string): string[] {
  return (value?.trim() || fallback).split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/**
 * The job's topics, named as the job names them (SPEC §2): `KAFKA_INPUT_TOPIC`
 * (4 partitions), `KAFKA_OUTPUT_FAILED_TOPIC`, `KAFKA_AUDIT_TOPIC` and
 * `KAFKA_CERTISSUE_TOPIC` (1 partition each), defaulting to `{JOB_ENV}.…`
 * with `JOB_ENV` defaulting to `local`.
 */
export function defaultTopics(env: Env = envObject()): TopicSpec[] {
  const prefix = env.JOB_ENV?.trim() || "local";
  const pick = (name: string, suffix: string) => env[name]?.trim() || `${prefix}.${suffix}`;
  return [
    { topic: pick("KAFKA_INPUT_TOPIC", "coursebatch.job.request"), numPartitions: 4 },
    { topic: pick("KAFKA_OUTPUT_FAILED_TOPIC", "activity.agg.failed"), numPartitions: 1 },
    { topic: pick("KAFKA_AUDIT_TOPIC", "telemetry.raw"), numPartitions: 1 },
    { topic: pick("KAFKA_CERTISSUE_TOPIC", "issue.certificate.request"), numPartitions: 1 },
  ];
}

/**
 * Splits CQL text into statements: drops `--`, `//` and `/* *\/` comments and
 * splits on `;` outside quotes. Returns statements without the `;`.
 */
export function splitCql(text: string): string[] {
  const statements: string[] = [];
  let current = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    const next = text[i + 1];
    if (c === "'" || c === '"') {
      // A quoted string or identifier; a doubled quote escapes itself.
      let j = i + 1;
      while (j < text.length) {
        if (text[j] === c && text[j + 1] === c) j += 2;
        else if (text[j] === c) break;
        else j++;
      }
      current += text.slice(i, j + 1);
      i = j + 1;
    } else if ((c === "-" && next === "-") || (c === "/" && next === "/")) {
      const end = text.indexOf("\n", i);
      i = end === -1 ? text.length : end;
    } else if (c === "/" && next === "*") {
      const end = text.indexOf("*/", i + 2);
      i = end === -1 ? text.length : end + 2;
    } else if (c === ";") {
      statements.push(current.trim());
      current = "";
      i++;
    } else {
      current += c;
      i++;
    }
  }
  statements.push(current.trim());
  return statements.filter((s) => s !== "");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function kafkaClient(brokers: string[]): Kafka {
  return new Kafka({
    clientId: "provision",
    brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 2000,
    requestTimeout: 10000,
    retry: { retries: 0 },
  });
}

/** Resolves once a broker of `brokers` answers a metadata request; throws after `timeoutMs`. */
export async function waitForKafka(brokers: string[], timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no attempt";
  while (true) {
    const admin = kafkaClient(brokers).admin();
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      if (cluster.brokers.length > 0 && cluster.controller !== null) return;
      last = "no broker or no controller in the metadata yet";
    } catch (err) {
      last = message(err);
    } finally {
      await admin.disconnect().catch(() => {});
    }
    if (Date.now() >= deadline) {
      throw new Error(`Kafka at ${brokers.join(",")} did not answer in ${timeoutMs} ms: ${last}`);
    }
    await sleep(500);
  }
}

/** An admin client that retries each request (unlike {@linkcode kafkaClient}'s probes). */
function adminClient(brokers: string[]): Admin {
  return new Kafka({
    clientId: "provision",
    brokers,
    logLevel: logLevel.NOTHING,
    retry: { retries: 5 },
  }).admin();
}

/**
 * Creates the topics that are missing and adds partitions to those that have
 * fewer than asked. Returns which topics were created and which existed.
 */
export async function ensureTopics(
  brokers: string[],
  topics: TopicSpec[],
): Promise<{ created: string[]; existing: string[] }> {
  const admin = adminClient(brokers);
  await admin.connect();
  try {
    const present = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !present.has(t.topic));
    const existing = topics.filter((t) => present.has(t.topic));
    if (missing.length > 0) {
      try {
        await admin.createTopics({
          topics: missing.map((t) => ({
            topic: t.topic,
            numPartitions: t.numPartitions,
            replicationFactor: 1,
          })),
          waitForLeaders: true,
          timeout: 30000,
        });
      } catch (err) {
        // Another process may have created one of them in the meantime.
        if (!/already exists/i.test(message(err))) throw err;
      }
    }
    if (existing.length > 0) {
      const meta = await admin.fetchTopicMetadata({ topics: existing.map((t) => t.topic) });
      const grow = existing.flatMap((t) => {
        const have = meta.topics.find((m) => m.name === t.topic)?.partitions.length ?? 0;
        return have < t.numPartitions ? [{ topic: t.topic, count: t.numPartitions }] : [];
      });
      if (grow.length > 0) await admin.createPartitions({ topicPartitions: grow });
    }
    return { created: missing.map((t) => t.topic), existing: existing.map((t) => t.topic) };
  } finally {
    await admin.disconnect();
  }
}

/**
 * Names of scratch environments: the `JOB_ENV` every test and benchmark run
 * gets by default (see {@link scratchJobEnv}). Their topics and consumer
 * groups are disposable, which {@link pruneScratch} relies on.
 */
export const SCRATCH_ENV = /^it[0-9a-f]{11}$/;

/** A new scratch `JOB_ENV`: `it` and 11 random hex digits. */
export function scratchJobEnv(): string {
  return `it${crypto.randomUUID().replaceAll("-", "").slice(0, 11)}`;
}

/** The `JOB_ENV` a topic (`env.…`) or consumer group (`env-…`) is named after. */
function envOf(name: string): string {
  return name.split(/[.-]/, 1)[0];
}

/**
 * Deletes the topics and consumer groups of scratch environments: of `env`
 * alone when given, else of every one. Runs that end cleanly delete their
 * own; pruning them all clears what killed runs left behind, which would
 * otherwise pile up until the broker spends minutes loading their partitions
 * at start-up. A group that still has members stays.
 */
export async function pruneScratch(
  brokers: string[],
  env?: string,
): Promise<{ topics: string[]; groups: string[] }> {
  if (env !== undefined && !SCRATCH_ENV.test(env)) {
    throw new Error(`not a scratch environment: ${env}`);
  }
  const doomed = (name: string) =>
    env === undefined ? SCRATCH_ENV.test(envOf(name)) : envOf(name) === env;
  const admin = adminClient(brokers);
  await admin.connect();
  try {
    // Groups first: the broker drops an idle group by itself once its topics go.
    const named = (await whenLoaded(() => admin.listGroups())).groups
      .map((g) => g.groupId).filter(doomed);
    const groups = named.length === 0 ? [] : await deleteIdleGroups(admin, named);
    const topics = (await admin.listTopics()).filter(doomed);
    // In slices: one request naming thousands of topics outlasts its timeout.
    for (let i = 0; i < topics.length; i += 200) {
      await admin.deleteTopics({ topics: topics.slice(i, i + 200), timeout: 60_000 });
    }
    return { topics, groups };
  } finally {
    await admin.disconnect();
  }
}

/**
 * Runs `request` until the broker has loaded its group metadata: a broker
 * that has just started answers group requests with "the coordinator is
 * loading" for a few seconds, and KafkaJS's `listGroups` does not retry.
 */
async function whenLoaded<T>(request: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await request();
    } catch (err) {
      // GROUP_LOAD_IN_PROGRESS, GROUP_COORDINATOR_NOT_AVAILABLE and the like.
      const retriable = (err as { retriable?: boolean }).retriable === true;
      if (!retriable || Date.now() >= deadline) throw err;
      await sleep(500);
    }
  }
}

/** Deletes the groups that have no members; returns those it deleted. */
async function deleteIdleGroups(admin: Admin, groupIds: string[]): Promise<string[]> {
  try {
    await admin.deleteGroups(groupIds);
    return groupIds;
  } catch (err) {
    // KafkaJS names the groups it could not delete on the error.
    const failed = (err as { groups?: { groupId: string }[] }).groups;
    if (!failed) throw err;
    const kept = new Set(failed.map((g) => g.groupId));
    return groupIds.filter((id) => !kept.has(id));
  }
}

function cassandraClient(hosts: string[], port: number, localDataCenter: string) {
  return new cassandra.Client({
    contactPoints: hosts,
    protocolOptions: { port },
    localDataCenter,
    socketOptions: { connectTimeout: 2000, readTimeout: 60000 },
  });
}

/**
 * Connects to Cassandra, retrying until a CQL query succeeds or `timeoutMs`
 * passes. The caller shuts the returned client down.
 */
export async function connectCassandra(
  hosts: string[],
  port: number,
  localDataCenter = "datacenter1",
  timeoutMs = 120_000,
): Promise<cassandra.Client> {
  const deadline = Date.now() + timeoutMs;
  let last = "no attempt";
  while (true) {
    const client = cassandraClient(hosts, port, localDataCenter);
    try {
      await client.connect();
      await client.execute("SELECT release_version FROM system.local");
      return client;
    } catch (err) {
      last = message(err);
      await client.shutdown().catch(() => {});
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `Cassandra at ${hosts.join(",")}:${port} did not answer in ${timeoutMs} ms: ${last}`,
      );
    }
    await sleep(500);
  }
}

/** Resolves once Cassandra answers a CQL query; throws after `timeoutMs`. */
export async function waitForCassandra(
  hosts: string[],
  port: number,
  localDataCenter = "datacenter1",
  timeoutMs = 120_000,
): Promise<void> {
  const client = await connectCassandra(hosts, port, localDataCenter, timeoutMs);
  await client.shutdown();
}

/** The schema text with `sunbird_courses` replaced by `keyspace`. */
export function schemaFor(schema: string, keyspace: string): string {
  if (!/^[A-Za-z][A-Za-z0-9_]{0,47}$/.test(keyspace)) {
    throw new Error(`not a valid keyspace name: ${keyspace}`);
  }
  return schema.replace(new RegExp(`\\b${SCHEMA_KEYSPACE}\\b`, "g"), keyspace);
}

/** Reads `config/schema.cql` (next to this script, not the working directory). */
export async function readSchema(): Promise<string> {
  return await Deno.readTextFile(SCHEMA_URL);
}

/**
 * Waits until Kafka and Cassandra answer, then creates the missing topics and
 * applies the schema. Options left out are taken from the environment, then
 * from the local stack's ports (see {@link ProvisionOptions}).
 */
export async function provision(opts: ProvisionOptions = {}): Promise<ProvisionResult> {
  const env = envObject();
  const log = opts.log ?? (() => {});
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const result: ProvisionResult = { createdTopics: [], existingTopics: [], statements: 0 };
  const start = Date.now();

  const doCassandra = async () => {
    const hosts = opts.cassandraHosts ?? list(env.LMS_CASSANDRA_HOST, STACK_CASSANDRA_HOST);
    const port = opts.cassandraPort ?? Number(env.LMS_CASSANDRA_PORT || STACK_CASSANDRA_PORT);
    const dc = opts.localDataCenter ?? (env.LMS_CASSANDRA_LOCAL_DATACENTER || "datacenter1");
    const client = await connectCassandra(hosts, port, dc, timeoutMs);
    try {
      result.cassandraReadyMs = Date.now() - start;
      if (opts.waitOnly) return;
      const keyspace = opts.keyspace ?? (env.LMS_CASSANDRA_KEYSPACE || SCHEMA_KEYSPACE);
      const statements = splitCql(schemaFor(opts.schema ?? await readSchema(), keyspace));
      const tables = async () =>
        (await client.execute(
          "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
          [keyspace],
        )).rows.map((r) => String(r.table_name));
      const before = new Set(await tables());
      for (const statement of statements) await client.execute(statement);
      result.statements = statements.length;
      const created = (await tables()).filter((t) => !before.has(t));
      if (created.length > 0) log(`cassandra: created ${keyspace}.{${created.join(",")}}`);
    } finally {
      await client.shutdown();
    }
  };

  const doKafka = async () => {
    const brokers = opts.brokers ?? list(env.KAFKA_BROKER_SERVERS, STACK_BROKERS);
    await waitForKafka(brokers, timeoutMs);
    result.kafkaReadyMs = Date.now() - start;
    if (opts.pruneScratch) {
      const pruned = await pruneScratch(brokers);
      log(`kafka: deleted ${pruned.topics.length} scratch topics, ${pruned.groups.length} groups`);
    }
    if (opts.waitOnly) return;
    const topics = opts.topics ?? defaultTopics(env);
    const { created, existing } = await ensureTopics(brokers, topics);
    result.createdTopics = created;
    result.existingTopics = existing;
    if (created.length > 0) log(`kafka: created topics ${created.join(", ")}`);
  };

  // Both at once: Cassandra's DDL and Kafka's topic creation each take a while.
  const jobs = [];
  if (opts.kafka ?? true) jobs.push(doKafka());
  if (opts.cassandra ?? true) jobs.push(doCassandra());
  const outcomes = await Promise.allSettled(jobs);
  const errors = outcomes.flatMap((o) => o.status === "rejected" ? [message(o.reason)] : []);
  if (errors.length > 0) throw new Error(errors.join("; "));
  return result;
}

/** Parses the command line of the script (see the module doc). */
export function parseArgs(args: string[]): ProvisionOptions {
  const opts: ProvisionOptions = {};
  for (const arg of args) {
    const [name, value = ""] = arg.split("=", 2);
    if (name === "--only") {
      const only = list(value, "");
      for (const s of only) {
        if (s !== "kafka" && s !== "cassandra") throw new Error(`--only: unknown service ${s}`);
      }
      opts.kafka = only.includes("kafka");
      opts.cassandra = only.includes("cassandra");
    } else if (name === "--wait-only") {
      opts.waitOnly = true;
    } else if (name === "--prune-scratch") {
      opts.pruneScratch = true;
    } else if (name === "--timeout") {
      const seconds = Number(value);
      if (!(seconds > 0)) throw new Error(`--timeout: not a number of seconds: ${value}`);
      opts.timeoutMs = seconds * 1000;
    } else {
      throw new Error(
        `unknown argument ${arg}; usage: provision.ts [--only=kafka,cassandra] ` +
          "[--wait-only] [--prune-scratch] [--timeout=SECONDS]",
      );
    }
  }
  return opts;
}

if (import.meta.main) {
  muteKafkajsTimerWarning();
  try {
    const opts = parseArgs(Deno.args);
    opts.log = (line) => console.error(`provision: ${line}`);
    await provision(opts);
  } catch (err) {
    console.error(`provision: error: ${message(err)}`);
    Deno.exit(1);
  }
}
