/**
 * The drivers' ceiling: exactly the requests the job sends for a workload
 * (Cassandra statements and batches, Redis pipelines, Kafka produce
 * requests), replayed on the bare drivers with no job logic in between.
 *
 * 1. **Record.** The workload's windows (the job's own, rebuilt from the
 *    commits of its `window done` lines, or built ideally: each partition's
 *    events `maxUnits` at a time) go through `processWindow` on the
 *    in-memory stubs of `tests/support/stubs.ts`, which answer reads from
 *    the same seeded state. Every port call is also
 *    handed to the job's real adapter (`CassandraProgressStore`,
 *    `RedisRelationCache` behind the in-process cache, `RedisDedupStore`,
 *    `KafkaSink`) on a *recording* driver, which keeps each request the
 *    adapter would send (the query, its parameters, the batch grouping, the
 *    pipelined commands, the produce request with its serialised values)
 *    under the pipeline stage that sent it. Nothing is sent.
 * 2. **Replay.** Per window, stage after stage in the pipeline's order
 *    (stages the pipeline runs side by side replay side by side), every
 *    recorded request goes to the real driver: Cassandra requests with
 *    `concurrency` in flight, one Redis pipeline per recorded pipeline, one
 *    `sendBatch` per recorded request on a producer configured as the job's.
 *
 * What remains is the I/O the job cannot avoid for this workload, in the
 * order its guarantees need (reads before the writes that depend on them, a
 * certificate request before its status-2 write, checksums last): the job
 * at 100 % of it would spend no time of its own.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import type { Buffer } from "node:buffer";
import cassandra from "cassandra-driver";
import { Kafka, logLevel, Partitioners } from "kafkajs";
import type { Redis } from "ioredis";
import { mapConcurrent, type Retry } from "../lib/async.ts";
import { createClient } from "../lib/cassandra_client.ts";
import { CassandraProgressStore } from "../lib/cassandra_store.ts";
import type { Config } from "../lib/config.ts";
import { parseMessage } from "../lib/event.ts";
import { isolation, pipelineDeps, withKnownStatuses } from "../lib/job.ts";
import { KafkaSink } from "../lib/kafka.ts";
import { JobMetrics } from "../lib/metrics.ts";
import { type PipelineDeps, processWindow } from "../lib/pipeline.ts";
import {
  type ConsumptionRow,
  type DedupStore,
  type EnrolmentRow,
  type EnrolmentWrite,
  type EventSink,
  type OutputEvent,
  PermanentError,
  type ProgressStore,
  type ProgressWrites,
  type RelationCache,
} from "../lib/ports.ts";
import { RedisDedupStore, RedisRelationCache } from "../lib/redis.ts";
import { LocalTtlRelationCache } from "../lib/relation_cache.ts";
import { type Window, WindowBuilder } from "../lib/window.ts";
import {
  MemoryDedupStore,
  MemoryProgressStore,
  MemoryRelationCache,
  StaticCollectionStatus,
} from "../tests/support/stubs.ts";
import { type EnrolmentPlanData, storedRows } from "./data.ts";

/** One request the job would send. */
export type Request =
  | { kind: "cql"; query: string; params: unknown[]; read: boolean }
  | { kind: "cql-batch"; queries: { query: string; params: unknown[] }[] }
  | { kind: "redis"; db: "relations" | "dedup"; commands: [string, ...unknown[]][] }
  | {
    kind: "kafka";
    topicMessages: { topic: string; messages: { key: string | null; value: Buffer }[] }[];
  };

type KafkaRequest = Extract<Request, { kind: "kafka" }>;

/** The requests of one pipeline stage of one window, with when it ran relative to the others. */
export interface Stage {
  name: string;
  start: number;
  end: number;
  requests: Request[];
}

/** What one window sends, stage by stage. */
export interface RecordedWindow {
  units: number;
  stages: Stage[];
}

