/**
 * The job's metrics (SPEC §10) in a Prometheus registry of its own.
 *
 * @module
 */

import client from "prom-client";

/** How often the event-loop delay of the default metrics is sampled. */
const EVENT_LOOP_SAMPLE_MS = 100;

/** Counter names of SPEC §10, as the job increments them. */
export const COUNTERS = {
  totalEvents: "total events consumed from the input topic",
  skippedEvents: "input events skipped (other action, or no completed content)",
  batchEnrolmentUpdateEvents: "batch-enrolment-update events with units",
  syncRequests: "user-enrolment-sync requests consumed from the sync topic",
  duplicateUnits: "units dropped as duplicates",
  processedEnrolments: "enrolments written",
  failedEvents: "failed messages and enrolments sent to the failed topic",
  retiredCollectionEvents: "enrolments skipped because their collection is retired",
  filteredEnrolments: "enrolments skipped because they are missing or already completed",
  dbReads: "Cassandra partition reads asked for (known_status_reads of them answered in process)",
  knownStatusReads: "enrolment status reads answered from statuses this process read or wrote",
  dbWrites: "Cassandra statements written",
  cacheReads: "relation-cache sets read",
  cacheMisses: "relation-cache sets read that were empty",
  enrolmentCompletions: "enrolments completed",
  certIssueEvents: "certificate-issue events sent",
  retries: "failed attempts of a stage that was then retried",
  commitFailures: "offset commits that failed (a later commit supersedes them)",
} as const;

/** One of {@linkcode COUNTERS}. */
export type CounterName = keyof typeof COUNTERS;

/** The job's metrics: counters, histograms and gauges, in their own registry. */
export class JobMetrics {
  readonly registry = new client.Registry();
  readonly #counters = new Map<CounterName, client.Counter>();
  readonly latency: client.Histogram;
  readonly windowSize: client.Histogram;
  readonly windowDuration: client.Histogram;
  readonly openWindowUnits: client.Gauge;
  readonly openWindowAgeSeconds: client.Gauge;
  readonly consumerLag: client.Gauge;
  readonly outage: client.Gauge;

  constructor(opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    for (const [name, help] of Object.entries(COUNTERS)) {
      this.#counters.set(
        name as CounterName,
        new client.Counter({ name: `activity_agg_${snake(name)}_total`, help, registers }),
      );
    }
    this.latency = new client.Histogram({
      name: "activity_agg_end_to_end_latency_seconds",
      help: "message timestamp to offset commit",
      // 100 ms steps up to 1.2 s (THRESHOLD_BATCH_READ_INTERVAL's default plus
      // 200 ms), so p50/p95/p99 of a job that keeps up resolve to 0.1 s.
      buckets: [
        0.05,
        ...Array.from({ length: 12 }, (_, i) => (i + 1) / 10),
        1.5,
        2,
        3,
        5,
        10,
        30,
        60,
        300,
      ],
      registers,
    });
    this.windowSize = new client.Histogram({
      name: "activity_agg_window_units",
      help: "units per closed window",
      buckets: [1, 5, 10, 50, 100, 250, 500, 1000, 2500],
      registers,
    });
    this.windowDuration = new client.Histogram({
      name: "activity_agg_window_processing_seconds",
      help: "time to process a window, from close to commit",
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers,
    });
    this.openWindowUnits = new client.Gauge({
      name: "activity_agg_open_window_units",
      help: "units in the window being collected",
      registers,
    });
    this.openWindowAgeSeconds = new client.Gauge({
      name: "activity_agg_open_window_age_seconds",
      help: "age of the oldest message in the window being collected",
      registers,
    });
    this.consumerLag = new client.Gauge({
      name: "activity_agg_consumer_lag",
      help: "messages behind the partition's high watermark",
      labelNames: ["topic", "partition"],
      registers,
    });
    this.outage = new client.Gauge({
      name: "activity_agg_outage",
      help: "1 while a stage is failing and being retried",
      labelNames: ["stage"],
      registers,
    });
    if (opts.processMetrics) {
      // The event-loop delay is sampled every 100 ms, not prom-client's 10:
      // ten times fewer wake-ups of an idle job (0.4 % of a core at 10 ms).
      client.collectDefaultMetrics({
        register: this.registry,
        eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
      });
      useDenoProcessMemory(this.registry);
    }
  }

  /** Adds `by` (default 1) to a counter. */
  inc(name: CounterName, by = 1): void {
    if (by > 0) this.#counters.get(name)!.inc(by);
  }

  /** A counter's current value. */
  async value(name: CounterName): Promise<number> {
    const metric = await this.#counters.get(name)!.get();
    return metric.values[0]?.value ?? 0;
  }

  /** The Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * prom-client's process metrics that read `/proc/self`, which Deno lets a
 * program read only under `--allow-all`: with the job's own permissions
 * (scripts/compile.sh) they would always show 0.
 */
const PROC_SELF_METRICS = [
  "process_resident_memory_bytes",
  "process_virtual_memory_bytes",
  "process_heap_bytes",
  "process_open_fds",
  "process_max_fds",
];

/**
 * Replaces prom-client's `/proc/self` readers in `registry` (after
 * `collectDefaultMetrics`) by `process_resident_memory_bytes` from
 * `Deno.memoryUsage()`, which needs no permission; the others are dropped
 * rather than exported as zeros.
 */
function useDenoProcessMemory(registry: client.Registry): void {
  for (const name of PROC_SELF_METRICS) registry.removeSingleMetric(name);
  new client.Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers: [registry],
    collect() {
      this.set(Deno.memoryUsage().rss);
    },
  });
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
