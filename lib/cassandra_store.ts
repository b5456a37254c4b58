/**
 * The {@linkcode ProgressStore} on Cassandra: per-enrolment partition reads,
 * writes grouped into single-partition unlogged batches, and the guarded
 * (lightweight-transaction) status moves of SPEC §6 step 8. Errors are
 * sorted by {@linkcode classifyCassandraError}.
 *
 * @module
 */

import type cassandra from "cassandra-driver";
import { mapConcurrent } from "./async.ts";
import {
  type CassandraConfig,
  classifyCassandraError,
  connectClient,
  QUERY_OPTIONS,
} from "./cassandra_client.ts";
import type { EnrolmentKey } from "./event.ts";
import type {
  ConsumptionRow,
  EnrolmentRow,
  EnrolmentWrite,
  ProgressStore,
  ProgressWrites,
} from "./ports.ts";

/**
 * Requests in flight at once for one `writeProgress`/`writeEnrolments` call.
 * Different partitions go concurrently; the bound keeps a 1000-unit window
 * from queueing thousands of requests on one connection at once.
 */
const WRITE_CONCURRENCY = 32;

/** A statement with its parameters and the partition it writes, for grouping. */
interface Statement {
  partition: string;
  query: string;
  params: unknown[];
}

/** The CQL the store runs, built once from the configured keyspace and tables. */
function statements(cfg: CassandraConfig) {
  const consumption = `${cfg.keyspace}.${cfg.consumptionTable}`;
  const agg = `${cfg.keyspace}.${cfg.activityAggTable}`;
  const enrolments = `${cfg.keyspace}.${cfg.enrolmentsTable}`;
  const enrolmentKey = "WHERE userid = ? AND courseid = ? AND batchid = ?";
  return {
    readConsumption:
      `SELECT contentid, status, viewcount, completedcount FROM ${consumption} ${enrolmentKey}`,
    readEnrolment: `SELECT status, progress FROM ${enrolments} ${enrolmentKey}`,
    writeCounters: `UPDATE ${consumption} SET viewcount = ?, completedcount = ? ` +
      "WHERE userid = ? AND courseid = ? AND batchid = ? AND contentid = ?",
    // One key of each map set in place, the others kept (SPEC §6 step 6):
    // binds a number and a timestamp, where `map + ?` binds two maps, which
    // the driver encodes at several buffers each.
    writeAggregate: `UPDATE ${agg} SET aggregates['completedCount'] = ?, ` +
      "agg_last_updated['completedCount'] = ? " +
      "WHERE activity_type = 'Course' AND activity_id = ? AND context_id = ? AND user_id = ?",
    // The frequent in-progress update: no condition. Of the columns the
    // guarded updates below write, it shares only those of a completion,
    // which is never followed by it within a window.
    writeEnrolment: `UPDATE ${enrolments} SET progress = ?, datetime = ?, ` +
      `contentstatus = contentstatus + ? ${enrolmentKey}`,
    // `!= 2` holds for a null status too (Cassandra 5 compares a null cell as
    // "not equal" to any value; verified in tests/integration/cassandra_test.ts),
    // so null, 0 and 1 move and a 2 is never rewritten. It also holds when the
    // row does not exist: the completion then creates a complete row, and the
    // move to 1 follows the unconditional update that creates it.
    // `IF status IN (null, 0, 1)` is accepted as well, but would leave any
    // other unexpected value stuck; `!= 2` is the exact guard SPEC §6 asks for.
    // The completion sets every column of the enrolment update, so that a
    // crash right after it leaves a complete row (the filter then skips it).
    completeEnrolment: `UPDATE ${enrolments} SET status = 2, completedon = ?, progress = ?, ` +
      `datetime = ?, contentstatus = contentstatus + ? ${enrolmentKey} IF status != 2`,
    startEnrolment: `UPDATE ${enrolments} SET status = 1 ${enrolmentKey} IF status != 2`,
  };
}

/** Course progress in Cassandra: {@linkcode CassandraProgressStore.connect}, then `close`. */
export class CassandraProgressStore implements ProgressStore {
  readonly #client: cassandra.Client;
  readonly #batchSize: number;
  readonly #cql: ReturnType<typeof statements>;

  /** `writeBatchSize` is the most statements sent in one request (`THRESHOLD_BATCH_WRITE_SIZE`). */
  constructor(client: cassandra.Client, cfg: CassandraConfig, writeBatchSize: number) {
    this.#client = client;
    this.#batchSize = Math.max(1, writeBatchSize);
    this.#cql = statements(cfg);
  }

  /** Connects to the cluster of `cfg`; see {@linkcode connectClient} for what it throws. */
  static async connect(
    cfg: CassandraConfig,
    writeBatchSize: number,
  ): Promise<CassandraProgressStore> {
    return new CassandraProgressStore(await connectClient(cfg), cfg, writeBatchSize);
  }

