/**
 * A deterministic generator of hostile input-topic messages for the fuzz
 * suite (`tests/unit/fuzz_test.ts`): valid `batch-enrolment-update` events
 * mixed with truncated and invalid JSON, wrong types, huge strings, deep
 * nesting, invalid UTF-8, NUL bytes, unicode ids, missing fields, non-object
 * roots, huge `contents` lists and odd statuses (SPEC §3).
 *
 * Everything comes from one seeded PRNG, so a seed reproduces a corpus
 * exactly. Each message carries its category and the outcome its generator
 * meant (`intent`); the test derives the outcome independently from the
 * bytes and checks the two agree.
 *
 * @module
 */

/** mulberry32: small, fast, good enough for test data. */
export class Prng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** Every identifier the generator makes longer than 512 bytes contains this. */
export const LONG_MARKER = "\u27e6LONG\u27e7";

/** The course world the corpus is written for; the test seeds the stubs with it. */
export const COURSES_WITH_STRUCTURE = [
  "C1",
  "C2",
  "\u8ab2\u7a0b-\u{1F680}",
  "\u0643\u0648\u0631\u0633-\u05d1",
];
/** A course whose every leaf is optional: complete as soon as it is touched. */
export const ALL_OPTIONAL_COURSE = "C-allopt";
/** No structure; the search service says Retired: skipped, checksums stored. */
export const RETIRED_COURSE = "C-retired";
/** No structure; the search service says Live: the enrolment fails. */
export const LIVE_COURSE = "C-live";
/** No structure; the search service does not know it: the enrolment fails. */
export const UNKNOWN_COURSE = "C-unknown";

/** Leaf contents of a course with structure (R6 optional). */
export function leavesOf(course: string): string[] {
  return [1, 2, 3, 4, 5, 6].map((i) => `${course}-R${i}`);
}

/** Relation-cache sets of every course of the world (SPEC §6 steps 1 and 7). */
export function worldSets(): Record<string, string[]> {
  const sets: Record<string, string[]> = {};
  for (const c of COURSES_WITH_STRUCTURE) {
    const [r1, r2, r3, r4, r5, r6] = leavesOf(c);
    const u1 = `${c}-U1`, u2 = `${c}-U2`;
    sets[`${c}:${c}:leafnodes`] = [r1, r2, r3, r4, r5, r6];
    sets[`${c}:${c}:optionalnodes`] = [r6];
    sets[`${c}:${u1}:leafnodes`] = [r1, r2, r3];
    sets[`${c}:${u2}:leafnodes`] = [r4, r5, r6];
    sets[`${c}:${u2}:optionalnodes`] = [r6];
    for (const r of [r1, r2, r3]) sets[`${c}:${r}:ancestors`] = [u1, c];
    for (const r of [r4, r5, r6]) sets[`${c}:${r}:ancestors`] = [u2, c];
  }
  const a = ALL_OPTIONAL_COURSE;
  sets[`${a}:${a}:leafnodes`] = [`${a}-R1`];
  sets[`${a}:${a}:optionalnodes`] = [`${a}-R1`];
  return sets;
}

/** Collection statuses the search stub answers. */
export function worldStatuses(): Record<string, string> {
  return { [RETIRED_COURSE]: "Retired", [LIVE_COURSE]: "Live" };
}

const ALL_COURSES = [
  ...COURSES_WITH_STRUCTURE,
  ...COURSES_WITH_STRUCTURE,
  ...COURSES_WITH_STRUCTURE,
  ALL_OPTIONAL_COURSE,
  RETIRED_COURSE,
  LIVE_COURSE,
  UNKNOWN_COURSE,
];

