import assert from "node:assert/strict";
import { unitChecksum } from "../../lib/checksum.ts";

Deno.test("the checksum matches SPEC §4's test vector", () => {
  assert.equal(
    unitChecksum({ courseId: "C1", batchId: "B1", userId: "U-1", contentId: "R2" }),
    "322336B1929A7EFC58D9DBDC919F2938",
  );
});

Deno.test("the checksum differs per content and is 32 upper-case hex digits", () => {
  const a = unitChecksum({ courseId: "C1", batchId: "B1", userId: "U-1", contentId: "R2" });
  const b = unitChecksum({ courseId: "C1", batchId: "B1", userId: "U-1", contentId: "R3" });
  assert.notEqual(a, b);
  assert.match(b, /^[0-9A-F]{32}$/);
});
