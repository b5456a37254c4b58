/**
 * An in-process cache in front of the relation cache: course structure
 * changes rarely and is read for every enrolment.
 *
 * @module
 */

import { systemClock } from "./clock.ts";
import type { Clock, RelationCache } from "./ports.ts";

/** Options of {@linkcode LocalTtlRelationCache}. */
export interface LocalCacheOptions {
  /** How long a set is kept, in ms (`RELATION_CACHE_LOCAL_TTL`). */
  ttlMs: number;
  /** Most sets kept; the oldest are dropped first (default 100000). */
  maxEntries?: number;
  clock?: Clock;
}

/**
 * An in-process cache in front of a {@linkcode RelationCache}: course
 * structure changes rarely and is read for every enrolment, so a short TTL
 * saves most round trips. Only non-empty sets are cached: an empty answer may
 * be a course structure not yet written (its leaf nodes, and with them its
 * optional nodes), which must be seen whole once it appears.
 */
export class LocalTtlRelationCache implements RelationCache {
  readonly #inner: RelationCache;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #clock: Clock;
  /** Insertion order is expiry order (one TTL for all), so the first entries go first. */
  readonly #entries = new Map<string, { members: string[]; expiresAt: number }>();

  /** Wraps `inner`; see {@linkcode LocalCacheOptions}. */
  constructor(inner: RelationCache, opts: LocalCacheOptions) {
    this.#inner = inner;
    this.#ttlMs = opts.ttlMs;
    this.#maxEntries = opts.maxEntries ?? 100_000;
    this.#clock = opts.clock ?? systemClock;
  }

  /** Cached sets where fresh; the rest from the inner cache in one call. */
  async members(keys: string[]): Promise<Map<string, string[]>> {
    const now = this.#clock.now();
    this.#evictExpired(now);
    const result = new Map<string, string[]>();
    const missing: string[] = [];
    for (const key of keys) {
      const entry = this.#entries.get(key);
      if (entry) result.set(key, entry.members);
      else missing.push(key);
    }
    if (missing.length === 0) return result;
    const fetched = await this.#inner.members(missing);
    const expiresAt = this.#clock.now() + this.#ttlMs;
    for (const key of missing) {
      const members = fetched.get(key) ?? [];
      result.set(key, members);
      if (members.length > 0) {
        this.#entries.delete(key); // re-insert at the end, keeping expiry order
        this.#entries.set(key, { members, expiresAt });
      }
    }
    while (this.#entries.size > this.#maxEntries) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    return result;
  }

  /** Number of sets held, for tests and diagnostics. */
  get size(): number {
    return this.#entries.size;
  }

  #evictExpired(now: number): void {
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt > now) break;
      this.#entries.delete(key);
    }
  }
}
