/**
 * In-memory implementations of the job's ports for unit tests: plain maps
 * and arrays that tests can seed, inspect, and make fail.
 *
 * @module
 */

import type { Retry } from "../../lib/async.ts";
import {
  type EnrolmentKey,
  type ParsedMessage,
  parseMessage,
  parseSyncRequest,
} from "../../lib/event.ts";
import type { IsolateOptions } from "../../lib/isolate.ts";
import { JobMetrics } from "../../lib/metrics.ts";
import type { PipelineDeps, PipelineSettings } from "../../lib/pipeline.ts";
import { type Window, WindowBuilder } from "../../lib/window.ts";
import type {
  AggregateWrite,
  BatchConsumer,
  Clock,
  CollectionStatusLookup,
  CommitOffset,
  ConsumptionRow,
  CounterWrite,
  DedupStore,
  EnrolmentRow,
  EnrolmentWrite,
  EventSink,
  InputMessage,
  InputSource,
  OutputEvent,
  ProgressStore,
  ProgressWrites,
  RelationCache,
} from "../../lib/ports.ts";

/** How the stores key an enrolment: `userId|courseId|batchId`, short to write in tests. */
export function storeKey(key: EnrolmentKey): string {
  return `${key.userId}|${key.courseId}|${key.batchId}`;
}

/** Thrown by a stub told to fail, standing in for an outage. */
export class Outage extends Error {}

/** Lets a test make the next `n` calls of a stub fail. */
class Failures {
  #remaining = 0;
  /** The next `n` calls throw an {@linkcode Outage}. */
  failNext(n = 1): void {
    this.#remaining = n;
  }
  protected check(what: string): void {
    if (this.#remaining > 0) {
      this.#remaining--;
      throw new Outage(`${what}: simulated outage`);
    }
  }
}

/** A stored enrolment row as the stub keeps it. */
export interface StoredEnrolment {
  status: number | null;
  progress?: number;
  contentStatus: Record<string, number>;
  completedOn?: number;
  datetime?: number;
}

/** `user_content_consumption`, `user_activity_agg` and `user_enrolments` in maps. */
export class MemoryProgressStore extends Failures implements ProgressStore {
  readonly consumption = new Map<string, Map<string, ConsumptionRow>>();
  readonly enrolments = new Map<string, StoredEnrolment>();
  readonly aggregates = new Map<string, { completedCount: number; at: number }>();
  readonly writeLog: { counters: CounterWrite[]; aggregates: AggregateWrite[] }[] = [];
  readonly enrolmentWriteLog: EnrolmentWrite[][] = [];
  /** Calls to `writeEnrolments` that should fail, by index (0-based), e.g. to fail completions. */
  failEnrolmentWriteCall: number | null = null;
  #enrolmentWriteCalls = 0;

  /** Seeds a consumption row as the upstream service writes it. */
  seedConsumption(key: EnrolmentKey, row: ConsumptionRow): void {
    const rows = this.consumption.get(storeKey(key)) ?? new Map();
    rows.set(row.contentId, row);
    this.consumption.set(storeKey(key), rows);
  }

  /** Seeds an enrolment row. */
  seedEnrolment(key: EnrolmentKey, status: number | null): void {
    this.enrolments.set(storeKey(key), { status, contentStatus: {} });
  }

  /** The `completedCount` aggregate of an activity for a user in a batch. */
  aggregate(activityId: string, batchId: string, userId: string): number | undefined {
    return this.aggregates.get(`${activityId}|cb:${batchId}|${userId}`)?.completedCount;
  }

  readConsumption(key: EnrolmentKey): Promise<ConsumptionRow[]> {
    this.check("readConsumption");
    return Promise.resolve(
      [...(this.consumption.get(storeKey(key))?.values() ?? [])].map((r) => ({ ...r })),
    );
  }

  readEnrolment(key: EnrolmentKey): Promise<EnrolmentRow | null> {
    this.check("readEnrolment");
    const row = this.enrolments.get(storeKey(key));
    return Promise.resolve(row ? { status: row.status, progress: row.progress ?? null } : null);
  }

  writeProgress({ counters, aggregates, enrolments }: ProgressWrites): Promise<void> {
    this.check("writeProgress");
    this.writeLog.push({ counters, aggregates });
    if (enrolments.length > 0) this.#applyEnrolments(enrolments);
    for (const c of counters) {
      const rows = this.consumption.get(storeKey(c.key)) ?? new Map();
      // Like the real table: only the counters are written; status stays as upstream left it.
      const row = rows.get(c.contentId) ?? { contentId: c.contentId, status: 1 };
      rows.set(c.contentId, {
        ...row,
        viewCount: c.viewCount,
        completedCount: c.completedCount,
      });
      this.consumption.set(storeKey(c.key), rows);
    }
    for (const a of aggregates) {
      this.aggregates.set(`${a.activityId}|${a.contextId}|${a.userId}`, {
        completedCount: a.completedCount,
        at: a.at,
      });
    }
    return Promise.resolve();
  }

