/**
 * Small async helpers: bounded concurrency and retry with capped, jittered
 * exponential backoff.
 *
 * @module
 */

import { InputRejectedError, PermanentError } from "./ports.ts";

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

/**
 * Runs one stage of work, retrying what can be retried: for as long as it
 * takes, or at most `maxAttempts` times, after which the last error is thrown.
 */
export type Retry = <T>(stage: string, fn: () => Promise<T>, maxAttempts?: number) => Promise<T>;

/** Backoff settings for {@linkcode retryUntilAborted}. */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  signal: AbortSignal;
  /** Called after each failed attempt that will be retried, before waiting `delayMs`. */
  onFailure?: (stage: string, error: unknown, attempt: number, delayMs: number) => void;
  /** Called after each successful attempt, with how many it took. */
  onSuccess?: (stage: string, attempts: number) => void;
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

/** Thrown by a {@linkcode Retry} whose signal aborted: the work was abandoned. */
export class AbortedError extends Error {
  override name = "AbortedError";
}

/** Whether retrying `error` can help: not for a {@linkcode PermanentError} or an {@linkcode InputRejectedError}. */
export function isRetriable(error: unknown): boolean {
  return !(error instanceof PermanentError || error instanceof InputRejectedError ||
    error instanceof AbortedError);
}

/**
 * A {@linkcode Retry} that retries transient errors with backoff, by default
 * for as long as it takes: an outage pauses the job instead of losing work.
 * Errors that are not {@linkcode isRetriable} are thrown at once; aborting
 * `signal` ends the wait with an {@linkcode AbortedError}.
 */
export function retryUntilAborted(opts: BackoffOptions): Retry {
  const checkAborted = () => {
    if (opts.signal.aborted) {
      throw new AbortedError(String(opts.signal.reason), { cause: opts.signal.reason });
    }
  };
  return async <T>(stage: string, fn: () => Promise<T>, maxAttempts = Infinity): Promise<T> => {
    for (let attempt = 1;; attempt++) {
      checkAborted();
      try {
        const result = await fn();
        opts.onSuccess?.(stage, attempt);
        return result;
      } catch (error) {
        checkAborted();
        if (!isRetriable(error) || attempt >= maxAttempts) throw error;
        const delay = backoffDelay(attempt, opts.initialMs, opts.maxMs, opts.random);
        opts.onFailure?.(stage, error, attempt, delay);
        try {
          await abortableDelay(delay, opts.signal);
        } catch {
          checkAborted();
        }
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
