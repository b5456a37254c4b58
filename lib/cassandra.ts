/**
 * The {@linkcode ProgressStore} on Cassandra (`cassandra-driver`): per-enrolment
 * partition reads, writes grouped into single-partition unlogged batches, and
 * the guarded (lightweight-transaction) status moves of SPEC §6 step 8.
 *
 * Errors are sorted by {@linkcode classifyError}: permanent (a missing table,
 * bad credentials), this input's (a key too long), or passing (no host
 * available, timeouts: thrown as is, for the job's retry loop).
 *
 * @module
 */

import cassandra from "cassandra-driver";
import { mapConcurrent } from "./async.ts";
import type { Config } from "./config.ts";
import type { EnrolmentKey } from "./event.ts";
import {
  type AggregateWrite,
  type ConsumptionRow,
  type CounterWrite,
  type EnrolmentRow,
  type EnrolmentWrite,
  InputRejectedError,
  PermanentError,
  type ProgressStore,
} from "./ports.ts";

/** The `Config` section this module reads. */
export type CassandraConfig = Config["cassandra"];

const { consistencies, responseErrorCodes } = cassandra.types;

/** Options of every request: prepared, LOCAL_QUORUM, LOCAL_SERIAL for the conditional writes. */
const QUERY_OPTIONS = {
  prepare: true,
  consistency: consistencies.localQuorum,
  serialConsistency: consistencies.localSerial,
} as const;

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
    writeAggregate: `UPDATE ${agg} SET aggregates = aggregates + ?, ` +
      "agg_last_updated = agg_last_updated + ? " +
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

/**
 * Course progress in Cassandra. Construct it with a connected client, or use
 * {@linkcode connectProgressStore}.
 */
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

  /** The driver client, for {@linkcode verifySchema} and diagnostics. */
  get client(): cassandra.Client {
    return this.#client;
  }

  /** All consumption rows of one enrolment: one partition slice, paged by the driver. */
  async readConsumption(key: EnrolmentKey): Promise<ConsumptionRow[]> {
    const result = await this.#execute(this.#cql.readConsumption, enrolmentParams(key));
    const rows: ConsumptionRow[] = [];
    // The async iterator fetches further pages, so a very large enrolment is read whole.
    for await (const row of result) {
      rows.push({
        contentId: row.get("contentid"),
        status: row.get("status") ?? 1,
        viewCount: row.get("viewcount") ?? 0,
        completedCount: row.get("completedcount") ?? 0,
      });
    }
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

  /** Writes counters and aggregates: single-partition unlogged batches, partitions concurrently. */
  async writeProgress(counters: CounterWrite[], aggregates: AggregateWrite[]): Promise<void> {
    const stmts: Statement[] = [
      ...counters.map((c) => ({
        partition: `ucc\u0000${c.key.userId}`,
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
          { completedCount: a.completedCount },
          { completedCount: new Date(a.at) },
          a.activityId,
          a.contextId,
          a.userId,
        ],
      })),
    ];
    await this.#writeGrouped(stmts);
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
    const plain = [...updates, ...notApplied];
    await this.#writeGrouped(plain.map((w) => ({
      partition: w.key.userId,
      query: this.#cql.writeEnrolment,
      params: [w.progress, new Date(w.at), w.contentStatus, ...enrolmentParams(w.key)],
    })));
    const starts = updates.filter((w) => w.statusChange?.status === 1);
    await mapConcurrent(starts, WRITE_CONCURRENCY, async (w) => {
      await this.#execute(this.#cql.startEnrolment, enrolmentParams(w.key));
    });
  }

  /** Closes every connection of the driver. */
  async close(): Promise<void> {
    await this.#client.shutdown();
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
      throw classifyError(error);
    }
  }

  async #execute(query: string, params: unknown[]): Promise<cassandra.types.ResultSet> {
    try {
      return await this.#client.execute(query, params, QUERY_OPTIONS);
    } catch (error) {
      throw classifyError(error);
    }
  }
}

function enrolmentParams(key: EnrolmentKey): string[] {
  return [key.userId, key.courseId, key.batchId];
}

