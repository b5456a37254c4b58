import assert from "node:assert/strict";
import { collectBetweenWindows } from "../../lib/heap.ts";

Deno.test("collects only once the heap in use passes the threshold", () => {
  let used = 10;
  let collections = 0;
  const afterWindow = collectBetweenWindows({
    thresholdBytes: 24,
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

Deno.test("without --expose-gc it does nothing, and never reads the heap", () => {
  const afterWindow = collectBetweenWindows({
    thresholdBytes: 0,
    heap: {
      heapUsed: () => {
        throw new Error("read");
      },
      gc: undefined,
    },
  });
  assert.equal(afterWindow(), false);
});
