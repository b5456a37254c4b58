/**
 * What a full garbage collection costs the drivers' code after it: the job's
 * own Cassandra adapter (`CassandraProgressStore`) reads and writes in rounds
 * of a window's size, in a child process with the job's V8 flags and
 * allocator settings, with a full collection after every round (as the job
 * collected after every window until the ninth session), after every second
 * round (as it does now under a backlog) and never. Each child also runs with `--trace-deopt` and counts V8's
 * "embedded weak objects cleared" deoptimisations: optimised code that
 * referred to objects a full collection freed is thrown away and compiled
 * again, and runs unoptimised meanwhile.
 *
 * Run: `scripts/deno.sh run --allow-all bench/gc_deopt.ts` (stack up).
 * Options: `--rounds=60 --warmup=10 --enrolments=200 --rows=10 --repeat=3
 * --collect-every=1,2,0` (0: never) `--extra-v8-flags=<flags>` (added to the
 * job's).
 * The round time excludes the collection itself.
 *
 * @module
 */

import { CassandraProgressStore } from "../lib/cassandra_store.ts";
import { mapConcurrent } from "../lib/async.ts";
import type { EnrolmentKey } from "../lib/event.ts";
import { stackCassandra } from "../tests/support/stack.ts";
import { flags, fmt, markdownTable } from "./data.ts";
import { jobMallocEnv, jobV8Flags } from "./lean_bench.ts";
import { keyspaceOfOwn } from "./stack_state.ts";

/** One child's result. */
interface RoundsResult {
  collectEvery: number;
  roundMs: number;
  deopts: number;
  collections: number;
}

const WEAK_DEOPT = "embedded weak objects cleared";

/** Reads every enrolment's rows, then writes a counter and an update for each, `rounds` times. */
async function runRounds(opts: {
  collectEvery: number;
  rounds: number;
  warmup: number;
  enrolments: number;
  rows: number;
}): Promise<RoundsResult> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("run with --v8-flags=--expose-gc");
  const store = await CassandraProgressStore.connect(stackCassandra(), 100);
  try {
    const tag = crypto.randomUUID().slice(0, 8);
    const keys: EnrolmentKey[] = Array.from({ length: opts.enrolments }, (_, i) => ({
      userId: `gcd-${tag}-u${i}`,
      courseId: `gcd-c${i % 20}`,
      batchId: "b1",
    }));
    const write = (round: number) =>
      store.writeProgress({
        counters: keys.flatMap((key) =>
          Array.from({ length: opts.rows }, (_, c) => ({
            key,
            contentId: `do_${c}`,
            viewCount: round + 1,
            completedCount: round + 1,
          }))
        ),
        aggregates: keys.map((key) => ({
          activityId: key.courseId,
          contextId: `cb:${key.batchId}`,
          userId: key.userId,
          completedCount: round,
          at: Date.now(),
        })),
        enrolments: keys.map((key) => ({
          key,
          progress: round,
          contentStatus: { [`do_${round % opts.rows}`]: 2 },
          at: Date.now(),
        })),
      });
    await write(0);
    let ms = 0;
    let collections = 0;
    for (let round = 1; round <= opts.warmup + opts.rounds; round++) {
      const started = performance.now();
      await mapConcurrent(keys, 32, (key) => store.readConsumption(key));
      await write(round);
      if (round > opts.warmup) ms += performance.now() - started;
      if (opts.collectEvery > 0 && round % opts.collectEvery === 0) {
        gc();
        collections++;
      }
    }
    return { collectEvery: opts.collectEvery, roundMs: ms / opts.rounds, deopts: 0, collections };
  } finally {
    await store.close();
  }
}

/** Runs {@linkcode runRounds} in a child with the job's runtime and `--trace-deopt`. */
async function child(
  collectEvery: number,
  args: string[],
  extraV8Flags: string,
): Promise<RoundsResult> {
  const v8 = [await jobV8Flags(), extraV8Flags].filter(Boolean).join(",");
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      `--v8-flags=${v8},--trace-deopt`,
      new URL(import.meta.url).pathname,
      `--child=${collectEvery}`,
      ...args,
    ],
    env: await jobMallocEnv(),
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`child exited with ${out.code}`);
  // V8's trace lines come in pieces and may precede the result on its line.
  const result = /\{"collectEvery".*\}/.exec(text);
  if (!result) throw new Error("child printed no result");
  return { ...JSON.parse(result[0]), deopts: text.split(WEAK_DEOPT).length - 1 };
}

if (import.meta.main) {
  const f = flags(Deno.args);
  const opts = {
    rounds: f.num("rounds", 60),
    warmup: f.num("warmup", 10),
    enrolments: f.num("enrolments", 200),
    rows: f.num("rows", 10),
  };
  const childOf = f.num("child", -1);
  if (childOf >= 0) {
    console.log(JSON.stringify(await runRounds({ ...opts, collectEvery: childOf })));
  } else {
    const keyspace = await keyspaceOfOwn();
    const passOn = Deno.args.filter((a) => !/^--(repeat|collect-every|extra-v8-flags)=/.test(a));
    const extraV8Flags = f.str("extra-v8-flags", "");
    const settings = f.str("collect-every", "1,2,0").split(",").map(Number);
    const results: RoundsResult[] = [];
    try {
      for (let i = 0; i < f.num("repeat", 3); i++) {
        for (const every of settings) results.push(await child(every, passOn, extraV8Flags));
      }
    } finally {
      await keyspace.drop();
    }
    console.log(
      `gc_deopt: ${opts.enrolments} enrolments × ${opts.rows} rows, rounds of one read and one ` +
        `write each, ${opts.rounds} timed after ${opts.warmup}\n`,
    );
    console.log(markdownTable([
      ["full collection", "ms per round", "weak-object deopts", "collections"],
      ...results.map((r) => [
        r.collectEvery
          ? `after every ${r.collectEvery === 1 ? "" : `${r.collectEvery}. `}round`
          : "never",
        fmt(r.roundMs, 1),
        fmt(r.deopts),
        fmt(r.collections),
      ]),
    ]));
  }
}
