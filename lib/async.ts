/**
 * Small async helpers: bounded concurrency, side-by-side work that settles
 * whole, deadlines, and retry with capped, jittered exponential backoff.
 *
 * @module
 */

import { type Clock, InputRejectedError, PermanentError } from "./ports.ts";
import { systemClock } from "./clock.ts";

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
 * Like `Promise.all`, but settles only once every promise has: a rejection
 * is passed on after the other work has ended, so none of it outlives the
 * caller's failure (a window abandoned while a send is still in flight).
 */
export async function allSettled<T extends readonly unknown[]>(
  work: { [K in keyof T]: Promise<T[K]> },
): Promise<T> {
  const results = await Promise.allSettled(work);
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (rejected) throw rejected.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/**
 * Runs one stage of work, retrying what can be retried: as the policy says,
 * or at most `maxAttempts` times, after which the last error is thrown.
 */
export type Retry = <T>(stage: string, fn: () => Promise<T>, maxAttempts?: number) => Promise<T>;

/** How a {@linkcode Retry} backs off, what it retries, and what it reports. */
export interface RetryPolicy {
  initialMs: number;
  maxMs: number;
  /** Tries of one call before its last error is thrown; unbounded by default. */
  maxAttempts?: number;
  /** Whether waiting may cure `error`; {@linkcode isRetriable} by default. */
  isRetriable?: (error: unknown) => boolean;
  /** Ends every wait with an {@linkcode AbortedError}: the work is abandoned. */
  signal?: AbortSignal;
  clock?: Clock;
  random?: () => number;
  /** Called after each failed attempt that will be retried, before waiting `delayMs`. */
  onFailure?: (stage: string, error: unknown, attempt: number, delayMs: number) => void;
  /** Called after each successful attempt, with how many it took. */
  onSuccess?: (stage: string, attempts: number) => void;
}

/** The delay before retry `attempt` (1-based): exponential, capped, with jitter over its upper half. */
export function backoffDelay(
  attempt: number,
  policy: Pick<RetryPolicy, "initialMs" | "maxMs" | "random">,
): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + (policy.random ?? Math.random)() * ceiling / 2);
}

/** Thrown by a {@linkcode Retry} or {@linkcode delay} whose signal aborted: the work was abandoned. */
export class AbortedError extends Error {
  override name = "AbortedError";
}

/** Whether waiting may cure `error`: not a {@linkcode PermanentError}, an {@linkcode InputRejectedError} or an abort. */
export function isRetriable(error: unknown): boolean {
  return !(error instanceof PermanentError || error instanceof InputRejectedError ||
    error instanceof AbortedError);
}

/**
 * A {@linkcode Retry} with capped, jittered exponential backoff. Unbounded
 * (the default), an outage pauses the job instead of losing work; bounded, a
 * lookup gives up after `maxAttempts`. Errors `isRetriable` refuses are thrown
 * at once.
 */
export function retryWithBackoff(policy: RetryPolicy): Retry {
  const retriable = policy.isRetriable ?? isRetriable;
  return async <T>(
    stage: string,
    fn: () => Promise<T>,
    maxAttempts = policy.maxAttempts ?? Infinity,
  ): Promise<T> => {
    for (let attempt = 1;; attempt++) {
      throwIfAborted(policy.signal);
      try {
        const result = await fn();
        policy.onSuccess?.(stage, attempt);
        return result;
      } catch (error) {
        throwIfAborted(policy.signal);
        if (!retriable(error) || attempt >= maxAttempts) throw error;
        const ms = backoffDelay(attempt, policy);
        policy.onFailure?.(stage, error, attempt, ms);
        await delay(ms, policy);
      }
    }
  };
}

/** Resolves after `ms` on `clock`, or rejects with an {@linkcode AbortedError} once `signal` aborts. */
export function delay(
  ms: number,
  opts: { signal?: AbortSignal; clock?: Clock } = {},
): Promise<void> {
  const { signal, clock = systemClock } = opts;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted(signal));
    const onAbort = () => {
      cancel();
      reject(aborted(signal!));
    };
    const cancel = clock.setTimer(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Thrown by {@linkcode deadline} when the work took too long; waiting may cure it. */
export class DeadlineError extends Error {
  override name = "DeadlineError";
}

/**
 * Settles as `work` does, or rejects with a {@linkcode DeadlineError} naming
 * `what` once `ms` have passed first. The work itself goes on; its late
 * result is dropped.
 */
export function deadline<T>(
  work: Promise<T>,
  ms: number,
  opts: { what: string; clock?: Clock },
): Promise<T> {
  const { what, clock = systemClock } = opts;
  return new Promise((resolve, reject) => {
    const cancel = clock.setTimer(
      () => reject(new DeadlineError(`${what} took more than ${ms} ms`)),
      ms,
    );
    work.then(resolve, reject).finally(cancel);
  });
}

function aborted(signal: AbortSignal): AbortedError {
  return new AbortedError(String(signal.reason), { cause: signal.reason });
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw aborted(signal);
}