  writeEnrolments(writes: EnrolmentWrite[]): Promise<void> {
    const call = this.#enrolmentWriteCalls++;
    if (call === this.failEnrolmentWriteCall) throw new Outage("writeEnrolments: simulated");
    this.check("writeEnrolments");
    this.#applyEnrolments(writes);
    return Promise.resolve();
  }

  #applyEnrolments(writes: EnrolmentWrite[]): void {
    this.enrolmentWriteLog.push(writes);
    for (const w of writes) {
      const row = this.enrolments.get(storeKey(w.key)) ?? { status: null, contentStatus: {} };
      row.progress = w.progress;
      row.datetime = w.at;
      row.contentStatus = { ...row.contentStatus, ...w.contentStatus };
      // The guard of the real store: status 2 is never written back.
      if (w.statusChange && row.status !== 2) {
        row.status = w.statusChange.status;
        if (w.statusChange.completedOn !== undefined) row.completedOn = w.statusChange.completedOn;
      }
      this.enrolments.set(storeKey(w.key), row);
    }
  }
}

/** Relation-cache sets in a map. */
export class MemoryRelationCache extends Failures implements RelationCache {
  readonly sets = new Map<string, string[]>();
  readonly calls: string[][] = [];

  constructor(sets: Record<string, string[]> = {}) {
    super();
    for (const [k, v] of Object.entries(sets)) this.sets.set(k, v);
  }

  members(keys: string[]): Promise<Map<string, string[]>> {
    this.check("members");
    this.calls.push(keys);
    return Promise.resolve(new Map(keys.map((k) => [k, [...this.sets.get(k) ?? []]])));
  }
}

/** Checksums in a map, with the expiry each was stored with. */
export class MemoryDedupStore extends Failures implements DedupStore {
  readonly keys = new Map<string, number>();
  constructor(readonly expirySeconds = 604800) {
    super();
  }

  existing(checksums: string[]): Promise<Set<string>> {
    this.check("existing");
    return Promise.resolve(new Set(checksums.filter((c) => this.keys.has(c))));
  }

  /** The unit checksums stored, without the certificate markers kept beside them. */
  get checksums(): string[] {
    return [...this.keys.keys()].filter((k) => !k.startsWith("CERT-"));
  }

  store(checksums: string[]): Promise<void> {
    this.check("store");
    for (const c of checksums) this.keys.set(c, this.expirySeconds);
    return Promise.resolve();
  }
}

/** Collection statuses by course; a course mapped to an Error makes the lookup throw. */
export class StaticCollectionStatus implements CollectionStatusLookup {
  readonly calls: string[] = [];
  constructor(readonly statuses: Record<string, string | Error> = {}) {}

  status(courseId: string): Promise<string | null> {
    this.calls.push(courseId);
    const status = this.statuses[courseId];
    if (status instanceof Error) return Promise.reject(status);
    return Promise.resolve(status ?? null);
  }
}

/** Collects sent events. */
export class MemorySink extends Failures implements EventSink {
  readonly events: OutputEvent[] = [];

  send(events: OutputEvent[]): Promise<void> {
    this.check("send");
    this.events.push(...events);
    return Promise.resolve();
  }

  /** Values sent to `topic`. */
  on(topic: string): Record<string, unknown>[] {
    return this.events.filter((e) => e.topic === topic).map((e) => e.value);
  }
}

/** A clock that moves only when told to, firing due timers. */
export class FakeClock implements Clock {
  #timers: { at: number; fn: () => void; id: number }[] = [];
  #nextId = 0;
  constructor(public current = 1_700_000_000_000) {}

  now(): number {
    return this.current;
  }

  setTimer(fn: () => void, ms: number): () => void {
    const id = this.#nextId++;
    this.#timers.push({ at: this.current + ms, fn, id });
    return () => {
      this.#timers = this.#timers.filter((t) => t.id !== id);
    };
  }

  /** Moves time forward by `ms`, firing timers that come due, in order. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.current = due.at;
      due.fn();
    }
    this.current = target;
  }

  /** Timers not yet fired. */
  get pending(): number {
    return this.#timers.length;
  }
}

/** Deterministic ids: `id-1`, `id-2`, … */
export function sequentialIds(): () => string {
  let n = 0;
  return () => `id-${++n}`;
}

/** An input topic fed by the test, recording commits. */
export class MemorySource implements InputSource {
  readonly commits: CommitOffset[][] = [];
  paused = false;
  #consumer: BatchConsumer | null = null;
  #offsets = new Map<number, number>();

