#!/usr/bin/env bash
# bench/gateway/run.sh [BIN] - what a gateway adds, measured in one run:
# the same load generator (load.c) sends the same chat completion request
#   direct       to the fake provider (upstream.c, recorded answers),
#   chatopenaii  to ChatOpenAII's /v1/chat/completions (BIN), relaying to it,
#   portkey      to the Portkey AI gateway from npm (bench/gateway/portkey/),
#                relaying to it,
#   nginx        to nginx as a plain reverse proxy (keep-alive upstream, no
#                buffering; no auth, limits or accounting): a reference for
#                what any proxy costs on this machine,
# streaming and not, at concurrency 1, 64 and 512, in two passes: the
# provider answering at once (every cell bound by this machine's CPU), then
# holding each answer 20 ms like a real provider's time to first token
# (throughput bound by latency, as in front of a real provider). For each
# pass it prints added time to first byte / last byte (p50, p99) and
# throughput as ratios to direct, each target's CPU per request, and the
# targets of the gateway issue with PASS/MISS next to what nginx reaches on
# the same cell (a target nginx misses too is this machine's limit, not the
# gateway's); then both gateways' RSS.
#
# Knobs (environment): BENCH_WARMUP (s, default 1) and BENCH_DURATION (s,
# default 3) per cell; BENCH_CONC (default "1 64 512"); BENCH_DELAYS (ms the
# provider holds each answer, one pass each, default "0 20";
# BENCH_UPSTREAM_DELAY_MS=N alone means BENCH_DELAYS=N); BENCH_PORT_BASE
# (default 19100: upstream, +1 ChatOpenAII, +2 Portkey, +3 nginx);
# BENCH_KEEP=1 keeps the work directory (logs, raw results).
#
# Everything runs on this machine's cores: load generator, upstream and
# gateway compete for them, so with the instant provider a gateway's
# throughput ratio is a measure of its CPU cost per request next to the
# client's and upstream's, not of a network bottleneck (the CPU column shows
# it directly).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${1:-build/server/chatopenaii}
[ -x "$BIN" ] || make build
FIX=${FIXTURES:-$ROOT/../shared/fixtures}
SSE=$FIX/openai-chat-sse/openai-python_text-stop.sse
JSON=$FIX/openai-json/openai-python_chatcmpl_text-stop.json
[ -f "$SSE" ] && [ -f "$JSON" ] || { echo "bench/gateway: fixtures not found under $FIX" >&2; exit 1; }
WARM=${BENCH_WARMUP:-1}
DUR=${BENCH_DURATION:-3}
CONCS=${BENCH_CONC:-1 64 512}
PB=${BENCH_PORT_BASE:-19100}
DELAYS=${BENCH_DELAYS:-${BENCH_UPSTREAM_DELAY_MS:-0 20}}
UP_PORT=$PB COAI_PORT=$((PB + 1)) PK_PORT=$((PB + 2)) NG_PORT=$((PB + 3))