/** User ids: plain, unicode, RTL, emoji, escaped NUL, NFC/NFD twins, 512-byte boundary. */
export const USERS: readonly string[] = [
  ...Array.from({ length: 40 }, (_, i) => `U-${i + 1}`),
  "U-\u{1F680}",
  "\u202Euser-rtl-override",
  "\u05de\u05e9\u05ea\u05de\u05e9",
  "\u0645\u0633\u062a\u062e\u062f\u0645",
  "U\u0000nul",
  "U-e\u0301", // NFD
  "U-\u00e9", // NFC: a different id
  "\u{1F468}\u200D\u{1F469}\u200D\u{1F467}\u200D\u{1F466}",
  "U-\ud800", // a lone surrogate, written as \ud800 in JSON
  "U-\uFEFFbom",
  "\u00e9".repeat(256), // exactly 512 bytes
  "\u{1F600}".repeat(128), // exactly 512 bytes
  "a".repeat(512),
  "' OR 1=1; DROP TABLE user_enrolments; --",
  'U-{"json":true}',
];
const BATCHES = ["B1", "B2", "\u05d1-1", "B-\u{1F600}", "b".repeat(512)];

/** An id of more than 512 bytes of UTF-8 (`bytes` at least 513). */
function longId(r: Prng, bytes = 513 + r.int(2000)): string {
  const unit = r.pick(["x", "\u00e9", "\u{1F600}", "\u05d0"]);
  const unitBytes = new TextEncoder().encode(unit).length;
  const pad = Math.max(0, Math.ceil((bytes - 10) / unitBytes));
  return LONG_MARKER + unit.repeat(pad);
}

/** Content ids of a course: its leaves and some the structure does not know. */
function contentPool(course: string): string[] {
  if (course === ALL_OPTIONAL_COURSE) return [`${course}-R1`, `${course}-X1`];
  const pool = COURSES_WITH_STRUCTURE.includes(course) ? leavesOf(course) : [];
  return [
    ...pool,
    `${course}-R1`,
    `${course}-X1`,
    `${course}-X\u{1F4DA}`,
    `${course}-\u05ea\u05d5\u05db\u05df`,
  ];
}

/** What a message's generator meant it to be; `any` when the bytes decide. */
export type Intent = "units" | "skipped" | "failed" | "failed-id" | "any";

/** One generated message. */
export interface HostileMessage {
  value: Uint8Array | null;
  key: string | null;
  category: string;
  intent: Intent;
}

interface Event {
  eid: string;
  ets: number;
  mid: string;
  actor: Record<string, unknown>;
  context: Record<string, unknown>;
  object: Record<string, unknown>;
  edata: Record<string, unknown>;
  [extra: string]: unknown;
}

const encoder = new TextEncoder();
const bytesOf = (text: string) => encoder.encode(text);

function baseEvent(r: Prng, over: Partial<{ user: string; course: string; batch: string }> = {}) {
  const user = over.user ?? r.pick(USERS);
  const course = over.course ?? r.pick(ALL_COURSES);
  const batch = over.batch ?? r.pick(BATCHES);
  const pool = contentPool(course);
  const n = 1 + r.int(5);
  const contents: Record<string, unknown>[] = [];
  for (let i = 0; i < n; i++) {
    contents.push({ contentId: r.pick(pool), status: r.chance(0.7) ? 2 : r.pick([0, 1]) });
  }
  if (!contents.some((c) => c.status === 2)) contents[0].status = 2;
  const event: Event = {
    eid: "BE_JOB_REQUEST",
    ets: 1_700_000_000_000 + r.int(1e9),
    mid: `LP.${r.int(1e9)}`,
    actor: { id: "Course Batch Updater", type: "System" },
    context: { pdata: { ver: "1.0", id: "org.sunbird.platform" } },
    object: { id: `${batch}_${user}`, type: "CourseBatchEnrolment" },
    edata: {
      action: "batch-enrolment-update",
      iteration: 1,
      batchId: batch,
      userId: user,
      courseId: course,
      contents,
    },
  };
  return event;
}

