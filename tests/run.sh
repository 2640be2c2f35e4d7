#!/usr/bin/env bash
# Runs every test of rackwatch on a fresh machine: installs what is missing (Debian packages:
# Mosquitto, VictoriaMetrics, QEMU, Chromium and its driver; Rust targets), then formatting, lints, unit/property/end-to-end tests, and the firmware's cross-build with
# its flash and RAM budgets. CI (.ci/run) runs exactly this. Aim: under 25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

step() {
  local name=$1
  shift
  local t0=$SECONDS
  echo "==> $name"
  "$@"
  echo "<== $name ($((SECONDS - t0)) s)"
}

# --- What the tests need that a fresh machine may not have -------------------------------------
missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have mosquitto || missing+=(mosquitto)
have victoria-metrics || missing+=(victoria-metrics)
have qemu-system-arm || missing+=(qemu-system-arm)
have chromium || missing+=(chromium)
have chromedriver || missing+=(chromium-driver)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "==> installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# rust-toolchain.toml names the toolchain, its components and the embedded targets; rustup installs
# whatever of it is missing on first use.
rustup show active-toolchain >/dev/null

# --- Checks ---------------------------------------------------------------------------------------
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets --all-features -- -D warnings
step "no_std crates build for thumbv7m-none-eabi" \
  cargo build -p rackwatch-protocols -p rackwatch-hardware -p rackwatch-firmware --target thumbv7m-none-eabi
for board in firmware/boards/*/; do
  [ -f "$board/Cargo.toml" ] || continue
  step "board $(basename "$board"): fmt, clippy, release build, size budget" bash -c "
    cd '$board' && cargo fmt -- --check && cargo clippy --release -- -D warnings && cargo build --release && ./size.sh"
done
step "cargo test" cargo test --workspace --all-features --no-fail-fast

echo "tests/run.sh: all checks passed in $((SECONDS - started)) s"
