#!/usr/bin/env bash
# bench/soak/run.sh [BIN] - memory of one server under a long mixed load.
#
# Starts the fake provider (bench/soak/provider.mjs: the tests' fake OpenAI,
# recorded answers paced EVENT_DELAY ms per event) and one server (BIN,
# default build/server/chatopenaii; SQLite in a temporary data directory),
# drives a realistic mixed load at a moderate steady rate for SOAK_SECONDS
# (bench/soak/load.mjs: sign-ins, chats, streamed answers followed, followed
# twice, stopped, abandoned and resumed, regenerated, /v1 streaming and not,
# 4xx), samples the server's VmRSS / RssAnon / open fds every SOAK_SAMPLE
# seconds, and reports
#   growth = (RSS over the last window - RSS over the first window after
#             warm-up) / the latter,
# windows of min(60 s, (SOAK_SECONDS - SOAK_WARMUP) / 3), RSS of a window
# being the mean of its samples with sub-second peaks taken out (each sample
# replaced by the minimum of it and its two neighbours: a sign-in in flight
# holds argon2's 19 MiB for a moment, and two or three samples catching one
# move a lean server's mean by 5%; the raw mean and median are printed too).
# PASS: growth <= 5% and no unexpected response. Also prints the request mix, status counts and
# any unexpected answers, the RSS after 5 s idle (the server's malloc_trim
# runs after 2 s without requests), and the server's exit status on SIGTERM.
#
# Knobs: SOAK_SECONDS (600), SOAK_WARMUP (60), SOAK_SAMPLE (1),
# SOAK_USERS (8 virtual users, one account each), SOAK_EVENT_DELAY_MS (15),
# SOAK_THINK_MIN_MS / SOAK_THINK_MAX_MS (300 / 1500), SOAK_PORT_BASE (18600:
# provider, +1 server; ports 18600-18619), SOAK_KEEP=1 keeps the work
# directory (logs, samples, counts). BENCH_RESULTS=FILE appends the table row.
# Exit 0 when the soak ran (PASS or FAIL); non-zero when it broke: a 5xx,
# a transport error, the server died or did not exit 0 on SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${1:-build/server/chatopenaii}
[ -x "$BIN" ] || make build
SECONDS_=${SOAK_SECONDS:-600}
WARMUP=${SOAK_WARMUP:-60}
SAMPLE=${SOAK_SAMPLE:-1}
USERS=${SOAK_USERS:-8}
DELAY=${SOAK_EVENT_DELAY_MS:-15}
PB=${SOAK_PORT_BASE:-18600}
UP_PORT=$PB COAI_PORT=$((PB + 1))
[ "$WARMUP" -lt "$SECONDS_" ] || { echo "bench/soak: SOAK_WARMUP must be below SOAK_SECONDS" >&2; exit 2; }
command -v node >/dev/null || { echo "bench/soak: node not found" >&2; exit 2; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${SOAK_KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # URL: until something answers (any status)
  for _ in $(seq 1 500); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.02
  done
  echo "bench/soak: $1 never answered" >&2; return 1
}

# the fake provider
node bench/soak/provider.mjs "$UP_PORT" "$DELAY" >"$WORK/provider.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/"

# the server: defaults, except sign-in and answer limits high enough that
# 8 users' bursts are never refused (the soak counts any 429 as unexpected)
mkdir -p "$WORK/data"
CHATOPENAII_LISTEN=127.0.0.1:$COAI_PORT CHATOPENAII_DATA_DIR=$WORK/data CHATOPENAII_LOG_LEVEL=warn \
  CHATOPENAII_MASTER_KEY=$(printf '%064d' 5) \
  CHATOPENAII_PROVIDER_BASE_URL=http://127.0.0.1:$UP_PORT/v1 CHATOPENAII_PROVIDER_API_KEY=sk-soak \
  CHATOPENAII_RATE_AUTH=600 CHATOPENAII_RATE_GENERATE=600 \
  "$BIN" serve >"$WORK/server.log" 2>&1 &
SRV=$!
PIDS+=("$SRV")
wait_http "http://127.0.0.1:$COAI_PORT/healthz"

# the sampler: epoch ms, VmRSS, RssAnon, RssFile, VmHWM (KiB), open fds
sample() {
  local f=/proc/$SRV/status
  [ -r "$f" ] || return 1
  local fds
  fds=$(ls "/proc/$SRV/fd" 2>/dev/null | wc -l)
  awk -v now="$(date +%s%3N)" -v fds="$fds" '
    $1 == "VmRSS:" {r = $2} $1 == "RssAnon:" {a = $2} $1 == "RssFile:" {f = $2} $1 == "VmHWM:" {h = $2}
    END {print now, r, a, f, h, fds}' "$f"
}
START=$(date +%s%3N)
(while sample; do sleep "$SAMPLE"; done) >"$WORK/samples" 2>/dev/null &
SAMPLER=$!
PIDS+=("$SAMPLER")

echo "bench/soak: ${SECONDS_}s of mixed load ($USERS users, warm-up ${WARMUP}s, RSS sampled every ${SAMPLE}s) against $BIN (pid $SRV)"
# in the background: a signal to this script is then handled at once
node bench/soak/load.mjs "http://127.0.0.1:$COAI_PORT" "$SECONDS_" "$USERS" "$WORK/counts.json" \
  >"$WORK/load.log" 2>&1 &
LOAD=$!
PIDS+=("$LOAD")
wait "$LOAD" || { echo "bench/soak: the load driver failed:" >&2; tail -20 "$WORK/load.log" >&2; exit 1; }
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
alive=1
kill -0 "$SRV" 2>/dev/null || alive=0
CPU=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$SRV/stat" 2>/dev/null || echo "?")
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
# idle: the server trims its heap 2 s after the last request
sleep 5
IDLE=$(sample || echo "")

# a clean stop: SIGTERM, exit 0
rc=dead
if [ "$alive" = 1 ]; then
  kill -TERM "$SRV"
  for _ in $(seq 1 200); do kill -0 "$SRV" 2>/dev/null || break; sleep 0.05; done
  set +e; wait "$SRV"; rc=$?; set -e
fi

set +e
node bench/soak/report.mjs "$WORK/samples" "$WORK/counts.json" "$START" "$SECONDS_" "$WARMUP" "$rc" "$IDLE" \
  "${BENCH_RESULTS:-}"
status=$?
set -e
echo "server CPU time: ${CPU} s over the soak; machine load average at the end: $LOADAVG ($(nproc) CPUs;"\
  "other benches running at the same time slow the load down, not the memory figures)"
if grep -q 'LeakSanitizer\|AddressSanitizer' "$WORK/server.log"; then
  # an ASan build (make build-asan): its report on SIGTERM
  echo; echo "sanitizer report of the server:"
  grep -E '^(==|SUMMARY|Direct|Indirect|    #)' "$WORK/server.log" | head -${SOAK_ASAN_LINES:-80}
fi
if [ "$rc" != 0 ] || grep -q '"level":"error"' "$WORK/server.log"; then
  echo; echo "server log (errors, last lines):"; grep -E '"level":"(error|warn)"' "$WORK/server.log" | tail -10
fi
[ "$status" = 0 ] || [ "${SOAK_KEEP:-0}" = 1 ] || echo "(SOAK_KEEP=1 keeps the logs)"
exit "$status"
