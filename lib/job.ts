/**
 * Assembles the running job from its configuration: connects every adapter
 * (waiting out services that are not up yet), wires the pipeline into the
 * consumer loop, and closes everything on the way out.
 *
 * @module
 */

import { delay, type Retry, retryWithBackoff } from "./async.ts";
import { CassandraProgressStore } from "./cassandra_store.ts";
import type { Config } from "./config.ts";
import type { Health } from "./http.ts";
import { collectBetweenWindows } from "./heap.ts";
import { kafkaClient, KafkaInput, KafkaSink } from "./kafka.ts";
import { KnownStatusStore } from "./known_statuses.ts";
import { logger } from "./log.ts";
import type { JobMetrics } from "./metrics.ts";
import { type ParsedMessage, parseMessage, parseSyncRequest } from "./event.ts";
import type { IsolateOptions } from "./isolate.ts";
import { type PipelineDeps, processWindow } from "./pipeline.ts";
import type { InputMessage, ProgressStore } from "./ports.ts";
import { systemClock } from "./clock.ts";
import { connectRelationCache, RedisDedupStore } from "./redis.ts";
import { Runner, type RunnerDeps } from "./runner.ts";
import { SearchCollectionStatus } from "./search.ts";
import { VERSION } from "./version.ts";

const log = logger("job");

/** The outage stage of a consumer that KafkaJS is restarting. */
const CONSUMER_STAGE = "kafka-consumer";

/** Partition reads in flight at once per window. */
const READ_CONCURRENCY = 32;

/**
 * V8 heap in use above which a window's end brings a full collection (with
 * `--expose-gc`, see lib/heap.ts): the live state is ~20 MiB after a window.
 */
const HEAP_COLLECT_ABOVE_BYTES = 24 * 1024 * 1024;

/**
 * Heap the windows since the last such collection must have added. A full
 * collection costs more than its pause: the drivers' code runs slower for a
 * while after it (V8 discards optimised code that referred to objects it
 * freed, among other things; bench/gc_deopt.ts). Under a backlog a 1000-unit
 * window adds ~8 MiB, so 16 collect every second window (bench/README.md,
 * ninth session: half the collections of 8 MiB, for ~10 MiB more at peak);
 * small windows collect every few.
 */
const HEAP_COLLECT_GROWTH_BYTES = 16 * 1024 * 1024;

/** Enrolment statuses remembered between windows: about 200 bytes each, 4 MB at most. */
const KNOWN_STATUSES = 20_000;

/** A started job. */
export interface RunningJob {
  runner: Runner;
  /** Resolves after a graceful stop; rejects on a permanent failure. */
  done: Promise<void>;
  /** Stops consuming, finishes or abandons the window in flight, closes connections. */
  stop(): Promise<void>;
}

/** Where the job reports, and the signal that ends its waits (a stop during start-up). */
export interface Observers {
  metrics: JobMetrics;
  health: Health;
  signal: AbortSignal;
}

/**
 * Connects and starts consuming. Services that are down at start-up are
 * waited for with backoff until `signal` aborts; a permanent error (a missing
 * table, bad credentials) rejects at once.
 */