/** Totals of a recording, to compare with the job's own counters. */
export interface RequestCounts {
  cassandraReads: number;
  cassandraWriteRequests: number;
  cassandraStatements: number;
  conditionalWrites: number;
  redisPipelines: number;
  redisCommands: number;
  kafkaRequests: number;
  kafkaMessages: number;
}

/**
 * The input partition of each event, by the producer's default partitioner
 * on its userId: event indices per partition, in produce order, so an
 * event's offset in a fresh topic is its position in its partition's list.
 */
export function eventsByPartition(events: Record<string, unknown>[], partitions = 4): number[][] {
  const partitioner = Partitioners.DefaultPartitioner();
  const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({
    partitionId,
    leader: 0,
    partitionErrorCode: 0,
    replicas: [0],
    isr: [0],
  }));
  const byPartition: number[][] = partitionMetadata.map(() => []);
  events.forEach((value, index) => {
    const key = (value.edata as { userId: string }).userId;
    byPartition[partitioner({ topic: "input", partitionMetadata, message: { key, value: "" } })]
      .push(index);
  });
  return byPartition;
}

/**
 * Windows as an idealised runner closes them: each partition's events in
 * order, `maxUnits` at a time (4 partitions).
 */
export function buildWindows(
  events: Record<string, unknown>[],
  maxUnits: number,
  partitions = 4,
): Window[] {
  const windows: Window[] = [];
  const builder = new WindowBuilder({ maxUnits, maxWaitMs: 1000 });
  eventsByPartition(events, partitions).forEach((indices, partition) => {
    indices.forEach((index, offset) => {
      const entry = windowEntry(events[index], partition, offset);
      if (builder.wouldOverflow(entry)) windows.push(builder.take()!);
      builder.add(entry, 0);
      if (builder.isFull()) windows.push(builder.take()!);
    });
  });
  const last = builder.take();
  if (last) windows.push(last);
  return windows;
}

/** One committed window of the job: the offset after its last message, per partition. */
export type JobWindowCommits = { partition: number; offset: string }[];

/**
 * The events of each of the job's windows, as indices into `events` (the
 * backlog the job drained from a fresh topic), from the commits its
 * `window done` lines name in order.
 */
export function jobWindowEvents(
  events: Record<string, unknown>[],
  commits: JobWindowCommits[],
  partitions = 4,
): number[][] {
  const byPartition = eventsByPartition(events, partitions);
  const next = byPartition.map(() => 0);
  return commits.map((window) =>
    window.flatMap(({ partition, offset }) => {
      const from = next[partition];
      next[partition] = Number(offset);
      return byPartition[partition].slice(from, next[partition]);
    })
  );
}

/** Windows holding the events of `indices`, one window per list. */
export function windowsOfEvents(
  events: Record<string, unknown>[],
  indices: number[][],
  partitions = 4,
): Window[] {
  const partitionOf = new Map<number, { partition: number; offset: number }>();
  eventsByPartition(events, partitions).forEach((list, partition) =>
    list.forEach((index, offset) => partitionOf.set(index, { partition, offset }))
  );
  return indices.map((list) => {
    const builder = new WindowBuilder({ maxUnits: Number.MAX_SAFE_INTEGER, maxWaitMs: 1000 });
    for (const index of list) {
      const { partition, offset } = partitionOf.get(index)!;
      builder.add(windowEntry(events[index], partition, offset), 0);
    }
    return builder.take()!;
  });
}

const encoder = new TextEncoder();

/** An input message holding `value`, as the runner takes it into a window. */
function windowEntry(value: Record<string, unknown>, partition: number, offset: number) {
  const bytes = encoder.encode(JSON.stringify(value));
  return {
    message: {
      topic: "input",
      partition,
      offset: String(offset),
      key: (value.edata as { userId: string }).userId,
      value: bytes,
      timestamp: 0,
    },
    parsed: parseMessage(bytes),
  };
}

