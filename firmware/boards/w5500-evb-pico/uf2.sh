#!/usr/bin/env bash
# Builds the bootloader (../w5500-evb-pico-bootloader) and the application and writes:
# - target/rackwatch-node.uf2: both in one file, the one a technician copies onto the Pico's USB drive
#   (README.md, "Flashing"): the bootloader at the start of flash, the application in ACTIVE;
# - target/rackwatch-node.bin: the application alone as raw bytes from ACTIVE's first, the image
#   `rackwatch firmware sign --board w5500-evb-pico --image` takes for an update.
# The converter is our own small host tool (uf2/), built and tested here for the machine this runs on:
# the UF2 format is simple and public, and this keeps the build to the Rust toolchain alone.
# Usage: ./uf2.sh   (RACKWATCH_UPDATE_KEY=/path/key.pub builds the update key in, README.md "Updates")
set -euo pipefail
cd "$(dirname "$0")"

(cd ../w5500-evb-pico-bootloader && cargo build --release --quiet)
cargo build --release --quiet
host=$(rustc -vV | sed -n 's/host: //p')
objcopy=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-objcopy
[[ -x $objcopy ]] || objcopy=$(command -v llvm-objcopy || true)
[[ -n $objcopy && -x $objcopy ]] || { echo "uf2.sh: llvm-objcopy missing: rustup component add llvm-tools" >&2; exit 2; }
"$objcopy" -O binary target/thumbv6m-none-eabi/release/rackwatch-node target/rackwatch-node.bin
echo "target/rackwatch-node.bin: $(wc -c <target/rackwatch-node.bin) bytes (the update image)"
(
    cd uf2
    cargo fmt -- --check
    cargo clippy --quiet --all-targets --target "$host" -- -D warnings
    cargo test --quiet --target "$host"
    cargo run --quiet --release --target "$host" -- \
        ../../w5500-evb-pico-bootloader/target/thumbv6m-none-eabi/release/rackwatch-bootloader \
        ../target/thumbv6m-none-eabi/release/rackwatch-node ../target/rackwatch-node.uf2
)
