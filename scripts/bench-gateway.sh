#!/usr/bin/env bash
# The gateway beside nginx, HAProxy and a bare pingora proxy: throughput, tail latency, and what
# each proxy's own processes spend per request (CPU, context switches, peak memory).
#
# All four terminate TLS on loopback with one self-signed certificate and proxy to one upstream
# (an nginx returning a small JSON body, keep-alive to it), each with PROXY_THREADS workers, in
# four scenarios:
#   (a) TLS HTTP/1.1 keep-alive (wrk)
#   (b) TLS HTTP/2 (h2load)
#   (c) a new TLS connection per request: full handshakes, no resumption (parallel
#       `openssl s_time -new`, each connection one GET and close), the cost of a handshake
#   (d) a rate-limited route, the limit enforced by the proxy itself (nginx limit_req, an HAProxy
#       stick table, the gateway's ARAGORA_RATE_LIMIT_ROUTES) and one client far over it (wrk)
# The machine is shared and noisy: RUNS rounds alternate the proxies (nginx, haproxy, pingora,
# aragora, then again), each table shows the median of every metric, and the proxy's CPU per
# request (utime+stime from /proc) is the number to compare; requests per second move with
# whatever else runs here.
#
#   bash scripts/bench-gateway.sh                 # RUNS=5 DURATION=8, about 11 minutes
#   RUNS=3 DURATION=5 bash scripts/bench-gateway.sh
#   ARAGORA_BIN=... BARE_PINGORA_BIN=... RUNS=1 DURATION=1 bash scripts/bench-gateway.sh
#     # given binaries skip the release build; the last line is the smoke run of tests/e2e/bench_smoke.rs
#
# Prints Markdown tables for BENCHMARKS.md on stdout, progress on stderr.
set -euo pipefail

# Binaries given relative to the caller's directory still work after the cd below.
ARAGORA_BIN="${ARAGORA_BIN:+$(realpath "$ARAGORA_BIN")}"
BARE_PINGORA_BIN="${BARE_PINGORA_BIN:+$(realpath "$BARE_PINGORA_BIN")}"
cd "$(dirname "$0")/.."

RUNS="${RUNS:-5}"
DURATION="${DURATION:-8}"
CONNECTIONS="${CONNECTIONS:-64}"
H2_STREAMS="${H2_STREAMS:-10}"
PROXY_THREADS="${PROXY_THREADS:-2}"
# Bare pingora's runtime model: `percore` (the gateway's: one single-threaded runtime per
# thread, each on its own SO_REUSEPORT socket) or `stealing` (pingora's default work-stealing
# runtime), so the table can show what the runtime model alone is worth.
BARE_PINGORA_MODE="${BARE_PINGORA_MODE:-percore}"
NEW_CONN_CLIENTS="${NEW_CONN_CLIENTS:-4}"
# (d): the limited route's average rate; the gateway's route limits allow a burst of one
# minute's worth, so nginx gets the same burst (HAProxy's stick table counts a rate, no burst).
LIMIT_PER_SEC="${LIMIT_PER_SEC:-10}"
LIMIT_BURST=$((LIMIT_PER_SEC * 60))
LIMITED_PATH=/api/debates

command_line="ARAGORA_GATEWAY_H1_ENGINE=${ARAGORA_GATEWAY_H1_ENGINE:-lean} ARAGORA_GATEWAY_H2_ENGINE=${ARAGORA_GATEWAY_H2_ENGINE:-lean} RUNS=$RUNS DURATION=$DURATION CONNECTIONS=$CONNECTIONS H2_STREAMS=$H2_STREAMS PROXY_THREADS=$PROXY_THREADS NEW_CONN_CLIENTS=$NEW_CONN_CLIENTS LIMIT_PER_SEC=$LIMIT_PER_SEC bash scripts/bench-gateway.sh"
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
if [ "${#need[@]}" -gt 0 ]; then
  echo "bench: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"
if [ -z "$ARAGORA_BIN" ]; then
  cargo build --release --locked -q
  ARAGORA_BIN=$PWD/target/release/aragora
fi
if [ -z "$BARE_PINGORA_BIN" ]; then
  cargo build --release --locked -q -p aragora-gateway --example bare_pingora
  BARE_PINGORA_BIN=$PWD/target/release/examples/bare_pingora
