#!/usr/bin/env bash
# Flash and static RAM of the release image (../size-check.sh).
#   ./size.sh        the plain-MQTT image: fails when flash > 128 KiB or static RAM > 32 KiB, half the
#                    LM3S6965's 256 KiB / 64 KiB, leaving the rest for the stack and a second firmware slot.
#   ./size.sh --tls  the image with TLS 1.3 (feature `tls`): fails over the chip itself, 256 KiB / 64 KiB.
#                    TLS roughly doubles the image (embedded-tls, P-256, AES-GCM: README.md), so a TLS
#                    image leaves no room for a second slot on this chip. Needs RACKWATCH_BROKER_CA and
#                    RACKWATCH_BROKER_NAME (a throwaway CA is made when they are unset).
# Panic locations embed absolute source paths (cargo registry, checkout), so the figure moves by a few bytes
# from one machine to another: keep a margin below the limit, not a handful of bytes.
# Usage: ./size.sh [--tls] [binary name]   (default rackwatch-node, the application; builds it first)
set -euo pipefail
cd "$(dirname "$0")"

features=() flash_kib=128 ram_kib=32
if [[ ${1:-} == --tls ]]; then
    shift
    features=(--features tls) flash_kib=256 ram_kib=64
    if [[ -z ${RACKWATCH_BROKER_CA:-} ]]; then
        ca_dir=$(mktemp -d)
        trap 'rm -rf "$ca_dir"' EXIT
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$ca_dir/ca.key" \
            -subj /CN=size-check -days 1 -outform DER -out "$ca_dir/ca.der" 2>/dev/null
        export RACKWATCH_BROKER_CA=$ca_dir/ca.der RACKWATCH_BROKER_NAME=${RACKWATCH_BROKER_NAME:-broker.example}
    fi
fi
binary=${1:-rackwatch-node}
cargo build --release --quiet "${features[@]}" --bin "$binary"
../size-check.sh "target/thumbv7m-none-eabi/release/$binary" $((flash_kib * 1024)) $((ram_kib * 1024)) \
    ".vector_table .text .rodata .data" ".data .bss .uninit"
