#!/usr/bin/env bash
# Gateway throughput and tail latency, side by side with nginx and HAProxy, in one run.
#
# All three terminate TLS on loopback with the same self-signed certificate and proxy to the
# same upstream (an nginx returning a small JSON body, keep-alive to it), and all three are
# measured with the same tools: wrk over TLS HTTP/1.1 and h2load over TLS HTTP/2. The machine is
# shared and small, so compare ratios within one run, not numbers across runs.
#
#   bash scripts/bench-gateway.sh            # 15 s per tool and proxy
#   DURATION=30 CONNECTIONS=128 bash scripts/bench-gateway.sh
#
# Prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-15}"
CONNECTIONS="${CONNECTIONS:-64}"
H2_STREAMS="${H2_STREAMS:-10}"

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
cargo build --release --locked -q
cargo build --release --locked -q -p aragora-gateway --example bare_pingora

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
fail() { echo "bench: $*" >&2; tail -n 20 "$work/gateway.log" >&2 || true; exit 1; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); GW=$(free_port); GW_HTTP=$(free_port); GW_ADMIN=$(free_port); NG=$(free_port); HA=$(free_port); PB=$(free_port)

# One certificate for every proxy.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/haproxy.pem"

# The upstream all three proxy to: a fixed small JSON answer.
cat > "$work/upstream.conf" <<EOF
worker_processes 1; daemon off; pid $work/upstream.pid; error_log $work/upstream.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '{"status":"ok"}'; } } }
EOF
nginx -c "$work/upstream.conf" -p "$work" & pids+=($!)

# nginx as a TLS reverse proxy, two workers like the gateway's two threads.
cat > "$work/nginx.conf" <<EOF
worker_processes 2; daemon off; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream engine { server 127.0.0.1:$UP; keepalive 128; }
  server { listen 127.0.0.1:$NG ssl http2; ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://engine; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)

# HAProxy with two threads.
cat > "$work/haproxy.cfg" <<EOF
global
  nbthread 2
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend tls
  bind 127.0.0.1:$HA ssl crt $work/haproxy.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2
  default_backend engine
backend engine
  http-reuse always
  server e1 127.0.0.1:$UP
EOF
haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!)

# Bare pingora (gateway/examples/bare_pingora.rs): what pingora costs before any gateway feature.
./target/release/examples/bare_pingora "127.0.0.1:$PB" "127.0.0.1:$UP" "$work/cert.pem" "$work/key.pem" 2 \
  >/dev/null 2>"$work/bare.log" & pids+=($!)

# The aragora gateway, features on (metrics, access log to a file, request ids, trace context).
# One load generator is one client address: the rate limit runs but is set too high to refuse.
ARAGORA_GATEWAY_HOST=127.0.0.1 ARAGORA_SLOW_START_SECS=0 ARAGORA_HEALTH_PATH=/ ARAGORA_RATE_LIMIT=1000000000 \
  ARAGORA_GATEWAY_DRAIN_DELAY=0 ARAGORA_LOG_LEVEL=info \
  ./target/release/aragora gateway --upstream "127.0.0.1:$UP" --https-port "$GW" --http-port "$GW_HTTP" \
  --admin-port "$GW_ADMIN" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
  >/dev/null 2>"$work/gateway.log" & pids+=($!)

for port in "$NG" "$HA" "$PB" "$GW"; do
  ok=""
  for _ in $(seq 1 100); do
    if [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/" 2>/dev/null)" = 200 ]; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || fail "the proxy on port $port never answered 200"
done

wrk_run() { # prints "rps p99_ms"
  { wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "https://127.0.0.1:$1/" 2>/dev/null || true; } | awk '
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {v=$2; if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; p99=v}
    END {printf "%.0f %.2f", rps, p99}'
}
h2_run() { # prints "rps p99_ms" (h2load reports mean and sd; p99 from its per-request log)
  local log="$work/h2.$1.log"
  { h2load -c"$CONNECTIONS" -m"$H2_STREAMS" -D"$DURATION" --log-file="$log" "https://127.0.0.1:$1/" 2>/dev/null || true; } | awk '/^finished in/ {gsub(",","",$4); rps=$4} END {printf "%.0f", rps}'
  printf " "
  awk '{print $3/1000}' "$log" | sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.2f", a[i]}'
}

declare -A result
for tool in wrk h2; do
  for name in nginx haproxy pingora aragora; do
    case $name in nginx) port=$NG;; haproxy) port=$HA;; pingora) port=$PB;; aragora) port=$GW;; esac
    result[$tool.$name]=$(${tool}_run "$port")
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "TLS proxies on 127.0.0.1, ${CONNECTIONS} connections, ${DURATION} s each (h2: ${H2_STREAMS} streams per connection); $(nproc) cores shared with the load generator"
echo
echo "| protocol (tool) | proxy | requests/s | p99 ms | aragora / this |"
echo "|---|---|---|---|---|"
for tool in wrk h2; do
  label="TLS HTTP/1.1 (wrk)"; [ "$tool" = h2 ] && label="TLS HTTP/2 (h2load)"
  read -r ar_rps _ <<<"${result[$tool.aragora]}"
  for name in nginx haproxy pingora aragora; do
    read -r rps p99 <<<"${result[$tool.$name]}"
    echo "| $label | $name | $rps | $p99 | $(ratio "$ar_rps" "$rps") |"
  done
done