fi

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
fail() { echo "bench: $*" >&2; tail -n 20 "$work/gateway.log" "$work/bare.log" >&2 || true; exit 1; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); GW=$(free_port); GW_HTTP=$(free_port); GW_ADMIN=$(free_port)
NG=$(free_port); NG_STATUS=$(free_port); HA=$(free_port); HA_STATS=$(free_port); PB=$(free_port)

# One certificate for every proxy.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/haproxy.pem"

# The upstream all four proxy to: a fixed small JSON answer on every path.
cat > "$work/upstream.conf" <<EOF
worker_processes 1; daemon off; pid $work/upstream.pid; error_log $work/upstream.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '{"status":"ok"}'; } } }
EOF
nginx -c "$work/upstream.conf" -p "$work" & pids+=($!)

# nginx as a TLS reverse proxy; stub_status on a plain port counts the connections it accepted.
cat > "$work/nginx.conf" <<EOF
worker_processes $PROXY_THREADS; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  limit_req_zone \$binary_remote_addr zone=bench:1m rate=${LIMIT_PER_SEC}r/s;
  limit_req_status 429;
  upstream engine { server 127.0.0.1:$UP; keepalive 128; }
  server { listen 127.0.0.1:$NG ssl http2; ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location / { proxy_pass http://engine; }
    location = $LIMITED_PATH { limit_req zone=bench burst=$LIMIT_BURST nodelay; proxy_pass http://engine; } }
  server { listen 127.0.0.1:$NG_STATUS; location / { stub_status; } } }
EOF
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!); NG_PID=$!

# HAProxy; its stats page counts the connections the TLS frontend accepted.
cat > "$work/haproxy.cfg" <<EOF
global
  nbthread $PROXY_THREADS
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend tls
  bind 127.0.0.1:$HA ssl crt $work/haproxy.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2
  stick-table type ip size 100k expire 30s store http_req_rate(1s)
  acl limited path $LIMITED_PATH
  http-request track-sc0 src if limited
  http-request deny deny_status 429 if limited { sc_http_req_rate(0) gt $LIMIT_PER_SEC }
  default_backend engine
frontend stats
  bind 127.0.0.1:$HA_STATS
  stats enable
  stats uri /stats
backend engine
  http-reuse always
  server e1 127.0.0.1:$UP
EOF
haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!); HA_PID=$!

# Bare pingora (gateway/examples/bare_pingora.rs): what pingora costs before any gateway feature.
"$BARE_PINGORA_BIN" "127.0.0.1:$PB" "127.0.0.1:$UP" "$work/cert.pem" "$work/key.pem" "$PROXY_THREADS" \
  "$BARE_PINGORA_MODE" >/dev/null 2>"$work/bare.log" & pids+=($!); PB_PID=$!

# The aragora gateway, features on (metrics, access log to a file, request ids, trace context).
# One load generator is one client address: the default rate limit runs but is set too high to
# refuse; the limited route of (d) has its own.
ARAGORA_GATEWAY_HOST=127.0.0.1 ARAGORA_SLOW_START_SECS=0 ARAGORA_HEALTH_PATH=/ ARAGORA_RATE_LIMIT=1000000000 \
  ARAGORA_RATE_LIMIT_ROUTES="GET $LIMITED_PATH=$LIMIT_BURST" ARAGORA_GATEWAY_THREADS="$PROXY_THREADS" \
  ARAGORA_GATEWAY_DRAIN_DELAY=0 ARAGORA_LOG_LEVEL=info \
  "$ARAGORA_BIN" gateway --upstream "127.0.0.1:$UP" --https-port "$GW" --http-port "$GW_HTTP" \
  --admin-port "$GW_ADMIN" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
  >/dev/null 2>"$work/gateway.log" & pids+=($!); GW_PID=$!

# s_time sends `GET <path> HTTP/1.0` and nothing else; without a Host header pingora's request
# upstream is refused (400), so the path carries the rest of an HTTP/1.1 request with
# `Connection: close`, as a browser's single request would be (the trailing " HTTP/1.0" lands in
# a header of its own).
NEW_CONN_REQUEST=$'/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Bench:'

