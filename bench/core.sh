#!/usr/bin/env bash
# bench/core.sh BIN - the server-core rows of the performance budget, all
# measured in this one run (see bench/README.md):
#   start-up time (exec -> first 200 from /healthz), empty and 1 GB database;
#   idle RSS after start;
#   GET /api/v1/chats (signed in, 50 chats) against nginx serving the same
#   JSON bytes as a static file (and GET /healthz for information);
#   opening a 2,000-message chat (GET /api/v1/chats/{id}/messages), p50.
# With BENCH_RESULTS=FILE each row is appended to FILE as
#   figure<TAB>measured<TAB>target<TAB>PASS|FAIL   (bench/run.sh prints the table)
# Needs wrk, curl, nginx, sqlite3 (installed by scripts/deps.sh bench).
set -euo pipefail
BIN=${1:-build/server/chatopenaii}
cd "$(dirname "$0")/.."
{ command -v wrk >/dev/null && command -v sqlite3 >/dev/null && [ -x /usr/sbin/nginx ]; } ||
  bash scripts/deps.sh bench
PORT=${BENCH_PORT:-18181}
DATA=$(mktemp -d)
BIG_DATA=$(mktemp -d)
URL=http://127.0.0.1:$PORT
DUR=${BENCH_DURATION:-5s}
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA" "$BIG_DATA"; }
trap cleanup EXIT

gcc -O2 -o "$DATA/startup" bench/startup.c
# Start-up: exec -> first 200 from /healthz, measured by bench/startup.c
# (fork + exec, then connect every 100 us; no client process per attempt),
# best of 5 warm starts (the first start creates the schema).
# rate limits off: wrk would otherwise measure 429 answers
SERVER_ENV=(CHATOPENAII_RATE_API=0 CHATOPENAII_RATE_AUTH=0 CHATOPENAII_RATE_GENERATE=0
  CHATOPENAII_LISTEN=127.0.0.1:$PORT CHATOPENAII_DATA_DIR=$DATA CHATOPENAII_LOG_LEVEL=warn
  CHATOPENAII_MASTER_KEY=$(printf '%064d' 7))
# best of 5 warm starts (a first start on an empty directory creates the schema)
startup_best() {
  local dir=$1 best=999999999 us i
  for i in 1 2 3 4 5 6; do
    us=$(env "${SERVER_ENV[@]}" CHATOPENAII_DATA_DIR="$dir" "$DATA/startup" "$PORT" "$BIN" serve 2>>"$DATA/server.log")
    if [ "$i" -gt 1 ] && [ "$us" -lt "$best" ]; then best=$us; fi
  done
  echo "$best"
}
best=$(startup_best "$DATA")
start_server() { # env execs the server: PID is the server's own
  env "${SERVER_ENV[@]}" "$BIN" serve >/dev/null 2>>"$DATA/server.log" &
  PID=$!
  until curl -fs "$URL/healthz" >/dev/null 2>&1; do sleep 0.002; done
}
start_server
sleep 0.5
rss=$(awk "/VmRSS/ {print \$2}" /proc/$PID/status) || { echo "bench: the server (pid $PID) is gone:"; tail -5 "$DATA/server.log"; exit 1; }

H=(-H 'X-Requested-With: chatopenaii' -H 'Content-Type: application/json')
curl -fs -c "$DATA/jar" "${H[@]}" -d '{"email":"bench@example.com","password":"benchmark-pw"}' \
  "$URL/api/v1/auth/register" >/dev/null
for i in $(seq 1 50); do
  curl -fs -b "$DATA/jar" "${H[@]}" -d "{\"title\":\"chat $i\"}" "$URL/api/v1/chats" >/dev/null
done
COOKIE=$(awk '$6=="coai_session" {print $7}' "$DATA/jar")

# requests/s; a run with any non-2xx answer is an error, not a figure
rps() {
  local out
  out=$(wrk -t2 -c32 -d"$DUR" "$@")
  if grep -q 'Non-2xx' <<<"$out"; then echo "bench: non-2xx answers from $*:" >&2; echo "$out" >&2; exit 1; fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}
