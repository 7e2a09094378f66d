#!/usr/bin/env bash
# run-topology.sh - two instances behind nginx on one PostgreSQL database,
# with and without Redis (tests/topology/). Starts a throwaway PostgreSQL
# cluster (tests/pg.sh); nginx and redis-server come from scripts/deps.sh.
# Prints "topology: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
export COAI_FIXTURES_DIR=${COAI_FIXTURES_DIR:-$(cd .. && pwd)/shared/fixtures}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
: "${COAI_BIN:?set COAI_BIN to the server binary}"
for tool in /usr/sbin/nginx psql; do
  command -v "$tool" >/dev/null || { echo "topology: 0 passed, 1 failed ($tool missing: make deps-test)"; exit 1; }
done
if command -v redis-server >/dev/null && grep -q CHATOPENAII_REDIS_URL server/src/config.c; then
  export COAI_TOPO_REDIS=1
fi
. tests/pg.sh
if ! coai_pg_start; then
  echo "topology: 0 passed, 1 failed (could not start PostgreSQL)"
  exit 1
fi
status=0
COAI_TEST_PG_URL=$COAI_PG_URL COAI_SUITE=topology node --test --test-concurrency=1 \
  --test-reporter=./tests/lib/reporter.mjs tests/topology/ || status=1
coai_pg_stop
exit $status
