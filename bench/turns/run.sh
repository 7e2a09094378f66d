#!/usr/bin/env bash
# bench/turns/run.sh [BIN] - 1,000 concurrent turns against one server
# (performance budget): the fake provider (upstream.c) streams 500
# chat.completion.chunk events per answer at 20 a second (25 s an answer);
# the client (client.c) starts every turn at once, reads every event of
# every turn, then reads every answer back from the store. Reports
#   - turns complete and persisted with the exact expected text (all),
#   - event-loop lag p99 over the run, from the server's
#     coai_loop_lag_seconds histogram scraped before and after (<= 10 ms),
#   - server CPU per relayed chunk (<= 3 us): utime+stime of the server from
#     /proc/PID/stat between the first POST and the last "done", divided by
#     the delta events the clients received (one per content chunk the
#     provider sent); the steady state (every turn streaming, none finished)
#     is printed beside it,
#   - for reference, CPU per chunk through the gateway's pass-through
#     /v1/chat/completions stream (BENCH_GATEWAY=0 skips it),
#   - the floor under the CPU figure: relay_floor.c, a bare epoll relay (one
#     recv and one send per chunk, no parsing) copying the same TURNS
#     streams from the same provider to TURNS loopback sockets; its CPU per
#     chunk is what moving a chunk through any process costs on this machine
#     (BENCH_FLOOR=0 skips it),
#   - beside the lag over the run (the row): the lag over the streaming
#     phase only (every turn streaming, none finished: no start-up burst, no
#     endings), the lag of the idle server just before the turns (what this
#     machine gives a loop with nothing to do), and how long the loop thread
#     ran and how long it was ready but waited for a core (schedstat): when
#     the wait is large, the lag is the machine's, not the loop's work.
# The client's and the provider's CPU are printed too, to show they are not
# the bottleneck (all three share this machine's cores).
#
# Knobs: BENCH_TURNS (1000), BENCH_CHUNKS (500), BENCH_RATE (20 chunks/s),
# BENCH_GW_STREAMS (1000) and BENCH_GW_CHUNKS (100) for the gateway part,
# BENCH_PORT_BASE (18500: provider, +1 server), BENCH_KEEP=1 keeps the work
# directory, BENCH_RESULTS=FILE appends one tab-separated line per target:
# figure, measured, target, PASS|FAIL. Exit status: 0 when the bench ran
# (whatever the verdicts), non-zero when it broke.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build/server/chatopenaii}
[ -x "$BIN" ] || make build >/dev/null
TURNS=${BENCH_TURNS:-1000}
CHUNKS=${BENCH_CHUNKS:-500}
RATE=${BENCH_RATE:-20}
GW=${BENCH_GATEWAY:-1}
FLOOR=${BENCH_FLOOR:-1}
GW_STREAMS=${BENCH_GW_STREAMS:-1000}
GW_CHUNKS=${BENCH_GW_CHUNKS:-100}
PB=${BENCH_PORT_BASE:-18500}
UP_PORT=$PB SRV_PORT=$((PB + 1))

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

for p in "$UP_PORT" "$SRV_PORT"; do
  if [ -n "$(ss -ltnH "sport = :$p" 2>/dev/null)" ]; then
    echo "bench/turns: port $p is in use (another run?); set BENCH_PORT_BASE" >&2; exit 1
  fi
done

CFLAGS=(-O2 -Wall -Wno-unused-parameter)
gcc "${CFLAGS[@]}" -o "$WORK/upstream" bench/turns/upstream.c
gcc "${CFLAGS[@]}" -o "$WORK/client" bench/turns/client.c $(pkg-config --cflags --libs libcurl jansson)
gcc "${CFLAGS[@]}" -o "$WORK/gwload" bench/turns/gwload.c $(pkg-config --cflags --libs libcurl)
gcc "${CFLAGS[@]}" -o "$WORK/relay_floor" bench/turns/relay_floor.c

wait_http() {
  for _ in $(seq 1 500); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.02
  done
  echo "bench/turns: $1 never answered" >&2; return 1
}

"$WORK/upstream" "$UP_PORT" "$CHUNKS" "$RATE" >"$WORK/upstream.log" 2>&1 &
UP_PID=$!; PIDS+=("$UP_PID")
wait_http "http://127.0.0.1:$UP_PORT/"

