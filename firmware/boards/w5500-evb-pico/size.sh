#!/usr/bin/env bash
# The two-slot build of this board: the bootloader (../w5500-evb-pico-bootloader, its own budget) and
# this application, with the application's flash and static RAM against its budgets (../size-check.sh):
# flash within ACTIVE (1000 KiB, memory.x; an update must fit there too), static RAM within 132 KiB, half
# the RP2040's 264 KiB SRAM (the executor's tasks, the main task's future included, are statics and
# already count here). Then checks that the two images agree on the memory map: the application starts
# at the bootloader's ACTIVE, and both name the same state and DFU partitions.
# Usage: ./size.sh [--tls]   (builds first; --tls: with TLS 1.3, feature `tls`, same budgets; needs
# RACKWATCH_BROKER_CA and RACKWATCH_BROKER_NAME, a throwaway CA is made when they are unset).
# The update agent is measured with a key built in: a throwaway one when RACKWATCH_UPDATE_KEY is unset.
set -euo pipefail
cd "$(dirname "$0")"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
features=()
if [[ ${1:-} == --tls ]]; then
    features=(--features tls)
    if [[ -z ${RACKWATCH_BROKER_CA:-} ]]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$scratch/ca.key" \
            -subj /CN=size-check -days 1 -outform DER -out "$scratch/ca.der" 2>/dev/null
        export RACKWATCH_BROKER_CA=$scratch/ca.der RACKWATCH_BROKER_NAME=${RACKWATCH_BROKER_NAME:-broker.example}
    fi
fi
if [[ -z ${RACKWATCH_UPDATE_KEY:-} ]]; then
    # The raw Ed25519 public key is the last 32 bytes of its DER SubjectPublicKeyInfo (RFC 8410).
    openssl genpkey -algorithm ed25519 -out "$scratch/update.key"
    openssl pkey -in "$scratch/update.key" -pubout -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \n' \
        >"$scratch/update.pub"
    export RACKWATCH_UPDATE_KEY=$scratch/update.pub
fi

echo "bootloader (../w5500-evb-pico-bootloader):"
../w5500-evb-pico-bootloader/size.sh
echo "application:"
cargo build --release --quiet "${features[@]}"
app=target/thumbv6m-none-eabi/release/rackwatch-node
loader=../w5500-evb-pico-bootloader/target/thumbv6m-none-eabi/release/rackwatch-bootloader

host=$(rustc -vV | sed -n 's/host: //p')
nm=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-nm
[[ -x $nm ]] || nm=$(command -v llvm-nm || true)
[[ -n $nm && -x $nm ]] || { echo "size.sh: llvm-nm missing: rustup component add llvm-tools" >&2; exit 2; }
symbol() {
    local value
    value=$("$nm" "$1" | awk -v name="$2" '$3 == name { print $1 }')
    [[ -n $value ]] || { echo "size.sh: $1 has no symbol $2 (memory.x)" >&2; exit 1; }
    echo "$value"
}
active_start=$((16#$(symbol "$loader" __bootloader_active_start)))
active_end=$((16#$(symbol "$loader" __bootloader_active_end)))
vector_table=$((16#$(symbol "$app" __vector_table)))
for name in __bootloader_state_start __bootloader_state_end __bootloader_dfu_start __bootloader_dfu_end; do
    in_app=$(symbol "$app" $name)
    in_loader=$(symbol "$loader" $name)
    if [[ $in_app != "$in_loader" ]]; then
        echo "size.sh: $name differs between memory.x and ../w5500-evb-pico-bootloader/memory.x" >&2
        exit 1
    fi
done
if ((vector_table != 0x10000000 + active_start)); then
    echo "size.sh: the application does not start at the bootloader's ACTIVE partition" >&2
    exit 1
fi
printf 'memory map: ACTIVE 0x%08x, %d KiB; state and DFU partitions agree with the bootloader\n' \
    $((0x10000000 + active_start)) $(((active_end - active_start) / 1024))
../size-check.sh "$app" $((active_end - active_start)) $((132 * 1024)) \
    ".vector_table .text .rodata .data" ".data .bss .uninit"