/** A `cassandra.Client` stand-in that keeps requests and answers reads with no rows. */
function recordingCql(sink: Request[]): cassandra.Client {
  const empty = {
    rows: [],
    rowLength: 0,
    first: () => null,
    // A conditional write that applied, as a first status move does.
    wasApplied: () => true,
    async *[Symbol.asyncIterator]() {},
  };
  return {
    execute(query: string, params: unknown[]) {
      sink.push({ kind: "cql", query, params, read: /^\s*SELECT/i.test(query) });
      return Promise.resolve(empty);
    },
    batch(queries: { query: string; params: unknown[] }[]) {
      sink.push({ kind: "cql-batch", queries });
      return Promise.resolve(empty);
    },
  } as unknown as cassandra.Client;
}

/** An ioredis stand-in whose pipelines are kept; replies are empty sets, 0 and OK. */
function recordingRedis(db: "relations" | "dedup", sink: () => Request[]): Redis {
  return {
    pipeline() {
      const commands: [string, ...unknown[]][] = [];
      const command = (name: string) => (...args: unknown[]) => {
        commands.push([name, ...args]);
        return pipeline;
      };
      const pipeline = {
        smembers: command("smembers"),
        exists: command("exists"),
        set: command("set"),
        exec() {
          sink().push({ kind: "redis", db, commands });
          return Promise.resolve(commands.map(([name]) => [
            null,
            name === "smembers" ? [] : name === "exists" ? 0 : "OK",
          ]));
        },
      };
      return pipeline;
    },
  } as unknown as Redis;
}

/** A `Kafka` stand-in whose producer keeps each `sendBatch`. */
function recordingKafka(sink: () => Request[]): Kafka {
  return {
    producer: () => ({
      connect: () => Promise.resolve(),
      disconnect: () => Promise.resolve(),
      sendBatch({ topicMessages }: { topicMessages: KafkaRequest["topicMessages"] }) {
        // The values are the sink's own bytes, never changed after sending.
        sink().push({
          kind: "kafka",
          topicMessages: topicMessages.map((t) => ({ ...t, messages: [...t.messages] })),
        });
        return Promise.resolve([]);
      },
    }),
  } as unknown as Kafka;
}

/**
 * Records what the job sends for `data` (already seeded elsewhere with the
 * same rows) when its input arrives as `events` in windows of `maxUnits`.
 */