export async function startJob(config: Config, observers: Observers): Promise<RunningJob> {
  const { metrics, health } = observers;
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) {
      await close().catch((e) => log.warn("close failed: {error}", { error: String(e) }));
    }
  };
  const startupRetry = retryWithHealth(config, observers);
  try {
    const stores = await connectStores(config, startupRetry, closers);
    const progress = withKnownStatuses(stores.progress, metrics);

    const kafka = kafkaClient(config.kafka, `activity-aggregate-updater-${VERSION}`);
    const sink = await startupRetry("connect-kafka-producer", () => KafkaSink.connect(kafka));
    closers.push(() => sink.close());
    let runner: Runner | null = null;
    const input = await startupRetry("connect-kafka-consumer", () =>
      KafkaInput.connect(kafka, {
        groupId: config.kafka.groupId,
        topics: inputTopics(config),
        sessionTimeoutMs: config.kafka.sessionTimeoutMs,
        fetchMaxBytes: config.kafka.fetchMaxBytes,
        fetchMaxBytesPerPartition: config.kafka.fetchMaxBytesPerPartition,
        metrics,
        onCrash(error, restarting) {
          if (restarting) {
            reportOutage(metrics, health, CONSUMER_STAGE, true);
          } else {
            // The consumer is gone for good: exit (nothing unfinished is
            // committed) and let the orchestrator start a fresh process.
            runner?.abort(new Error(`the Kafka consumer stopped: ${error}`));
          }
        },
        onJoin() {
          reportOutage(metrics, health, CONSUMER_STAGE, false);
          // Partitions may have changed hands: another member may have moved statuses.
          progress.forget();
        },
      }));
    closers.push(() => input.close());

    const deps = pipelineDeps(config, {
      ...stores,
      progress,
      collections: new SearchCollectionStatus(config.search),
      sink,
      metrics,
    });
    runner = new Runner({
      source: input,
      parse: messageParser(config),
      clock: systemClock,
      limits: config.window,
      metrics,
      process: windowProcessor(config, deps, { metrics, health }),
      afterWindow: collectBetweenWindows({
        thresholdBytes: HEAP_COLLECT_ABOVE_BYTES,
        minGrowthBytes: HEAP_COLLECT_GROWTH_BYTES,
      }),
    });
    const done = runner.run();
    health.markConnected();
    log.info("consuming {topic} as group {groupId}", {
      topic: config.kafka.inputTopic,
      groupId: config.kafka.groupId,
    });
    let stopped: Promise<void> | null = null;
    return {
      runner,
      done: done.finally(() => stopped ?? closeAll()),
      stop() {
        stopped ??= (async () => {
          health.markStopping();
          await runner.stop(config.shutdownTimeoutMs);
          await closeAll();
        })();
        return stopped;
      },
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/** The stores a window needs. */
export type Stores = Pick<PipelineDeps, "progress" | "relations" | "dedup">;

/**
 * Connects Cassandra and both Redis databases through `retry` (services not
 * up yet are waited for); `closers` gains how to close each.
 */
export async function connectStores(
  config: Config,
  retry: Retry,
  closers: (() => Promise<void>)[],
): Promise<Stores> {
  const progress = await retry(
    "connect-cassandra",
    () => CassandraProgressStore.connect(config.cassandra, config.writeBatchSize),
  );
  closers.push(() => progress.close());
  const relations = await retry(
    "connect-relation-cache",
    () => connectRelationCache(config.relationCache),
  );
  closers.push(relations.close);
  const dedup = await retry("connect-dedup", () => RedisDedupStore.connect(config.dedup));
  closers.push(() => dedup.close());
  return { progress, relations: relations.cache, dedup };
}

/** `progress` behind the job's memory of enrolment statuses. */
export function withKnownStatuses(progress: ProgressStore, metrics: JobMetrics): KnownStatusStore {
  return new KnownStatusStore(progress, {
    maxEntries: KNOWN_STATUSES,
    onHit: () => metrics.inc("knownStatusReads"),
  });
}

/** The topics the job consumes: the input topic, and the sync topic when it is on. */
function inputTopics(config: Config): string[] {
  const { inputTopic, syncTopic } = config.kafka;
  return syncTopic ? [inputTopic, syncTopic] : [inputTopic];
}

/** Parses a consumed message by its topic: a sync request, or an input event. */
function messageParser(config: Config): (message: InputMessage) => ParsedMessage {
  const { syncTopic } = config.kafka;
  return (message) =>
    message.topic === syncTopic ? parseSyncRequest(message.value) : parseMessage(message.value);
}

/** The ports a pipeline needs, with the settings of `config`; `isolate` comes per window. */
export function pipelineDeps(
  config: Config,
  ports: Pick<
    PipelineDeps,
    "progress" | "relations" | "dedup" | "collections" | "sink" | "metrics"
  >,
): Omit<PipelineDeps, "isolate"> {
  return {
    ...ports,
    clock: systemClock,
    newId: () => crypto.randomUUID(),
    settings: {
      dedupEnabled: config.dedup.enabled,
      moduleAggsEnabled: config.moduleAggsEnabled,
      filterProcessedEnrolments: config.filterProcessedEnrolments,
      readConcurrency: READ_CONCURRENCY,
      failedEventMaxBytes: config.kafka.failedEventMaxBytes,
      topics: {
        audit: config.kafka.auditTopic,
        certIssue: config.kafka.certIssueTopic,
        failed: config.kafka.failedTopic,
      },
    },
  };
}

/**
 * The link from the consumer loop to the pipeline: each closed window goes
 * through {@linkcode processWindow}, its steps retrying (and reporting
 * outages) until the runner abandons it through `signal`.
 */
function windowProcessor(
  config: Config,
  deps: Omit<PipelineDeps, "isolate">,
  observers: Omit<Observers, "signal">,
): RunnerDeps["process"] {
  return (window, signal) =>
    processWindow(window, {
      ...deps,
      isolate: isolation(config, retryWithHealth(config, { ...observers, signal }), signal),
    });
}

/** How a window's steps retry, wait and back off until `signal` aborts. */
export function isolation(config: Config, retry: Retry, signal: AbortSignal): IsolateOptions {
  return {
    retry,
    wait: (ms) => delay(ms, { signal }),
    backoff: { initialMs: config.retry.initialBackoffMs, maxMs: config.retry.maxBackoffMs },
  };
}

/** The job's retry: backoff until `signal` aborts, reporting outages in logs, metrics and health. */
function retryWithHealth(config: Config, observers: Observers): Retry {
  const { metrics, health, signal } = observers;
  return retryWithBackoff({
    initialMs: config.retry.initialBackoffMs,
    maxMs: config.retry.maxBackoffMs,
    signal,
    onFailure(stage, error, attempt, delayMs) {
      metrics.inc("retries");
      reportOutage(metrics, health, stage, true);
      log.warn("{stage} failed (attempt {attempt}), retrying in {delayMs} ms: {error}", {
        stage,
        attempt,
        delayMs,
        error: String(error),
      });
    },
    onSuccess(stage, attempts) {
      if (!health.isFailing(stage)) return;
      reportOutage(metrics, health, stage, false);
      log.info("{stage} recovered after {attempts} attempts", { stage, attempts });
    },
  });
}

/** Shows a stage's outage, or its end, in `/readyz` and the outage gauge. */
function reportOutage(metrics: JobMetrics, health: Health, stage: string, failing: boolean): void {
  health.setOutage(stage, failing);
  metrics.outage.set({ stage }, failing ? 1 : 0);
}
