import assert from "node:assert/strict";
import { enrolmentUpdate } from "../../lib/event.ts";
import { emptySummary, processWindow } from "../../lib/pipeline.ts";
import { Runner, type RunnerDeps } from "../../lib/runner.ts";
import type { Window } from "../../lib/window.ts";
import { AbortedError } from "../../lib/async.ts";
import { EXAMPLE_KEY, exampleSets } from "../support/fixtures.ts";
import { FakeClock, MemorySource, parseInput, stubWorld } from "../support/stubs.ts";

/** A runner whose windows are recorded, and processed when the test says so. */
function recordingRunner(limits = { maxUnits: 3, maxWaitMs: 1000 }) {
  const source = new MemorySource();
  const clock = new FakeClock();
  const windows: Window[] = [];
  const gates: PromiseWithResolvers<void>[] = [];
  const { metrics } = stubWorld();
  const runner = new Runner({
    source,
    parse: parseInput,
    clock,
    limits,
    metrics,
    process: async (window) => {
      windows.push(window);
      const gate = Promise.withResolvers<void>();
      gates.push(gate);
      await gate.promise;
      return emptySummary(window);
    },
  });
  return { source, clock, windows, gates, runner, metrics };
}

/** A runner of one-unit windows that `process` handles. */
function oneUnitRunner(process: RunnerDeps["process"], clock = new FakeClock()) {
  const source = new MemorySource();
  const runner = new Runner({
    source,
    parse: parseInput,
    clock,
    limits: { maxUnits: 1, maxWaitMs: 1000 },
    metrics: stubWorld().metrics,
    process,
  });
  return { source, runner };
}

const unit = (contentId: string, userId = "U-1") =>
  enrolmentUpdate({ ...EXAMPLE_KEY, userId }, [{ contentId, status: 2 }]);

/** Lets pending promise callbacks run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Tracks whether a promise has resolved. */
function track(promise: Promise<unknown>) {
  const state = { done: false };
  promise.then(() => state.done = true);
  return state;
}

Deno.test("with nothing in flight, a window closes at once instead of waiting", async () => {
  const { source, windows, gates, runner } = recordingRunner();
  runner.run();
  source.deliver(unit("R1"));
  await settle();
  assert.equal(windows.length, 1, "no timer needed");
  assert.equal(source.commits.length, 0);
  gates[0].resolve();
  await settle();
  assert.deepEqual(source.committed(), new Map([[0, "1"]]));
});

Deno.test("a batch is handed back once taken; a rebalance waits until every message taken is committed", async () => {
  const { source, windows, gates, runner } = recordingRunner();
  runner.run();
  await source.deliver(unit("R1"), { partition: 0 });
  await settle();
  await source.deliver(unit("R2"), { partition: 1 });
  assert.equal(source.commits.length, 0, "both batches handed back before any commit");
  assert.equal(windows.length, 1, "R1 in flight");
  assert.equal(runner.openWindow.units, 1, "R2 in the open window");
  const rebalanced = track(source.rebalance());
  gates[0].resolve();
  await settle();
  assert.equal(windows.length, 2);
  assert.equal(rebalanced.done, false, "R2 is not committed yet");
  gates[1].resolve();
  await settle();
  assert.equal(rebalanced.done, true);
  assert.deepEqual(source.committed(), new Map([[0, "1"], [1, "1"]]));
});

Deno.test("a rebalance waits for the windows taken before it, not for messages that keep arriving", async () => {
  const { source, windows, gates, runner } = recordingRunner({ maxUnits: 1, maxWaitMs: 1000 });
  runner.run();
  source.deliver(unit("R1"));
  await settle();
  const rebalanced = track(source.rebalance());
  // Another fetcher's batches, handed over while the join waits.
  source.deliver([unit("R2"), unit("R3")], { partition: 1 });
  await settle();
  gates[0].resolve();
  await settle();
  assert.equal(windows.length, 2, "R2 in flight");
  assert.equal(rebalanced.done, true, "held up by a window closed after it began");
  assert.deepEqual(source.committed(), new Map([[0, "1"]]));
  gates[1].resolve();
  await settle();
  gates[2].resolve();
  await runner.idle();
});