export async function recordWorkload(
  data: EnrolmentPlanData[],
  events: Record<string, unknown>[],
  opts: {
    maxUnits: number;
    config: Config;
    /** The job's windows as event indices ({@linkcode jobWindowEvents}); else built ideally. */
    windows?: number[][];
  },
): Promise<{ windows: RecordedWindow[]; counts: RequestCounts }> {
  const { config } = opts;
  const memory = new MemoryProgressStore();
  const sets: Record<string, string[]> = {};
  for (const e of data) {
    Object.assign(sets, e.course.sets);
    for (const row of storedRows(e)) memory.seedConsumption(e.key, row);
    memory.seedEnrolment(e.key, 1);
  }
  const memoryDedup = new MemoryDedupStore(config.dedup.expirySeconds);

  // The stage a port call belongs to: the retry hook runs each stage in its
  // own async context, which follows the stage's calls across awaits.
  let clock = 0;
  let stages: Stage[] = [];
  const context = new AsyncLocalStorage<Stage>();
  const stageOf = () => {
    const stage = context.getStore();
    if (!stage) throw new Error("a port was called outside a pipeline stage");
    return stage.requests;
  };
  const retry: Retry = async (name, fn) => {
    const stage: Stage = { name, start: clock++, end: 0, requests: [] };
    stages.push(stage);
    try {
      return await context.run(stage, fn);
    } catch (error) {
      // Nothing fails on the stubs: a failure here is a bug of the recording.
      throw new PermanentError(`recording ${name}: ${error}`, { cause: error });
    } finally {
      stage.end = clock++;
    }
  };
  const cqlStore = (requests: Request[]) =>
    new CassandraProgressStore(recordingCql(requests), config.cassandra, config.writeBatchSize);
  const progress: ProgressStore = {
    async readConsumption(key): Promise<ConsumptionRow[]> {
      await cqlStore(stageOf()).readConsumption(key);
      return memory.readConsumption(key);
    },
    async readEnrolment(key): Promise<EnrolmentRow | null> {
      await cqlStore(stageOf()).readEnrolment(key);
      return memory.readEnrolment(key);
    },
    async writeProgress(writes: ProgressWrites) {
      await cqlStore(stageOf()).writeProgress(writes);
      await memory.writeProgress(writes);
    },
    async writeEnrolments(writes: EnrolmentWrite[]) {
      await cqlStore(stageOf()).writeEnrolments(writes);
      await memory.writeEnrolments(writes);
    },
  } as ProgressStore;
  const stubSets = new MemoryRelationCache(sets);
  const relationsTee: RelationCache = {
    async members(keys) {
      const requests = stageOf();
      await new RedisRelationCache(recordingRedis("relations", () => requests)).members(keys);
      return stubSets.members(keys);
    },
  };
  const dedup: DedupStore = {
    async existing(sums) {
      const requests = stageOf();
      await new RedisDedupStore(recordingRedis("dedup", () => requests), 1).existing(sums);
      return memoryDedup.existing(sums);
    },
    async store(sums) {
      const requests = stageOf();
      await new RedisDedupStore(
        recordingRedis("dedup", () => requests),
        config.dedup.expirySeconds,
      ).store(sums);
      await memoryDedup.store(sums);
    },
  };
  const sink: EventSink = {
    async send(out: OutputEvent[]) {
      const requests = stageOf();
      await new KafkaSink(recordingKafka(() => requests)).send(out);
    },
  };
  // Built as the job builds them (lib/job.ts), on the tee ports.
  const metrics = new JobMetrics();
  const deps: PipelineDeps = {
    ...pipelineDeps(config, {
      // As the job: statuses it knows are not read again.
      progress: withKnownStatuses(progress, metrics),
      // As the job: the in-process cache in front of Redis, so only its misses are sent.
      relations: config.relationCache.localTtlMs > 0
        ? new LocalTtlRelationCache(relationsTee, { ttlMs: config.relationCache.localTtlMs })
        : relationsTee,
      dedup,
      collections: new StaticCollectionStatus(),
      sink,
      metrics,
    }),
    isolate: isolation(config, retry, new AbortController().signal),
  };

  const windows: RecordedWindow[] = [];
  const built = opts.windows
    ? windowsOfEvents(events, opts.windows)
    : buildWindows(events, opts.maxUnits);
  for (const window of built) {
    stages = [];
    await processWindow(window, deps);
    windows.push({ units: window.units.length, stages: stages.filter((s) => s.requests.length) });
  }
  return { windows, counts: countRequests(windows) };
}

/** Totals over every recorded request. */
export function countRequests(windows: RecordedWindow[]): RequestCounts {
  const c: RequestCounts = {
    cassandraReads: 0,
    cassandraWriteRequests: 0,
    cassandraStatements: 0,
    conditionalWrites: 0,
    redisPipelines: 0,
    redisCommands: 0,
    kafkaRequests: 0,
    kafkaMessages: 0,
  };
  for (const r of windows.flatMap((w) => w.stages.flatMap((s) => s.requests))) {
    if (r.kind === "cql" && r.read) c.cassandraReads++;
    else if (r.kind === "cql") {
      c.cassandraWriteRequests++;
      c.cassandraStatements++;
      if (/\bIF\b/.test(r.query)) c.conditionalWrites++;
    } else if (r.kind === "cql-batch") {
      c.cassandraWriteRequests++;
      c.cassandraStatements += r.queries.length;
    } else if (r.kind === "redis") {
      c.redisPipelines++;
      c.redisCommands += r.commands.length;
    } else {
      c.kafkaRequests++;
      c.kafkaMessages += r.topicMessages.reduce((n, t) => n + t.messages.length, 0);
    }
  }
  return c;
}

