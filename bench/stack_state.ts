/**
 * The shared stack's state around a timed phase: a Cassandra keyspace of the
 * run's own, memtables flushed and compactions finished before a phase
 * starts, and the CPU the stack's services use during it.
 *
 * Why: the stack's Cassandra keeps every earlier run's rows (1.4 GB after a
 * day of benchmarks), and compacting them costs a core for seconds at a time,
 * whenever a flush happens to trigger it. Landing in one phase and not in
 * another, that was the largest noise in the job/ceiling ratio (a 10k drain
 * measured 4.9 CPU-seconds of compaction in its first 9 s). With a keyspace
 * of its own each run starts empty, and each phase starts from the same
 * state: nothing in the memtables, nothing compacting.
 *
 * @module
 */

import { delay } from "../lib/async.ts";
import { connectCassandra, provision } from "../scripts/provision.ts";
import { stackCassandra } from "../tests/support/stack.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** `getconf CLK_TCK` on Linux. */
const CLOCK_TICKS = 100;

/**
 * CPU seconds (user + system) in the text of a `/proc/<pid>/stat` or
 * `/proc/<pid>/task/<tid>/stat` file. Fields are counted after the command
 * name, which may hold spaces: utime and stime are the 12th and 13th there.
 */
export function cpuSecondsInStat(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Runs `scripts/stack.sh nodetool <args>`; returns its stdout. */
async function nodetool(...args: string[]): Promise<string> {
  const out = await new Deno.Command("bash", {
    args: [`${ROOT}scripts/stack.sh`, "nodetool", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`nodetool ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/**
 * Creates a keyspace with the job's schema for this run and points
 * `LMS_CASSANDRA_KEYSPACE` at it, so that every stack, job and ceiling of
 * the run uses it; `drop` removes it.
 */
export async function keyspaceOfOwn(): Promise<{ name: string; drop: () => Promise<void> }> {
  const name = `bench_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  await provision({ kafka: false, keyspace: name });
  Deno.env.set("LMS_CASSANDRA_KEYSPACE", name);
  return {
    name,
    async drop() {
      const cfg = stackCassandra();
      const client = await connectCassandra(cfg.contactPoints, cfg.port, cfg.localDataCenter);
      try {
        await client.execute(`DROP KEYSPACE IF EXISTS ${name}`);
      } finally {
        await client.shutdown();
      }
    },
  };
}

/** Longest wait for Cassandra's compactions to finish before a phase starts anyway. */
const SETTLE_MAX_SECONDS = 120;

/** Pause between two polls of Cassandra's compactions. */
const SETTLE_POLL_MS = 500;

/**
 * Flushes `keyspace`'s memtables and waits until Cassandra has no compaction
 * running or pending (at most {@linkcode SETTLE_MAX_SECONDS}). Returns the
 * seconds it waited.
 */
export async function settleCassandra(keyspace: string): Promise<number> {
  const started = performance.now();
  await nodetool("flush", keyspace);
  while ((performance.now() - started) / 1000 < SETTLE_MAX_SECONDS) {
    const stats = await nodetool("compactionstats");
    const pending = Number(/pending tasks\s+(\d+)/.exec(stats)?.[1] ?? NaN);
    // Running compactions are listed under a header naming the compaction type.
    if (pending === 0 && !/compaction type/i.test(stats)) break;
    // Each poll starts a nodetool JVM: poll at a pace that leaves Cassandra the CPU.
    await delay(SETTLE_POLL_MS);
  }
  return (performance.now() - started) / 1000;
}

/** The pids of the stack's services, from `scripts/stack.sh status`. */
async function servicePids(): Promise<Record<string, number>> {
  const out = await new Deno.Command("bash", {
    args: [`${ROOT}scripts/stack.sh`, "status"],
    stdout: "piped",
  }).output();
  const pids: Record<string, number> = {};
  for (
    const [, service, pid] of new TextDecoder().decode(out.stdout).matchAll(
      /^(\w+): running \(pid (\d+)\)/gm,
    )
  ) pids[service] = Number(pid);
  return pids;
}

/** CPU seconds of each thread of `pid`, by thread id, with the thread's name. */
async function threadCpu(pid: number): Promise<Map<string, { name: string; seconds: number }>> {
  const threads = new Map<string, { name: string; seconds: number }>();
  try {
    for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
      try {
        const stat = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/stat`);
        const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
        threads.set(task.name, { name, seconds: cpuSecondsInStat(stat) });
      } catch {
        // The thread ended between the listing and the read.
      }
    }
  } catch {
    // The service is not running.
  }
  return threads;
}

/** CPU seconds a phase cost the stack's services. */
export interface ServiceCpu {
  cassandra: number;
  /** The part of `cassandra` spent compacting. */
  compaction: number;
  kafka: number;
  redis: number;
}

/**
 * Starts measuring the CPU of the stack's services; the returned function
 * ends the span. Per thread, so that a compaction thread that starts during
 * the span counts whole.
 */
export async function serviceCpuSpan(): Promise<() => Promise<ServiceCpu>> {
  const pids = await servicePids();
  const read = async () =>
    Object.fromEntries(
      await Promise.all(
        Object.entries(pids).map(async ([service, pid]) => [service, await threadCpu(pid)]),
      ),
    ) as Record<string, Map<string, { name: string; seconds: number }>>;
  const before = await read();
  return async () => {
    const after = await read();
    const spent = (service: string, only?: RegExp) => {
      let seconds = 0;
      for (const [tid, t] of after[service] ?? []) {
        if (only && !only.test(t.name)) continue;
        seconds += t.seconds - (before[service]?.get(tid)?.seconds ?? 0);
      }
      return seconds;
    };
    return {
      cassandra: spent("cassandra"),
      compaction: spent("cassandra", /^CompactionExec/),
      kafka: spent("kafka"),
      redis: spent("redis"),
    };
  };
}