health=$(rps "$URL/healthz")
chats=$(rps -H "Cookie: coai_session=$COOKIE" "$URL/api/v1/chats?limit=50")
# the same list with every request a cache miss (a query parameter the list
# ignores makes each URI new): a session query and a store query on a
# worker, as when the list has just changed
cat >"$DATA/miss.lua" <<'LUA'
math.randomseed(os.time())
request = function() return wrk.format(nil, "/api/v1/chats?limit=50&n=" .. math.random(1, 2000000000)) end
LUA
chats_miss=$(rps -s "$DATA/miss.lua" -H "Cookie: coai_session=$COOKIE" "$URL/api/v1/chats?limit=50")
# The reference of the performance-budget issue: nginx (one worker, like the
# server's one loop) serving the very same JSON bytes as a static file.
NGPORT=$((PORT + 1))
mkdir -p "$DATA/nginx/api/v1"
curl -fs -b "$DATA/jar" "$URL/api/v1/chats?limit=50" >"$DATA/nginx/api/v1/chats.json"
cat >"$DATA/nginx.conf" <<NGINX
worker_processes 1; daemon off; master_process off; pid $DATA/nginx.pid; error_log $DATA/nginx.err warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $DATA/nb; proxy_temp_path $DATA/np;
  server { listen 127.0.0.1:$NGPORT; root $DATA/nginx; keepalive_requests 1000000;
    location = /api/v1/chats { default_type application/json; try_files /api/v1/chats.json =404; } } }
NGINX
/usr/sbin/nginx -c "$DATA/nginx.conf" -p "$DATA" >/dev/null 2>&1 &
NGPID=$!
until curl -fs -o /dev/null "http://127.0.0.1:$NGPORT/api/v1/chats"; do sleep 0.02; done
static=$(rps "http://127.0.0.1:$NGPORT/api/v1/chats?limit=50")
kill "$NGPID"; wait "$NGPID" 2>/dev/null || true
rss_after=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)

# A chat of 2,000 messages (one branch, ~600 characters each), written
# straight into the SQLite file beside the running server (WAL allows it),
# then opened through the API: GET /api/v1/chats/{id}/messages, one client.
BIG=$(curl -fs -b "$DATA/jar" "${H[@]}" -d '{"title":"2,000 messages"}' "$URL/api/v1/chats" |
  sed -n 's/.*"chat":{"id":"\([^"]*\)".*/\1/p')
