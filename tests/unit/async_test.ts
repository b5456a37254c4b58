import assert from "node:assert/strict";
import {
  AbortedError,
  allSettled,
  backoffDelay,
  deadline,
  DeadlineError,
  delay,
  isRetriable,
  mapConcurrent,
  retryWithBackoff,
} from "../../lib/async.ts";
import { InputRejectedError, PermanentError } from "../../lib/ports.ts";
import { FakeClock, Outage } from "../support/stubs.ts";

/** Lets pending promise callbacks run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("backoff doubles from initialMs up to maxMs, jittered over the upper half", () => {
  const policy = { initialMs: 100, maxMs: 1000 };
  const low = (attempt: number) => backoffDelay(attempt, { ...policy, random: () => 0 });
  const high = (attempt: number) => backoffDelay(attempt, { ...policy, random: () => 1 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(high), [100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(low), [50, 100, 200, 400, 500, 500]);
  assert.equal(backoffDelay(3, { ...policy, random: () => 0.5 }), 300);
});

Deno.test("a passing error is retried on the clock until it goes through; success is reported", async () => {
  const clock = new FakeClock();
  const failures: number[] = [];
  const successes: [string, number][] = [];
  let calls = 0;
  const retry = retryWithBackoff({
    initialMs: 100,
    maxMs: 1000,
    clock,
    random: () => 1,
    onFailure: (_stage, _error, attempt, delayMs) => failures.push(attempt * 10_000 + delayMs),
    onSuccess: (stage, attempts) => successes.push([stage, attempts]),
  });
  const result = retry("read-state", () => {
    calls++;
    return calls < 3 ? Promise.reject(new Outage("down")) : Promise.resolve("ok");
  });
  await settle();
  assert.equal(calls, 1);
  clock.advance(99);
  await settle();
  assert.equal(calls, 1, "waits the whole backoff");
  clock.advance(1);
  await settle();
  assert.equal(calls, 2);
  clock.advance(200);
  assert.equal(await result, "ok");
  assert.deepEqual(failures, [10_100, 20_200]);
  assert.deepEqual(successes, [["read-state", 3]]);
});

Deno.test("errors no wait can cure are thrown at once", async () => {
  for (const error of [new PermanentError("no such table"), new InputRejectedError("too long")]) {
    let calls = 0;
    const retry = retryWithBackoff({ initialMs: 1, maxMs: 1, clock: new FakeClock() });
    await assert.rejects(
      retry("s", () => {
        calls++;
        return Promise.reject(error);
      }),
      (e) => e === error,
    );
    assert.equal(calls, 1);
  }
});

Deno.test("a bounded retry throws the last error after maxAttempts", async () => {
  const clock = new FakeClock();
  let calls = 0;
  const retry = retryWithBackoff({ initialMs: 10, maxMs: 10, maxAttempts: 3, clock });
  const result = retry("search", () => Promise.reject(new Outage(`attempt ${++calls}`)))
    .catch((error) => error);
  for (let i = 0; i < 3; i++) {
    await settle();
    clock.advance(10);
  }
  assert.match(String(await result), /attempt 3/);
  assert.equal(calls, 3);
});

Deno.test("aborting during a wait abandons the work with an AbortedError", async () => {
  const clock = new FakeClock();
  const controller = new AbortController();
  const retry = retryWithBackoff({
    initialMs: 1000,
    maxMs: 1000,
    clock,
    signal: controller.signal,
  });
  const result = retry("write-progress", () => Promise.reject(new Outage("down")))
    .catch((error) => error);
  await settle();
  assert.equal(clock.pending, 1);
  controller.abort(new Error("shutdown timeout"));
  assert.ok(await result instanceof AbortedError);
  assert.equal(clock.pending, 0, "the timer is cancelled");
  await assert.rejects(delay(10, { clock, signal: controller.signal }), AbortedError);
});

Deno.test("mapConcurrent keeps order and never runs more than its limit at once", async () => {
  let running = 0;
  let most = 0;
  const result = await mapConcurrent([5, 1, 4, 2, 3], 2, async (n) => {
    running++;
    most = Math.max(most, running);
    await settle();
    running--;
    return n * 10;
  });
  assert.deepEqual(result, [50, 10, 40, 20, 30]);
  assert.equal(most, 2);
});

Deno.test("deadline rejects late work with a retriable error naming it, and leaves no timer behind", async () => {
  const clock = new FakeClock();
  let finish!: (value: string) => void;
  const late = deadline(new Promise<string>((resolve) => finish = resolve), 5000, {
    what: "redis round trip",
    clock,
  });
  clock.advance(4999);
  const early = deadline(Promise.resolve("ok"), 5000, { what: "other", clock });
  assert.equal(await early, "ok");
  clock.advance(1);
  await assert.rejects(late, (error) => {
    assert.ok(error instanceof DeadlineError);
    assert.match((error as Error).message, /redis round trip took more than 5000 ms/);
    assert.ok(isRetriable(error));
    return true;
  });
  finish("too late");
  const failing = deadline(Promise.reject(new Error("boom")), 5000, { what: "x", clock });
  await assert.rejects(failing, /boom/);
  assert.equal(clock.pending, 0);
});

Deno.test("allSettled passes a rejection on only after the other work has ended", async () => {
  const slow = Promise.withResolvers<string>();
  let settled = false;
  const all = allSettled([Promise.reject(new Error("first")), slow.promise]).catch((e) => {
    settled = true;
    throw e;
  });
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(settled, false, "rejected while the other was still running");
  slow.resolve("late");
  await assert.rejects(all, /first/);
  assert.deepEqual(await allSettled([Promise.resolve(1), Promise.resolve("two")]), [1, "two"]);
});
