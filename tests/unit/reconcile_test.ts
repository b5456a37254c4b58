/**
 * The `reconcile` command (SPEC §13) on the in-memory stubs: FILE parsing,
 * command-line targets, the printed lines, the summary and the exit codes.
 */

import assert from "node:assert/strict";
import { AbortedError } from "../../lib/async.ts";
import type { EnrolmentKey } from "../../lib/event.ts";
import { PermanentError } from "../../lib/ports.ts";
import {
  csvFields,
  exitCode,
  parseEnrolmentFile,
  reconcile,
  reconcileTarget,
  singleEnrolment,
  UsageError,
} from "../../lib/reconcile.ts";
import { EXAMPLE_ROWS, exampleSets } from "../support/fixtures.ts";
import { isolateWith, storeKey, stubWorld } from "../support/stubs.ts";

const key = (userId: string, courseId = "C1", batchId = "B1"): EnrolmentKey => ({
  userId,
  courseId,
  batchId,
});

// ---- FILE parsing ----

Deno.test("JSON lines: ids at the top level or under edata; blank lines ignored", () => {
  const text = [
    JSON.stringify({ userId: "U-1", courseId: "C1", batchId: "B1", extra: true }),
    "",
    "   ",
    JSON.stringify({
      eid: "BE_JOB_REQUEST",
      edata: { action: "user-enrolment-sync", userId: "U-2", courseId: "C1", batchId: "B1" },
    }),
    "",
  ].join("\n");
  const file = parseEnrolmentFile(text);
  assert.deepEqual(file.enrolments, [
    { key: key("U-1"), line: 1 },
    { key: key("U-2"), line: 4 },
  ]);
  assert.deepEqual(file.invalid, []);
});

Deno.test("JSON lines: bad lines are reported with their line numbers, the rest kept", () => {
  const text = [
    JSON.stringify({ userId: "U-1", courseId: "C1", batchId: "B1" }),
    "{not json",
    "[1,2]",
    JSON.stringify({ userId: "U-3", courseId: "C1" }),
    JSON.stringify({ userId: 7, courseId: "C1", batchId: "B1" }),
    JSON.stringify({ userId: "  ", courseId: "C1", batchId: "B1" }),
    JSON.stringify({ userId: "U".repeat(513), courseId: "C1", batchId: "B1" }),
    JSON.stringify({ userId: "U-8", courseId: "C1", batchId: "B1" }),
  ].join("\r\n");
  const file = parseEnrolmentFile(text);
  assert.deepEqual(file.enrolments.map((e) => [e.line, e.key.userId]), [[1, "U-1"], [8, "U-8"]]);
  assert.deepEqual(file.invalid.map((i) => i.line), [2, 3, 4, 5, 6, 7]);
  const reasons = file.invalid.map((i) => i.reason);
  assert.match(reasons[0], /^not JSON/);
  assert.equal(reasons[1], "not a JSON object");
  assert.equal(reasons[2], "batchId missing or not a string");
  assert.equal(reasons[3], "userId missing or not a string");
  assert.equal(reasons[4], "userId is empty");
  assert.equal(reasons[5], "identifier too long: userId");
});

Deno.test("CSV: a header naming the three columns in any order, extra columns ignored", () => {
  const text = [
    "\uFEFFBatch_Id, note ,USERID,course-id",
    "B1,first,U-1,C1",
    "",
    'B2,"a, quoted ""note""",U-2,"C 2"',
    "B3,short,U-3",
    'B4,"open,U-4,C1',
    "B5,x,,C1",
  ].join("\n");
  const file = parseEnrolmentFile(text);
  assert.deepEqual(file.enrolments, [
    { key: key("U-1", "C1", "B1"), line: 2 },
    { key: key("U-2", "C 2", "B2"), line: 4 },
  ]);
  assert.deepEqual(file.invalid, [
    { line: 5, reason: "3 columns, the header has 4 or more" },
    { line: 6, reason: "unterminated quote" },
    { line: 7, reason: "userId is empty" },
  ]);
});