DB=$(ls "$DATA"/*.db 2>/dev/null | head -n 1)
TEXT=$(printf 'Lorem ipsum dolor sit amet, **consectetur** adipiscing elit; sed do eiusmod `tempor` incididunt ut labore et dolore magna aliqua. %.0s' 1 2 3 4 5)
sqlite3 "$DB" ".timeout 5000" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO messages (id, chat_id, parent_id, role, content, model, status, created_at, updated_at)
SELECT printf('01a25000-0000-7000-8000-%012d', i), '$BIG',
       CASE WHEN i = 1 THEN NULL ELSE printf('01a25000-0000-7000-8000-%012d', i - 1) END,
       CASE WHEN i % 2 = 1 THEN 'user' ELSE 'assistant' END,
       json_array(json_object('type', 'text', 'text', 'Message ' || i || '. $TEXT')),
       'gpt-4o-mini', 'complete', 1790000000000 + i, 1790000000000 + i FROM n;
UPDATE chats SET current_leaf_id = '01a25000-0000-7000-8000-000000002000' WHERE id = '$BIG';"
open_out=$(wrk -t1 -c1 -d"$DUR" --latency -H "Cookie: coai_session=$COOKIE" "$URL/api/v1/chats/$BIG/messages")
if grep -q 'Non-2xx' <<<"$open_out"; then echo "bench: non-2xx answers opening the chat:" >&2; echo "$open_out" >&2; exit 1; fi
open_lat=$(awk '$1 == "50%" {print $2} $1 == "99%" {print $2}' <<<"$open_out" | paste -sd' ')
open_bytes=$(curl -fs -b "$DATA/jar" "$URL/api/v1/chats/$BIG/messages" | wc -c)
open_n=$(curl -fs -b "$DATA/jar" "$URL/api/v1/chats/$BIG/messages" | grep -o '"role":' | wc -l || true)
if [ "$open_n" != 2000 ]; then echo "bench: the long chat has $open_n messages, not 2000" >&2; exit 1; fi

kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
# Start-up on a 1 GB database: 1,000 chats, 240,000 messages of ~4 KB,
# written with sqlite3 into a schema the server created (~25 s here).
env "${SERVER_ENV[@]}" CHATOPENAII_DATA_DIR="$BIG_DATA" "$DATA/startup" "$PORT" "$BIN" serve >/dev/null 2>>"$DATA/server.log"
sqlite3 "$BIG_DATA/chatopenaii.db" ".timeout 5000" "PRAGMA synchronous=OFF; BEGIN;
INSERT INTO users (id, email, password_hash, created_at, updated_at)
  VALUES ('01a26000-0000-7000-8000-000000000000', 'big@example.com', 'x', 1790000000000, 1790000000000);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO chats (id, owner_id, title, created_at, updated_at)
SELECT printf('01a26000-0000-7000-8000-%012d', i), '01a26000-0000-7000-8000-000000000000', 'chat ' || i,
       1790000000000 + i, 1790000000000 + i FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 240000)
INSERT INTO messages (id, chat_id, parent_id, role, content, model, status, created_at, updated_at)
SELECT printf('01a27000-0000-7000-8000-%012d', i), printf('01a26000-0000-7000-8000-%012d', 1 + i % 1000),
       CASE WHEN i <= 1000 THEN NULL ELSE printf('01a27000-0000-7000-8000-%012d', i - 1000) END,
       CASE WHEN (i / 1000) % 2 = 0 THEN 'user' ELSE 'assistant' END,
       json_array(json_object('type', 'text', 'text', hex(randomblob(2000)))),
       'gpt-4o-mini', 'complete', 1790000000000 + i, 1790000000000 + i FROM n;
COMMIT; PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
big_bytes=$(stat -c %s "$BIG_DATA/chatopenaii.db")
big_best=$(startup_best "$BIG_DATA")

printf 'startup (exec -> first /healthz 200, bench/startup.c, best of 5): %.2f ms\n' "$(echo "$best/1000" | bc -l)"
printf 'idle RSS after start: %d KiB\n' "$rss"
printf 'RSS after the load runs: %d KiB\n' "$rss_after"
printf 'GET /healthz: %s req/s (wrk -t2 -c32 -d%s)\n' "$health" "$DUR"
printf 'GET /api/v1/chats?limit=50 (signed in, 50 chats): %s req/s\n' "$chats"
printf 'ratio chats/healthz: %.3f\n' "$(echo "$chats/$health" | bc -l)"
printf 'GET /api/v1/chats?limit=50, every request a cache miss (worker, session + store query): %s req/s\n' "$chats_miss"
printf 'nginx serving the same %s bytes as a static file: %s req/s; ratio chats/static: %.3f (target >= 0.5)\n' \
  "$(wc -c <"$DATA/nginx/api/v1/chats.json")" "$static" "$(echo "$chats/$static" | bc -l)"
printf 'open a 2,000-message chat (GET /api/v1/chats/{id}/messages, %s messages, %s bytes, 1 client): p50 p99 = %s\n' \
  "$open_n" "$open_bytes" "$open_lat"
printf 'startup with a %d MB database (1,000 chats, 240,000 messages): %.2f ms\n' "$((big_bytes / 1000000))" "$(echo "$big_best/1000" | bc -l)"

# the rows of the performance budget (bench/run.sh prints them as a table)
row() { # figure measured target pass(1/0)
  local verdict=FAIL
  [ "$4" = 1 ] && verdict=PASS
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$verdict" >>"${BENCH_RESULTS:-/dev/null}"
}
le() { [ "$(echo "$1 <= $2" | bc -l)" = 1 ] && echo 1 || echo 0; }
ms() { echo "$1" | awk '/ms$/ {sub(/ms/, ""); print; next} /us$/ {sub(/us/, ""); print $1 / 1000; next} /s$/ {sub(/s/, ""); print $1 * 1000}'; }
rss_mb=$(echo "$rss/1024" | bc -l)
row "idle RSS after start" "$(printf '%.1f MB' "$rss_mb")" "≤ 8 MB" "$(le "$rss_mb" 8)"
row "start to first accepted request, empty database" "$(printf '%.1f ms' "$(echo "$best/1000" | bc -l)")" "≤ 20 ms" "$(le "$best" 20000)"
row "start to first accepted request, $((big_bytes / 1000000)) MB database" "$(printf '%.1f ms' "$(echo "$big_best/1000" | bc -l)")" "≤ 100 ms" "$(le "$big_best" 100000)"
ratio=$(echo "$chats/$static" | bc -l)
row "GET /api/v1/chats (50 chats) vs nginx static, req/s" "$(printf '%.2fx (%.0f vs %.0f)' "$ratio" "$chats" "$static")" "≥ 0.5x" "$(le 0.5 "$ratio")"
p50=$(ms "${open_lat%% *}")
row "open a 2,000-message chat: server p50" "$(printf '%.1f ms' "$p50")" "≤ 20 ms" "$(le "$p50" 20)"
