#!/usr/bin/env bash
# Issue 17, lever 6: the gateway with its production features on (metrics, access log to a
# file, request ids, trace context, rate limit checked, security headers, HSTS) on each of its
# HTTP/1.1 engines (`ARAGORA_GATEWAY_H1_ENGINE=pingora` and `lean`, through
# gateway/examples/gateway_env.rs), against bare pingora (`bare_pingora ... percore`) and nginx
# (without an access log, and as nginx-log with a JSON access line per request as the gateway
# writes), over TLS HTTP/1.1 keep-alive, the same upstream and wrk command as
# scripts/bench-gateway.sh's scenario (a). Two measurements:
#   - CPU microseconds per request of the proxy process (utime+stime from /proc over wrk's
#     requests), RUNS alternating rounds of nginx, nginx-log, percore, gw-pingora, gw-lean and
#     gw-lean-quiet (the access log off at ARAGORA_LOG_LEVEL=warning); the load
#     average at each run;
#   - callgrind instructions per request (Ir, repeatable on a shared machine) under
#     `wrk -t1 -c4 -d${CG_SECS}s`, instrumentation switched on only for the wrk run; nginx as one
#     process (`master_process off`).
#
#   BARE_PINGORA_BIN=target/release/examples/bare_pingora \
#     GATEWAY_BIN=target/release/examples/gateway_env bash scripts/bench-lean-h1.sh
#   RUNS=5 DURATION=8 CALLGRIND=0 bash scripts/bench-lean-h1.sh     # CPU only
#   PROTO=h2 ... bash scripts/bench-lean-h1.sh   # the same over TLS HTTP/2: h2load -m$H2_STREAMS,
#     nginx with http2, gw-pingora on pingora's h2 path, gw-lean and gw-lean-quiet on the lean
#     HTTP/2 engine (ARAGORA_GATEWAY_H2_ENGINE follows the engine); p99 is h2load's mean there
set -euo pipefail
BARE_PINGORA_BIN="${BARE_PINGORA_BIN:+$(realpath "$BARE_PINGORA_BIN")}"
GATEWAY_BIN="${GATEWAY_BIN:+$(realpath "$GATEWAY_BIN")}"
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-64}"
PROXY_THREADS="${PROXY_THREADS:-2}"
CALLGRIND="${CALLGRIND:-1}"
CG_SECS="${CG_SECS:-10}"
PROTO="${PROTO:-h1}"
H2_STREAMS="${H2_STREAMS:-10}"
case "$PROTO" in h1 | h2) ;; *) echo "bench: PROTO is h1 or h2, not $PROTO" >&2; exit 2 ;; esac
if [ -z "$BARE_PINGORA_BIN" ]; then
  cargo build --release --locked -q -p aragora-gateway --example bare_pingora
  BARE_PINGORA_BIN=$PWD/target/release/examples/bare_pingora
fi
if [ -z "$GATEWAY_BIN" ]; then
  cargo build --release --locked -q -p aragora-gateway --example gateway_env
  GATEWAY_BIN=$PWD/target/release/examples/gateway_env
fi

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); NG=$(free_port); PB=$(free_port); GP=$(free_port); GL=$(free_port)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

cat > "$work/upstream.conf" <<EOF
worker_processes 1; daemon off; pid $work/upstream.pid; error_log $work/upstream.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '{"status":"ok"}'; } } }
EOF
nginx -c "$work/upstream.conf" -p "$work" & pids+=($!)

