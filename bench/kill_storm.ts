/**
 * Kill storm against the local stack (`bash scripts/stack.sh up`): how many
 * certificate requests repeat when the job is SIGKILLed at random moments
 * while it drains a backlog (SPEC §5, §6 step 8).
 *
 * Seeds 2,000 enrolments that each complete once along the way (every one of
 * their ~10 events but the last finds its content's row already at status 2,
 * as lms-service writes it before publishing, SPEC §1), puts ~20,000
 * `batch-enrolment-update` events on a 4-partition input topic, then starts
 * the job as a real process and SIGKILLs it `--kills` times at random
 * moments (the seeded PRNG of `--seed`, printed), restarting it at once.
 * Kill k comes a random 0.3–2.5 s after the job has passed a random input
 * position in the k-th twentieth of (95 % of) the input, or after it joined
 * the group when that position was already behind it. Positions are read
 * from the job's `window done` lines. Without them (`--schedule=join`, a
 * delay after each join alone) the 20 kills covered only the first fifth of
 * the input on a loaded 2-core box, where no enrolment completes yet: most
 * completions come from the last events of each enrolment, late in the
 * backlog. The delay counts from the join, not from `/readyz`: a restarted
 * job is ready in ~2 s but gets its partitions only when the killed member's
 * session expires (`KAFKA_SESSION_TIMEOUT=6s`). After the last restart the
 * job drains to the end and stops gracefully.
 *
 * Then it counts certificate requests and enrol-complete AUDIT events
 * (total, distinct enrolments, duplicates), enrolments without a certificate
 * (lost: worse than a duplicate), repeated content AUDIT mids, and checks the
 * final state (status 2, progress, completedon, contentstatus, the course
 * aggregate) of every enrolment. Each repeated certificate is attributed to
 * the kill that followed its first copy, and each kill is placed in the
 * job's own log (its `window done` lines) and in the certificate topic's
 * append times (the bench sets that topic to `LogAppendTime`).
 *
 * A kill repeats a chunk's pairs only when it lands between their append and
 * their status-2 writes, so 20 kills give a few all-or-nothing samples (0 or
 * about a chunk each). Two exposure figures add what the samples cannot:
 * every chunk's interval from its append to the next chunk's append (or the
 * window's first content AUDIT event, which step 8 sends once the last
 * status-2 write is done), an upper bound; and every pair's interval from
 * its append to its status-2 write's `WRITETIME` (an LWT's write time is its
 * Paxos ballot's, taken when the transaction starts, so this is low by the
 * LWT's duration). Σ (pairs × interval) / the job's busy time is what one
 * kill at a uniformly random moment repeats on average.
 *
 * Run: `scripts/deno.sh task bench:kill-storm [--seed=N]`. Options:
 * `--kills=20 --schedule=progress --min-delay=0.3 --max-delay=2.5 --enrolments=2000 --events=20000
 * --courses=20 --data-seed=7 --size=1000 --interval=1s --budget=600
 * --no-save`. The whole run stops with an error after `--budget` seconds.
 *
 * @module
 */

import { ConfigResourceTypes, Kafka, logLevel } from "kafkajs";
import { delay, mapConcurrent } from "../lib/async.ts";
import { enrolmentId } from "../lib/event.ts";
import {
  freePort,
  JobProcess,
  metricValue,
  readerGroupId,
  Stack,
  unique,
} from "../tests/support/stack.ts";
import {
  type EnrolmentPlanData,
  flags,
  fmt,
  interleavedEvents,
  makeCourse,
  makeEnrolment,
  markdownTable,
  seededRandom,
  storedRows,
} from "./data.ts";
import { assertRedisUnchanged, redisRunId, StackDisturbed } from "./e2e_bench.ts";

/** Duplicate certificates of the same run before SPEC §6 step 8 was tightened (the issue). */
const BEFORE_FIX_DUPLICATES = 66;
/** The issue's target. */
const TARGET_DUPLICATES = 5;

interface Options {
  kills: number;
  /** `progress`: the delay starts once a random mark of the input is passed; `join`: at the join. */
  schedule: "progress" | "join";
  minDelayMs: number;
  maxDelayMs: number;
  enrolments: number;
  events: number;
  courses: number;
  seed: number;
  dataSeed: number;
  batchReadSize: number;
  interval: string;
  budgetMs: number;
  /** Which code the job ran: `--label`, else the checkout's commit. */
  label: string;
}

