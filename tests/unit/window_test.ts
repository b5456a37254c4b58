import assert from "node:assert/strict";
import { enrolmentUpdate, type ParsedMessage, parseMessage } from "../../lib/event.ts";
import { groupByEnrolment, WindowBuilder } from "../../lib/window.ts";

const key = { userId: "U-1", courseId: "C1", batchId: "B1" };
function entry(partition: number, offset: number, contentIds: string[], k = key) {
  const value = new TextEncoder().encode(
    JSON.stringify(enrolmentUpdate(k, contentIds.map((contentId) => ({ contentId, status: 2 })))),
  );
  return {
    message: {
      topic: "in",
      partition,
      offset: String(offset),
      key: null,
      value,
      timestamp: offset,
    },
    parsed: parseMessage(value),
  };
}

Deno.test("a window commits the offset after its last message of each partition", () => {
  const builder = new WindowBuilder({ maxUnits: 10, maxWaitMs: 1000 });
  builder.add(entry(0, 5, ["R1"]), 0);
  builder.add(entry(1, 9, ["R2"]), 0);
  builder.add(entry(0, 6, ["R3"]), 0);
  const window = builder.take()!;
  assert.deepEqual(
    window.commits.sort((a, b) => a.partition - b.partition),
    [{ topic: "in", partition: 0, offset: "7" }, { topic: "in", partition: 1, offset: "10" }],
  );
  assert.equal(window.units.length, 3);
  assert.equal(builder.take(), null);
});

Deno.test("the window is full at maxUnits and a message that would overflow it waits", () => {
  const builder = new WindowBuilder({ maxUnits: 3, maxWaitMs: 1000 });
  builder.add(entry(0, 0, ["R1", "R2"]), 0);
  assert.equal(builder.isFull(), false);
  assert.equal(builder.wouldOverflow(entry(0, 1, ["R3", "R4"])), true);
  assert.equal(builder.wouldOverflow(entry(0, 1, ["R3"])), false);
  builder.add(entry(0, 1, ["R3"]), 0);
  assert.equal(builder.isFull(), true);
});

Deno.test("one message larger than a window gets a window of its own", () => {
  const builder = new WindowBuilder({ maxUnits: 2, maxWaitMs: 1000 });
  const big = entry(0, 0, ["R1", "R2", "R3"]);
  assert.equal(builder.wouldOverflow(big), false);
  builder.add(big, 0);
  assert.equal(builder.isFull(), true);
});

Deno.test("a message without units counts as one, so no flood of them grows a window", () => {
  const builder = new WindowBuilder({ maxUnits: 3, maxWaitMs: 1000 });
  const skipped = { ...entry(0, 0, []), parsed: parseMessage(new TextEncoder().encode("{}")) };
  builder.add(skipped, 0);
  builder.add(skipped, 0);
  assert.equal(builder.isFull(), false);
  builder.add(skipped, 0);
  assert.equal(builder.isFull(), true);
});

Deno.test("units and sync requests group by enrolment in order of first appearance", () => {
  const builder = new WindowBuilder({ maxUnits: 100, maxWaitMs: 1000 });
  const other = { userId: "U-2", courseId: "C1", batchId: "B1" };
  const message = (offset: number, parsed: ParsedMessage) => ({
    message: {
      topic: "in",
      partition: 0,
      offset: String(offset),
      key: null,
      value: null,
      timestamp: 0,
    },
    parsed,
  });
  const units = (k: typeof key, ids: string[]): ParsedMessage => ({
    kind: "units",
    key: k,
    units: ids.map((contentId) => ({ ...k, contentId })),
  });
  builder.add(message(0, units(key, ["R1"])), 0);
  builder.add(message(1, { kind: "sync", key: other }), 0);
  builder.add(message(2, units(key, ["R2", "R1"])), 0);
  builder.add(message(3, { kind: "skipped", reason: "other action" }), 0);
  const groups = groupByEnrolment(builder.take()!.messages);
  assert.deepEqual(groups.map((g) => [g.key.userId, g.sync, g.source.offset]), [
    ["U-1", false, "2"],
    ["U-2", true, "1"],
  ]);
  assert.deepEqual(groups[0].units.map((x) => x.contentId), ["R1", "R2", "R1"]);
  assert.deepEqual(groups[1].units, []);
});

Deno.test("enrolments whose ids differ only in where a separator falls are never grouped as one", () => {
  const builder = new WindowBuilder({ maxUnits: 100, maxWaitMs: 1000 });
  const keys = [
    { userId: "a|b", courseId: "c", batchId: "B" },
    { userId: "a", courseId: "b|c", batchId: "B" },
  ];
  keys.forEach((k, i) => builder.add(entry(0, i, ["R1"], k), 0));
  const groups = groupByEnrolment(builder.take()!.messages);
  assert.deepEqual(groups.map((g) => g.key), keys);
});