# tools: gcc, pkg-config, libcurl headers (the app's build deps), curl, node + npm
bash scripts/deps.sh bench >/dev/null
PK_DIR=bench/gateway/portkey
if [ ! -f "$PK_DIR/node_modules/.package-lock.json" ] ||
   [ "$PK_DIR/package-lock.json" -nt "$PK_DIR/node_modules/.package-lock.json" ]; then
  echo "bench/gateway: installing Portkey (npm ci in $PK_DIR)"
  (cd "$PK_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
(cd "$PK_DIR" && node fix-hono.mjs >/dev/null) # idempotent; fails loudly if the fix cannot apply

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

gcc -O2 -o "$WORK/upstream" bench/gateway/upstream.c
gcc -O2 -o "$WORK/load" bench/gateway/load.c $(pkg-config --cflags --libs libcurl)

wait_http() { # URL: until something answers (any status)
  for _ in $(seq 1 500); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.02
  done
  echo "bench/gateway: $1 never answered" >&2; return 1
}

# the fake provider
"$WORK/upstream" "$UP_PORT" "$SSE" "$JSON" 0 >"$WORK/upstream.log" 2>&1 &
UP_PID=$!; PIDS+=("$UP_PID")
wait_http "http://127.0.0.1:$UP_PORT/"

# ChatOpenAII, limits off, relaying to the fake provider with the server key
mkdir -p "$WORK/data"
CHATOPENAII_LISTEN=127.0.0.1:$COAI_PORT CHATOPENAII_DATA_DIR=$WORK/data CHATOPENAII_LOG_LEVEL=warn \
  CHATOPENAII_MASTER_KEY=$(printf '%064d' 7) CHATOPENAII_GATEWAY_RPM=0 CHATOPENAII_GATEWAY_TPM=0 \
  CHATOPENAII_PROVIDER_BASE_URL=http://127.0.0.1:$UP_PORT/v1 CHATOPENAII_PROVIDER_API_KEY=sk-bench \
  CHATOPENAII_TITLES=off "$BIN" serve >"$WORK/chatopenaii.log" 2>&1 &
COAI_PID=$!; PIDS+=("$COAI_PID")
wait_http "http://127.0.0.1:$COAI_PORT/healthz"
H=(-H 'X-Requested-With: chatopenaii' -H 'Content-Type: application/json')
curl -fs -c "$WORK/jar" "${H[@]}" -d '{"email":"bench@example.com","password":"benchmark-pw"}' \
  "http://127.0.0.1:$COAI_PORT/api/v1/auth/register" >/dev/null
TOKEN=$(curl -fs -b "$WORK/jar" "${H[@]}" -d '{"name":"bench"}' "http://127.0.0.1:$COAI_PORT/api/v1/tokens" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).secret))')

# Portkey, headless, on Node
(cd "$PK_DIR" && exec node node_modules/@portkey-ai/gateway/build/start-server.js --port="$PK_PORT" --headless) \
  >"$WORK/portkey.log" 2>&1 &
PK_PID=$!; PIDS+=("$PK_PID")
wait_http "http://127.0.0.1:$PK_PORT/"

