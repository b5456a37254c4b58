/**
 * The `reconcile` command (SPEC §13): recomputes enrolments from their stored
 * rows, without Kafka input, through the same pipeline as the job. Each
 * enrolment becomes a sync entry; entries go to {@linkcode processWindow} in
 * windows, two at a time, and the pipeline's `observe` hook says what
 * happened to each.
 *
 * The core ({@linkcode reconcile}) takes the pipeline's ports and two line
 * sinks (stdout for results, stderr for progress), so tests drive it on the
 * in-memory stubs; `main.ts` wires the real adapters.
 *
 * @example
 * ```ts
 * const file = parseEnrolmentFile("userId,courseId,batchId\nU-1,C1,B1\n");
 * const summary = await reconcile(file, deps, { print: console.log, progress: console.error });
 * Deno.exit(exitCode(summary));
 * ```
 *
 * @module
 */

import { AbortedError } from "./async.ts";
import { enrolmentId, type EnrolmentKey, MAX_IDENTIFIER_BYTES } from "./event.ts";
import type { EnrolmentOutcome, PipelineDeps } from "./pipeline.ts";
import { processWindow } from "./pipeline.ts";
import type { DedupStore, EventSink, InputMessage, ProgressStore } from "./ports.ts";
import { WindowBuilder } from "./window.ts";

/** Sync entries per window: enrolments read, planned and written together. */
const DEFAULT_WINDOW_SIZE = 500;

/**
 * Windows in flight at once. A FILE names each enrolment once, so two
 * windows never share one; while one waits for Cassandra or Kafka, the next
 * is read and planned.
 */
const DEFAULT_PARALLEL_WINDOWS = 2;

/** The topic named in a reconciled enrolment's `failure.source`. */
const RECONCILE_SOURCE_TOPIC = "reconcile";

/** A bad command line or an unusable FILE: exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** An enrolment to reconcile and where it came from (1-based line; 0 for the command line). */
export interface RequestedEnrolment {
  key: EnrolmentKey;
  line: number;
}

/** A FILE line that names no enrolment. */
export interface InvalidLine {
  line: number;
  reason: string;
}

/** What a FILE (or the command line) asks for. */
export interface EnrolmentRequests {
  /** Distinct enrolments, in first-appearance order. */
  enrolments: RequestedEnrolment[];
  /** Lines that name no enrolment: reported and counted as failed. */
  invalid: InvalidLine[];
  /** Lines repeating an enrolment of an earlier line: reconciled once. */
  repeated: { line: number; firstLine: number }[];
}

/** What the command line asks for: one enrolment or a FILE. */
export type ReconcileTarget =
  | { kind: "enrolment"; key: EnrolmentKey }
  | { kind: "file"; path: string };

/**
 * The target of `reconcile --user U --course C --batch B` or `reconcile FILE`;
 * throws {@linkcode UsageError} for anything else.
 */
export function reconcileTarget(
  flags: { user?: string; course?: string; batch?: string },
  positionals: string[],
): ReconcileTarget {
  const given = [flags.user, flags.course, flags.batch].filter((f) => f !== undefined).length;
  if (positionals.length > 1) throw new UsageError("give one FILE");
  if (positionals.length === 1) {
    if (given > 0) throw new UsageError("give either FILE or --user, --course and --batch");
    return { kind: "file", path: positionals[0] };
  }
  if (given !== 3) {
    throw new UsageError("give FILE, or all three of --user, --course and --batch");
  }
  const key = { userId: flags.user!, courseId: flags.course!, batchId: flags.batch! };
  const problem = keyProblem(key, { userId: "--user", courseId: "--course", batchId: "--batch" });
  if (problem) throw new UsageError(problem);
  return { kind: "enrolment", key };
}

/** One enrolment from the command line, as {@linkcode EnrolmentRequests}. */
export function singleEnrolment(key: EnrolmentKey): EnrolmentRequests {
  return { enrolments: [{ key, line: 0 }], invalid: [], repeated: [] };
}

