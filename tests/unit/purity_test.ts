/**
 * The computation stays pure (SPEC §6 as code, no I/O): the core modules and
 * everything they import reach no driver, no network, no file and no clock.
 */
import assert from "node:assert/strict";

const CORE = ["aggregate.ts", "output.ts", "window.ts", "checksum.ts", "event.ts"];
/** The only imports outside lib/ the core may have: hashing. */
const ALLOWED_EXTERNAL = new Set(["node:crypto"]);
const IO =
  /\b(fetch|Deno\.|setTimeout|setInterval|Date\.now|performance\.now|crypto\.randomUUID)\b/;

const lib = new URL("../../lib/", import.meta.url);

/** The import specifiers of a module's source, type-only imports included. */
function importsOf(source: string): string[] {
  return [...source.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"/gms)].map((m) => m[1]);
}

/** Strips comments, so prose about time or fetch does not count. */
function code(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
}

Deno.test("the core modules and their imports do no I/O", () => {
  const seen = new Set<string>();
  const queue = [...CORE];
  while (queue.length > 0) {
    const file = queue.shift()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = Deno.readTextFileSync(new URL(file, lib));
    const io = IO.exec(code(source));
    assert.equal(io, null, `${file} uses ${io?.[0]}`);
    for (const specifier of importsOf(source)) {
      if (specifier.startsWith("./")) queue.push(specifier.slice(2));
      else assert.ok(ALLOWED_EXTERNAL.has(specifier), `${file} imports ${specifier}`);
    }
  }
  // ports.ts holds the interfaces (and the system clock the adapters use), not I/O of its own.
  assert.deepEqual([...seen].sort(), [...CORE, "ports.ts"].sort());
});
