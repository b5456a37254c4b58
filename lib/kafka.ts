/**
 * Kafka adapters on KafkaJS: the input topic as an {@linkcode InputSource}
 * with manual commits, and the output topics as an {@linkcode EventSink} that
 * resolves only once every in-sync replica has the events.
 *
 * @module
 */

import { type Consumer, Kafka, logLevel, type Producer } from "kafkajs";
import ConsumerGroup from "kafkajs/src/consumer/consumerGroup.js";
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";
import process from "node:process";
import { Buffer } from "node:buffer";
import type { Config } from "./config.ts";
import { logger } from "./log.ts";
import type { JobMetrics } from "./metrics.ts";
import { KeyPartitioner } from "./partitioner.ts";
import {
  type BatchConsumer,
  type CommitOffset,
  type EventSink,
  InputRejectedError,
  type InputSource,
  type OutputEvent,
  PermanentError,
} from "./ports.ts";

const log = logger("kafka");

/** KafkaJS errors no input can cure: a bad topic name, wrong credentials or missing rights. */
const PERMANENT_KAFKA_ERRORS = new Set([
  "INVALID_TOPIC_EXCEPTION",
  "SASL_AUTHENTICATION_FAILED",
  "TOPIC_AUTHORIZATION_FAILED",
  "GROUP_AUTHORIZATION_FAILED",
  "CLUSTER_AUTHORIZATION_FAILED",
  "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
]);

/**
 * KafkaJS errors about the events sent: one larger than the broker's message
 * limit (requests are split below it, so only a single event gets here), or
 * one the broker finds invalid. Sending them again cannot succeed.
 */
const INPUT_KAFKA_ERRORS = new Set([
  "MESSAGE_TOO_LARGE",
  "RECORD_LIST_TOO_LARGE",
  "INVALID_RECORD",
  "CORRUPT_MESSAGE",
]);

/**
 * A start-up notice KafkaJS prints as a warning that says nothing about this
 * job's health: bounded producer retries are deliberate (the job's own loop
 * retries a failed send).
 */
const KNOWN_KAFKAJS_NOTICES = /Limiting retries for the idempotent producer/;

/** KafkaJS log lines about an ordinary rebalance. */
const REBALANCE_NOTICE = /rebalanc|REBALANCE_IN_PROGRESS/i;
/** What KafkaJS throws when asked to pause a consumer that is not running. */
const CONSUMER_NOT_RUNNING = /Consumer group was not initialized/;

/** What {@linkcode stopIdleTimerLoop} touches of KafkaJS's per-connection request queue. */
export interface RequestQueueInternals {
  pending: unknown[];
  throttledUntil: number;
  scheduleCheckPendingRequests(): void;
}

/**
 * KafkaJS 2.2.4 re-arms a timer for the past after every check of a
 * connection's request queue, even with nothing pending and no throttle, so
 * each connection spins a ~1 ms timer loop for as long as it is open
 * (tulios/kafkajs#1556, #1704; fix proposed in #1667, not released). With
 * nothing pending and no throttle there is nothing to check: a new request
 * is sent at once or, when it has to wait, schedules its own check.
 */
export function stopIdleTimerLoop(queue: { prototype: RequestQueueInternals }): void {
  const schedule = queue.prototype.scheduleCheckPendingRequests;
  queue.prototype.scheduleCheckPendingRequests = function (this: RequestQueueInternals) {
    if (this.pending.length === 0 && !(this.throttledUntil > Date.now())) return;
    schedule.call(this);
  };
}
stopIdleTimerLoop(RequestQueue);

/**
 * How often a member kept waiting (a batch behind a queued window, a join
 * behind the window in flight) heartbeats to keep its membership.
 */
const HEARTBEAT_WHILE_BLOCKED_MS = 1000;

/**
 * Runs `work`, calling `heartbeat` every {@linkcode HEARTBEAT_WHILE_BLOCKED_MS}
 * meanwhile so that the group does not drop this member. During a rebalance
 * the broker answers with an error, yet counts the heartbeat: expected.
 */