/** Response codes that no retry and no other input can cure. */
const PERMANENT_CODES: ReadonlySet<number> = new Set([
  responseErrorCodes.syntaxError,
  responseErrorCodes.configError,
  responseErrorCodes.unauthorized,
  responseErrorCodes.badCredentials,
]);

/**
 * An `invalid` answer about the schema rather than the values: a missing
 * keyspace, table or column. Any other `invalid` answer (a key longer than
 * 64 KiB, a value the column cannot hold) is about this request's input.
 */
const SCHEMA_PROBLEM =
  /unconfigured table|(?:table|keyspace) \S+ does not exist|undefined column|unknown identifier/i;

/**
 * Sorts a driver error by who can cure it (SPEC §3): the schema or the
 * credentials ({@linkcode PermanentError}), this request's input
 * ({@linkcode InputRejectedError}), or time (returned unchanged: an outage,
 * a timeout, an overloaded node). The original is kept as `cause`.
 */
export function classifyError(error: unknown): unknown {
  const { errors } = cassandra;
  if (error instanceof PermanentError || error instanceof InputRejectedError) return error;
  const message = `cassandra: ${(error as Error)?.message}`;
  if (error instanceof errors.ResponseError) {
    if (PERMANENT_CODES.has(error.code)) return new PermanentError(message, { cause: error });
    if (error.code === responseErrorCodes.invalid) {
      return SCHEMA_PROBLEM.test(error.message)
        ? new PermanentError(message, { cause: error })
        : new InputRejectedError(message, { cause: error });
    }
    return error;
  }
  if (error instanceof errors.AuthenticationError) {
    return new PermanentError(message, { cause: error });
  }
  // The driver checks and encodes parameters before sending: a value it
  // refuses is this request's input.
  if (
    error instanceof errors.ArgumentError || error instanceof TypeError ||
    error instanceof RangeError
  ) {
    return new InputRejectedError(message, { cause: error });
  }
  // Connecting with bad credentials fails every host with an AuthenticationError.
  if (error instanceof errors.NoHostAvailableError) {
    const inner = Object.values((error.innerErrors ?? {}) as Record<string, unknown>);
    if (inner.length > 0 && inner.every((e) => e instanceof errors.AuthenticationError)) {
      return new PermanentError(message, { cause: error });
    }
  }
  return error;
}

/**
 * Longest wait between the driver's attempts to reconnect to a node it saw go
 * down. Requests do not try a node marked down, so this bounds how long the
 * job stays paused after Cassandra is back; the driver's default grows to 10
 * minutes.
 */
export const RECONNECT_MAX_DELAY_MS = 5000;

/** A driver client for `cfg`, not yet connected. */
export function createClient(cfg: CassandraConfig): cassandra.Client {
  return new cassandra.Client({
    contactPoints: cfg.contactPoints,
    protocolOptions: { port: cfg.port },
    localDataCenter: cfg.localDataCenter,
    // No `keyspace` here: statements name it, so a missing keyspace surfaces
    // as a clear (permanent) error on first use and in `verifySchema`, not
    // as an opaque connection failure.
    queryOptions: { ...QUERY_OPTIONS },
    socketOptions: { connectTimeout: 5000, readTimeout: 12_000 },
    policies: {
      reconnection: new cassandra.policies.reconnection.ExponentialReconnectionPolicy(
        500,
        RECONNECT_MAX_DELAY_MS,
        false,
      ),
    },
    // DataStax Insights reporting (DSE only) would send the host's name and
    // CPUs: nothing the job needs, and reading them takes --allow-sys.
    monitorReporting: { enabled: false },
  });
}

/**
 * Connects to the cluster of `cfg` and returns the store. Throws
 * {@linkcode PermanentError} on bad credentials; other connection failures
 * (no host reachable) are thrown as is.
 */
export async function connectProgressStore(
  cfg: CassandraConfig,
  writeBatchSize: number,
): Promise<CassandraProgressStore> {
  const client = createClient(cfg);
  try {
    await client.connect();
  } catch (error) {
    await client.shutdown().catch(() => {});
    const classified = classifyError(error);
    // Connecting involves no input: what the driver refuses is the configuration.
    throw classified instanceof InputRejectedError
      ? new PermanentError(classified.message, { cause: error })
      : classified;
  }
  return new CassandraProgressStore(client, cfg, writeBatchSize);
}

