import assert from "node:assert/strict";
import { parseMessage, parseSyncRequest } from "../../lib/event.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const parse = (value: unknown) => parseMessage(bytes(JSON.stringify(value)));
const edata = (fields: Record<string, unknown>) => ({
  edata: {
    action: "batch-enrolment-update",
    userId: "U-1",
    courseId: "C1",
    batchId: "B1",
    ...fields,
  },
});

Deno.test("a value that is not JSON fails, keeping the text", () => {
  const result = parseMessage(bytes("{not json"));
  assert.equal(result.kind, "failed");
  assert.match((result as { reason: string }).reason, /not JSON/);
  assert.deepEqual((result as { original: unknown }).original, "{not json");
});

Deno.test("an empty or missing value fails", () => {
  assert.equal(parseMessage(null).kind, "failed");
  assert.equal(parseMessage(new Uint8Array()).kind, "failed");
});

Deno.test("a value that is not UTF-8 fails", () => {
  const result = parseMessage(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]));
  assert.equal(result.kind, "failed");
  assert.match((result as { reason: string }).reason, /UTF-8/);
});

Deno.test("JSON that is not an object fails", () => {
  for (const value of ["[1,2]", "42", '"text"', "null"]) {
    const result = parseMessage(bytes(value));
    assert.equal(result.kind, "failed", value);
    assert.match((result as { reason: string }).reason, /not a JSON object/);
  }
});

Deno.test("an object without an edata object fails", () => {
  for (const value of [{}, { edata: "x" }, { edata: [] }, { edata: null }]) {
    const result = parse(value);
    assert.equal(result.kind, "failed");
    assert.match((result as { reason: string }).reason, /edata/);
    assert.deepEqual((result as { original: unknown }).original, value);
  }
});

Deno.test("another action is skipped, and the action matches case-insensitively", () => {
  assert.equal(parse(edata({ action: "issue-certificate" })).kind, "skipped");
  assert.equal(parse(edata({ action: undefined })).kind, "skipped");
  const upper = parse(
    edata({ action: "BATCH-ENROLMENT-UPDATE", contents: [{ contentId: "R1", status: 2 }] }),
  );
  assert.equal(upper.kind, "units");
});

Deno.test("a missing, empty or non-string userId, courseId or batchId fails naming the field", () => {
  for (const field of ["userId", "courseId", "batchId"]) {
    for (const bad of [undefined, "", "  ", 7, null]) {
      const result = parse(edata({ [field]: bad, contents: [{ contentId: "R1", status: 2 }] }));
      assert.equal(result.kind, "failed", `${field}=${bad}`);
      assert.match((result as { reason: string }).reason, new RegExp(`edata\\.${field}`));
    }
  }
});

Deno.test("no content with status 2 and a non-blank contentId is a skip", () => {
  const cases = [
    undefined,
    "nope",
    [],
    [{ contentId: "R1", status: 1 }],
    [{ contentId: "R1", status: "2" }],
    [{ contentId: "", status: 2 }, { contentId: "  ", status: 2 }],
    [{ contentId: 5, status: 2 }, null, "R1"],
  ];
  for (const contents of cases) {
    const result = parse(edata({ contents }));
    assert.equal(result.kind, "skipped", JSON.stringify(contents));
  }
});

Deno.test("each completed entry becomes a unit; others are ignored", () => {
  const result = parse(edata({
    contents: [
      { contentId: "R2", status: 2 },
      { contentId: "R3", status: 2, extra: true },
      { contentId: "R4", status: 1 },
      { contentId: "R2", status: 2 },
    ],
  }));
  assert.deepEqual(result, {
    kind: "units",
    key: { userId: "U-1", courseId: "C1", batchId: "B1" },
    units: ["R2", "R3", "R2"].map((contentId) => ({
      userId: "U-1",
      courseId: "C1",
      batchId: "B1",
      contentId,
    })),
  });
});

Deno.test("an identifier in use longer than 512 UTF-8 bytes fails the message, naming the field", () => {
  const long = "é".repeat(257); // 514 bytes in 257 characters
  for (const field of ["userId", "courseId", "batchId"]) {
    const result = parse(edata({ [field]: long, contents: [{ contentId: "R1", status: 2 }] }));
    assert.equal(result.kind, "failed");
    assert.equal((result as { reason: string }).reason, `identifier too long: ${field}`);
  }
  const unitId = parse(edata({ contents: [{ contentId: "x".repeat(513), status: 2 }] }));
  assert.equal((unitId as { reason: string }).reason, "identifier too long: contentId");
  // Exactly 512 bytes is allowed, and entries that do not become units are not checked.
  const atLimit = parse(edata({
    userId: "€".repeat(170) + "xx", // 3 * 170 + 2 = 512 bytes
    contents: [{ contentId: "R1", status: 2 }, { contentId: "y".repeat(100_000), status: 1 }],
  }));
  assert.equal(atLimit.kind, "units");
});

Deno.test("a sync request names its enrolment; another action is skipped, a bad id fails", () => {
  const sync = (e: Record<string, unknown>) =>
    parseSyncRequest(new TextEncoder().encode(JSON.stringify({ eid: "BE_JOB_REQUEST", edata: e })));
  const ids = { userId: "U-1", courseId: "C1", batchId: "B1" };
  assert.deepEqual(sync({ action: "user-enrolment-sync", ...ids }), { kind: "sync", key: ids });
  assert.equal(sync({ action: "batch-enrolment-update", ...ids }).kind, "skipped");
  const failed = sync({ action: "user-enrolment-sync", ...ids, batchId: 7 });
  assert.equal(failed.kind, "failed");
  assert.match((failed as { reason: string }).reason, /edata\.batchId/);
});
