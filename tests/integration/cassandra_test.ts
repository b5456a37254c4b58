/**
 * The Cassandra progress store against the local stack (`scripts/stack.sh up`).
 * Every test uses fresh user ids, so runs never see each other's rows; the
 * schema is the provisioned `sunbird_courses` (or `LMS_CASSANDRA_KEYSPACE`).
 *
 * Run: scripts/deno.sh test --allow-all tests/integration/cassandra_test.ts
 */

import assert from "node:assert/strict";
import cassandra from "cassandra-driver";
import { connectClient, createClient } from "../../lib/cassandra_client.ts";
import { checkCassandraSchema, verifySchema } from "../../lib/cassandra_schema.ts";
import { CassandraProgressStore } from "../../lib/cassandra_store.ts";
import type { EnrolmentKey } from "../../lib/event.ts";
import { type EnrolmentWrite, PermanentError } from "../../lib/ports.ts";
import { identifierSuffix, stackCassandra, unique } from "../support/stack.ts";

const cfg = stackCassandra();
const ks = cfg.keyspace;
const QUORUM = { prepare: true, consistency: cassandra.types.consistencies.localQuorum };
const insertConsumption = `INSERT INTO ${ks}.user_content_consumption ` +
  "(userid, courseid, batchid, contentid, status, viewcount, completedcount) " +
  "VALUES (?, ?, ?, ?, ?, ?, ?)";

/** Runs `fn` with a connected store (batch size 3, to exercise chunking) and closes it. */
async function withStore(
  fn: (store: CassandraProgressStore, client: cassandra.Client) => Promise<void>,
  batchSize = 3,
): Promise<void> {
  const [store, client] = await Promise.all([
    CassandraProgressStore.connect(cfg, batchSize),
    connectClient(cfg),
  ]);
  try {
    await fn(store, client);
  } finally {
    await Promise.all([store.close(), client.shutdown()]);
  }
}

function newKey(): EnrolmentKey {
  return { userId: unique("it-user"), courseId: unique("it-course"), batchId: unique("it-batch") };
}

async function enrolmentRow(client: cassandra.Client, key: EnrolmentKey) {
  const result = await client.execute(
    `SELECT status, progress, datetime, completedon, contentstatus FROM ${ks}.user_enrolments ` +
      "WHERE userid = ? AND courseid = ? AND batchid = ?",
    [key.userId, key.courseId, key.batchId],
    QUORUM,
  );
  return result.first() ?? null;
}

Deno.test("cassandra: reads of an unknown enrolment are empty", async () => {
  await withStore(async (store) => {
    const key = newKey();
    assert.deepEqual(await store.readConsumption(key), []);
    assert.equal(await store.readEnrolment(key), null);
  });
});

Deno.test("cassandra: readConsumption defaults nulls and reads one enrolment only", async () => {
  await withStore(async (store, client) => {
    const key = newKey();
    await client.execute(
      insertConsumption,
      [key.userId, key.courseId, key.batchId, "R1", 2, 1, 1],
      QUORUM,
    );
    await client.execute(
      insertConsumption,
      [key.userId, key.courseId, key.batchId, "R3", null, null, null],
      QUORUM,
    );
    // Same user and course, another batch: a different enrolment.
    await client.execute(
      insertConsumption,
      [key.userId, key.courseId, "other", "R9", 2, 5, 5],
      QUORUM,
    );

    const rows = await store.readConsumption(key);
    rows.sort((a, b) => a.contentId.localeCompare(b.contentId));
    assert.deepEqual(rows, [
      { contentId: "R1", status: 2, viewCount: 1, completedCount: 1 },
      { contentId: "R3", status: 1, viewCount: 0, completedCount: 0 },
    ]);
  });
});

Deno.test("cassandra: readConsumption reads an enrolment larger than one page whole", async () => {
  await withStore(async (store, client) => {
    const key = newKey();
    // The driver's default page is 5,000 rows.
    const ids = Array.from({ length: 5_050 }, (_, i) => `P${String(i).padStart(5, "0")}`);
    for (let i = 0; i < ids.length; i += 100) {
      await client.batch(
        ids.slice(i, i + 100).map((id) => ({
          query: insertConsumption,
          params: [key.userId, key.courseId, key.batchId, id, 2, 1, 1],
        })),
        { ...QUORUM, logged: false },
      );
    }

    const rows = await store.readConsumption(key);
    assert.equal(rows.length, ids.length);
    assert.deepEqual(rows.map((r) => r.contentId).sort(), ids);
  });
});

