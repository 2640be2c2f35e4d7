#!/usr/bin/env bash
# Builds the release image and turns it into target/rackwatch-node.uf2, the file a technician copies onto
# the Pico's USB drive (README.md, "Flashing"). The converter is our own small host tool (uf2/), built
# and tested here for the machine this runs on: the UF2 format is simple and public, and this keeps the
# build to the Rust toolchain alone.
# Usage: ./uf2.sh
set -euo pipefail
cd "$(dirname "$0")"

cargo build --release --quiet
host=$(rustc -vV | sed -n 's/host: //p')
(
    cd uf2
    cargo fmt -- --check
    cargo clippy --quiet --all-targets --target "$host" -- -D warnings
    cargo test --quiet --target "$host"
    cargo run --quiet --release --target "$host" -- \
        ../target/thumbv6m-none-eabi/release/rackwatch-node ../target/rackwatch-node.uf2
)
