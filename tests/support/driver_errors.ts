/**
 * The errors the drivers really throw, as `scripts/record_driver_errors.ts`
 * recorded them against the local stack in `tests/fixtures/driver_errors.json`,
 * rebuilt with the real driver classes so unit tests can feed error
 * classifiers exact shapes without servers.
 *
 * @example
 * ```ts
 * const error = driverError("key-too-long-update");
 * error instanceof cassandra.errors.ResponseError; // true
 * (error as { code: number }).code; // 8704 (invalid)
 * ```
 *
 * @module
 */

import cassandra from "cassandra-driver";
import { ReplyError } from "ioredis";
import ioredisErrors from "ioredis/built/errors/index.js";
import * as kafkajs from "kafkajs";

/** A JSON-safe description of an error (see `scripts/record_driver_errors.ts`). */
export interface RecordedError {
  constructor: string;
  /** Constructor names of the prototype chain, nearest first, down to `Object`. */
  prototypeChain: string[];
  name: unknown;
  message: unknown;
  code?: unknown;
  /** Name of a Cassandra response code, from `types.responseErrorCodes`. */
  codeName?: string;
  type?: unknown;
  retriable?: unknown;
  /** Own properties (enumerable or not) other than `stack`, JSON-safe. */
  own: Record<string, unknown>;
  /** Which of `own` are enumerable. */
  enumerable: string[];
  /** `cause`, when it is not an own property. */
  cause?: unknown;
}

/** One recorded case of the fixture. */
export interface RecordedCase {
  id: string;
  driver: "cassandra" | "redis" | "kafka" | "search";
  case: string;
  how: string;
  error?: RecordedError;
  result?: unknown;
  skipped?: string;
  ms?: number;
}

const FIXTURE = new URL("../fixtures/driver_errors.json", import.meta.url);
let cases: RecordedCase[] | null = null;

/**
 * Every recorded case, in recording order (skipped ones included, with
 * `skipped`). Read on first use, so the recorder can import this module
 * before the fixture exists.
 */
export function recordedCases(): RecordedCase[] {
  cases ??= (JSON.parse(Deno.readTextFileSync(FIXTURE)) as { cases: RecordedCase[] }).cases;
  return cases;
}

/** The error recorded for case `id`, rebuilt. Throws when the case has no error. */
export function driverError(id: string): Error {
  const found = recordedCases().find((c) => c.id === id);
  if (!found) throw new Error(`no recorded case ${id}`);
  if (!found.error) {
    throw new Error(`case ${id} recorded no error: ${found.skipped ?? "the call succeeded"}`);
  }
  return rebuildError(found.error);
}

/** Ids of the cases that recorded an error, optionally for one driver. */
export function driverErrorIds(driver?: RecordedCase["driver"]): string[] {
  return recordedCases().filter((c) => c.error && (!driver || c.driver === driver)).map((c) =>
    c.id
  );
}

// deno-lint-ignore no-explicit-any
type AnyClass = new (...args: any[]) => Error;

const { MaxRetriesPerRequestError } = ioredisErrors as { MaxRetriesPerRequestError: AnyClass };

/** Real classes by constructor name, with how to call their constructor. */
const CLASSES = new Map<string, { cls: AnyClass; make: (r: RecordedError) => Error }>();

function register(cls: AnyClass, make?: (r: RecordedError) => Error): void {
  CLASSES.set(cls.name, { cls, make: make ?? ((r) => new cls(String(r.message))) });
}