Deno.test("cassandra: writeProgress writes counters and merges aggregates", async () => {
  await withStore(async (store, client) => {
    const key = newKey();
    const other = { ...key, userId: unique("it-user") };
    const unitId = unique("it-unit");
    const at = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
    // A stored row with other columns the job must not touch.
    await client.execute(
      `INSERT INTO ${ks}.user_content_consumption ` +
        "(userid, courseid, batchid, contentid, status, viewcount, completedcount, progress) " +
        "VALUES (?, ?, ?, 'C0', 2, 1, 0, 100)",
      [key.userId, key.courseId, key.batchId],
      QUORUM,
    );
    // An existing aggregate with another key, which must be kept.
    await client.execute(
      `UPDATE ${ks}.user_activity_agg SET aggregates = {'other': 7.0} ` +
        "WHERE activity_type = 'Course' AND activity_id = ? AND context_id = ? AND user_id = ?",
      [key.courseId, `cb:${key.batchId}`, key.userId],
      QUORUM,
    );

    // Seven counters of one user (three requests of at most 3), one of another.
    const counters = ["C0", "C1", "C2", "C3", "C4", "C5", "C6"].map((contentId, i) => ({
      key,
      contentId,
      viewCount: i + 2,
      completedCount: i + 1,
    }));
    counters.push({ key: other, contentId: "X", viewCount: 1, completedCount: 1 });
    await store.writeProgress({
      counters,
      aggregates: [
        {
          activityId: key.courseId,
          contextId: `cb:${key.batchId}`,
          userId: key.userId,
          completedCount: 3,
          at,
        },
        {
          activityId: unitId,
          contextId: `cb:${key.batchId}`,
          userId: key.userId,
          completedCount: 2,
          at,
        },
      ],
      enrolments: [],
    });

    const rows = await store.readConsumption(key);
    rows.sort((a, b) => a.contentId.localeCompare(b.contentId));
    assert.deepEqual(
      rows,
      counters.slice(0, 7).map((c, i) => ({
        contentId: c.contentId,
        // The job writes only the counters: C0 keeps its status, new rows have none (→ 1).
        status: i === 0 ? 2 : 1,
        viewCount: c.viewCount,
        completedCount: c.completedCount,
      })),
    );
    const c0 = (await client.execute(
      `SELECT progress FROM ${ks}.user_content_consumption ` +
        "WHERE userid = ? AND courseid = ? AND batchid = ? AND contentid = 'C0'",
      [key.userId, key.courseId, key.batchId],
      QUORUM,
    )).first();
    assert.equal(c0.get("progress"), 100, "other columns are untouched");
    assert.deepEqual(await store.readConsumption(other), [
      { contentId: "X", status: 1, viewCount: 1, completedCount: 1 },
    ]);

    const aggregate = async (activityId: string) =>
      (await client.execute(
        `SELECT aggregates, agg_last_updated FROM ${ks}.user_activity_agg ` +
          "WHERE activity_type = 'Course' AND activity_id = ? AND context_id = ? AND user_id = ?",
        [activityId, `cb:${key.batchId}`, key.userId],
        QUORUM,
      )).first();
    const course = await aggregate(key.courseId);
    assert.deepEqual(course.get("aggregates"), { other: 7, completedCount: 3 });
    assert.deepEqual(course.get("agg_last_updated"), { completedCount: new Date(at) });
    const unit = await aggregate(unitId);
    assert.deepEqual(unit.get("aggregates"), { completedCount: 2 });
  });
});

Deno.test("cassandra: writeProgress writes a user's counters and enrolment row as one request", async () => {
  await withStore(async (_store, client) => {
    const key = newKey();
    const at = Date.UTC(2026, 5, 2);
    // The tables each batch request writes, in order.
    const requests: string[] = [];
    const batch = client.batch.bind(client);
    client.batch = ((queries: { query: string }[], options: cassandra.QueryOptions) => {
      requests.push(queries.map((q) => q.query.split(" ")[1]).join("+"));
      return batch(queries, options);
    }) as typeof client.batch;
    const store = new CassandraProgressStore(client, cfg, 3);
    await store.writeProgress({
      counters: [{ key, contentId: "R1", viewCount: 1, completedCount: 1 }],
      aggregates: [],
      enrolments: [{ key, progress: 1, contentStatus: { R1: 2 }, at, statusChange: { status: 1 } }],
    });
    assert.deepEqual(requests, [
      `${ks}.user_content_consumption+${ks}.user_enrolments`,
    ]);
    const row = await enrolmentRow(client, key);
    assert.deepEqual(row.get("contentstatus"), { R1: 2 });
    assert.equal(row.get("status"), 1, "the guarded move to 1 follows the update");
    assert.deepEqual(await store.readConsumption(key), [
      { contentId: "R1", status: 1, viewCount: 1, completedCount: 1 },
    ]);
    await assert.rejects(
      store.writeProgress({
        counters: [],
        aggregates: [],
        enrolments: [{ key, progress: 2, contentStatus: {}, at, statusChange: { status: 2 } }],
      }),
      TypeError,
    );
    assert.equal((await enrolmentRow(client, key)).get("status"), 1, "no completion written");
  });
});

