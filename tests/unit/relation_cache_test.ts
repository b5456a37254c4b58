import assert from "node:assert/strict";
import { LocalTtlRelationCache } from "../../lib/relation_cache.ts";
import { FakeClock, MemoryRelationCache } from "../support/stubs.ts";

Deno.test("local relation cache: caches non-empty sets until the TTL passes", async () => {
  const inner = new MemoryRelationCache({ a: ["1"], b: ["2", "3"] });
  const clock = new FakeClock(0);
  const cache = new LocalTtlRelationCache(inner, { ttlMs: 1000, clock });

  assert.deepEqual(
    await cache.members(["a", "b", "empty"]),
    new Map([
      ["a", ["1"]],
      ["b", ["2", "3"]],
      ["empty", []],
    ]),
  );
  clock.advance(999);
  inner.sets.set("a", ["changed"]);
  inner.sets.set("empty", ["appeared"]);
  assert.deepEqual(
    await cache.members(["a", "empty"]),
    new Map([
      ["a", ["1"]],
      ["empty", ["appeared"]],
    ]),
  );
  assert.deepEqual(inner.calls, [["a", "b", "empty"], ["empty"]], "an empty set is asked again");
  clock.advance(1);
  assert.deepEqual((await cache.members(["a"])).get("a"), ["changed"], "expired entry refetched");
  assert.deepEqual(await cache.members([]), new Map());
  assert.equal(inner.calls.length, 3);
});

Deno.test("local relation cache: holds at most maxEntries sets, dropping the oldest", async () => {
  const inner = new MemoryRelationCache({ a: ["1"], b: ["2"], c: ["3"] });
  const cache = new LocalTtlRelationCache(inner, {
    ttlMs: 1000,
    maxEntries: 2,
    clock: new FakeClock(0),
  });
  await cache.members(["a", "b", "c"]);
  assert.equal(cache.size, 2);
  await cache.members(["b", "c"]);
  assert.equal(inner.calls.length, 1, "b and c are kept");
  await cache.members(["a"]);
  assert.deepEqual(inner.calls[1], ["a"], "a was dropped");
});
