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
  type Logger,
  type LogRecord,
} from "@logtape/logtape";
import type { LogLevel } from "./config.ts";

const ROOT = "activity-aggregate-updater";

/**
 * Sends the job's logs at `level` and above to stdout as JSON lines, or to
 * stderr for a command whose stdout is its result (`reconcile`).
 */
export async function setupLogging(
  level: LogLevel,
  stream: "stdout" | "stderr" = "stdout",
): Promise<void> {
  const sink = stream === "stdout"
    ? getConsoleSink({ formatter: jsonLine })
    : (record: LogRecord) => console.error(jsonLine(record));
  await configure({
    reset: true,
    sinks: { out: sink },
    loggers: [
      { category: [ROOT], lowestLevel: level, sinks: ["out"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["out"] },
    ],
  });
}

/** The logger of one module. */
export function logger(module: string): Logger {
  return getLogger([ROOT, module]);
}

const LEVEL_NAMES: Record<LogRecord["level"], string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "FATAL",
};

/**
 * One JSON line per record. Unlike LogTape's own JSON formatter, strings are
 * put into the message as they are, not quoted: `dedup-check failed`, not
 * `"dedup-check" failed`.
 */
export function jsonLine(record: LogRecord): string {
  const message = record.message
    .map((part, i) => i % 2 === 0 || typeof part === "string" ? part : JSON.stringify(part))
    .join("");
  return JSON.stringify({
    "@timestamp": new Date(record.timestamp).toISOString(),
    level: LEVEL_NAMES[record.level],
    message,
    logger: record.category.join("."),
    properties: record.properties,
  });
}
