import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  cutUtf8,
  failedEnrolment,
  failedMessage,
  midHash,
  TRUNCATED_VALUE_BYTES,
} from "../../lib/output.ts";
import { EXAMPLE_KEY } from "../support/fixtures.ts";
import { sequentialIds } from "../support/stubs.ts";

const stamp = { now: 1_700_000_000_000, newId: sequentialIds() };
const source = { topic: "in", partition: 3, offset: "42" };
const failure = { reason: "edata is missing or not an object", stage: "input", source };
const bytes = (text: string) => new TextEncoder().encode(text);

Deno.test("a failed message keeps its fields and gains failure, naming its source", () => {
  const original = { eid: "X", edata: "nope" };
  const event = failedMessage({
    original,
    raw: bytes(JSON.stringify(original)),
    failure,
    maxBytes: 921_600,
  }, stamp);
  assert.deepEqual(event, {
    eid: "X",
    edata: "nope",
    failure: { ...failure, at: stamp.now, job: "activity-aggregate-updater" },
  });
});

Deno.test("a failed message too large for the limit takes the truncated form", () => {
  const text = "é".repeat(600_000); // 1.2 MB, not JSON
  const raw = bytes(text);
  const event = failedMessage({ original: text, raw, failure, maxBytes: 921_600 }, stamp);
  assert.equal(event.truncated, true);
  assert.equal(event.bytes, raw.length);
  assert.equal(event.sha256, createHash("sha256").update(raw).digest("hex"));
  assert.equal(event.value, "é".repeat(TRUNCATED_VALUE_BYTES / 2));
  assert.deepEqual((event.failure as { source: unknown }).source, source);
  assert.ok(bytes(JSON.stringify(event)).length < 100_000);
});

Deno.test("a failed message that cannot be serialised again takes the truncated form", () => {
  // Whether JSON nested thousands of levels deep overflows the serialiser's
  // stack depends on the stack left at the call; a BigInt fails the same way
  // on every machine.
  const original = { edata: { deep: [[[10n]]] } } as unknown as Record<string, unknown>;
  const raw = bytes('{"x":1}');
  const event = failedMessage({ original, raw, failure, maxBytes: 921_600 }, stamp);
  assert.equal(event.truncated, true);
  assert.equal(event.value, '{"x":1}');
  assert.doesNotThrow(() => JSON.stringify(event));
});

Deno.test("cutting UTF-8 keeps whole characters and replaces invalid bytes", () => {
  assert.equal(cutUtf8(bytes("aé€😀"), 3), "aé");
  assert.equal(cutUtf8(bytes("aé€😀"), 6), "aé€");
  assert.equal(cutUtf8(bytes("aé€😀"), 10), "aé€😀");
  assert.equal(cutUtf8(new Uint8Array([0x61, 0xff, 0x62]), 10), "a\uFFFDb");
  // A character split by the cut of the input itself is not half-kept.
  assert.equal(cutUtf8(bytes("😀😀"), 5), "😀");
});

Deno.test("a failed enrolment too large for one event is split into replayable requests", () => {
  const units = Array.from({ length: 300 }, (_, i) => ({
    ...EXAMPLE_KEY,
    contentId: `${"c".repeat(500)}-${i}`,
  }));
  const events = failedEnrolment({ key: EXAMPLE_KEY, units, failure, maxBytes: 100_000 }, stamp);
  assert.ok(events.length > 1);
  const contents = events.flatMap((e) =>
    (e.edata as { contents: { contentId: string }[] }).contents
  );
  assert.deepEqual(contents.map((c) => c.contentId), units.map((u) => u.contentId));
  for (const e of events) {
    assert.ok(bytes(JSON.stringify(e)).length <= 100_000);
    assert.equal((e.edata as { action: string }).action, "batch-enrolment-update");
    assert.deepEqual((e.failure as { source: unknown }).source, source);
  }
});

Deno.test("a mid's hash is the MD5 of the event's subject, grouped 8-4-4-4-12", () => {
  const hex = createHash("md5").update("U-1|C1|B1|R2|start").digest("hex");
  const h = midHash(EXAMPLE_KEY, "R2", "start");
  assert.equal(h.replaceAll("-", ""), hex);
  assert.match(h, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.notEqual(midHash(EXAMPLE_KEY, "R2", "complete"), h);
});
