/**
 * Provokes, against the local stack (`scripts/stack.sh`), the errors each
 * driver really throws, and records their shapes in
 * `tests/fixtures/driver_errors.json`: constructor and prototype chain,
 * `name`, `message`, `code`, KafkaJS `type`/`retriable`/`cause`, Cassandra
 * `innerErrors`, ioredis `command`, and every other own property.
 * `tests/support/driver_errors.ts` rebuilds them for unit tests.
 *
 * ```sh
 * source <(bash scripts/stack.sh env)
 * scripts/deno.sh run --allow-all scripts/record_driver_errors.ts [OUT]
 * ```
 *
 * Everything it creates (a keyspace, topics, a group, a second redis-server)
 * has a unique name and is removed at the end; it talks to 127.0.0.1 only.
 *
 * @module
 */

import cassandra from "cassandra-driver";
import { Redis } from "ioredis";
import { Kafka, logLevel } from "kafkajs";
import process from "node:process";
import {
  describeError as describe,
  jsonSafe as safe,
  type RecordedCase,
} from "../tests/support/driver_errors.ts";

const STRING_LIMIT = 300;
const CASE_TIMEOUT_MS = 45_000;

const env = (name: string, fallback: string) => Deno.env.get(name) ?? fallback;
const CASSANDRA_PORT = Number(env("LMS_CASSANDRA_PORT", "19042"));
const REDIS_PORT = Number(env("REDIS_PORT", "16379"));
const KAFKA_BROKER = env("KAFKA_BROKER_SERVERS", "127.0.0.1:19092").split(",")[0];
const OUT = Deno.args[0] ?? new URL("../tests/fixtures/driver_errors.json", import.meta.url)
  .pathname;

const cases: RecordedCase[] = [];

/** Runs `fn`, expecting it to throw, and records the error (or the result). */
async function record(
  driver: RecordedCase["driver"],
  id: string,
  what: string,
  how: string,
  fn: () => Promise<unknown>,
): Promise<void> {
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`recorder: no outcome within ${CASE_TIMEOUT_MS} ms`)),
      CASE_TIMEOUT_MS,
    );
  });
  const entry: RecordedCase = { id, driver, case: what, how };
  try {
    entry.result = safe(await Promise.race([fn(), timeout]), 0);
  } catch (error) {
    entry.error = describe(error);
  } finally {
    clearTimeout(timer);
  }
  entry.ms = Math.round(performance.now() - started);
  cases.push(entry);
  const e = entry.error;
  console.error(
    `${driver.padEnd(9)} ${id.padEnd(34)} ${
      e
        ? `${e.constructor} ${String(e.code ?? e.type ?? "")} ${String(e.message).slice(0, 90)}`
        : `no error: ${JSON.stringify(entry.result).slice(0, 80)}`
    } (${entry.ms} ms)`,
  );
}

function truncate(s: string): string {
  return s.length > STRING_LIMIT ? `${s.slice(0, STRING_LIMIT)}…[${s.length} chars]` : s;
}

function skip(driver: RecordedCase["driver"], id: string, what: string, why: string): void {
  cases.push({ id, driver, case: what, how: "", skipped: why });
  console.error(`${driver.padEnd(9)} ${id.padEnd(34)} skipped: ${why}`);
}

const suffix = `${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6).toString(36)}`;

// ---------------------------------------------------------------- Cassandra

