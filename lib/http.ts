/**
 * The operations endpoint: `/metrics` (Prometheus text), `/healthz` (the
 * process is alive) and `/readyz` (connected, consuming, no outage, not
 * shutting down).
 *
 * @module
 */

import type { JobMetrics } from "./metrics.ts";

/** What `/readyz` reports, kept current by the job. */
export class Health {
  #connected = false;
  #stopping = false;
  readonly #outages = new Map<string, number>();

  /** Every service answered and consumption started. */
  markConnected(): void {
    this.#connected = true;
  }

  /** Shutdown began: stop routing work here. */
  markStopping(): void {
    this.#stopping = true;
  }

  /** A stage started (`failing`) or stopped failing. */
  setOutage(stage: string, failing: boolean, now = Date.now()): void {
    if (failing) {
      if (!this.#outages.has(stage)) this.#outages.set(stage, now);
    } else {
      this.#outages.delete(stage);
    }
  }

  /** Whether `stage` is failing now. */
  isFailing(stage: string): boolean {
    return this.#outages.has(stage);
  }

  /** Whether the job is ready, and why not. */
  readiness(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (!this.#connected) reasons.push("not connected yet");
    if (this.#stopping) reasons.push("shutting down");
    for (const [stage, since] of this.#outages) {
      reasons.push(`outage in ${stage} since ${new Date(since).toISOString()}`);
    }
    return { ready: reasons.length === 0, reasons };
  }
}

/** What the endpoint serves. */
export interface HttpDeps {
  metrics: JobMetrics;
  health: Health;
  /** Refreshes gauges that are read rather than pushed (the open window). */
  beforeScrape?: () => void;
}

/** Answers one request of the operations endpoint. */
export async function handleOpsRequest(request: Request, deps: HttpDeps): Promise<Response> {
  const { pathname } = new URL(request.url);
  switch (pathname) {
    case "/metrics":
      deps.beforeScrape?.();
      return new Response(await deps.metrics.text(), {
        headers: { "content-type": deps.metrics.registry.contentType },
      });
    case "/healthz":
      return Response.json({ alive: true });
    case "/readyz": {
      const readiness = deps.health.readiness();
      return Response.json(readiness, { status: readiness.ready ? 200 : 503 });
    }
    default:
      return new Response("not found\n", { status: 404 });
  }
}

/** Serves the operations endpoint on `hostname:port` (port 0 picks a free one). */
export function serveOps(
  listen: { hostname: string; port: number },
  deps: HttpDeps,
  onListen?: (addr: Deno.NetAddr) => void,
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { ...listen, onListen: onListen ?? (() => {}) },
    (request) => handleOpsRequest(request, deps),
  );
}

/**
 * Asks the operations endpoint on this host for `/healthz`: the `healthcheck`
 * command. A wildcard listen address is reached on loopback.
 */
export async function probeHealth(
  hostname: string,
  port: number,
  timeoutMs = 3000,
): Promise<{ healthy: boolean; detail: string }> {
  const host = hostname === "0.0.0.0" || hostname === ""
    ? "127.0.0.1"
    : hostname === "::"
    ? "[::1]"
    : hostname.includes(":")
    ? `[${hostname}]`
    : hostname;
  const url = `http://${host}:${port}/healthz`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await response.body?.cancel();
    return { healthy: response.status === 200, detail: `${url} answered ${response.status}` };
  } catch (error) {
    return { healthy: false, detail: `${url}: ${(error as Error).message}` };
  }
}
