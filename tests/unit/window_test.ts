import assert from "node:assert/strict";
import { enrolmentUpdate, parseMessage } from "../../lib/event.ts";
import { groupByEnrolment, WindowBuilder } from "../../lib/window.ts";

const key = { userId: "U-1", courseId: "C1", batchId: "B1" };
function entry(partition: number, offset: number, contentIds: string[]) {
  const value = new TextEncoder().encode(
    JSON.stringify(enrolmentUpdate(key, contentIds.map((contentId) => ({ contentId, status: 2 })))),
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
  assert.equal(window.oldestTimestamp, 5);
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

Deno.test("the deadline is the first message's arrival plus maxWait", () => {
  const builder = new WindowBuilder({ maxUnits: 10, maxWaitMs: 250 });
  assert.equal(builder.deadline(), null);
  builder.add(entry(0, 0, ["R1"]), 1000);
  builder.add(entry(0, 1, ["R2"]), 1100);
  assert.equal(builder.deadline(), 1250);
});

Deno.test("units group by enrolment in order of first appearance, input order within", () => {
  const u = (userId: string, contentId: string) => ({
    userId,
    courseId: "C1",
    batchId: "B1",
    contentId,
  });
  const groups = groupByEnrolment([u("A", "R1"), u("B", "R1"), u("A", "R2"), u("A", "R1")]);
  assert.deepEqual(groups.map((g) => g.key.userId), ["A", "B"]);
  assert.deepEqual(groups[0].units.map((x) => x.contentId), ["R1", "R2", "R1"]);
});
