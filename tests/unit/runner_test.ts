import assert from "node:assert/strict";
import { enrolmentUpdate } from "../../lib/event.ts";
import { emptySummary, processWindow } from "../../lib/pipeline.ts";
import { Runner, type RunnerDeps } from "../../lib/runner.ts";
import type { Window } from "../../lib/window.ts";
import { EXAMPLE_KEY, exampleSets } from "../fixtures.ts";
import { FakeClock, MemorySource, Outage, stubWorld } from "../stubs.ts";

/** A runner whose windows are recorded, and processed when the test says so. */
function recordingRunner(limits = { maxUnits: 3, maxWaitMs: 1000 }) {
  const source = new MemorySource();
  const clock = new FakeClock();
  const windows: Window[] = [];
  const gates: PromiseWithResolvers<void>[] = [];
  const { metrics } = stubWorld();
  const runner = new Runner({
    source,
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
function oneUnitRunner(process: RunnerDeps["process"]) {
  const source = new MemorySource();
  const runner = new Runner({
    source,
    clock: new FakeClock(),
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

Deno.test("a window closes when it holds THRESHOLD_BATCH_READ_SIZE units", async () => {
  const { source, windows, gates, runner } = recordingRunner();
  runner.run();
  await source.deliver(unit("R1"));
  await source.deliver(unit("R2"));
  assert.equal(windows.length, 0);
  await source.deliver(unit("R3"));
  await settle();
  assert.equal(windows.length, 1);
  assert.deepEqual(windows[0].units.map((u) => u.contentId), ["R1", "R2", "R3"]);
  assert.equal(source.commits.length, 0, "nothing committed before the window is durable");
  gates[0].resolve();
  await runner.idle();
  assert.deepEqual(source.committed(), new Map([[0, "3"]]));
});

Deno.test("a window closes when its oldest message has waited THRESHOLD_BATCH_READ_INTERVAL", async () => {
  const { source, clock, windows, gates, runner } = recordingRunner();
  runner.run();
  await source.deliver(unit("R1"));
  clock.advance(600);
  await source.deliver(unit("R2"));
  clock.advance(399);
  await settle();
  assert.equal(windows.length, 0);
  clock.advance(1);
  await settle();
  assert.equal(windows.length, 1);
  assert.equal(windows[0].units.length, 2);
  gates[0].resolve();
  await runner.idle();
  assert.deepEqual(source.committed(), new Map([[0, "2"]]));
  assert.equal(clock.pending, 0);
});

Deno.test("skipped and failed messages are committed with their window", async () => {
  const { source, clock, windows, gates, runner } = recordingRunner();
  runner.run();
  await source.deliver({ edata: { action: "other" } });
  await source.deliver("garbage");
  clock.advance(1000);
  await settle();
  assert.equal(windows.length, 1);
  assert.equal(windows[0].units.length, 0);
  gates[0].resolve();
  await runner.idle();
  assert.deepEqual(source.committed(), new Map([[0, "2"]]));
});

Deno.test("windows are processed one at a time, in order, and commit in order", async () => {
  const { source, windows, gates, runner } = recordingRunner({ maxUnits: 1, maxWaitMs: 1000 });
  runner.run();
  await source.deliver(unit("R1"), { partition: 0 });
  const second = source.deliver(unit("R2", "U-2"), { partition: 1 });
  await settle();
  assert.equal(windows.length, 1, "the second window waits for the first");
  gates[0].resolve();
  await settle();
  assert.equal(windows.length, 2);
  assert.deepEqual(source.commits, [[{ topic: "input", partition: 0, offset: "1" }]]);
  gates[1].resolve();
  await second;
  await runner.idle();
  assert.deepEqual(source.committed(), new Map([[0, "1"], [1, "1"]]));
});

Deno.test("consumption waits while a closed window queues behind the one in flight", async () => {
  const { source, gates, runner } = recordingRunner({ maxUnits: 1, maxWaitMs: 1000 });
  runner.run();
  await source.deliver(unit("R1")); // in flight
  let thirdTaken = false;
  const second = source.deliver(unit("R2")); // closed, queued
  await settle();
  second.then(() => thirdTaken = true);
  await settle();
  assert.equal(thirdTaken, false, "the loop is held back");
  gates[0].resolve();
  await settle();
  assert.equal(thirdTaken, true);
  gates[1]?.resolve();
  await runner.idle();
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
  await source.deliver(unit("R1"));
  const stopping = runner.stop(5000);
  await settle();
  assert.equal(windows.length, 1);
  assert.equal(source.paused, true);
  await source.deliver(unit("R2"));
  gates[0].resolve();
  await stopping;
  await running;
  assert.deepEqual(source.committed(), new Map([[0, "1"]]));
  assert.equal(windows.length, 1);
});

Deno.test("stop abandons a window stuck in an outage after the timeout, uncommitted", async () => {
  const source = new MemorySource();
  const world = stubWorld({ sets: exampleSets() });
  world.progress.seedEnrolment(EXAMPLE_KEY, 1);
  world.dedup.failNext(1_000_000);
  const runner = new Runner({
    source,
    clock: world.clock,
    limits: { maxUnits: 1, maxWaitMs: 1000 },
    metrics: world.metrics,
    process: (window, signal) =>
      processWindow(window, {
        ...world.deps,
        retry: async (_stage, fn) => {
          for (;;) {
            signal.throwIfAborted();
            try {
              return await fn();
            } catch (error) {
              if (!(error instanceof Outage)) throw error;
              await new Promise((r) => setTimeout(r, 1));
            }
          }
        },
      }),
  });
  const running = runner.run();
  await source.deliver(unit("R1"));
  await runner.stop(20);
  await running;
  assert.equal(source.commits.length, 0);
  assert.equal(world.progress.writeLog.length, 0);
});

Deno.test("abort ends the loop with the error and commits nothing in flight", async () => {
  const { source, runner } = oneUnitRunner((_window, signal) =>
    new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)))
  );
  const running = runner.run();
  await source.deliver(unit("R1"));
  runner.abort(new Error("the Kafka consumer stopped"));
  await assert.rejects(running, /consumer stopped/);
  await runner.idle();
  assert.equal(source.commits.length, 0);
  assert.equal(source.paused, true);
});