/**
 * Reads a FILE of enrolments: JSON lines (objects with `userId`, `courseId`
 * and `batchId`, at the top level or under `edata` as in a sync request), or
 * CSV whose header row names those three columns in any order (case, `_` and
 * `-` ignored; other columns ignored). The first non-blank line decides: `{`
 * starts JSON lines. Blank lines are ignored; a line that names no valid
 * enrolment is reported in `invalid`. Throws {@linkcode UsageError} when a CSV
 * header lacks a column or the file names nothing at all.
 */
export function parseEnrolmentFile(text: string): EnrolmentRequests {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  const first = lines.findIndex((l) => l.trim() !== "");
  if (first === -1) throw new UsageError("the file holds no enrolments");
  const parsed: ({ line: number; key: EnrolmentKey } | InvalidLine)[] = [];
  if (lines[first].trimStart().startsWith("{")) {
    lines.forEach((raw, i) => {
      if (raw.trim() !== "") parsed.push(jsonLine(raw, i + 1));
    });
  } else {
    const columns = csvHeader(lines[first]);
    for (let i = first + 1; i < lines.length; i++) {
      if (lines[i].trim() !== "") parsed.push(csvLine(lines[i], i + 1, columns));
    }
  }
  const requests: EnrolmentRequests = { enrolments: [], invalid: [], repeated: [] };
  const seen = new Map<string, number>();
  for (const entry of parsed) {
    if ("reason" in entry) {
      requests.invalid.push(entry);
      continue;
    }
    const id = enrolmentId(entry.key);
    const firstLine = seen.get(id);
    if (firstLine !== undefined) {
      requests.repeated.push({ line: entry.line, firstLine });
    } else {
      seen.set(id, entry.line);
      requests.enrolments.push(entry);
    }
  }
  if (requests.enrolments.length === 0 && requests.invalid.length === 0) {
    throw new UsageError("the file holds no enrolments");
  }
  return requests;
}

const ID_FIELDS = ["userId", "courseId", "batchId"] as const;

function jsonLine(raw: string, line: number): { line: number; key: EnrolmentKey } | InvalidLine {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    return { line, reason: `not JSON: ${(error as Error).message.slice(0, 200)}` };
  }
  if (!isObject(value)) return { line, reason: "not a JSON object" };
  const holder = ID_FIELDS.some((f) => f in value) || !isObject(value.edata) ? value : value.edata;
  const ids = ID_FIELDS.map((f) => holder[f]);
  const missing = ID_FIELDS.filter((_, i) => typeof ids[i] !== "string");
  if (missing.length > 0) return { line, reason: `${missing.join(", ")} missing or not a string` };
  const key = { userId: ids[0], courseId: ids[1], batchId: ids[2] } as EnrolmentKey;
  const problem = keyProblem(key);
  return problem ? { line, reason: problem } : { line, key };
}

/** Column index of each id in a CSV header row. */
function csvHeader(raw: string): Record<typeof ID_FIELDS[number], number> {
  const names = csvFields(raw)?.map((n) => n.toLowerCase().replace(/[\s_-]/g, ""));
  if (!names) throw new UsageError("the CSV header row has an unterminated quote");
  const columns = {} as Record<typeof ID_FIELDS[number], number>;
  const absent: string[] = [];
  for (const field of ID_FIELDS) {
    const at = names.indexOf(field.toLowerCase());
    if (at === -1) absent.push(field);
    else if (names.indexOf(field.toLowerCase(), at + 1) !== -1) {
      throw new UsageError(`the CSV header row names ${field} twice`);
    }
    columns[field] = at;
  }
  if (absent.length > 0) {
    throw new UsageError(
      `the first line is neither a JSON object nor a CSV header naming userId, courseId and ` +
        `batchId (missing: ${absent.join(", ")})`,
    );
  }
  return columns;
}

function csvLine(
  raw: string,
  line: number,
  columns: Record<typeof ID_FIELDS[number], number>,
): { line: number; key: EnrolmentKey } | InvalidLine {
  const fields = csvFields(raw);
  if (!fields) return { line, reason: "unterminated quote" };
  const needed = Math.max(...Object.values(columns)) + 1;
  if (fields.length < needed) {
    return { line, reason: `${fields.length} columns, the header has ${needed} or more` };
  }
  const key = {
    userId: fields[columns.userId],
    courseId: fields[columns.courseId],
    batchId: fields[columns.batchId],
  };
  const problem = keyProblem(key);
  return problem ? { line, reason: problem } : { line, key };
}

