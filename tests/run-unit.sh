#!/usr/bin/env bash
# run-unit.sh BUILD_DIR [NAME] - run the C unit tests (cmocka) of an ASan/UBSan
# build from the repo root. Each binary prints its own "N passed, N failed".
set -uo pipefail
build=${1:?build dir}
only=${2:-}
cd "$(dirname "$0")/.."
export COAI_FIXTURES_DIR=${COAI_FIXTURES_DIR:-$(cd .. && pwd)/shared/fixtures}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
status=0
found=0
for t in "$build"/server/test_*; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  name=$(basename "$t")
  if [ -n "$only" ] && [ "$name" != "test_$only" ]; then continue; fi
  found=1
  # cmocka's own per-test lines go to the log; the summary line stays visible
  if ! "$t" > "/tmp/coai-$name.log" 2>&1; then
    cat "/tmp/coai-$name.log"
    echo "$name: FAILED (exit $?)"
    status=1
  fi
  grep -oE '[a-z0-9-]+: [0-9]+ passed, [0-9]+ failed' "/tmp/coai-$name.log" || { echo "$name: no summary line"; status=1; }
done
if [ $found = 0 ]; then echo "unit: no test binaries in $build"; exit 1; fi

# The store tests again on PostgreSQL, in a throwaway cluster (tests/pg.sh).
if [ -z "$only" ] || [ "$only" = store ] || [ "$only" = store-pg ]; then
  . tests/pg.sh
  if coai_pg_start; then
    if ! COAI_TEST_PG_URL=$COAI_PG_URL "$build/server/test_store" > /tmp/coai-test_store_pg.log 2>&1; then
      cat /tmp/coai-test_store_pg.log
      echo "test_store (PostgreSQL): FAILED"
      status=1
    fi
    grep -oE 'unit-store-pg: [0-9]+ passed, [0-9]+ failed' /tmp/coai-test_store_pg.log ||
      { echo "unit-store-pg: no summary line"; status=1; }
    coai_pg_stop
  else
    echo "unit-store-pg: 0 passed, 1 failed (could not start PostgreSQL)"
    status=1
  fi
fi
exit $status