async function heartbeatingWhile<T>(
  heartbeat: () => Promise<unknown>,
  work: () => Promise<T>,
): Promise<T> {
  const timer = setInterval(() => heartbeat().catch(() => {}), HEARTBEAT_WHILE_BLOCKED_MS);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/** What {@linkcode holdGroupChanges} touches of KafkaJS's consumer group. */
export interface ConsumerGroupInternals {
  groupId: string;
  joinAndSync(): Promise<unknown>;
  leave(): Promise<unknown>;
  heartbeat(opts: { interval: number }): Promise<void>;
}

/** Per group id, what must settle before a member in this process (re)joins or leaves that group. */
const beforeGroupChange = new Map<string, Set<() => Promise<void>>>();

/**
 * KafkaJS 2 has no revocation callback: a member gives up its partitions as
 * soon as its batch handlers have returned, by (re)joining its group on a
 * rebalance, or by leaving it when its consumer crashes and restarts. The
 * job's handlers return once a batch is taken, so that the next fetch
 * overlaps the window in flight; every join and leave first awaits the hooks
 * registered for its group, which resolve once what was taken is committed.
 * Meanwhile the member keeps heartbeating: the broker counts heartbeats during
 * a rebalance too, so a window longer than the session timeout does not cost
 * the membership.
 */
export function holdGroupChanges(group: { prototype: ConsumerGroupInternals }): void {
  for (const method of ["joinAndSync", "leave"] as const) {
    const change = group.prototype[method];
    group.prototype[method] = async function (this: ConsumerGroupInternals) {
      const hooks = [...beforeGroupChange.get(this.groupId) ?? []];
      await heartbeatingWhile(
        () => this.heartbeat({ interval: 0 }),
        () => Promise.all(hooks.map((hook) => hook())),
      );
      return change.call(this);
    };
  }
}
holdGroupChanges(ConsumerGroup);

/** Makes every (re)join and leave of `groupId` in this process wait for `hook`; returns its removal. */
export function awaitBeforeGroupChange(groupId: string, hook: () => Promise<void>): () => void {
  const hooks = beforeGroupChange.get(groupId) ?? new Set();
  beforeGroupChange.set(groupId, hooks.add(hook));
  return () => {
    hooks.delete(hook);
    if (hooks.size === 0) beforeGroupChange.delete(groupId);
  };
}

/** A KafkaJS client for the configured brokers, logging through the job's logger. */
export function kafkaClient(config: Config["kafka"], clientId: string): Kafka {
  return new Kafka({
    clientId,
    brokers: config.brokers,
    connectionTimeout: 3000,
    requestTimeout: 30000,
    // Short client-level retries: the job's own retry loop handles long outages.
    retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 5000 },
    logLevel: logLevel.WARN,
    logCreator: () => ({ level, log: entry }) => {
      const { message, ...fields } = entry;
      const text = `kafkajs: ${message}`;
      // A rebalance is routine (a member joined or left): KafkaJS reports the
      // broker's "group is rebalancing" answers as errors.
      if (REBALANCE_NOTICE.test(`${message} ${fields.error ?? ""}`)) log.info(text, fields);
      else if (level <= logLevel.ERROR) log.error(text, fields);
      else if (level === logLevel.WARN && !KNOWN_KAFKAJS_NOTICES.test(message)) {
        log.warn(text, fields);
      } else log.debug(text, fields);
    },
  });
}

/**
 * Sorts a KafkaJS error by who can cure it (SPEC §3): the credentials or
 * rights ({@linkcode PermanentError}), the events sent
 * ({@linkcode InputRejectedError}), or time (returned unchanged). KafkaJS
 * wraps the broker's answer after its own retries, so the chain is searched.
 */
export function classifyKafkaError(error: unknown): unknown {
  for (let e = error, depth = 0; e && depth < 5; depth++) {
    const type = (e as { type?: string }).type;
    const message = `Kafka: ${type}: ${(error as Error).message}`;
    if (type && PERMANENT_KAFKA_ERRORS.has(type)) {
      return new PermanentError(message, { cause: error });
    }
    if (type && INPUT_KAFKA_ERRORS.has(type)) {
      return new InputRejectedError(message, { cause: error });
    }
    e = (e as { originalError?: unknown; cause?: unknown }).originalError ??
      (e as { cause?: unknown }).cause;
  }
  return error;
}

/** Longest wait of one fetch round; bounds how long a disconnect waits for it. */
const FETCH_MAX_WAIT_MS = 1000;

/**
 * Partitions whose batches are handed to the job at once, so that one window
 * gathers the messages of every partition a fetch returns.
 */
const PARTITIONS_CONSUMED_CONCURRENTLY = 32;

/** Settings and observers of {@linkcode KafkaInput}. */
export interface KafkaInputOptions {
  groupId: string;
  /** The input topic, and the sync topic when it is on (SPEC §13). */
  topics: string[];
  sessionTimeoutMs: number;
  /**
   * Most bytes of one fetch, and per partition (KafkaJS: 10 MiB and 1 MiB).
   * A fetch is handed over whole: everything it returns stays in memory
   * until the job has taken its last message into a window.
   */
  fetchMaxBytes?: number;
  fetchMaxBytesPerPartition?: number;
  metrics?: JobMetrics;
  /**
   * The consumer failed. KafkaJS restarts it by itself after errors it deems
   * retriable (`restarting`); otherwise the consumer is gone for good.
   */
  onCrash?: (error: unknown, restarting: boolean) => void;
  /** The consumer joined its group: it consumes again. */
  onJoin?: () => void;
}