/**
 * The fields of one CSV line (RFC 4180 quoting within the line; fields
 * trimmed), or null when a quote is not closed.
 */
export function csvFields(raw: string): string[] | null {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    while (raw[i] === " " || raw[i] === "\t") i++;
    let field = "";
    if (raw[i] === '"') {
      i++;
      for (;;) {
        if (i >= raw.length) return null;
        if (raw[i] === '"') {
          if (raw[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += raw[i++];
      }
      while (i < raw.length && raw[i] !== ",") i++;
    } else {
      const end = raw.indexOf(",", i);
      field = (end === -1 ? raw.slice(i) : raw.slice(i, end)).trim();
      i = end === -1 ? raw.length : end;
    }
    fields.push(field);
    if (i >= raw.length) return fields;
    i++; // the comma
  }
}

const encoder = new TextEncoder();

/** Why `key` cannot be reconciled (an empty or overlong id, SPEC §3), or null. */
function keyProblem(
  key: EnrolmentKey,
  names: Record<keyof EnrolmentKey, string> = {
    userId: "userId",
    courseId: "courseId",
    batchId: "batchId",
  },
): string | null {
  for (const field of ID_FIELDS) {
    const id = key[field];
    if (id.trim() === "") return `${names[field]} is empty`;
    if (encoder.encode(id).length > MAX_IDENTIFIER_BYTES) {
      return `identifier too long: ${names[field]}`;
    }
  }
  return null;
}

/** A sink that sends nothing: for `--dry-run`. */
export const DISCARDING_SINK: EventSink = { send: () => Promise.resolve() };

/**
 * The ports of a dry run: reads stay real; the progress store's writes, every
 * event and the de-duplication store's writes go nowhere.
 */
function dryRunPorts<
  T extends { progress: ProgressStore; sink: EventSink; dedup: DedupStore },
>(deps: T): T {
  const { progress, dedup } = deps;
  return {
    ...deps,
    progress: {
      readConsumption: (key) => progress.readConsumption(key),
      readEnrolment: (key) => progress.readEnrolment(key),
      writeProgress: () => Promise.resolve(),
      writeEnrolments: () => Promise.resolve(),
    },
    sink: DISCARDING_SINK,
    dedup: { existing: (sums) => dedup.existing(sums), store: () => Promise.resolve() },
  };
}

/** Options of {@linkcode reconcile}. */
export interface ReconcileOptions {
  /** One line per enrolment (stdout). */
  print: (line: string) => void;
  /** Progress, repeats, the summary and errors (stderr). */
  progress: (line: string) => void;
  /** Write and send nothing: see {@linkcode dryRunPorts}. */
  dryRun?: boolean;
  /** Sync entries per window; default {@linkcode DEFAULT_WINDOW_SIZE}. */
  windowSize?: number;
  /** Windows processed at a time; default {@linkcode DEFAULT_PARALLEL_WINDOWS}. */
  parallelWindows?: number;
  /** Milliseconds since some fixed point, for elapsed time and the progress cadence. */
  elapsedClock?: () => number;
  /** Progress at most this often (default 1000 ms), and at least every 1000 enrolments. */
  progressIntervalMs?: number;
}

/** What a run did; {@linkcode exitCode} turns it into the exit status. */
export interface ReconcileSummary {
  /** Enrolments requested (distinct), invalid lines not included. */
  enrolments: number;
  /** Enrolments computed (or retired): everything but failures. */
  reconciled: number;
  /** Of those, completed now (status 2 written after a certificate request). */
  completed: number;
  certificates: number;
  /** Progress or status moved, without completing. */
  updated: number;
  /** Progress and status as they were (or the row left alone by the filter). */
  unchanged: number;
  /** Collections retired (SPEC §7): nothing to do. */
  retired: number;
  /** Failed enrolments plus invalid lines. */
  failed: number;
  invalidLines: number;
  /** Enrolments not reconciled because the run stopped early (a signal or a permanent error). */
  unfinished: number;
  /** Why the run stopped early, if it did. */
  stopped: string | null;
  elapsedMs: number;
  dryRun: boolean;
}

/** 0 when every enrolment was reconciled, 1 otherwise. */
export function exitCode(summary: ReconcileSummary): number {
  return summary.failed === 0 && summary.unfinished === 0 && summary.stopped === null ? 0 : 1;
}

/** How one outcome is shown and counted. */
type Kind = "completed" | "updated" | "unchanged" | "retired" | "failed";

/**
 * Reconciles `requests` through {@linkcode processWindow} with `deps` (whose
 * `isolate` retries until the caller's signal aborts), printing one line per
 * enrolment in request order, then a summary on `progress`. Resolves when
 * done, or early when the pipeline throws (a signal, a permanent error): the
 * rest is counted as unfinished.
 */
export async function reconcile(
  requests: EnrolmentRequests,
  deps: PipelineDeps,
  opts: ReconcileOptions,
): Promise<ReconcileSummary> {
  const elapsed = opts.elapsedClock ?? (() => performance.now());
  const started = elapsed();
  const windowSize = opts.windowSize ?? DEFAULT_WINDOW_SIZE;
  const ports = opts.dryRun ? dryRunPorts(deps) : deps;
  const summary: ReconcileSummary = {
    enrolments: requests.enrolments.length,
    reconciled: 0,
    completed: 0,
    certificates: 0,
    updated: 0,
    unchanged: 0,
    retired: 0,
    failed: 0,
    invalidLines: requests.invalid.length,
    unfinished: 0,
    stopped: null,
    elapsedMs: 0,
    dryRun: opts.dryRun ?? false,
  };

  for (const { line, reason } of requests.invalid) {
    opts.print(`invalid    line=${line} reason=${JSON.stringify(reason)}`);
    summary.failed++;
  }
  for (const { line, firstLine } of requests.repeated) {
    opts.progress(`line ${line} repeats the enrolment of line ${firstLine}: reconciled once`);
  }

  const total = requests.enrolments.length;
  const parallel = Math.max(1, opts.parallelWindows ?? DEFAULT_PARALLEL_WINDOWS);
  let done = 0;
  let lastReport = started;
  let lastReportedCount = 0;
  // Windows run `parallel` at a time (their enrolments are distinct) and are
  // printed in order as each finishes.
  const launch = (start: number) => {
    const chunk = requests.enrolments.slice(start, start + windowSize);
    const outcomes = new Map<string, EnrolmentOutcome>();
    return processWindow(syncWindow(chunk, start), {
      ...ports,
      observe: (outcome) => outcomes.set(enrolmentId(outcome.key), outcome),
    }).then(() => ({ chunk, outcomes, error: null }), (error) => ({ chunk, outcomes, error }));
  };
  const inFlight: ReturnType<typeof launch>[] = [];
  let next = 0;
  for (; next < total && inFlight.length < parallel; next += windowSize) {
    inFlight.push(launch(next));
  }
  while (inFlight.length > 0) {
    const { chunk, outcomes, error } = await inFlight.shift()!;
    if (error !== null || summary.stopped !== null) {
      if (summary.stopped === null) {
        summary.stopped = error instanceof AbortedError
          ? `interrupted (${error.message})`
          : `${(error as Error).name}: ${(error as Error).message}`;
        opts.progress(`reconcile stopped: ${summary.stopped}`);
      }
      summary.unfinished += chunk.length;
      continue;
    }
    for (const { key } of chunk) {
      const outcome = outcomes.get(enrolmentId(key)) ?? {
        key,
        before: null,
        after: null,
        certificate: false,
        result: "failed" as const,
        reason: "the pipeline reported no outcome",
      };
      const kind = kindOf(outcome);
      count(summary, kind, outcome);
      opts.print(outcomeLine(kind, outcome));
    }
    done += chunk.length;
    if (next < total) {
      inFlight.push(launch(next));
      next += windowSize;
    }
    const now = elapsed();
    if (
      done < total &&
      (now - lastReport >= (opts.progressIntervalMs ?? 1000) || done - lastReportedCount >= 1000)
    ) {
      opts.progress(
        `reconcile: ${done}/${total} enrolments, ${summary.failed} failed, ` +
          `${rate(done, now - started)} enrolments/s`,
      );
      lastReport = now;
      lastReportedCount = done;
    }
  }
  // Windows never launched after a stop.
  summary.unfinished += summary.stopped === null ? 0 : Math.max(0, total - next);
  summary.elapsedMs = elapsed() - started;
  opts.progress(summaryLine(summary));
  return summary;
}

/** A window of sync entries for `enrolments`, offsets counting from `first`. */
function syncWindow(enrolments: RequestedEnrolment[], first: number) {
  const builder = new WindowBuilder({ maxUnits: enrolments.length, maxWaitMs: 0 });
  enrolments.forEach(({ key }, i) => {
    const message: InputMessage = {
      topic: RECONCILE_SOURCE_TOPIC,
      partition: 0,
      offset: String(first + i),
      key: null,
      value: null,
      timestamp: 0,
    };
    builder.add({ message, parsed: { kind: "sync", key } }, 0);
  });
  return builder.take()!;
}

function kindOf(outcome: EnrolmentOutcome): Kind {
  if (outcome.result !== "processed") return outcome.result;
  if (outcome.certificate) return "completed";
  const { before, after } = outcome;
  if (after === null) return "unchanged";
  return before !== null && before.progress === after.progress && before.status === after.status
    ? "unchanged"
    : "updated";
}

function count(summary: ReconcileSummary, kind: Kind, outcome: EnrolmentOutcome): void {
  if (kind === "failed") {
    summary.failed++;
    return;
  }
  summary.reconciled++;
  if (outcome.certificate) summary.certificates++;
  summary[kind]++;
}

/**
 * One enrolment's result line:
 * `completed  user=U-1 course=C1 batch=B1 progress=2→3 status=1→2 certificate=requested`.
 * Ids with spaces, quotes or `=` are shown as JSON strings.
 */
function outcomeLine(kind: Kind, outcome: EnrolmentOutcome): string {
  const { key, before, after } = outcome;
  const value = (v: number | null | undefined) => v === null || v === undefined ? "-" : String(v);
  const then = (field: "progress" | "status") => {
    if (kind === "failed" || kind === "retired") return "-";
    return value(after === null ? before?.[field] : after[field]);
  };
  const parts = [
    `${kind.padEnd(10)} `,
    `user=${shownId(key.userId)} course=${shownId(key.courseId)} batch=${shownId(key.batchId)}`,
    ` progress=${value(before?.progress)}→${then("progress")}`,
    ` status=${value(before?.status)}→${then("status")}`,
    ` certificate=${outcome.certificate ? "requested" : "no"}`,
  ];
  if (kind === "failed") parts.push(` reason=${JSON.stringify(outcome.reason ?? "")}`);
  else if (kind === "retired") parts.push(" note=collection-retired");
  else if (outcome.after === null) {
    parts.push(before === null ? " note=no-enrolment-row" : " note=already-completed");
  }
  return parts.join("");
}

function shownId(id: string): string {
  return /^[^\s"=\\]+$/.test(id) ? id : JSON.stringify(id);
}

function rate(count: number, ms: number): string {
  return ms > 0 ? (count / (ms / 1000)).toFixed(0) : "-";
}

/** The summary printed at the end. */
function summaryLine(s: ReconcileSummary): string {
  const failed = s.invalidLines > 0
    ? `${s.failed} failed (${s.invalidLines} invalid lines)`
    : `${s.failed} failed`;
  const parts = [
    `reconcile${s.dryRun ? " (dry run: nothing written or sent)" : ""}: ` +
    `${s.enrolments} enrolments in ${(s.elapsedMs / 1000).toFixed(1)} s ` +
    `(${rate(s.enrolments - s.unfinished, s.elapsedMs)} enrolments/s)`,
    `${s.reconciled} reconciled (${s.completed} completed, ${s.certificates} certificates ` +
    `requested, ${s.updated} updated, ${s.unchanged} unchanged, ${s.retired} retired)`,
    failed,
  ];
  if (s.unfinished > 0) parts.push(`${s.unfinished} unfinished`);
  return parts.join(", ");
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
