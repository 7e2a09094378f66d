#!/usr/bin/env bash
# coverage.sh - line coverage of the C server (lcov) over the unit and API
# suites, and of the web app (Vitest v8). Fails below MIN (default 80%).
set -uo pipefail
cd "$(dirname "$0")/.."
MIN=${COVERAGE_MIN:-80}
status=0
command -v lcov >/dev/null || { bash scripts/deps.sh coverage || exit 1; }

# --- C server ---------------------------------------------------------------
if [ ! -f build-cov/build.ninja ]; then
  meson setup build-cov --buildtype=debug -Db_coverage=true >/dev/null || exit 1
fi
ninja -C build-cov >/dev/null || exit 1
find build-cov -name '*.gcda' -delete
bash tests/run-unit.sh build-cov >/dev/null 2>&1 || echo "coverage: unit tests failed (see make test)"
COAI_BIN="$PWD/build-cov/server/chatopenaii" bash tests/run-api.sh >/dev/null 2>&1 \
  || echo "coverage: API tests failed (see make test)"
lcov --quiet --capture --directory build-cov --output-file build-cov/all.info \
  --rc lcov_branch_coverage=0 2>/dev/null
lcov --quiet --extract build-cov/all.info "$PWD/server/src/*" --output-file build-cov/server.info \
  2>/dev/null
c_pct=$(lcov --summary build-cov/server.info 2>&1 | awk '/lines/ {gsub("%","",$2); print $2}')
echo "coverage-c: ${c_pct}% of lines in server/src (minimum ${MIN}%)"
if awk -v p="$c_pct" -v m="$MIN" 'BEGIN { exit !(p + 0 >= m) }'; then :; else status=1; fi
if command -v genhtml >/dev/null; then
  genhtml --quiet build-cov/server.info --output-directory build-cov/html >/dev/null 2>&1 \
    && echo "coverage-c: report in build-cov/html/index.html"
fi

# --- web app ----------------------------------------------------------------
if [ -f web/package.json ] && grep -q '"coverage"' web/package.json; then
  # vite.config.ts writes the report to build-cov/web (json-summary + html)
  rm -f build-cov/web/coverage-summary.json
  (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run --silent coverage) \
    > build-cov/web.txt 2>&1 \
    || { echo "coverage: web tests failed or below the threshold (see build-cov/web.txt)"; status=1; }
  grep -E 'web-unit: [0-9]+ passed' build-cov/web.txt
  w_pct=$(node -e 'try { console.log(require(process.argv[1]).total.lines.pct) } catch { }' \
    "$PWD/build-cov/web/coverage-summary.json")
  echo "coverage-web: ${w_pct:-?}% of lines in web/src (minimum ${MIN}%)"
  [ -f build-cov/web/index.html ] && echo "coverage-web: report in build-cov/web/index.html"
  if [ -z "$w_pct" ] || ! awk -v p="$w_pct" -v m="$MIN" 'BEGIN { exit !(p + 0 >= m) }'; then status=1; fi
else
  echo "coverage-web: no coverage script in web/package.json"
  status=1
fi
exit $status
