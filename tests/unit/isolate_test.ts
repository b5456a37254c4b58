import assert from "node:assert/strict";
import { AbortedError, type Retry } from "../../lib/async.ts";
import { ATTEMPTS_BEFORE_SPLIT, runIsolated } from "../../lib/isolate.ts";
import { InputRejectedError, PermanentError } from "../../lib/ports.ts";
import { immediateRetry, isolateWith, Outage } from "../support/stubs.ts";

const items = Array.from({ length: 16 }, (_, i) => i);

/** A stage that records each subset it is called with and fails as `fails` says. */
function stage(fails: (subset: number[], call: number) => Error | null) {
  const calls: number[][] = [];
  const applied = new Set<number>();
  const fn = (subset: number[]) => {
    calls.push(subset);
    const error = fails(subset, calls.length);
    if (error) return Promise.reject(error);
    subset.forEach((i) => applied.add(i));
    return Promise.resolve();
  };
  return { fn, calls, applied };
}

Deno.test("a stage that works runs once over all its items", async () => {
  const { fn, calls } = stage(() => null);
  const failed = await runIsolated("s", items, fn, isolateWith(immediateRetry([])));
  assert.equal(failed.size, 0);
  assert.deepEqual(calls, [items]);
});

Deno.test("an input error is narrowed down to its item; every other item is applied", async () => {
  const { fn, applied, calls } = stage((subset) =>
    subset.includes(11) ? new InputRejectedError("key too long") : null
  );
  const failed = await runIsolated("s", items, fn, isolateWith(immediateRetry([])));
  assert.deepEqual([...failed.keys()], [11]);
  assert.ok(failed.get(11) instanceof InputRejectedError);
  assert.deepEqual([...applied].sort((a, b) => a - b), items.filter((i) => i !== 11));
  // Halving: about 2·log2(16) calls, not one per item.
  assert.ok(calls.length <= 2 * Math.log2(items.length) + 1, `${calls.length} calls`);
});

Deno.test("a passing error that keeps coming back for one item fails it once others went through", async () => {
  const retried: string[] = [];
  const { fn, applied } = stage((subset) => subset.includes(3) ? new Outage("timed out") : null);
  const failed = await runIsolated("s", items, fn, isolateWith(immediateRetry(retried)));
  assert.deepEqual([...failed.keys()], [3]);
  assert.equal(applied.size, items.length - 1);
  assert.ok(retried.length >= ATTEMPTS_BEFORE_SPLIT - 1, "retried before it was split");
});

Deno.test("an outage of the whole service is waited out: nothing fails, everything is applied", async () => {
  let outage = true;
  const waits: number[] = [];
  const { fn, applied } = stage(() => outage ? new Outage("connection refused") : null);
  const failed = await runIsolated("s", items, fn, {
    ...isolateWith(immediateRetry([])),
    wait: (ms) => {
      waits.push(ms);
      if (waits.length === 5) outage = false;
      return Promise.resolve();
    },
  });
  assert.equal(failed.size, 0);
  assert.equal(applied.size, items.length);
  assert.equal(waits.length, 5);
  assert.ok(waits.every((ms, i) => i === 0 || ms >= waits[0] / 2), "backoff grows");
});

Deno.test("a poison item in an outage-like failure is failed once the next subset probes healthy", async () => {
  // Item 0 always fails; the rest fail only for a while (a service hiccup).
  let hiccup = true;
  const { fn, applied } = stage((subset) => {
    if (subset.includes(0) || hiccup) return new Outage("timed out");
    return null;
  });
  const failed = await runIsolated("s", [0, 1, 2, 3], fn, {
    ...isolateWith(immediateRetry([])),
    wait: () => {
      hiccup = false;
      return Promise.resolve();
    },
  });
  assert.deepEqual([...failed.keys()], [0]);
  assert.deepEqual([...applied].sort(), [1, 2, 3]);
});

Deno.test("a permanent error stops the stage at once", async () => {
  const { fn, calls } = stage(() => new PermanentError("no such table"));
  await assert.rejects(
    runIsolated("s", items, fn, isolateWith(immediateRetry([]))),
    PermanentError,
  );
  assert.equal(calls.length, 1);
});

Deno.test("an abandoned window ends the stage with the abort", async () => {
  const aborted: Retry = () => Promise.reject(new AbortedError("shutdown timeout"));
  await assert.rejects(
    runIsolated("s", items, () => Promise.resolve(), isolateWith(aborted)),
    AbortedError,
  );
});