/**
 * The input topics, consumed in a group with commits made only by the job.
 *
 * KafkaJS 2 rebalances eagerly and has no revocation callback. Each join and
 * leave first awaits the consumer's `quiesce` ({@linkcode holdGroupChanges}):
 * a member gives up its partitions with nothing in flight, and the next owner
 * starts after the last message applied. `close` drops the hook: by then the
 * job has committed or abandoned what it took.
 */
export class KafkaInput implements InputSource {
  readonly #consumer: Consumer;
  readonly #topics: string[];
  readonly #groupId: string;
  #releaseGroupHook: (() => void) | null = null;

  constructor(kafka: Kafka, opts: KafkaInputOptions) {
    this.#topics = opts.topics;
    this.#groupId = opts.groupId;
    this.#consumer = kafka.consumer({
      groupId: opts.groupId,
      allowAutoTopicCreation: false,
      // A crashed member holds its partitions until the session times out.
      sessionTimeout: opts.sessionTimeoutMs,
      heartbeatInterval: Math.min(3000, Math.floor(opts.sessionTimeoutMs / 3)),
      // How long a fetch waits for data, and how long KafkaJS sleeps between
      // rounds once every partition is paused (as on shutdown). A disconnect
      // waits for that round to end: KafkaJS's default of 5 s was most of
      // every graceful stop. Idle, this is one small request a second.
      maxWaitTimeInMs: FETCH_MAX_WAIT_MS,
      // Small fetches keep memory flat whatever the backlog (see the options).
      maxBytes: opts.fetchMaxBytes,
      maxBytesPerPartition: opts.fetchMaxBytesPerPartition,
    });
    const { events } = this.#consumer;
    this.#consumer.on(events.END_BATCH_PROCESS, ({ payload }) => {
      opts.metrics?.consumerLag.set(
        { topic: payload.topic, partition: String(payload.partition) },
        Number(payload.offsetLag),
      );
    });
    this.#consumer.on(events.GROUP_JOIN, ({ payload }) => {
      log.info("joined consumer group", {
        groupId: payload.groupId,
        assignment: payload.memberAssignment,
      });
      opts.onJoin?.();
    });
    this.#consumer.on(events.CRASH, ({ payload }) => {
      log.error("consumer crashed: {error}", {
        error: String(payload.error),
        restart: payload.restart,
      });
      opts.onCrash?.(payload.error, payload.restart);
    });
  }

  /**
   * A consumer of `opts.topics`, connected and subscribed; a new group starts
   * at the earliest offset so nothing is skipped.
   */
  static async connect(kafka: Kafka, opts: KafkaInputOptions): Promise<KafkaInput> {
    const input = new KafkaInput(kafka, opts);
    try {
      await input.#consumer.connect();
      await input.#consumer.subscribe({ topics: input.#topics, fromBeginning: true });
    } catch (error) {
      await input.close().catch(() => {});
      throw classifyKafkaError(error);
    }
    return input;
  }

  async start(consumer: BatchConsumer): Promise<void> {
    this.#releaseGroupHook?.();
    this.#releaseGroupHook = awaitBeforeGroupChange(this.#groupId, () => consumer.quiesce());
    await this.#consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: PARTITIONS_CONSUMED_CONCURRENTLY,
      eachBatch: async ({ batch, heartbeat }) => {
        // The job may hold the batch (a closed window queued, an outage).
        await heartbeatingWhile(heartbeat, () =>
          consumer.handle(batch.messages.map((message) => ({
            topic: batch.topic,
            partition: batch.partition,
            offset: message.offset,
            key: message.key?.toString("utf8") ?? null,
            value: message.value ? new Uint8Array(message.value) : null,
            timestamp: Number(message.timestamp),
          }))));
      },
    });
  }

  /**
   * Stops fetching. Between a crash and its restart (a broker outage) KafkaJS
   * has no group to pause and fetches nothing; whatever a restart fetches
   * after a stop, the runner leaves uncommitted.
   */
  pause(): void {
    try {
      this.#consumer.pause(this.#topics.map((topic) => ({ topic })));
    } catch (error) {
      if (!CONSUMER_NOT_RUNNING.test(String(error))) throw error;
      log.info("pause: the consumer is between a crash and its restart, so fetches nothing");
    }
  }

  async commit(offsets: CommitOffset[]): Promise<void> {
    if (offsets.length > 0) await this.#consumer.commitOffsets(offsets);
  }

  /** Leaves the group and closes the connections. */
  close(): Promise<void> {
    this.#releaseGroupHook?.();
    this.#releaseGroupHook = null;
    return this.#consumer.disconnect();
  }
}