/** A column the job uses: its CQL type, and its role in the primary key (if any). */
interface ExpectedColumn {
  type: string;
  kind?: "partition_key" | "clustering";
}

/**
 * Columns the job reads or writes, per configured table. The key roles
 * matter too: writes are grouped into batches by partition key.
 */
function expectedSchema(cfg: CassandraConfig): Record<string, Record<string, ExpectedColumn>> {
  const text = (kind?: ExpectedColumn["kind"]): ExpectedColumn => ({ type: "text", kind });
  return {
    [cfg.consumptionTable]: {
      userid: text("partition_key"),
      courseid: text("clustering"),
      batchid: text("clustering"),
      contentid: text("clustering"),
      status: { type: "int" },
      viewcount: { type: "int" },
      completedcount: { type: "int" },
    },
    [cfg.activityAggTable]: {
      activity_type: text("partition_key"),
      activity_id: text("partition_key"),
      context_id: text("clustering"),
      user_id: text("clustering"),
      aggregates: { type: "map<text, double>" },
      agg_last_updated: { type: "map<text, timestamp>" },
    },
    [cfg.enrolmentsTable]: {
      userid: text("partition_key"),
      courseid: text("clustering"),
      batchid: text("clustering"),
      status: { type: "int" },
      progress: { type: "int" },
      datetime: { type: "timestamp" },
      completedon: { type: "timestamp" },
      contentstatus: { type: "map<text, int>" },
    },
  };
}

/**
 * Checks that the keyspace, the three tables and every column the job reads
 * or writes exist with the expected types and key roles. Returns the problems
 * found (empty when the schema fits). Reads `system_schema` (Cassandra ≥ 3).
 */
export async function verifySchema(
  client: cassandra.Client,
  cfg: CassandraConfig,
): Promise<string[]> {
  const problems: string[] = [];
  const ks = await client.execute(
    "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
    [cfg.keyspace],
    { prepare: true },
  );
  if (ks.rowLength === 0) return [`keyspace ${cfg.keyspace} does not exist`];

  const cols = await client.execute(
    "SELECT table_name, column_name, type, kind FROM system_schema.columns " +
      "WHERE keyspace_name = ?",
    [cfg.keyspace],
    { prepare: true },
  );
  const actual = new Map<string, Map<string, { type: string; kind: string }>>();
  for await (const row of cols) {
    const table = row.get("table_name") as string;
    if (!actual.has(table)) actual.set(table, new Map());
    actual.get(table)!.set(row.get("column_name"), {
      type: row.get("type"),
      kind: row.get("kind"),
    });
  }
  for (const [table, columns] of Object.entries(expectedSchema(cfg))) {
    const found = actual.get(table);
    if (!found) {
      problems.push(`table ${cfg.keyspace}.${table} does not exist`);
      continue;
    }
    for (const [column, expected] of Object.entries(columns)) {
      const name = `column ${cfg.keyspace}.${table}.${column}`;
      const have = found.get(column);
      if (have === undefined) {
        problems.push(`${name} does not exist`);
        continue;
      }
      if (normaliseType(have.type) !== normaliseType(expected.type)) {
        problems.push(`${name} has type ${have.type}, expected ${expected.type}`);
      }
      const expectedKind = expected.kind ?? "regular";
      if (have.kind !== expectedKind) {
        problems.push(`${name} is a ${have.kind} column, expected ${expectedKind}`);
      }
    }
  }
  return problems;
}

/** `map<text,int>` and `map<text, int>` are the same type; `varchar` is `text`. */
function normaliseType(type: string): string {
  return type.replace(/\s+/g, "").replace(/\bvarchar\b/g, "text").toLowerCase();
}

/** Connects, runs {@linkcode verifySchema} and disconnects: for the `check` command. */
export async function checkCassandraSchema(cfg: CassandraConfig): Promise<string[]> {
  const client = createClient(cfg);
  try {
    await client.connect();
    return await verifySchema(client, cfg);
  } catch (error) {
    return [`cassandra at ${cfg.contactPoints.join(",")}:${cfg.port}: ${(error as Error).message}`];
  } finally {
    await client.shutdown().catch(() => {});
  }
}