  /** All consumption rows of one enrolment: one partition slice, paged by the driver. */
  async readConsumption(key: EnrolmentKey): Promise<ConsumptionRow[]> {
    const rows: ConsumptionRow[] = [];
    // Page by page, so a very large enrolment is read whole; a plain loop over
    // each page, since the driver's async iterator costs a promise per row.
    let pageState: string | undefined;
    do {
      const result = await this.#execute(
        this.#cql.readConsumption,
        enrolmentParams(key),
        pageState,
      );
      for (const row of result.rows) {
        rows.push({
          contentId: row.get("contentid"),
          status: row.get("status") ?? 1,
          viewCount: row.get("viewcount") ?? 0,
          completedCount: row.get("completedcount") ?? 0,
        });
      }
      pageState = result.pageState ?? undefined;
    } while (pageState !== undefined);
    return rows;
  }

  /** The enrolment's `status` (null when unset), or null when the row does not exist. */
  async readEnrolment(key: EnrolmentKey): Promise<EnrolmentRow | null> {
    const result = await this.#execute(this.#cql.readEnrolment, enrolmentParams(key));
    const row = result.first();
    return row
      ? { status: row.get("status") ?? null, progress: row.get("progress") ?? null }
      : null;
  }

  /**
   * Writes counters, aggregates and in-progress enrolment rows as
   * single-partition unlogged batches, partitions concurrently. Both the
   * consumption and the enrolment table are partitioned by `userid`, so a
   * user's counters and enrolment update travel as one request (one mutation
   * on the replica). The guarded moves to status 1 follow.
   */
  async writeProgress({ counters, aggregates, enrolments }: ProgressWrites): Promise<void> {
    if (enrolments.some((w) => w.statusChange?.status === 2)) {
      throw new TypeError("writeProgress takes in-progress enrolment updates only");
    }
    const stmts: Statement[] = [
      ...counters.map((c) => ({
        partition: userPartition(c.key),
        query: this.#cql.writeCounters,
        params: [
          c.viewCount,
          c.completedCount,
          c.key.userId,
          c.key.courseId,
          c.key.batchId,
          c.contentId,
        ],
      })),
      ...aggregates.map((a) => ({
        // Partition key (activity_type, activity_id); activity_type is always 'Course'.
        partition: `agg\u0000${a.activityId}`,
        query: this.#cql.writeAggregate,
        params: [
          a.completedCount,
          new Date(a.at),
          a.activityId,
          a.contextId,
          a.userId,
        ],
      })),
      ...enrolments.map((w) => this.#enrolmentUpdate(w)),
    ];
    await this.#writeGrouped(stmts);
    await this.#startEnrolments(enrolments);
  }

  /**
   * Writes enrolments. An in-progress update is unconditional, followed by its
   * guarded move to status 1 when it has one. A completion is one guarded
   * update of every column; when it does not apply (the row is already at 2)
   * the unconditional update follows instead.
   */
  async writeEnrolments(writes: EnrolmentWrite[]): Promise<void> {
    const completions = writes.filter((w) => w.statusChange?.status === 2);
    const updates = writes.filter((w) => w.statusChange?.status !== 2);
    // Lightweight transactions cannot share a batch with other partitions and
    // are rare (first progress, completion), so each goes alone.
    const notApplied: EnrolmentWrite[] = [];
    await mapConcurrent(completions, WRITE_CONCURRENCY, async (w) => {
      const result = await this.#execute(this.#cql.completeEnrolment, [
        new Date(w.statusChange!.completedOn ?? w.at),
        w.progress,
        new Date(w.at),
        w.contentStatus,
        ...enrolmentParams(w.key),
      ]);
      if (!result.wasApplied()) notApplied.push(w);
    });
    await this.#writeGrouped([...updates, ...notApplied].map((w) => this.#enrolmentUpdate(w)));
    await this.#startEnrolments(updates);
  }

  /** Closes every connection of the driver. */
  async close(): Promise<void> {
    await this.#client.shutdown();
  }

  /** The unconditional enrolment update, in the user's partition. */
  #enrolmentUpdate(w: EnrolmentWrite): Statement {
    return {
      partition: userPartition(w.key),
      query: this.#cql.writeEnrolment,
      params: [w.progress, new Date(w.at), w.contentStatus, ...enrolmentParams(w.key)],
    };
  }

  /** The guarded moves to status 1 of `writes` that have one, after their updates. */
  async #startEnrolments(writes: EnrolmentWrite[]): Promise<void> {
    const starts = writes.filter((w) => w.statusChange?.status === 1);
    await mapConcurrent(starts, WRITE_CONCURRENCY, async (w) => {
      await this.#execute(this.#cql.startEnrolment, enrolmentParams(w.key));
    });
  }

  /** Groups by partition, chunks each group to the batch size, sends the chunks concurrently. */
  async #writeGrouped(stmts: Statement[]): Promise<void> {
    const byPartition = new Map<string, Statement[]>();
    for (const s of stmts) {
      const group = byPartition.get(s.partition);
      if (group) group.push(s);
      else byPartition.set(s.partition, [s]);
    }
    const chunks: Statement[][] = [];
    for (const group of byPartition.values()) {
      for (let i = 0; i < group.length; i += this.#batchSize) {
        chunks.push(group.slice(i, i + this.#batchSize));
      }
    }
    await mapConcurrent(chunks, WRITE_CONCURRENCY, (chunk) => this.#send(chunk));
  }

  /** One request: a lone statement as is, several as an unlogged batch (all of one partition). */
  async #send(chunk: Statement[]): Promise<void> {
    if (chunk.length === 1) {
      await this.#execute(chunk[0].query, chunk[0].params);
      return;
    }
    try {
      await this.#client.batch(
        chunk.map((s) => ({ query: s.query, params: s.params })),
        { ...QUERY_OPTIONS, logged: false },
      );
    } catch (error) {
      throw classifyCassandraError(error);
    }
  }

  /** Runs one statement; `pageState` asks for the page after the one it came with. */
  async #execute(
    query: string,
    params: unknown[],
    pageState?: string,
  ): Promise<cassandra.types.ResultSet> {
    const options = pageState === undefined ? QUERY_OPTIONS : { ...QUERY_OPTIONS, pageState };
    try {
      return await this.#client.execute(query, params, options);
    } catch (error) {
      throw classifyCassandraError(error);
    }
  }
}

/** The partition of `user_content_consumption` and `user_enrolments` rows: `userid`. */
function userPartition(key: EnrolmentKey): string {
  return `user\u0000${key.userId}`;
}

function enrolmentParams(key: EnrolmentKey): string[] {
  return [key.userId, key.courseId, key.batchId];
}
