import assert from "node:assert/strict";
import type cassandra from "cassandra-driver";
import { createClient, RECONNECT_MAX_DELAY_MS } from "../../lib/cassandra_client.ts";
import { loadConfig } from "../../lib/config.ts";

Deno.test("the driver retries a node that went down at least every RECONNECT_MAX_DELAY_MS", async () => {
  const client = createClient(loadConfig({}).cassandra);
  // The typings leave out the options the client keeps (with defaults filled in).
  const { options } = client as unknown as {
    options: cassandra.ClientOptions & { monitorReporting?: { enabled?: boolean } };
  };
  try {
    const schedule = options.policies!.reconnection!.newSchedule();
    const delays = Array.from({ length: 20 }, () => schedule.next().value as number);
    // The driver's default would reach ten minutes; jitter never exceeds the cap.
    assert.ok(delays.every((d) => d > 0 && d <= RECONNECT_MAX_DELAY_MS), String(delays));
    assert.ok(delays[0] <= 1000, `first retry after ${delays[0]} ms`);
    assert.ok(delays.at(-1)! >= RECONNECT_MAX_DELAY_MS * 0.85, String(delays));
    assert.equal(options.monitorReporting?.enabled, false);
  } finally {
    await client.shutdown();
  }
});
