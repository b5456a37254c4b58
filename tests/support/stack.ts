/**
 * A client of the local stack (`scripts/stack.sh`) for `deno task dev` and the
 * integration tests: the job as a real process against the stack's Kafka,
 * Cassandra and Redis, topics of its own, seeded course structure and rows,
 * and readers for every effect.
 *
 * Endpoints come from the job's environment variables, defaulting to the
 * stack's ports.
 *
 * @module
 */

import cassandra from "cassandra-driver";
import { Redis } from "ioredis";
import { type Admin, type Consumer, Kafka, logLevel, type Producer } from "kafkajs";
import { fileURLToPath } from "node:url";
import type { Config } from "../../lib/config.ts";
import type { EnrolmentKey } from "../../lib/event.ts";
import { muteKafkajsTimerWarning } from "../../lib/kafka.ts";
import { provision, pruneScratch, SCRATCH_ENV, scratchJobEnv } from "../../scripts/provision.ts";
import { type SearchStub, startSearchStub } from "./search_stub.ts";

muteKafkajsTimerWarning();

function env(name: string, fallback: string): string {
  return Deno.env.get(name)?.trim() || fallback;
}

/** Cassandra settings of the local stack (`LMS_CASSANDRA_*`, default 127.0.0.1:19042). */
export function stackCassandra(overrides: Partial<Config["cassandra"]> = {}): Config["cassandra"] {
  return {
    contactPoints: env("LMS_CASSANDRA_HOST", "127.0.0.1").split(",").map((s) => s.trim()),
    port: Number(env("LMS_CASSANDRA_PORT", "19042")),
    localDataCenter: env("LMS_CASSANDRA_LOCAL_DATACENTER", "datacenter1"),
    keyspace: env("LMS_CASSANDRA_KEYSPACE", "sunbird_courses"),
    consumptionTable: "user_content_consumption",
    enrolmentsTable: "user_enrolments",
    activityAggTable: "user_activity_agg",
    ...overrides,
  };
}

/** Redis server of the local stack (`REDIS_HOST`/`REDIS_PORT`, default 127.0.0.1:16379). */
export function stackRedis(): { host: string; port: number } {
  return { host: env("REDIS_HOST", "127.0.0.1"), port: Number(env("REDIS_PORT", "16379")) };
}

