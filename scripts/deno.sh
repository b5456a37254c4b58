#!/usr/bin/env bash
# Runs the project's pinned Deno, installing it from the npm registry first when
# no matching `deno` is on PATH. The install lives in .tools/ (ignored by git).
set -euo pipefail
DENO_VERSION=2.9.6
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
local_deno="$tools/node_modules/deno/deno"

if command -v deno >/dev/null 2>&1 && deno --version 2>/dev/null | head -n1 | grep -q "deno $DENO_VERSION "; then
  exec deno "$@"
fi
if [ ! -x "$local_deno" ]; then
  echo "installing deno $DENO_VERSION from the npm registry into .tools/" >&2
  mkdir -p "$tools"
  npm install --silent --no-audit --no-fund --prefix "$tools" "deno@$DENO_VERSION" >&2
fi
exec "$local_deno" "$@"
