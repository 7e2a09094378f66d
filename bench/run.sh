#!/usr/bin/env bash
# bench/run.sh BIN - server-core figures, all measured in this one run:
#   start-up time (exec -> first 200 from /healthz), idle RSS,
#   requests/s of GET /healthz and GET /api/v1/chats (signed in, 50 chats),
#   and their ratio (what a session lookup + store query costs per request).
# Needs wrk and curl (installed by scripts/deps.sh bench).
set -euo pipefail
BIN=${1:-build/server/chatopenaii}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || bash scripts/deps.sh bench
PORT=${BENCH_PORT:-18181}
DATA=$(mktemp -d)
URL=http://127.0.0.1:$PORT
DUR=${BENCH_DURATION:-5s}
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT

# Sets PID and STARTUP_US (exec -> first 200 from /healthz).
start_server() {
  local t0 t1
  t0=$(date +%s%N)
  CHATOPENAII_LISTEN=127.0.0.1:$PORT CHATOPENAII_DATA_DIR=$DATA CHATOPENAII_LOG_LEVEL=warn \
    CHATOPENAII_MASTER_KEY=$(printf '%064d' 7) "$BIN" serve >/dev/null 2>>"$DATA/server.log" &
  PID=$!
  until curl -fs "$URL/healthz" >/dev/null 2>&1; do sleep 0.002; done
  t1=$(date +%s%N)
  STARTUP_US=$(( (t1 - t0) / 1000 ))
}

# warm start (schema exists), best of 5
best=999999999
for i in 1 2 3 4 5 6; do
  start_server
  # the first start creates the schema; count the warm starts
  if [ "$i" -gt 1 ] && [ "$STARTUP_US" -lt "$best" ]; then best=$STARTUP_US; fi
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done
start_server
sleep 0.5
rss=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)

H=(-H 'X-Requested-With: chatopenaii' -H 'Content-Type: application/json')
curl -fs -c "$DATA/jar" "${H[@]}" -d '{"email":"bench@example.com","password":"benchmark-pw"}' \
  "$URL/api/v1/auth/register" >/dev/null
for i in $(seq 1 50); do
  curl -fs -b "$DATA/jar" "${H[@]}" -d "{\"title\":\"chat $i\"}" "$URL/api/v1/chats" >/dev/null
done
COOKIE=$(awk '$6=="coai_session" {print $7}' "$DATA/jar")

rps() { wrk -t2 -c32 -d"$DUR" "$@" | awk '/Requests\/sec/ {print $2}'; }
health=$(rps "$URL/healthz")
chats=$(rps -H "Cookie: coai_session=$COOKIE" "$URL/api/v1/chats?limit=50")
rss_after=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)

printf 'startup (exec -> /healthz 200, best of 5): %.2f ms\n' "$(echo "$best/1000" | bc -l)"
printf 'idle RSS after start: %d KiB\n' "$rss"
printf 'RSS after the load runs: %d KiB\n' "$rss_after"
printf 'GET /healthz: %s req/s (wrk -t2 -c32 -d%s)\n' "$health" "$DUR"
printf 'GET /api/v1/chats?limit=50 (signed in, 50 chats): %s req/s\n' "$chats"
printf 'ratio chats/healthz: %.3f\n' "$(echo "$chats/$health" | bc -l)"
