import assert from "node:assert/strict";
import { enrolmentUpdate } from "../../lib/event.ts";
import { certificateMarker, unitChecksum } from "../../lib/checksum.ts";
import { processWindow } from "../../lib/pipeline.ts";
import { EXAMPLE_CONTENTS, EXAMPLE_KEY, EXAMPLE_ROWS, exampleSets } from "../support/fixtures.ts";
import { AbortedError } from "../../lib/async.ts";
import { InputRejectedError } from "../../lib/ports.ts";
import { immediateRetry, isolateWith, stubWorld, windowOf } from "../support/stubs.ts";

function exampleWorld(opts: Parameters<typeof stubWorld>[0] = {}) {
  const world = stubWorld({ sets: exampleSets(), ...opts });
  for (const row of EXAMPLE_ROWS) world.progress.seedConsumption(EXAMPLE_KEY, row);
  world.progress.seedEnrolment(EXAMPLE_KEY, 1);
  return world;
}
const exampleEvent = enrolmentUpdate(EXAMPLE_KEY, EXAMPLE_CONTENTS);
const edataType = (v: Record<string, unknown>) =>
  (v.edata as { type?: string; action?: string }).type ??
    (v.edata as { action?: string }).action;
const objectId = (v: Record<string, unknown>) => (v.object as { id: string }).id;

Deno.test("SPEC §12's worked example, end to end through the pipeline", async () => {
  const { deps, progress, sink, dedup, clock } = exampleWorld();
  const summary = await processWindow(windowOf([exampleEvent]), deps);

  // Counters: only the window's contents are written.
  const rows = progress.consumption.get("U-1|C1|B1")!;
  assert.deepEqual(rows.get("R2"), { contentId: "R2", status: 1, viewCount: 1, completedCount: 1 });
  assert.deepEqual(rows.get("R3"), { contentId: "R3", status: 1, viewCount: 3, completedCount: 1 });
  assert.deepEqual(rows.get("R1"), EXAMPLE_ROWS[0]);
  assert.equal(rows.has("R4"), false);
  assert.deepEqual(
    progress.writeLog.flatMap((w) => w.counters).map((c) => c.contentId),
    ["R2", "R3"],
  );

  // Aggregates: course 3, U1 2, U2 1.
  assert.equal(progress.aggregate("C1", "B1", "U-1"), 3);
  assert.equal(progress.aggregate("U1", "B1", "U-1"), 2);
  assert.equal(progress.aggregate("U2", "B1", "U-1"), 1);
  assert.equal(progress.aggregates.size, 3);

  // Enrolment completed.
  const enrolment = progress.enrolments.get("U-1|C1|B1")!;
  assert.equal(enrolment.status, 2);
  assert.equal(enrolment.progress, 3);
  assert.deepEqual(enrolment.contentStatus, { R1: 2, R2: 2, R3: 2 });
  assert.equal(enrolment.completedOn, clock.now());

  // One certificate event and four AUDIT events.
  const certs = sink.on("cert");
  assert.equal(certs.length, 1);
  assert.deepEqual(certs[0].edata, {
    userIds: ["U-1"],
    action: "issue-certificate",
    iteration: 1,
    trigger: "auto-issue",
    batchId: "B1",
    reIssue: false,
    courseId: "C1",
  });
  assert.deepEqual(certs[0].object, { id: "B1_C1", type: "CourseCertificateGeneration" });
  assert.equal(certs[0].mid, "LP.CERT.7b8aa077-9a1b-89c8-9667-a8296f5f4761");
  const audits = sink.on("audit");
  assert.deepEqual(
    audits.map((a) => `${objectId(a)}:${edataType(a)}`).sort(),
    ["R2:complete", "R2:start", "R3:complete", "U-1:enrol-complete"],
  );
  const r2Complete = audits.find((a) => objectId(a) === "R2" && edataType(a) === "complete")!;
  assert.deepEqual(r2Complete.edata, { type: "complete", props: ["viewcount", "completedcount"] });
  assert.deepEqual(r2Complete.object, { id: "R2", type: "Content", rollup: { l1: "C1" } });
  assert.deepEqual(r2Complete.actor, { id: "U-1", type: "User" });
  assert.deepEqual((r2Complete.context as { cdata: unknown }).cdata, [{
    type: "CourseBatch",
    id: "B1",
  }]);
  // SPEC §8's deterministic mids: MD5 of userId|courseId|batchId|contentId|type.
  assert.deepEqual(
    Object.fromEntries(audits.map((a) => [`${objectId(a)}:${edataType(a)}`, a.mid])),
    {
      "R2:start": "LP.AUDIT.e1998f2a-168a-0ae4-19aa-6aca0f8ef052",
      "R2:complete": "LP.AUDIT.6bafae6a-378f-dc03-2cfd-42bcb722753c",
      "R3:complete": "LP.AUDIT.527d1eec-cb3e-f6fa-c6bb-7bf69df862c4",
      "U-1:enrol-complete": "LP.AUDIT.11aac00a-54f2-c6b2-fd17-9b1c1e3dfde3",
    },
  );
  const enrolComplete = audits.find((a) => edataType(a) === "enrol-complete")!;
  assert.deepEqual((enrolComplete.context as { cdata: unknown }).cdata, [
    { type: "CourseBatch", id: "B1" },
    { type: "Course", id: "C1" },
  ]);
  assert.ok(sink.events.every((e) => e.key === "U-1"));
  assert.equal(sink.on("failed").length, 0);

  // Two checksums, with the configured expiry.
  assert.deepEqual(
    dedup.checksums.sort(),
    [
      unitChecksum({ ...EXAMPLE_KEY, contentId: "R2" }),
      unitChecksum({ ...EXAMPLE_KEY, contentId: "R3" }),
    ].sort(),
  );
  assert.ok([...dedup.keys.values()].every((ttl) => ttl === 604800));
  assert.equal(summary.processed, 1);
  assert.equal(summary.completions, 1);
});