async function cassandraCases(): Promise<void> {
  const ks = `drv_err_${suffix}`;
  const client = new cassandra.Client({
    contactPoints: ["127.0.0.1"],
    protocolOptions: { port: CASSANDRA_PORT },
    localDataCenter: env("LMS_CASSANDRA_LOCAL_DATACENTER", "datacenter1"),
  });
  await client.connect();
  try {
    await client.execute(
      `CREATE KEYSPACE ${ks} WITH replication = {'class':'SimpleStrategy','replication_factor':1}`,
    );
    await client.execute(
      `CREATE TABLE ${ks}.consumption (userid text, courseid text, ` +
        "batchid text, contentid text, viewcount int, completedcount int, status int, " +
        "PRIMARY KEY (userid, courseid, batchid, contentid))",
    );
    await client.execute(
      `CREATE TABLE ${ks}.enrolments (userid text, courseid text, ` +
        "batchid text, status int, progress int, contentstatus map<text, int>, " +
        "PRIMARY KEY (userid, courseid, batchid))",
    );
    await client.execute(
      `CREATE TABLE ${ks}.agg (activity_type text, activity_id text, ` +
        "context_id text, user_id text, aggregates map<text, double>, " +
        "PRIMARY KEY ((activity_type, activity_id), context_id, user_id))",
    );
    const prepared = { prepare: true };
    const long = "u".repeat(70_000);

    await record(
      "cassandra",
      "key-too-long-update",
      "partition key value of 70,000 bytes in an UPDATE",
      "UPDATE consumption SET viewcount = ? ... WHERE userid = <70,000 chars> (prepared)",
      () =>
        client.execute(
          `UPDATE ${ks}.consumption SET viewcount = ?, completedcount = ? ` +
            "WHERE userid = ? AND courseid = ? AND batchid = ? AND contentid = ?",
          [1, 1, long, "C1", "B1", "R1"],
          prepared,
        ),
    );
    await record(
      "cassandra",
      "key-too-long-select",
      "partition key value of 70,000 bytes in a SELECT",
      "SELECT ... WHERE userid = <70,000 chars> AND courseid = ? AND batchid = ? (prepared)",
      () =>
        client.execute(
          `SELECT contentid, status FROM ${ks}.consumption ` +
            "WHERE userid = ? AND courseid = ? AND batchid = ?",
          [long, "C1", "B1"],
          prepared,
        ),
    );
    await record(
      "cassandra",
      "key-too-long-composite",
      "one component of a composite partition key of 70,000 bytes (user_activity_agg)",
      "UPDATE agg SET aggregates = aggregates + ? WHERE activity_type = 'Course' AND activity_id = <70,000 chars> ...",
      () =>
        client.execute(
          `UPDATE ${ks}.agg SET aggregates = aggregates + ? ` +
            "WHERE activity_type = 'Course' AND activity_id = ? AND context_id = ? AND user_id = ?",
          [{ completedCount: 1 }, long, "cb:B1", "U1"],
          prepared,
        ),
    );
    await record(
      "cassandra",
      "clustering-key-too-long",
      "clustering column value (contentid) of 70,000 bytes",
      "UPDATE consumption ... WHERE userid = 'U1' ... AND contentid = <70,000 chars> (prepared)",
      () =>
        client.execute(
          `UPDATE ${ks}.consumption SET viewcount = ?, completedcount = ? ` +
            "WHERE userid = ? AND courseid = ? AND batchid = ? AND contentid = ?",
          [1, 1, "U1", "C1", "B1", "c".repeat(70_000)],
          prepared,
        ),
    );
    await record(
      "cassandra",
      "map-key-too-long",
      "a map<text,int> key of 70,000 bytes (contentstatus)",
      "UPDATE enrolments SET contentstatus = contentstatus + {<70,000 chars>: 2} (prepared)",
      () =>
        client.execute(
          `UPDATE ${ks}.enrolments SET contentstatus = contentstatus + ? ` +
            "WHERE userid = ? AND courseid = ? AND batchid = ?",
          [{ ["c".repeat(70_000)]: 2 }, "U1", "C1", "B1"],
          prepared,
        ),
    );
    await record(
      "cassandra",
      "wrong-type-string-for-int",
      "a string bound to an int column with prepare: true",
      "UPDATE consumption SET viewcount = 'abc' (prepared)",
      () =>
        client.execute(
          `UPDATE ${ks}.consumption SET viewcount = ?, completedcount = ? ` +
            "WHERE userid = ? AND courseid = ? AND batchid = ? AND contentid = ?",
          ["abc", 1, "U1", "C1", "B1", "R1"],
          prepared,
        ),
    );
    await record(
      "cassandra",
      "wrong-type-number-for-text",
      "a number bound to a text key column with prepare: true",
      "SELECT ... WHERE userid = 42 (prepared)",
      () =>
        client.execute(
          `SELECT status FROM ${ks}.enrolments WHERE userid = ? AND courseid = ? AND batchid = ?`,
          [42, "C1", "B1"],
          prepared,
        ),
    );
    await record(
      "cassandra",
      "int-out-of-range",
      "2^31 bound to an int column with prepare: true",
      "UPDATE consumption SET viewcount = 2147483648 (prepared)",
      () =>
        client.execute(
          `UPDATE ${ks}.consumption SET viewcount = ?, completedcount = ? ` +
            "WHERE userid = ? AND courseid = ? AND batchid = ? AND contentid = ?",
          [2 ** 31, 1, "U1", "C1", "B1", "R1"],
          prepared,
        ),
    );
    await record(
      "cassandra",
      "null-key",
      "null bound to a partition key column",
      "SELECT ... WHERE userid = null (prepared)",
      () =>
        client.execute(
          `SELECT status FROM ${ks}.enrolments WHERE userid = ? AND courseid = ? AND batchid = ?`,
          [null, "C1", "B1"],
          prepared,
        ),
    );
    await record(
      "cassandra",
      "empty-partition-key",
      "the empty string as the whole partition key",
      "UPDATE enrolments SET progress = 1 WHERE userid = '' (prepared)",
      () =>
        client.execute(
          `UPDATE ${ks}.enrolments SET progress = ? WHERE userid = ? AND courseid = ? AND batchid = ?`,
          [1, "", "C1", "B1"],
          prepared,
        ),
    );
    await record(
      "cassandra",
      "unconfigured-table",
      "a table that does not exist",
      "SELECT * FROM <ks>.no_such_table (prepared)",
      () => client.execute(`SELECT * FROM ${ks}.no_such_table WHERE userid = ?`, ["U1"], prepared),
    );
    await record(
      "cassandra",
      "unknown-column",
      "a column that does not exist",
      "SELECT no_such_column FROM <ks>.enrolments (prepared)",
      () =>
        client.execute(
          `SELECT no_such_column FROM ${ks}.enrolments WHERE userid = ?`,
          ["U1"],
          prepared,
        ),
    );
    await record(
      "cassandra",
      "keyspace-does-not-exist",
      "a keyspace that does not exist",
      "SELECT * FROM no_such_ks_<suffix>.t (prepared)",
      () => client.execute(`SELECT * FROM no_such_ks_${suffix}.t`, [], prepared),
    );
    await record(
      "cassandra",
      "syntax-error",
      "a CQL syntax error",
      "SELEC * FRM x (not prepared)",
      () => client.execute("SELEC * FRM x"),
    );
    await record(
      "cassandra",
      "batch-too-large",
      "a multi-partition unlogged batch over batch_size_fail_threshold",
      "20 UPDATEs on 20 partitions, each with a 40,000-char contentid: 800 kB over the " +
        "stack's 640 KiB batch_size_fail_threshold (prepared, unlogged)",
      () =>
        client.batch(
          Array.from({ length: 20 }, (_, i) => ({
            query: `UPDATE ${ks}.consumption SET viewcount = ?, completedcount = ? ` +
              "WHERE userid = ? AND courseid = ? AND batchid = ? AND contentid = ?",
            params: [1, 1, `U${i}`, "C1", "B1", "c".repeat(40_000)],
          })),
          { prepare: true, logged: false },
        ),
    );
    await record(
      "cassandra",
      "client-read-timeout",
      "the driver's readTimeout elapses (1 ms, non-idempotent query)",
      "execute(SELECT ...) with { readTimeout: 1 } on a 70-row partition",
      async () => {
        // Several tries: a 1 ms read timeout usually but not always fires.
        let last: unknown = "no timeout in 20 tries";
        for (let i = 0; i < 20; i++) {
          try {
            await client.execute(
              `SELECT * FROM ${ks}.consumption WHERE userid = ?`,
              ["U1"],
              { prepare: true, readTimeout: 1, isIdempotent: false },
            );
          } catch (error) {
            last = error;
            throw error;
          }
        }
        return last;
      },
    );
    await record(
      "cassandra",
      "client-read-timeout-idempotent",
      "the driver's readTimeout elapses (1 ms) on an idempotent query: retried on the next host",
      "execute(SELECT ...) with { readTimeout: 1, isIdempotent: true }, one host",
      async () => {
        for (let i = 0; i < 20; i++) {
          await client.execute(
            `SELECT * FROM ${ks}.consumption WHERE userid = ?`,
            ["U1"],
            { prepare: true, readTimeout: 1, isIdempotent: true },
          );
        }
        return "no timeout in 20 tries";
      },
    );
  } finally {
    await client.execute(`DROP KEYSPACE IF EXISTS ${ks}`).catch((e) =>
      console.error(`could not drop ${ks}: ${e}`)
    );
    await client.shutdown();
  }

  const down = new cassandra.Client({
    contactPoints: ["127.0.0.1"],
    protocolOptions: { port: 1 },
    localDataCenter: "datacenter1",
  });
  await record(
    "cassandra",
    "all-hosts-down-connect",
    "connect() with every contact point refusing (127.0.0.1:1)",
    "new Client({ contactPoints: ['127.0.0.1'], protocolOptions: { port: 1 } }).connect()",
    () => down.connect(),
  );
  await record(
    "cassandra",
    "all-hosts-down-execute",
    "execute() on a client whose contact points refuse",
    "the same client: execute('SELECT now() FROM system.local')",
    () => down.execute("SELECT now() FROM system.local"),
  );
  await down.shutdown().catch(() => {});

  skip(
    "cassandra",
    "bad-credentials",
    "wrong username/password",
    "the local Cassandra has no authenticator configured (AllowAllAuthenticator): " +
      "any credentials are accepted, so AuthenticationError cannot be provoked here",
  );
  skip(
    "cassandra",
    "server-read-write-timeout",
    "a coordinator ReadTimeout/WriteTimeout (codes 0x1200/0x1100)",
    "needs a replica that does not answer (several nodes); not cheaply provoked on one node",
  );
}