/** The checkout's commit, and whether the job's code has uncommitted changes. */
async function codeLabel(): Promise<string> {
  const git = async (...args: string[]) => {
    const out = await new Deno.Command("git", {
      args,
      cwd: new URL("../", import.meta.url),
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  };
  const commit = await git("rev-parse", "--short", "HEAD");
  if (commit === null) return "job code: not a git checkout";
  const dirty = await git("status", "--porcelain", "--", "lib", "main.ts");
  return `job code: ${commit}${dirty ? " + uncommitted changes in lib/ or main.ts" : ""}`;
}

/** Thrown when the run exceeds its time budget. */
class BudgetExceeded extends Error {
  override name = "BudgetExceeded";
}

/** A wall-clock budget for the whole run. */
class Budget {
  readonly #deadline: number;
  constructor(readonly ms: number) {
    this.#deadline = Date.now() + ms;
  }
  get left(): number {
    return this.#deadline - Date.now();
  }
  check(what: string): void {
    if (this.left <= 0) {
      throw new BudgetExceeded(
        `kill storm exceeded its budget of ${this.ms / 1000} s while ${what}; aborted`,
      );
    }
  }
}

/** The workload: every enrolment completes at its last event. */
function generate(opts: Options) {
  const random = seededRandom(opts.dataSeed);
  // Ids of this run only: the relation cache and tables are shared with other runs.
  const prefix = unique("ks").replaceAll("-", "");
  const courses = Array.from({ length: opts.courses }, (_, i) => makeCourse(`${prefix}C${i}`));
  // ~2 contents per event (1–3), so `events / enrolments` events per enrolment.
  const targetCount = Math.max(1, Math.round((opts.events / opts.enrolments) * 2));
  if (targetCount > courses[0].required.length) {
    throw new Error(`--events: ${targetCount} contents per enrolment exceed a course's leaves`);
  }
  const data = Array.from({ length: opts.enrolments }, (_, e) => {
    const course = courses[e % courses.length];
    const key = { userId: `${prefix}U${e}`, courseId: course.id, batchId: `${course.id}B` };
    return makeEnrolment(random, key, course, { completes: true, rowCount: 0, targetCount });
  });
  const events = interleavedEvents(random, data);
  return { data, events, units: data.reduce((n, e) => n + e.targets.length, 0) };
}

const INSERT_ROW =
  "INSERT INTO user_content_consumption (userid, courseid, batchid, contentid, status, viewcount, completedcount) VALUES (?, ?, ?, ?, ?, ?, ?)";

/** Structure sets, upstream's consumption rows (one batch per partition) and enrolments at 1. */
async function seed(stack: Stack, data: EnrolmentPlanData[]): Promise<number> {
  const courses = new Map(data.map((e) => [e.course.id, e.course]));
  await stack.seedSets(Object.assign({}, ...[...courses.values()].map((c) => c.sets)));
  let rows = 0;
  await mapConcurrent(data, 16, async (e) => {
    const stored = storedRows(e);
    rows += stored.length;
    const { userId, courseId, batchId } = e.key;
    await stack.cql.batch(
      stored.map((r) => ({
        query: INSERT_ROW,
        // Counters upstream never set are null in Cassandra, not 0.
        params: [
          userId,
          courseId,
          batchId,
          r.contentId,
          r.status,
          r.viewCount || null,
          r.completedCount || null,
        ],
      })),
      { prepare: true, logged: false },
    );
  });
  await mapConcurrent(data, 64, (e) => stack.seedEnrolment(e.key, 1));
  return rows;
}

/** One output event and its Kafka record timestamp (set by the job's producer at send). */
interface Received {
  value: Record<string, unknown>;
  timestamp: number;
}

/** Reads topics from the beginning, keeping record timestamps. */
class Collector {
  readonly #kafka: Kafka;
  readonly #consumers: { disconnect(): Promise<void> }[] = [];
  constructor(brokers: string[]) {
    this.#kafka = new Kafka({ clientId: "kill-storm", brokers, logLevel: logLevel.NOTHING });
  }
  async collect(topic: string): Promise<Received[]> {
    const received: Received[] = [];
    const env = topic.split(".", 1)[0];
    const consumer = this.#kafka.consumer({ groupId: readerGroupId(env) });
    this.#consumers.push(consumer);
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: ({ message }) => {
        received.push({
          value: JSON.parse(message.value!.toString()),
          timestamp: Number(message.timestamp),
        });
        return Promise.resolve();
      },
    });
    return received;
  }
  /** Messages on `topic` (sum of high watermarks). */
  async size(topic: string): Promise<number> {
    const admin = this.#kafka.admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets(topic);
      return offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
    } finally {
      await admin.disconnect();
    }
  }
  async close(): Promise<void> {
    await Promise.all(this.#consumers.map((c) => c.disconnect()));
  }
}

/** A JSON log record of the job, with its time. */
interface LogRecord {
  time: number;
  level: string;
  message: string;
  properties: Record<string, unknown>;
}

/** The job's JSON lines so far; a line cut short by SIGKILL is skipped. */
function records(job: JobProcess): LogRecord[] {
  const out: LogRecord[] = [];
  for (const line of job.log.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const r = JSON.parse(line);
      out.push({ ...r, time: Date.parse(r["@timestamp"]) });
    } catch {
      // the last line of a killed process
    }
  }
  return out;
}