proxies=(nginx haproxy pingora aragora)
declare -A port_of=([nginx]=$NG [haproxy]=$HA [pingora]=$PB [aragora]=$GW)
declare -A pid_of=([nginx]=$NG_PID [haproxy]=$HA_PID [pingora]=$PB_PID [aragora]=$GW_PID)
declare -A label_of=([nginx]=nginx [haproxy]=haproxy [pingora]="pingora (bare)" [aragora]=aragora)

for name in "${proxies[@]}"; do
  ok=""
  for _ in $(seq 1 200); do
    if [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:${port_of[$name]}/" 2>/dev/null)" = 200 ]; then ok=1; break; fi
    kill -0 "${pid_of[$name]}" 2>/dev/null || fail "$name exited at start"
    sleep 0.1
  done
  [ -n "$ok" ] || fail "$name on port ${port_of[$name]} never answered 200"
  # (c)'s request must be proxied, not refused.
  status=$(printf 'GET %s HTTP/1.0\r\n\r\n' "$NEW_CONN_REQUEST" | timeout 10 openssl s_client -quiet -connect "127.0.0.1:${port_of[$name]}" 2>/dev/null | head -n 1 || true)
  case $status in
    "HTTP/1."[01]" 200"*) ;;
    *) fail "$name answered (c)'s request with: $status" ;;
  esac
done

# A proxy's processes: the one started and its descendants (nginx's workers).
proc_tree() {
  local p
  for p in "$@"; do
    echo "$p"
    # shellcheck disable=SC2046 # one pid per word
    proc_tree $(ps -o pid= --ppid "$p")
  done
}