# $1 port, $2 workers, $3 extra main-context directives, $4 the access log (default off)
nginx_conf() {
  cat <<EOF
worker_processes $2; daemon off; pid $work/nginx.$1.pid; error_log $work/nginx.$1.err; $3
events { worker_connections 4096; }
http { ${4:-access_log off;} keepalive_requests 1000000;
  upstream engine { server 127.0.0.1:$UP; keepalive 128; }
  server { listen 127.0.0.1:$1 ssl$([ "$PROTO" = h2 ] && echo " http2"); ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location / { proxy_pass http://engine; } } }
EOF
}
nginx_conf "$NG" "$PROXY_THREADS" "" > "$work/nginx.conf"
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!); NG_PID=$!
# nginx-log: nginx writing a JSON access line per request with the fields the gateway's line
# holds (request id, method, path, status, duration, upstream, client, TLS), as the gateway
# does: the plain nginx above logs nothing, which the gateway cannot be told to do.
json_access() { # $1 the file
  echo "log_format gw escape=json '{\"timestamp\":\"\$time_iso8601\",\"level\":\"INFO\",\"target\":\"access\",\"message\":\"request\",\"request_id\":\"\$request_id\",\"method\":\"\$request_method\",\"path\":\"\$uri\",\"status\":\$status,\"duration_ms\":\$request_time,\"upstream\":\"\$upstream_addr\",\"client\":\"\$remote_addr\",\"tls\":\"\$ssl_protocol\"}'; access_log $1 gw;"
}
NL=$(free_port)
mkdir -p "$work/nglog"
nginx_conf "$NL" "$PROXY_THREADS" "" "$(json_access "$work/nglog/access.log")" > "$work/nginx.log.conf"
nginx -c "$work/nginx.log.conf" -p "$work/nglog" & pids+=($!); NL_PID=$!
"$BARE_PINGORA_BIN" "127.0.0.1:$PB" "127.0.0.1:$UP" "$work/cert.pem" "$work/key.pem" "$PROXY_THREADS" percore \
  >/dev/null 2>"$work/percore.log" & pids+=($!); PB_PID=$!
# The gateway, features on; $1 engine, $2 HTTPS port, $3 runtimes; the access log to a file.
# One load generator is one client address: the rate limit runs, set too high to refuse.
# gateway_env sets gw_env to its settings.
gateway_env() {
  gw_env=(ARAGORA_GATEWAY_H1_ENGINE="$1" ARAGORA_GATEWAY_H2_ENGINE="$1" ARAGORA_GATEWAY_HOST=127.0.0.1 ARAGORA_HTTPS_PORT="$2"
    ARAGORA_HTTP_PORT=0 ARAGORA_ADMIN_PORT=0 ARAGORA_UPSTREAMS="127.0.0.1:$UP"
    ARAGORA_TLS_CERT="$work/cert.pem" ARAGORA_TLS_KEY="$work/key.pem" ARAGORA_SLOW_START_SECS=0
    ARAGORA_HEALTH_PATH=/ ARAGORA_HEALTH_INTERVAL_MS=200 ARAGORA_RATE_LIMIT=1000000000 ARAGORA_GATEWAY_THREADS="$3"
    ARAGORA_GATEWAY_DRAIN_DELAY=0 ARAGORA_LOG_LEVEL=info)
}
gateway_env pingora "$GP" "$PROXY_THREADS"
env "${gw_env[@]}" "$GATEWAY_BIN" >"$work/gw-pingora.access" 2>&1 & pids+=($!); GP_PID=$!
gateway_env lean "$GL" "$PROXY_THREADS"
env "${gw_env[@]}" "$GATEWAY_BIN" >"$work/gw-lean.access" 2>&1 & pids+=($!); GL_PID=$!
# gw-lean-quiet: the same at ARAGORA_LOG_LEVEL=warning, which turns the access log off (beside
# the plain nginx, which logs nothing).
GQ=$(free_port)
gateway_env lean "$GQ" "$PROXY_THREADS"
env "${gw_env[@]}" ARAGORA_LOG_LEVEL=warning "$GATEWAY_BIN" >"$work/gw-lean-quiet.access" 2>&1 & pids+=($!); GQ_PID=$!

wait_200() { # $1 port
  for _ in $(seq 1 300); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$1/" 2>/dev/null)" = 200 ] && return 0
    sleep 0.1
  done
  echo "bench: port $1 never answered 200" >&2; exit 1
}
for port in $NG $NL $PB $GP $GL $GQ; do wait_200 "$port"; done

proc_tree() { local p; for p in "$@"; do echo "$p"; proc_tree $(ps -o pid= --ppid "$p"); done; }
ticks() { local p; for p in "$@"; do sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'; done | awk '{s += $1} END {print s}'; }
wrk_requests() { awk '/requests in/ {n = $1} /Requests\/sec/ {r = $2} /^ +99%/ {p = $2} END {print n, r, p}'; }
h2load_requests() { awk '/^requests:/ {n = $8} /^finished in/ {r = $4} /^time for request:/ {p = $6} END {print n, r, p}'; }
# load THREADS CONNECTIONS SECONDS URL: "requests req/s p99" of wrk (h1) or h2load (h2).
load() {
  if [ "$PROTO" = h2 ]; then
    h2load -t"$1" -c"$2" -m"$H2_STREAMS" -D"$3" "$4" 2>/dev/null | h2load_requests
  else
    wrk -t"$1" -c"$2" -d"${3}s" --latency "$4" 2>/dev/null | wrk_requests
  fi
}

declare -A port_of=([nginx]=$NG [nginx-log]=$NL [percore]=$PB [gw-pingora]=$GP [gw-lean]=$GL [gw-lean-quiet]=$GQ)
declare -A pid_of=([nginx]=$NG_PID [nginx-log]=$NL_PID [percore]=$PB_PID [gw-pingora]=$GP_PID [gw-lean]=$GL_PID [gw-lean-quiet]=$GQ_PID)
hz=$(getconf CLK_TCK)
echo "| round | proxy | load average (1 min) | req/s | p99 | CPU us/req |"
echo "|---|---|---|---|---|---|"
for round in $(seq 1 "$RUNS"); do
  for name in nginx nginx-log percore gw-pingora gw-lean gw-lean-quiet; do
    # shellcheck disable=SC2207
    procs=($(proc_tree "${pid_of[$name]}"))
    load=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(ticks "${procs[@]}")
    read -r n rps p99 <<<"$(load 2 "$CONNECTIONS" "$DURATION" "https://127.0.0.1:${port_of[$name]}/")"
    t1=$(ticks "${procs[@]}")
    echo "| $round | $name | $load | $rps | $p99 | $(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}') |"
  done
done

[ "$CALLGRIND" = 1 ] || exit 0
echo
echo "callgrind, $PROTO, 1 thread, 4 connections, ${CG_SECS} s, instrumentation on for the load run only:"
echo
echo "| proxy | requests | Ir | Ir/req |"
echo "|---|---|---|---|"
cg_env=()
callgrind_one() { # $1 name, $2 port it listens on, then the command (its environment: cg_env)
  local name=$1 port=$2 pid out n file ir
  shift 2
  env "${cg_env[@]}" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.$name.%p" "$@" \
    >/dev/null 2>"$work/cg.$name.log" &
  pid=$!; pids+=($pid)
  wait_200 "$port"
  callgrind_control -i on "$pid" >/dev/null
  out=$(load 1 4 "$CG_SECS" "https://127.0.0.1:$port/")
  callgrind_control -i off "$pid" >/dev/null
  # The dump made on request holds the instructions of the wrk run (collection was off before).
  callgrind_control -d "$pid" >/dev/null
  kill "$pid"; wait "$pid" 2>/dev/null || true
  n=${out%% *}
  file=$(ls -S "$work"/cg."$name".* | grep -v '\.log$' | head -n 1)
  ir=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "| $name | $n | $ir | $(awk -v ir="$ir" -v n="$n" 'BEGIN {printf "%.1fk", ir / n / 1000}') |"
  if [ -n "${KEEP_PROFILES:-}" ]; then cp "$file" "$KEEP_PROFILES/callgrind.$name"; fi
  rm -f "$work"/cg."$name".*
}
port=$(free_port)
mkdir -p "$work/ngcg"
nginx_conf "$port" 1 "master_process off;" > "$work/nginx.cg.conf"
callgrind_one nginx "$port" nginx -c "$work/nginx.cg.conf" -p "$work/ngcg"
port=$(free_port)
mkdir -p "$work/nglogcg"
nginx_conf "$port" 1 "master_process off;" "$(json_access "$work/nglogcg/access.log")" > "$work/nginx.logcg.conf"
callgrind_one nginx-log "$port" nginx -c "$work/nginx.logcg.conf" -p "$work/nglogcg"
port=$(free_port)
callgrind_one percore "$port" "$BARE_PINGORA_BIN" "127.0.0.1:$port" "127.0.0.1:$UP" "$work/cert.pem" "$work/key.pem" 1 percore
for engine in pingora lean; do
  port=$(free_port)
  gateway_env "$engine" "$port" 1
  cg_env=("${gw_env[@]}")
  # The access log goes to callgrind_one's /dev/null here (still formatted and written).
  callgrind_one "gw-$engine" "$port" "$GATEWAY_BIN"
done
port=$(free_port)
gateway_env lean "$port" 1
cg_env=("${gw_env[@]}" ARAGORA_LOG_LEVEL=warning)
callgrind_one gw-lean-quiet "$port" "$GATEWAY_BIN"
