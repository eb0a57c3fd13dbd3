#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for ARAGORA_FUZZ_SECONDS each (default 10) from
# its committed corpus (fuzz/corpus/TARGET/) and regressions (fuzz/regressions/TARGET/), with
# libFuzzer through cargo-fuzz on the nightly toolchain. New inputs it finds go to a scratch
# directory, never into the committed corpus. Exits non-zero when any target crashes, naming
# each crashing input and the command that reproduces it.
#
#   ARAGORA_FUZZ_SECONDS=300 scripts/fuzz.sh slo_spec   # one target, five minutes
#   ARAGORA_FUZZ_SECONDS=0 scripts/fuzz.sh              # build only
#   ARAGORA_FUZZ_SEED=0 ARAGORA_FUZZ_SECONDS=600 scripts/fuzz.sh  # a random seed, for long runs
#   ARAGORA_FUZZ_JOBS=1 scripts/fuzz.sh                          # one target at a time
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

seconds="${ARAGORA_FUZZ_SECONDS:-10}"
# A fixed seed by default, so a CI run explores the same inputs each time (a crash it finds is
# the change's, not the luck of the draw); ARAGORA_FUZZ_SEED=0 lets libFuzzer pick one.
seed="${ARAGORA_FUZZ_SEED:-1}"
# The build goes to target/fuzz (fuzz/.cargo/config.toml), apart from the main build.
# Without a sanitizer: the code is safe Rust (and C libraries the tests already run), and
# AddressSanitizer would double the build and halve the executions per second. Sixteen
# codegen units (cargo-fuzz uses one) build the large crates on both cores.
fuzz_flags=(--sanitizer none --release --codegen-units 16)

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for file in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$file" .rs)")
  done
fi

cd fuzz
started=$(date +%s)
echo "== cargo fuzz build (${#targets[@]} targets)" >&2
cargo +nightly fuzz build "${fuzz_flags[@]}" >&2
echo "fuzz: built in $(( $(date +%s) - started ))s" >&2
[ "$seconds" -gt 0 ] || exit 0

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# One libFuzzer process per core (ARAGORA_FUZZ_JOBS): each is single-threaded, so two targets
# side by side take the time of one on this two-core machine.
jobs="${ARAGORA_FUZZ_JOBS:-$(nproc)}"

# Runs one target; leaves "$scratch/$target.failed" holding what to report when it crashed.
fuzz_target() {
  local target="$1"
  mkdir -p "$scratch/$target" "artifacts/$target" "regressions/$target"
  ls "artifacts/$target" >"$scratch/$target.before"
  # The first directory receives new inputs; the committed ones are only read.
  if ! cargo +nightly fuzz run "${fuzz_flags[@]}" "$target" \
      "$scratch/$target" "corpus/$target" "regressions/$target" -- \
      -max_total_time="$seconds" -seed="$seed" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 >"$scratch/$target.log" 2>&1; then
    {
      echo "== fuzz $target: CRASH"
      tail -n 40 "$scratch/$target.log"
    } >&2
    local found=0 artifact
    for artifact in $(ls "artifacts/$target" | grep -vxF -f "$scratch/$target.before" || true); do
      found=1
      echo "$target: fuzz/artifacts/$target/$artifact
    reproduce: cd fuzz && cargo +nightly fuzz run --sanitizer none --codegen-units 16 $target artifacts/$target/$artifact
    keep it:   fix the parser, then move it to fuzz/regressions/$target/ (cargo test replays it)" \
        >>"$scratch/$target.failed"
    done
    [ "$found" = 1 ] || echo "$target: failed without an artifact; see the log above" >"$scratch/$target.failed"
  else
    echo "== fuzz $target (${seconds}s): $(grep -E '^stat::number_of_executed_units|^Done ' \
      "$scratch/$target.log" | tr '\n' ' ')" >&2
  fi
}

for target in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  fuzz_target "$target" &
done
wait
failed=()
for target in "${targets[@]}"; do
  [ -f "$scratch/$target.failed" ] && failed+=("$(cat "$scratch/$target.failed")")
done
echo "fuzz: ${#targets[@]} targets in $(( $(date +%s) - started ))s, $jobs at a time" >&2
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'fuzz: CRASH %s\n' "${failed[@]}" >&2
  exit 1
fi