# "cpu_ticks context_switches peak_kib" summed over PIDS: utime+stime of each process (all its
# threads, dead ones too), voluntary+nonvoluntary switches of each live thread, VmHWM.
usage() {
  local p
  for p in "$@"; do
    sed 's/.*) //' "/proc/$p/stat" | awk '{print "t", $12 + $13}'
    cat "/proc/$p"/task/*/status | awk '/^(non)?voluntary_ctxt_switches:/ {print "c", $2}'
    awk '/^VmHWM:/ {print "m", $2}' "/proc/$p/status"
  done 2>/dev/null | awk '{s[$1] += $2} END {printf "%d %d %d", s["t"], s["c"], s["m"]}'
}

# Connections the proxy's TLS listener accepted so far (for (d); bare pingora has no counter).
accepted() {
  case $1 in
    # Every scrape of stub_status is a connection too; the caller subtracts it.
    nginx) curl -s "http://127.0.0.1:$NG_STATUS/" | awk 'NR == 3 {print $1}' ;;
    haproxy) curl -s "http://127.0.0.1:$HA_STATS/stats;csv" | awk -F, '
      NR == 1 {for (i = 1; i <= NF; i++) if ($i == "conn_tot") c = i}
      $1 == "tls" && $2 == "FRONTEND" {print $c}' ;;
    aragora) curl -s "http://127.0.0.1:$GW_ADMIN/metrics" | awk '
      /^aragora_tls_handshakes_total[{ ]/ {n += $NF} END {printf "%d", n}' ;;
    *) echo 0 ;;
  esac
}

limit=$((DURATION * 3 + 15)) # no load tool may hang the run

# Each load prints "requests req_per_s latency_ms [non_2xx]": requests completed by the tool's
# own count, and p99 latency (for (c), the mean time per connection: s_time reports no tail).
load_h1() { # $1 port, $2 path
  { timeout "$limit" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "https://127.0.0.1:$1$2" 2>/dev/null || true; } | awk '
    /requests in/ {n = $1}
    /Requests\/sec/ {rps = $2}
    /Non-2xx or 3xx responses/ {bad = $NF}
    /^ +99%/ {v = $2; if (v ~ /ms$/) {sub("ms", "", v)} else if (v ~ /us$/) {sub("us", "", v); v = v / 1000} else if (v ~ /s$/) {sub("s", "", v); v = v * 1000}; p99 = v}
    END {printf "%d %.0f %.2f %d", n, rps, p99, bad}'
}
load_h2() { # $1 port; p99 from h2load's per-request log (it reports only mean and sd)
  local log="$work/h2.log"
  rm -f "$log"
  { timeout "$limit" h2load -c"$CONNECTIONS" -m"$H2_STREAMS" -D"$DURATION" --log-file="$log" "https://127.0.0.1:$1/" 2>/dev/null || true; } | awk '
    /^finished in/ {gsub(",", "", $4); rps = $4}
    /^requests:/ {for (i = 2; i < NF; i++) if ($(i + 1) ~ /^done/) n = $i}
    END {printf "%d %.0f ", n, rps}'
  { [ -s "$log" ] && awk '{print $3 / 1000}' "$log"; } | sort -g | awk '{a[NR] = $1} END {i = int(NR * 0.99); if (i < 1) i = 1; printf "%.2f", a[i]}'
}
load_new() { # $1 port; NEW_CONN_CLIENTS sequential clients, each connection a full handshake
  local i start end clients=()
  start=$(date +%s%N)
  for i in $(seq 1 "$NEW_CONN_CLIENTS"); do
    timeout "$limit" openssl s_time -connect "127.0.0.1:$1" -new -time "$DURATION" -www "$NEW_CONN_REQUEST" >"$work/s_time.$i" 2>&1 &
    clients+=($!)
  done
  wait "${clients[@]}" || true
  end=$(date +%s%N)
  cat "$work"/s_time.* | awk -v ns=$((end - start)) -v c="$NEW_CONN_CLIENTS" '
    / connections in .* real seconds/ {n += $1}
    END {s = ns / 1e9; if (n > 0) printf "%d %.0f %.2f", n, n / s, c * s * 1000 / n; else print "0 0 0"}'
}

# One run of one scenario against one proxy; appends "req_per_s latency_ms cpu_us_per_req
# ctx_switches_per_req peak_mib [share_429_pct new_conns_per_s]" to $work/res/SCENARIO.PROXY.
measure() {
  local scen=$1 name=$2 port=${port_of[$2]} procs p out conns0=0 conns1=0 t0 c0 t1 c1 hwm n rps lat bad codes code burst
  # shellcheck disable=SC2207 # pids are words
  procs=($(proc_tree "${pid_of[$name]}"))
  for p in "${procs[@]}"; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done # VmHWM from now
  [ "$scen" = limit ] && conns0=$(accepted "$name")
  read -r t0 c0 _ <<<"$(usage "${procs[@]}")"
  case $scen in
    h1) out=$(load_h1 "$port" /) ;;
    h2) out=$(load_h2 "$port") ;;
    new) out=$(load_new "$port") ;;
    limit) out=$(load_h1 "$port" "$LIMITED_PATH") ;;
  esac
  read -r t1 c1 hwm <<<"$(usage "${procs[@]}")"
  if [ "$scen" = limit ]; then
    conns1=$(accepted "$name")
    [ "$name" = nginx ] && conns1=$((conns1 - 1))
    # wrk counts answers other than 2xx/3xx; the client being over the limit now, a quick burst
    # of requests (one curl, one connection where the proxy keeps it) says they were 429s.
    burst=()
    for _ in $(seq 1 50); do burst+=(-o /dev/null "https://127.0.0.1:$port$LIMITED_PATH"); done
    codes=$(curl -sk -w '%{http_code} ' "${burst[@]}" || true)
    case " $codes" in
      *" 429 "*) ;;
      *) echo "bench: warning: $name did not refuse the limited route right after its run: $codes" >&2 ;;
    esac
    for code in $codes; do
      case $code in
        200 | 429) ;;
        *) echo "bench: warning: $name answered the limited route with $codes" >&2; break ;;
      esac
    done
  fi
  read -r n rps lat bad <<<"$out"
  awk -v n="$n" -v rps="$rps" -v lat="$lat" -v bad="${bad:-0}" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
    -v ctx=$((c1 - c0)) -v hwm="$hwm" -v conns=$((conns1 - conns0)) -v d="$DURATION" -v scen="$scen" 'BEGIN {
      if (n <= 0) { print "0 0 0 0 0 0 0"; exit }
      printf "%s %s %.2f %.3f %.1f", rps, lat, ticks * 1e6 / hz / n, ctx / n, hwm / 1024
      if (scen == "limit") printf " %.1f %.0f", bad * 100 / n, conns / d
      printf "\n" }' >>"$work/res/$scen.$name"
  echo "bench: $scen $name: $(tail -n 1 "$work/res/$scen.$name")" >&2
}

scenarios=(h1 h2 new limit)
mkdir -p "$work/res"
started=$(date +%s)
for round in $(seq 1 "$RUNS"); do
  echo "bench: round $round of $RUNS" >&2
  for scen in "${scenarios[@]}"; do
    for name in "${proxies[@]}"; do
      [ "$scen" = limit ] && [ "$name" = pingora ] && continue # bare pingora has no limiter
      measure "$scen" "$name"
    done
  done
done

median() { # FILE COLUMN
  awk -v c="$2" '{print $c}' "$1" | sort -g | awk '{a[NR] = $1} END {
    if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "n/a") print v; else printf f, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

declare -A title=(
  [h1]="(a) TLS HTTP/1.1 keep-alive: \`wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency https://127.0.0.1:PORT/\`"
  [h2]="(b) TLS HTTP/2: \`h2load -c$CONNECTIONS -m$H2_STREAMS -D$DURATION https://127.0.0.1:PORT/\`"
  [new]="(c) a new TLS connection per request (full handshake, one GET with \`Connection: close\`): $NEW_CONN_CLIENTS parallel \`openssl s_time -connect 127.0.0.1:PORT -new -time $DURATION -www $(printf %q "$NEW_CONN_REQUEST")\`"
  [limit]="(d) rate-limited route, one client over a limit of $LIMIT_PER_SEC/s (burst $LIMIT_BURST): \`wrk -t2 -c$CONNECTIONS -d${DURATION}s --latency https://127.0.0.1:PORT$LIMITED_PATH\`"
)

echo
echo "\`$command_line\`"
echo
echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores shared with the load generators, load average at start $load_at_start;" \
  "medians of $RUNS alternating runs of $DURATION s ($(($(date +%s) - started)) s in all)."
echo "CPU (utime+stime), context switches and peak RSS (VmHWM) are the proxy's own, summed over its processes" \
  "(nginx: master and workers) from /proc, per request the load tool completed." \
  "Every proxy has $PROXY_THREADS workers; bare pingora runs in its \`$BARE_PINGORA_MODE\` runtime model."
for scen in "${scenarios[@]}"; do
  unit=req; lat="p99 ms"; extra_head=""; extra_rule=""; columns=8
  [ "$scen" = new ] && { unit=conn; lat="mean ms/conn"; }
  [ "$scen" = limit ] && { extra_head=" 429 % | new conns/s |"; extra_rule="---|---|"; columns=10; }
  echo
  echo "### ${title[$scen]}"
  echo
  echo "| proxy | $unit/s | $lat |$extra_head CPU us/$unit | ctx switches/$unit | peak MiB | aragora/this $unit/s | aragora/this CPU |"
  echo "|---|---|---|$extra_rule---|---|---|---|---|"
  ar_rps=$(median "$work/res/$scen.aragora" 1); ar_cpu=$(median "$work/res/$scen.aragora" 3)
  for name in "${proxies[@]}"; do
    file="$work/res/$scen.$name"
    if [ ! -s "$file" ]; then
      row="| ${label_of[$name]} | n/a (no limiter) |"
      for _ in $(seq 3 "$columns"); do row+=" |"; done
      echo "$row"
      continue
    fi
    rps=$(median "$file" 1); cpu=$(median "$file" 3)
    extra=""
    [ "$scen" = limit ] && extra=" $(fmt "$(median "$file" 6)" %.1f) | $(fmt "$(median "$file" 7)" %.0f) |"
    echo "| ${label_of[$name]} | $(fmt "$rps" %.0f) | $(fmt "$(median "$file" 2)" %.2f) |$extra $(fmt "$cpu" %.1f) |" \
      "$(fmt "$(median "$file" 4)" %.2f) | $(fmt "$(median "$file" 5)" %.1f) | $(ratio "$ar_rps" "$rps") | $(ratio "$ar_cpu" "$cpu") |"
  done
done