Deno.test("the certificate pair goes out alone, and the status-2 write follows at once", async () => {
  const world = exampleWorld();
  const order: string[] = [];
  const send = world.sink.send.bind(world.sink);
  world.sink.send = (events) => {
    order.push(`send:${events.map((e) => edataType(e.value) ?? e.topic).join(",")}`);
    return send(events);
  };
  const write = world.progress.writeEnrolments.bind(world.progress);
  world.progress.writeEnrolments = (writes) => {
    order.push(`enrolment:${writes.map((w) => w.statusChange?.status).join(",")}`);
    return write(writes);
  };
  await processWindow(windowOf([exampleEvent]), world.deps);
  assert.deepEqual(order.slice(0, 2), ["send:issue-certificate,enrol-complete", "enrolment:2"]);
  assert.deepEqual(order.slice(2), ["send:start,complete,complete"]);
});

Deno.test("in-progress enrolments are written while a completion is in flight; their events follow the pairs", async () => {
  const world = exampleWorld();
  const other = { ...EXAMPLE_KEY, userId: "U-2" };
  world.progress.seedEnrolment(other, 1);
  const order: string[] = [];
  const pairsHeld = Promise.withResolvers<void>();
  const send = world.sink.send.bind(world.sink);
  world.sink.send = async (events) => {
    const types = events.map((e) => edataType(e.value) ?? e.topic).join(",");
    if (types.includes("issue-certificate")) await pairsHeld.promise;
    order.push(`send:${types}`);
    return send(events);
  };
  const writeProgress = world.progress.writeProgress.bind(world.progress);
  world.progress.writeProgress = (writes) => {
    const [kind, users] = writes.counters.length > 0
      ? ["counters", writes.counters.map((c) => c.key.userId)]
      : ["aggregates", writes.aggregates.map((a) => a.userId)];
    order.push(`${kind}:${[...new Set(users)].join(",")}`);
    return writeProgress(writes);
  };
  const done = processWindow(
    windowOf([exampleEvent, enrolmentUpdate(other, [{ contentId: "R1", status: 2 }])]),
    world.deps,
  );
  // U-2's aggregates go ahead of U-1's certificate pair, held here; its
  // events wait for the pair, and its counters for its events.
  for (let turn = 0; turn < 100 && order.length === 0; turn++) {
    await new Promise((r) => setTimeout(r, 0));
  }
  const beforePairs = [...order];
  pairsHeld.resolve();
  assert.deepEqual(beforePairs, ["aggregates:U-2"]);
  const summary = await done;
  assert.equal(summary.processed, 2);
  assert.equal(summary.completions, 1);
  assert.equal(order[1], "send:issue-certificate,enrol-complete");
  assert.deepEqual(order.slice(2).sort(), [
    "aggregates:U-1",
    "counters:U-1",
    "counters:U-2",
    "send:start,complete",
    "send:start,complete,complete",
  ]);
  assert.ok(order.indexOf("send:start,complete") < order.indexOf("counters:U-2"));
  assert.ok(order.indexOf("send:start,complete,complete") < order.indexOf("counters:U-1"));
});

