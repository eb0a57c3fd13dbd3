#!/usr/bin/env bash
# The whole test suite: installs what is missing, checks formatting and lints, runs every test
# (unit tests and the end-to-end tests of the real binary against real SQLite and PostgreSQL).
# Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/services.sh

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test" >&2
cargo test --workspace --locked --no-fail-fast
# Every fuzz target for ARAGORA_FUZZ_SECONDS each (default 10) from its committed corpus.
echo "== fuzz" >&2
bash scripts/fuzz.sh