/** Serialises `value` to bytes; strings are taken as the exact text. */
function msg(
  value: unknown,
  category: string,
  intent: Intent,
  key: string | null = null,
): HostileMessage {
  const bytes = value instanceof Uint8Array
    ? value
    : value === null
    ? null
    : bytesOf(typeof value === "string" ? value : JSON.stringify(value));
  return { value: bytes, key, category, intent };
}

function keyOf(event: Event): string | null {
  const u = event.edata.userId;
  return typeof u === "string" && u.length <= 600 ? u : null;
}

// ------------------------------------------------------------ categories

function valid(r: Prng): HostileMessage {
  const e = baseEvent(r);
  return msg(e, "valid", "units", keyOf(e));
}

function validUnicode(r: Prng): HostileMessage {
  const e = baseEvent(r, {
    user: r.pick(USERS.slice(40)),
    course: r.pick(COURSES_WITH_STRUCTURE.slice(2)),
    batch: r.pick(BATCHES.slice(2)),
  });
  return msg(e, "valid-unicode-ids", "units", keyOf(e));
}

function validNoise(r: Prng): HostileMessage {
  const e = baseEvent(r);
  const variant = r.int(10);
  const cat = "valid-noise";
  switch (variant) {
    case 0:
      e.edata.action = r.pick([
        "BATCH-ENROLMENT-UPDATE",
        "Batch-Enrolment-Update",
        "batch-ENROLMENT-update",
      ]);
      return msg(e, cat, "units", keyOf(e));
    case 1: // ignored fields of every type
      e.edata.extra = { a: [1, "two", null, true, { b: -0.5 }] };
      e.junk = "\u0000\u202E\u{1F4A9}";
      e.context = "not an object" as unknown as Record<string, unknown>;
      e.actor = 42 as unknown as Record<string, unknown>;
      return msg(e, cat, "units", keyOf(e));
    case 2: // pretty-printed, trailing newline
      return msg(JSON.stringify(e, null, 2) + "\n", cat, "units", keyOf(e));
    case 3: { // status written as 2.0, 2e0, 20e-1, 2.0000000000000001
      const text = JSON.stringify(e).replaceAll(
        '"status":2',
        `"status":${r.pick(["2.0", "2e0", "20e-1", "2.0000000000000001", "0.2e1"])}`,
      );
      return msg(text, cat, "units", keyOf(e));
    }
    case 4: { // duplicate keys: the last one wins
      const text = JSON.stringify(e).replace('"edata":{', '"edata":{"userId":17,"contents":"x",');
      return msg(text, cat, "units", keyOf(e));
    }
    case 5: // ignored contents entries of every kind around a valid one
      (e.edata.contents as unknown[]).push(
        null,
        7,
        "R1",
        [{ contentId: "R1", status: 2 }],
        { contentId: "", status: 2 },
        { contentId: "   ", status: 2 },
        { contentId: 5, status: 2 },
        { contentId: ["R1"], status: 2 },
        { contentId: { id: "R1" }, status: 2 },
        { status: 2 },
        { contentId: "C1-R1" },
        { contentId: "C1-R1", status: "2" },
        { contentId: longId(r), status: 1 }, // ignored entries are not checked
      );
      return msg(e, cat, "units", keyOf(e));
    case 6: // a "failure" key of its own, and __proto__ / constructor keys
      e.failure = { reason: "forged" };
      return msg(
        JSON.stringify(e).replace(
          '"edata":{',
          '"edata":{"__proto__":{"userId":"P"},"constructor":1,',
        ),
        cat,
        "units",
        keyOf(e),
      );
    case 7: // duplicate content in one message
      (e.edata.contents as unknown[]).push(...(e.edata.contents as unknown[]));
      return msg(e, cat, "units", keyOf(e));
    case 8: // a large ignored field (~100 kB)
      e.blob = "z".repeat(100_000 + r.int(50_000));
      return msg(e, cat, "units", keyOf(e));
    default: // leading/trailing JSON whitespace
      return msg(` \t\r\n${JSON.stringify(e)}\n\t `, cat, "units", keyOf(e));
  }
}