Deno.test("a rebalance closes the open window at once instead of waiting for its timer", async () => {
  const { source, clock, windows, gates, runner } = recordingRunner();
  runner.run();
  source.deliver(unit("R0"));
  await settle();
  source.deliver(unit("R1"));
  const rebalanced = source.rebalance();
  await settle();
  assert.equal(runner.openWindow.units, 0, "closed without the clock moving");
  gates[0].resolve();
  await settle();
  gates[1].resolve();
  await rebalanced;
  assert.deepEqual(windows.map((w) => w.units.map((u) => u.contentId)), [["R0"], ["R1"]]);
  assert.equal(clock.pending, 0);
});

Deno.test("while a window is in flight, the next closes when it holds THRESHOLD_BATCH_READ_SIZE units", async () => {
  const { source, windows, gates, runner } = recordingRunner();
  runner.run();
  source.deliver(unit("R0"));
  await settle();
  source.deliver([unit("R1"), unit("R2")]);
  await settle();
  assert.equal(runner.openWindow.units, 2);
  source.deliver(unit("R3"));
  await settle();
  assert.equal(runner.openWindow.units, 0, "closed at 3 units");
  gates[0].resolve();
  await settle();
  assert.deepEqual(windows[1].units.map((u) => u.contentId), ["R1", "R2", "R3"]);
  gates[1].resolve();
  await runner.idle();
  assert.deepEqual(source.committed(), new Map([[0, "4"]]));
});

Deno.test("while a window is in flight, the next closes when its oldest message has waited THRESHOLD_BATCH_READ_INTERVAL", async () => {
  const { source, clock, windows, gates, runner } = recordingRunner();
  runner.run();
  source.deliver(unit("R0"));
  await settle();
  source.deliver(unit("R1"));
  clock.advance(600);
  source.deliver(unit("R2"));
  clock.advance(399);
  await settle();
  assert.equal(runner.openWindow.units, 2);
  clock.advance(1);
  assert.equal(runner.openWindow.units, 0);
  gates[0].resolve();
  await settle();
  assert.equal(windows[1].units.length, 2);
  gates[1].resolve();
  await runner.idle();
  assert.deepEqual(source.committed(), new Map([[0, "3"]]));
  assert.equal(clock.pending, 0);
});

Deno.test("a batch handed over while nothing is in flight makes one window, failed and skipped messages included", async () => {
  const { source, windows, gates, runner } = recordingRunner();
  runner.run();
  source.deliver([{ edata: { action: "other" } }, "garbage", unit("R1")]);
  await settle();
  assert.equal(windows.length, 1);
  assert.equal(windows[0].messages.length, 3);
  gates[0].resolve();
  await source.rebalance();
  assert.deepEqual(source.committed(), new Map([[0, "3"]]));
});

Deno.test("batches of several partitions handed over in one turn make one window", async () => {
  const { source, windows, gates, runner } = recordingRunner({ maxUnits: 10, maxWaitMs: 1000 });
  runner.run();
  // As KafkaJS hands over one fetch: every partition's batch to a worker of
  // its own, a few promise hops apart.
  const delivered = [];
  for (const partition of [0, 1, 2]) {
    delivered.push(source.deliver(unit(`R${partition}`, `U-${partition}`), { partition }));
    for (let hop = 0; hop < 10; hop++) await Promise.resolve();
  }
  await settle();
  assert.equal(windows.length, 1);
  assert.deepEqual(windows[0].messages.map((m) => m.message.partition), [0, 1, 2]);
  await Promise.all(delivered);
  gates[0].resolve();
  await source.rebalance();
  assert.deepEqual(source.committed(), new Map([[0, "1"], [1, "1"], [2, "1"]]));
});

Deno.test("windows are processed one at a time, in order, and commit in order", async () => {
  const { source, windows, gates, runner } = recordingRunner({ maxUnits: 1, maxWaitMs: 1000 });
  runner.run();
  source.deliver(unit("R1"), { partition: 0 });
  source.deliver(unit("R2", "U-2"), { partition: 1 });
  await settle();
  assert.equal(windows.length, 1, "the second window waits for the first");
  gates[0].resolve();
  await settle();
  assert.equal(windows.length, 2);
  assert.deepEqual(source.commits, [[{ topic: "input", partition: 0, offset: "1" }]]);
  gates[1].resolve();
  await source.rebalance();
  assert.deepEqual(source.committed(), new Map([[0, "1"], [1, "1"]]));
});