Deno.test("CSV fields: quotes, escaped quotes, empty fields, spaces trimmed", () => {
  assert.deepEqual(csvFields('a, "b,c" ,"d""e",,f '), ["a", "b,c", 'd"e', "", "f"]);
  assert.deepEqual(csvFields(""), [""]);
  assert.equal(csvFields('"a'), null);
});

Deno.test("a file a run cannot use is a usage error", () => {
  assert.throws(() => parseEnrolmentFile(""), UsageError);
  assert.throws(() => parseEnrolmentFile("\n  \n"), UsageError);
  assert.throws(
    () => parseEnrolmentFile("userId,courseId\nU-1,C1"),
    (e: Error) => e instanceof UsageError && /missing: batchId/.test(e.message),
  );
  assert.throws(
    () => parseEnrolmentFile("userId,courseId,batchId,userid\nU-1,C1,B1,U-2"),
    (e: Error) => e instanceof UsageError && /userId twice/.test(e.message),
  );
  // A CSV header alone names nothing.
  assert.throws(() => parseEnrolmentFile("userId,courseId,batchId\n"), UsageError);
});

Deno.test("a repeated enrolment is reconciled once, and the repeat is noted", () => {
  const file = parseEnrolmentFile("userId,courseId,batchId\nU-1,C1,B1\nU-2,C1,B1\nU-1,C1,B1\n");
  assert.deepEqual(file.enrolments.map((e) => e.line), [2, 3]);
  assert.deepEqual(file.repeated, [{ line: 4, firstLine: 2 }]);
});

Deno.test("the command line names one enrolment or one FILE", () => {
  assert.deepEqual(reconcileTarget({ user: "U-1", course: "C1", batch: "B1" }, []), {
    kind: "enrolment",
    key: key("U-1"),
  });
  assert.deepEqual(reconcileTarget({}, ["list.csv"]), { kind: "file", path: "list.csv" });
  for (
    const [flags, positionals] of [
      [{}, []],
      [{ user: "U-1", course: "C1" }, []],
      [{ user: "U-1" }, ["list.csv"]],
      [{}, ["a.csv", "b.csv"]],
      [{ user: "", course: "C1", batch: "B1" }, []],
      [{ user: "U-1", course: "C".repeat(600), batch: "B1" }, []],
    ] as const
  ) {
    assert.throws(
      () => reconcileTarget(flags, [...positionals]),
      UsageError,
      JSON.stringify(flags),
    );
  }
});

// ---- the command on the stubs ----

/**
 * A world with SPEC §12's course C1 (R1–R3 required, R4 optional), a Live
 * course without structure (C-LIVE) and a retired one (C-OLD), and:
 * - U-DONE: stored rows complete the course (R1, R2, R3 at status 2), status 1;
 * - U-HALF: R1 at status 2, status 1, progress 0 stored;
 * - U-COMPLETE: already at status 2 with progress 3;
 * - U-NOROW: rows but no enrolment row.
 */
function world(opts: Parameters<typeof stubWorld>[0] = {}) {
  const w = stubWorld({
    sets: exampleSets(),
    statuses: { "C-LIVE": "Live", "C-OLD": "Retired" },
    ...opts,
  });
  const done = key("U-DONE");
  for (const contentId of ["R1", "R2", "R3"]) {
    w.progress.seedConsumption(done, { contentId, status: 2, viewCount: 1, completedCount: 1 });
  }
  w.progress.seedEnrolment(done, 1);
  w.progress.seedConsumption(key("U-HALF"), EXAMPLE_ROWS[0]);
  w.progress.seedEnrolment(key("U-HALF"), 1);
  w.progress.enrolments.get("U-HALF|C1|B1")!.progress = 0;
  w.progress.seedEnrolment(key("U-COMPLETE"), 2);
  w.progress.enrolments.get("U-COMPLETE|C1|B1")!.progress = 3;
  w.progress.seedConsumption(key("U-NOROW"), EXAMPLE_ROWS[0]);
  return w;
}

/** Runs `reconcile` capturing stdout and stderr lines; elapsed time moves 100 ms per call. */
async function run(
  requests: Parameters<typeof reconcile>[0],
  deps: Parameters<typeof reconcile>[1],
  opts: Partial<Parameters<typeof reconcile>[2]> = {},
) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  let t = 0;
  const summary = await reconcile(requests, deps, {
    print: (l) => stdout.push(l),
    progress: (l) => stderr.push(l),
    elapsedClock: () => (t += 100),
    ...opts,
  });
  return { summary, stdout, stderr, code: exitCode(summary) };
}

