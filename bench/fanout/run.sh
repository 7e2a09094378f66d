#!/usr/bin/env bash
# bench/fanout/run.sh [BIN] - 10,000 concurrent SSE subscribers to live turns
# (the "Performance budget" row): one server instance (SQLite in a temp data
# dir), TURNS live turns streamed by a fake provider (upstream.c), NSUBS
# subscriptions to them (GET /api/v1/turns/{id}/events, round robin) opened
# by one C client (subscribers.c, epoll). Once all are open the provider
# sends DELTAS deltas per turn, PACE_MS apart, each carrying its send time;
# the client checks that every subscriber got every event in order and
# computes the fan-out latency (receive - provider send) of every delta.
# The server's RSS (VmRSS sampled every 100 ms, and VmHWM) is read meanwhile.
#
# Knobs (environment): BENCH_SUBS (10000), BENCH_TURNS (100), BENCH_DELTAS
# (50), BENCH_PACE_MS (200), BENCH_STAGGER (1: the turns' ticks are spread
# over one pace interval, as independent turns are; 0: all turns tick at the
# same instant, the worst-case burst), BENCH_THREADS (client threads, 1),
# BENCH_PORT_BASE (18400: provider, +1 server), BENCH_KEEP=1 keeps the work
# directory, BENCH_PERF=FILE records a perf profile of the server (perf
# record -g) while the client runs. BENCH_RESULTS=FILE appends the table rows (figure, measured,
# target, PASS|FAIL; tab-separated).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build/server/chatopenaii}
[ -x "$BIN" ] || make build >/dev/null
SUBS=${BENCH_SUBS:-10000}
TURNS=${BENCH_TURNS:-100}
DELTAS=${BENCH_DELTAS:-50}
PACE=${BENCH_PACE_MS:-200}
STAGGER=${BENCH_STAGGER:-1}
THREADS=${BENCH_THREADS:-1}
PB=${BENCH_PORT_BASE:-18400}
UP_PORT=$PB COAI_PORT=$((PB + 1))
RSS_TARGET_MB=200 P99_TARGET_MS=50

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $rc != 0 ]; then for f in "$WORK"/*.log; do
    [ -s "$f" ] && { echo "--- $f" >&2; tail -5 "$f" >&2; }; done; fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

gcc -O2 -Wall -o "$WORK/upstream" bench/fanout/upstream.c
gcc -O2 -Wall -pthread -o "$WORK/subscribers" bench/fanout/subscribers.c

wait_http() { # URL: until something answers (any status)
  for _ in $(seq 1 500); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.02
  done
  echo "bench/fanout: $1 never answered" >&2; return 1
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

"$WORK/upstream" "$UP_PORT" "$DELTAS" "$PACE" "$STAGGER" >"$WORK/upstream.log" 2>&1 &
UP_PID=$!; PIDS+=("$UP_PID")
wait_http "http://127.0.0.1:$UP_PORT/stats"

mkdir -p "$WORK/data"
# env execs the server, so $! is the server's own pid (for /proc)
env CHATOPENAII_LISTEN=127.0.0.1:$COAI_PORT CHATOPENAII_DATA_DIR="$WORK/data" \
  CHATOPENAII_LOG_LEVEL=warn CHATOPENAII_MASTER_KEY="$(printf '%064d' 7)" \
  CHATOPENAII_RATE_API=0 CHATOPENAII_RATE_AUTH=0 CHATOPENAII_RATE_GENERATE=0 \
  CHATOPENAII_PROVIDER_BASE_URL="http://127.0.0.1:$UP_PORT/v1" CHATOPENAII_PROVIDER_API_KEY=sk-bench \
  CHATOPENAII_TITLES=off "$BIN" serve >"$WORK/server.log" 2>&1 &
COAI_PID=$!; PIDS+=("$COAI_PID")
URL=http://127.0.0.1:$COAI_PORT
wait_http "$URL/healthz"
H=(-H 'X-Requested-With: chatopenaii' -H 'Content-Type: application/json' -H "Origin: $URL")
curl -fs -c "$WORK/jar" "${H[@]}" -d '{"email":"bench@example.com","password":"benchmark-pw"}' \
  "$URL/api/v1/auth/register" >/dev/null
COOKIE=$(awk '$6 == "coai_session" {print $7}' "$WORK/jar")
[ -n "$COOKIE" ] || { echo "bench/fanout: no session cookie" >&2; exit 1; }

# TURNS live turns: one chat each, one message each; the provider holds them
: >"$WORK/urls"
for i in $(seq 1 "$TURNS"); do
  chat=$(curl -fs -b "$WORK/jar" "${H[@]}" -d "{\"title\":\"fanout $i\"}" "$URL/api/v1/chats" |
    sed -n 's/^{"chat":{"id":"\([^"]*\)".*/\1/p')
  [ -n "$chat" ] || { echo "bench/fanout: could not create a chat" >&2; exit 1; }
  curl -fs -b "$WORK/jar" "${H[@]}" -d '{"content":"Tell me a long story.","model":"gpt-4o"}' \
    "$URL/api/v1/chats/$chat/messages" | grep -o '"events_url":"[^"]*"' | cut -d'"' -f4 >>"$WORK/urls"
