import assert from "node:assert/strict";
import { handleOpsRequest, Health } from "../../lib/http.ts";
import { JobMetrics } from "../../lib/metrics.ts";

/** The sample lines (no comments) of one metric in Prometheus text. */
function samples(text: string, name: string): string[] {
  return text.split("\n").filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
}

Deno.test("process memory comes from Deno.memoryUsage, the /proc readers are gone", async () => {
  const metrics = new JobMetrics({ processMetrics: true });
  const text = await metrics.text();
  const rss = samples(text, "process_resident_memory_bytes");
  assert.equal(rss.length, 1, text);
  assert.ok(Number(rss[0].split(" ")[1]) > 1_000_000, rss[0]);
  for (const gone of ["process_virtual_memory_bytes", "process_heap_bytes", "process_open_fds"]) {
    assert.deepEqual(samples(text, gone), [], gone);
  }
  // The rest of prom-client's defaults stay.
  assert.equal(samples(text, "nodejs_heap_size_used_bytes").length, 1);
});

Deno.test("/readyz is 503 during an outage and 200 once it ends; /healthz stays 200", async () => {
  const metrics = new JobMetrics();
  const health = new Health();
  const get = (path: string) =>
    handleOpsRequest(new Request(`http://localhost${path}`), { metrics, health });
  health.markConnected();
  assert.equal((await get("/readyz")).status, 200);
  health.setOutage("dedup-check", true, Date.UTC(2026, 0, 1));
  const down = await get("/readyz");
  assert.equal(down.status, 503);
  assert.deepEqual((await down.json()).reasons, [
    "outage in dedup-check since 2026-01-01T00:00:00.000Z",
  ]);
  assert.equal((await get("/healthz")).status, 200);
  health.setOutage("dedup-check", false);
  assert.equal((await get("/readyz")).status, 200);
  health.markStopping();
  assert.equal((await get("/readyz")).status, 503);
  assert.equal((await get("/nope")).status, 404);
});