// ---------------------------------------------------------------- Redis

async function redisCases(): Promise<void> {
  const client = new Redis({ host: "127.0.0.1", port: REDIS_PORT, db: 15, lazyConnect: true });
  client.on("error", () => {});
  await client.connect();
  const key = `drv_err:${suffix}`;
  try {
    await client.set(key, "a string");
    await record(
      "redis",
      "wrongtype",
      "SMEMBERS on a string key",
      "client.smembers(<string key>)",
      () => client.smembers(key),
    );
    await record(
      "redis",
      "wrongtype-pipeline",
      "SMEMBERS on a string key inside a pipeline: the per-command error of exec()",
      "client.pipeline().smembers(<string key>).exec() → results[0][0]",
      async () => {
        const results = await client.pipeline().smembers(key).smembers(`${key}:none`).exec();
        const error = results?.[0]?.[0];
        if (error) throw error;
        return results;
      },
    );
    await record(
      "redis",
      "debug-disabled",
      "DEBUG SLEEP on the stack's redis (enable-debug-command default)",
      "client.call('DEBUG', 'SLEEP', '0')",
      () => client.call("DEBUG", "SLEEP", "0"),
    );
    await record(
      "redis",
      "command-timeout-blpop",
      "commandTimeout elapses (BLPOP that blocks 1 s, commandTimeout 100)",
      "new Redis({ commandTimeout: 100 }).blpop(<empty key>, 1)",
      async () => {
        const slow = new Redis({ host: "127.0.0.1", port: REDIS_PORT, commandTimeout: 100 });
        slow.on("error", () => {});
        try {
          return await slow.blpop(`${key}:empty`, 1);
        } finally {
          slow.disconnect();
        }
      },
    );
  } finally {
    await client.del(key);
  }
  await record(
    "redis",
    "closed-connection",
    "a command after quit()",
    "await client.quit(); client.get(...)",
    async () => {
      await client.quit();
      return await client.get(key);
    },
  );

  await record(
    "redis",
    "refused-offline-queue-off",
    "a command on a refused connection (127.0.0.1:1) with enableOfflineQueue false",
    "new Redis({ port: 1, enableOfflineQueue: false, lazyConnect: true }); connect() fails; get()",
    async () => {
      const refused = new Redis({
        host: "127.0.0.1",
        port: 1,
        enableOfflineQueue: false,
        lazyConnect: true,
        retryStrategy: () => null,
      });
      refused.on("error", () => {});
      try {
        await refused.connect().catch(() => {});
        return await refused.get("k");
      } finally {
        refused.disconnect();
      }
    },
  );
  await record(
    "redis",
    "refused-connect",
    "connect() to a refused port (127.0.0.1:1)",
    "new Redis({ port: 1, lazyConnect: true, retryStrategy: () => null }).connect()",
    async () => {
      const refused = new Redis({
        host: "127.0.0.1",
        port: 1,
        lazyConnect: true,
        retryStrategy: () => null,
      });
      refused.on("error", () => {});
      try {
        return await refused.connect();
      } finally {
        refused.disconnect();
      }
    },
  );
  await record(
    "redis",
    "refused-error-event",
    "the 'error' event of a client whose connection is refused (127.0.0.1:1)",
    "new Redis({ port: 1, lazyConnect: true }).once('error', …); connect()",
    () => firstErrorEvent({ host: "127.0.0.1", port: 1 }),
  );
  await record(
    "redis",
    "refused-max-retries",
    "a queued command on a refused connection that keeps reconnecting (maxRetriesPerRequest 1)",
    "new Redis({ port: 1, maxRetriesPerRequest: 1, retryStrategy: () => 10 }).get()",
    async () => {
      const refused = new Redis({
        host: "127.0.0.1",
        port: 1,
        maxRetriesPerRequest: 1,
        retryStrategy: () => 10,
      });
      refused.on("error", () => {});
      try {
        return await refused.get("k");
      } finally {
        refused.disconnect();
      }
    },
  );

  // A second redis-server of our own, with a password and DEBUG enabled.
  const port = freePort();
  let server: Deno.ChildProcess;
  try {
    server = new Deno.Command("redis-server", {
      args: [
        "--bind",
        "127.0.0.1",
        "--port",
        String(port),
        "--requirepass",
        "s3cret",
        "--enable-debug-command",
        "local",
        "--save",
        "",
        "--appendonly",
        "no",
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
  } catch (error) {
    skip("redis", "noauth", "NOAUTH", `redis-server could not be started: ${error}`);
    return;
  }
  try {
    await waitForReady(server, 10_000);
    await record(
      "redis",
      "noauth",
      "a command without AUTH on a server with requirepass",
      "new Redis({ port: <own server> }).get()",
      async () => {
        const anon = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 0 });
        anon.on("error", () => {});
        try {
          return await anon.get("k");
        } finally {
          anon.disconnect();
        }
      },
    );
    await record(
      "redis",
      "wrongpass",
      "connecting with a wrong password",
      "new Redis({ password: 'wrong', lazyConnect: true, retryStrategy: () => null }).connect()",
      async () => {
        const wrong = new Redis({
          host: "127.0.0.1",
          port,
          password: "wrong",
          lazyConnect: true,
          retryStrategy: () => null,
        });
        wrong.on("error", () => {});
        try {
          return await wrong.connect();
        } finally {
          wrong.disconnect();
        }
      },
    );
    await record(
      "redis",
      "wrongpass-error-event",
      "the 'error' event of a client connecting with a wrong password",
      "new Redis({ password: 'wrong', lazyConnect: true }).once('error', …); connect()",
      () => firstErrorEvent({ host: "127.0.0.1", port, password: "wrong" }),
    );
    await record(
      "redis",
      "command-timeout-debug-sleep",
      "commandTimeout elapses (DEBUG SLEEP 1, commandTimeout 100)",
      "new Redis({ password, commandTimeout: 100 }).call('DEBUG', 'SLEEP', '1')",
      async () => {
        const slow = new Redis({
          host: "127.0.0.1",
          port,
          password: "s3cret",
          commandTimeout: 100,
        });
        slow.on("error", () => {});
        try {
          await slow.ping();
          return await slow.call("DEBUG", "SLEEP", "1");
        } finally {
          slow.disconnect();
        }
      },
    );
  } finally {
    server.kill("SIGTERM");
    await server.status;
  }
}

/** Rejects with the first 'error' event of a new client. */
async function firstErrorEvent(opts: { host: string; port: number; password?: string }) {
  const client = new Redis({ ...opts, lazyConnect: true, retryStrategy: () => null });
  const first = Promise.withResolvers<never>();
  first.promise.catch(() => {}); // awaited below, after connect() settles
  client.on("error", (error: Error) => first.reject(error));
  try {
    await client.connect().catch(() => {});
    return await first.promise;
  } finally {
    client.disconnect();
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Resolves once the server logs that it accepts connections; rejects when it exits first. */
async function waitForReady(server: Deno.ChildProcess, ms: number): Promise<void> {
  const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => reader.cancel(), ms);
  let seen = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`redis-server not ready within ${ms} ms: ${seen.slice(-300)}`);
      seen += value;
      if (seen.includes("Ready to accept connections")) break;
    }
  } finally {
    clearTimeout(timer);
  }
  // Keep draining its output so the server never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })().catch(() => {});
}