Deno.test("a content's counters are written only once its AUDIT events are acknowledged", async () => {
  const world = exampleWorld();
  const eventsHeld = Promise.withResolvers<void>();
  const send = world.sink.send.bind(world.sink);
  world.sink.send = async (events) => {
    if (events.some((e) => edataType(e.value) === "start")) await eventsHeld.promise;
    return send(events);
  };
  const other = { ...EXAMPLE_KEY, userId: "U-2" };
  world.progress.seedEnrolment(other, 1);
  const done = processWindow(
    windowOf([enrolmentUpdate(other, [{ contentId: "R1", status: 2 }])]),
    world.deps,
  );
  for (let turn = 0; turn < 100 && world.progress.writeLog.length === 0; turn++) {
    await new Promise((r) => setTimeout(r, 0));
  }
  assert.deepEqual(world.progress.writeLog.map((w) => w.counters.length), [0], "aggregates only");
  eventsHeld.resolve();
  assert.equal((await done).processed, 1);
  assert.deepEqual(world.progress.writeLog.map((w) => w.counters.length), [0, 1]);
});

Deno.test("when its AUDIT events are refused, an enrolment's counters stay unwritten, so a replay sends them", async () => {
  const world = exampleWorld();
  const other = { ...EXAMPLE_KEY, userId: "U-2" };
  world.progress.seedEnrolment(other, 1);
  const event = enrolmentUpdate(other, [{ contentId: "R1", status: 2 }]);
  const send = world.sink.send.bind(world.sink);
  world.sink.send = (events) =>
    events.some((e) => edataType(e.value) === "start")
      ? Promise.reject(new InputRejectedError("kafka: MESSAGE_TOO_LARGE"))
      : send(events);
  const summary = await processWindow(windowOf([event]), world.deps);
  assert.equal(summary.failedEnrolments, 1);
  assert.equal(world.progress.consumption.get("U-2|C1|B1")?.get("R1"), undefined);

  world.sink.send = send;
  await processWindow(windowOf([event]), world.deps);
  assert.deepEqual(
    world.sink.on("audit").map((e) => edataType(e)),
    ["start", "complete"],
    "the replay's AUDIT events",
  );
});

Deno.test("the same event replayed changes nothing", async () => {
  const { deps, progress, sink, dedup } = exampleWorld();
  await processWindow(windowOf([exampleEvent]), deps);
  const before = structuredClone({
    rows: [...progress.consumption.get("U-1|C1|B1")!],
    enrolment: progress.enrolments.get("U-1|C1|B1"),
    aggregates: [...progress.aggregates],
    events: sink.events.length,
    checksums: [...dedup.keys],
  });
  const summary = await processWindow(windowOf([exampleEvent]), deps);
  assert.equal(summary.duplicates, 2);
  assert.equal(summary.processed, 0);
  assert.deepEqual({
    rows: [...progress.consumption.get("U-1|C1|B1")!],
    enrolment: progress.enrolments.get("U-1|C1|B1"),
    aggregates: [...progress.aggregates],
    events: sink.events.length,
    checksums: [...dedup.keys],
  }, before);
  assert.equal(await deps.metrics.value("duplicateUnits"), 2);
});