# nginx, one worker (like ChatOpenAII's one event loop), as a plain proxy
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes 1;
master_process off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  upstream provider { server 127.0.0.1:$UP_PORT; keepalive 1024; }
  server {
    listen 127.0.0.1:$NG_PORT backlog=4096;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://provider;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
/usr/sbin/nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >"$WORK/nginx.log" 2>&1 &
NG_PID=$!; PIDS+=("$NG_PID")
wait_http "http://127.0.0.1:$NG_PORT/"

url_direct=http://127.0.0.1:$UP_PORT/v1/chat/completions
url_nginx=http://127.0.0.1:$NG_PORT/v1/chat/completions
url_chatopenaii=http://127.0.0.1:$COAI_PORT/v1/chat/completions
url_portkey=http://127.0.0.1:$PK_PORT/v1/chat/completions
hdr_direct=("Authorization: Bearer sk-bench")
hdr_nginx=("Authorization: Bearer sk-bench")
hdr_chatopenaii=("Authorization: Bearer $TOKEN")
hdr_portkey=("Authorization: Bearer sk-bench" "x-portkey-provider: openai"
             "x-portkey-custom-host: http://127.0.0.1:$UP_PORT/v1")
pid_direct=$UP_PID pid_chatopenaii=$COAI_PID pid_portkey=$PK_PID pid_nginx=$NG_PID
MSG='"model":"gpt-4o","messages":[{"role":"user","content":"What is the weather in San Francisco?"}]'
body_stream="{$MSG,\"stream\":true}"
body_nonstream="{$MSG}"

# every target answers both modes in full before anything is timed
for t in direct nginx chatopenaii portkey; do
  for mode in stream nonstream; do
    u=url_$t b=body_$mode h="hdr_$t[@]"
    # a first request can be slow (Node's JIT on a busy machine): up to 3 tries of 1 s
    for try in 1 2 3; do
      out=$("$WORK/load" "${!u}" 1 0 1 "${!b}" "${!h}")
      set -- $out
      [ "$1" -eq 0 ] || [ "$2" -ne 0 ] || break
    done
    if [ "$1" -eq 0 ] || [ "$2" -ne 0 ]; then
      echo "bench/gateway: $t ($mode) does not answer correctly: $out" >&2
      echo "--- last lines of its log:" >&2; tail -5 "$WORK/$t.log" >&2 2>/dev/null || true
      exit 1
    fi
  done
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
busy() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; } # all CPUs, all processes
# CPU seconds of this shell's finished children (the load generators)
children() { awk 'NR == 2 {gsub(/[ms]/, " "); print ($1 * 60 + $2 + $3 * 60 + $4)}' "$1"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
HZ=$(getconf CLK_TCK)
RES=$WORK/results PASSES=$WORK/passes
: >"$RES"; : >"$PASSES"
n_cells=$(( $(wc -w <<<"$DELAYS") * 2 * $(wc -w <<<"$CONCS") * 4 ))
echo "bench/gateway: $n_cells cells of ${WARM}s warm-up + ${DUR}s measured each (about $(( n_cells * (WARM + DUR) ))s); load average $(loadavg), $(nproc) CPUs"
for delay in $DELAYS; do
  curl -fs -X POST "http://127.0.0.1:$UP_PORT/bench/delay/$delay" >/dev/null
  la0=$(loadavg)
  ours0=$(( $(ticks "$UP_PID") + $(ticks "$COAI_PID") + $(ticks "$PK_PID") + $(ticks "$NG_PID") ))
  times >"$WORK/times0"
  busy0=$(busy) wall0=$(date +%s%N)
  for mode in stream nonstream; do
    for c in $CONCS; do
      for t in direct nginx chatopenaii portkey; do
        u=url_$t b=body_$mode h="hdr_$t[@]" p=pid_$t
        t0=$(ticks "${!p}")
        out=$("$WORK/load" "${!u}" "$c" "$WARM" "$DUR" "${!b}" "${!h}" 2>>"$WORK/load.log")
        t1=$(ticks "${!p}")
        # delay mode c target n errors rps ttfb50 ttfb99 ttlb50 ttlb99 bytes total cpu_ticks
        echo "$delay $mode $c $t $out $((t1 - t0))" >>"$RES"
      done
    done
  done
  ours1=$(( $(ticks "$UP_PID") + $(ticks "$COAI_PID") + $(ticks "$PK_PID") + $(ticks "$NG_PID") ))
  times >"$WORK/times1"
  busy1=$(busy) wall1=$(date +%s%N) kids0=$(children "$WORK/times0") kids1=$(children "$WORK/times1")
  # CPU that other processes of this machine took while the cells ran: noise
  others=$(awk -v b=$((busy1 - busy0)) -v o=$((ours1 - ours0)) -v k0="$kids0" -v k1="$kids1" \
    -v hz="$HZ" -v w=$(( (wall1 - wall0) / 1000000 )) -v n="$(nproc)" \
    'BEGIN {x = (b - o - (k1 - k0) * hz) / hz / (w / 1000 * n); printf "%.0f", (x < 0 ? 0 : x) * 100}')
  # delay others% load-average-before (3 figures) load-average-after (3 figures)
  echo "$delay $others $la0 $(loadavg)" >>"$PASSES"
done
rss() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
COAI_RSS=$(rss "$COAI_PID" VmRSS) COAI_HWM=$(rss "$COAI_PID" VmHWM)
PK_RSS=$(rss "$PK_PID" VmRSS) PK_HWM=$(rss "$PK_PID" VmHWM)

awk -v hz="$HZ" -v coai_rss="$COAI_RSS" -v coai_hwm="$COAI_HWM" -v pk_rss="$PK_RSS" \
    -v pk_hwm="$PK_HWM" -v warm="$WARM" -v dur="$DUR" -v ncpu="$(nproc)" '
function ms(us) { return sprintf("%.3f", us / 1000) }
function add(us) { return sprintf("%+.3f", us / 1000) }
function verdict(ok) { return ok ? "PASS" : "MISS" }
# why a miss is a miss: nginx, a plain proxy doing far less, on the same cell
function why(ok, nok) { return ok ? "" : (nok ? "  <- ours: nginx passes" : "  <- nginx misses too: this machine") }
FILENAME == ARGV[1] { others[$1] = $2; la0[$1] = $3 " " $4 " " $5; la1[$1] = $6 " " $7 " " $8; next }
{
  k = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4
  n[k] = $5; err[k] = $6; rps[k] = $7; f50[k] = $8; f99[k] = $9; l50[k] = $10; l99[k] = $11
  bytes[k] = $12; total[k] = $13; cpu[k] = $14
  if (!($1 in seend)) { seend[$1] = 1; delays[++nd] = $1 }
  if (!($2 in seenm)) { seenm[$2] = 1; modes[++nm] = $2 }
  if (!($3 in seenc)) { seenc[$3] = 1; concs[++nc] = $3 }
}
# added TTFB of target t over direct: p = 50 or 99
function addttfb(dl, m, c, t, p,    a, d) {
  a = dl SUBSEP m SUBSEP c SUBSEP t; d = dl SUBSEP m SUBSEP c SUBSEP "direct"
  return p == 50 ? f50[a] - f50[d] : f99[a] - f99[d]
}
function ratio(dl, m, c, t,    a, d) {
  a = dl SUBSEP m SUBSEP c SUBSEP t; d = dl SUBSEP m SUBSEP c SUBSEP "direct"
  return rps[d] ? rps[a] / rps[d] : 0
}
function has(dl, m, c, t) { return (dl SUBSEP m SUBSEP c SUBSEP t) in n }
END {
  printf "\nGateway overhead: same client, same request, same fake provider (recorded answers);\n"
  printf "%ss warm-up + %ss measured per cell. Times in ms; gateway rows show what they add to direct.\n", warm, dur
  printf "TTFB: first byte of the body (the first event of a stream); TTLB: response complete.\n"
  printf "CPU/req: CPU time of the target process (upstream for direct, the gateway otherwise) per request.\n"
  for (di = 1; di <= nd; di++) {
    dl = delays[di]
    printf "\n######## provider %s ########\n", (dl > 0 ? "holding each answer " dl " ms (latency-bound, like a real provider)" : "answering at once (every cell CPU-bound on this machine)")
    printf "load average before/after: %s / %s (%d CPUs); other processes took %s%% of the CPU%s\n",
           la0[dl], la1[dl], ncpu, others[dl], (others[dl] > 10 ? ": figures disturbed, run again on a quiet machine" : "")
    for (mi = 1; mi <= nm; mi++) {
      m = modes[mi]
      d = dl SUBSEP m SUBSEP concs[1] SUBSEP "direct"
      printf "\n== %s (%s B per response), provider delay %s ms ==\n", m == "stream" ? "streaming, SSE" : "non-streaming, JSON", bytes[d], dl
      printf "%5s  %-12s %9s %9s %10s %10s %10s %10s %7s %8s\n", "conc", "target", "req/s", "x direct",
             "TTFB p50", "TTFB p99", "TTLB p50", "TTLB p99", "errors", "CPU/req"
      for (ci = 1; ci <= nc; ci++) {
        c = concs[ci]; d = dl SUBSEP m SUBSEP c SUBSEP "direct"
        split("direct nginx chatopenaii portkey", ts, " ")
        for (ti = 1; ti <= 4; ti++) {
          t = ts[ti]; k = dl SUBSEP m SUBSEP c SUBSEP t
          cpureq = total[k] ? sprintf("%.0fus", cpu[k] / hz * 1e6 / total[k]) : "-"
          if (!n[k])
            printf "%5s  %-12s %9s %9s %10s %10s %10s %10s %7d %8s\n", t == "direct" ? c : "", t, 0, "-",
                   "-", "-", "-", "-", err[k], cpureq
          else if (t == "direct")
            printf "%5s  %-12s %9.0f %9s %10s %10s %10s %10s %7d %8s\n", c, t, rps[k], "1.000",
                   ms(f50[k]), ms(f99[k]), ms(l50[k]), ms(l99[k]), err[k], cpureq
          else
            printf "%5s  %-12s %9.0f %9.3f %10s %10s %10s %10s %7d %8s\n", "", t, rps[k],
                   rps[d] ? rps[k] / rps[d] : 0, add(f50[k] - f50[d]), add(f99[k] - f99[d]),
                   add(l50[k] - l50[d]), add(l99[k] - l99[d]), err[k], cpureq
        }
      }
    }
    printf "\n== targets (gateway issue) for chatopenaii, provider delay %s ms; (nginx as a plain proxy) ==\n", dl
    for (mi = 1; mi <= nm; mi++) {
      m = modes[mi]
      if (has(dl, m, 1, "chatopenaii")) {
        v = addttfb(dl, m, 1, "chatopenaii", 99); w = addttfb(dl, m, 1, "nginx", 99)
        printf "%-4s %-9s c=1    added TTFB p99 <= 0.2 ms: %+8.3f ms (nginx %+.3f)%s\n", verdict(v <= 200), m,
               v / 1000, w / 1000, why(v <= 200, w <= 200)
      }
      if (has(dl, m, 64, "chatopenaii")) {
        v = addttfb(dl, m, 64, "chatopenaii", 50); w = addttfb(dl, m, 64, "nginx", 50)
        printf "%-4s %-9s c=64   added TTFB p50 <= 0.3 ms: %+8.3f ms (nginx %+.3f)%s\n", verdict(v <= 300), m,
               v / 1000, w / 1000, why(v <= 300, w <= 300)
        v = addttfb(dl, m, 64, "chatopenaii", 99); w = addttfb(dl, m, 64, "nginx", 99)
        printf "%-4s %-9s c=64   added TTFB p99 <= 2 ms:   %+8.3f ms (nginx %+.3f)%s\n", verdict(v <= 2000), m,
               v / 1000, w / 1000, why(v <= 2000, w <= 2000)
      }
      # at c=1 throughput is 1/latency: judged by the TTFB target above
      for (ci = 1; ci <= nc; ci++) {
        c = concs[ci]
        if (c == 1 || !has(dl, m, c, "chatopenaii")) continue
        a = dl SUBSEP m SUBSEP c SUBSEP "chatopenaii"; g = dl SUBSEP m SUBSEP c SUBSEP "nginx"
        r = ratio(dl, m, c, "chatopenaii"); rn = ratio(dl, m, c, "nginx")
        printf "%-4s %-9s c=%-4s throughput >= 0.90 x direct: %.3f (nginx %.3f)%s\n", verdict(r >= 0.9 && err[a] == 0), m, c,
               r, rn, why(r >= 0.9 && err[a] == 0, rn >= 0.9 && err[g] == 0)
      }
    }
    printf "For reference, Portkey at c=1: "
    for (mi = 1; mi <= nm; mi++) {
      m = modes[mi]
      if (has(dl, m, 1, "portkey"))
        printf "%s added TTFB p50 %+.3f ms, p99 %+.3f ms. ", m, addttfb(dl, m, 1, "portkey", 50) / 1000, addttfb(dl, m, 1, "portkey", 99) / 1000
    }
    printf "\n"
  }
  printf "\n== memory after the runs ==\n"
  printf "%-12s %12s %12s\n", "", "VmRSS KiB", "VmHWM KiB"
  printf "%-12s %12d %12d\n", "chatopenaii", coai_rss, coai_hwm
  printf "%-12s %12d %12d\n", "portkey", pk_rss, pk_hwm
  printf "%-12s %12.3f %12.3f\n", "ratio", coai_rss / pk_rss, coai_hwm / pk_hwm
  r = coai_rss / pk_rss
  printf "%-4s RSS < 0.1 x Portkey: %.3f (%d KiB vs %d KiB)\n", verdict(r < 0.1), r, coai_rss, pk_rss
}' "$PASSES" "$RES"
if [ -s "$WORK/load.log" ]; then echo; echo "load generator messages:"; sort "$WORK/load.log" | uniq -c | head; fi