function truncatedJson(r: Prng): HostileMessage {
  const text = JSON.stringify(baseEvent(r));
  const bytes = bytesOf(text);
  const cut = 1 + r.int(bytes.length - 2);
  return msg(bytes.slice(0, cut), "truncated-json", "failed");
}

const INVALID_JSON = [
  "garbage",
  "{",
  "}",
  "{]",
  "{'edata': {}}",
  '{"edata": {"action": "batch-enrolment-update",}}',
  '{"edata": NaN}',
  '{"edata": Infinity}',
  '{"edata": undefined}',
  "{/* comment */}",
  '{"a":1}{"b":2}',
  '{"a":01}',
  '{"a":0x2}',
  '{"a":.5}',
  '{"a":"\\x41"}',
  '{"a":"\\u12"}',
  '{"a":"tab\there"}',
  '{"a" 1}',
  "\uFEFF{}",
  "[1,2",
  '"unterminated',
  "nul",
  "tru",
  "--1",
  "{} trailing",
];

function invalidJson(r: Prng): HostileMessage {
  const text = r.pick(INVALID_JSON);
  // A leading BOM is dropped by some decoders: the bytes decide.
  return msg(text, "invalid-json", text.startsWith("\uFEFF") ? "any" : "failed");
}

const WRONG_VALUES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  2,
  1e308,
  "",
  [],
  ["x"],
  {},
  { id: "x" },
];

function wrongTypes(r: Prng): HostileMessage {
  const e = baseEvent(r);
  const field = r.pick(["edata", "action", "userId", "courseId", "batchId", "contents", "entry"]);
  const bad = r.pick(WRONG_VALUES);
  const cat = "wrong-types";
  switch (field) {
    case "edata": // an object without an action is skipped, anything else fails
      e.edata = bad as Record<string, unknown>;
      return msg(e, cat, isPlainObject(bad) ? "skipped" : "failed");
    case "action":
      e.edata.action = typeof bad === "string" ? 12 : bad;
      return msg(e, cat, "skipped");
    case "userId":
    case "courseId":
    case "batchId":
      e.edata[field] = bad;
      return msg(e, cat, "failed");
    case "contents":
      e.edata.contents = Array.isArray(bad) ? "contents" : bad;
      return msg(e, cat, "skipped");
    default:
      e.edata.contents = [r.pick([
        { contentId: bad, status: 2 },
        { contentId: "C1-R1", status: bad === 2 ? "2" : bad },
        bad,
      ])];
      return msg(e, cat, "skipped");
  }
}