/** Stages that ran side by side, as consecutive groups in start order. */
function waves(stages: Stage[]): Stage[][] {
  const result: Stage[][] = [];
  let end = -1;
  for (const stage of [...stages].sort((a, b) => a.start - b.start)) {
    if (result.length > 0 && stage.start < end) result.at(-1)!.push(stage);
    else result.push([stage]);
    end = Math.max(end, stage.end);
  }
  return result;
}

/** The bare drivers the replay uses, configured as the job configures them. */
export interface Drivers {
  cql: cassandra.Client;
  relations: Redis;
  dedup: Redis;
  producer: ReturnType<Kafka["producer"]>;
  close(): Promise<void>;
}

/** Connects the drivers for `config`: the job's Cassandra client and producer settings. */
export async function connectDrivers(
  config: Config,
  redis: { relations: Redis; dedup: Redis },
): Promise<Drivers> {
  const cql = createClient(config.cassandra);
  await cql.connect();
  const kafka = new Kafka({
    clientId: "ceiling",
    brokers: config.kafka.brokers,
    logLevel: logLevel.NOTHING,
  });
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  return {
    cql,
    ...redis,
    producer,
    async close() {
      await producer.disconnect();
      await cql.shutdown();
    },
  };
}

const QUERY_OPTIONS = {
  prepare: true,
  consistency: cassandra.types.consistencies.localQuorum,
  serialConsistency: cassandra.types.consistencies.localSerial,
};

/** How a replay runs besides its concurrency. */
export interface ReplayOptions {
  /**
   * Milliseconds of the replaying thread's own CPU after each wave of stages,
   * with nothing in flight: a model of the job's work between its requests
   * (`lean_bench.ts --busy-replay-ms`). 0, the ceiling itself, spends none.
   */
  busyMsPerWave?: number;
}

/** Replays `windows` on `drivers` with `concurrency` Cassandra requests in flight; returns seconds. */
export async function replay(
  windows: RecordedWindow[],
  drivers: Drivers,
  concurrency: number,
  { busyMsPerWave = 0 }: ReplayOptions = {},
): Promise<number> {
  const send = async (r: Request) => {
    if (r.kind === "cql") await drivers.cql.execute(r.query, r.params, QUERY_OPTIONS);
    else if (r.kind === "cql-batch") {
      await drivers.cql.batch(r.queries, { ...QUERY_OPTIONS, logged: false });
    } else if (r.kind === "redis") {
      const pipeline = (r.db === "relations" ? drivers.relations : drivers.dedup).pipeline(
        r.commands as [string, ...string[]][],
      );
      await pipeline.exec();
    } else await drivers.producer.sendBatch({ acks: -1, topicMessages: r.topicMessages });
  };
  const runStage = async (stage: Stage) => {
    const cql = stage.requests.filter((r) => r.kind === "cql" || r.kind === "cql-batch");
    const rest = stage.requests.filter((r) => r.kind !== "cql" && r.kind !== "cql-batch");
    await Promise.all([
      mapConcurrent(cql, concurrency, send),
      (async () => {
        // Produce requests in order, as the sink sends them; Redis pipelines likewise.
        for (const r of rest) await send(r);
      })(),
    ]);
  };
  const started = performance.now();
  for (const window of windows) {
    for (const wave of waves(window.stages)) {
      await Promise.all(wave.map(runStage));
      if (busyMsPerWave > 0) busy(busyMsPerWave);
    }
  }
  return (performance.now() - started) / 1000;
}

/** Keeps this thread busy for `ms`, as computation would. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spinning on purpose: CPU, not waiting, is what is modelled
  }
}
