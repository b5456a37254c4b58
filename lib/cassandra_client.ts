/**
 * The Cassandra driver as the job uses it: a client for the configured
 * cluster, the options of every request, and the sorting of the driver's
 * errors by who can cure them (SPEC §3).
 *
 * @module
 */

import cassandra from "cassandra-driver";
import type { Config } from "./config.ts";
import { InputRejectedError, PermanentError } from "./ports.ts";

/** The `Config` section the Cassandra modules read. */
export type CassandraConfig = Config["cassandra"];

const { consistencies, responseErrorCodes } = cassandra.types;

/** Options of every request: prepared, LOCAL_QUORUM, LOCAL_SERIAL for the conditional writes. */
export const QUERY_OPTIONS = {
  prepare: true,
  consistency: consistencies.localQuorum,
  serialConsistency: consistencies.localSerial,
} as const;

/** Response codes that no retry and no other input can cure. */
const PERMANENT_CODES: ReadonlySet<number> = new Set([
  responseErrorCodes.syntaxError,
  responseErrorCodes.configError,
  responseErrorCodes.unauthorized,
  responseErrorCodes.badCredentials,
]);

/**
 * An `invalid` answer about the schema rather than the values: a missing
 * keyspace, table or column. Any other `invalid` answer (a key longer than
 * 64 KiB, a value the column cannot hold) is about this request's input.
 */
const SCHEMA_PROBLEM =
  /unconfigured table|(?:table|keyspace) \S+ does not exist|undefined column|unknown identifier/i;

/**
 * Sorts a driver error by who can cure it (SPEC §3): the schema or the
 * credentials ({@linkcode PermanentError}), this request's input
 * ({@linkcode InputRejectedError}), or time (returned unchanged: an outage,
 * a timeout, an overloaded node). The original is kept as `cause`.
 */
export function classifyCassandraError(error: unknown): unknown {
  const { errors } = cassandra;
  if (error instanceof PermanentError || error instanceof InputRejectedError) return error;
  const message = `cassandra: ${(error as Error)?.message}`;
  if (error instanceof errors.ResponseError) {
    if (PERMANENT_CODES.has(error.code)) return new PermanentError(message, { cause: error });
    if (error.code === responseErrorCodes.invalid) {
      return SCHEMA_PROBLEM.test(error.message)
        ? new PermanentError(message, { cause: error })
        : new InputRejectedError(message, { cause: error });
    }
    return error;
  }
  if (error instanceof errors.AuthenticationError) {
    return new PermanentError(message, { cause: error });
  }
  // The driver checks and encodes parameters before sending: a value it
  // refuses is this request's input.
  if (
    error instanceof errors.ArgumentError || error instanceof TypeError ||
    error instanceof RangeError
  ) {
    return new InputRejectedError(message, { cause: error });
  }
  // Connecting with bad credentials fails every host with an AuthenticationError.
  if (error instanceof errors.NoHostAvailableError) {
    const inner = Object.values((error.innerErrors ?? {}) as Record<string, unknown>);
    if (inner.length > 0 && inner.every((e) => e instanceof errors.AuthenticationError)) {
      return new PermanentError(message, { cause: error });
    }
  }
  return error;
}

/**
 * Longest wait between the driver's attempts to reconnect to a node it saw go
 * down. Requests do not try a node marked down, so this bounds how long the
 * job stays paused after Cassandra is back; the driver's default grows to 10
 * minutes.
 */
export const RECONNECT_MAX_DELAY_MS = 5000;

/** A driver client for `cfg`, not yet connected. */
export function createClient(cfg: CassandraConfig): cassandra.Client {
  return new cassandra.Client({
    contactPoints: cfg.contactPoints,
    protocolOptions: { port: cfg.port },
    localDataCenter: cfg.localDataCenter,
    // No `keyspace` here: statements name it, so a missing keyspace surfaces
    // as a clear (permanent) error on first use and in `verifySchema`, not
    // as an opaque connection failure.
    queryOptions: { ...QUERY_OPTIONS },
    socketOptions: { connectTimeout: 5000, readTimeout: 12_000 },
    policies: {
      reconnection: new cassandra.policies.reconnection.ExponentialReconnectionPolicy(
        500,
        RECONNECT_MAX_DELAY_MS,
        false,
      ),
    },
    // DataStax Insights reporting (DSE only) would send the host's name and
    // CPUs: nothing the job needs, and reading them takes --allow-sys.
    monitorReporting: { enabled: false },
  });
}

/**
 * A client for `cfg`, connected. Throws {@linkcode PermanentError} on bad
 * credentials or a configuration the driver refuses; other connection
 * failures (no host reachable) are thrown as is.
 */
export async function connectClient(cfg: CassandraConfig): Promise<cassandra.Client> {
  const client = createClient(cfg);
  try {
    await client.connect();
  } catch (error) {
    await client.shutdown().catch(() => {});
    const classified = classifyCassandraError(error);
    // Connecting involves no input: what the driver refuses is the configuration.
    throw classified instanceof InputRejectedError
      ? new PermanentError(classified.message, { cause: error })
      : classified;
  }
  return client;
}