/** One run of the job process, killed or (the last) drained. */
interface Life {
  index: number;
  job: JobProcess;
  started: number;
  joined: number;
  killed: number | null;
  /** The random delay before the kill, from `armed`. */
  delayMs: number;
  /** When the kill's delay began: the join, or passing `mark` (`--schedule=progress`). */
  armed: number;
  /** The input position this life had to pass before its delay began. */
  mark: number | null;
  /** Committed input offsets once this life was over. */
  committed: number;
}

const JOINED = '"message":"joined consumer group"';

/** Waits until `job` has joined the group (it has partitions and starts fetching). */
async function untilJoined(job: JobProcess, budget: Budget): Promise<void> {
  let exited = false;
  job.exited.then(() => exited = true);
  for (let i = 0;; i++) {
    if (job.log.includes(JOINED)) return;
    if (exited) {
      throw new Error(`the job exited before joining the group:\n${job.log.slice(-2000)}`);
    }
    if (i * 25 > 60_000) throw new Error("the job did not join the group within 60 s");
    budget.check("waiting for the job to join the consumer group");
    await delay(25);
  }
}

/**
 * Waits until the job has processed the input up to `mark`: `committed` when
 * it joined plus the messages of its `window done` lines.
 */
async function untilProgress(job: JobProcess, committed: number, mark: number, budget: Budget) {
  let exited = false;
  job.exited.then(() => exited = true);
  for (;;) {
    const done = records(job).filter((r) => r.message === "window done")
      .reduce((n, r) => n + Number(r.properties.messages ?? 0), committed);
    if (done >= mark) return;
    if (exited) throw new Error(`the job exited before reaching ${mark}:\n${job.log.slice(-2000)}`);
    budget.check(`waiting for the job to pass input position ${mark} (at ${done})`);
    await delay(20);
  }
}

/** Waits until the group has committed `total` input messages. */
async function drain(stack: Stack, job: JobProcess, total: number, budget: Budget) {
  let exited = false;
  job.exited.then(() => exited = true);
  for (;;) {
    const committed = await stack.committedInput();
    if (committed >= total) return;
    if (exited) {
      throw new Error(
        `the job exited before committing ${total} (${committed}):\n${job.log.slice(-2000)}`,
      );
    }
    budget.check(`draining (${committed} of ${total} committed)`);
    await delay(250);
  }
}

/** Throws {@linkcode StackDisturbed} when Redis restarted or `job` failed enrolments. */
async function assertUndisturbed(stack: Stack, runId: string, job: JobProcess): Promise<void> {
  await assertRedisUnchanged(stack, runId);
  const failed = records(job).filter((r) => r.message === "window done")
    .reduce((n, r) => n + Number(r.properties.failedEnrolments ?? 0), 0);
  if (failed > 0) throw new StackDisturbed(`the job failed ${failed} enrolments`);
}

/** Makes the broker stamp `topic`'s records with their append time (`LogAppendTime`). */
async function appendTimestamps(stack: Stack, topic: string): Promise<void> {
  const admin = stack.kafka.admin();
  await admin.connect();
  try {
    await admin.alterConfigs({
      validateOnly: false,
      resources: [{
        type: ConfigResourceTypes.TOPIC,
        name: topic,
        configEntries: [{ name: "message.timestamp.type", value: "LogAppendTime" }],
      }],
    });
  } finally {
    await admin.disconnect();
  }
}

interface Cert {
  id: string;
  ets: number;
  timestamp: number;
  mid: string;
}

function certOf(r: Received): Cert {
  const edata = r.value.edata as { userIds: string[]; courseId: string; batchId: string };
  return {
    id: enrolmentId({ userId: edata.userIds[0], courseId: edata.courseId, batchId: edata.batchId }),
    ets: Number(r.value.ets),
    timestamp: r.timestamp,
    mid: String(r.value.mid),
  };
}

/** Repeats of each key beyond its first, and whether every key's copies share one mid. */
function repeats<T>(items: T[], key: (t: T) => string, mid: (t: T) => string) {
  const byKey = new Map<string, T[]>();
  for (const t of items) {
    const list = byKey.get(key(t));
    if (list) list.push(t);
    else byKey.set(key(t), [t]);
  }
  let sameMid = true;
  for (const list of byKey.values()) {
    if (new Set(list.map(mid)).size > 1) sameMid = false;
  }
  return {
    total: items.length,
    distinct: byKey.size,
    duplicates: items.length - byKey.size,
    byKey,
    sameMid,
  };
}

