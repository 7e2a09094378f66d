#!/usr/bin/env bash
# run-e2e.sh - Playwright end-to-end tests (tests/e2e): Debian's chromium
# drives the built web app (web/dist) served by the real binary ($COAI_BIN)
# against the fake OpenAI upstream. Prints "e2e: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
export COAI_FIXTURES_DIR=${COAI_FIXTURES_DIR:-$(cd .. && pwd)/shared/fixtures}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
: "${COAI_BIN:?set COAI_BIN to the server binary}"
export COAI_BIN
chromium=${COAI_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "e2e: $chromium not found (make deps-test installs Debian's chromium)" >&2
  echo "e2e: 0 passed, 1 failed"
  exit 1
fi
if [ ! -f web/dist/index.html ]; then
  echo "e2e: web/dist is missing (run make web)" >&2
  echo "e2e: 0 passed, 1 failed"
  exit 1
fi
# Playwright and axe-core, from the lockfile
if [ ! -d tests/e2e/node_modules ] || [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.package-lock.json ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error) || { echo "e2e: 0 passed, 1 failed"; exit 1; }
fi
cd tests/e2e && exec npx --no-install playwright test --workers=1 --retries=0 "$@"