function isPlainObject(v: unknown): boolean {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function missingFields(r: Prng): HostileMessage {
  const e = baseEvent(r);
  const field = r.pick([
    "edata",
    "action",
    "userId",
    "courseId",
    "batchId",
    "contents",
    "contentId",
    "status",
  ]);
  const cat = "missing-fields";
  switch (field) {
    case "edata":
      delete (e as Partial<Event>).edata;
      return msg(e, cat, "failed");
    case "action":
      delete e.edata.action;
      return msg(e, cat, "skipped");
    case "contents":
      delete e.edata.contents;
      return msg(e, cat, "skipped");
    case "contentId":
    case "status":
      for (const c of e.edata.contents as Record<string, unknown>[]) delete c[field];
      return msg(e, cat, "skipped");
    default:
      delete e.edata[field];
      return msg(e, cat, "failed");
  }
}

function nonObjectRoot(r: Prng): HostileMessage {
  const roots = [
    "42",
    "-0",
    "1e400",
    '"a string"',
    '"{\\"edata\\":{}}"',
    "null",
    "true",
    "false",
    "[]",
    '[{"edata":{"action":"batch-enrolment-update","userId":"U-1","courseId":"C1","batchId":"B1","contents":[{"contentId":"C1-R1","status":2}]}}]',
    "",
    "   ",
    "\n",
  ];
  if (r.chance(0.08)) return msg(null, "non-object-root", "failed"); // a tombstone
  return msg(r.pick(roots), "non-object-root", "failed");
}

const INVALID_UTF8: number[][] = [
  [0x80],
  [0xbf],
  [0xc0, 0xaf], // overlong "/"
  [0xe0, 0x80, 0xaf], // overlong
  [0xed, 0xa0, 0x80], // an encoded surrogate
  [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  [0xff],
  [0xfe],
  [0xe2, 0x82], // cut short
  [0xf0, 0x9f, 0x98], // cut short emoji
];

/** Replaces the bytes of `needle`'s first occurrence in `text` with raw `bad` bytes. */
function withBytes(text: string, needle: string, bad: number[]): Uint8Array {
  const i = text.indexOf(needle);
  const before = bytesOf(text.slice(0, i));
  const after = bytesOf(text.slice(i + needle.length));
  const out = new Uint8Array(before.length + bad.length + after.length);
  out.set(before);
  out.set(bad, before.length);
  out.set(after, before.length + bad.length);
  return out;
}

function invalidUtf8(r: Prng): HostileMessage {
  const e = baseEvent(r);
  const bad = r.pick(INVALID_UTF8);
  const where = r.int(5);
  const cat = "invalid-utf8";
  e.junk = "@@JUNK@@";
  e.edata.userId = `${String(e.edata.userId)}@@USER@@`;
  const text = JSON.stringify(e);
  switch (where) {
    case 0:
      return msg(withBytes(text, "@@USER@@", bad), cat, "failed"); // in a used field
    case 1:
      return msg(withBytes(text, "@@JUNK@@", bad), cat, "failed"); // in an ignored field
    case 2: { // in a key
      const t = text.replace('"junk"', '"@@KEY@@"');
      return msg(withBytes(t, "@@KEY@@", bad), cat, "failed");
    }
    case 3: { // at the very end
      const b = bytesOf(text);
      const out = new Uint8Array(b.length + bad.length);
      out.set(b);
      out.set(bad, b.length);
      return msg(out, cat, "failed");
    }
    default: // not JSON at all
      return msg(
        new Uint8Array([...bytesOf("not json "), ...bad, ...bytesOf(" at all")]),
        cat,
        "failed",
      );
  }
}

function nulBytes(r: Prng): HostileMessage {
  const e = baseEvent(r);
  const text = JSON.stringify(e);
  const cat = "nul-bytes";
  switch (r.int(4)) {
    case 0: // a raw NUL inside a string: not JSON
      return msg(withBytes(text, '"userId":"', [...bytesOf('"userId":"'), 0]), cat, "failed");
    case 1: // a raw NUL between tokens
      return msg(withBytes(text, '"edata":', [...bytesOf('"edata":'), 0]), cat, "failed");
    case 2: // NULs after the JSON
      return msg(new Uint8Array([...bytesOf(text), 0, 0]), cat, "failed");
    default: // escaped NULs in ids are just characters
      e.edata.userId = `\u0000${r.pick(USERS.slice(0, 40))}\u0000`;
      (e.edata.contents as Record<string, unknown>[]).push({ contentId: "\u0000", status: 2 });
      return msg(e, cat, "units", keyOf(e));
  }
}

const STATUSES = [
  '"2"',
  '"02"',
  '" 2"',
  "-2",
  "2.5",
  "1.9999999",
  "1e308",
  "1e400",
  "-1e400",
  "-0",
  "9007199254740993",
  "22",
  "0",
  "true",
  "null",
  "[2]",
  '{"value":2}',
  '"two"',
  '"\u0662"', // Arabic-Indic digit two
];

function statuses(r: Prng): HostileMessage {
  const e = baseEvent(r);
  e.edata.contents = [{ contentId: r.pick(contentPool(String(e.edata.courseId))), status: 2 }];
  const weird = r.pick(STATUSES);
  const text = JSON.stringify(e).replace('"status":2', `"status":${weird}`);
  const cat = "statuses";
  if (r.chance(0.3)) {
    // a valid status-2 entry next to the weird one
    const withValid = text.replace('"contents":[', '"contents":[{"contentId":"C1-R2","status":2},');
    return msg(withValid, cat, "units", keyOf(e));
  }
  return msg(text, cat, "skipped");
}

function longIds(r: Prng): HostileMessage {
  const e = baseEvent(r);
  const field = r.pick(["userId", "courseId", "batchId", "contentId", "ignored", "boundary"]);
  const cat = "long-ids";
  switch (field) {
    case "contentId":
      (e.edata.contents as Record<string, unknown>[]).push({ contentId: longId(r), status: 2 });
      return msg(e, cat, "failed-id");
    case "ignored": // a long contentId in an entry that does not become a unit
      (e.edata.contents as Record<string, unknown>[]).push({
        contentId: longId(r),
        status: r.pick([1, "2", 0]),
      });
      return msg(e, cat, "units", keyOf(e));
    case "boundary": { // 513 bytes made of multi-byte characters: short in UTF-16
      const f = r.pick(["userId", "courseId", "batchId"]);
      e.edata[f] = LONG_MARKER + "\u00e9".repeat(251) + "a"; // 10 + 502 + 1 = 513 bytes
      return msg(e, cat, "failed-id");
    }
    default:
      e.edata[field] = longId(r);
      return msg(e, cat, "failed-id");
  }
}

function deep(n: number, kind: "array" | "object"): string {
  return kind === "array" ? "[".repeat(n) + "]".repeat(n) : '{"a":'.repeat(n) + "1" + "}".repeat(n);
}

function deepNesting(r: Prng): HostileMessage {
  const e = baseEvent(r);
  const n = 20_000 + r.int(10_000);
  const kind = r.pick(["array", "object"] as const);
  const nest = deep(n, kind);
  const cat = "deep-nesting";
  const text = JSON.stringify(e);
  switch (r.int(7)) {
    case 0: // in an ignored field of a valid event
      return msg(text.replace('"eid":', `"deep":${nest},"eid":`), cat, "units", keyOf(e));
    case 1: // in an ignored contents entry
      return msg(text.replace('"contents":[', `"contents":[${nest},`), cat, "units", keyOf(e));
    case 2: // as userId
      return msg(text.replace(/"userId":"(?:[^"\\]|\\.)*"/, `"userId":${nest}`), cat, "failed");
    case 3: // as edata: an object without an action is skipped
      return msg(
        text.replace(/"edata":\{.*\}\}$/, `"edata":${nest}}`),
        cat,
        kind === "object" ? "skipped" : "failed",
      );
    case 4: // as status
      return msg(
        JSON.stringify({
          ...e,
          edata: { ...e.edata, contents: [{ contentId: "C1-R1", status: 0 }] },
        })
          .replace('"status":0', `"status":${nest}`),
        cat,
        "skipped",
      );
    case 5: // the root itself
      return msg(nest, cat, "failed");
    default: // deep and unterminated
      return msg(nest.slice(0, n + 10), cat, "failed");
  }
}

/** Huge strings in every field. `big` messages are ~1 MB; the others 60–200 kB. */
function hugeStrings(r: Prng, big: boolean, which?: number): HostileMessage {
  const size = big ? 1_000_000 + r.int(48_000) : 60_000 + r.int(140_000);
  const s = r.pick(["x", "\u00e9", "\u{1F600}", "\u0001", '"', "\\"]).repeat(
    Math.ceil(size / 4),
  );
  const e = baseEvent(r);
  const cat = big ? "huge-1MB" : "huge-strings";
  const field = which ?? r.int(9);
  switch (field) {
    case 0: // userId: too long, and a failed event that cannot hold it whole
      e.edata.userId = LONG_MARKER + s;
      return msg(e, cat, "failed-id");
    case 1: // an ignored field of a valid event
      e.blob = s;
      return msg(e, cat, "units", keyOf(e));
    case 2: // not JSON at all
      return msg(`NOT JSON ${s}`, cat, "failed");
    case 3: // action: skipped
      e.edata.action = s;
      return msg(e, cat, "skipped");
    case 4: // a unit's contentId
      (e.edata.contents as Record<string, unknown>[]).push({
        contentId: LONG_MARKER + s,
        status: 2,
      });
      return msg(e, cat, "failed-id");
    case 5: // invalid UTF-8 at the end of a huge text
      return msg(
        new Uint8Array([...bytesOf(`{"edata":"${"y".repeat(size)}`), 0xff]),
        cat,
        "failed",
      );
    case 6:
      e.edata.courseId = LONG_MARKER + s;
      return msg(e, cat, "failed-id");
    case 7:
      e.edata.batchId = LONG_MARKER + s;
      return msg(e, cat, "failed-id");
    default: // a huge status string: the entry is ignored
      e.edata.contents = [{ contentId: "C1-R1", status: s }];
      return msg(e, cat, "skipped");
  }
}

function largeContents(r: Prng, which: number): HostileMessage {
  const e = baseEvent(r, { course: "C1", user: `U-big-${which}` });
  const cat = "large-contents";
  const n = 20_000 + r.int(5_000);
  const contents: unknown[] = [];
  if (which === 0) { // 20,000+ entries, a quarter of them units
    for (let i = 0; i < n; i++) {
      contents.push({
        contentId: i % 4 === 0 ? `C1-Y${i}` : `C1-Z${i}`,
        status: i % 4 === 0 ? 2 : 1,
      });
    }
    contents.push({ contentId: "C1-R1", status: 2 }, { contentId: "C1-R2", status: 2 });
    e.edata.contents = contents;
    return msg(e, cat, "units", keyOf(e));
  }
  if (which === 1) { // 20,000+ entries, none a unit
    for (let i = 0; i < n; i++) {
      contents.push(r.pick([null, 1, "x", { contentId: i, status: 2 }, { status: 2 }]));
    }
    e.edata.contents = contents;
    return msg(e, cat, "skipped");
  }
  // 20,000+ entries, the last unit's contentId too long
  for (let i = 0; i < n; i++) contents.push({ contentId: `C1-W${i}`, status: 2 });
  contents.push({ contentId: longId(r), status: 2 });
  e.edata.contents = contents;
  return msg(e, cat, "failed-id");
}

/** Sizes of a corpus. */
export interface CorpusOptions {
  /** Messages in all (at least). */
  count: number;
  /** How many ~1 MB messages (each of a different field). */
  bigMessages: number;
}

/**
 * A corpus of `count` messages, about 40 % valid events, the rest hostile,
 * in a seeded random order.
 */
export function generateCorpus(seed: number, opts: CorpusOptions): HostileMessage[] {
  const r = new Prng(seed);
  const special: HostileMessage[] = [];
  for (let i = 0; i < opts.bigMessages; i++) special.push(hugeStrings(r, true, i % 9));
  for (let i = 0; i < 3; i++) special.push(largeContents(r, i));
  const generators: [number, (r: Prng) => HostileMessage][] = [
    [28, valid],
    [6, validUnicode],
    [8, validNoise],
    [6, truncatedJson],
    [5, invalidJson],
    [9, wrongTypes],
    [7, missingFields],
    [4, nonObjectRoot],
    [6, invalidUtf8],
    [4, nulBytes],
    [7, statuses],
    [6, longIds],
    [0.4, deepNesting],
    [0.5, (r) => hugeStrings(r, false)],
  ];
  const total = generators.reduce((s, [w]) => s + w, 0);
  const out: HostileMessage[] = [];
  while (out.length < opts.count - special.length) {
    let x = r.next() * total;
    for (const [w, gen] of generators) {
      x -= w;
      if (x < 0) {
        out.push(gen(r));
        break;
      }
    }
  }
  for (const m of special) out.splice(r.int(out.length + 1), 0, m);
  return out;
}
