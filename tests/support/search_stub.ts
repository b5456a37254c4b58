/**
 * A stand-in for the platform's search service, for local development and
 * tests: answers `POST /v3/search` (SPEC §7) from a map of collection
 * statuses. A collection not in the map is not found (count 0).
 *
 * ```sh
 * scripts/deno.sh run --allow-net scripts/search_stub.ts 19000 C1=Live C2=Retired
 * ```
 *
 * @module
 */

/** A running stub: its base path, its statuses (mutable) and the ids it was asked about. */
export interface SearchStub {
  basePath: string;
  statuses: Map<string, string>;
  requests: string[];
  close(): Promise<void>;
}

/** Serves the stub on 127.0.0.1:`port` (0 picks a free port). */
export function startSearchStub(
  statuses: Record<string, string> = {},
  port = 0,
): Promise<SearchStub> {
  const known = new Map(Object.entries(statuses));
  const requests: string[] = [];
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port, onListen: (addr) => listening.resolve(addr) },
    async (request) => {
      if (request.method !== "POST" || new URL(request.url).pathname !== "/v3/search") {
        return new Response("not found", { status: 404 });
      }
      const body = await request.json().catch(() => null);
      const id = body?.request?.filters?.identifier;
      if (typeof id !== "string") return Response.json({ error: "bad request" }, { status: 400 });
      requests.push(id);
      const status = known.get(id);
      const content = status ? [{ identifier: id, status }] : [];
      return Response.json({ result: { count: content.length, content } });
    },
  );
  return listening.promise.then((addr) => ({
    basePath: `http://127.0.0.1:${addr.port}`,
    statuses: known,
    requests,
    close: () => server.shutdown(),
  }));
}

if (import.meta.main) {
  const [port = "19000", ...pairs] = Deno.args;
  const stub = await startSearchStub(
    Object.fromEntries(pairs.map((p) => p.split("=", 2) as [string, string])),
    Number(port),
  );
  console.error(`search stub on ${stub.basePath}`);
}
