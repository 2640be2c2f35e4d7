#!/usr/bin/env bash
# Runs every test of rackwatch on a fresh machine: installs what is missing (tests/setup.sh: Debian
# packages for the real servers, QEMU, Chromium and its driver; the Rust targets and components of every
# rust-toolchain.toml), then formatting, lints, unit/property/end-to-end tests, and the firmware's
# cross-builds (every board under firmware/boards) with their flash and RAM budgets. CI (.ci/run) runs
# exactly this. Aim: under 25 minutes on 2 cores.
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
# The embedded targets and the components, for the toolchain of every workspace (the root's and each
# board's rust-toolchain.toml). rustup adds a toolchain file's targets and components only when it
# installs the toolchain itself, not when the toolchain is already on the machine, so they are added
# here, explicitly; tests/setup.sh fails, naming the file, when a toolchain file, a cargo config or a
# script names one these two lines do not add.
install_rust() {
  local channel
  for channel in $(sed -n 's/^channel *= *"\(.*\)"/\1/p' $(git ls-files 'rust-toolchain.toml' '*/rust-toolchain.toml') | sort -u); do
    rustup toolchain install "$channel" --profile minimal --no-self-update >/dev/null 2>&1 ||
      rustup toolchain install "$channel" --profile minimal
    rustup target add --toolchain "$channel" thumbv7m-none-eabi thumbv6m-none-eabi
    rustup component add --toolchain "$channel" rustfmt clippy llvm-tools
  done
}
step "rust targets and components" install_rust
# Debian packages, and the checks above.
step "install what is missing" bash tests/setup.sh

# --- Checks ---------------------------------------------------------------------------------------
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets --all-features -- -D warnings
# Import circles and files over 600 lines (tests/layout.sh), in the gateway and the firmware core.
step "layout: no import circle, no file over 600 lines" bash tests/layout.sh gateway/src firmware/src
step "no_std crates build for thumbv7m-none-eabi" \
  cargo build -p rackwatch-protocols -p rackwatch-hardware -p rackwatch-firmware --target thumbv7m-none-eabi
for board in firmware/boards/*/; do
  [ -f "$board/Cargo.toml" ] || continue
  # A board whose image is flashed as a file (uf2.sh: the .uf2 for a USB boot loader) makes it here too.
  step "board $(basename "$board"): fmt, clippy, release build, size budget, flashable file" bash -c "
    cd '$board' && cargo fmt -- --check && cargo clippy --release -- -D warnings && cargo build --release && ./size.sh &&
      if [ -x ./uf2.sh ]; then ./uf2.sh; fi"
done
step "cargo test" cargo test --workspace --all-features --no-fail-fast

echo "tests/run.sh: all checks passed in $((SECONDS - started)) s"
