#!/usr/bin/env bash
# bench/run.sh BIN - the performance budget: runs every benchmark of bench/
# in turn on this machine and prints one table, each figure with its target
# and PASS/FAIL. Each benchmark also prints its own report first. What each
# figure means, and how to run one alone: bench/README.md.
#
#   BENCH_ONLY="core fanout"   run only these parts (core fanout turns web soak)
#   SOAK_SECONDS=120           a shorter soak (the budget's figure is 600)
#
# Exit status: 0 when every row passed, 1 when a row failed or a benchmark
# broke (a broken benchmark is a FAIL row, never a silent gap).
set -uo pipefail
BIN=$(realpath "${1:-build/server/chatopenaii}")
cd "$(dirname "$0")/.."
PARTS=${BENCH_ONLY:-core fanout turns web soak}
RESULTS=$(mktemp)
export BENCH_RESULTS=$RESULTS
trap 'rm -f "$RESULTS"' EXIT

part() { # name command...: a benchmark; its rows go to $RESULTS
  local name=$1 before
  shift
  [[ " $PARTS " == *" $name "* ]] || return 0
  echo "== $name: $*"
  before=$(wc -l <"$RESULTS")
  if ! "$@"; then
    printf '%s\t%s\t%s\t%s\n' "$name benchmark" "broke (exit status $?)" "runs" FAIL >>"$RESULTS"
  elif [ "$(wc -l <"$RESULTS")" = "$before" ]; then
    printf '%s\t%s\t%s\t%s\n' "$name benchmark" "printed no row" "rows" FAIL >>"$RESULTS"
  fi
  echo
}

part core bash bench/core.sh "$BIN"
part fanout bash bench/fanout/run.sh "$BIN"
part turns bash bench/turns/run.sh "$BIN"
part web node bench/web/open.mjs "$BIN"
part soak bash bench/soak/run.sh "$BIN"

echo "Performance budget ($(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)):"
awk -F'\t' '
  { f[NR] = $1; m[NR] = $2; t[NR] = $3; v[NR] = $4
    if (length($1) > w1) w1 = length($1); if (length($2) > w2) w2 = length($2)
    if (length($3) > w3) w3 = length($3); if ($4 != "PASS") bad++ }
  END {
    printf "%-*s  %-*s  %-*s  %s\n", w1, "figure", w2, "measured", w3, "target", "result"
    for (i = 1; i <= NR; i++) printf "%-*s  %-*s  %-*s  %s\n", w1, f[i], w2, m[i], w3, t[i], v[i]
    printf "%d passed, %d failed\n", NR - bad, bad
    exit bad > 0
  }' "$RESULTS"