Deno.test("repeats within one window count once with dedup on", async () => {
  const { deps, progress, sink } = exampleWorld();
  const r2 = enrolmentUpdate(EXAMPLE_KEY, [{ contentId: "R2", status: 2 }]);
  const summary = await processWindow(windowOf([r2, r2, r2]), deps);
  assert.equal(summary.duplicates, 2);
  assert.deepEqual(progress.consumption.get("U-1|C1|B1")!.get("R2"), {
    contentId: "R2",
    status: 1,
    viewCount: 1,
    completedCount: 1,
  });
  assert.equal(sink.on("audit").length, 2); // start + complete, once
});

Deno.test("with dedup off every unit counts, repeats included, and no checksum is stored", async () => {
  const { deps, progress, dedup, sink } = exampleWorld({ settings: { dedupEnabled: false } });
  const r3 = enrolmentUpdate(EXAMPLE_KEY, [{ contentId: "R3", status: 2 }]);
  await processWindow(windowOf([r3, r3]), deps);
  assert.deepEqual(progress.consumption.get("U-1|C1|B1")!.get("R3"), {
    contentId: "R3",
    status: 1,
    viewCount: 4,
    completedCount: 2,
  });
  assert.equal(dedup.checksums.length, 0);
  assert.deepEqual(sink.on("audit").map(edataType), ["complete"]);
  await processWindow(windowOf([r3]), deps);
  assert.equal(progress.consumption.get("U-1|C1|B1")!.get("R3")!.viewCount, 5);
});

Deno.test("several events of one enrolment in one window are all applied, read and written once", async () => {
  const { deps, progress, sink } = exampleWorld();
  const events = ["R1", "R2", "R3"].map((contentId) =>
    enrolmentUpdate(EXAMPLE_KEY, [{ contentId, status: 2 }])
  );
  await processWindow(windowOf(events), deps);
  const rows = progress.consumption.get("U-1|C1|B1")!;
  assert.deepEqual(
    ["R1", "R2", "R3"].map((c) => [rows.get(c)!.viewCount, rows.get(c)!.completedCount]),
    [[2, 2], [1, 1], [3, 1]],
  );
  assert.equal(progress.writeLog.filter((w) => w.counters.length > 0).length, 1);
  assert.equal(progress.writeLog.filter((w) => w.aggregates.length > 0).length, 1);
  assert.equal(progress.enrolments.get("U-1|C1|B1")!.status, 2);
  assert.equal(sink.on("cert").length, 1);
});

Deno.test("missing structure of a Live collection fails only that enrolment", async () => {
  const world = exampleWorld({ statuses: { C9: "Live" } });
  const orphan = { userId: "U-2", courseId: "C9", batchId: "B9" };
  const window = windowOf([
    enrolmentUpdate(orphan, [{ contentId: "X1", status: 2 }, { contentId: "X2", status: 2 }]),
    exampleEvent,
  ]);
  const summary = await processWindow(window, world.deps);

  assert.equal(summary.failedEnrolments, 1);
  assert.equal(summary.processed, 1);
  const [failed] = world.sink.on("failed");
  assert.equal(failed.eid, "BE_JOB_REQUEST");
  assert.deepEqual(failed.edata, {
    action: "batch-enrolment-update",
    iteration: 1,
    userId: "U-2",
    courseId: "C9",
    batchId: "B9",
    contents: [{ contentId: "X1", status: 2 }, { contentId: "X2", status: 2 }],
  });
  const failure = failed.failure as Record<string, unknown>;
  assert.equal(failure.stage, "course-structure");
  assert.equal(failure.job, "activity-aggregate-updater");
  assert.match(failure.reason as string, /C9.*Live/);
  // No writes and no checksums for the failed enrolment; the other one went on.
  assert.equal(world.progress.consumption.has("U-2|C9|B9"), false);
  assert.ok(world.progress.writeLog.every((w) => w.counters.every((c) => c.key.userId !== "U-2")));
  assert.equal(world.dedup.checksums.length, 2);
  assert.equal(world.progress.enrolments.get("U-1|C1|B1")!.status, 2);
  assert.equal(await world.metrics.value("failedEvents"), 1);
});

