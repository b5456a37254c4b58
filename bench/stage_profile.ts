/**
 * Where a window's time goes: the e2e bench's data processed in-process by
 * `processWindow` on the job's real adapters (Cassandra, Redis, Kafka), with
 * the wall time of every pipeline stage recorded through the `retry` hook
 * that wraps each stage. Then a probe of single Cassandra operations (a
 * partition read, a plain enrolment update, a conditional one) to price the
 * round trips the stages are made of.
 *
 * Run: `scripts/deno.sh run --allow-all bench/stage_profile.ts` (stack up).
 * Options: `--enrolments=2000 --events=20000 --size=1000 --seed=7 --probe=2000
 * --filter=1` (`--filter=0`: ACTIVITY_FILTER_PROCESSED_ENROLMENTS=false).
 *
 * Windows are built as the runner builds them (`buildWindows` of ceiling.ts), from
 * the events ordered by input partition: KafkaJS hands the job one
 * partition's batch at a time, so a window mostly holds one partition's users.
 *
 * @module
 */

import cassandra from "cassandra-driver";
import { type Retry, retryWithBackoff } from "../lib/async.ts";
import { CassandraProgressStore } from "../lib/cassandra_store.ts";
import { loadConfig } from "../lib/config.ts";
import { kafkaClient, KafkaSink } from "../lib/kafka.ts";
import { JobMetrics } from "../lib/metrics.ts";
import { type PipelineDeps, processWindow } from "../lib/pipeline.ts";
import { type EnrolmentWrite, type EventSink, type ProgressStore } from "../lib/ports.ts";
import { systemClock } from "../lib/clock.ts";
import { connectRelationCache, RedisDedupStore } from "../lib/redis.ts";
import { SearchCollectionStatus } from "../lib/search.ts";
import { mapConcurrent } from "../lib/async.ts";
import { buildWindows } from "./ceiling.ts";
import type { Stack } from "../tests/support/stack.ts";
import { flags, fmt, markdownTable, percentile } from "./data.ts";
import {
  assertRedisUnchanged,
  generateRun,
  openStack,
  redisRunId,
  seed,
  StackDisturbed,
  withRestartRetry,
} from "./e2e_bench.ts";

/** Stage timings of one profile. */
interface StageTotals {
  ms: number;
  calls: number;
  max: number;
  /** Failed attempts, retried (another engineer restarting a service, say). */
  retries: number;
}

/** Latency and throughput of one kind of Cassandra request. */
interface ProbeResult {
  name: string;
  sequentialMs: { p50: number; p95: number };
  concurrentPerSecond: number;
}

/** Times `count` requests one at a time, then `count` with 32 in flight. */
async function probe(
  name: string,
  count: number,
  run: (i: number) => Promise<unknown>,
): Promise<ProbeResult> {
  const latencies: number[] = [];
  const sequential = Math.min(count, 300);
  for (let i = 0; i < sequential; i++) {
    const t = performance.now();
    await run(i);
    latencies.push(performance.now() - t);
  }
  latencies.sort((a, b) => a - b);
  const t = performance.now();
  await mapConcurrent(Array.from({ length: count }, (_, i) => i), 32, run);
  return {
    name,
    sequentialMs: { p50: percentile(latencies, 0.5), p95: percentile(latencies, 0.95) },
    concurrentPerSecond: count / ((performance.now() - t) / 1000),
  };
}