mkdir -p "$WORK/data"
CHATOPENAII_LISTEN=127.0.0.1:$SRV_PORT CHATOPENAII_DATA_DIR=$WORK/data CHATOPENAII_LOG_LEVEL=warn \
  CHATOPENAII_MASTER_KEY=$(printf '%064d' 7) CHATOPENAII_RATE_API=0 CHATOPENAII_RATE_AUTH=0 \
  CHATOPENAII_RATE_GENERATE=0 CHATOPENAII_GATEWAY_RPM=0 CHATOPENAII_GATEWAY_TPM=0 \
  CHATOPENAII_PROVIDER_BASE_URL=http://127.0.0.1:$UP_PORT/v1 CHATOPENAII_PROVIDER_API_KEY=sk-bench \
  CHATOPENAII_TITLES=off "$BIN" serve >"$WORK/server.log" 2>&1 &
SRV_PID=$!; PIDS+=("$SRV_PID")
wait_http "http://127.0.0.1:$SRV_PORT/healthz"

echo "bench/turns: $TURNS turns x $CHUNKS chunks at $RATE/s (about $((CHUNKS / RATE)) s of streaming)"
if ! "$WORK/client" "http://127.0.0.1:$SRV_PORT" "$TURNS" "$CHUNKS" "$SRV_PID" "$UP_PID" >"$WORK/client.out" 2>"$WORK/client.err"; then
  echo "bench/turns: the client failed:" >&2; cat "$WORK/client.err" >&2
  echo "--- server log (tail):" >&2; tail -5 "$WORK/server.log" >&2
  exit 1
fi
kv() { awk -F= -v k="$1" '$1 == k {sub(/^[^=]*=/, ""); print; exit}' "$WORK/client.out"; }

GW_OUT=
if [ "$GW" = 1 ]; then
  # An API token of a fresh user, then streams straight through /v1.
  H=(-H 'X-Requested-With: chatopenaii' -H 'Content-Type: application/json')
  curl -fs -c "$WORK/jar" "${H[@]}" -d '{"email":"gw@example.com","password":"benchmark-pw"}' \
    "http://127.0.0.1:$SRV_PORT/api/v1/auth/register" >/dev/null
  TOKEN=$(curl -fs -b "$WORK/jar" "${H[@]}" -d '{"name":"bench"}' "http://127.0.0.1:$SRV_PORT/api/v1/tokens" |
    sed -n 's/.*"secret":"\([^"]*\)".*/\1/p')
  [ -n "$TOKEN" ] || { echo "bench/turns: no API token" >&2; exit 1; }
  if ! GW_OUT=$("$WORK/gwload" "http://127.0.0.1:$SRV_PORT/v1/chat/completions" "$TOKEN" "$GW_STREAMS" \
      "$GW_CHUNKS" "$SRV_PID" 2>"$WORK/gwload.err"); then
    echo "bench/turns: the gateway load failed:" >&2; cat "$WORK/gwload.err" >&2; exit 1
  fi
fi
gkv() { awk -F= -v k="$1" '$1 == k {sub(/^[^=]*=/, ""); print; exit}' <<<"$GW_OUT"; }

FLOOR_US=
if [ "$FLOOR" = 1 ]; then
  if FL_OUT=$("$WORK/relay_floor" "$UP_PORT" "$TURNS" "$CHUNKS" 2>"$WORK/relay_floor.err"); then
    FLOOR_US=$(awk -F= '$1 == "cpu_per_chunk_us" {print $2}' <<<"$FL_OUT")
    FLOOR_CPU=$(awk -F= '$1 == "relay_cpu_s" {print $2}' <<<"$FL_OUT")
  else
    echo "bench/turns: the floor relay failed:" >&2; cat "$WORK/relay_floor.err" >&2
  fi
fi

kill "$UP_PID" 2>/dev/null || true
wait "$UP_PID" 2>/dev/null || true
RSS=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$SRV_PID/status")

T=$(kv turns) PERS=$(kv persisted_ok) STR=$(kv streamed_ok)
P99=$(kv lag_p99_ms) CPU=$(kv cpu_per_chunk_us)
ok_all=$([ "$PERS" = "$T" ] && [ "$STR" = "$T" ] && echo PASS || echo FAIL)
ok_lag=$(awk -v x="$P99" 'BEGIN {print (x >= 0 && x <= 10) ? "PASS" : "FAIL"}')
ok_cpu=$(awk -v x="$CPU" 'BEGIN {print (x >= 0 && x <= 3) ? "PASS" : "FAIL"}')

