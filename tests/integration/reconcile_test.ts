/**
 * Enrolment reconciliation (SPEC §13) end to end against the local stack:
 * sync requests on `KAFKA_SYNC_TOPIC` consumed by the running job, and the
 * `reconcile` command run as a process (one enrolment, a FILE, a dry run,
 * and a FILE of 10,000 enrolments).
 */

import assert from "node:assert/strict";
import cassandra from "cassandra-driver";
import type { EnrolmentKey } from "../../lib/event.ts";
import { exampleSets } from "../support/fixtures.ts";
import { JobProcess, Stack, unique, waitFor } from "../support/stack.ts";

// KafkaJS and the Cassandra driver keep sockets and timers that outlive a test's
// last await; each test closes every client it opened in its `finally`.
const opts = { sanitizeOps: false, sanitizeResources: false };

/**
 * One course with SPEC §12's structure and four enrolments on it or next to it:
 * - `done`: stored rows complete it (R1, R2, R3 at status 2), status 1;
 * - `complete`: already at status 2 (its rows would complete it too);
 * - `live`: its course has no structure and the search service says Live;
 * - `retired`: its course has no structure and is Retired.
 */
async function seedCases(stack: Stack, courses: { live: string; retired: string }) {
  const courseId = unique("C");
  const batchId = unique("B");
  const key = (courseIdOf = courseId): EnrolmentKey => ({
    userId: unique("U"),
    courseId: courseIdOf,
    batchId,
  });
  const cases = {
    done: key(),
    complete: key(),
    live: key(courses.live),
    retired: key(courses.retired),
  };
  await stack.seedSets(exampleSets(courseId));
  for (const k of [cases.done, cases.complete]) {
    for (const contentId of ["R1", "R2", "R3"]) {
      await stack.seedConsumption(k, { contentId, status: 2, viewCount: 1, completedCount: 1 });
    }
  }
  await stack.seedEnrolment(cases.done, 1);
  await stack.seedEnrolment(cases.complete, 2);
  await stack.seedEnrolment(cases.live, 1);
  await stack.seedEnrolment(cases.retired, 1);
  return cases;
}

function syncRequest(key: EnrolmentKey) {
  return { eid: "BE_JOB_REQUEST", edata: { action: "user-enrolment-sync", ...key } };
}

/** Messages on `topic` so far (the sum of its partitions' end offsets). */
async function topicSize(stack: Stack, topic: string): Promise<number> {
  const admin = stack.kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((n, p) => n + Number(p.high), 0);
  } finally {
    await admin.disconnect();
  }
}

/** Runs `reconcile ARGS` to its end: exit code, stdout lines and everything printed. */
async function runReconcile(stack: Stack, args: string[], env: Record<string, string> = {}) {
  const job = new JobProcess(stack.envForJob(env), ["reconcile", ...args]);
  const status = await job.exited;
  const stdout = job.stdout.join("").split("\n").filter((l) => l !== "");
  return { code: status.code, stdout, log: job.log };
}

/** A CSV FILE of `keys` in a temporary directory, columns in an unusual order. */
async function csvFile(keys: EnrolmentKey[], extraLines: string[] = []): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "reconcile-", suffix: ".csv" });
  const lines = [
    "batchId,userId,courseId",
    ...keys.map((k) => `${k.batchId},${k.userId},${k.courseId}`),
  ];
  await Deno.writeTextFile(path, [...lines, ...extraLines].join("\n") + "\n");
  return path;
}

const lineOf = (stdout: string[], key: EnrolmentKey) =>
  stdout.find((l) => l.includes(`user=${key.userId} `)) ?? `(no line for ${key.userId})`;

