/**
 * activity-aggregate-updater: turns Sunbird Lern course-progress events into
 * course and unit progress, telemetry and certificate requests.
 *
 * Commands: `run` (default), `check`, `replay FILE`, `healthcheck`, `version`;
 * `--help` on each.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { checkServices, replayFile } from "./lib/commands.ts";
import { type Config, ConfigError, loadConfig, mergeEnv, parseDotenv } from "./lib/config.ts";
import { Health, probeHealth, serveOps } from "./lib/http.ts";
import { startJob } from "./lib/job.ts";
import { muteKafkajsTimerWarning } from "./lib/kafka.ts";
import { logger, setupLogging } from "./lib/log.ts";
import { JobMetrics } from "./lib/metrics.ts";
import { VERSION } from "./lib/version.ts";

const USAGE: Record<string, string> = {
  main: `activity-aggregate-updater ${VERSION}

Usage: activity-aggregate-updater [--env-file FILE] [COMMAND] [ARGS]

Commands:
  run           consume the input topic and update course progress (default)
  check         validate the configuration and every service the job uses
  replay FILE   publish a file of JSON lines to the input topic
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
    options: { help: { type: "boolean", short: "h" }, "env-file": { type: "string" } },
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

  let config: Config;
  try {
    config = loadConfig(await environment(values["env-file"]));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    // A container HEALTHCHECK reserves exit code 2; unhealthy is 1.
    return command === "healthcheck" ? 1 : 2;
  }
  await setupLogging(config.logLevel);
  switch (command) {
    case "check":
      return (await checkServices(config)) ? 0 : 1;
    case "replay":
      if (rest.length !== 1) {
        console.error(USAGE.replay);
        return 2;
      }
      return (await replayFile(config, rest[0])) ? 0 : 1;
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
    job = await startJob(config, metrics, health, startup.signal);
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

if (import.meta.main) {
  muteKafkajsTimerWarning();
  Deno.exit(await main(Deno.args));
}
