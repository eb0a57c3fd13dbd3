#!/usr/bin/env bash
# Builds aragora (release) if needed and runs `aragora up`: everything on this machine with
# embedded defaults (SQLite in ./data, offline agents unless a provider key is set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked
exec ./target/release/aragora up "$@"
