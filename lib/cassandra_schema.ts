/**
 * The schema the job expects (SPEC §11), checked against `system_schema`:
 * for the `check` command. The LMS owns the schema; the job creates nothing.
 *
 * @module
 */

import type cassandra from "cassandra-driver";
import { type CassandraConfig, createClient } from "./cassandra_client.ts";

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
