#!/usr/bin/env bash
# Runs the project's pinned Deno, installing it from the npm registry first when
# no matching `deno` is on PATH. The install lives in .tools/ (ignored by git).
set -euo pipefail
DENO_VERSION=2.9.6
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
# The npm package ships the binary in a per-platform optional dependency.
find_local() { ls "$tools"/node_modules/@deno/*/deno "$tools"/node_modules/deno/deno 2>/dev/null | head -n1 || true; }

if command -v deno >/dev/null 2>&1 && deno --version 2>/dev/null | head -n1 | grep -q "deno $DENO_VERSION "; then
  exec deno "$@"
fi
local_deno="$(find_local)"
if [ -z "$local_deno" ]; then
  echo "installing deno $DENO_VERSION from the npm registry into .tools/" >&2
  mkdir -p "$tools"
  npm install --silent --no-audit --no-fund --prefix "$tools" "deno@$DENO_VERSION" >&2
  local_deno="$(find_local)"
  [ -n "$local_deno" ] || { echo "deno $DENO_VERSION: no binary for this platform in the npm package" >&2; exit 1; }
fi
# A stable path for editors and hooks that look for the project's deno.
[ -e "$tools/bin/deno" ] || { mkdir -p "$tools/bin" && ln -sf "$local_deno" "$tools/bin/deno"; }
exec "$local_deno" "$@"