done
[ "$(wc -l <"$WORK/urls")" = "$TURNS" ] || { echo "bench/fanout: could not start $TURNS turns" >&2; exit 1; }
for _ in $(seq 1 250); do # every turn has reached the provider
  curl -fs "http://127.0.0.1:$UP_PORT/stats" | grep -q "^streams=$TURNS " && break
  sleep 0.02
done
curl -fs "http://127.0.0.1:$UP_PORT/stats" | grep -q "^streams=$TURNS " ||
  { echo "bench/fanout: the provider did not get $TURNS streams" >&2; exit 1; }

rss() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
RSS_IDLE=$(rss "$COAI_PID" VmRSS)
# RSS sampler: the highest VmRSS seen, every 100 ms
(
  max=0
  while kill -0 "$COAI_PID" 2>/dev/null; do
    v=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$COAI_PID/status" 2>/dev/null || echo 0)
    [ "${v:-0}" -gt "$max" ] && { max=$v; echo "$max" >"$WORK/rss_max"; }
    sleep 0.1
  done
) &
PIDS+=("$!")

TIMEOUT=$(( 60 + DELTAS * PACE / 1000 ))
[ "$TIMEOUT" -gt 100 ] && TIMEOUT=100
busy() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; } # all CPUs, all processes
# CPU is counted over the streaming phase only (from the provider's start)
(
  for _ in $(seq 1 5000); do
    curl -fs "http://127.0.0.1:$UP_PORT/stats" 2>/dev/null | grep -q ' started=0 ' || break
    sleep 0.02
  done
  echo "$(ticks "$COAI_PID") $(ticks "$UP_PID") $(busy) $(date +%s%N)" >"$WORK/ticks0"
) &
PIDS+=("$!")
echo "bench/fanout: $SUBS subscribers on $TURNS live turns, $DELTAS deltas each every $PACE ms" \
  "(stagger $STAGGER), client threads $THREADS"
if [ -n "${BENCH_PERF:-}" ]; then # profile the server while the client runs
  perf record -g -p "$COAI_PID" -o "$BENCH_PERF" >"$WORK/perf.log" 2>&1 &
  PERF_PID=$!; PIDS+=("$PERF_PID"); sleep 0.5
fi
OUT=$("$WORK/subscribers" "$COAI_PORT" "$COOKIE" "$WORK/urls" "$SUBS" "$DELTAS" "$UP_PORT" \
  "$TIMEOUT" "$THREADS" 2>"$WORK/subscribers.log") || {
  echo "bench/fanout: the client failed" >&2; cat "$WORK/subscribers.log" >&2; exit 1; }
s1=$(ticks "$COAI_PID") u1=$(ticks "$UP_PID") b1=$(busy) w1=$(date +%s%N)
read -r s0 u0 b0 w0 <"$WORK/ticks0" || { echo "bench/fanout: the provider never started" >&2; exit 1; }
[ -n "${BENCH_PERF:-}" ] && { kill -INT "$PERF_PID"; wait "$PERF_PID" || true; }
HWM=$(rss "$COAI_PID" VmHWM) RSS_END=$(rss "$COAI_PID" VmRSS)
RSS_MAX=$(cat "$WORK/rss_max" 2>/dev/null || echo 0)
STATS=$(curl -fs "http://127.0.0.1:$UP_PORT/stats")
[ -s "$WORK/subscribers.log" ] && { echo "client messages:"; cat "$WORK/subscribers.log"; }