Deno.test("a failed enrolment's event is processed when re-published once the structure exists", async () => {
  const world = stubWorld({ statuses: { C1: "Live" } });
  world.progress.seedEnrolment(EXAMPLE_KEY, 1);
  await processWindow(windowOf([enrolmentUpdate(EXAMPLE_KEY, EXAMPLE_CONTENTS)]), world.deps);
  const [failed] = world.sink.on("failed");
  for (const [k, v] of Object.entries(exampleSets())) world.relations.sets.set(k, v);
  const summary = await processWindow(windowOf([failed]), world.deps);
  assert.equal(summary.processed, 1);
  assert.equal(world.progress.aggregate("C1", "B1", "U-1"), 2);
});

Deno.test("missing structure with an unknown collection or a failing lookup fails the enrolment", async () => {
  for (const status of [undefined, new Error("search down")]) {
    const world = stubWorld({ statuses: status ? { C9: status } : {} });
    const summary = await processWindow(
      windowOf([enrolmentUpdate({ userId: "U", courseId: "C9", batchId: "B" }, [{
        contentId: "X",
        status: 2,
      }])]),
      world.deps,
    );
    assert.equal(summary.failedEnrolments, 1);
    assert.equal(world.dedup.checksums.length, 0);
    const reason = (world.sink.on("failed")[0].failure as { reason: string }).reason;
    assert.match(reason, status ? /search down/ : /does not know it/);
  }
});

Deno.test("missing structure of a Retired collection is skipped with checksums stored", async () => {
  const world = stubWorld({ statuses: { C9: "Retired" } });
  const key = { userId: "U-2", courseId: "C9", batchId: "B9" };
  const summary = await processWindow(
    windowOf([enrolmentUpdate(key, [{ contentId: "X1", status: 2 }])]),
    world.deps,
  );
  assert.equal(summary.retired, 1);
  assert.equal(world.progress.writeLog.length, 0);
  assert.equal(world.sink.events.length, 0);
  assert.deepEqual(world.dedup.checksums, [unitChecksum({ ...key, contentId: "X1" })]);
  assert.equal(await world.metrics.value("retiredCollectionEvents"), 1);
});

Deno.test("the enrolment filter leaves a missing or completed row alone, and only that", async () => {
  for (const status of [null, 2] as const) {
    const world = exampleWorld();
    if (status === null) world.progress.enrolments.clear();
    else world.progress.seedEnrolment(EXAMPLE_KEY, 2);
    const summary = await processWindow(windowOf([exampleEvent]), world.deps);
    assert.equal(summary.filtered, 1, `status ${status}`);
    // No enrolment write, no certificate, no enrol-complete event...
    assert.equal(world.progress.enrolmentWriteLog.length, 0);
    assert.equal(world.sink.on("cert").length, 0);
    // ...but counters, aggregates and content AUDIT events, as for any enrolment.
    const rows = world.progress.consumption.get("U-1|C1|B1")!;
    assert.equal(rows.get("R3")!.viewCount, 3);
    assert.equal(world.progress.aggregate("C1", "B1", "U-1"), 3);
    assert.deepEqual(
      world.sink.on("audit").map((a) => `${objectId(a)}:${edataType(a)}`).sort(),
      ["R2:complete", "R2:start", "R3:complete"],
    );
    assert.equal(world.dedup.checksums.length, 2);
    assert.equal(world.progress.enrolments.get("U-1|C1|B1")?.status ?? null, status);
  }
});

Deno.test("after a completion, later content events still count but never complete again", async () => {
  const world = exampleWorld();
  await processWindow(windowOf([exampleEvent]), world.deps);
  assert.equal(world.sink.on("cert").length, 1);
  const writes = world.progress.enrolmentWriteLog.length;
  const completedOn = world.progress.enrolments.get("U-1|C1|B1")!.completedOn;

  // Upstream writes each content's state row before it publishes the event.
  for (const contentId of ["R2", "R3"]) {
    const row = world.progress.consumption.get("U-1|C1|B1")!.get(contentId)!;
    world.progress.seedConsumption(EXAMPLE_KEY, { ...row, status: 2 });
  }
  world.clock.advance(60_000);
  const revisit = enrolmentUpdate(EXAMPLE_KEY, [{ contentId: "R4", status: 2 }]);
  await processWindow(windowOf([revisit]), world.deps);
  world.clock.advance(60_000);
  await processWindow(
    windowOf([enrolmentUpdate(EXAMPLE_KEY, [{ contentId: "R9", status: 2 }])]),
    world.deps,
  );

  const rows = world.progress.consumption.get("U-1|C1|B1")!;
  assert.deepEqual([rows.get("R4")!.viewCount, rows.get("R9")!.completedCount], [1, 1]);
  assert.equal(world.progress.aggregate("U2", "B1", "U-1"), 1, "R4 is optional in U2");
  assert.deepEqual(
    world.sink.on("audit").filter((a) => ["R4", "R9"].includes(objectId(a))).map(edataType),
    ["start", "complete", "start", "complete"],
  );
  assert.equal(world.sink.on("cert").length, 1, "no second certificate");
  assert.equal(
    world.sink.on("audit").filter((a) => edataType(a) === "enrol-complete").length,
    1,
  );
  assert.equal(world.progress.enrolmentWriteLog.length, writes, "no enrolment write");
  assert.equal(world.progress.enrolments.get("U-1|C1|B1")!.completedOn, completedOn);
});

