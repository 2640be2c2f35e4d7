#!/usr/bin/env bash
# Flash and static RAM of the release image, from the section sizes llvm-size reports (llvm-tools component).
# Fails when flash > 128 KiB or static RAM > 32 KiB: half the LM3S6965's 256 KiB / 64 KiB, leaving the rest
# for the application core, the stack and a second firmware slot.
# Panic locations embed absolute source paths (cargo registry, checkout), so the figure moves by a few bytes
# from one machine to another: keep a margin below the limit, not a handful of bytes.
# Usage: ./size.sh [binary name]   (default rackwatch-node, the application; builds it first)
set -euo pipefail
cd "$(dirname "$0")"

binary=${1:-rackwatch-node}
flash_limit=$((128 * 1024))
ram_limit=$((32 * 1024))

cargo build --release --quiet --bin "$binary"
elf=target/thumbv7m-none-eabi/release/$binary
llvm_size=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-size
if [[ ! -x $llvm_size ]]; then
    echo "size.sh: $llvm_size missing: rustup component add llvm-tools" >&2
    exit 2
fi

# Sections of cortex-m-rt's link.x: .vector_table, .text, .rodata live in flash; .data is in RAM with its
# initial values in flash; .bss and .uninit are RAM only.
"$llvm_size" -A "$elf" | awk -v flash_limit="$flash_limit" -v ram_limit="$ram_limit" '
    { size[$1] = $2 }
    END {
        flash = size[".vector_table"] + size[".text"] + size[".rodata"] + size[".data"]
        ram = size[".data"] + size[".bss"] + size[".uninit"]
        printf "vector_table %6d  text %6d  rodata %6d  data %6d  bss %6d  uninit %6d\n",
            size[".vector_table"], size[".text"], size[".rodata"], size[".data"], size[".bss"], size[".uninit"]
        printf "flash %7d bytes (%5.1f KiB of %d KiB allowed)\n", flash, flash / 1024, flash_limit / 1024
        printf "ram   %7d bytes (%5.1f KiB of %d KiB allowed; the stack comes on top)\n", ram, ram / 1024, ram_limit / 1024
        if (flash > flash_limit) { print "size.sh: flash over budget" > "/dev/stderr"; failed = 1 }
        if (ram > ram_limit) { print "size.sh: static RAM over budget" > "/dev/stderr"; failed = 1 }
        exit failed
    }'
