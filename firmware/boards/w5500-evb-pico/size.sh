#!/usr/bin/env bash
# Flash and static RAM of the release image (../size-check.sh). Fails when flash > 1 MiB or static RAM >
# 132 KiB: half the W5500-EVB-Pico's 2 MiB QSPI flash (W25Q16JV) and half the RP2040's 264 KiB SRAM,
# leaving the rest for a second firmware slot and the stack (the executor's tasks, the main task's
# future included, are statics and already count here).
# Usage: ./size.sh [--tls]   (builds first; --tls: with TLS 1.3, feature `tls`, same budgets; needs
# RACKWATCH_BROKER_CA and RACKWATCH_BROKER_NAME, a throwaway CA is made when they are unset)
set -euo pipefail
cd "$(dirname "$0")"

features=()
if [[ ${1:-} == --tls ]]; then
    features=(--features tls)
    if [[ -z ${RACKWATCH_BROKER_CA:-} ]]; then
        ca_dir=$(mktemp -d)
        trap 'rm -rf "$ca_dir"' EXIT
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$ca_dir/ca.key" \
            -subj /CN=size-check -days 1 -outform DER -out "$ca_dir/ca.der" 2>/dev/null
        export RACKWATCH_BROKER_CA=$ca_dir/ca.der RACKWATCH_BROKER_NAME=${RACKWATCH_BROKER_NAME:-broker.example}
    fi
fi
cargo build --release --quiet "${features[@]}"
# .boot2: the 256-byte second-stage boot loader at the start of flash (embassy-rp's link-rp.x).
../size-check.sh target/thumbv6m-none-eabi/release/rackwatch-node $((1024 * 1024)) $((132 * 1024)) \
    ".boot2 .vector_table .text .rodata .data" ".data .bss .uninit"