Deno.test("consumption waits while a closed window queues behind the one in flight", async () => {
  const { source, windows, gates, runner } = recordingRunner({ maxUnits: 1, maxWaitMs: 1000 });
  runner.run();
  source.deliver([unit("R1"), unit("R2"), unit("R3")]);
  await settle();
  // R1 in flight, R2 closed and queued: R3 is not taken yet.
  assert.equal(windows.length, 1);
  assert.equal(runner.openWindow.units, 0);
  gates[0].resolve();
  await settle();
  assert.equal(windows.length, 2);
  gates[1].resolve();
  await settle();
  gates[2].resolve();
  await runner.idle();
  assert.deepEqual(windows.map((w) => w.units[0].contentId), ["R1", "R2", "R3"]);
});

Deno.test("a window that fails is not committed and stops the runner", async () => {
  const { source, runner } = oneUnitRunner(() =>
    Promise.reject(new Error("permanent: no such table"))
  );
  const running = runner.run();
  await source.deliver(unit("R1"));
  await assert.rejects(running, /no such table/);
  assert.equal(source.commits.length, 0);
  assert.equal(source.paused, true);
});

Deno.test("stop processes the open window, commits it, and takes no more messages", async () => {
  const { source, windows, gates, runner } = recordingRunner();
  const running = runner.run();
  source.deliver(unit("R0"));
  await settle();
  source.deliver(unit("R1"));
  const stopping = runner.stop(5000);
  await settle();
  assert.equal(source.paused, true);
  await source.deliver(unit("R2")); // after the stop: left uncommitted, settled at once
  gates[0].resolve();
  await settle();
  gates[1].resolve();
  await stopping;
  await running;
  assert.deepEqual(source.committed(), new Map([[0, "2"]]));
  assert.equal(windows.length, 2);
});

Deno.test("stop abandons a window stuck in an outage after the timeout, uncommitted", async () => {
  const source = new MemorySource();
  const world = stubWorld({ sets: exampleSets() });
  world.progress.seedEnrolment(EXAMPLE_KEY, 1);
  world.dedup.failNext(1_000_000);
  const runner = new Runner({
    source,
    parse: parseInput,
    clock: world.clock,
    limits: { maxUnits: 1, maxWaitMs: 1000 },
    metrics: world.metrics,
    process: (window, signal) =>
      processWindow(window, {
        ...world.deps,
        isolate: {
          ...world.deps.isolate,
          wait: () =>
            new Promise((resolve, reject) => {
              if (signal.aborted) reject(new AbortedError("abandoned"));
              else setTimeout(resolve, 1);
            }),
        },
      }),
  });
  const running = runner.run();
  const delivered = source.deliver(unit("R1"));
  const stopped = runner.stop(20);
  await settle();
  world.clock.advance(20);
  await stopped;
  await running;
  await delivered;
  assert.equal(source.commits.length, 0);
  assert.equal(world.progress.writeLog.length, 0);
});

Deno.test("abort ends the loop with the error and commits nothing in flight", async () => {
  const { source, runner } = oneUnitRunner((_window, signal) =>
    new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)))
  );
  const running = runner.run();
  const delivered = source.deliver(unit("R1"));
  await settle();
  runner.abort(new Error("the Kafka consumer stopped"));
  await assert.rejects(running, /consumer stopped/);
  await delivered;
  await runner.idle();
  assert.equal(source.commits.length, 0);
  assert.equal(source.paused, true);
});

Deno.test("afterWindow runs once per window, after its commit, with the next window started", async () => {
  const source = new MemorySource();
  const gates: PromiseWithResolvers<void>[] = [];
  const seen: { commits: number; started: number }[] = [];
  let hookRan = Promise.withResolvers<void>();
  const runner = new Runner({
    source,
    parse: parseInput,
    clock: new FakeClock(),
    limits: { maxUnits: 1, maxWaitMs: 1000 },
    metrics: stubWorld().metrics,
    process: async (window) => {
      const gate = Promise.withResolvers<void>();
      gates.push(gate);
      await gate.promise;
      return emptySummary(window);
    },
    afterWindow: () => {
      seen.push({ commits: source.commits.length, started: gates.length });
      hookRan.resolve();
    },
  });
  runner.run();
  const delivered = source.deliver([unit("R1"), unit("R2")]);
  gates[0].resolve();
  await hookRan.promise;
  hookRan = Promise.withResolvers<void>();
  gates[1].resolve();
  await delivered;
  await hookRan.promise;
  assert.deepEqual(seen, [{ commits: 1, started: 2 }, { commits: 2, started: 2 }]);
  await runner.stop(1000);
});