// ---------------------------------------------------------------- Kafka

async function kafkaCases(): Promise<void> {
  const kafka = new Kafka({
    clientId: `drv-err-${suffix}`,
    brokers: [KAFKA_BROKER],
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 5000 },
    logLevel: logLevel.NOTHING,
  });
  const topic = `drv-err-${suffix}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  try {
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
    });
    await producer.connect();
    try {
      await record(
        "kafka",
        "message-too-large",
        "one 1.1 MB message (broker message.max.bytes 1048588), idempotent producer, retries 3",
        "producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages: [1.1 MB] }] })",
        () =>
          producer.sendBatch({
            acks: -1,
            topicMessages: [{ topic, messages: [{ key: "k", value: "x".repeat(1_100_000) }] }],
          }),
      );
      await record(
        "kafka",
        "record-batch-too-large",
        "three 400 kB messages to one partition in one request (batch over the limit)",
        "producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages: 3 × 400 kB }] })",
        () =>
          producer.sendBatch({
            acks: -1,
            topicMessages: [{
              topic,
              messages: [1, 2, 3].map((i) => ({ key: `k${i}`, value: "y".repeat(400_000) })),
            }],
          }),
      );
      await record(
        "kafka",
        "unknown-topic",
        "producing to a topic that does not exist, allowAutoTopicCreation false",
        "producer.send({ topic: 'drv-err-missing-…', messages: [small] })",
        () =>
          producer.send({
            topic: `drv-err-missing-${suffix}`,
            acks: -1,
            messages: [{ key: "k", value: "v" }],
          }),
      );
      await record(
        "kafka",
        "invalid-topic-name",
        "producing to an invalid topic name",
        "producer.send({ topic: 'bad topic name!' })",
        () => producer.send({ topic: "bad topic name!", messages: [{ value: "v" }] }),
      );
    } finally {
      await producer.disconnect();
    }

    const closed = new Kafka({
      clientId: `drv-err-closed-${suffix}`,
      brokers: ["127.0.0.1:1"],
      connectionTimeout: 1000,
      retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 200 },
      logLevel: logLevel.NOTHING,
    });
    await record(
      "kafka",
      "closed-port-producer-connect",
      "producer.connect() to a closed port (127.0.0.1:1), retries 1",
      "new Kafka({ brokers: ['127.0.0.1:1'], retry: { retries: 1 } }).producer().connect()",
      () => closed.producer().connect(),
    );
    await record(
      "kafka",
      "closed-port-consumer-connect",
      "consumer.connect() to a closed port (127.0.0.1:1), retries 1",
      "….consumer({ groupId }).connect()",
      () => closed.consumer({ groupId: `drv-err-${suffix}` }).connect(),
    );
    await record(
      "kafka",
      "closed-port-admin-connect",
      "admin.connect() to a closed port (127.0.0.1:1), retries 1",
      "….admin().connect()",
      () => closed.admin().connect(),
    );

    await staleCommit(kafka, topic);
  } finally {
    await admin.deleteTopics({ topics: [topic] }).catch((e) =>
      console.error(`could not delete ${topic}: ${e}`)
    );
    await admin.deleteGroups([`drv-err-${suffix}`]).catch(() => {});
    await admin.disconnect();
  }
}

/**
 * Consumer A holds a message in `eachMessage` while consumer B joins the
 * group; once the group has moved on without A, A commits.
 */
async function staleCommit(kafka: Kafka, topic: string): Promise<void> {
  const groupId = `drv-err-${suffix}`;
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, messages: [{ value: "one" }, { value: "two" }] });
  await producer.disconnect();

  const a = kafka.consumer({ groupId, sessionTimeout: 6000, rebalanceTimeout: 3000 });
  const b = kafka.consumer({ groupId, sessionTimeout: 6000, rebalanceTimeout: 3000 });
  const inHandler = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const bJoined = Promise.withResolvers<void>();
  b.on(b.events.GROUP_JOIN, () => bJoined.resolve());
  try {
    await a.connect();
    await a.subscribe({ topic, fromBeginning: true });
    await a.run({
      autoCommit: false,
      eachMessage: async () => {
        inHandler.resolve();
        await release.promise;
      },
    });
    await inHandler.promise;
    await b.connect();
    await b.subscribe({ topic, fromBeginning: true });
    await b.run({ autoCommit: false, eachMessage: async () => {} });
    await record(
      "kafka",
      "stale-generation-commit",
      "commitOffsets by a member the group rebalanced without (held in eachMessage while another joined)",
      "consumer A blocks in eachMessage; consumer B joins; after B's GROUP_JOIN, A.commitOffsets()",
      async () => {
        await bJoined.promise;
        return await a.commitOffsets([{ topic, partition: 0, offset: "1" }]);
      },
    );
  } finally {
    release.resolve();
    await Promise.allSettled([a.disconnect(), b.disconnect()]);
  }
}

// ---------------------------------------------------------------- search (fetch)

async function searchCases(): Promise<void> {
  const body = JSON.stringify({ request: { filters: { identifier: "C1" } } });
  await record(
    "search",
    "connection-refused",
    "fetch to port 1 (127.0.0.1:1): Deno refuses the port itself, before connecting",
    "fetch('http://127.0.0.1:1/v3/search', { method: 'POST' })",
    () => fetch("http://127.0.0.1:1/v3/search", { method: "POST", body }),
  );
  const closedPort = freePort();
  await record(
    "search",
    "connection-refused-free-port",
    "fetch to a closed, unprivileged port (a free port just released)",
    "fetch('http://127.0.0.1:<free port>/v3/search', { method: 'POST' })",
    () => fetch(`http://127.0.0.1:${closedPort}/v3/search`, { method: "POST", body }),
  );
  const hold = Promise.withResolvers<void>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      if (new URL(req.url).pathname === "/not-json") return new Response("<html>oops</html>");
      await hold.promise;
      return new Response("{}");
    },
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  try {
    await record(
      "search",
      "timeout",
      "AbortSignal.timeout(100) on a server that does not answer",
      "fetch(url, { signal: AbortSignal.timeout(100) })",
      () => fetch(`${base}/v3/search`, { method: "POST", body, signal: AbortSignal.timeout(100) }),
    );
    await record(
      "search",
      "aborted",
      "an AbortController aborted without a reason",
      "fetch(url, { signal }); controller.abort()",
      () => {
        const controller = new AbortController();
        const pending = fetch(`${base}/v3/search`, {
          method: "POST",
          body,
          signal: controller.signal,
        });
        setTimeout(() => controller.abort(), 20);
        return pending;
      },
    );
    await record(
      "search",
      "not-json",
      "a 200 answer that is not JSON: response.json()",
      "(await fetch(url)).json() on an HTML body",
      async () => (await fetch(`${base}/not-json`)).json(),
    );
  } finally {
    hold.resolve();
    await server.shutdown();
  }
}

