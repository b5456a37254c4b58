/**
 * Structured JSON-line logs on stdout, one logger per module under the
 * `activity-aggregate-updater` category.
 *
 * @module
 */

import {
  configure,
  getConsoleSink,
  getLogger,
  jsonLinesFormatter,
  type Logger,
} from "@logtape/logtape";
import type { LogLevel } from "./config.ts";

const ROOT = "activity-aggregate-updater";

/** Sends the job's logs at `level` and above to stdout as JSON lines. */
export async function setupLogging(level: LogLevel): Promise<void> {
  await configure({
    reset: true,
    sinks: { stdout: getConsoleSink({ formatter: jsonLinesFormatter }) },
    loggers: [
      { category: [ROOT], lowestLevel: level, sinks: ["stdout"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stdout"] },
    ],
  });
}

/** The logger of one module. */
export function logger(module: string): Logger {
  return getLogger([ROOT, module]);
}
