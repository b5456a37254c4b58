/**
 * Typed configuration from environment variables (SPEC §2), with an optional
 * dotenv file underneath: a variable set in the real environment wins.
 * Every bad value is reported at once, each naming its variable.
 *
 * @example
 * ```ts
 * const config = loadConfig({ JOB_ENV: "dev", THRESHOLD_BATCH_READ_INTERVAL: "250ms" });
 * config.kafka.inputTopic; // "dev.coursebatch.job.request"
 * config.window.maxWaitMs; // 250
 * ```
 *
 * @module
 */

/** Log levels accepted by `LOG_LEVEL`. */
export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;
/** One of {@linkcode LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];

/**
 * Default of `KAFKA_FETCH_MAX_BYTES` and `KAFKA_FETCH_MAX_BYTES_PER_PARTITION`:
 * about one full window of input (1000 units are ~500 messages of ~0.5 KB).
 * KafkaJS's defaults (10 MiB, 1 MiB per partition) let one fetch hold many
 * windows of a backlog, and the job's memory grew with its lag. The broker
 * still returns a first record batch larger than this, so a large message
 * never stalls the consumer.
 */
export const DEFAULT_FETCH_MAX_BYTES = 256 * 1024;

/** Redis server and database. */
export interface RedisTarget {
  host: string;
  port: number;
  db: number;
}

/** The job's settings, defaults applied. */
export interface Config {
  env: string;
  kafka: {
    brokers: string[];
    inputTopic: string;
    failedTopic: string;
    auditTopic: string;
    certIssueTopic: string;
    groupId: string;
    sessionTimeoutMs: number;
    /**
     * Most bytes one fetch of the input may return, and most per partition:
     * what the consumer holds beyond the open window (a fetch is processed
     * whole before the next one).
     */
    fetchMaxBytes: number;
    fetchMaxBytesPerPartition: number;
    /** Enrolment sync requests (SPEC §13); null when off. */
    syncTopic: string | null;
    /** Largest failed event in bytes; larger ones take the truncated form (SPEC §3). */
    failedEventMaxBytes: number;
  };
  cassandra: {
    contactPoints: string[];
    port: number;
    localDataCenter: string;
    keyspace: string;
    consumptionTable: string;
    enrolmentsTable: string;
    activityAggTable: string;
  };
  relationCache: RedisTarget & { localTtlMs: number };
  dedup: RedisTarget & { enabled: boolean; expirySeconds: number };
  window: { maxUnits: number; maxWaitMs: number };
  writeBatchSize: number;
  moduleAggsEnabled: boolean;
  filterProcessedEnrolments: boolean;
  search: {
    basePath: string;
    statusCacheTtlMs: number;
    timeoutMs: number;
    retries: number;
  };
  retry: { initialBackoffMs: number; maxBackoffMs: number };
  httpHost: string;
  httpPort: number;
  logLevel: LogLevel;
  shutdownTimeoutMs: number;
}