Deno.test("cassandra: writeEnrolments merges contentstatus and sets progress and datetime", async () => {
  await withStore(async (store, client) => {
    const key = newKey();
    await client.execute(
      `UPDATE ${ks}.user_enrolments SET contentstatus = {'R0': 1, 'R1': 1}, status = 1 ` +
        "WHERE userid = ? AND courseid = ? AND batchid = ?",
      [key.userId, key.courseId, key.batchId],
      QUORUM,
    );
    const at = Date.UTC(2026, 5, 1);
    await store.writeEnrolments([{ key, progress: 2, contentStatus: { R1: 2, R2: 2 }, at }]);
    const row = await enrolmentRow(client, key);
    assert.deepEqual(row.get("contentstatus"), { R0: 1, R1: 2, R2: 2 });
    assert.equal(row.get("progress"), 2);
    assert.deepEqual(row.get("datetime"), new Date(at));
    assert.equal(row.get("status"), 1);
    assert.deepEqual(await store.readEnrolment(key), { status: 1, progress: 2 });
  });
});

/**
 * What Cassandra itself does with `IF status != 2` when the cell is null or
 * the row does not exist: the facts the store's conditions rely on.
 */
Deno.test("cassandra: LWT `IF status != 2` holds for a null status and for a missing row", async () => {
  await withStore(async (_store, client) => {
    const serial = { ...QUORUM, serialConsistency: cassandra.types.consistencies.localSerial };
    const where = "WHERE userid = ? AND courseid = 'C' AND batchid = 'B'";
    const lwt = async (userId: string) => {
      const result = await client.execute(
        `UPDATE ${ks}.user_enrolments SET status = 1 ${where} IF status != 2`,
        [userId],
        serial,
      );
      const read = await client.execute(
        `SELECT status FROM ${ks}.user_enrolments ${where}`,
        [userId],
        QUORUM,
      );
      return { applied: result.first().get("[applied]"), status: read.first()?.get("status") };
    };
    const set = (userId: string, cql: string) =>
      client.execute(`UPDATE ${ks}.user_enrolments SET ${cql} ${where}`, [userId], QUORUM);

    const missing = unique("lwt-missing");
    assert.deepEqual(await lwt(missing), { applied: true, status: 1 }, "missing row: applies");

    const nullStatus = unique("lwt-null");
    await set(nullStatus, "progress = 1");
    assert.deepEqual(await lwt(nullStatus), { applied: true, status: 1 }, "null status: applies");

    const zero = unique("lwt-zero");
    await set(zero, "status = 0");
    assert.deepEqual(await lwt(zero), { applied: true, status: 1 });

    const two = unique("lwt-two");
    await set(two, "status = 2");
    assert.deepEqual(await lwt(two), { applied: false, status: 2 }, "2 is never overwritten");

    // `IN (null, 0, 1)` is accepted too, with the same outcome for null.
    const inNull = unique("lwt-in");
    await set(inNull, "progress = 1");
    const result = await client.execute(
      `UPDATE ${ks}.user_enrolments SET status = 1 ${where} IF status IN (null, 0, 1)`,
      [inNull],
      serial,
    );
    assert.equal(result.first().get("[applied]"), true);
  });
});

