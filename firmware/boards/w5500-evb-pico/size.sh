#!/usr/bin/env bash
# Flash and static RAM of the release image (../size-check.sh). Fails when flash > 1 MiB or static RAM >
# 132 KiB: half the W5500-EVB-Pico's 2 MiB QSPI flash (W25Q16JV) and half the RP2040's 264 KiB SRAM,
# leaving the rest for a second firmware slot and the stack (the executor's tasks, the main task's
# future included, are statics and already count here).
# Usage: ./size.sh   (builds first)
set -euo pipefail
cd "$(dirname "$0")"

cargo build --release --quiet
# .boot2: the 256-byte second-stage boot loader at the start of flash (embassy-rp's link-rp.x).
../size-check.sh target/thumbv6m-none-eabi/release/rackwatch-node $((1024 * 1024)) $((132 * 1024)) \
    ".boot2 .vector_table .text .rodata .data" ".data .bss .uninit"