Deno.test("with the filter off, a missing enrolment is written", async () => {
  const world = exampleWorld({ settings: { filterProcessedEnrolments: false } });
  world.progress.enrolments.clear();
  await processWindow(windowOf([exampleEvent]), world.deps);
  const enrolment = world.progress.enrolments.get("U-1|C1|B1")!;
  assert.equal(enrolment.status, 2);
  assert.equal(enrolment.progress, 3);
  assert.equal(world.sink.on("cert").length, 1);
});

Deno.test("with the filter off, an enrolment already at status 1 gets no status change", async () => {
  const world = stubWorld({ sets: exampleSets(), settings: { filterProcessedEnrolments: false } });
  world.progress.seedEnrolment(EXAMPLE_KEY, 1);
  await processWindow(
    windowOf([enrolmentUpdate(EXAMPLE_KEY, [{ contentId: "R1", status: 2 }])]),
    world.deps,
  );
  const [[write]] = world.progress.enrolmentWriteLog;
  assert.equal(write.statusChange, undefined);
  assert.equal(write.progress, 1);
});

Deno.test("an in-progress enrolment gets status 1, progress and a merged contentstatus", async () => {
  const world = stubWorld({ sets: exampleSets() });
  world.progress.seedEnrolment(EXAMPLE_KEY, 0);
  world.progress.enrolments.get("U-1|C1|B1")!.contentStatus = { OLD: 1 };
  // Upstream writes each content's state row before it publishes the event.
  const completeUpstream = (contentId: string) =>
    world.progress.seedConsumption(EXAMPLE_KEY, {
      contentId,
      status: 2,
      viewCount: 0,
      completedCount: 0,
    });
  completeUpstream("R1");
  await processWindow(
    windowOf([enrolmentUpdate(EXAMPLE_KEY, [{ contentId: "R1", status: 2 }])]),
    world.deps,
  );
  const enrolment = world.progress.enrolments.get("U-1|C1|B1")!;
  assert.equal(enrolment.status, 1);
  assert.equal(enrolment.progress, 1);
  assert.deepEqual(enrolment.contentStatus, { OLD: 1, R1: 2 });
  assert.equal(enrolment.completedOn, undefined);
  assert.equal(world.sink.on("cert").length, 0);
  // Status already 1: the next in-progress write does not move status.
  completeUpstream("R2");
  await processWindow(
    windowOf([enrolmentUpdate(EXAMPLE_KEY, [{ contentId: "R2", status: 2 }])]),
    world.deps,
  );
  const last = world.progress.enrolmentWriteLog.at(-1)!;
  assert.equal(last[0].statusChange, undefined);
  assert.equal(last[0].progress, 2);
  assert.deepEqual(enrolment.contentStatus, { OLD: 1, R1: 2, R2: 2 });
});

Deno.test("unit aggregates are written only when enabled", async () => {
  const off = exampleWorld({ settings: { moduleAggsEnabled: false } });
  await processWindow(windowOf([exampleEvent]), off.deps);
  assert.deepEqual([...off.progress.aggregates.keys()], ["C1|cb:B1|U-1"]);
  assert.ok(off.relations.calls.flat().every((k) => !k.endsWith(":ancestors")));
  const on = exampleWorld();
  await processWindow(windowOf([exampleEvent]), on.deps);
  assert.deepEqual(
    [...on.progress.aggregates.keys()].sort(),
    ["C1|cb:B1|U-1", "U1|cb:B1|U-1", "U2|cb:B1|U-1"],
  );
});

