#!/usr/bin/env bash
# `deno task dev`: starts the local stack (installing what is missing), then the
# guided demo of scripts/dev.ts, which runs the job until Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/stack.sh up
set -a
# shellcheck disable=SC1090
source <(bash scripts/stack.sh env)
set +a
exec scripts/deno.sh run --allow-all scripts/dev.ts
