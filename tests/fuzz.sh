#!/usr/bin/env bash
# Fuzzes every decoder of the wire format with cargo-fuzz (libFuzzer, nightly toolchain).
# Not part of tests/run.sh: run it by hand or nightly. Usage: tests/fuzz.sh [seconds per target, default 300]
set -euo pipefail
cd "$(dirname "$0")/../protocols"
seconds=${1:-300}
# cargo-fuzz needs a nightly toolchain: installed here on first use (the pinned toolchain stays for the rest).
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "==> installing the nightly toolchain for cargo-fuzz (first use)"
  rustup toolchain install nightly --profile minimal
fi
cargo +nightly fuzz --version >/dev/null 2>&1 || {
  echo "==> installing cargo-fuzz (first use)"
  cargo install cargo-fuzz --locked
}
for target in $(cargo +nightly fuzz list); do
  echo "==> fuzzing $target for $seconds s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=2048
done