  start(consumer: BatchConsumer): Promise<void> {
    this.#consumer = consumer;
    return Promise.resolve();
  }

  pause(): void {
    this.paused = true;
  }

  commit(offsets: CommitOffset[]): Promise<void> {
    this.commits.push(offsets);
    return Promise.resolve();
  }

  /**
   * Delivers JSON (or raw string) values as one batch of `partition`;
   * resolves when the consumer has taken it.
   */
  deliver(
    values: unknown | unknown[],
    opts: { partition?: number; timestamp?: number; topic?: string } = {},
  ): Promise<void> {
    const partition = opts.partition ?? 0;
    const batch = (Array.isArray(values) ? values : [values]).map((value) => {
      const offset = this.#offsets.get(partition) ?? 0;
      this.#offsets.set(partition, offset + 1);
      return inputMessage(value, { ...opts, partition, offset });
    });
    return this.deliverMessages(batch);
  }

  /** Delivers prepared messages as one batch; resolves when the consumer has taken it. */
  deliverMessages(batch: InputMessage[]): Promise<void> {
    return this.#consumer!.handle(batch);
  }

  /** Gives up the partitions as a rebalance does: resolves once the consumer has quiesced. */
  rebalance(): Promise<void> {
    return this.#consumer!.quiesce();
  }

  /** The last committed offset of each partition. */
  committed(): Map<number, string> {
    const result = new Map<number, string>();
    for (const batch of this.commits) for (const c of batch) result.set(c.partition, c.offset);
    return result;
  }
}

/** A consumed message holding `value`: JSON, or a raw string or bytes as they are. */
export function inputMessage(
  value: unknown,
  opts: { partition?: number; offset?: number; timestamp?: number; topic?: string } = {},
): InputMessage {
  const bytes = value instanceof Uint8Array
    ? value
    : new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
  return {
    topic: opts.topic ?? "input",
    partition: opts.partition ?? 0,
    offset: String(opts.offset ?? 0),
    key: null,
    value: bytes,
    timestamp: opts.timestamp ?? 0,
  };
}

/** Parses as the job does, with `sync` as the sync topic. */
export function parseInput(message: InputMessage): ParsedMessage {
  return message.topic === "sync" ? parseSyncRequest(message.value) : parseMessage(message.value);
}

/** Every stub a pipeline needs, with the settings of SPEC §2's defaults. */
export function stubWorld(opts: {
  sets?: Record<string, string[]>;
  statuses?: Record<string, string | Error>;
  settings?: Partial<PipelineSettings>;
} = {}) {
  const progress = new MemoryProgressStore();
  const relations = new MemoryRelationCache(opts.sets);
  const dedup = new MemoryDedupStore();
  const collections = new StaticCollectionStatus(opts.statuses);
  const sink = new MemorySink();
  const clock = new FakeClock();
  const metrics = new JobMetrics();
  const settings: PipelineSettings = {
    dedupEnabled: true,
    moduleAggsEnabled: true,
    filterProcessedEnrolments: true,
    readConcurrency: 4,
    failedEventMaxBytes: 921_600,
    topics: { audit: "audit", certIssue: "cert", failed: "failed" },
    ...opts.settings,
  };
  const deps: PipelineDeps = {
    progress,
    relations,
    dedup,
    collections,
    sink,
    clock,
    newId: sequentialIds(),
    metrics,
    isolate: isolateWith(noRetry),
    settings,
  };
  return { progress, relations, dedup, collections, sink, clock, metrics, settings, deps };
}

/** A {@linkcode Retry} that tries once. */
export const noRetry: Retry = (_stage, fn) => fn();

/** Isolation with `retry`, no waiting between probes, and the default backoff. */
export function isolateWith(retry: Retry): IsolateOptions {
  return { retry, wait: () => Promise.resolve(), backoff: { initialMs: 200, maxMs: 30_000 } };
}

/** A {@linkcode Retry} that retries at once, recording each failed stage. */
export function immediateRetry(failedStages: string[]): Retry {
  return async <T>(stage: string, fn: () => Promise<T>, maxAttempts = Infinity): Promise<T> => {
    for (let attempt = 1;; attempt++) {
      try {
        return await fn();
      } catch (error) {
        if (!(error instanceof Outage) || attempt >= maxAttempts) throw error;
        failedStages.push(stage);
      }
    }
  };
}

/** A window of the given message values on partition 0, as the runner would close it. */
export function windowOf(values: unknown[], opts: { topic?: string } = {}): Window {
  const builder = new WindowBuilder({ maxUnits: 1_000_000, maxWaitMs: 1000 });
  values.forEach((value, i) => {
    const message = inputMessage(value, { offset: i, topic: opts.topic });
    builder.add({ message, parsed: parseInput(message) }, 0);
  });
  return builder.take()!;
}