/** A name no other test run uses: `prefix` plus a random suffix. */
export function unique(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 12)}`;
}

/** A random suffix that is a valid CQL identifier part. */
export function identifierSuffix(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 12);
}

/**
 * A new consumer group for reading a topic of `jobEnv`: named after the
 * environment, so that pruning it deletes the group too.
 */
export function readerGroupId(jobEnv: string): string {
  return `${jobEnv}-reader-${identifierSuffix()}`;
}

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BROKERS = (Deno.env.get("KAFKA_BROKER_SERVERS") ?? "127.0.0.1:19092").split(",");

/** Polls `check` until it returns a truthy value; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T> | T,
  timeoutMs = 30_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}` +
          (last ? `: ${last}` : ""),
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A CQL client on the stack's keyspace. */
async function connectCassandra(): Promise<cassandra.Client> {
  const cfg = stackCassandra();
  const cql = new cassandra.Client({
    contactPoints: cfg.contactPoints,
    protocolOptions: { port: cfg.port },
    localDataCenter: cfg.localDataCenter,
    keyspace: cfg.keyspace,
  });
  await cql.connect();
  return cql;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * The stack's services, with topics of one `JOB_ENV`: by default a new one
 * per instance, so that each test has topics and a consumer group of its own.
 */
export class Stack {
  readonly topics: {
    input: string;
    failed: string;
    audit: string;
    cert: string;
    /** Enrolment sync requests (SPEC §13); created only with `Stack.open({ sync: true })`. */
    sync: string;
  };
  readonly #consumers: Consumer[] = [];
  #producer: Producer | null = null;
  #admin: Promise<Admin> | null = null;

  #cql: cassandra.Client;

  private constructor(
    cql: cassandra.Client,
    readonly relations: Redis,
    readonly dedup: Redis,
    readonly kafka: Kafka,
    readonly search: SearchStub,
    readonly keyspace: string,
    readonly jobEnv: string,
  ) {
    this.#cql = cql;
    this.topics = {
      input: `${jobEnv}.coursebatch.job.request`,
      failed: `${jobEnv}.activity.agg.failed`,
      audit: `${jobEnv}.telemetry.raw`,
      cert: `${jobEnv}.issue.certificate.request`,
      sync: `${jobEnv}.batch.enrolment.sync.request`,
    };
  }

  /** Connects to the stack and creates the topics (input with `partitions`) when missing. */
  static async open(
    opts: {
      partitions?: number;
      statuses?: Record<string, string>;
      jobEnv?: string;
      searchPort?: number;
      /** Also create the sync topic (`topics.sync`, 2 partitions). */
      sync?: boolean;
    } = {},
  ): Promise<Stack> {
    const cql = await connectCassandra();
    const redis = stackRedis();
    const relations = new Redis({ ...redis, db: 10, lazyConnect: true });
    const dedup = new Redis({ ...redis, db: 13, lazyConnect: true });
    await Promise.all([relations.connect(), dedup.connect()]);
    // Outage tests restart Redis: the clients reconnect by themselves, and
    // without a listener ioredis would print every refused attempt.
    for (const client of [relations, dedup]) client.on("error", () => {});
    const kafka = new Kafka({ clientId: "it", brokers: BROKERS, logLevel: logLevel.NOTHING });
    const search = await startSearchStub(opts.statuses, opts.searchPort);
    const jobEnv = opts.jobEnv ?? scratchJobEnv();
    const stack = new Stack(
      cql,
      relations,
      dedup,
      kafka,
      search,
      stackCassandra().keyspace,
      jobEnv,
    );
    await provision({
      brokers: BROKERS,
      cassandra: false,
      topics: [
        { topic: stack.topics.input, numPartitions: opts.partitions ?? 4 },
        { topic: stack.topics.failed, numPartitions: 1 },
        { topic: stack.topics.audit, numPartitions: 1 },
        { topic: stack.topics.cert, numPartitions: 1 },
        ...(opts.sync ? [{ topic: stack.topics.sync, numPartitions: 2 }] : []),
      ],
    });
    return stack;
  }

  /** The CQL client the readers and seeders use. */
  get cql(): cassandra.Client {
    return this.#cql;
  }

  /**
   * Replaces the CQL client: after a Cassandra restart, a client that saw the
   * node go down reconnects on its own schedule; a new one connects at once.
   */
  async reconnectCassandra(): Promise<void> {
    await this.#cql.shutdown();
    this.#cql = await connectCassandra();
  }

  /** The job's environment for this test's topics and the stack's services. */
  envForJob(extra: Record<string, string> = {}): Record<string, string> {
    const cfg = stackCassandra();
    const redis = stackRedis();
    return {
      JOB_ENV: this.jobEnv,
      KAFKA_BROKER_SERVERS: BROKERS.join(","),
      LMS_CASSANDRA_HOST: cfg.contactPoints.join(","),
      LMS_CASSANDRA_PORT: String(cfg.port),
      LMS_CASSANDRA_KEYSPACE: this.keyspace,
      REDIS_HOST: redis.host,
      REDIS_PORT: String(redis.port),
      SERVICE_SEARCH_BASEPATH: this.search.basePath,
      THRESHOLD_BATCH_READ_INTERVAL: "200ms",
      HTTP_HOST: "127.0.0.1",
      HTTP_PORT: String(freePort()),
      LOG_LEVEL: "info",
      RETRY_BACKOFF_MAX: "1s",
      // The broker's minimum: a killed job's partitions move on quickly.
      KAFKA_SESSION_TIMEOUT: "6s",
      ...extra,
    };
  }

  /** Writes course structure sets into the relation cache. */
  async seedSets(sets: Record<string, string[]>): Promise<void> {
    const pipeline = this.relations.pipeline();
    for (const [key, members] of Object.entries(sets)) {
      pipeline.del(key);
      if (members.length > 0) pipeline.sadd(key, ...members);
    }
    await pipeline.exec();
  }

  /** Writes a consumption row as the upstream course service does. */
  async seedConsumption(
    key: EnrolmentKey,
    row: { contentId: string; status: number; viewCount?: number; completedCount?: number },
  ): Promise<void> {
    await this.cql.execute(
      "INSERT INTO user_content_consumption (userid, courseid, batchid, contentid, status, viewcount, completedcount) VALUES (?, ?, ?, ?, ?, ?, ?)",
      [
        key.userId,
        key.courseId,
        key.batchId,
        row.contentId,
        row.status,
        row.viewCount ?? null,
        row.completedCount ?? null,
      ],
      { prepare: true },
    );
  }

  /** Writes an enrolment row with `status`. */
  async seedEnrolment(key: EnrolmentKey, status: number): Promise<void> {
    await this.cql.execute(
      "INSERT INTO user_enrolments (userid, courseid, batchid, status, active) VALUES (?, ?, ?, ?, true)",
      [key.userId, key.courseId, key.batchId, status],
      { prepare: true },
    );
  }

  /** The enrolment row, or null. */
  async enrolment(key: EnrolmentKey) {
    const rs = await this.cql.execute(
      "SELECT status, progress, contentstatus, completedon FROM user_enrolments WHERE userid=? AND courseid=? AND batchid=?",
      [key.userId, key.courseId, key.batchId],
      { prepare: true },
    );
    const row = rs.first();
    if (!row) return null;
    return {
      status: row.status as number | null,
      progress: row.progress as number | null,
      contentStatus: (row.contentstatus ?? {}) as Record<string, number>,
      completedOn: row.completedon as Date | null,
    };
  }

  /** Consumption rows by content id: [status, viewcount, completedcount]. */
  async consumption(key: EnrolmentKey): Promise<Record<string, [number, number, number]>> {
    const rs = await this.cql.execute(
      "SELECT contentid, status, viewcount, completedcount FROM user_content_consumption WHERE userid=? AND courseid=? AND batchid=?",
      [key.userId, key.courseId, key.batchId],
      { prepare: true },
    );
    return Object.fromEntries(
      rs.rows.map((r) => [r.contentid, [r.status, r.viewcount, r.completedcount]]),
    );
  }

  /** `aggregates['completedCount']` of an activity for the enrolment, or undefined. */
  async aggregate(activityId: string, key: EnrolmentKey): Promise<number | undefined> {
    const rs = await this.cql.execute(
      "SELECT aggregates FROM user_activity_agg WHERE activity_type='Course' AND activity_id=? AND context_id=? AND user_id=?",
      [activityId, `cb:${key.batchId}`, key.userId],
      { prepare: true },
    );
    return rs.first()?.aggregates?.completedCount;
  }

  /** Publishes JSON values (or raw strings) to the input topic, keyed by userId. */
  async produce(values: unknown[]): Promise<void> {
    await this.produceTo(this.topics.input, values);
  }

  /** Publishes JSON values (or raw strings) to `topic`, keyed by `edata.userId`. */
  async produceTo(topic: string, values: unknown[]): Promise<void> {
    if (!this.#producer) {
      this.#producer = this.kafka.producer();
      await this.#producer.connect();
    }
    await this.#producer.send({
      topic,
      acks: -1,
      messages: values.map((v) => ({
        key: (v as { edata?: { userId?: string } })?.edata?.userId ?? null,
        value: typeof v === "string" ? v : JSON.stringify(v),
      })),
    });
  }

  /** Reads `topic` from the beginning into an array that fills as events arrive. */
  async collect(topic: string): Promise<Record<string, unknown>[]> {
    const events: Record<string, unknown>[] = [];
    const consumer = this.kafka.consumer({ groupId: readerGroupId(this.jobEnv) });
    this.#consumers.push(consumer);
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: ({ message }) => {
        events.push(JSON.parse(message.value!.toString()));
        return Promise.resolve();
      },
    });
    return events;
  }

  /** The job group's committed offsets of the input topic, summed over partitions. */
  async committedInput(): Promise<number> {
    return await this.committed(this.topics.input);
  }

  /** The job group's committed offsets of `topic`, summed over partitions. */
  async committed(topicName: string): Promise<number> {
    // One admin client for the stack's life: a benchmark polls this every 100 ms.
    this.#admin ??= (async () => {
      const admin = this.kafka.admin();
      await admin.connect();
      return admin;
    })();
    const [topic] = await (await this.#admin).fetchOffsets({
      groupId: `${this.jobEnv}-activity-aggregate-updater-group`,
      topics: [topicName],
    });
    return topic.partitions.reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
  }

  /** Whether the dedup database holds `checksum`. */
  async hasChecksum(checksum: string): Promise<boolean> {
    return (await this.dedup.exists(checksum)) === 1;
  }

  /**
   * Disconnects, and deletes the topics and idle groups of a scratch
   * environment: thousands of leftover partitions slow the broker's start.
   */
  async close(): Promise<void> {
    await Promise.all(this.#consumers.map((c) => c.disconnect()));
    await this.#producer?.disconnect();
    await (await this.#admin)?.disconnect();
    if (SCRATCH_ENV.test(this.jobEnv)) {
      // A warning, not a throw: from a `finally`, a throw would hide the
      // test's own failure; `scripts/stack.sh prune` (run by scripts/test.sh)
      // deletes what stays behind.
      await pruneScratch(BROKERS, this.jobEnv).catch((err) =>
        console.warn(`stack: could not delete the topics of ${this.jobEnv}: ${err}`)
      );
    }
    await this.search.close();
    this.relations.disconnect();
    this.dedup.disconnect();
    await this.#cql.shutdown();
  }
}

/** The permission flags the job is compiled with (`scripts/compile.sh --print-permissions`). */
export const JOB_PERMISSIONS: string[] = new TextDecoder().decode(
  (await new Deno.Command("bash", {
    args: ["scripts/compile.sh", "--print-permissions"],
    cwd: ROOT,
    stdout: "piped",
  }).output()).stdout,
).trim().split("\n");

/**
 * The job running as a child process, as operators run it: with exactly the
 * compiled binary's permissions, so a permission the job lacks shows up here.
 */
export class JobProcess {
  readonly output: string[] = [];
  /** What the process printed on stdout alone (`output` interleaves stderr). */
  readonly stdout: string[] = [];
  readonly exited: Promise<Deno.CommandStatus>;
  readonly #child: Deno.ChildProcess;

  /**
   * Starts `main.ts` with `args`; `echo` (default: `IT_VERBOSE` is set) copies its output to
   * stderr; `denoFlags` go before the script (a benchmark's `--cpu-prof`, say).
   */
  constructor(
    readonly env: Record<string, string>,
    args = ["run"],
    opts: { echo?: boolean; denoFlags?: string[] } = {},
  ) {
    const echo = opts.echo ?? Boolean(Deno.env.get("IT_VERBOSE"));
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...JOB_PERMISSIONS, ...opts.denoFlags ?? [], "main.ts", ...args],
      cwd: ROOT,
      env,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pump = async (stream: ReadableStream<Uint8Array>, only?: string[]) => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        this.output.push(chunk);
        only?.push(chunk);
        if (echo) Deno.stderr.writeSync(new TextEncoder().encode(chunk));
      }
    };
    const pumped = Promise.all([
      pump(this.#child.stdout, this.stdout),
      pump(this.#child.stderr),
    ]);
    this.exited = this.#child.status.then(async (status) => {
      await pumped;
      return status;
    });
  }

  /** The process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** The operations endpoint's base URL. */
  get opsUrl(): string {
    return `http://127.0.0.1:${this.env.HTTP_PORT}`;
  }

  /** `/readyz`'s status code, or 0 when the endpoint does not answer. */
  async readyStatus(): Promise<number> {
    try {
      const response = await fetch(`${this.opsUrl}/readyz`);
      await response.body?.cancel();
      return response.status;
    } catch {
      return 0;
    }
  }

  /** Waits until `/readyz` answers 200. */
  async ready(timeoutMs = 60_000): Promise<void> {
    await waitFor("the job to be ready", async () => (await this.readyStatus()) === 200, timeoutMs);
  }

  /** `/metrics` as text. */
  async metrics(): Promise<string> {
    const response = await fetch(`${this.opsUrl}/metrics`);
    return await response.text();
  }

  /** Sends `signal`. */
  kill(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // already exited
    }
  }

  /** Sends SIGTERM and waits for the exit. */
  async stop(): Promise<Deno.CommandStatus> {
    this.kill("SIGTERM");
    return await this.exited;
  }

  /** Everything the process printed. */
  get log(): string {
    return this.output.join("");
  }

  /**
   * The JSON log records printed so far. V8's traces (`--trace-gc`, say)
   * write their lines in pieces, so a record may follow a trace fragment on
   * its line.
   */
  records(): {
    "@timestamp": string;
    level: string;
    message: string;
    properties: Record<string, unknown>;
  }[] {
    return this.log.split("\n").map((l) => l.slice(Math.max(0, l.indexOf('{"@timestamp"'))))
      .filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  }

  /** Input partitions of the latest consumer-group assignment, or null before the first. */
  assignment(topic: string): number[] | null {
    const joins = this.records().filter((r) => r.message === "joined consumer group");
    const last = joins.at(-1)?.properties.assignment as Record<string, number[]> | undefined;
    return last ? (last[topic] ?? []) : null;
  }
}

/** A counter's value in Prometheus text, or 0 when absent. */
export function metricValue(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : 0;
}
