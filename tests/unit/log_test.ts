import assert from "node:assert/strict";
import { jsonLine } from "../../lib/log.ts";

Deno.test("a log record is one JSON line with the values rendered unquoted", () => {
  const line = jsonLine({
    category: ["activity-aggregate-updater", "job"],
    level: "warning",
    message: ["", "dedup-check", " failed (attempt ", 3, ")"],
    rawMessage: "{stage} failed (attempt {attempt})",
    properties: { stage: "dedup-check", attempt: 3 },
    timestamp: Date.UTC(2026, 10, 25),
  });
  assert.ok(!line.includes("\n"));
  assert.deepEqual(JSON.parse(line), {
    "@timestamp": "2026-11-25T00:00:00.000Z",
    level: "WARN",
    message: "dedup-check failed (attempt 3)",
    logger: "activity-aggregate-updater.job",
    properties: { stage: "dedup-check", attempt: 3 },
  });
});
