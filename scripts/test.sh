#!/usr/bin/env bash
# Runs every test: unit tests on in-memory stubs and the Helm chart's tests
# (tests/deploy/, which install the pinned Helm through scripts/helm.sh the
# first time), then integration tests against the local stack (started here,
# installing what is missing, then deleting the topics of earlier runs that
# were killed). Ends with the line `N passed, N failed`. Pass
# `unit` to run only the unit and chart tests (no services).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export NO_COLOR=1

paths=(tests/unit/ tests/deploy/)
if [ "${1:-all}" != "unit" ]; then
  bash scripts/stack.sh up
  # What killed runs left behind: thousands of partitions slow Kafka's start.
  bash scripts/stack.sh prune
  set -a
  # shellcheck disable=SC1090
  source <(bash scripts/stack.sh env)
  set +a
  paths+=(tests/integration/)
fi

# The chart tests run Helm: installed here the first time (a few minutes), so
# that the build shows instead of stalling the first chart test.
bash scripts/helm.sh version --short >/dev/null

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
scripts/deno.sh test --allow-all "${paths[@]}" 2>&1 | tee "$log" || status=$?

# Deno's summary reads `ok | 12 passed (3 steps) | 0 failed (2s)`.
summary="$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -n 1 || true)"
passed="$(sed -E 's/.*\| ([0-9]+) passed.*/\1/' <<<"$summary")"
failed="$(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$summary")"
if [ -z "$summary" ]; then
  echo "no test summary found" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
echo "$passed passed, $failed failed"
exit "$status"