/** Prices one of each request kind the job sends, on this run's own rows. */
async function probeCassandra(
  stack: Stack,
  keys: { userId: string; courseId: string; batchId: string }[],
  count: number,
) {
  const client = stack.cql;
  const options = {
    prepare: true,
    consistency: cassandra.types.consistencies.localQuorum,
    serialConsistency: cassandra.types.consistencies.localSerial,
  };
  const where = "WHERE userid = ? AND courseid = ? AND batchid = ?";
  const params = (i: number) => {
    const k = keys[i % keys.length];
    return [k.userId, k.courseId, k.batchId];
  };
  return [
    await probe("read consumption partition (~30 rows)", count, (i) =>
      client.execute(
        `SELECT contentid, status, viewcount, completedcount FROM user_content_consumption ${where}`,
        params(i),
        options,
      )),
    await probe(
      "read enrolment status",
      count,
      (i) => client.execute(`SELECT status FROM user_enrolments ${where}`, params(i), options),
    ),
    await probe("plain enrolment update (progress, contentstatus)", count, (i) =>
      client.execute(
        `UPDATE user_enrolments SET progress = ?, datetime = ?, contentstatus = contentstatus + ? ${where}`,
        [12, new Date(), { probe: 2 }, ...params(i)],
        options,
      )),
    // The same guard as the job's status moves: a Paxos round per request.
    await probe(
      "conditional status update (LWT, IF status != 2)",
      count,
      (i) =>
        client.execute(
          `UPDATE user_enrolments SET status = 1 ${where} IF status != 2`,
          params(i),
          options,
        ),
    ),
  ];
}

if (import.meta.main) {
  const { num } = flags(Deno.args);
  const size = num("size", 1000);
  const probeCount = num("probe", 2000);
  const runOptions = {
    enrolments: num("enrolments", 2000),
    events: num("events", 20_000),
    courses: 20,
    rows: 10,
    completing: 0.1,
    seed: num("seed", 7),
  };
  // `--filter=0` runs with ACTIVITY_FILTER_PROCESSED_ENROLMENTS=false: the
  // enrolment row is not read, so every enrolment write carries an LWT.
  const filter = num("filter", 1) !== 0;
  await withRestartRetry(() => profile(runOptions, size, probeCount, filter));
}

