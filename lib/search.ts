/**
 * The collection status lookup of SPEC §7 on the search service
 * (`POST {basePath}/v3/search`): a timeout per request, bounded retries of
 * what may pass (network errors, timeouts, 5xx, 429), and a per-course cache
 * of successful answers.
 *
 * @module
 */

import { type Retry, retryWithBackoff } from "./async.ts";
import type { Config } from "./config.ts";
import { type Clock, type CollectionStatusLookup } from "./ports.ts";
import { systemClock } from "./clock.ts";

/** The `fetch` signature the lookup calls, injectable for tests. */
export type FetchFn = (input: string, init: RequestInit) => Promise<Response>;

/** Options of {@linkcode SearchCollectionStatus}. */
export interface SearchOptions {
  clock?: Clock;
  fetch?: FetchFn;
  /** Longest wait before the first retry, doubled for each further one (default 200 ms). */
  backoffMs?: number;
}

/** Thrown when the search service gives no usable answer. */
export class SearchError extends Error {
  override name = "SearchError";
  /** Whether another attempt may succeed. */
  readonly retryable: boolean;

  /** See {@linkcode SearchError.retryable}. */
  constructor(message: string, retryable: boolean, options?: ErrorOptions) {
    super(message, options);
    this.retryable = retryable;
  }
}

/** The request body of SPEC §7 for `courseId`. */
export function searchBody(courseId: string): unknown {
  return {
    request: {
      filters: {
        objectType: "Collection",
        identifier: courseId,
        status: ["Live", "Unlisted", "Retired"],
      },
      fields: ["status"],
    },
  };
}

/**
 * A collection's status from the search service, cached per course for
 * `statusCacheTtlMs`. Only answers are cached (a found status, or "not found"
 * from a 200 with count 0); failures are not, so the next enrolment asks again.
 */
export class SearchCollectionStatus implements CollectionStatusLookup {
  readonly #url: string;
  readonly #cfg: Config["search"];
  readonly #clock: Clock;
  readonly #fetch: FetchFn;
  readonly #retry: Retry;
  readonly #cache = new Map<string, { status: string | null; expiresAt: number }>();

  /** Uses the `search` settings of the job's configuration. */
  constructor(cfg: Config["search"], opts: SearchOptions = {}) {
    this.#cfg = cfg;
    this.#url = `${cfg.basePath.replace(/\/+$/, "")}/v3/search`;
    this.#clock = opts.clock ?? systemClock;
    this.#fetch = opts.fetch ?? ((input, init) => fetch(input, init));
    const backoffMs = opts.backoffMs ?? 200;
    // Bounded: after the last attempt the enrolment fails (SPEC §7).
    this.#retry = retryWithBackoff({
      initialMs: backoffMs,
      maxMs: backoffMs * 2 ** cfg.retries,
      maxAttempts: cfg.retries + 1,
      isRetriable: (error) => !(error instanceof SearchError) || error.retryable,
      clock: this.#clock,
    });
  }

  /** The status (`Live`, `Retired`, ...), or null when the service does not know the collection. */
  async status(courseId: string): Promise<string | null> {
    const cached = this.#cache.get(courseId);
    if (cached && cached.expiresAt > this.#clock.now()) return cached.status;
    this.#cache.delete(courseId);

    const status = await this.#withRetries(courseId);
    this.#cache.set(courseId, {
      status,
      expiresAt: this.#clock.now() + this.#cfg.statusCacheTtlMs,
    });
    return status;
  }

  async #withRetries(courseId: string): Promise<string | null> {
    let attempts = 0;
    try {
      return await this.#retry("search", () => {
        attempts++;
        return this.#request(courseId);
      });
    } catch (error) {
      throw new SearchError(
        `search for collection ${courseId} failed after ${attempts} attempt${
          attempts === 1 ? "" : "s"
        }: ${(error as Error).message}`,
        false,
        { cause: error },
      );
    }
  }

  /** One attempt. Network errors and timeouts are thrown as the fetch raised them (retryable). */
  async #request(courseId: string): Promise<string | null> {
    // A timer on the clock, cleared on every path, so no timer outlives the request.
    const controller = new AbortController();
    const cancel = this.#clock.setTimer(
      () =>
        controller.abort(
          new DOMException(`no answer within ${this.#cfg.timeoutMs} ms`, "TimeoutError"),
        ),
      this.#cfg.timeoutMs,
    );
    try {
      const response = await this.#fetch(this.#url, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify(searchBody(courseId)),
        signal: controller.signal,
      });
      const text = await response.text();
      if (response.status !== 200) {
        const retryable = response.status >= 500 || response.status === 429;
        throw new SearchError(`HTTP ${response.status}: ${text.slice(0, 200)}`, retryable);
      }
      return parseStatus(text);
    } finally {
      cancel();
    }
  }
}

/** Reads `result.count` and `result.content[0].status` of a 200 answer. */
function parseStatus(text: string): string | null {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new SearchError(`answer is not JSON: ${text.slice(0, 200)}`, false);
  }
  const result = (body as { result?: { count?: unknown; content?: unknown } } | null)?.result;
  if (typeof result !== "object" || result === null || typeof result.count !== "number") {
    throw new SearchError(`answer has no result.count: ${text.slice(0, 200)}`, false);
  }
  if (result.count === 0) return null;
  const first = Array.isArray(result.content) ? result.content[0] : undefined;
  const status = (first as { status?: unknown } | undefined)?.status;
  if (typeof status !== "string") {
    throw new SearchError(`answer has no result.content[0].status: ${text.slice(0, 200)}`, false);
  }
  return status;
}
