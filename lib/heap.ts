/**
 * Garbage collection between windows. Once a window is committed, its
 * parsed units, plans and events are garbage and the heap holds only the
 * job's live state (~20 MiB): a full collection then costs little and
 * returns the heap to that. Left to itself, V8 lets the old generation grow
 * to several times the live state before it collects (RSS ~220–250 MiB
 * under a backlog); its `--optimize-for-size` mode holds memory but collects
 * the young generation every 1 MiB, which doubled the job's CPU per unit.
 *
 * @module
 */

/** What {@linkcode collectBetweenWindows} reads and calls; injected in tests. */
export interface HeapAccess {
  /** Bytes of V8 heap in use, garbage not yet collected included. */
  heapUsed: () => number;
  /** A full collection: `globalThis.gc`, present only under V8's `--expose-gc`. */
  gc: (() => void) | undefined;
}

const runtimeHeap: HeapAccess = {
  heapUsed: () => Deno.memoryUsage().heapUsed,
  gc: (globalThis as { gc?: () => void }).gc,
};

/** When {@linkcode collectBetweenWindows} collects. */
export interface CollectOptions {
  /** Heap in use at or below which it never collects. */
  thresholdBytes: number;
  /**
   * Heap the windows since the last collection must have added. Small
   * windows (a steady, lighter load) each leave a few MiB: a full collection
   * after every one of them made each window longer, where one every few
   * windows holds no more than a single large window does.
   */
  minGrowthBytes: number;
  heap?: HeapAccess;
}

/**
 * A hook to call after each window: a full collection when more than
 * `thresholdBytes` of heap are in use and at least `minGrowthBytes` more
 * than after its last collection; nothing without `--expose-gc`. Returns
 * whether it collected.
 */
export function collectBetweenWindows(opts: CollectOptions): () => boolean {
  const { thresholdBytes, minGrowthBytes, heap = runtimeHeap } = opts;
  const gc = heap.gc;
  if (gc === undefined) return () => false;
  let afterLast = 0;
  return () => {
    const used = heap.heapUsed();
    if (used <= thresholdBytes || used - afterLast < minGrowthBytes) return false;
    gc();
    afterLast = heap.heapUsed();
    return true;
  };
}