declare -A R
for kv in $OUT; do R[${kv%%=*}]=${kv#*=}; done
for kv in $STATS; do R[up_${kv%%=*}]=${kv#*=}; done
SENT=${R[up_deltas]}   # by the provider, all turns
EXPECT=$(( SUBS * DELTAS ))
awk -v subs="$SUBS" -v turns="$TURNS" -v deltas="$DELTAS" -v pace="$PACE" -v hz="$HZ" \
    -v est="${R[established]}" -v complete="${R[complete]}" -v bad="${R[bad]}" \
    -v timedout="${R[timed_out]}" -v got="${R[deltas]}" -v expect="$EXPECT" -v sent="$SENT" \
    -v p50="${R[p50_us]}" -v p99="${R[p99_us]}" -v p999="${R[p999_us]}" -v mx="${R[max_us]}" \
    -v open_s="${R[open_s]}" -v stream_s="${R[stream_s]}" -v ccpu="${R[cpu_s]}" -v ccpu0="${R[cpu_open_s]}" \
    -v scpu=$((s1 - s0)) -v ucpu=$((u1 - u0)) -v allcpu=$((b1 - b0)) -v win=$(( (w1 - w0) / 1000000 )) -v ncpu="$(nproc)" -v idle="$RSS_IDLE" -v hwm="$HWM" \
    -v rmax="$RSS_MAX" -v rend="$RSS_END" -v rt="$RSS_TARGET_MB" -v pt="$P99_TARGET_MS" \
    -v results="${BENCH_RESULTS:-}" '
BEGIN {
  wall = open_s + stream_s
  printf "\n== SSE fan-out: %d subscribers, %d live turns, %d deltas each every %s ms ==\n", subs, turns, deltas, pace
  printf "subscriptions open:        %d/%d in %.2f s\n", est, subs, open_s
  printf "subscribers complete:      %d/%d (every delta in order, ids without a gap, usage, done)\n", complete, subs
  printf "delta events received:     %d of %d expected (provider sent %d: %d per turn)\n", got, expect, sent, sent / turns
  printf "fan-out latency (provider send -> subscriber read), over %d deltas:\n", got
  printf "  p50 %.2f ms   p99 %.2f ms   p99.9 %.2f ms   max %.2f ms\n", p50 / 1000, p99 / 1000, p999 / 1000, mx / 1000
  printf "server RSS: idle (turns running, no subscriber) %.1f MB, peak sampled VmRSS %.1f MB, VmHWM %.1f MB, at the end %.1f MB\n",
         idle / 1024, rmax / 1024, hwm / 1024, rend / 1024
  printf "  per subscriber: %.1f KB above idle\n", (hwm - idle) / subs
  cc = ccpu - ccpu0; others = allcpu / hz - scpu / hz - ucpu / hz - cc; if (others < 0) others = 0
  printf "CPU while the turns streamed (%.1f s wall, %d cores): server %.2f s (%.0f%% of a core, %.1f us per delta delivered),\n", win / 1000, ncpu, scpu / hz, scpu / hz / (win / 1000) * 100, got ? scpu / hz / got * 1e6 : 0
  printf "  client %.2f s (%.0f%%), provider %.2f s (%.0f%%), other processes of this machine %.2f s (%.0f%% of all cores)%s\n", cc, cc / (win / 1000) * 100, ucpu / hz, ucpu / hz / (win / 1000) * 100, others, others / (win / 1000 * ncpu) * 100, (others / (win / 1000 * ncpu) > 0.1 ? ": the machine was busy, the tails are disturbed; run again on a quiet machine" : "")
  printf "client CPU opening the subscriptions: %.2f s\n", ccpu0
  ok = complete == subs && sent == turns * deltas
  peak = hwm > rmax ? hwm : rmax
  v1 = ok ? "PASS" : "FAIL"; v2 = peak / 1024 <= rt ? "PASS" : "FAIL"; v3 = (got > 0 && p99 / 1000 <= pt) ? "PASS" : "FAIL"
  printf "\n%s  every event received: %d/%d subscribers\n", v1, complete, subs
  printf "%s  server RSS peak %.1f MB (target <= %d MB)\n", v2, peak / 1024, rt
  printf "%s  fan-out p99 %.2f ms (target <= %d ms)\n", v3, p99 / 1000, pt
  if (results != "") {
    printf "%s SSE subscribers: every event received\t%d/%d\tall\t%s\n", fmt(subs), complete, subs, v1 >> results
    printf "%s SSE subscribers: server RSS peak\t%.0f MB\t≤ %d MB\t%s\n", fmt(subs), peak / 1024, rt, v2 >> results
    printf "%s SSE subscribers: fan-out p99\t%.1f ms\t≤ %d ms\t%s\n", fmt(subs), p99 / 1000, pt, v3 >> results
  }
}
function fmt(n) { return n >= 1000 ? sprintf("%d,%03d", n / 1000, n % 1000) : n }'