Deno.test("a failed message goes to the failed topic with its original value", async () => {
  const world = exampleWorld();
  const summary = await processWindow(
    windowOf(["not json", { edata: { action: "batch-enrolment-update", userId: "U" } }, {
      edata: { action: "other" },
    }]),
    world.deps,
  );
  assert.equal(summary.failedMessages, 2);
  assert.equal(summary.skippedMessages, 1);
  const [text, object] = world.sink.on("failed");
  assert.equal(text.value, "not json");
  assert.equal((text.failure as { stage: string }).stage, "input");
  assert.deepEqual((object.edata as { userId: string }).userId, "U");
  assert.match((object.failure as { reason: string }).reason, /edata\.courseId/);
  assert.equal(await world.metrics.value("skippedEvents"), 1);
});

Deno.test("a window abandoned in an outage stored nothing, and is applied when processed again", async () => {
  const world = exampleWorld();
  world.sink.failNext(1_000);
  const abandoned = {
    ...world.deps,
    isolate: { ...world.deps.isolate, wait: () => Promise.reject(new AbortedError("stop")) },
  };
  await assert.rejects(processWindow(windowOf([exampleEvent]), abandoned), AbortedError);
  assert.equal(world.dedup.checksums.length, 0);
  assert.equal(world.progress.enrolments.get("U-1|C1|B1")!.status, 1);
  assert.equal(world.sink.events.length, 0);

  world.sink.failNext(0);
  await processWindow(windowOf([exampleEvent]), world.deps);
  assert.equal(world.progress.enrolments.get("U-1|C1|B1")!.status, 2);
  assert.equal(world.sink.on("cert").length, 1);
  assert.equal(world.dedup.checksums.length, 2);
});

Deno.test("a stage retried through an outage applies the window exactly once", async () => {
  const world = exampleWorld();
  const failed: string[] = [];
  world.deps.isolate = isolateWith(immediateRetry(failed));
  world.progress.failNext(2);
  world.progress.failEnrolmentWriteCall = 0;
  world.dedup.failNext();
  await processWindow(windowOf([exampleEvent]), world.deps);
  assert.deepEqual(failed, ["dedup-check", "read-state", "read-state", "write-completions"]);
  const rows = world.progress.consumption.get("U-1|C1|B1")!;
  assert.equal(rows.get("R3")!.viewCount, 3);
  assert.equal(world.progress.enrolments.get("U-1|C1|B1")!.status, 2);
  assert.equal(world.sink.on("cert").length, 1);
  assert.equal(world.dedup.checksums.length, 2);
});

Deno.test("an enrolment a store rejects fails alone, naming its last message; the window goes on", async () => {
  const world = stubWorld({ sets: exampleSets() });
  const users = ["U-1", "U-2", "U-3", "U-4"];
  for (const userId of users) world.progress.seedEnrolment({ ...EXAMPLE_KEY, userId }, 1);
  const writeProgress = world.progress.writeProgress.bind(world.progress);
  world.progress.writeProgress = (writes) =>
    writes.counters.some((c) => c.key.userId === "U-3")
      ? Promise.reject(new InputRejectedError("cassandra: Key length of 70000 is too long"))
      : writeProgress(writes);
  const events = users.flatMap((userId) => [
    enrolmentUpdate({ ...EXAMPLE_KEY, userId }, [{ contentId: "R1", status: 2 }]),
    enrolmentUpdate({ ...EXAMPLE_KEY, userId }, [{ contentId: "R2", status: 2 }]),
  ]);
  const summary = await processWindow(windowOf(events), world.deps);

  assert.equal(summary.processed, 3);
  assert.equal(summary.failedEnrolments, 1);
  const [failed] = world.sink.on("failed");
  assert.equal((failed.edata as { userId: string }).userId, "U-3");
  assert.deepEqual(failed.failure, {
    reason: "InputRejectedError: cassandra: Key length of 70000 is too long",
    stage: "write-counters",
    source: { topic: "input", partition: 0, offset: "5" },
    at: world.clock.now(),
    job: "activity-aggregate-updater",
  });
  for (const userId of ["U-1", "U-2", "U-4"]) {
    assert.equal(world.progress.aggregate("C1", "B1", userId), 2, userId);
  }
  // Checksums for the three applied enrolments only: U-3 is processed again on replay.
  assert.equal(world.dedup.checksums.length, 6);
  assert.ok(
    !world.dedup.keys.has(unitChecksum({ ...EXAMPLE_KEY, userId: "U-3", contentId: "R1" })),
  );
});

