import assert from "node:assert/strict";
import type { EnrolmentKey } from "../../lib/event.ts";
import { KnownStatusStore } from "../../lib/known_statuses.ts";
import type { EnrolmentWrite } from "../../lib/ports.ts";
import { EXAMPLE_KEY } from "../support/fixtures.ts";
import { MemoryProgressStore } from "../support/stubs.ts";

/** A memory store that counts the enrolment reads reaching it, behind a KnownStatusStore. */
function counted(maxEntries = 100) {
  const inner = new MemoryProgressStore();
  let reads = 0;
  const read = inner.readEnrolment.bind(inner);
  inner.readEnrolment = (key) => {
    reads++;
    return read(key);
  };
  let hits = 0;
  const store = new KnownStatusStore(inner, { maxEntries, onHit: () => hits++ });
  return { inner, store, reads: () => reads, hits: () => hits };
}

const key = (userId: string): EnrolmentKey => ({ ...EXAMPLE_KEY, userId });

function write(k: EnrolmentKey, statusChange?: EnrolmentWrite["statusChange"]): EnrolmentWrite {
  return { key: k, progress: 1, contentStatus: { R1: 2 }, at: 0, statusChange };
}

Deno.test("a row read at status 1 or 2 is read once; missing rows and status 0 every time", async () => {
  const { inner, store, reads, hits } = counted();
  inner.seedEnrolment(key("one"), 1);
  inner.seedEnrolment(key("two"), 2);
  inner.seedEnrolment(key("zero"), 0);
  for (let i = 0; i < 3; i++) {
    assert.equal((await store.readEnrolment(key("one")))?.status, 1);
    assert.equal((await store.readEnrolment(key("two")))?.status, 2);
    assert.equal((await store.readEnrolment(key("zero")))?.status, 0);
    assert.equal(await store.readEnrolment(key("missing")), null);
  }
  assert.equal(reads(), 2 + 3 + 3, "one read each for 1 and 2, three each for 0 and missing");
  assert.equal(hits(), 4);
});

Deno.test("written statuses are remembered: a start is 1, a completion 2, no change keeps it", async () => {
  const { inner, store, reads } = counted();
  await store.writeProgress({
    counters: [],
    aggregates: [],
    enrolments: [write(key("started"), { status: 1 })],
  });
  await store.writeEnrolments([write(key("done"), { status: 2, completedOn: 5 })]);
  assert.equal((await store.readEnrolment(key("started")))?.status, 1);
  assert.equal((await store.readEnrolment(key("done")))?.status, 2);
  assert.equal(reads(), 0);

  // A later update without a status change keeps 1; nothing moves 2 back.
  await store.writeProgress({ counters: [], aggregates: [], enrolments: [write(key("started"))] });
  await store.writeEnrolments([write(key("done"), { status: 1 })]);
  assert.equal((await store.readEnrolment(key("started")))?.status, 1);
  assert.equal((await store.readEnrolment(key("done")))?.status, 2);
  assert.equal(inner.enrolments.get("done|C1|B1")?.status, 2, "the stub's guard agrees");

  // An update of an enrolment whose status was never known stays unknown.
  await store.writeProgress({ counters: [], aggregates: [], enrolments: [write(key("new"))] });
  await store.readEnrolment(key("new"));
  assert.equal(reads(), 1);
});

Deno.test("a failed write forgets its enrolments; forget() forgets everything", async () => {
  const { inner, store, reads } = counted();
  inner.seedEnrolment(key("a"), 1);
  inner.seedEnrolment(key("b"), 1);
  await store.readEnrolment(key("a"));
  await store.readEnrolment(key("b"));
  inner.failNext();
  await assert.rejects(store.writeEnrolments([write(key("a"), { status: 2 })]));
  await store.readEnrolment(key("a"));
  await store.readEnrolment(key("b"));
  assert.equal(reads(), 3, "a is read again, b is still known");

  store.forget();
  assert.equal(store.size, 0);
  await store.readEnrolment(key("b"));
  assert.equal(reads(), 4);
});

Deno.test("at most maxEntries are kept; the least recently used goes first", async () => {
  const { inner, store, reads } = counted(2);
  for (const u of ["a", "b", "c"]) inner.seedEnrolment(key(u), 1);
  await store.readEnrolment(key("a"));
  await store.readEnrolment(key("b"));
  await store.readEnrolment(key("a")); // a is now the most recent
  await store.readEnrolment(key("c")); // evicts b
  assert.equal(store.size, 2);
  assert.equal(reads(), 3);
  await store.readEnrolment(key("a"));
  assert.equal(reads(), 3, "a is kept");
  await store.readEnrolment(key("b"));
  assert.equal(reads(), 4, "b was evicted");
});