Deno.test("cassandra: status changes never move 2 back to 1; null and 0 move to 1", async () => {
  await withStore(async (store, client) => {
    const at = Date.UTC(2026, 2, 3);
    const write = (key: EnrolmentKey, change: EnrolmentWrite["statusChange"], when = at) => ({
      key,
      progress: 1,
      contentStatus: { R1: 2 },
      at: when,
      statusChange: change,
    });
    const setStatus = (key: EnrolmentKey, status: number | null) =>
      client.execute(
        `UPDATE ${ks}.user_enrolments SET status = ?, progress = 0 ` +
          "WHERE userid = ? AND courseid = ? AND batchid = ?",
        [status, key.userId, key.courseId, key.batchId],
        QUORUM,
      );

    const absent = newKey(); // no row yet: the unconditional update creates it first
    const nullStatus = newKey();
    const zero = newKey();
    const completed = newKey();
    const completing = newKey();
    await setStatus(nullStatus, null);
    await setStatus(zero, 0);
    await setStatus(completed, 2);
    await setStatus(completing, 1);
    const completedOn = Date.UTC(2026, 0, 1);
    await client.execute(
      `UPDATE ${ks}.user_enrolments SET completedon = ? ` +
        "WHERE userid = ? AND courseid = ? AND batchid = ?",
      [new Date(completedOn), completed.userId, completed.courseId, completed.batchId],
      QUORUM,
    );

    await store.writeEnrolments([
      write(absent, { status: 1 }),
      write(nullStatus, { status: 1 }),
      write(zero, { status: 1 }),
      write(completed, { status: 1 }),
      write(completing, { status: 2, completedOn: at }),
    ]);

    assert.equal((await enrolmentRow(client, absent)).get("status"), 1);
    assert.equal((await enrolmentRow(client, nullStatus)).get("status"), 1);
    assert.equal((await enrolmentRow(client, zero)).get("status"), 1);
    const stayed = await enrolmentRow(client, completed);
    assert.equal(stayed.get("status"), 2, "2 is never written back to 1");
    assert.equal(stayed.get("progress"), 1, "the unconditional columns are still written");
    const done = await enrolmentRow(client, completing);
    assert.equal(done.get("status"), 2);
    assert.deepEqual(done.get("completedon"), new Date(at));
    // The completion writes the enrolment update's columns in the same guarded statement.
    assert.equal(done.get("progress"), 1);
    assert.deepEqual(done.get("contentstatus"), { R1: 2 });

    // A second completion (a replay) keeps the first completedon.
    await store.writeEnrolments([write(completing, { status: 2, completedOn: at + 60_000 })]);
    assert.deepEqual((await enrolmentRow(client, completing)).get("completedon"), new Date(at));
    assert.deepEqual(
      (await enrolmentRow(client, completed)).get("completedon"),
      new Date(completedOn),
    );
    // And a late "first progress" after completion changes nothing.
    await store.writeEnrolments([write(completing, { status: 1 })]);
    assert.deepEqual(await store.readEnrolment(completing), { status: 2, progress: 1 });
    // An enrolment whose status is unset reads as null, not 0 or 1.
    const unset = newKey();
    await store.writeEnrolments([{ key: unset, progress: 0, contentStatus: {}, at }]);
    assert.deepEqual(await store.readEnrolment(unset), { status: null, progress: 0 });
  });
});

Deno.test("cassandra: a missing table or keyspace is a PermanentError", async () => {
  const missingTable = await CassandraProgressStore.connect(
    stackCassandra({ consumptionTable: "no_such_table" }),
    10,
  );
  try {
    await assert.rejects(missingTable.readConsumption(newKey()), (e: unknown) => {
      assert.ok(e instanceof PermanentError, `got ${e}`);
      assert.match(e.message, /no_such_table/);
      return true;
    });
  } finally {
    await missingTable.close();
  }
  const missingKeyspace = await CassandraProgressStore.connect(
    stackCassandra({ keyspace: `no_such_ks_${identifierSuffix()}` }),
    10,
  );
  try {
    await assert.rejects(
      missingKeyspace.writeProgress({
        counters: [],
        aggregates: [{ activityId: "a", contextId: "cb:b", userId: "u", completedCount: 1, at: 0 }],
        enrolments: [],
      }),
      PermanentError,
    );
  } finally {
    await missingKeyspace.close();
  }
});

Deno.test("cassandra: an unreachable cluster is a retryable (non-permanent) error", async () => {
  const error = await CassandraProgressStore.connect(stackCassandra({ port: 1 }), 10).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(error instanceof Error);
  assert.ok(!(error instanceof PermanentError));
  assert.ok(error instanceof cassandra.errors.NoHostAvailableError);
});

Deno.test("cassandra: verifySchema accepts the provisioned schema and names each problem", async () => {
  assert.deepEqual(await checkCassandraSchema(cfg), []);

  const client = createClient(cfg);
  const table = `schema_probe_${identifierSuffix()}`;
  try {
    await client.connect();
    assert.deepEqual(await verifySchema(client, { ...cfg, keyspace: "no_such_keyspace" }), [
      "keyspace no_such_keyspace does not exist",
    ]);
    assert.deepEqual(await verifySchema(client, { ...cfg, enrolmentsTable: "no_such_table" }), [
      `table ${ks}.no_such_table does not exist`,
    ]);
    // A consumption table lacking a counter, with status of the wrong type and a
    // partition key of two columns.
    await client.execute(
      `CREATE TABLE ${ks}.${table} (userid text, courseid text, batchid text, ` +
        "contentid text, status text, viewcount int, PRIMARY KEY ((userid, courseid), batchid, contentid))",
    );
    assert.deepEqual(await verifySchema(client, { ...cfg, consumptionTable: table }), [
      `column ${ks}.${table}.courseid is a partition_key column, expected clustering`,
      `column ${ks}.${table}.status has type text, expected int`,
      `column ${ks}.${table}.completedcount does not exist`,
    ]);
  } finally {
    await client.execute(`DROP TABLE IF EXISTS ${ks}.${table}`).catch(() => {});
    await client.shutdown();
  }

  const unreachable = await checkCassandraSchema(stackCassandra({ port: 1 }));
  assert.equal(unreachable.length, 1);
  assert.match(unreachable[0], /127\.0\.0\.1:1: /);
});