// ---------------------------------------------------------------- main

async function section(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (error) {
    console.error(`${name}: the section stopped early: ${error}`);
    cases.push({
      id: `${name}-setup`,
      driver: name as RecordedCase["driver"],
      case: "setup of the section",
      how: "",
      skipped: `the section stopped early: ${truncate(String(error))}`,
    });
  }
}

const started = Date.now();
await section("cassandra", cassandraCases);
await section("redis", redisCases);
await section("kafka", kafkaCases);
await section("search", searchCases);

const versions = {
  deno: Deno.version.deno,
  node: process.version,
  kafkajs: "2.2.4",
  "cassandra-driver": "4.8.0",
  ioredis: "5.9.2",
};
const output = {
  recordedAt: new Date().toISOString(),
  recorder: "scripts/record_driver_errors.ts",
  versions,
  servers: {
    cassandra: `127.0.0.1:${CASSANDRA_PORT} (scripts/stack.sh: Cassandra 5.0.9, one node)`,
    redis: `127.0.0.1:${REDIS_PORT} (Debian redis-server 7.0)`,
    kafka: `${KAFKA_BROKER} (Kafka 3.9.1 KRaft, message.max.bytes default 1048588)`,
  },
  cases,
};
await Deno.writeTextFile(OUT, JSON.stringify(output, null, 2) + "\n");
console.error(`${cases.length} cases in ${Date.now() - started} ms → ${OUT}`);
Deno.exit(0);
