/**
 * End-to-end tests: the job as a process against real Kafka, Cassandra and
 * Redis from `scripts/stack.sh`.
 */

import assert from "node:assert/strict";
import { enrolmentUpdate } from "../../lib/event.ts";
import { unitChecksum } from "../../lib/checksum.ts";
import { EXAMPLE_CONTENTS, EXAMPLE_ROWS, exampleSets } from "../support/fixtures.ts";
import { JobProcess, metricValue, Stack, unique, waitFor } from "../support/stack.ts";

// KafkaJS and the Cassandra driver keep sockets and timers that outlive a test's
// last await; each test closes every client it opened in its `finally`.
const opts = { sanitizeOps: false, sanitizeResources: false };

/** The worked example of SPEC §12 on a course of its own. */
async function seedExample(stack: Stack) {
  const courseId = unique("C");
  const key = { userId: unique("U"), courseId, batchId: unique("B") };
  await stack.seedSets(exampleSets(courseId));
  for (const row of EXAMPLE_ROWS) await stack.seedConsumption(key, row);
  await stack.seedEnrolment(key, 1);
  return { key, event: enrolmentUpdate(key, EXAMPLE_CONTENTS) };
}

const typeOf = (e: Record<string, unknown>) => (e.edata as { type: string }).type;
const objectOf = (e: Record<string, unknown>) => (e.object as { id: string }).id;

Deno.test("SPEC §12's example end to end, and a replay changes nothing", opts, async () => {
  const stack = await Stack.open();
  const job = new JobProcess(stack.envForJob());
  let status: Deno.CommandStatus;
  try {
    const { key, event } = await seedExample(stack);
    const audits = await stack.collect(stack.topics.audit);
    const certs = await stack.collect(stack.topics.cert);
    await job.ready();
    await stack.produce([event]);

    // The completion is written first (step 8 before the counters): wait for the commit.
    await waitFor("the event to be committed", async () => (await stack.committedInput()) === 1);
    const enrolment = (await stack.enrolment(key))!;
    assert.equal(enrolment.status, 2);
    assert.equal(enrolment.progress, 3);
    assert.deepEqual(enrolment.contentStatus, { R1: 2, R2: 2, R3: 2 });
    assert.ok(enrolment.completedOn instanceof Date);
    // The job writes only the counters; `status` is the upstream service's column.
    assert.deepEqual(await stack.consumption(key), {
      R1: [2, 1, 1],
      R2: [null, 1, 1],
      R3: [1, 3, 1],
    });
    assert.equal(await stack.aggregate(key.courseId, key), 3);
    assert.equal(await stack.aggregate("U1", key), 2);
    assert.equal(await stack.aggregate("U2", key), 1);
    for (const contentId of ["R2", "R3"]) {
      assert.ok(await stack.hasChecksum(unitChecksum({ ...key, contentId })), contentId);
    }
    assert.equal(await stack.dedup.ttl(unitChecksum({ ...key, contentId: "R2" })) > 600_000, true);
    await waitFor(
      "four AUDIT events and one certificate",
      () => audits.length === 4 && certs.length === 1,
    );
    assert.deepEqual(
      audits.map((e) => `${objectOf(e)}:${typeOf(e)}`).sort(),
      ["R2:complete", "R2:start", "R3:complete", `${key.userId}:enrol-complete`],
    );
    assert.deepEqual((certs[0].edata as { userIds: string[] }).userIds, [key.userId]);
    await waitFor("the offset to be committed", async () => (await stack.committedInput()) === 1);

    // The same event again: committed, counted as duplicates, nothing written or sent.
    await stack.produce([event]);
    await waitFor("the replay to be committed", async () => (await stack.committedInput()) === 2);
    assert.deepEqual(await stack.consumption(key), {
      R1: [2, 1, 1],
      R2: [null, 1, 1],
      R3: [1, 3, 1],
    });
    assert.equal(audits.length, 4);
    assert.equal(certs.length, 1);
    const metrics = await job.metrics();
    assert.equal(metricValue(metrics, "activity_agg_duplicate_units_total"), 2);
    assert.equal(metricValue(metrics, "activity_agg_processed_enrolments_total"), 1);
    assert.equal(metricValue(metrics, "activity_agg_cert_issue_events_total"), 1);
    assert.equal(metricValue(metrics, "activity_agg_total_events_total"), 2);
  } finally {
    status = await job.stop();
    await stack.close();
  }
  assert.equal(status.code, 0, job.log);
});

