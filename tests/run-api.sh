#!/usr/bin/env bash
# run-api.sh - the API suites: node:test files that start the real binary
# ($COAI_BIN) and the fake OpenAI upstream. Prints "api: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
export COAI_FIXTURES_DIR=${COAI_FIXTURES_DIR:-$(cd .. && pwd)/shared/fixtures}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
: "${COAI_BIN:?set COAI_BIN to the server binary}"
# npm packages for the tests (the official openai SDK), from the lockfile
if [ ! -d tests/node_modules ] || [ tests/package-lock.json -nt tests/node_modules/.package-lock.json ]; then
  (cd tests && npm ci --no-audit --no-fund --loglevel=error) || exit 1
fi
status=0
COAI_SUITE=upstream node --test --test-reporter=./tests/lib/reporter.mjs tests/upstream/ || status=1
COAI_SUITE=api node --test --test-concurrency=2 --test-reporter=./tests/lib/reporter.mjs tests/api/ || status=1

# The whole API suite again with PostgreSQL as the store: a throwaway
# cluster (tests/pg.sh); every server's data directory gets its own database
# (tests/lib/harness.mjs, pgDatabaseFor). Not skipped when PostgreSQL is missing:
# then this suite fails.
. tests/pg.sh
if coai_pg_start; then
  COAI_TEST_PG_URL=$COAI_PG_URL COAI_SUITE=api-pg node --test --test-concurrency=2 \
    --test-reporter=./tests/lib/reporter.mjs tests/api/ || status=1
  coai_pg_stop
else
  echo "api-pg: 0 passed, 1 failed (could not start PostgreSQL)"
  status=1
fi
exit $status