/** Output topics through an idempotent producer that waits for all in-sync replicas. */
export class KafkaSink implements EventSink {
  readonly #producer: Producer;

  constructor(kafka: Kafka) {
    this.#producer = kafka.producer({
      // Java's murmur2 partitioning, so a userId lands where other producers put it.
      createPartitioner: KeyPartitioner,
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
    });
  }

  /** A producer for `kafka`, connected. */
  static async connect(kafka: Kafka): Promise<KafkaSink> {
    const sink = new KafkaSink(kafka);
    try {
      await sink.#producer.connect();
    } catch (error) {
      await sink.close().catch(() => {});
      throw classifyKafkaError(error);
    }
    return sink;
  }

  /** Sends in requests below the broker's size limit, one after another to keep key order. */
  async send(events: OutputEvent[]): Promise<void> {
    try {
      for (const topicMessages of produceRequests(events, REQUEST_LIMITS)) {
        await this.#producer.sendBatch({ acks: -1, topicMessages });
      }
    } catch (error) {
      throw classifyKafkaError(error);
    }
  }

  /** Flushes nothing (every send was acknowledged) and closes the connections. */
  close(): Promise<void> {
    return this.#producer.disconnect();
  }
}

/** How much one produce request carries. */
export interface RequestLimits {
  /**
   * Bytes of keys and values. A partition's record batch must stay under the
   * broker's `message.max.bytes` (1 MiB by default), and a window's events
   * can all land on one partition (they are keyed by userId).
   */
  maxBytes: number;
  /**
   * Messages. KafkaJS groups a request's messages by partition in time and
   * garbage quadratic in their number per partition (it copies the
   * partition's list for every message): at 512 KiB of AUDIT events, ~800 on
   * one partition, that was 12 % of everything the job allocated.
   */
  maxMessages: number;
}

const REQUEST_LIMITS: RequestLimits = { maxBytes: 512 * 1024, maxMessages: 128 };

/**
 * A produce request's messages, grouped by topic. Values are UTF-8 bytes:
 * serialised once, measured and sent as they are.
 */
type TopicMessages = { topic: string; messages: { key: string | null; value: Buffer }[] }[];

/**
 * Splits `events`, in order, into produce requests within `limits`; an event
 * larger than `maxBytes` goes alone.
 */
export function produceRequests(events: OutputEvent[], limits: RequestLimits): TopicMessages[] {
  const requests: TopicMessages[] = [];
  let current = new Map<string, TopicMessages[number]["messages"]>();
  let bytes = 0;
  let count = 0;
  const flush = () => {
    if (current.size > 0) {
      requests.push([...current].map(([topic, messages]) => ({ topic, messages })));
    }
    current = new Map();
    bytes = 0;
    count = 0;
  };
  for (const event of events) {
    const message = { key: event.key === "" ? null : event.key, value: serialise(event) };
    const size = message.value.length + Buffer.byteLength(message.key ?? "");
    if (count > 0 && (bytes + size > limits.maxBytes || count === limits.maxMessages)) flush();
    const messages = current.get(event.topic) ?? [];
    messages.push(message);
    current.set(event.topic, messages);
    bytes += size;
    count++;
  }
  flush();
  return requests;
}

/** An event's value as JSON bytes; one that cannot be serialised is this event's fault. */
function serialise(event: OutputEvent): Buffer {
  try {
    return Buffer.from(JSON.stringify(event.value));
  } catch (error) {
    throw new InputRejectedError(`event for ${event.topic} cannot be serialised: ${error}`, {
      cause: error,
    });
  }
}

/** The topics among `topics` that the cluster does not have. */
export async function missingTopics(kafka: Kafka, topics: string[]): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    return topics.filter((t) => !existing.has(t));
  } finally {
    await admin.disconnect();
  }
}

/**
 * Drops Node's `TimeoutNegativeWarning`, which KafkaJS 2.2.4 triggers on every
 * connection (its request queue arms a timer with a negative delay; harmless,
 * the delay becomes 1 ms) and which would otherwise flood stderr.
 */
export function muteKafkajsTimerWarning(): void {
  const emitWarning = process.emitWarning.bind(process);
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const type = typeof rest[0] === "string"
      ? rest[0]
      : (rest[0] as { type?: string } | undefined)?.type;
    if (type === "TimeoutNegativeWarning") return;
    (emitWarning as (w: string | Error, ...r: unknown[]) => void)(warning, ...rest);
  }) as typeof process.emitWarning;
}