for (const [name, value] of Object.entries(cassandra.errors)) {
  if (typeof value === "function" && name !== "VIntOutOfRangeException") {
    register(value as unknown as AnyClass);
  }
}
register(
  cassandra.errors.ResponseError as unknown as AnyClass,
  (r) => new cassandra.errors.ResponseError(r.code as number, String(r.message)),
);
register(
  cassandra.errors.NoHostAvailableError as unknown as AnyClass,
  (r) =>
    new cassandra.errors.NoHostAvailableError(
      decode(r.own.innerErrors) as Record<string, Error>,
      String(r.message),
    ),
);
register(
  cassandra.errors.OperationTimedOutError as unknown as AnyClass,
  (r) => new cassandra.errors.OperationTimedOutError(String(r.message), r.own.host as string),
);
for (const [name, value] of Object.entries(kafkajs)) {
  if (name.startsWith("KafkaJS") && typeof value === "function") {
    const cls = value as AnyClass;
    // KafkaJS errors take (message or error, options); fields are set from the record after.
    register(cls, (r) => new cls(String(r.message), {}));
  }
}
register(ReplyError as AnyClass);
register(Object.getPrototypeOf(ReplyError) as AnyClass); // RedisError
register(MaxRetriesPerRequestError, (r) => {
  const limit = /which is (\d+)/.exec(String(r.message))?.[1];
  return new MaxRetriesPerRequestError(Number(limit ?? 0));
});
register(Object.getPrototypeOf(MaxRetriesPerRequestError) as AnyClass); // AbortError
for (const cls of [Error, TypeError, RangeError, SyntaxError] as AnyClass[]) register(cls);
register(
  DOMException as unknown as AnyClass,
  (r) => new DOMException(String(r.message), String(r.name)),
);

/**
 * Rebuilds a recorded error: the real driver class (or, for a class the
 * drivers do not export, a stand-in of the same name deriving from the
 * nearest exported one), the same own properties with the same
 * enumerability, nested errors (`cause`, `innerErrors`) rebuilt too.
 */
export function rebuildError(recorded: RecordedError): Error {
  const chain = recorded.prototypeChain;
  const known = chain.findIndex((name) => CLASSES.has(name));
  if (known < 0) throw new Error(`no class known for ${chain.join(" < ")}`);
  let error: Error;
  if (known === 0) {
    error = CLASSES.get(chain[0])!.make(recorded);
  } else {
    let cls = CLASSES.get(chain[known])!.cls;
    for (let i = known - 1; i >= 0; i--) cls = standIn(chain[i], cls);
    error = Reflect.construct(Error, [String(recorded.message)], cls) as Error;
  }
  for (const key of Object.getOwnPropertyNames(error)) {
    if (key !== "stack" && !(key in recorded.own)) {
      delete (error as unknown as Record<string, unknown>)[key];
    }
  }
  for (const [key, value] of Object.entries(recorded.own)) {
    Object.defineProperty(error, key, {
      value: decode(value),
      enumerable: recorded.enumerable.includes(key),
      writable: true,
      configurable: true,
    });
  }
  if (recorded.cause !== undefined && !Object.hasOwn(error, "cause")) {
    Object.defineProperty(error, "cause", {
      value: decode(recorded.cause),
      enumerable: false,
      writable: true,
      configurable: true,
    });
  }
  Object.defineProperty(error, "stack", {
    value: `${String(recorded.name)}: ${String(recorded.message)}\n` +
      "    at <rebuilt from tests/fixtures/driver_errors.json>",
    enumerable: false,
    writable: true,
    configurable: true,
  });
  return error;
}

const standIns = new Map<string, AnyClass>();

/** A class named `name` deriving from `parent`, for classes the drivers keep private. */
function standIn(name: string, parent: AnyClass): AnyClass {
  const id = `${name}<${parent.name}`;
  let cls = standIns.get(id);
  if (!cls) {
    cls = { [name]: class extends parent {} }[name];
    standIns.set(id, cls);
  }
  return cls;
}

/** Turns the recorder's JSON-safe encodings back into values. */
function decode(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(decode);
  if (value === null || typeof value !== "object") return value;
  const v = value as Record<string, unknown>;
  if ("$error" in v) {
    return typeof v.$error === "string"
      ? new Error(v.$error)
      : rebuildError(v.$error as RecordedError);
  }
  if ("$undefined" in v) return undefined;
  if ("$bigint" in v) return BigInt(v.$bigint as string);
  if ("$function" in v) {
    const name = String(v.$function);
    return { [name]: function () {} }[name];
  }
  if ("$bytes" in v) return new TextEncoder().encode(String(v.utf8 ?? ""));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (k !== "$class") out[k] = decode(x);
  return out;
}