/** Checks every enrolment's final row and course aggregate; returns the problems. */
async function verifyState(stack: Stack, data: EnrolmentPlanData[]) {
  let wrongStatus = 0;
  let wrongProgress = 0;
  let noCompletedOn = 0;
  let wrongContentStatus = 0;
  let wrongAggregate = 0;
  // When the status-2 write happened: an LWT's write time is its Paxos ballot's, taken as
  // the transaction starts, so this is early by the LWT's own duration (a few ms).
  const completedAt = new Map<string, number>();
  await mapConcurrent(data, 32, async (e) => {
    const row = await stack.enrolment(e.key);
    const written = await stack.cql.execute(
      "SELECT WRITETIME(status) AS wt FROM user_enrolments WHERE userid=? AND courseid=? AND batchid=?",
      [e.key.userId, e.key.courseId, e.key.batchId],
      { prepare: true },
    );
    const wt = written.first()?.wt;
    if (wt !== null && wt !== undefined) completedAt.set(enrolmentId(e.key), Number(wt) / 1000);
    const required = e.course.required.length;
    if (row?.status !== 2) wrongStatus++;
    if (row?.progress !== required) wrongProgress++;
    if (!row?.completedOn) noCompletedOn++;
    // Every content the events completed is at 2 in the map.
    if (e.targets.some((c) => row?.contentStatus[c] !== 2)) wrongContentStatus++;
    if ((await stack.aggregate(e.course.id, e.key)) !== required) wrongAggregate++;
  });
  return {
    problems: { wrongStatus, wrongProgress, noCompletedOn, wrongContentStatus, wrongAggregate },
    completedAt,
  };
}

/**
 * Each certificate pair's exposure: from the broker's append of its last copy
 * (the certificate topic keeps `LogAppendTime`) to its status-2 write. A kill
 * inside it repeats the pair; a kill at a uniformly random moment of the
 * job's busy time therefore repeats Σ exposure / busy time pairs on average.
 */
function pairExposure(byKey: Map<string, Cert[]>, completedAt: Map<string, number>) {
  const exposures: number[] = [];
  let negative = 0;
  for (const [id, copies] of byKey) {
    const at = completedAt.get(id);
    if (at === undefined) continue;
    const appended = Math.max(...copies.map((c) => c.timestamp));
    if (at < appended) negative++;
    exposures.push(Math.max(0, at - appended));
  }
  exposures.sort((a, b) => a - b);
  return { exposures, negative, sum: exposures.reduce((n, x) => n + x, 0) };
}

/** Content AUDIT keys the run must produce at least once: start and complete per target. */
function expectedContentAudits(data: EnrolmentPlanData[]): Set<string> {
  const keys = new Set<string>();
  for (const e of data) {
    const stored = new Map(e.rows.map((r) => [r.contentId, r]));
    for (const c of e.targets) {
      if ((stored.get(c)?.viewCount ?? 0) === 0) keys.add(`${e.key.userId}|${c}|start`);
      if ((stored.get(c)?.completedCount ?? 0) === 0) keys.add(`${e.key.userId}|${c}|complete`);
    }
  }
  return keys;
}

function auditKey(v: Record<string, unknown>): string {
  const actor = v.actor as { id: string };
  const object = v.object as { id: string };
  const edata = v.edata as { type: string };
  return `${actor.id}|${object.id}|${edata.type}`;
}

/**
 * How long each chunk's certificate pairs were exposed: from the chunk's send
 * (its record timestamp) to the next chunk's send, or for a window's last
 * chunk to the window's first content AUDIT event (step 8 starts once the
 * last status-2 write is done). A kill inside that interval repeats at most
 * the chunk, so `pairMs` (Σ chunk size × interval) over the job's busy time
 * bounds the expected duplicates of one kill at a random moment.
 */
function exposure(certs: Cert[], audits: Received[]) {
  const step8 = new Map<number, number>();
  for (const a of audits) {
    if ((a.value.edata as { type: string }).type === "enrol-complete") continue;
    const ets = Number(a.value.ets);
    step8.set(ets, Math.min(step8.get(ets) ?? Infinity, a.timestamp));
  }
  const windows = new Map<number, Cert[]>();
  for (const c of certs) {
    const list = windows.get(c.ets);
    if (list) list.push(c);
    else windows.set(c.ets, [c]);
  }
  const gaps: number[] = [];
  let pairMs = 0;
  let chunks = 0;
  let unknown = 0;
  for (const [ets, list] of windows) {
    // lib/pipeline.ts sends a window's certificate pairs together, then marks them.
    const COMPLETION_CHUNK = list.length;
    for (let i = 0; i < list.length; i += COMPLETION_CHUNK) {
      const chunk = list.slice(i, i + COMPLETION_CHUNK);
      chunks++;
      const sent = Math.max(...chunk.map((c) => c.timestamp));
      const next = i + COMPLETION_CHUNK < list.length
        ? list[i + COMPLETION_CHUNK].timestamp
        : step8.get(ets);
      if (next === undefined || next < sent) {
        unknown++;
        continue;
      }
      gaps.push(next - sent);
      pairMs += chunk.length * (next - sent);
    }
  }
  gaps.sort((a, b) => a - b);
  return { windows: windows.size, chunks, unknown, gaps, pairMs };
}

const ms = (n: number) => fmt(n, 0);
const sec = (n: number) => fmt(n / 1000, 1);

