#!/usr/bin/env bash
# bench/scale/run.sh [BIN] - one instance versus two, on PostgreSQL, in one run
# (issue #6). nginx (deploy/nginx.conf settings) sits in front in both cases,
# so the only change is the number of instances behind it:
#   GET /api/v1/chats?limit=50 (50 chats)      requests/s, wrk -t2 -c32
#   64 concurrent streaming turns               messages/s (send, follow to done)
# A throwaway PostgreSQL cluster (tests/pg.sh) and the instant fake provider
# of bench/gateway are started and stopped by the script.
# Knobs: BENCH_DURATION (s, default 5), BENCH_CONC (default 64).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${1:-build/server/chatopenaii}
[ -x "$BIN" ] || make build
FIX=${FIXTURES:-$ROOT/../shared/fixtures}
DUR=${BENCH_DURATION:-5}
CONC=${BENCH_CONC:-64}
bash scripts/deps.sh bench >/dev/null
bash scripts/deps.sh test >/dev/null
WORK=$(mktemp -d)
PIDS=()
. tests/pg.sh
cleanup() {
  local rc=$?
  if [ $rc != 0 ]; then for f in "$WORK"/*.log "$WORK"/nginx-*/out.log "$WORK"/nginx-*/error.log; do
    [ -s "$f" ] && { echo "--- $f"; tail -5 "$f"; }; done >&2; fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  coai_pg_stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
coai_pg_start >/dev/null
DB=${COAI_PG_URL%/*}/coai_scale
psql "$COAI_PG_URL" -qc "CREATE DATABASE coai_scale"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 500); do curl -s -o /dev/null --max-time 1 "$1" && return 0; sleep 0.02; done; echo "scale: $1 never answered" >&2; return 1; }

gcc -O2 -o "$WORK/upstream" bench/gateway/upstream.c
UP=$(free_port)
"$WORK/upstream" "$UP" "$FIX/openai-chat-sse/openai-python_text-stop.sse" \
  "$FIX/openai-json/openai-python_chatcmpl_text-stop.json" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP/"

KEY=$(printf '%064d' 9)
start_instance() { # NAME PORT
  mkdir -p "$WORK/$1"
  CHATOPENAII_LISTEN=127.0.0.1:$2 CHATOPENAII_DATA_DIR=$WORK/$1 CHATOPENAII_DATABASE_URL=$DB \
    CHATOPENAII_INSTANCE_ID=$1 CHATOPENAII_MASTER_KEY=$KEY CHATOPENAII_LOG_LEVEL=warn \
    CHATOPENAII_RATE_AUTH=1000000 CHATOPENAII_RATE_API=1000000 CHATOPENAII_RATE_GENERATE=1000000 \
    CHATOPENAII_PROVIDER_BASE_URL=http://127.0.0.1:$UP/v1 CHATOPENAII_PROVIDER_API_KEY=sk-bench \
    CHATOPENAII_TITLES=off CHATOPENAII_TRUSTED_PROXIES=127.0.0.1 "$BIN" serve >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$2/healthz"
}
start_nginx() { # NAME PORT BACKEND_PORT...
  local name=$1 port=$2; shift 2
  local dir=$WORK/nginx-$name; mkdir -p "$dir"
  { echo "worker_processes 1; daemon off; master_process off; pid $dir/pid; error_log $dir/error.log warn;"
    echo "events { worker_connections 4096; }"
    echo "http { access_log off; client_body_temp_path $dir/b; proxy_temp_path $dir/p;"
    echo "  upstream app { $(for b in "$@"; do echo "server 127.0.0.1:$b;"; done) keepalive 128; }"
    echo "  server { listen 127.0.0.1:$port; keepalive_requests 1000000;"
    echo "    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\";"
    echo "      proxy_set_header Host \$http_host; proxy_set_header X-Forwarded-For \$remote_addr;"
    echo "      proxy_buffering off; proxy_read_timeout 1h; } } }"; } >"$dir/nginx.conf"
  /usr/sbin/nginx -c "$dir/nginx.conf" -p "$dir" >"$dir/out.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/healthz"
}

PA=$(free_port); PB=$(free_port); N1=$(free_port); N2=$(free_port)
start_instance scale-a "$PA"
H=(-H 'X-Requested-With: chatopenaii' -H 'Content-Type: application/json')
curl -fs -c "$WORK/jar" "${H[@]}" -d '{"email":"scale@example.com","password":"benchmark-pw"}' \
  "http://127.0.0.1:$PA/api/v1/auth/register" >/dev/null
COOKIE=$(awk '$6 == "coai_session" {print "coai_session=" $7}' "$WORK/jar")
: >"$WORK/chats"
for i in $(seq 1 "$(( CONC > 50 ? CONC : 50 ))"); do
  curl -fs -b "$WORK/jar" "${H[@]}" -d "{\"title\":\"chat $i\"}" "http://127.0.0.1:$PA/api/v1/chats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["chat"]["id"])' >>"$WORK/chats"
done
start_instance scale-b "$PB"
start_nginx one "$N1" "$PA"
start_nginx two "$N2" "$PA" "$PB"

rps() { wrk -t2 -c32 -d"${DUR}s" -H "Cookie: $COOKIE" "$1/api/v1/chats?limit=50" 2>&1 |
  awk '/Requests\/sec/ {print $2} /Non-2xx/ {print "non2xx"}' | tr '\n' ' '; }
msgs() { node bench/scale/stream_load.mjs "$1" "$COOKIE" "$WORK/chats" "$CONC" "$DUR"; }
echo "bench/scale: PostgreSQL, nginx in front, ${DUR}s per figure; this machine has $(nproc) cores"
L1=$(rps "http://127.0.0.1:$N1"); L2=$(rps "http://127.0.0.1:$N2")
S1=$(msgs "http://127.0.0.1:$N1"); S2=$(msgs "http://127.0.0.1:$N2")
case "$L1$L2" in *non2xx*) echo "bench/scale: non-2xx answers to GET /api/v1/chats" >&2; exit 1 ;; esac
read -r m1 t1 e1 <<<"$S1"; read -r m2 t2 e2 <<<"$S2"
[ "$e1" = 0 ] && [ "$e2" = 0 ] || echo "bench/scale: streaming errors: one instance $e1, two $e2" >&2
awk -v l1="$L1" -v l2="$L2" -v m1="$m1" -v t1="$t1" -v m2="$m2" -v t2="$t2" -v c="$CONC" 'BEGIN {
  printf "%-44s %12s %12s %8s\n", "figure", "1 instance", "2 instances", "ratio"
  printf "%-44s %12.0f %12.0f %8.2f\n", "GET /api/v1/chats?limit=50 (req/s)", l1, l2, l2 / l1
  printf "%-44s %12.1f %12.1f %8.2f\n", sprintf("%d concurrent streaming turns (messages/s)", c), m1 / t1, m2 / t2, (m2 / t2) / (m1 / t1)
}'
echo "(on one machine the instances share its cores: the ratio shows the cost of the shared store and of nginx's spreading, not added hardware)"
