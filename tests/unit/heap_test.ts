import assert from "node:assert/strict";
import { collectBetweenWindows } from "../../lib/heap.ts";

Deno.test("collects only once the heap in use passes the threshold", () => {
  let used = 10;
  let collections = 0;
  const afterWindow = collectBetweenWindows({
    thresholdBytes: 24,
    minGrowthBytes: 0,
    heap: { heapUsed: () => used, gc: () => (collections++, used = 10) },
  });
  assert.equal(afterWindow(), false);
  used = 24;
  assert.equal(afterWindow(), false);
  used = 25;
  assert.equal(afterWindow(), true);
  assert.equal(collections, 1);
  assert.equal(afterWindow(), false);
  assert.equal(collections, 1);
});

Deno.test("above the threshold, collects again only once the heap has grown by minGrowthBytes since the last collection", () => {
  let used = 30;
  let collections = 0;
  const afterWindow = collectBetweenWindows({
    thresholdBytes: 24,
    minGrowthBytes: 8,
    heap: { heapUsed: () => used, gc: () => (collections++, used = 20) },
  });
  assert.equal(afterWindow(), true, "the first time above the threshold");
  used = 27;
  assert.equal(afterWindow(), false, "above 24, but only 7 more than the 20 left by the last one");
  used = 28;
  assert.equal(afterWindow(), true, "8 more than after the last one");
  assert.equal(collections, 2);
});

Deno.test("without --expose-gc it does nothing, and never reads the heap", () => {
  const afterWindow = collectBetweenWindows({
    thresholdBytes: 0,
    minGrowthBytes: 0,
    heap: {
      heapUsed: () => {
        throw new Error("read");
      },
      gc: undefined,
    },
  });
  assert.equal(afterWindow(), false);
});
