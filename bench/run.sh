#!/usr/bin/env bash
# Lean and fast in one command (bench/lean_bench.ts): peak RSS while the job
# drains backlogs of 10,000 and 50,000 messages, its units/s next to the
# bare-driver ceiling for the same workload, and p50/p95/p99 latency at half
# its drain rate. Needs the local stack (scripts/stack.sh up); takes 5-10
# minutes on 2 shared cores. Prints a Markdown report whose last line is
#
#   units/s <job> ceiling <ceiling> ratio <r>% peak_rss_mib <m> p99_ms <p>
#
# and saves it as bench/results/lean-<UTC time>.md. Arguments go to
# lean_bench.ts, e.g. `bash bench/run.sh --backlogs=10000`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/stack.sh status >/dev/null || {
  echo "bench: the local stack is not running (bash scripts/stack.sh up)" >&2
  exit 1
}
mkdir -p bench/results
out="bench/results/lean-$(date -u +%Y-%m-%dT%H%M%SZ).md"
{
  echo "# bash bench/run.sh${*:+ $*}"
  echo
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
  echo
} >"$out"
scripts/deno.sh run --allow-all bench/lean_bench.ts "$@" | tee -a "$out"
# Formatted like the rest of the repository (deno task check runs deno fmt --check).
scripts/deno.sh fmt --quiet "$out" || true
echo "bench: saved $out" >&2
