/**
 * activity-aggregate-updater: turns Sunbird Lern course-progress events into
 * course and unit progress, telemetry and certificate requests.
 *
 * Commands: `run` (default), `check`, `replay FILE`, `reconcile`, `healthcheck`,
 * `version`; `--help` on each.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { retryWithBackoff } from "./lib/async.ts";
import { checkServices, replayFile } from "./lib/commands.ts";
import { type Config, ConfigError, loadConfig, mergeEnv, parseDotenv } from "./lib/config.ts";
import { Health, probeHealth, serveOps } from "./lib/http.ts";
import { connectStores, isolation, pipelineDeps, startJob } from "./lib/job.ts";
import { kafkaClient, KafkaSink, muteKafkajsTimerWarning } from "./lib/kafka.ts";
import { logger, setupLogging } from "./lib/log.ts";
import { JobMetrics } from "./lib/metrics.ts";
import type { EventSink } from "./lib/ports.ts";
import {
  DISCARDING_SINK,
  type EnrolmentRequests,
  exitCode,
  parseEnrolmentFile,
  reconcile,
  type ReconcileTarget,
  reconcileTarget,
  singleEnrolment,
  UsageError,
} from "./lib/reconcile.ts";

import { SearchCollectionStatus } from "./lib/search.ts";
import { VERSION } from "./lib/version.ts";

const USAGE: Record<string, string> = {
  main: `activity-aggregate-updater ${VERSION}

Usage: activity-aggregate-updater [--env-file FILE] [COMMAND] [ARGS]

Commands:
  run           consume the input topic and update course progress (default)
  check         validate the configuration and every service the job uses
  replay FILE   publish a file of JSON lines to the input topic
  reconcile     recompute enrolments from their stored rows (SPEC §13)
  healthcheck   ask the running job's /healthz (for a container HEALTHCHECK)
  version       print the version

Every setting is an environment variable (see README.md); --env-file (or
ENV_FILE) names a dotenv file underneath them: the real environment wins.
Run a command with --help for its own usage.`,
  run: `Usage: activity-aggregate-updater run [--env-file FILE]

Consumes the input topic until SIGTERM or SIGINT, serving /metrics, /healthz
and /readyz on HTTP_PORT. Exits 0 after a graceful stop, 1 on a permanent
error, 2 on a bad configuration.`,
  check: `Usage: activity-aggregate-updater check [--env-file FILE]

Validates the configuration, connects to Kafka, Cassandra, both Redis
databases and the search service, and verifies the topics, keyspace, tables
and columns the job uses. Prints a report; exits 1 on any problem.`,
  replay: `Usage: activity-aggregate-updater replay [--env-file FILE] FILE

Publishes each JSON line of FILE (for example saved from the failed topic) to
the input topic, keyed by edata.userId. Blank lines are ignored; a line that
is not JSON is reported and not sent. Exits 1 if any line was not sent.`,
  reconcile: `Usage: activity-aggregate-updater reconcile [--env-file FILE] [--dry-run]
         (--user U --course C --batch B | FILE)

Recomputes enrolments from their stored rows, as a sync request does: progress,
contentstatus and status from user_content_consumption and the course
structure, with certificate and AUDIT events to the configured topics. No
Kafka input is read; counters and content AUDIT events are not touched.

FILE holds JSON lines ({"userId":…,"courseId":…,"batchId":…}, or sync
requests with those under edata) or CSV with a header row naming userId,
courseId and batchId in any order. Blank lines are ignored; a line naming no
enrolment is printed as invalid and counted as failed; a repeated enrolment
is reconciled once.

Prints one line per enrolment on stdout (its ids, progress and status before
and after, whether a certificate was requested, the reason of a failure);
progress, retries and a summary go to stderr. --dry-run reads the same and
prints the same, but writes and sends nothing (it does not connect to Kafka).

Exits 0 when every enrolment was reconciled, 1 when any failed or an invalid
line was found (or the run was stopped by SIGINT/SIGTERM), 2 on a usage error
or a FILE that cannot be read or names no enrolment.`,
  healthcheck: `Usage: activity-aggregate-updater healthcheck [--env-file FILE]

Asks the operations endpoint of the job running on this host (HTTP_PORT; a
wildcard HTTP_HOST is reached on loopback) for /healthz. Exits 0 when it
answers 200 within 3 s, 1 otherwise. For a container HEALTHCHECK in an image
without curl; Kubernetes probes should call /healthz and /readyz themselves.`,
  version: `Usage: activity-aggregate-updater version

Prints the version.`,
};

/** Runs the command line; resolves to the process exit code. */
export async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      help: { type: "boolean", short: "h" },
      "env-file": { type: "string" },
      // reconcile's
      user: { type: "string" },
      course: { type: "string" },
      batch: { type: "string" },
      "dry-run": { type: "boolean" },
    },
    allowPositionals: true,
  });
  const [command = "run", ...rest] = positionals;
  if (!(command in USAGE) || command === "main") {
    console.error(`unknown command ${JSON.stringify(command)}\n\n${USAGE.main}`);
    return 2;
  }
  if (values.help) {
    console.log(command === "run" && positionals.length === 0 ? USAGE.main : USAGE[command]);
    return 0;
  }
  if (command === "version") {
    console.log(VERSION);
    return 0;
  }
  let target: ReconcileTarget | null = null;
  try {
    if (command === "reconcile") target = reconcileTarget(values, rest);
    else if (["user", "course", "batch", "dry-run"].some((f) => f in values)) {
      throw new UsageError("--user, --course, --batch and --dry-run belong to reconcile");
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`${error.message}\n\n${USAGE[command]}`);
    return 2;
  }

  let config: Config;
  try {
    config = loadConfig(await environment(values["env-file"]));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    // A container HEALTHCHECK reserves exit code 2; unhealthy is 1.
    return command === "healthcheck" ? 1 : 2;
  }
  // reconcile's stdout is its result: its logs go to stderr.
  await setupLogging(config.logLevel, command === "reconcile" ? "stderr" : "stdout");
  switch (command) {
    case "check":
      return (await checkServices(config)) ? 0 : 1;
    case "replay":
      if (rest.length !== 1) {
        console.error(USAGE.replay);
        return 2;
      }
      return (await replayFile(config, rest[0])) ? 0 : 1;
    case "reconcile":
      return await reconcileCommand(config, target!, values["dry-run"] ?? false);
    case "healthcheck": {
      const probe = await probeHealth(config.httpHost, config.httpPort);
      console.log(probe.healthy ? `healthy: ${probe.detail}` : `unhealthy: ${probe.detail}`);
      return probe.healthy ? 0 : 1;
    }
    default:
      return await run(config);
  }
}