Deno.test(
  "sync requests on KAFKA_SYNC_TOPIC recompute enrolments in the running job",
  opts,
  async () => {
    const courses = { live: unique("C-live"), retired: unique("C-old") };
    const stack = await Stack.open({
      sync: true,
      statuses: { [courses.live]: "Live", [courses.retired]: "Retired" },
    });
    const job = new JobProcess(stack.envForJob({ KAFKA_SYNC_TOPIC: stack.topics.sync }));
    let status: Deno.CommandStatus;
    try {
      const cases = await seedCases(stack, courses);
      const [audits, certs, failed] = await Promise.all(
        [stack.topics.audit, stack.topics.cert, stack.topics.failed].map((t) => stack.collect(t)),
      );
      await job.ready();
      await stack.produceTo(stack.topics.sync, [
        syncRequest(cases.done),
        syncRequest(cases.complete),
        syncRequest(cases.live),
        syncRequest(cases.retired),
        {
          eid: "BE_JOB_REQUEST",
          edata: { action: "user-enrolment-sync", userId: "U", courseId: "C" },
        },
        { eid: "BE_JOB_REQUEST", edata: { action: "something-else", ...cases.done } },
      ]);
      await waitFor(
        "all six sync messages committed",
        async () => (await stack.committed(stack.topics.sync)) === 6,
      );

      // Completed from its stored rows: one certificate, status 2; counters untouched.
      const done = await stack.enrolment(cases.done);
      assert.equal(done?.status, 2);
      assert.equal(done?.progress, 3);
      assert.deepEqual(done?.contentStatus, { R1: 2, R2: 2, R3: 2 });
      assert.ok(done?.completedOn instanceof Date);
      assert.deepEqual(await stack.consumption(cases.done), {
        R1: [2, 1, 1],
        R2: [2, 1, 1],
        R3: [2, 1, 1],
      });
      assert.equal(await stack.aggregate(cases.done.courseId, cases.done), 3);
      assert.equal(await stack.aggregate("U1", cases.done), 2);
      await waitFor("the certificate request", () => certs.length === 1);
      assert.deepEqual((certs[0].edata as { userIds: string[] }).userIds, [cases.done.userId]);
      await waitFor("the enrol-complete event", () => audits.length === 1);
      assert.equal((audits[0].edata as { type: string }).type, "enrol-complete");

      // Already complete: left alone.
      const complete = await stack.enrolment(cases.complete);
      assert.deepEqual([complete?.status, complete?.progress, complete?.contentStatus], [
        2,
        null,
        {},
      ]);

      // Missing structure: Live fails (naming the sync topic), Retired is settled.
      await waitFor("two failed events", () => failed.length === 2);
      const failure = (e: Record<string, unknown>) =>
        e.failure as { stage: string; reason: string; source: { topic: string } };
      const byStage = Object.fromEntries(failed.map((e) => [failure(e).stage, e]));
      assert.deepEqual(Object.keys(byStage).sort(), ["course-structure", "input"]);
      assert.match(failure(byStage["course-structure"]).reason, /collection is Live/);
      assert.equal(
        (byStage["course-structure"].edata as { userId: string }).userId,
        cases.live.userId,
      );
      for (const e of failed) assert.equal(failure(e).source.topic, stack.topics.sync);
      assert.equal((await stack.enrolment(cases.live))?.progress, null);
      assert.equal((await stack.enrolment(cases.retired))?.progress, null);
      assert.equal(await stack.aggregate(courses.retired, cases.retired), undefined);
      assert.equal(await stack.committedInput(), 0, "nothing on the input topic");
      assert.equal(certs.length, 1);
      assert.equal(audits.length, 1, "no content AUDIT events");
    } finally {
      status = await job.stop();
      await stack.close();
    }
    assert.equal(status.code, 0, job.log);
  },
);