const file = (...users: [string, string?][]) =>
  parseEnrolmentFile(
    ["userId,courseId,batchId", ...users.map(([u, c = "C1"]) => `${u},${c},B1`)].join("\n"),
  );

Deno.test("one line per enrolment in FILE order, a summary, exit 0 when all reconciled", async () => {
  const w = world();
  const { summary, stdout, stderr, code } = await run(
    file(["U-DONE"], ["U-HALF"], ["U-COMPLETE"], ["U-NOROW"], ["U-OLD", "C-OLD"]),
    w.deps,
  );
  assert.deepEqual(stdout, [
    "completed  user=U-DONE course=C1 batch=B1 progress=-→3 status=1→2 certificate=requested",
    "updated    user=U-HALF course=C1 batch=B1 progress=0→1 status=1→1 certificate=no",
    "unchanged  user=U-COMPLETE course=C1 batch=B1 progress=3→3 status=2→2 certificate=no " +
    "note=already-completed",
    "unchanged  user=U-NOROW course=C1 batch=B1 progress=-→- status=-→- certificate=no " +
    "note=no-enrolment-row",
    "retired    user=U-OLD course=C-OLD batch=B1 progress=-→- status=-→- certificate=no " +
    "note=collection-retired",
  ]);
  assert.equal(code, 0);
  assert.deepEqual(
    [
      summary.enrolments,
      summary.reconciled,
      summary.completed,
      summary.certificates,
      summary.updated,
      summary.unchanged,
      summary.retired,
      summary.failed,
    ],
    [5, 5, 1, 1, 1, 2, 1, 0],
  );
  assert.equal(
    stderr.at(-1),
    "reconcile: 5 enrolments in 0.2 s (25 enrolments/s), 5 reconciled (1 completed, " +
      "1 certificates requested, 1 updated, 2 unchanged, 1 retired), 0 failed",
  );

  // The effects: SPEC §6 with no input, on the stores.
  const done = w.progress.enrolments.get("U-DONE|C1|B1")!;
  assert.deepEqual([done.status, done.progress], [2, 3]);
  assert.deepEqual(done.contentStatus, { R1: 2, R2: 2, R3: 2 });
  assert.equal(w.progress.enrolments.get("U-HALF|C1|B1")!.progress, 1);
  assert.equal(w.progress.enrolments.has("U-NOROW|C1|B1"), false);
  assert.equal(w.sink.on("cert").length, 1);
  assert.deepEqual(w.sink.on("audit").map((e) => (e.edata as { type: string }).type), [
    "enrol-complete",
  ]);
  assert.ok(w.progress.writeLog.every((l) => l.counters.length === 0), "no counters");
  assert.equal(w.dedup.checksums.length, 0, "no checksums");
  assert.deepEqual(w.sink.on("failed"), []);
});

Deno.test("a failed enrolment is printed with its reason, goes to the failed topic, exit 1", async () => {
  const w = world();
  const { summary, stdout, code } = await run(
    file(["U-DONE"], ["U-LIVE", "C-LIVE"], ["U-GONE", "C-UNKNOWN"]),
    w.deps,
  );
  assert.equal(code, 1);
  assert.equal(summary.failed, 2);
  assert.equal(summary.reconciled, 1);
  assert.match(stdout[0], /^completed {2}user=U-DONE/);
  assert.equal(
    stdout[1],
    "failed     user=U-LIVE course=C-LIVE batch=B1 progress=-→- status=-→- certificate=no " +
      'reason="course structure of C-LIVE is missing from the relation cache (collection is Live)"',
  );
  assert.match(stdout[2], /^failed {5}user=U-GONE .* reason=".*does not know it"$/);
  const failed = w.sink.on("failed");
  assert.equal(failed.length, 2);
  const failure = failed[0].failure as { stage: string; source: { topic: string } };
  assert.equal(failure.stage, "course-structure");
  assert.equal(failure.source.topic, "reconcile");
});

