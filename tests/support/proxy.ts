/**
 * A TCP proxy on 127.0.0.1 that a test can hold: while held, bytes are kept
 * back in both directions (a service that stopped answering without closing
 * its connections); on release they flow again, in order.
 *
 * @module
 */

/** Forwards every connection it accepts to `target`; {@linkcode hold} stalls them. */
export class HoldingProxy {
  readonly #listener: Deno.TcpListener;
  readonly #target: { hostname: string; port: number };
  readonly #connections = new Set<Deno.Conn>();
  #released: PromiseWithResolvers<void> | null = null;
  #accepting: Promise<void>;

  constructor(target: { hostname: string; port: number }) {
    this.#target = target;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  /** The port clients connect to. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Stops forwarding until {@linkcode release}. */
  hold(): void {
    this.#released ??= Promise.withResolvers<void>();
  }

  /** Forwards again, what was held first. */
  release(): void {
    this.#released?.resolve();
    this.#released = null;
  }

  /** Closes the listener and every connection. */
  async close(): Promise<void> {
    this.release();
    this.#listener.close();
    for (const conn of this.#connections) closeQuietly(conn);
    this.#connections.clear();
    await this.#accepting;
  }

  async #accept(): Promise<void> {
    try {
      for await (const client of this.#listener) {
        Deno.connect(this.#target).then((server) => {
          this.#connections.add(client).add(server);
          const done = () => {
            for (const conn of [client, server]) {
              if (this.#connections.delete(conn)) closeQuietly(conn);
            }
          };
          Promise.all([this.#pump(client, server), this.#pump(server, client)]).finally(done);
        }, () => client.close());
      }
    } catch {
      // The listener was closed.
    }
  }

  async #pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) return;
        if (this.#released) await this.#released.promise;
        let written = 0;
        while (written < n) written += await to.write(buffer.subarray(written, n));
      }
    } catch {
      // Either side closed.
    }
  }
}

/** Closes `conn` unless its other side already has. */
function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