/** Seeds a fresh stack namespace, processes every window, probes Cassandra, prints. */
async function profile(
  runOptions: Parameters<typeof generateRun>[0],
  size: number,
  probeCount: number,
  filter: boolean,
): Promise<void> {
  // Generated per attempt: a retry must not meet the rows of the attempt before.
  const { data, events, units } = generateRun(runOptions);
  const stack = await openStack(5);
  const closers: (() => Promise<unknown>)[] = [];
  try {
    const runId = await redisRunId(stack);
    await seed(stack, data);
    const config = loadConfig(stack.envForJob({ THRESHOLD_BATCH_READ_SIZE: String(size) }));
    const progress = await CassandraProgressStore.connect(config.cassandra, config.writeBatchSize);
    closers.push(() => progress.close());
    const relations = await connectRelationCache(config.relationCache);
    closers.push(relations.close);
    const dedup = await RedisDedupStore.connect(config.dedup);
    closers.push(() => dedup.close());
    const sink = await KafkaSink.connect(kafkaClient(config.kafka, "bench-stage-profile"));
    closers.push(() => sink.close());

    // Count the requests the enrolment writes make: one plain update per
    // enrolment, plus one LWT per status move.
    // In-progress updates travel with the counters (writeProgress), completions alone.
    let enrolmentWrites = 0;
    let statusMoves = 0;
    const count = (writes: EnrolmentWrite[]) => {
      enrolmentWrites += writes.length;
      statusMoves += writes.filter((w) => w.statusChange).length;
    };
    const countingProgress: ProgressStore = {
      readConsumption: (k) => progress.readConsumption(k),
      readEnrolment: (k) => progress.readEnrolment(k),
      writeProgress(writes) {
        count(writes.enrolments);
        return progress.writeProgress(writes);
      },
      writeEnrolments(writes) {
        count(writes);
        return progress.writeEnrolments(writes);
      },
    };
    let sent = 0;
    const countingSink: EventSink = {
      send(out) {
        sent += out.length;
        return sink.send(out);
      },
    };

    const stages = new Map<string, StageTotals>();
    const stageOf = (stage: string) => {
      let s = stages.get(stage);
      if (!s) stages.set(stage, s = { ms: 0, calls: 0, max: 0, retries: 0 });
      return s;
    };
    const inner = retryWithBackoff({
      initialMs: 200,
      maxMs: 1000,
      signal: new AbortController().signal,
      onFailure(stage) {
        stageOf(stage).retries++;
      },
    });
    // Every stage of processWindow runs through `retry`: timing it here
    // splits a window's wall time by stage without touching lib/.
    const timed: Retry = async (stage, fn, maxAttempts) => {
      const t = performance.now();
      try {
        return await inner(stage, fn, maxAttempts);
      } finally {
        const s = stageOf(stage);
        const ms = performance.now() - t;
        s.ms += ms;
        s.max = Math.max(s.max, ms);
        s.calls++;
      }
    };
    const deps: PipelineDeps = {
      progress: countingProgress,
      relations: relations.cache,
      dedup,
      collections: new SearchCollectionStatus(config.search),
      sink: countingSink,
      clock: systemClock,
      newId: () => crypto.randomUUID(),
      metrics: new JobMetrics(),
      isolate: {
        retry: timed,
        wait: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
        backoff: { initialMs: 200, maxMs: 1000 },
      },
      settings: {
        dedupEnabled: true,
        moduleAggsEnabled: true,
        filterProcessedEnrolments: filter,
        readConcurrency: 32, // as lib/job.ts sets it
        failedEventMaxBytes: 921_600,
        topics: {
          audit: stack.topics.audit,
          certIssue: stack.topics.cert,
          failed: stack.topics.failed,
        },
      },
    };

    const windows = buildWindows(events, size);
    let processed = 0;
    const started = performance.now();
    for (const window of windows) processed += (await processWindow(window, deps)).processed;
    const totalMs = performance.now() - started;
    await assertRedisUnchanged(stack, runId);
    const retried = [...stages.values()].reduce((n, s) => n + s.retries, 0);
    if (retried > 0) {
      throw new StackDisturbed(`${retried} stage attempts failed: a service went down mid-run`);
    }
    const stageMs = [...stages.values()].reduce((a, s) => a + s.ms, 0);

    const probes = await probeCassandra(stack, data.map((e) => e.key), probeCount);

    const rows: (string | number)[][] = [[
      "stage",
      "total s",
      "% of window time",
      "calls",
      "ms/call (max)",
      "retries",
    ]];
    for (const [stage, s] of [...stages].sort((a, b) => b[1].ms - a[1].ms)) {
      rows.push([
        stage,
        fmt(s.ms / 1000, 2),
        fmt((100 * s.ms) / totalMs, 1),
        fmt(s.calls),
        `${fmt(s.ms / s.calls, 1)} (${fmt(s.max, 0)})`,
        fmt(s.retries),
      ]);
    }
    rows.push([
      "in-process work (parse, plan, checksums, JSON)",
      fmt((totalMs - stageMs) / 1000, 2),
      fmt((100 * (totalMs - stageMs)) / totalMs, 1),
      "",
      "",
      "",
    ]);
    console.log(
      `stage profile: ${fmt(events.length)} events / ${fmt(units)} units / ` +
        `${fmt(data.length)} enrolments, ${windows.length} windows of ≤${size} units, ` +
        `${fmt(processed)} enrolment writes, ${fmt(statusMoves)} LWT status moves ` +
        `(of ${fmt(enrolmentWrites)} enrolment writes), ${fmt(sent)} events sent\n` +
        `total ${fmt(totalMs / 1000, 1)} s = ${fmt((1000 * units) / totalMs)} units/s\n`,
    );
    console.log(markdownTable(rows));
    console.log("");
    console.log(markdownTable([
      ["Cassandra request", "sequential p50 / p95", "32 in flight"],
      ...probes.map((p) => [
        p.name,
        `${fmt(p.sequentialMs.p50, 2)} / ${fmt(p.sequentialMs.p95, 2)} ms`,
        `${fmt(p.concurrentPerSecond)} req/s`,
      ]),
    ]));
    console.log(
      `\n${Deno.build.target}, ${navigator.hardwareConcurrency} cores shared by this process, ` +
        `Kafka and Cassandra (JVMs) and Redis; load average ${
          Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
        }, deno ${Deno.version.deno}, ${new Date().toISOString()}`,
    );
  } finally {
    for (const close of closers.reverse()) await close().catch(() => {});
    await stack.close();
  }
}