/** The real environment over the dotenv file named by `--env-file` or `ENV_FILE`. */
async function environment(envFile?: string): Promise<Record<string, string | undefined>> {
  const real = Deno.env.toObject();
  const file = envFile ?? real.ENV_FILE;
  if (!file) return real;
  return mergeEnv(parseDotenv(await Deno.readTextFile(file)), real);
}

/** The `run` command: serve the operations endpoint and consume until a signal. */
async function run(config: Config): Promise<number> {
  const log = logger("main");
  const metrics = new JobMetrics({ processMetrics: true });
  const health = new Health();
  const startup = new AbortController();
  let job: Awaited<ReturnType<typeof startJob>> | null = null;
  const server = serveOps({ hostname: config.httpHost, port: config.httpPort }, {
    metrics,
    health,
    beforeScrape() {
      const open = job?.runner.openWindow;
      metrics.openWindowUnits.set(open?.units ?? 0);
      metrics.openWindowAgeSeconds.set(open?.openedAt ? (Date.now() - open.openedAt) / 1000 : 0);
    },
  }, (addr) => log.info("operations endpoint on {hostname}:{port}", { ...addr }));

  let signalled = false;
  const onSignal = (signal: Deno.Signal) => {
    if (signalled) return;
    signalled = true;
    log.info("{signal} received, shutting down", { signal });
    health.markStopping();
    startup.abort(new Error(`${signal} during start-up`));
    job?.stop();
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => onSignal(signal));
  }

  log.info("activity-aggregate-updater {version} starting", { version: VERSION });
  let code = 0;
  try {
    job = await startJob(config, { metrics, health, signal: startup.signal });
    if (signalled) job.stop();
    await job.done;
    log.info("stopped cleanly");
  } catch (error) {
    if (startup.signal.aborted && signalled) {
      log.info("stopped during start-up");
    } else {
      log.fatal("stopping: {error}", { error: String(error), stack: (error as Error).stack });
      code = 1;
    }
  } finally {
    await server.shutdown();
  }
  return code;
}

/**
 * The `reconcile` command: the pipeline on the configured stores and output
 * topics (none in a dry run), retrying outages until SIGINT or SIGTERM.
 */
async function reconcileCommand(
  config: Config,
  target: ReconcileTarget,
  dryRun: boolean,
): Promise<number> {
  let requests: EnrolmentRequests;
  try {
    requests = target.kind === "enrolment"
      ? singleEnrolment(target.key)
      : parseEnrolmentFile(await Deno.readTextFile(target.path));
  } catch (error) {
    const path = target.kind === "file" ? target.path : "";
    console.error(`reconcile: ${path}: ${(error as Error).message}`);
    return 2;
  }

  const stop = new AbortController();
  const listeners = (["SIGINT", "SIGTERM"] as const).map((signal) => {
    const listener = () => {
      console.error(`reconcile: ${signal} received, stopping`);
      stop.abort(new Error(`${signal} received`));
    };
    Deno.addSignalListener(signal, listener);
    return () => Deno.removeSignalListener(signal, listener);
  });
  const retry = retryWithBackoff({
    initialMs: config.retry.initialBackoffMs,
    maxMs: config.retry.maxBackoffMs,
    signal: stop.signal,
    onFailure: (stage, error, attempt, delayMs) =>
      console.error(
        `reconcile: ${stage} failed (attempt ${attempt}), retrying in ${delayMs} ms: ${error}`,
      ),
    onSuccess: (stage, attempts) => {
      if (attempts > 1) console.error(`reconcile: ${stage} recovered after ${attempts} attempts`);
    },
  });
  const closers: (() => Promise<void>)[] = [];
  try {
    const stores = await connectStores(config, retry, closers);
    let sink: EventSink = DISCARDING_SINK;
    if (!dryRun) {
      const kafka = kafkaClient(config.kafka, "activity-aggregate-updater-reconcile");
      const producer = await retry("connect-kafka-producer", () => KafkaSink.connect(kafka));
      closers.push(() => producer.close());
      sink = producer;
    }
    const deps = pipelineDeps(config, {
      ...stores,
      collections: new SearchCollectionStatus(config.search),
      sink,
      metrics: new JobMetrics(),
    });
    const summary = await reconcile(
      requests,
      { ...deps, isolate: isolation(config, retry, stop.signal) },
      { print: console.log, progress: console.error, dryRun },
    );
    return exitCode(summary);
  } catch (error) {
    console.error(`reconcile: not started: ${error}`);
    return 1;
  } finally {
    for (const close of closers.reverse()) {
      await close().catch((e) => console.error(`reconcile: close failed: ${e}`));
    }
    listeners.forEach((remove) => remove());
  }
}

if (import.meta.main) {
  muteKafkajsTimerWarning();
  Deno.exit(await main(Deno.args));
}