Deno.test("invalid FILE lines are printed, counted as failed, and the rest goes on", async () => {
  const w = world();
  const requests = parseEnrolmentFile(
    [
      JSON.stringify({ userId: "U-DONE", courseId: "C1", batchId: "B1" }),
      "oops",
      JSON.stringify({ userId: "U-DONE", courseId: "C1", batchId: "B1" }),
    ].join("\n"),
  );
  const { summary, stdout, stderr, code } = await run(requests, w.deps);
  assert.equal(code, 1);
  assert.match(stdout[0], /^invalid {4}line=2 reason="not JSON: /);
  assert.match(stdout[1], /^completed {2}user=U-DONE/);
  assert.equal(stdout.length, 2);
  assert.deepEqual([summary.failed, summary.invalidLines, summary.reconciled], [1, 1, 1]);
  assert.ok(stderr.includes("line 3 repeats the enrolment of line 1: reconciled once"));
  assert.match(stderr.at(-1)!, /1 failed \(1 invalid lines\)$/);
});

Deno.test("--dry-run prints the same lines and writes and sends nothing", async () => {
  const requests = file(["U-DONE"], ["U-HALF"], ["U-LIVE", "C-LIVE"]);
  const real = await run(requests, world().deps);
  const w = world();
  const before = structuredClone([...w.progress.enrolments]);
  const dry = await run(requests, w.deps, { dryRun: true });
  assert.deepEqual(dry.stdout, real.stdout);
  assert.equal(dry.code, 1, "a failure is a failure in a dry run too");
  assert.deepEqual([...w.progress.enrolments], before);
  assert.equal(w.progress.writeLog.length, 0);
  assert.equal(w.progress.enrolmentWriteLog.length, 0);
  assert.equal(w.sink.events.length, 0, "no certificate, AUDIT or failed event");
  assert.equal(w.progress.aggregates.size, 0);
  assert.match(dry.stderr.at(-1)!, /^reconcile \(dry run: nothing written or sent\): 3 enrol/);
});

Deno.test("one enrolment from the command line", async () => {
  const w = world();
  const { stdout, code } = await run(singleEnrolment(key("U-HALF")), w.deps);
  assert.deepEqual(stdout, [
    "updated    user=U-HALF course=C1 batch=B1 progress=0→1 status=1→1 certificate=no",
  ]);
  assert.equal(code, 0);
});

Deno.test("ids with spaces, quotes or = are shown as JSON strings", async () => {
  const w = world({ sets: { ...exampleSets("C 1") } });
  const odd = key('U "x"=1', "C 1");
  w.progress.seedConsumption(odd, EXAMPLE_ROWS[0]);
  w.progress.seedEnrolment(odd, 1);
  const { stdout } = await run(singleEnrolment(odd), w.deps);
  assert.match(stdout[0], /^updated {4}user="U \\"x\\"=1" course="C 1" batch=B1 progress=-→1/);
});

Deno.test("many enrolments go in windows of the given size, with progress on stderr", async () => {
  const w = world();
  const users = Array.from({ length: 2500 }, (_, i) => `L-${i}`);
  for (const u of users) {
    w.progress.seedConsumption(key(u), EXAMPLE_ROWS[0]);
    w.progress.seedEnrolment(key(u), 1);
  }
  let reads = 0;
  const readConsumption = w.progress.readConsumption.bind(w.progress);
  w.progress.readConsumption = (k) => {
    reads++;
    return readConsumption(k);
  };
  const windows: number[] = [];
  const { summary, stdout, stderr, code } = await run(
    file(...users.map((u) => [u] as [string])),
    {
      ...w.deps,
      relations: {
        members: (keys) => {
          if (keys.some((k) => k.endsWith("C1:C1:leafnodes"))) windows.push(reads);
          return w.relations.members(keys);
        },
      },
    },
    { windowSize: 1000, parallelWindows: 1, progressIntervalMs: 60_000 },
  );
  assert.equal(code, 0);
  assert.equal(stdout.length, 2500);
  assert.deepEqual(windows, [0, 1000, 2000], "three windows, each read after the last");
  assert.equal(summary.updated, 2500);
  assert.deepEqual(stdout.slice(0, 2).map((l) => l.split(" ").filter(Boolean)[1]), [
    "user=L-0",
    "user=L-1",
  ]);
  // Every 1000 enrolments (the interval is long), none after the last window.
  assert.deepEqual(stderr.slice(0, -1).map((l) => l.replace(/, \d+ enrolments\/s$/, "")), [
    "reconcile: 1000/2500 enrolments, 0 failed",
    "reconcile: 2000/2500 enrolments, 0 failed",
  ]);
  assert.equal(w.progress.enrolments.get(storeKey(key("L-2499")))!.progress, 1);
});

Deno.test("a permanent error stops the run: printed, the rest unfinished, exit 1", async () => {
  const w = world();
  w.progress.readEnrolment = () => Promise.reject(new PermanentError("table user_enrolments gone"));
  const { summary, stdout, stderr, code } = await run(file(["U-DONE"], ["U-HALF"]), w.deps, {
    windowSize: 1,
  });
  assert.equal(code, 1);
  assert.deepEqual(stdout, []);
  assert.equal(summary.unfinished, 2);
  assert.ok(stderr.includes("reconcile stopped: PermanentError: table user_enrolments gone"));
  assert.match(stderr.at(-1)!, /0 failed, 2 unfinished$/);
});

Deno.test("an abort (SIGINT) stops between windows: done ones printed, the rest unfinished", async () => {
  const w = world();
  const controller = new AbortController();
  let calls = 0;
  // Like retryWithBackoff: an aborted signal ends the next stage.
  const retry = <T>(_stage: string, fn: () => Promise<T>): Promise<T> =>
    controller.signal.aborted ? Promise.reject(new AbortedError("SIGINT received")) : fn();
  const members = w.relations.members.bind(w.relations);
  w.relations.members = (keys) => {
    // Three structure reads per window: the signal arrives during the second
    // window's first, and its next stage (the state reads) stops.
    if (++calls === 4) controller.abort();
    return members(keys);
  };
  const { summary, stdout, stderr, code } = await run(
    file(["U-DONE"], ["U-HALF"], ["U-COMPLETE"]),
    { ...w.deps, isolate: isolateWith(retry) },
    { windowSize: 1, parallelWindows: 1 },
  );
  assert.equal(code, 1);
  assert.equal(stdout.length, 1);
  assert.match(stdout[0], /^completed {2}user=U-DONE/);
  assert.equal(summary.unfinished, 2);
  assert.ok(stderr.includes("reconcile stopped: interrupted (SIGINT received)"));
  assert.equal(w.progress.enrolments.get("U-HALF|C1|B1")!.progress, 0, "not written");
});

Deno.test("two windows in flight at once, printed in FILE order whichever finishes first", async () => {
  const w = world();
  const users = ["P-0", "P-1", "P-2"];
  for (const u of users) {
    w.progress.seedConsumption(key(u), EXAMPLE_ROWS[0]);
    w.progress.seedEnrolment(key(u), 1);
  }
  const gates = new Map(users.map((u) => [u, Promise.withResolvers<void>()]));
  const reading: string[] = [];
  const twoReading = Promise.withResolvers<void>();
  const readEnrolment = w.progress.readEnrolment.bind(w.progress);
  w.progress.readEnrolment = async (k) => {
    reading.push(k.userId);
    if (reading.length === 2) twoReading.resolve();
    await gates.get(k.userId)!.promise;
    return readEnrolment(k);
  };
  const result = run(file(...users.map((u) => [u] as [string])), w.deps, {
    windowSize: 1,
    parallelWindows: 2,
  });
  await twoReading.promise;
  assert.deepEqual(reading, ["P-0", "P-1"], "the third window waits for a free slot");
  gates.get("P-1")!.resolve();
  gates.get("P-0")!.resolve();
  gates.get("P-2")!.resolve();
  const { stdout, code } = await result;
  assert.equal(code, 0);
  assert.deepEqual(stdout.map((l) => l.split(" ").filter(Boolean)[1]), [
    "user=P-0",
    "user=P-1",
    "user=P-2",
  ]);
  assert.deepEqual(reading, ["P-0", "P-1", "P-2"]);
});