cat <<REPORT

== $T concurrent turns, $(kv chunks_per_turn) chunks each at $RATE/s, one server (SQLite), $(nproc) cores ==
set-up (1 user, $T chats)          $(kv setup_s) s
turns: first POST to last "done"   $(kv run_s) s (each turn $(kv turn_duration_min_s)-$(kv turn_duration_max_s) s; first delta within $(kv first_delta_max_s) s of its POST)
streamed in full (client)          $STR/$T
complete and persisted (store)     $PERS/$T   (read back in $(kv verify_s) s)
failed                             $(kv failed) $(kv first_failure)
delta events received              $(kv deltas)

event-loop lag over the run        p50 $(kv lag_p50_ms) ms, p99 $P99 ms, p99.9 $(kv lag_p999_ms) ms, mean $(kv lag_mean_ms) ms ($(kv lag_samples) samples of a 10 ms timer; max since start $(kv lag_max_since_start_ms) ms)
  streaming phase only             p50 $(kv lag_stream_p50_ms) ms, p99 $(kv lag_stream_p99_ms) ms ($(kv lag_stream_samples) samples; every turn streaming, none finished)
  idle server, before the turns    p50 $(kv lag_idle_p50_ms) ms, p99 $(kv lag_idle_p99_ms) ms ($(kv lag_idle_samples) samples: this machine's own lag for a loop with nothing to do)
  loop thread during the turns     ran $(kv loop_run_s) s, was ready but waited for a core $(kv loop_wait_s) s

CPU during the turns (utime+stime):
  server                           $(kv server_cpu_s) s = $CPU us per relayed chunk
  server, steady state             $(kv steady_cpu_per_chunk_us) us per chunk ($(kv steady_chunks_per_s) chunks/s over $(kv steady_window_s) s)
  fake provider                    $(kv upstream_cpu_s) s
  load generator                   $(kv client_cpu_s) s
  other processes of this machine   $(kv others_cpu_s) s ($(kv others_cpu_pct)% of all cores during the turns)
  floor: a bare C relay            ${FLOOR_US:-(not run)} us per chunk (relay_floor.c: epoll, one recv + one send per chunk, no parsing; ${FLOOR_CPU:-?} s for the same $T x $CHUNKS chunks)
server peak RSS                    $RSS KiB
REPORT
if [ "$(kv others_cpu_pct)" -gt 10 ] 2>/dev/null; then
  echo "Other processes took more than 10% of the machine: the lag figures are disturbed (the loop"
  echo "thread waits for a core); run again on a quiet machine."
fi
if [ -n "$GW_OUT" ]; then
  cat <<REPORT

For reference, the gateway pass-through (/v1/chat/completions, stream):
  $(gkv streams) streams x $(gkv chunks_per_stream) chunks at $RATE/s: $(gkv ok) complete, $(gkv chunks) chunks in $(gkv run_s) s
  server CPU $(gkv server_cpu_s) s = $(gkv cpu_per_chunk_us) us per relayed chunk; load generator $(gkv client_cpu_s) s
REPORT
fi
echo
printf '%-4s %s\n' "$ok_all" "$T concurrent turns complete and persisted: $PERS/$T (target: all)" \
  "$ok_lag" "event-loop lag p99: $P99 ms (target <= 10 ms)" \
  "$ok_cpu" "CPU per relayed SSE chunk: $CPU us${FLOOR_US:+ (floor: a bare C relay $FLOOR_US us)} (target <= 3 us)"
if [ -n "${BENCH_RESULTS:-}" ]; then
  n=$(printf "%'d" "$T" 2>/dev/null || echo "$T")
  printf '%s\t%s\t%s\t%s\n' \
    "$n concurrent turns: complete and persisted" "$PERS/$T" "all" "$ok_all" \
    "$n concurrent turns: event-loop lag p99" "$P99 ms" "≤ 10 ms" "$ok_lag" \
    "CPU per relayed SSE chunk" "$CPU µs${FLOOR_US:+ (floor: a bare C relay $FLOOR_US µs)}" "≤ 3 µs" "$ok_cpu" >>"$BENCH_RESULTS"
fi
if [ -s "$WORK/client.err" ]; then echo; echo "client messages:"; head -5 "$WORK/client.err"; fi
