#!/bin/bash
# run.sh [SECONDS] [NAME...] - build the libFuzzer harnesses (build.sh) and
# run each for SECONDS seconds (default 60), e.g. `run.sh 60` or
# `run.sh 300 sse json`. `make fuzz` calls it with $FUZZ_SECONDS.
#
# Each harness first replays its saved crash inputs (regressions/NAME/),
# then fuzzes a scratch copy of its seed corpus (corpus/NAME/, committed);
# inputs it finds stay in build-fuzz/corpus/NAME/ (not committed). The
# sse and json harnesses also read the real recorded traffic in
# ../shared/fixtures as an extra read-only corpus (never copied into the
# repo: libFuzzer writes new inputs only to the first corpus directory).
# Crash inputs go to build-fuzz/crashes/NAME/, logs to build-fuzz/logs/.
#
# Prints `fuzz-NAME: N execs in S s, C crashes` per harness and a summary
# `fuzz: P passed, F failed`; exits 1 if any harness crashed (or did not
# run its time), 2 if the build failed.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SECONDS_EACH=${1:-60}
shift || true
NAMES=${*:-"sse json path keys config upstream headers ssr"}
OUT=build-fuzz
FIXTURES=${COAI_FIXTURES_DIR:-$ROOT/../shared/fixtures}

case "$SECONDS_EACH" in
'' | *[!0-9]*)
    echo "usage: run.sh [SECONDS] [NAME...]" >&2
    exit 2
    ;;
esac

# shellcheck disable=SC2086
if ! sh server/fuzz/build.sh $NAMES >"$OUT.build.log" 2>&1; then
    cat "$OUT.build.log" >&2
    echo "fuzz: build failed" >&2
    exit 2
fi
mkdir -p "$OUT/logs"
mv "$OUT.build.log" "$OUT/logs/build.log"

# Extra read-only corpora from the shared fixtures, per harness.
extra_corpora() {
    case "$1" in
    sse) echo "$FIXTURES/openai-chat-sse" ;;
    json) echo "$FIXTURES/openai-json" ;;
    upstream) echo "$FIXTURES/openai-errors $FIXTURES/openai-json" ;;
    esac
}
# Per-harness libFuzzer options. The sse harness feeds every input three
# ways, so it gets a smaller size cap to keep its speed up.
options() {
    case "$1" in
    sse) echo "-max_len=16384" ;;
    *) echo "-max_len=65536" ;;
    esac
}

passed=0
failed=0
for n in $NAMES; do
    bin="$OUT/fuzz_$n"
    log="$OUT/logs/$n.log"
    crashes="$OUT/crashes/$n"
    work="$OUT/corpus/$n"
    rm -rf "$crashes"
    mkdir -p "$crashes" "$work"
    : >"$log"
    ncrash=0

    # 1. saved crash inputs must not crash any more
    regs=()
    if [ -d "server/fuzz/regressions/$n" ]; then
        for f in server/fuzz/regressions/"$n"/*; do
            [ -f "$f" ] && regs+=("$f")
        done
    fi
    if [ ${#regs[@]} -gt 0 ]; then
        if ! "$bin" "${regs[@]}" >>"$log" 2>&1; then
            echo "fuzz-$n: a saved regression input crashes (see $log)" >&2
            ncrash=1
        fi
    fi

    # 2. bounded fuzzing on a scratch copy of the seed corpus
    if [ -d "server/fuzz/corpus/$n" ]; then
        cp -f server/fuzz/corpus/"$n"/* "$work"/ 2>/dev/null || true
    fi
    dirs=("$work")
    for d in $(extra_corpora "$n"); do
        [ -d "$d" ] && dirs+=("$d")
    done
    dict=()
    [ -f "server/fuzz/$n.dict" ] && dict=("-dict=server/fuzz/$n.dict")
    t0=$(date +%s)
    # shellcheck disable=SC2046
    "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=25 \
        -rss_limit_mb=2560 -artifact_prefix="$crashes/" $(options "$n") "${dict[@]}" \
        "${dirs[@]}" >>"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - t0))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    execs=${execs:-0}
    if [ $rc -ne 0 ]; then
        ncrash=$((ncrash + $(find "$crashes" -type f | wc -l)))
        [ "$ncrash" -eq 0 ] && ncrash=1 # died without an artifact
    fi
    echo "fuzz-$n: $execs execs in $took s, $ncrash crashes"
    if [ "$ncrash" -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        grep -m 5 -E 'ERROR:|invariant failed|SUMMARY|Test unit written' "$log" | sed "s/^/  /" >&2
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
