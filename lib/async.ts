/**
 * Small async helpers: bounded concurrency and retry with capped, jittered
 * exponential backoff.
 *
 * @module
 */

import { PermanentError } from "./ports.ts";

/** Maps `items` through `fn` with at most `limit` calls in flight, keeping order. */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Runs one stage of work, retrying what can be retried. */
export type Retry = <T>(stage: string, fn: () => Promise<T>) => Promise<T>;

/** Backoff settings for {@linkcode retryUntilAborted}. */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  signal: AbortSignal;
  /** Called after each failed attempt, before waiting `delayMs`. */
  onFailure?: (stage: string, error: unknown, attempt: number, delayMs: number) => void;
  /** Called when a stage succeeds after failing. */
  onRecovery?: (stage: string, attempts: number) => void;
  random?: () => number;
}

/** The delay before retry `attempt` (1-based): exponential, capped, with full jitter. */
export function backoffDelay(
  attempt: number,
  initialMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + random() * ceiling / 2);
}

/**
 * A {@linkcode Retry} that retries transient errors for as long as it takes:
 * an outage pauses the job instead of losing work. A {@linkcode PermanentError}
 * is thrown at once; aborting `signal` ends the wait with its reason.
 */
export function retryUntilAborted(opts: BackoffOptions): Retry {
  return async <T>(stage: string, fn: () => Promise<T>): Promise<T> => {
    for (let attempt = 1;; attempt++) {
      opts.signal.throwIfAborted();
      try {
        const result = await fn();
        if (attempt > 1) opts.onRecovery?.(stage, attempt);
        return result;
      } catch (error) {
        if (error instanceof PermanentError) throw error;
        opts.signal.throwIfAborted();
        const delay = backoffDelay(attempt, opts.initialMs, opts.maxMs, opts.random);
        opts.onFailure?.(stage, error, attempt, delay);
        await abortableDelay(delay, opts.signal);
      }
    }
  };
}

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(id);
      reject(signal.reason);
    };
    const id = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
