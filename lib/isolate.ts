/**
 * Failure isolation (SPEC §3): one stage of a window runs over its items
 * (enrolments, events) together, and when it keeps failing, the items are
 * split until the failure is narrowed down to the items that cause it. Those
 * fail alone; the rest of the window is applied.
 *
 * How an error is told apart:
 * - {@linkcode PermanentError}: no input could cure it; thrown, the job stops.
 * - {@linkcode InputRejectedError}: the service refused this input; the
 *   subset is split at once, and an item refused alone fails.
 * - anything else may be an outage: the subset is retried a few times before
 *   it is split. An item that still fails alone fails only once the service
 *   has shown it works (another subset of the stage went through); until then
 *   it is an outage and waited out, trying the next subset as a probe.
 *
 * @module
 */

import { AbortedError, backoffDelay, type Retry } from "./async.ts";
import { InputRejectedError, PermanentError } from "./ports.ts";

/** Tries of a failing subset before it is split. */
export const ATTEMPTS_BEFORE_SPLIT = 3;

/** Options of {@linkcode runIsolated}. */
export interface IsolateOptions {
  retry: Retry;
  /** Waits between probes while no subset goes through; rejects when the window is abandoned. */
  wait: (ms: number) => Promise<void>;
  backoff: { initialMs: number; maxMs: number };
}

/**
 * Runs `fn` over `items`, narrowing persistent failures down to the items
 * that cause them. Resolves to the items that failed, with their errors;
 * `fn` has succeeded for every other item. `fn` must be idempotent: a subset
 * that failed is tried again, in parts.
 */
export async function runIsolated<T>(
  stage: string,
  items: readonly T[],
  fn: (subset: T[]) => Promise<void>,
  opts: IsolateOptions,
): Promise<Map<T, unknown>> {
  const failed = new Map<T, unknown>();
  const queue: T[][] = items.length > 0 ? [[...items]] : [];
  let healthy = false;
  const attempt = async (subset: T[], attempts: number): Promise<unknown> => {
    try {
      await opts.retry(stage, () => fn(subset), attempts);
      healthy = true;
      return undefined;
    } catch (error) {
      if (error instanceof PermanentError || error instanceof AbortedError) throw error;
      return error ?? new Error(`${stage} failed`);
    }
  };

  while (queue.length > 0) {
    const subset = queue.shift()!;
    const error = await attempt(subset, ATTEMPTS_BEFORE_SPLIT);
    if (error === undefined) continue;
    if (subset.length > 1) {
      const half = Math.ceil(subset.length / 2);
      queue.unshift(subset.slice(0, half), subset.slice(half));
      continue;
    }
    if (error instanceof InputRejectedError || healthy) {
      failed.set(subset[0], error);
      continue;
    }
    // Alone, still failing, and nothing of this stage has gone through yet:
    // an outage, unless the next subset shows the service works.
    for (let round = 1;; round++) {
      await opts.wait(backoffDelay(round, opts.backoff));
      const again = await attempt(subset, 1);
      if (again === undefined) break;
      if (again instanceof InputRejectedError) {
        failed.set(subset[0], again);
        break;
      }
      const probe = queue[0];
      if (probe !== undefined && await attempt(probe, 1) === undefined) {
        queue.shift();
        failed.set(subset[0], again);
        break;
      }
    }
  }
  return failed;
}
