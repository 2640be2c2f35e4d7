#!/usr/bin/env bash
# Flash and static RAM of the bootloader's release image (../size-check.sh). Fails when its flash (the
# second-stage boot loader included) is over 28 KiB, the region memory.x gives it before the state
# partition at 0x1000_7000, or its static RAM over 16 KiB (it runs before the application and leaves
# nothing behind; most of its RAM is the 4 KiB page buffer of the swap, on the stack).
# Usage: ./size.sh   (builds first)
set -euo pipefail
cd "$(dirname "$0")"

cargo build --release --quiet
../size-check.sh target/thumbv6m-none-eabi/release/rackwatch-bootloader $((28 * 1024)) $((16 * 1024)) \
    ".boot2 .vector_table .text .rodata .data" ".data .bss .uninit"
