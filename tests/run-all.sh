#!/usr/bin/env bash
# run-all.sh BUILD_DIR - every suite; exits non-zero if any failed.
set -uo pipefail
build=${1:?build dir}
cd "$(dirname "$0")/.."
status=0
echo "== C unit tests (ASan+UBSan)"
bash tests/run-unit.sh "$build" || status=1
echo "== web unit tests (Vitest)"
(cd web && npm test) || status=1
echo "== API tests (real binary, fake upstream)"
COAI_BIN="$PWD/$build/server/chatopenaii" bash tests/run-api.sh || status=1
echo "== topology: two instances behind nginx on PostgreSQL, with and without Redis"
COAI_BIN="$PWD/$build/server/chatopenaii" bash tests/run-topology.sh || status=1
echo "== end-to-end tests (Playwright, Debian's chromium)"
COAI_BIN="$PWD/$build/server/chatopenaii" bash tests/run-e2e.sh || status=1
if [ $status = 0 ]; then echo "all suites passed"; else echo "SOME SUITES FAILED"; fi
exit $status
