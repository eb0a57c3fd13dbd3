#!/usr/bin/env bash
# The whole test suite: installs what is missing, checks formatting and lints, runs every test
# (unit tests and the end-to-end tests of the real binary against real SQLite and PostgreSQL).
# Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase's start, in seconds since this script began, so a slow CI run says where it went.
phase() { echo "== $1 (at ${SECONDS}s)" >&2; }

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# A fresh CI clone has nothing to reuse, and incremental compilation only adds its own records
# to every workspace crate's build there.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
bash scripts/services.sh

phase "cargo fmt --check"
cargo fmt --all -- --check
# Clippy and the fuzz targets' instrumented build run beside the tests, at the lowest CPU
# priority and in target dirs of their own (target/clippy, target/fuzz), so they take only the
# CPU the tests leave idle: the end-to-end tests spend much of their time waiting on real
# processes, and the two builds alone are about 15 minutes on two cores. Their verdicts are
# read once the tests are done.
side_log="$(mktemp)"
(
  set -e
  echo "== cargo clippy (at ${SECONDS}s)"
  CARGO_TARGET_DIR=target/clippy nice -n 19 \
    cargo clippy --workspace --all-targets --locked -- -D warnings
  echo "== cargo fuzz build (at ${SECONDS}s)"
  ARAGORA_FUZZ_SECONDS=0 nice -n 19 bash scripts/fuzz.sh
) >"$side_log" 2>&1 &
side_builds=$!
phase "cargo test"
tests_status=0
cargo test --workspace --locked --no-fail-fast || tests_status=$?
phase "tests done; waiting for clippy and the fuzz build"
side_status=0
wait "$side_builds" || side_status=$?
if [ "$side_status" != 0 ]; then
  cat "$side_log" >&2
  echo "test: clippy or the fuzz build failed (above): cargo clippy --workspace --all-targets -- -D warnings; bash scripts/fuzz.sh" >&2
else
  grep -E '^(== cargo|fuzz: built)' "$side_log" >&2 || true
fi
rm -f "$side_log"
[ "$tests_status" = 0 ] || exit "$tests_status"
[ "$side_status" = 0 ] || exit "$side_status"
# Every fuzz target for ARAGORA_FUZZ_SECONDS each (default 10) from its committed corpus.
phase "fuzz"
bash scripts/fuzz.sh
phase "all passed"