function isErrorLike(v: unknown): v is Error {
  return typeof v === "object" && v !== null && "message" in v && "stack" in v;
}

const STRING_LIMIT = 300;

function truncate(s: string): string {
  return s.length > STRING_LIMIT ? `${s.slice(0, STRING_LIMIT)}…[${s.length} chars]` : s;
}

/** A JSON-safe copy of `value`: errors described, strings truncated, bytes summarised. */
export function jsonSafe(value: unknown, depth = 0): unknown {
  if (value instanceof Error || isErrorLike(value)) {
    return depth > 5 ? { $error: String(value) } : { $error: describeError(value, depth + 1) };
  }
  if (typeof value === "string") return truncate(value);
  if (typeof value === "bigint") return { $bigint: value.toString() };
  if (typeof value === "function") return { $function: value.name };
  if (typeof value === "symbol") return { $symbol: String(value) };
  if (value === undefined) return { $undefined: true };
  if (value === null || typeof value !== "object") return value;
  if (value instanceof Uint8Array) {
    return {
      $bytes: value.length,
      utf8: truncate(new TextDecoder().decode(value.slice(0, 400))),
    };
  }
  if (depth > 5) return { $object: truncate(String(value)) };
  if (Array.isArray(value)) {
    const items = value.slice(0, 20).map((v) => jsonSafe(v, depth + 1));
    return value.length > 20 ? [...items, { $more: value.length - 20 }] : items;
  }
  const ctor = (value as object).constructor?.name;
  const out: Record<string, unknown> = {};
  if (ctor && ctor !== "Object") out.$class = ctor;
  for (const k of Object.keys(value).slice(0, 40)) {
    out[k] = jsonSafe((value as Record<string, unknown>)[k], depth + 1);
  }
  return out;
}

const responseCodeNames = new Map<number, string>(
  Object.entries(cassandra.types.responseErrorCodes).map(([k, v]) => [v as number, k]),
);

function chainOf(value: object): string[] {
  const names: string[] = [];
  for (let p = Object.getPrototypeOf(value); p !== null; p = Object.getPrototypeOf(p)) {
    names.push(Object.hasOwn(p, "constructor") ? p.constructor.name : "(anonymous)");
  }
  return names;
}

/** Describes an error as the fixture records it (see {@linkcode RecordedError}). */
export function describeError(error: unknown, depth = 0): RecordedError {
  if (typeof error !== "object" || error === null) {
    return {
      constructor: typeof error,
      prototypeChain: [],
      name: undefined,
      message: jsonSafe(error, depth),
      own: {},
      enumerable: [],
    };
  }
  const e = error as Record<string, unknown>;
  const own: Record<string, unknown> = {};
  const enumerable: string[] = [];
  for (const key of Object.getOwnPropertyNames(e)) {
    if (key === "stack") continue;
    const d = Object.getOwnPropertyDescriptor(e, key)!;
    own[key] = "value" in d ? jsonSafe(d.value, depth) : { $getter: true };
    if (d.enumerable) enumerable.push(key);
  }
  const recorded: RecordedError = {
    constructor: (error as object).constructor?.name ?? "(none)",
    prototypeChain: chainOf(error),
    name: jsonSafe(e.name, depth),
    message: jsonSafe(e.message, depth),
    own,
    enumerable,
  };
  if (e.code !== undefined) recorded.code = jsonSafe(e.code, depth);
  if (error instanceof cassandra.errors.ResponseError) {
    recorded.codeName = responseCodeNames.get(e.code as number);
  }
  if (e.type !== undefined) recorded.type = jsonSafe(e.type, depth);
  if (e.retriable !== undefined) recorded.retriable = e.retriable;
  if (!Object.hasOwn(e, "cause") && e.cause !== undefined) {
    recorded.cause = jsonSafe(e.cause, depth);
  }
  return recorded;
}
