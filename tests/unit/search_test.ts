/**
 * The search adapter against a real HTTP server on 127.0.0.1 (port 0), with a
 * fake clock for the status cache.
 */

import assert from "node:assert/strict";
import type { Config } from "../../lib/config.ts";
import type { Clock } from "../../lib/ports.ts";
import { type FetchFn, SearchCollectionStatus, SearchError } from "../../lib/search.ts";
import { driverError } from "../support/driver_errors.ts";

interface Seen {
  method: string;
  path: string;
  contentType: string | null;
  body: unknown;
}

/** A server answering with `answers` in turn (the last one repeats), recording each request. */
async function withServer(
  answers: Array<(seen: Seen) => Response | Promise<Response>>,
  fn: (basePath: string, seen: Seen[]) => Promise<void>,
): Promise<void> {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const entry: Seen = {
      method: req.method,
      path: new URL(req.url).pathname,
      contentType: req.headers.get("content-type"),
      body: await req.json(),
    };
    seen.push(entry);
    return await answers[Math.min(seen.length - 1, answers.length - 1)](entry);
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`, seen);
  } finally {
    await server.shutdown();
  }
}

const found = (status: string) => () =>
  Response.json({
    id: "api.search-service.search",
    responseCode: "OK",
    result: { count: 1, content: [{ identifier: "C1", status, objectType: "Collection" }] },
  });
const notFound = () => Response.json({ responseCode: "OK", result: { count: 0 } });
const status = (code: number) => () => new Response(`error ${code}`, { status: code });

function config(basePath: string, overrides: Partial<Config["search"]> = {}): Config["search"] {
  return { basePath, statusCacheTtlMs: 60_000, timeoutMs: 2000, retries: 2, ...overrides };
}

/** A clock whose `now` the test moves; timers are real (the backoff is 1 ms). */
function fakeClock(): Clock & { t: number } {
  return {
    t: 1_000_000,
    now() {
      return this.t;
    },
    setTimer(fn, ms) {
      const id = setTimeout(fn, ms);
      return () => clearTimeout(id);
    },
  };
}

Deno.test("search: posts the SPEC §7 body to {basePath}/v3/search and reads the status", async () => {
  await withServer([found("Retired")], async (base, seen) => {
    const lookup = new SearchCollectionStatus(config(`${base}/`), { backoffMs: 1 });
    assert.equal(await lookup.status("do_123"), "Retired");
    assert.equal(seen.length, 1);
    assert.equal(seen[0].method, "POST");
    assert.equal(seen[0].path, "/v3/search");
    assert.equal(seen[0].contentType, "application/json");
    assert.deepEqual(seen[0].body, {
      request: {
        filters: {
          objectType: "Collection",
          identifier: "do_123",
          status: ["Live", "Unlisted", "Retired"],
        },
        fields: ["status"],
      },
    });
  });
});

Deno.test("search: count 0 is null (not found)", async () => {
  await withServer([notFound], async (base) => {
    const lookup = new SearchCollectionStatus(config(base), { backoffMs: 1 });
    assert.equal(await lookup.status("C1"), null);
  });
});

Deno.test("search: answers are cached per course until the TTL passes", async () => {
  await withServer([found("Live"), notFound, found("Retired")], async (base, seen) => {
    const clock = fakeClock();
    const lookup = new SearchCollectionStatus(config(base, { statusCacheTtlMs: 1000 }), {
      clock,
      backoffMs: 1,
    });
    assert.equal(await lookup.status("C1"), "Live");
    clock.t += 999;
    assert.equal(await lookup.status("C1"), "Live");
    assert.equal(seen.length, 1, "second lookup within the TTL is served from the cache");
    assert.equal(await lookup.status("C2"), null, "another course is asked separately");
    assert.equal(seen.length, 2);
    clock.t += 1;
    assert.equal(await lookup.status("C1"), "Retired", "expired entry is asked again");
    assert.equal(seen.length, 3);
  });
});

Deno.test("search: 5xx and 429 are retried, then the answer is used", async () => {
  await withServer([status(503), status(429), found("Live")], async (base, seen) => {
    const lookup = new SearchCollectionStatus(config(base, { retries: 2 }), { backoffMs: 1 });
    assert.equal(await lookup.status("C1"), "Live");
    assert.equal(seen.length, 3);
  });
});

Deno.test("search: retries are bounded; failures are not cached", async () => {
  await withServer([status(500)], async (base, seen) => {
    const lookup = new SearchCollectionStatus(config(base, { retries: 2 }), { backoffMs: 1 });
    await assert.rejects(lookup.status("C1"), (e: unknown) => {
      assert.ok(e instanceof SearchError);
      assert.match(e.message, /C1 failed after 3 attempts: HTTP 500/);
      return true;
    });
    assert.equal(seen.length, 3, "one attempt plus two retries");
    await assert.rejects(lookup.status("C1"));
    assert.equal(seen.length, 6, "a failure is not cached");
  });
});

Deno.test("search: a 4xx is not retried", async () => {
  await withServer([status(400), found("Live")], async (base, seen) => {
    const lookup = new SearchCollectionStatus(config(base, { retries: 3 }), { backoffMs: 1 });
    await assert.rejects(lookup.status("C1"), /after 1 attempt: HTTP 400/);
    assert.equal(seen.length, 1);
  });
});

Deno.test("search: a 200 without result.count is an error, not retried", async () => {
  await withServer([() => Response.json({ params: {} }), found("Live")], async (base, seen) => {
    const lookup = new SearchCollectionStatus(config(base), { backoffMs: 1 });
    await assert.rejects(lookup.status("C1"), /no result.count/);
    assert.equal(seen.length, 1);
  });
});

Deno.test("search: a request that exceeds the timeout is abandoned and retried", async () => {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const slow = async () => {
    await released;
    return found("Unlisted")();
  };
  await withServer([slow, found("Live")], async (base, seen) => {
    const lookup = new SearchCollectionStatus(config(base, { timeoutMs: 100, retries: 1 }), {
      backoffMs: 1,
    });
    const started = Date.now();
    assert.equal(await lookup.status("C1"), "Live");
    assert.ok(Date.now() - started < 1500, "the timeout cut the slow request short");
    assert.equal(seen.length, 2);
    release(); // let the server finish the abandoned request before it shuts down
  });
});

Deno.test("search: the network errors fetch really throws are retried", async () => {
  // Recorded from Deno's fetch: a refused connection, then a timed-out request.
  const recorded = [driverError("connection-refused-free-port"), driverError("timeout")];
  let calls = 0;
  const flaky: FetchFn = () => {
    calls++;
    return calls < 3
      ? Promise.reject(recorded[Math.abs(calls) % 2])
      : Promise.resolve(found("Live")());
  };
  const lookup = new SearchCollectionStatus(config("http://search.invalid", { retries: 2 }), {
    fetch: flaky,
    backoffMs: 1,
  });
  assert.equal(await lookup.status("C1"), "Live");
  assert.equal(calls, 3);

  calls = -100; // always failing from now on
  await assert.rejects(lookup.status("C9"), /C9 failed after 3 attempts: (fetch failed|.*timeout)/);
});

Deno.test("search: a closed port fails after the bounded retries", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => notFound());
  const port = server.addr.port;
  await server.shutdown();
  const lookup = new SearchCollectionStatus(
    config(`http://127.0.0.1:${port}`, { retries: 1, timeoutMs: 1000 }),
    { backoffMs: 1 },
  );
  await assert.rejects(lookup.status("C1"), /after 2 attempts/);
});
