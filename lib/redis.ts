/**
 * The Redis ports on ioredis: the relation cache (course structure sets,
 * read-only) and the de-duplication store (checksums), each on its own
 * connection because each lives in its own database. Every call is one
 * pipelined round trip.
 *
 * Clients fail fast while Redis is down (no offline queue, a deadline on
 * every round trip) instead of queueing forever: the job's retry loop pauses
 * the stage, and ioredis reconnects on its own when Redis returns.
 *
 * @module
 */

import { Redis, ReplyError } from "ioredis";
import { deadline } from "./async.ts";
import type { Config, RedisTarget } from "./config.ts";
import {
  type Clock,
  type DedupStore,
  InputRejectedError,
  PermanentError,
  type RelationCache,
} from "./ports.ts";
import { LocalTtlRelationCache } from "./relation_cache.ts";

/** Options of {@linkcode connectRedis} and of the adapters' `connect`. */
export interface RedisClientOptions {
  /**
   * Milliseconds one of an adapter's round trips (a pipeline of commands)
   * may take before it fails (default 5000). One timer per round trip:
   * ioredis's own `commandTimeout` arms one per command, and a window
   * pipelines thousands.
   */
  roundTripTimeoutMs?: number;
  /** Milliseconds a connection attempt may take (default 5000). */
  connectTimeoutMs?: number;
  /**
   * Told about connection errors (ioredis keeps reconnecting after each);
   * without it they are dropped, since the failing commands report them too.
   */
  onError?: (error: Error) => void;
}

/**
 * Connects a client to `target` and waits until it is ready. Throws an error
 * naming the server when it is unreachable, so start-up fails clearly.
 */
export async function connectRedis(
  target: RedisTarget,
  opts: RedisClientOptions = {},
): Promise<Redis> {
  let lastError: Error | undefined;
  const client = new Redis({
    host: target.host,
    port: target.port,
    db: target.db,
    // Connect explicitly below, so an unreachable server fails start-up.
    lazyConnect: true,
    // While disconnected, reject commands at once instead of queueing them:
    // the job's retry loop owns waiting (with backoff and metrics).
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: opts.connectTimeoutMs ?? 5000,
    // Reconnect forever, at most every 2 s: an outage pauses the job, never ends it.
    retryStrategy: (times) => Math.min(times * 100, 2000),
  });
  // Without a listener ioredis prints every connection error to the console.
  client.on("error", (error: Error) => {
    lastError = error;
    opts.onError?.(error);
  });
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    const reason = lastError?.message ?? (error as Error).message;
    // A refused password comes only through the 'error' event.
    const classified = classifyRedisError(lastError);
    if (classified instanceof PermanentError) throw classified;
    throw new Error(
      `redis at ${target.host}:${target.port} (db ${target.db}) is unreachable: ${reason}`,
      { cause: lastError ?? error },
    );
  }
  return client;
}

/** Closes `client` politely, or at once when Redis is not answering. */
export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === "end") return;
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}

/** Server replies no input can cure: missing or wrong credentials, a missing ACL permission. */
const PERMANENT_REPLY = /^(NOAUTH|WRONGPASS|NOPERM)\b/;

/**
 * A key of the wrong type: the structure of one course is not a set, which
 * fails the enrolments of that course alone.
 */
const INPUT_REPLY = /^WRONGTYPE\b/;

/**
 * Sorts a Redis error by who can cure it (SPEC §3): the credentials
 * ({@linkcode PermanentError}), this request's keys
 * ({@linkcode InputRejectedError}), or time (returned unchanged: connection
 * errors, timeouts). The original is kept as `cause`.
 */
export function classifyRedisError(error: unknown): unknown {
  if (!(error instanceof ReplyError)) return error;
  const message = `redis: ${(error as Error).message}`;
  if (PERMANENT_REPLY.test((error as Error).message)) {
    return new PermanentError(message, { cause: error });
  }
  if (INPUT_REPLY.test((error as Error).message)) {
    return new InputRejectedError(message, { cause: error });
  }
  return error;
}

const DEFAULT_ROUND_TRIP_TIMEOUT_MS = 5000;

/**
 * Runs `pipeline` within `timeoutMs` and returns each command's reply,
 * throwing the first command error: ioredis reports per-command errors
 * inside the result.
 */