Deno.test("several events of one enrolment close together are all applied", opts, async () => {
  const stack = await Stack.open();
  const job = new JobProcess(stack.envForJob({ THRESHOLD_BATCH_READ_INTERVAL: "1s" }));
  try {
    const courseId = unique("C");
    const key = { userId: unique("U"), courseId, batchId: unique("B") };
    await stack.seedSets(exampleSets(courseId));
    await stack.seedEnrolment(key, 1);
    for (const contentId of ["R1", "R2", "R3"]) {
      await stack.seedConsumption(key, { contentId, status: 2 });
    }
    await job.ready();
    await stack.produce(
      ["R1", "R2", "R3"].map((contentId) => enrolmentUpdate(key, [{ contentId, status: 2 }])),
    );
    await waitFor("all three committed", async () => (await stack.committedInput()) === 3);
    assert.deepEqual(await stack.consumption(key), {
      R1: [2, 1, 1],
      R2: [2, 1, 1],
      R3: [2, 1, 1],
    });
    const enrolment = await stack.enrolment(key);
    assert.equal(enrolment?.status, 2);
    assert.equal(enrolment?.progress, 3);
    assert.equal(await stack.aggregate("U1", key), 2);
  } finally {
    await job.stop();
    await stack.close();
  }
});

Deno.test(
  "malformed messages and a missing course structure go to the failed topic; the job goes on",
  opts,
  async () => {
    const liveCourse = unique("C");
    const stack = await Stack.open({ statuses: { [liveCourse]: "Live" } });
    const job = new JobProcess(stack.envForJob());
    let status: Deno.CommandStatus;
    try {
      const failed = await stack.collect(stack.topics.failed);
      const orphan = { userId: unique("U"), courseId: liveCourse, batchId: unique("B") };
      const { key, event } = await seedExample(stack);
      await job.ready();
      await stack.produce([
        "this is not JSON",
        { edata: { action: "batch-enrolment-update", courseId: "C", batchId: "B" } },
        enrolmentUpdate(orphan, [{ contentId: "X1", status: 2 }]),
        event,
      ]);
      await waitFor("three failed events", () => failed.length === 3);
      await waitFor("all four committed", async () => (await stack.committedInput()) === 4);
      const byStage = (stage: string) =>
        failed.filter((f) => (f.failure as { stage: string }).stage === stage);
      assert.equal(byStage("input").length, 2);
      assert.ok(failed.some((f) => f.value === "this is not JSON"));
      const [missing] = byStage("course-structure");
      assert.match((missing.failure as { reason: string }).reason, /Live/);
      assert.deepEqual((missing.edata as { contents: unknown }).contents, [
        { contentId: "X1", status: 2 },
      ]);
      assert.equal(await stack.enrolment(orphan), null);
      assert.equal(await stack.hasChecksum(unitChecksum({ ...orphan, contentId: "X1" })), false);
      assert.equal((await stack.enrolment(key))?.status, 2);
      assert.equal(await job.readyStatus(), 200);
    } finally {
      status = await job.stop();
      await stack.close();
    }
    assert.equal(status.code, 0);
  },
);

/**
 * A stream over `users` learners of one course: each completes R1, R2 and —
 * for every other learner — R3, one content per event. Upstream's consumption
 * row is written just before its event, as the course service does.
 */
async function learnerStream(stack: Stack, users: number) {
  const courseId = unique("C");
  const batchId = unique("B");
  await stack.seedSets(exampleSets(courseId));
  const learners = Array.from({ length: users }, (_, i) => ({
    key: { userId: `${unique("U")}-${i}`, courseId, batchId },
    contents: i % 2 === 0 ? ["R1", "R2", "R3"] : ["R1", "R2"],
  }));
  for (const { key } of learners) await stack.seedEnrolment(key, 1);
  const rounds = [0, 1, 2].map((step) =>
    learners.filter((l) => l.contents[step]).map((l) => ({
      key: l.key,
      contentId: l.contents[step],
    }))
  );
  return {
    learners,
    messages: rounds.flat().length,
    /** Seeds and publishes round `step` (0–2). */
    async publish(step: number) {
      for (const { key, contentId } of rounds[step]) {
        await stack.seedConsumption(key, { contentId, status: 2 });
      }
      await stack.produce(
        rounds[step].map(({ key, contentId }) => enrolmentUpdate(key, [{ contentId, status: 2 }])),
      );
    },
  };
}

/** Asserts every learner's final state, as an undisturbed run leaves it. */
async function assertFinalState(
  stack: Stack,
  learners: Awaited<ReturnType<typeof learnerStream>>["learners"],
  certs: Record<string, unknown>[],
  opts: { exactlyOneCertificate: boolean },
) {
  for (const { key, contents } of learners) {
    const complete = contents.length === 3;
    const enrolment = await stack.enrolment(key);
    assert.equal(enrolment?.status, complete ? 2 : 1, key.userId);
    assert.equal(enrolment?.progress, contents.length, key.userId);
    assert.deepEqual(enrolment?.contentStatus, Object.fromEntries(contents.map((c) => [c, 2])));
    assert.equal(await stack.aggregate(key.courseId, key), contents.length);
    assert.equal(await stack.aggregate("U1", key), 2);
    // U2 holds R3: a learner who never reached it has no U2 row (SPEC §6 step 7).
    assert.equal(await stack.aggregate("U2", key), complete ? 1 : undefined);
    const mine = certs.filter((c) =>
      (c.edata as { userIds: string[] }).userIds[0] === key.userId
    ).length;
    if (!complete) assert.equal(mine, 0, key.userId);
    else if (opts.exactlyOneCertificate) assert.equal(mine, 1, key.userId);
    else assert.ok(mine >= 1, `${key.userId} has no certificate request`);
  }
}

