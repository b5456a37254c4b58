import assert from "node:assert/strict";
import { parseMessage } from "../../lib/event.ts";

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
    units: ["R2", "R3", "R2"].map((contentId) => ({
      userId: "U-1",
      courseId: "C1",
      batchId: "B1",
      contentId,
    })),
  });
});
