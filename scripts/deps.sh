#!/usr/bin/env bash
# deps.sh - install the Debian packages the build and tests need, only those
# missing (so a second run costs a dpkg query, nothing more). Needs root or
# sudo on a fresh Debian 12 machine; prints what it installs.
set -euo pipefail

# build: compiler, meson/ninja, libraries (-dev)
BUILD_PKGS=(gcc make pkg-config meson ninja-build libevent-dev libcurl4-openssl-dev
  libjansson-dev libsqlite3-dev libpq-dev libssl-dev libargon2-dev libhiredis-dev libmd4c-dev)
# tests: cmocka, node (for API tests), curl for smoke checks, a PostgreSQL
# server for the throwaway cluster of tests/pg.sh, chromium for the Playwright
# end-to-end tests (tests/e2e; Playwright never downloads a browser), and
# redis-server + redis-cli for the shared-limit tests (tests/api/redis.test.mjs),
# nginx in front of two instances in tests/topology (deploy/nginx.conf)
TEST_PKGS=(libcmocka-dev curl postgresql chromium sqlite3 redis-server nginx-light)

# bench: load generator and calculator
BENCH_PKGS=(wrk bc curl nginx-light sqlite3)

want=("${BUILD_PKGS[@]}")
# coverage: lcov (C), fuzzing: clang with libFuzzer
COV_PKGS=(lcov libcmocka-dev curl postgresql redis-server)
FUZZ_PKGS=(clang libclang-rt-14-dev)

case "${1:-}" in
  test) want+=("${TEST_PKGS[@]}") ;;
  coverage) want+=("${COV_PKGS[@]}") ;;
  fuzz) want+=("${FUZZ_PKGS[@]}") ;;
  bench) want+=("${BENCH_PKGS[@]}") ;;
esac

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs npm); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