Deno.test(
  "killed with SIGKILL mid-stream and restarted, the job ends as an undisturbed run",
  opts,
  async () => {
    const stack = await Stack.open();
    const env = stack.envForJob({
      THRESHOLD_BATCH_READ_SIZE: "5",
      THRESHOLD_BATCH_READ_INTERVAL: "100ms",
    });
    let job = new JobProcess(env);
    try {
      const stream = await learnerStream(stack, 40);
      const certs = await stack.collect(stack.topics.cert);
      await job.ready();
      await stream.publish(0);
      await waitFor("some progress", async () => (await stack.committedInput()) > 0);
      await stream.publish(1);
      job.kill("SIGKILL");
      const killed = await job.exited;
      assert.equal(killed.signal, "SIGKILL");
      const committedAtKill = await stack.committedInput();
      assert.ok(committedAtKill < stream.messages, "killed before the end of the stream");
      await stream.publish(2);

      job = new JobProcess(env);
      await waitFor(
        "every message committed after the restart",
        async () => (await stack.committedInput()) === stream.messages,
        60_000,
      );
      await waitFor("certificates", () => certs.length >= 20);
      await assertFinalState(stack, stream.learners, certs, { exactlyOneCertificate: false });
    } finally {
      await job.stop();
      await stack.close();
    }
  },
);

Deno.test(
  "two processes in one group over a multi-partition topic end as one process would",
  opts,
  async () => {
    const stack = await Stack.open({ partitions: 4 });
    const env = () => stack.envForJob({ THRESHOLD_BATCH_READ_SIZE: "20" });
    const jobs = [new JobProcess(env()), new JobProcess(env())];
    try {
      const stream = await learnerStream(stack, 40);
      const certs = await stack.collect(stack.topics.cert);
      await Promise.all(jobs.map((j) => j.ready()));
      await waitFor("the four partitions shared between both processes", () => {
        const [a, b] = jobs.map((j) => j.assignment(stack.topics.input));
        return a && b && a.length > 0 && b.length > 0 &&
          [...a, ...b].sort().join() === "0,1,2,3";
      });
      for (const step of [0, 1, 2]) await stream.publish(step);
      await waitFor(
        "every message committed",
        async () => (await stack.committedInput()) === stream.messages,
        60_000,
      );
      await waitFor("one certificate per completed learner", () => certs.length >= 20);
      await assertFinalState(stack, stream.learners, certs, { exactlyOneCertificate: true });
      for (const job of jobs) {
        const consumed = metricValue(await job.metrics(), "activity_agg_total_events_total");
        assert.ok(consumed > 0, "both processes consumed");
      }
    } finally {
      await Promise.all(jobs.map((j) => j.stop()));
      await stack.close();
    }
  },
);

Deno.test(
  "a full window of first completions sends AUDIT events beyond one request's size",
  opts,
  async () => {
    // One partition: the 500 messages reach the job as one batch, one window.
    const stack = await Stack.open({ partitions: 1 });
    const job = new JobProcess(stack.envForJob({ THRESHOLD_BATCH_READ_INTERVAL: "5s" }));
    try {
      // 500 learners × 2 first-time contents = 1000 units (one default window) and
      // 2000 AUDIT events of ~650 bytes on the audit topic's single partition:
      // more than the broker takes in one request.
      const courseId = unique("C");
      const batchId = unique("B");
      await stack.seedSets(exampleSets(courseId));
      const keys = Array.from(
        { length: 500 },
        (_, i) => ({ userId: `${unique("U")}-${i}`, courseId, batchId }),
      );
      await Promise.all(keys.map((key) => stack.seedEnrolment(key, 1)));
      const audits = await stack.collect(stack.topics.audit);
      await job.ready();
      await stack.produce(keys.map((key) =>
        enrolmentUpdate(key, [
          { contentId: "R1", status: 2 },
          { contentId: "R3", status: 2 },
        ])
      ));
      await waitFor(
        "every message committed",
        async () => (await stack.committedInput()) === 500,
        60_000,
      );
      await waitFor("2000 AUDIT events", () => audits.length === 2000, 30_000);
      // A window's log line follows its commit, through the job's stdout.
      const units = (windows: { properties: Record<string, unknown> }[]) =>
        windows.reduce((n, w) => n + (w.properties.units as number), 0);
      const windows = await waitFor("the windows' log lines", () => {
        const done = job.records().filter((r) => r.message === "window done");
        return units(done) >= 1000 ? done : null;
      });
      assert.equal(units(windows), 1000);
      assert.ok(windows.some((w) => (w.properties.units as number) >= 900), "one large window");
      assert.equal((await stack.enrolment(keys[499]))?.progress, 2);
    } finally {
      await job.stop();
      await stack.close();
    }
  },
);