Deno.test("a sync request recomputes progress from stored rows: no counters, no content events", async () => {
  const world = exampleWorld();
  for (const contentId of ["R2", "R3"]) {
    world.progress.seedConsumption(EXAMPLE_KEY, {
      contentId,
      status: 2,
      viewCount: 1,
      completedCount: 1,
    });
  }
  const sync = { eid: "BE_JOB_REQUEST", edata: { action: "user-enrolment-sync", ...EXAMPLE_KEY } };
  const summary = await processWindow(windowOf([sync], { topic: "sync" }), world.deps);

  assert.equal(summary.syncRequests, 1);
  assert.equal(summary.completions, 1);
  assert.deepEqual(world.progress.writeLog[0].counters, []);
  assert.equal(world.progress.aggregate("C1", "B1", "U-1"), 3);
  const enrolment = world.progress.enrolments.get("U-1|C1|B1")!;
  assert.deepEqual([enrolment.status, enrolment.progress], [2, 3]);
  assert.deepEqual(
    world.sink.on("audit").map(edataType),
    ["enrol-complete"],
    "no content AUDIT events",
  );
  assert.equal(world.sink.on("cert").length, 1);
  assert.equal(world.dedup.checksums.length, 0, "a sync stores no checksum");
});

Deno.test("a failed sync request is re-published as a sync request, which then reconciles", async () => {
  const world = stubWorld({ statuses: { C1: "Live" } });
  world.progress.seedEnrolment(EXAMPLE_KEY, 1);
  for (const row of EXAMPLE_ROWS) world.progress.seedConsumption(EXAMPLE_KEY, row);
  const sync = { eid: "BE_JOB_REQUEST", edata: { action: "user-enrolment-sync", ...EXAMPLE_KEY } };
  await processWindow(windowOf([sync], { topic: "sync" }), world.deps);
  const [failed] = world.sink.on("failed");
  assert.deepEqual(failed.edata, { action: "user-enrolment-sync", ...EXAMPLE_KEY });
  assert.equal((failed.failure as { source: { topic: string } }).source.topic, "sync");

  for (const [k, v] of Object.entries(exampleSets())) world.relations.sets.set(k, v);
  const summary = await processWindow(windowOf([failed], { topic: "sync" }), world.deps);
  assert.equal(summary.processed, 1);
  assert.equal(world.progress.enrolments.get("U-1|C1|B1")!.progress, 1);
});

Deno.test("a crash after the certificate is acknowledged but before status 2: the replay sends no second one", async () => {
  const world = exampleWorld();
  const write = world.progress.writeEnrolments.bind(world.progress);
  world.progress.writeEnrolments = () => Promise.reject(new AbortedError("SIGKILL"));
  await assert.rejects(processWindow(windowOf([exampleEvent]), world.deps), AbortedError);
  assert.equal(world.sink.on("cert").length, 1);
  assert.equal(world.progress.enrolments.get("U-1|C1|B1")!.status, 1);
  assert.ok(world.dedup.keys.has(certificateMarker(EXAMPLE_KEY)), "the acknowledgement is marked");

  world.progress.writeEnrolments = write;
  const summary = await processWindow(windowOf([exampleEvent]), world.deps);
  assert.equal(summary.completions, 1);
  assert.equal(summary.certificates, 0);
  assert.equal(world.sink.on("cert").length, 1, "no second certificate");
  assert.equal(
    world.sink.on("audit").filter((a) => edataType(a) === "enrol-complete").length,
    1,
  );
  assert.equal(world.progress.enrolments.get("U-1|C1|B1")!.status, 2);
});
