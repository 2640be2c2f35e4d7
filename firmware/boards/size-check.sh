#!/usr/bin/env bash
# Flash and static RAM of a board's release image, from the section sizes llvm-size reports (llvm-tools
# component), against the board's budgets; fails when either is over. Each board's size.sh calls it.
# Usage: size-check.sh ELF FLASH_LIMIT_BYTES RAM_LIMIT_BYTES "FLASH SECTIONS" "RAM SECTIONS"
#   Sections that occupy flash: what is programmed (code, constants, .data's initial values, a boot
#   block); RAM: .data, .bss, .uninit (cortex-m-rt's link.x). .data counts in both.
set -euo pipefail

elf=$1 flash_limit=$2 ram_limit=$3 flash_sections=$4 ram_sections=$5
llvm_size=$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/host: //p')/bin/llvm-size
if [[ ! -x $llvm_size ]]; then
    # Any llvm-size reads these sections the same; the distribution's will do.
    llvm_size=$(command -v llvm-size || true)
fi
if [[ -z $llvm_size || ! -x $llvm_size ]]; then
    echo "size-check.sh: llvm-size missing: rustup component add llvm-tools" >&2
    exit 2
fi

"$llvm_size" -A "$elf" | awk -v flash_limit="$flash_limit" -v ram_limit="$ram_limit" \
    -v flash_sections="$flash_sections" -v ram_sections="$ram_sections" '
    { size[$1] = $2 }
    END {
        n = split(flash_sections, fs, " ")
        for (i = 1; i <= n; i++) { flash += size[fs[i]]; line = line sprintf("%s %d  ", fs[i], size[fs[i]]) }
        n = split(ram_sections, rs, " ")
        for (i = 1; i <= n; i++) {
            ram += size[rs[i]]
            if (index(" " flash_sections " ", " " rs[i] " ") == 0) line = line sprintf("%s %d  ", rs[i], size[rs[i]])
        }
        print line
        printf "flash %7d bytes (%6.1f KiB of %d KiB allowed)\n", flash, flash / 1024, flash_limit / 1024
        printf "ram   %7d bytes (%6.1f KiB of %d KiB allowed; the stack comes on top)\n", ram, ram / 1024, ram_limit / 1024
        if (flash > flash_limit) { print "size-check.sh: flash over budget" > "/dev/stderr"; failed = 1 }
        if (ram > ram_limit) { print "size-check.sh: static RAM over budget" > "/dev/stderr"; failed = 1 }
        exit failed
    }'
