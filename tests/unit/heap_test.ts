import assert from "node:assert/strict";
import { collectBetweenWindows, type HeapAccess } from "../../lib/heap.ts";

/** A heap whose use a test sets, and which a collection brings down to `afterCollection`. */
function fakeHeap(
  used: number,
  afterCollection: number,
): { used: number; collections: number; access: HeapAccess } {
  const heap: { used: number; collections: number; access: HeapAccess } = {
    used,
    collections: 0,
    access: {
      heapUsed: () => heap.used,
      gc: () => {
        heap.collections++;
        heap.used = afterCollection;
      },
    },
  };
  return heap;
}

Deno.test("collects only once the heap in use passes the threshold", () => {
  const heap = fakeHeap(10, 10);
  const afterWindow = collectBetweenWindows({
    thresholdBytes: 24,
    minGrowthBytes: 0,
    heap: heap.access,
  });
  assert.equal(afterWindow(), false);
  heap.used = 24;
  assert.equal(afterWindow(), false);
  heap.used = 25;
  assert.equal(afterWindow(), true);
  assert.equal(heap.collections, 1);
  assert.equal(afterWindow(), false);
  assert.equal(heap.collections, 1);
});

Deno.test("above the threshold, collects again only once the heap has grown by minGrowthBytes since the last collection", () => {
  const heap = fakeHeap(30, 20);
  const afterWindow = collectBetweenWindows({
    thresholdBytes: 24,
    minGrowthBytes: 8,
    heap: heap.access,
  });
  assert.equal(afterWindow(), true, "the first time above the threshold");
  heap.used = 27;
  assert.equal(afterWindow(), false, "above 24, but only 7 more than the 20 left by the last one");
  heap.used = 28;
  assert.equal(afterWindow(), true, "8 more than after the last one");
  assert.equal(heap.collections, 2);
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