/** Start-up stops with this error; `problems` names each bad variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

/** Builds the configuration from `env`; throws {@linkcode ConfigError} listing every bad value. */
export function loadConfig(env: Env): Config {
  const problems: string[] = [];
  const read = new Reader(env, problems);

  const jobEnv = read.string("JOB_ENV", "local");
  const topic = (name: string, suffix: string) => read.string(name, `${jobEnv}.${suffix}`);
  const relationHost = read.string("REDIS_HOST", "localhost");
  const relationPort = read.port("REDIS_PORT", 6379);

  const config: Config = {
    env: jobEnv,
    kafka: {
      brokers: read.list("KAFKA_BROKER_SERVERS", "localhost:9092"),
      inputTopic: topic("KAFKA_INPUT_TOPIC", "coursebatch.job.request"),
      failedTopic: topic("KAFKA_OUTPUT_FAILED_TOPIC", "activity.agg.failed"),
      auditTopic: topic("KAFKA_AUDIT_TOPIC", "telemetry.raw"),
      certIssueTopic: topic("KAFKA_CERTISSUE_TOPIC", "issue.certificate.request"),
      groupId: read.string("KAFKA_GROUPID", `${jobEnv}-activity-aggregate-updater-group`),
      sessionTimeoutMs: read.duration("KAFKA_SESSION_TIMEOUT", 30_000),
      fetchMaxBytes: read.positiveInt("KAFKA_FETCH_MAX_BYTES", DEFAULT_FETCH_MAX_BYTES),
      fetchMaxBytesPerPartition: read.positiveInt(
        "KAFKA_FETCH_MAX_BYTES_PER_PARTITION",
        DEFAULT_FETCH_MAX_BYTES,
      ),
      syncTopic: read.optionalString("KAFKA_SYNC_TOPIC"),
      failedEventMaxBytes: read.positiveInt("KAFKA_FAILED_EVENT_MAX_BYTES", 921_600),
    },
    cassandra: {
      contactPoints: read.list("LMS_CASSANDRA_HOST", "localhost"),
      port: read.port("LMS_CASSANDRA_PORT", 9042),
      localDataCenter: read.string("LMS_CASSANDRA_LOCAL_DATACENTER", "datacenter1"),
      keyspace: read.identifier("LMS_CASSANDRA_KEYSPACE", "sunbird_courses"),
      consumptionTable: read.identifier(
        "LMS_CASSANDRA_CONTENT_CONSUMPTION_TABLE",
        "user_content_consumption",
      ),
      enrolmentsTable: read.identifier("LMS_CASSANDRA_USER_ENROLMENTS_TABLE", "user_enrolments"),
      activityAggTable: read.identifier(
        "LMS_CASSANDRA_USER_ACTIVITY_AGG_TABLE",
        "user_activity_agg",
      ),
    },
    relationCache: {
      host: relationHost,
      port: relationPort,
      db: read.databaseIndex("REDIS_DATABASE_RELATIONCACHE_ID", 10),
      localTtlMs: read.duration("RELATION_CACHE_LOCAL_TTL", 60_000, { allowZero: true }),
    },
    dedup: {
      host: read.string("DEDUP_REDIS_HOST", relationHost),
      port: read.port("DEDUP_REDIS_PORT", relationPort),
      db: read.databaseIndex("DEDUP_REDIS_DATABASE_INDEX", 13),
      enabled: read.boolean("ACTIVITY_INPUT_DEDUP_ENABLED", true),
      expirySeconds: read.positiveInt("DEDUP_REDIS_DATABASE_EXPIRY", 604800),
    },
    window: {
      maxUnits: read.positiveInt("THRESHOLD_BATCH_READ_SIZE", 1000),
      maxWaitMs: read.duration("THRESHOLD_BATCH_READ_INTERVAL", 1000),
    },
    writeBatchSize: read.positiveInt("THRESHOLD_BATCH_WRITE_SIZE", 10),
    moduleAggsEnabled: read.boolean("ACTIVITY_MODULE_AGGS_ENABLED", true),
    filterProcessedEnrolments: read.boolean("ACTIVITY_FILTER_PROCESSED_ENROLMENTS", true),
    search: {
      basePath: read.url("SERVICE_SEARCH_BASEPATH", "http://localhost:9000"),
      statusCacheTtlMs: read.positiveInt("ACTIVITY_COLLECTION_STATUS_CACHE_EXPIRY", 3600) * 1000,
      timeoutMs: read.duration("SERVICE_SEARCH_TIMEOUT", 5000),
      retries: read.nonNegativeInt("SERVICE_SEARCH_RETRIES", 3),
    },
    retry: {
      initialBackoffMs: read.duration("RETRY_BACKOFF_INITIAL", 200),
      maxBackoffMs: read.duration("RETRY_BACKOFF_MAX", 30_000),
    },
    httpHost: read.string("HTTP_HOST", "0.0.0.0"),
    httpPort: read.port("HTTP_PORT", 9464, { allowZero: true }),
    logLevel: read.oneOf("LOG_LEVEL", LOG_LEVELS, "info"),
    shutdownTimeoutMs: read.duration("SHUTDOWN_TIMEOUT", 25_000),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Parses dotenv text: `KEY=value` lines, `#` comments, optional quotes, optional `export`. */
export function parseDotenv(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) continue;
    let value = match[2];
    const quoted = /^(['"])(.*)\1$/.exec(value);
    value = quoted ? quoted[2] : value.replace(/\s+#.*$/, "");
    vars[match[1]] = value;
  }
  return vars;
}

/** Layers the real environment over a dotenv file's variables: the environment wins. */
export function mergeEnv(fileVars: Env, realEnv: Env): Env {
  return { ...fileVars, ...realEnv };
}

/**
 * Parses a duration: a bare number is seconds; `ms`, `s` and `m` suffixes are
 * accepted. Returns milliseconds, or null when `text` is not a duration.
 */
export function parseDuration(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(text.trim());
  if (!match) return null;
  const factor = match[2] === "ms" ? 1 : match[2] === "m" ? 60_000 : 1000;
  return Math.round(Number(match[1]) * factor);
}

/** Reads variables, recording a problem (and returning the default) for each bad one. */
class Reader {
  readonly #env: Env;
  readonly #problems: string[];

  constructor(env: Env, problems: string[]) {
    this.#env = env;
    this.#problems = problems;
  }

  #raw(name: string): string | undefined {
    const value = this.#env[name];
    return value === undefined || value.trim() === "" ? undefined : value.trim();
  }

  #parse<T>(name: string, fallback: T, expected: string, fn: (v: string) => T | null): T {
    const value = this.#raw(name);
    if (value === undefined) return fallback;
    const parsed = fn(value);
    if (parsed === null) {
      this.#problems.push(`${name}=${JSON.stringify(value)}: expected ${expected}`);
      return fallback;
    }
    return parsed;
  }

  string(name: string, fallback: string): string {
    return this.#raw(name) ?? fallback;
  }

  optionalString(name: string): string | null {
    return this.#raw(name) ?? null;
  }

  list(name: string, fallback: string): string[] {
    return this.#parse(name, fallback.split(","), "a comma-separated list", (v) => {
      const items = v.split(",").map((s) => s.trim()).filter((s) => s !== "");
      return items.length > 0 ? items : null;
    });
  }

  identifier(name: string, fallback: string): string {
    return this.#parse(
      name,
      fallback,
      "a CQL identifier (letters, digits, _)",
      (v) => /^[A-Za-z][A-Za-z0-9_]*$/.test(v) ? v : null,
    );
  }

  boolean(name: string, fallback: boolean): boolean {
    return this.#parse(name, fallback, "true or false", (v) => {
      const lower = v.toLowerCase();
      return lower === "true" ? true : lower === "false" ? false : null;
    });
  }

  positiveInt(name: string, fallback: number): number {
    return this.#parse(name, fallback, "a positive integer", (v) => {
      const n = /^\d+$/.test(v) ? Number(v) : NaN;
      return Number.isSafeInteger(n) && n > 0 ? n : null;
    });
  }

  nonNegativeInt(name: string, fallback: number): number {
    return this.#parse(
      name,
      fallback,
      "a whole number (0 or more)",
      (v) => /^\d+$/.test(v) && Number.isSafeInteger(Number(v)) ? Number(v) : null,
    );
  }

  databaseIndex(name: string, fallback: number): number {
    return this.#parse(name, fallback, "a Redis database index (0-15)", (v) => {
      const n = /^\d+$/.test(v) ? Number(v) : NaN;
      return n >= 0 && n <= 15 ? n : null;
    });
  }

  port(name: string, fallback: number, opts: { allowZero?: boolean } = {}): number {
    const range = opts.allowZero ? "0-65535" : "1-65535";
    return this.#parse(name, fallback, `a port number (${range})`, (v) => {
      const n = /^\d+$/.test(v) ? Number(v) : NaN;
      return n <= 65535 && (n > 0 || (opts.allowZero && n === 0)) ? n : null;
    });
  }

  duration(name: string, fallbackMs: number, opts: { allowZero?: boolean } = {}): number {
    return this.#parse(name, fallbackMs, "a duration such as 5, 250ms, 2s or 1m", (v) => {
      const ms = parseDuration(v);
      return ms !== null && (ms > 0 || (opts.allowZero && ms === 0)) ? ms : null;
    });
  }

  url(name: string, fallback: string): string {
    return this.#parse(name, fallback, "an http(s) URL", (v) => {
      try {
        const url = new URL(v);
        return url.protocol === "http:" || url.protocol === "https:" ? v.replace(/\/+$/, "") : null;
      } catch {
        return null;
      }
    });
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    return this.#parse(
      name,
      fallback,
      `one of ${allowed.join(", ")}`,
      (v) => allowed.find((a) => a === v.toLowerCase()) ?? null,
    );
  }
}
