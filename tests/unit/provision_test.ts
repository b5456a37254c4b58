import assert from "node:assert/strict";
import { parseArgs, SCRATCH_ENV, scratchJobEnv } from "../../scripts/provision.ts";

Deno.test("provision: a scratch environment is `it` and 11 hex digits, new each time", () => {
  const envs = Array.from({ length: 50 }, scratchJobEnv);
  assert.deepEqual(envs.filter((env) => !SCRATCH_ENV.test(env)), []);
  assert.equal(new Set(envs).size, envs.length);
  assert.deepEqual(
    ["local", "dev", "it-reader-1", "itxyz1234567"].filter((env) => SCRATCH_ENV.test(env)),
    [],
  );
});

Deno.test("provision: the command line asks for a prune with --prune-scratch", () => {
  assert.deepEqual(parseArgs(["--only=kafka", "--prune-scratch", "--timeout=30"]), {
    kafka: true,
    cassandra: false,
    pruneScratch: true,
    timeoutMs: 30_000,
  });
  assert.equal(parseArgs([]).pruneScratch, undefined);
  assert.throws(() => parseArgs(["--prune"]), /unknown argument --prune; usage: .*--prune-scratch/);
});