async function run(opts: Options): Promise<{ text: string; ok: boolean }> {
  const budget = new Budget(opts.budgetMs);
  const began = Date.now();
  const loadBefore = Deno.loadavg();
  const { data, events, units } = generate(opts);
  const random = seededRandom(opts.seed);
  const stack = await openStack(budget);
  const brokers = stack.envForJob().KAFKA_BROKER_SERVERS.split(",");
  const collector = new Collector(brokers);
  const lives: Life[] = [];
  let current: JobProcess | null = null;
  try {
    const runId = await redisRunId(stack);
    let t = Date.now();
    const seededRows = await seed(stack, data);
    const seedMs = Date.now() - t;
    budget.check("seeding");
    t = Date.now();
    // Chunks keep each produce request under the broker's 1 MB message limit.
    for (let i = 0; i < events.length; i += 500) await stack.produce(events.slice(i, i + 500));
    const produceMs = Date.now() - t;
    console.error(
      `kill storm: seed ${opts.seed}; ${fmt(data.length)} enrolments, ${
        fmt(events.length)
      } events, ` +
        `${fmt(units)} units; seeded ${fmt(seededRows)} rows in ${sec(seedMs)} s, ` +
        `produced in ${sec(produceMs)} s`,
    );
    await appendTimestamps(stack, stack.topics.cert);
    const certs = await collector.collect(stack.topics.cert);
    const audits = await collector.collect(stack.topics.audit);
    const failed = await collector.collect(stack.topics.failed);

    const env = stack.envForJob({
      THRESHOLD_BATCH_READ_SIZE: String(opts.batchReadSize),
      THRESHOLD_BATCH_READ_INTERVAL: opts.interval,
      KAFKA_SESSION_TIMEOUT: "6s",
    });
    const stormStarted = Date.now();
    const totalEvents = events.length;
    for (let k = 1; k <= opts.kills + 1; k++) {
      budget.check(`starting life ${k}`);
      const job: JobProcess = new JobProcess({ ...env, HTTP_PORT: String(freePort()) });
      current = job;
      const life: Life = {
        index: k,
        job,
        started: Date.now(),
        joined: 0,
        killed: null,
        delayMs: 0,
        armed: 0,
        mark: null,
        committed: 0,
      };
      lives.push(life);
      await untilJoined(job, budget);
      life.joined = Date.now();
      if (k > opts.kills) break;
      // Stratified marks: kill k once a random point of the k-th twentieth of the
      // input is behind, so the kills cover the whole drain on a slow machine too.
      const mark = Math.floor(0.95 * totalEvents * (k - 1 + random()) / opts.kills);
      life.delayMs = opts.minDelayMs + random() * (opts.maxDelayMs - opts.minDelayMs);
      if (opts.schedule === "progress") {
        const startCommitted = k === 1 ? 0 : lives[k - 2].committed;
        await untilProgress(job, startCommitted, mark, budget);
      }
      life.armed = Date.now();
      life.mark = opts.schedule === "progress" ? mark : null;
      await delay(Math.max(0, life.armed + life.delayMs - Date.now()));
      job.kill("SIGKILL");
      life.killed = Date.now();
      await job.exited;
      current = null;
      life.committed = await stack.committedInput();
      console.error(
        `kill ${k}: ${ms(life.killed - life.joined)} ms after joining` +
          (life.mark === null ? "" : ` (${ms(life.delayMs)} ms after passing ${life.mark})`) +
          `; ${life.committed} of ${totalEvents} committed`,
      );
      await assertUndisturbed(stack, runId, job);
    }
    const last = lives.at(-1)!;
    await drain(stack, last.job, events.length, budget);
    await assertUndisturbed(stack, runId, last.job);
    const drainedAt = Date.now();
    last.committed = await stack.committedInput();
    const metrics = await last.job.metrics();
    const status = await last.job.stop();
    current = null;
    if (status.code !== 0) throw new Error(`the last job exited with ${status.code}`);

    // Every output was acknowledged before its commit: wait until the readers have it all.
    for (
      const [name, received, topic] of [
        ["certificate", certs, stack.topics.cert],
        ["AUDIT", audits, stack.topics.audit],
        ["failed", failed, stack.topics.failed],
      ] as const
    ) {
      const size = await collector.size(topic);
      for (let i = 0; received.length < size; i++) {
        budget.check(`reading the ${name} topic (${received.length} of ${size})`);
        await delay(100);
      }
    }
    const redisChanged = (await redisRunId(stack).catch(() => "unreachable")) !== runId;

    // ---- counting
    const certList = certs.map(certOf);
    const certRepeats = repeats(certList, (c) => c.id, (c) => c.mid);
    const enrolComplete = audits.filter((a) =>
      (a.value.edata as { type: string }).type === "enrol-complete"
    );
    const ecRepeats = repeats(
      enrolComplete,
      (a) => String((a.value.actor as { id: string }).id),
      (a) => String(a.value.mid),
    );
    const content = audits.filter((a) =>
      (a.value.edata as { type: string }).type !== "enrol-complete"
    );
    const contentRepeats = repeats(content, (a) => auditKey(a.value), (a) => String(a.value.mid));
    const contentMids = new Set(content.map((a) => String(a.value.mid)));
    const expectedAudits = expectedContentAudits(data);
    const missingAudits = [...expectedAudits].filter((k) => !contentRepeats.byKey.has(k)).length;
    const extraAudits = [...contentRepeats.byKey.keys()].filter((k) => !expectedAudits.has(k))
      .length;
    const lost = data.filter((e) => !certRepeats.byKey.has(enrolmentId(e.key))).length;
    const lostEnrolComplete = data.filter((e) => !ecRepeats.byKey.has(e.key.userId)).length;
    const { problems: state, completedAt } = await verifyState(stack, data);

    // ---- where each kill landed
    const killed = lives.filter((l) => l.killed !== null);
    const repeatsByKill = new Map<number, number>();
    let unattributed = 0;
    for (const copies of certRepeats.byKey.values()) {
      copies.sort((a, b) => a.timestamp - b.timestamp);
      for (const copy of copies.slice(0, -1)) {
        // By the window's start (`ets`), not the append: a produce request written just
        // before the kill can be appended by the broker after it.
        const kill = killed.find((l) => l.killed! >= copy.ets);
        if (kill) repeatsByKill.set(kill.index, (repeatsByKill.get(kill.index) ?? 0) + 1);
        else unattributed++;
      }
    }
    let committedBefore = 0;
    const killRows: (string | number)[][] = [[
      "kill",
      "at (UTC)",
      "start → joined",
      "joined → kill",
      "mark + delay",
      "committed after",
      "windows done (completions)",
      "last window done → kill",
      "in-flight window: certs appended / window start → kill / last cert appended → kill",
      "duplicate certs",
    ]];
    for (const l of killed) {
      const recs = records(l.job);
      const windows = recs.filter((r) => r.message === "window done");
      const completions = windows.reduce((n, r) => n + Number(r.properties.completions ?? 0), 0);
      const lastDone = windows.at(-1)?.time ?? l.joined;
      // Certificates sent by the window in flight: after the last window done, before the kill.
      // Sent by a window that started after the last `window done` and before the kill; the
      // broker may append a request written just before the kill after it.
      const inFlight = certList.filter((c) => c.ets >= lastDone && c.ets <= l.killed!);
      const windowStart = inFlight.length > 0 ? Math.min(...inFlight.map((c) => c.ets)) : null;
      const lastSent = inFlight.length > 0 ? Math.max(...inFlight.map((c) => c.timestamp)) : null;
      const idle = committedBefore >= totalEvents;
      killRows.push([
        l.index,
        new Date(l.killed!).toISOString().slice(11, 23),
        `${sec(l.joined - l.started)} s`,
        `${ms(l.killed! - l.joined)} ms`,
        l.mark === null ? `${ms(l.delayMs)} ms` : `${fmt(l.mark)} + ${ms(l.delayMs)} ms`,
        `${fmt(l.committed)}${idle ? " (idle)" : ""}`,
        `${windows.length} (${completions})`,
        `${ms(l.killed! - lastDone)} ms`,
        inFlight.length === 0
          ? "0"
          : `${inFlight.length} / ${ms(l.killed! - windowStart!)} ms / ${
            l.killed! >= lastSent! ? "" : "−"
          }${ms(Math.abs(l.killed! - lastSent!))} ms`,
        repeatsByKill.get(l.index) ?? 0,
      ]);
      committedBefore = l.committed;
    }
    // The job's busy time: from each join to its kill, and to the end of the drain.
    const busyMs = lives.reduce((n, l) => n + (l.killed ?? drainedAt) - l.joined, 0);
    const exposed = exposure(certList, audits);
    const gapAt = (p: number) =>
      exposed.gaps.length === 0
        ? "n/a"
        : ms(exposed.gaps[Math.min(exposed.gaps.length - 1, Math.floor(p * exposed.gaps.length))]);
    const expectedPerKill = exposed.pairMs / busyMs;
    const pairs = pairExposure(certRepeats.byKey, completedAt);
    const pairAt = (p: number) =>
      pairs.exposures.length === 0 ? "n/a" : fmt(
        pairs
          .exposures[Math.min(pairs.exposures.length - 1, Math.floor(p * pairs.exposures.length))],
        0,
      );
    const pairsPerKill = pairs.sum / busyMs;
    const lastRecs = records(last.job);
    const lastWindows = lastRecs.filter((r) => r.message === "window done");
    const retries = lives.reduce(
      (n, l) => n + (l.job.log.match(/failed \(attempt \d+\)/g)?.length ?? 0),
      0,
    );
    const activeKills = killed.filter((_, i) =>
      (i === 0 ? 0 : killed[i - 1].committed) < totalEvents
    ).length;
    const failedEnrolments = lives.reduce(
      (n, l) =>
        n + records(l.job).filter((r) => r.message === "window done")
          .reduce((m, r) => m + Number(r.properties.failedEnrolments ?? 0), 0),
      0,
    );

    const problems: string[] = [];
    if (lost > 0) problems.push(`${lost} enrolments without a certificate request`);
    if (lostEnrolComplete > 0) problems.push(`${lostEnrolComplete} without an enrol-complete`);
    // Content AUDIT events are at-least-once (SPEC §5): a repeat is allowed, a gap is not.
    if (missingAudits > 0) problems.push(`${missingAudits} content AUDIT events missing`);
    for (const [name, n] of Object.entries(state)) if (n > 0) problems.push(`${name}: ${n}`);
    if (failed.length > 0) problems.push(`${failed.length} events on the failed topic`);
    if (!certRepeats.sameMid) problems.push("copies of one certificate carry different mids");
    if (!contentRepeats.sameMid) problems.push("copies of one content AUDIT carry different mids");
    if (redisChanged) problems.push("the shared Redis restarted during the run: run it again");

    const summary: (string | number)[][] = [
      ["", "count"],
      ["kills (landing while input remained)", `${killed.length} (${activeKills})`],
      ["events / units / enrolments", `${fmt(totalEvents)} / ${fmt(units)} / ${fmt(data.length)}`],
      [
        "certificate requests: total / distinct enrolments / **duplicates**",
        `${fmt(certRepeats.total)} / ${fmt(certRepeats.distinct)} / **${certRepeats.duplicates}**`,
      ],
      ["enrolments without a certificate (lost)", lost],
      [
        "enrol-complete AUDIT: total / distinct / duplicates / missing",
        `${fmt(ecRepeats.total)} / ${
          fmt(ecRepeats.distinct)
        } / ${ecRepeats.duplicates} / ${lostEnrolComplete}`,
      ],
      [
        "content AUDIT: total / distinct mids / repeats (same mid) / missing",
        `${fmt(contentRepeats.total)} / ${fmt(contentMids.size)} / ${contentRepeats.duplicates} (${
          contentRepeats.sameMid ? "yes" : "NO"
        }) / ${missingAudits}${extraAudits > 0 ? ` (+${extraAudits} unexpected)` : ""}`,
      ],
      [
        "copies of one certificate share one mid",
        certRepeats.sameMid ? "yes" : "NO",
      ],
      [
        "final state: status≠2 / progress / no completedon / contentstatus / course aggregate",
        `${state.wrongStatus} / ${state.wrongProgress} / ${state.noCompletedOn} / ${state.wrongContentStatus} / ${state.wrongAggregate} wrong`,
      ],
      [
        "failed topic / failed enrolments (logs) / stage retries (logs)",
        `${failed.length} / ${failedEnrolments} / ${retries}`,
      ],
      ["duplicate certs not placed after a kill", unattributed],
      [
        "chunks (windows) / chunk send → next send or step 8, p50 / p95 / max / Σ",
        `${exposed.chunks} (${exposed.windows}${
          exposed.unknown > 0 ? `, ${exposed.unknown} unmeasured` : ""
        }) / ${gapAt(0.5)} / ${gapAt(0.95)} / ${gapAt(1)} ms / ${
          sec(exposed.gaps.reduce((n, g) => n + g, 0))
        } s`,
      ],
      [
        "bound: Σ chunk pairs × send interval / job busy time → duplicates of one random kill, of 20",
        `${sec(exposed.pairMs)} pair·s / ${sec(busyMs)} s → ≤ ${fmt(expectedPerKill, 2)}, ≤ ${
          fmt(20 * expectedPerKill, 1)
        }`,
      ],
      [
        "pair exposure (broker append → status-2 LWT starts) p50 / p95 / max",
        `${pairAt(0.5)} / ${pairAt(0.95)} / ${pairAt(1)} ms (${pairs.exposures.length} pairs${
          pairs.negative > 0 ? `, ${pairs.negative} written before their append` : ""
        })`,
      ],
      [
        "Σ pair exposure / job busy time → duplicates expected of one random kill, of 20",
        `${sec(pairs.sum)} pair·s / ${sec(busyMs)} s → ${fmt(pairsPerKill, 2)}, ${
          fmt(20 * pairsPerKill, 1)
        }`,
      ],
      [
        "last life: windows / completions",
        `${lastWindows.length} / ${
          lastWindows.reduce((n, r) => n + Number(r.properties.completions ?? 0), 0)
        }`,
      ],
      [
        "time: seed + produce / storm (kills) / final drain / total",
        `${sec(seedMs + produceMs)} s / ${sec(killed.at(-1)!.killed! - stormStarted)} s / ${
          sec(drainedAt - last.started)
        } s / ${sec(Date.now() - began)} s`,
      ],
      [
        "job metrics of the last life: completions / cert events",
        `${metricValue(metrics, "activity_agg_enrolment_completions_total")} / ${
          metricValue(metrics, "activity_agg_cert_issue_events_total")
        }`,
      ],
    ];
    const verdict = problems.length > 0
      ? "not measured (checks failed)"
      : certRepeats.duplicates <= TARGET_DUPLICATES
      ? "met"
      : "MISSED";
    const finalLine =
      `kill_storm kills ${killed.length} certs ${certRepeats.total} enrolments ${data.length} duplicate_certs ${certRepeats.duplicates} duplicate_enrol_complete ${ecRepeats.duplicates} ` +
      `lost ${lost} audit_repeats ${contentRepeats.duplicates} audit_missing ${missingAudits}`;
    const text = [
      `# kill storm, ${new Date().toISOString()}`,
      "",
      `seed ${opts.seed} (kills), data seed ${opts.dataSeed}; ${
        fmt(data.length)
      } enrolments over ` +
      `${opts.courses} courses, each completing once; 4 input partitions; ` +
      `THRESHOLD_BATCH_READ_SIZE=${opts.batchReadSize}, THRESHOLD_BATCH_READ_INTERVAL=${opts.interval}, ` +
      `KAFKA_SESSION_TIMEOUT=6s; SIGKILL ${ms(opts.minDelayMs)}–${ms(opts.maxDelayMs)} ms ` +
      (opts.schedule === "join"
        ? "after each join"
        : "after the job passed a random input position (mark) in the k-th twentieth of 95 % of " +
          "the input (or at once when it was already passed)"),
      `${opts.label}; a window's certificate pairs in one send, then their markers`,
      "",
      markdownTable(killRows),
      "",
      "`windows done` are the windows this life committed; the in-flight window's certificates " +
      "are those whose `ets` (the window's clock, taken as it starts) lies between the life's " +
      "last `window done` line and the kill; their append times are the broker's " +
      "(`LogAppendTime`), and a negative `last cert appended → kill` is a request the job wrote " +
      "before it died and the broker appended after. A duplicate is counted at the first kill " +
      "after its first copy's window started.",
      "",
      markdownTable(summary),
      "",
      `target ≤ ${TARGET_DUPLICATES} duplicate certificates: ${verdict} ` +
      `(before the fix: ${BEFORE_FIX_DUPLICATES} in the issue's run of 20 kills)`,
      problems.length === 0 ? "checks: all pass" : `checks FAILED: ${problems.join("; ")}`,
      "",
      finalLine,
      "",
      `${Deno.build.target}, ${navigator.hardwareConcurrency} cores shared by the job, this ` +
      `script, Kafka, Cassandra and Redis; load average ${
        loadBefore.map((l) => l.toFixed(2)).join(" ")
      } ` +
      `before, ${
        Deno.loadavg().map((l) => l.toFixed(2)).join(" ")
      } after; deno ${Deno.version.deno}`,
    ].join("\n");
    return { text, ok: problems.length === 0 };
  } finally {
    if (current) {
      current.kill("SIGKILL");
      await current.exited;
    }
    await collector.close().catch(() => {});
    await stack.close().catch(() => {});
  }
}