async function replies(
  pipeline: ReturnType<Redis["pipeline"]>,
  timeoutMs: number,
): Promise<unknown[]> {
  const results = await deadline(pipeline.exec(), timeoutMs, { what: "redis round trip" });
  if (results === null) throw new Error("redis: pipeline was discarded");
  return results.map(([error, reply]) => {
    if (error) throw classifyRedisError(error);
    return reply;
  });
}

/** Course structure sets from the relation cache database (SMEMBERS, pipelined). */
export class RedisRelationCache implements RelationCache {
  readonly #client: Redis;
  readonly #timeoutMs: number;

  /** Uses `client`, already selected on the relation cache database. */
  constructor(client: Redis, opts: Pick<RedisClientOptions, "roundTripTimeoutMs"> = {}) {
    this.#client = client;
    this.#timeoutMs = opts.roundTripTimeoutMs ?? DEFAULT_ROUND_TRIP_TIMEOUT_MS;
  }

  /** Connects to the relation cache server and database of `config`. */
  static async connect(
    config: Config["relationCache"],
    opts?: RedisClientOptions,
  ): Promise<RedisRelationCache> {
    return new RedisRelationCache(await connectRedis(config, opts), opts);
  }

  /** Members of each set in one round trip; a missing key is an empty set. */
  async members(keys: string[]): Promise<Map<string, string[]>> {
    const result = new Map<string, string[]>();
    if (keys.length === 0) return result;
    const pipeline = this.#client.pipeline();
    for (const key of keys) pipeline.smembers(key);
    const sets = await replies(pipeline, this.#timeoutMs);
    keys.forEach((key, i) => result.set(key, sets[i] as string[]));
    return result;
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    await closeRedis(this.#client);
  }
}

/** Checksums in the de-duplication database: plain string keys with an expiry. */
export class RedisDedupStore implements DedupStore {
  readonly #client: Redis;
  readonly #expirySeconds: number;
  readonly #timeoutMs: number;

  /** Uses `client`, already selected on the de-duplication database. */
  constructor(
    client: Redis,
    expirySeconds: number,
    opts: Pick<RedisClientOptions, "roundTripTimeoutMs"> = {},
  ) {
    this.#client = client;
    this.#expirySeconds = expirySeconds;
    this.#timeoutMs = opts.roundTripTimeoutMs ?? DEFAULT_ROUND_TRIP_TIMEOUT_MS;
  }

  /** Connects to the de-duplication server and database of `config`. */
  static async connect(
    config: Config["dedup"],
    opts?: RedisClientOptions,
  ): Promise<RedisDedupStore> {
    return new RedisDedupStore(await connectRedis(config, opts), config.expirySeconds, opts);
  }

  /**
   * The checksums already stored, in one round trip. One EXISTS per key,
   * because EXISTS with several keys answers only how many exist.
   */
  async existing(checksums: string[]): Promise<Set<string>> {
    const found = new Set<string>();
    if (checksums.length === 0) return found;
    const pipeline = this.#client.pipeline();
    for (const sum of checksums) pipeline.exists(sum);
    const counts = await replies(pipeline, this.#timeoutMs);
    checksums.forEach((sum, i) => {
      if (counts[i] === 1) found.add(sum);
    });
    return found;
  }

  /** Stores the checksums (value "", the configured expiry) in one round trip. */
  async store(checksums: string[]): Promise<void> {
    if (checksums.length === 0) return;
    const pipeline = this.#client.pipeline();
    for (const sum of checksums) pipeline.set(sum, "", "EX", this.#expirySeconds);
    await replies(pipeline, this.#timeoutMs);
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    await closeRedis(this.#client);
  }
}

/**
 * The relation cache of `config`: Redis, behind the in-process cache unless
 * `localTtlMs` is 0. `close` closes the Redis connection.
 */
export async function connectRelationCache(
  config: Config["relationCache"],
  opts: RedisClientOptions & { clock?: Clock } = {},
): Promise<{ cache: RelationCache; close: () => Promise<void> }> {
  const redis = await RedisRelationCache.connect(config, opts);
  const cache = config.localTtlMs > 0
    ? new LocalTtlRelationCache(redis, { ttlMs: config.localTtlMs, clock: opts.clock })
    : redis;
  return { cache, close: () => redis.close() };
}
