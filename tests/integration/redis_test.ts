/**
 * The Redis adapters against the local stack (`scripts/stack.sh up`), in the
 * job's default databases (10 and 13) under keys unique to the run, deleted
 * afterwards.
 *
 * Run: scripts/deno.sh test --allow-all tests/integration/redis_test.ts
 */

import assert from "node:assert/strict";
import type { Redis } from "ioredis";
import { InputRejectedError } from "../../lib/ports.ts";
import {
  closeRedis,
  connectRedis,
  connectRelationCache,
  RedisDedupStore,
  RedisRelationCache,
} from "../../lib/redis.ts";
import { stackRedis, unique } from "../support/stack.ts";

const server = stackRedis();
const relationTarget = { ...server, db: 10, localTtlMs: 0 };
const dedupTarget = { ...server, db: 13, enabled: true, expirySeconds: 604800 };

/** Runs `fn` with a raw client on `db` (for seeding and checking), deleting `keys` afterwards. */
async function withRaw(db: number, fn: (raw: Redis, keys: string[]) => Promise<void>) {
  const raw = await connectRedis({ ...server, db });
  const keys: string[] = [];
  try {
    await fn(raw, keys);
  } finally {
    if (keys.length > 0) await raw.del(...keys);
    await closeRedis(raw);
  }
}

Deno.test("redis: relation cache reads every set in one call; a missing set is empty", async () => {
  await withRaw(10, async (raw, keys) => {
    const course = unique("it-course");
    const leaf = `${course}:${course}:leafnodes`;
    const optional = `${course}:${course}:optionalnodes`;
    const ancestors = `${course}:R1:ancestors`;
    keys.push(leaf, ancestors);
    await raw.sadd(leaf, "R1", "R2", "R3");
    await raw.sadd(ancestors, "U1", course);

    const cache = await RedisRelationCache.connect(relationTarget);
    try {
      const sets = await cache.members([leaf, optional, ancestors]);
      assert.deepEqual([...sets.keys()], [leaf, optional, ancestors]);
      assert.deepEqual(sets.get(leaf)!.sort(), ["R1", "R2", "R3"]);
      assert.deepEqual(sets.get(optional), []);
      assert.deepEqual(sets.get(ancestors)!.sort(), ["U1", course].sort());
      assert.deepEqual(await cache.members([]), new Map());
    } finally {
      await cache.close();
    }
  });
});

Deno.test("redis: the relation cache reads its configured database", async () => {
  await withRaw(10, async (raw, keys) => {
    const key = unique("it-db");
    keys.push(key);
    await raw.sadd(key, "in-db-10");
    const other = await RedisRelationCache.connect({ ...relationTarget, db: 11 });
    const right = await RedisRelationCache.connect(relationTarget);
    try {
      assert.deepEqual((await other.members([key])).get(key), []);
      assert.deepEqual((await right.members([key])).get(key), ["in-db-10"]);
    } finally {
      await other.close();
      await right.close();
    }
  });
});

Deno.test("redis: dedup stores checksums with value '' and the expiry, and finds them", async () => {
  await withRaw(13, async (raw, keys) => {
    const sums = [unique("IT-SUM-A"), unique("IT-SUM-B"), unique("IT-SUM-C")];
    keys.push(...sums);
    const store = await RedisDedupStore.connect({ ...dedupTarget, expirySeconds: 3600 });
    try {
      assert.deepEqual(await store.existing(sums), new Set());
      await store.store(sums.slice(0, 2));
      assert.deepEqual(await store.existing(sums), new Set(sums.slice(0, 2)));
      for (const sum of sums.slice(0, 2)) {
        assert.equal(await raw.get(sum), "");
        const ttl = await raw.ttl(sum);
        assert.ok(ttl > 3590 && ttl <= 3600, `TTL of ${sum} is ${ttl}`);
      }
      assert.equal(await raw.exists(sums[2]), 0);
      // Storing again refreshes the expiry and changes nothing else.
      await raw.expire(sums[0], 10);
      await store.store([sums[0]]);
      assert.ok((await raw.ttl(sums[0])) > 3590);
      await store.store([]);
      assert.deepEqual(await store.existing([]), new Set());
    } finally {
      await store.close();
    }
  });
});

Deno.test("redis: a set key holding another type is that input's error, not the job's", async () => {
  await withRaw(10, async (raw, keys) => {
    const key = unique("it-wrongtype");
    keys.push(key);
    await raw.set(key, "not a set");
    const cache = await RedisRelationCache.connect(relationTarget);
    try {
      await assert.rejects(cache.members([key]), (e: unknown) => {
        assert.ok(e instanceof InputRejectedError, `got ${e}`);
        assert.match(e.message, /^redis: WRONGTYPE/);
        return true;
      });
    } finally {
      await cache.close();
    }
  });
});

Deno.test("redis: an unreachable server fails start-up with a message naming it", async () => {
  await assert.rejects(
    connectRedis({ host: "127.0.0.1", port: 1, db: 13 }, { connectTimeoutMs: 1000 }),
    /redis at 127\.0\.0\.1:1 \(db 13\) is unreachable: .*ECONNREFUSED/,
  );
});

Deno.test("redis: a dropped connection fails fast, then reconnects on its own", async () => {
  await withRaw(13, async (raw, keys) => {
    const sum = unique("IT-SUM-R");
    keys.push(sum);
    const errors: Error[] = [];
    const client = await connectRedis(dedupTarget, { onError: (e) => errors.push(e) });
    const store = new RedisDedupStore(client, 60);
    try {
      await store.store([sum]);
      const id = await client.client("ID");
      await raw.client("KILL", "ID", String(id));

      // While reconnecting, a command is rejected at once rather than queued.
      const started = Date.now();
      // (It normally rejects: "Stream isn't writeable and enableOfflineQueue options is false".)
      await store.existing([sum]).catch(() => {});
      assert.ok(Date.now() - started < 1000, "no hang while disconnected");

      // Within a few seconds ioredis is back and the same store works again.
      let found: Set<string> | undefined;
      for (let i = 0; i < 50 && !found; i++) {
        try {
          found = await store.existing([sum]);
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      assert.deepEqual(found, new Set([sum]));
    } finally {
      await store.close();
    }
  });
});

Deno.test("redis: connectRelationCache puts the in-process cache in front when its TTL > 0", async () => {
  await withRaw(10, async (raw, keys) => {
    const key = unique("it-local");
    keys.push(key);
    await raw.sadd(key, "A");
    const { cache, close } = await connectRelationCache({ ...relationTarget, localTtlMs: 60_000 });
    try {
      assert.deepEqual((await cache.members([key])).get(key), ["A"]);
      await raw.sadd(key, "B");
      assert.deepEqual((await cache.members([key])).get(key), ["A"], "served from the process");
    } finally {
      await close();
    }
    const direct = await connectRelationCache(relationTarget); // localTtlMs 0: no local cache
    try {
      assert.deepEqual((await direct.cache.members([key])).get(key)!.sort(), ["A", "B"]);
    } finally {
      await direct.close();
    }
  });
});