Deno.test(
  "reconcile FILE and --user/--course/--batch: lines, effects, exit codes",
  opts,
  async () => {
    const courses = { live: unique("C-live"), retired: unique("C-old") };
    const stack = await Stack.open({
      statuses: { [courses.live]: "Live", [courses.retired]: "Retired" },
    });
    try {
      const cases = await seedCases(stack, courses);
      const file = await csvFile(
        [cases.done, cases.complete, cases.live, cases.retired],
        ['"unterminated,line'],
      );
      const run = await runReconcile(stack, [file]);
      assert.equal(run.code, 1, run.log);
      assert.equal(run.stdout.length, 5, run.stdout.join("\n"));
      assert.match(run.stdout[0], /^invalid {4}line=6 reason="unterminated quote"$/);
      const d = cases.done;
      assert.equal(
        lineOf(run.stdout, d),
        `completed  user=${d.userId} course=${d.courseId} batch=${d.batchId} ` +
          "progress=-→3 status=1→2 certificate=requested",
      );
      assert.match(
        lineOf(run.stdout, cases.complete),
        /^unchanged {2}.* progress=-→- status=2→2 certificate=no note=already-completed$/,
      );
      assert.match(
        lineOf(run.stdout, cases.live),
        /^failed {5}.* progress=-→- status=-→- certificate=no reason=".*collection is Live\)"$/,
      );
      assert.match(lineOf(run.stdout, cases.retired), /^retired {4}.* note=collection-retired$/);
      assert.match(
        run.log,
        /reconcile: 4 enrolments in [\d.]+ s \(\d+ enrolments\/s\), 3 reconciled \(1 completed, 1 certificates requested, 0 updated, 1 unchanged, 1 retired\), 2 failed \(1 invalid lines\)/,
      );
      assert.doesNotMatch(run.stdout.join("\n"), /"level"/, "logs stay off stdout");

      const done = await stack.enrolment(cases.done);
      assert.deepEqual([done?.status, done?.progress], [2, 3]);
      assert.deepEqual(done?.contentStatus, { R1: 2, R2: 2, R3: 2 });
      assert.equal((await stack.enrolment(cases.complete))?.progress, null);
      assert.equal(await topicSize(stack, stack.topics.cert), 1);
      assert.equal(await topicSize(stack, stack.topics.audit), 1, "enrol-complete only");
      const failed = await stack.collect(stack.topics.failed);
      await waitFor("the failed enrolment", () => failed.length === 1);
      const failure = failed[0].failure as { stage: string; source: { topic: string } };
      assert.deepEqual([failure.stage, failure.source.topic], ["course-structure", "reconcile"]);

      // Again, from the command line: now complete, left alone, nothing sent.
      const again = await runReconcile(stack, [
        "--user",
        d.userId,
        "--course",
        d.courseId,
        "--batch",
        d.batchId,
      ]);
      assert.equal(again.code, 0, again.log);
      assert.deepEqual(again.stdout, [
        `unchanged  user=${d.userId} course=${d.courseId} batch=${d.batchId} ` +
        "progress=3→3 status=2→2 certificate=no note=already-completed",
      ]);
      assert.equal(await topicSize(stack, stack.topics.cert), 1);

      // Usage errors: exit 2, nothing done.
      const usage = await runReconcile(stack, ["--user", d.userId]);
      assert.equal(usage.code, 2);
      assert.match(usage.log, /give FILE, or all three of --user, --course and --batch/);
      const missing = await runReconcile(stack, ["/nonexistent/enrolments.csv"]);
      assert.equal(missing.code, 2);
      await Deno.remove(file);
    } finally {
      await stack.close();
    }
  },
);

Deno.test("check verifies KAFKA_SYNC_TOPIC when it is set", opts, async () => {
  const stack = await Stack.open({ sync: true });
  try {
    const check = async (syncTopic: string) => {
      const job = new JobProcess(stack.envForJob({ KAFKA_SYNC_TOPIC: syncTopic }), ["check"]);
      return { code: (await job.exited).code, log: job.log };
    };
    const present = await check(stack.topics.sync);
    assert.equal(present.code, 0, present.log);
    assert.match(present.log, /ok {4}kafka topics/);
    const missing = `${stack.topics.sync}.missing`;
    const absent = await check(missing);
    assert.equal(absent.code, 1, absent.log);
    assert.ok(
      absent.log.includes(`FAIL  kafka topics: topic ${missing} does not exist`),
      absent.log,
    );
  } finally {
    await stack.close();
  }
});

Deno.test("reconcile --dry-run prints the outcome and writes and sends nothing", opts, async () => {
  const courses = { live: unique("C-live"), retired: unique("C-old") };
  const stack = await Stack.open({ statuses: { [courses.live]: "Live" } });
  try {
    const cases = await seedCases(stack, courses);
    const file = await csvFile([cases.done, cases.live]);
    const dry = await runReconcile(stack, ["--dry-run", file]);
    assert.equal(dry.code, 1, dry.log);
    assert.match(lineOf(dry.stdout, cases.done), /progress=-→3 status=1→2 certificate=requested$/);
    assert.match(lineOf(dry.stdout, cases.live), /^failed .*collection is Live/);
    assert.match(dry.log, /reconcile \(dry run: nothing written or sent\): 2 enrolments/);

    const done = await stack.enrolment(cases.done);
    assert.deepEqual([done?.status, done?.progress, done?.contentStatus], [1, null, {}]);
    assert.equal(await stack.aggregate(cases.done.courseId, cases.done), undefined);
    for (const topic of [stack.topics.cert, stack.topics.audit, stack.topics.failed]) {
      assert.equal(await topicSize(stack, topic), 0, topic);
    }

    // The same FILE for real does what the dry run said.
    const real = await runReconcile(stack, [file]);
    assert.deepEqual(real.stdout, dry.stdout);
    assert.equal((await stack.enrolment(cases.done))?.status, 2);
    assert.equal(await topicSize(stack, stack.topics.cert), 1);
    await Deno.remove(file);
  } finally {
    await stack.close();
  }
});