/** A `Stack` with topics of its own; Redis may be mid-restart (another engineer's test). */
async function openStack(budget: Budget): Promise<Stack> {
  for (let attempt = 1;; attempt++) {
    try {
      return await Stack.open({ partitions: 4 });
    } catch (error) {
      if (attempt >= 15) throw error;
      budget.check("opening the stack");
      await delay(1000);
    }
  }
}

if (import.meta.main) {
  const { num, str, has } = flags(Deno.args);
  const opts: Options = {
    kills: num("kills", 20),
    schedule: str("schedule", "progress") === "join" ? "join" : "progress",
    minDelayMs: num("min-delay", 0.3) * 1000,
    maxDelayMs: num("max-delay", 2.5) * 1000,
    enrolments: num("enrolments", 2000),
    events: num("events", 20_000),
    courses: num("courses", 20),
    seed: num("seed", Math.floor(Math.random() * 2 ** 31)),
    dataSeed: num("data-seed", 7),
    batchReadSize: num("size", 1000),
    interval: str("interval", "1s"),
    budgetMs: num("budget", 600) * 1000,
    label: str("label", ""),
  };
  opts.label ||= await codeLabel();
  console.error(`kill storm: seed ${opts.seed} (repeat with --seed=${opts.seed})`);
  try {
    const { text, ok } = await run(opts);
    console.log(text);
    if (!has("no-save")) {
      const date = new Date().toISOString().slice(0, 10);
      const file = new URL(`./results/kill_storm-${date}-seed${opts.seed}.txt`, import.meta.url);
      await Deno.writeTextFile(file, `${text}\n`);
      console.error(`saved ${file.pathname}`);
    }
    if (!ok) Deno.exitCode = 1;
  } catch (error) {
    console.error(`kill storm aborted: ${error instanceof Error ? error.message : error}`);
    if (error instanceof StackDisturbed) console.error("the stack was disturbed: run it again");
    Deno.exitCode = error instanceof StackDisturbed ? 2 : 1;
  }
  // KafkaJS timers can keep the process alive after every client is closed.
  Deno.exit(Deno.exitCode);
}
