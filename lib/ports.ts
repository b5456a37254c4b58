/**
 * The job's view of everything outside the process. Each interface is named
 * for what the job needs, not for the library behind it, so unit tests can
 * supply a few lines of in-memory state instead of a server.
 *
 * @module
 */

import type { EnrolmentKey } from "./event.ts";

/** One stored `user_content_consumption` row, nulls already defaulted. */
export interface ConsumptionRow {
  contentId: string;
  status: number;
  viewCount: number;
  completedCount: number;
}

/** The `user_enrolments` fields the job reads. */
export interface EnrolmentRow {
  status: number | null;
  progress: number | null;
}

/** Absolute view and completion counters for one content (SPEC §6 step 4). */
export interface CounterWrite {
  key: EnrolmentKey;
  contentId: string;
  viewCount: number;
  completedCount: number;
}

/** One `user_activity_agg` row: `completedCount` of a course or unit. */
export interface AggregateWrite {
  activityId: string;
  contextId: string;
  userId: string;
  completedCount: number;
  at: number;
}

/** The enrolment update of SPEC §6 step 8. */
export interface EnrolmentWrite {
  key: EnrolmentKey;
  progress: number;
  /** Keys to add or replace in `contentstatus`; other keys are kept. */
  contentStatus: Record<string, number>;
  at: number;
  /**
   * Present when this write moves `status`: to 1 (first progress) or to 2
   * (completion, with `completedon`). The store guards it so that 2 is never
   * written back to 1.
   */
  statusChange?: { status: 1 | 2; completedOn?: number };
}

/** A window's progress writes: counters, aggregates and in-progress enrolment rows. */
export interface ProgressWrites {
  counters: CounterWrite[];
  aggregates: AggregateWrite[];
  /** In-progress enrolment updates (no move to status 2: see `writeEnrolments`). */
  enrolments: EnrolmentWrite[];
}

/** Reads and writes of course progress (Cassandra in production). */
export interface ProgressStore {
  /** All consumption rows of one enrolment (one partition read). */
  readConsumption(key: EnrolmentKey): Promise<ConsumptionRow[]>;
  /** The enrolment row, or null when it does not exist. */
  readEnrolment(key: EnrolmentKey): Promise<EnrolmentRow | null>;
  /**
   * Writes counters, aggregates and in-progress enrolment rows, grouped into
   * requests by partition; the guarded moves to status 1 follow.
   */
  writeProgress(writes: ProgressWrites): Promise<void>;
  /** Writes enrolment rows, completions included, with their guarded status changes. */
  writeEnrolments(writes: EnrolmentWrite[]): Promise<void>;
}

/** Course structure sets, written by other platform jobs (read-only here). */
export interface RelationCache {
  /** Members of each named set, fetched in one round trip; missing sets are empty. */
  members(keys: string[]): Promise<Map<string, string[]>>;
}

/** Checksums of units whose effects are durable (SPEC §4). */
export interface DedupStore {
  /** The subset of `checksums` already stored. */
  existing(checksums: string[]): Promise<Set<string>>;
  /** Stores `checksums` with the configured expiry. */
  store(checksums: string[]): Promise<void>;
}

/** Status of a collection as the search service reports it, or null when not found. */
export interface CollectionStatusLookup {
  /** Throws when the service still fails after its bounded retries. */
  status(courseId: string): Promise<string | null>;
}

/** One event for an output topic, keyed by userId. */
export interface OutputEvent {
  topic: string;
  key: string;
  value: Record<string, unknown>;
}

/** Output topics; `send` resolves once Kafka acknowledged every event. */
export interface EventSink {
  send(events: OutputEvent[]): Promise<void>;
}

/** Time and identity, injected so tests are deterministic. */
export interface Clock {
  now(): number;
  /** Calls `fn` after `ms`; returns a function that cancels it. */
  setTimer(fn: () => void, ms: number): () => void;
}

/** Random UUIDs, injected so tests are deterministic. */
export type IdSource = () => string;

/** A message as consumed from the input topic. */
export interface InputMessage {
  topic: string;
  partition: number;
  /** Kafka offset, as the decimal string Kafka clients use. */
  offset: string;
  key: string | null;
  value: Uint8Array | null;
  /** Producer or broker timestamp, epoch milliseconds. */
  timestamp: number;
}

/** Position to commit for one partition: the offset of the next message to read. */
export interface CommitOffset {
  topic: string;
  partition: number;
  offset: string;
}

/** What an {@linkcode InputSource} hands its messages to. */
export interface BatchConsumer {
  /**
   * Takes one partition's batch of messages, in partition order; the source
   * fetches again once it resolves.
   */
  handle(messages: InputMessage[]): Promise<void>;
  /**
   * Resolves once every message handed over is committed, or abandoned
   * uncommitted on a stop. The source awaits it before it gives up any of
   * its partitions, so a rebalance never hands a message in flight to
   * another member (SPEC §5).
   */
  quiesce(): Promise<void>;
}

/** The input topics: messages in partition order, and offset commits. */
export interface InputSource {
  /** Starts consuming into `consumer`. */
  start(consumer: BatchConsumer): Promise<void>;
  /** Stops fetching new messages; commits still work. */
  pause(): void;
  /** Commits positions; a later commit of the same partition supersedes an earlier one. */
  commit(offsets: CommitOffset[]): Promise<void>;
}

/**
 * An error that retrying cannot cure (a missing table, bad credentials).
 * Adapters throw it; the job stops with its message instead of retrying.
 */
export class PermanentError extends Error {
  override name = "PermanentError";
}

/**
 * A service refused this input (a key too long, an event too large, a value
 * that cannot be serialised): retrying it cannot succeed, but other input
 * can. The pipeline fails the enrolment or message it belongs to and goes on.
 */
export class InputRejectedError extends Error {
  override name = "InputRejectedError";
}