Deno.test("reconcile FILE of 10,000 enrolments", opts, async () => {
  const stack = await Stack.open();
  try {
    // Four kinds, 2,500 each: stored rows that complete the course (R1–R3),
    // one content (progress 1), two (progress 2), and already completed.
    const courseId = unique("C");
    const batchId = unique("B");
    await stack.seedSets(exampleSets(courseId));
    const keys = Array.from({ length: 10_000 }, (_, i): EnrolmentKey => ({
      userId: `${unique("U")}-${i}`,
      courseId,
      batchId,
    }));
    const contents = [["R1", "R2", "R3"], ["R1"], ["R1", "R3"], ["R1", "R2", "R3"]];
    const seeding = performance.now();
    const consumption: unknown[][] = [];
    const enrolments: unknown[][] = [];
    keys.forEach((k, i) => {
      for (const contentId of contents[i % 4]) {
        consumption.push([k.userId, k.courseId, k.batchId, contentId, 2, 1, 1]);
      }
      enrolments.push([k.userId, k.courseId, k.batchId, i % 4 === 3 ? 2 : 1]);
    });
    const concurrency = { concurrencyLevel: 64, raiseOnFirstError: true };
    await cassandra.concurrent.executeConcurrent(
      stack.cql,
      "INSERT INTO user_content_consumption (userid, courseid, batchid, contentid, status, viewcount, completedcount) VALUES (?, ?, ?, ?, ?, ?, ?)",
      consumption,
      concurrency,
    );
    await cassandra.concurrent.executeConcurrent(
      stack.cql,
      "INSERT INTO user_enrolments (userid, courseid, batchid, status, active) VALUES (?, ?, ?, ?, true)",
      enrolments,
      concurrency,
    );
    const seededMs = performance.now() - seeding;
    const file = await csvFile(keys);

    const started = performance.now();
    const run = await runReconcile(stack, [file]);
    const ms = performance.now() - started;
    assert.equal(run.code, 0, run.log.slice(-3000));
    assert.equal(run.stdout.length, 10_000);
    const kinds = new Map<string, number>();
    for (const line of run.stdout) {
      const kind = line.split(" ")[0];
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(kinds), {
      completed: 2500,
      updated: 5000,
      unchanged: 2500,
    });
    const summary = run.log.match(
      /reconcile: 10000 enrolments in ([\d.]+) s \((\d+) enrolments\/s\)/,
    );
    assert.ok(summary, run.log.slice(-2000));
    assert.match(run.log, /reconcile: \d+\/10000 enrolments, 0 failed, \d+ enrolments\/s/);
    console.log(
      `10,000 enrolments: seeded in ${(seededMs / 1000).toFixed(1)} s; reconciled in ` +
        `${summary[1]} s (${summary[2]} enrolments/s), process wall time ${
          (ms / 1000).toFixed(1)
        } s`,
    );

    for (const i of [0, 1, 2, 3, 9_996, 9_999]) {
      const row = await stack.enrolment(keys[i]);
      const expected = [[2, 3], [1, 1], [1, 2], [2, null]][i % 4];
      assert.deepEqual([row?.status, row?.progress], expected, `enrolment ${i}`);
    }
    assert.equal(await topicSize(stack, stack.topics.cert), 2500);
    assert.equal(await topicSize(stack, stack.topics.audit), 2500);
    assert.equal(await topicSize(stack, stack.topics.failed), 0);
    await Deno.remove(file);
  } finally {
    await stack.close();
  }
});
