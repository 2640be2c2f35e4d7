#!/usr/bin/env bash
# Flash and static RAM of the release image (../size-check.sh). Fails when flash > 128 KiB or static RAM >
# 32 KiB: half the LM3S6965's 256 KiB / 64 KiB, leaving the rest for the application core, the stack and a
# second firmware slot.
# Panic locations embed absolute source paths (cargo registry, checkout), so the figure moves by a few bytes
# from one machine to another: keep a margin below the limit, not a handful of bytes.
# Usage: ./size.sh [binary name]   (default rackwatch-node, the application; builds it first)
set -euo pipefail
cd "$(dirname "$0")"

binary=${1:-rackwatch-node}
cargo build --release --quiet --bin "$binary"
../size-check.sh "target/thumbv7m-none-eabi/release/$binary" $((128 * 1024)) $((32 * 1024)) \
    ".vector_table .text .rodata .data" ".data .bss .uninit"
