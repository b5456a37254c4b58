/**
 * Shared helpers of the integration tests: the local stack's endpoints (from
 * the job's environment variables, defaulting to `scripts/stack.sh`'s ports)
 * and unique names, so runs never see each other's data.
 *
 * @module
 */

import type { Config } from "../../lib/config.ts";

function env(name: string, fallback: string): string {
  return Deno.env.get(name)?.trim() || fallback;
}

/** Cassandra settings of the local stack (`LMS_CASSANDRA_*`, default 127.0.0.1:19042). */
export function stackCassandra(overrides: Partial<Config["cassandra"]> = {}): Config["cassandra"] {
  return {
    contactPoints: env("LMS_CASSANDRA_HOST", "127.0.0.1").split(",").map((s) => s.trim()),
    port: Number(env("LMS_CASSANDRA_PORT", "19042")),
    localDataCenter: env("LMS_CASSANDRA_LOCAL_DATACENTER", "datacenter1"),
    keyspace: env("LMS_CASSANDRA_KEYSPACE", "sunbird_courses"),
    consumptionTable: "user_content_consumption",
    enrolmentsTable: "user_enrolments",
    activityAggTable: "user_activity_agg",
    ...overrides,
  };
}

/** Redis server of the local stack (`REDIS_HOST`/`REDIS_PORT`, default 127.0.0.1:16379). */
export function stackRedis(): { host: string; port: number } {
  return { host: env("REDIS_HOST", "127.0.0.1"), port: Number(env("REDIS_PORT", "16379")) };
}

/** A name no other test run uses: `prefix` plus a random suffix. */
export function unique(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 12)}`;
}

/** A random suffix that is a valid CQL identifier part. */
export function identifierSuffix(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 12);
}
