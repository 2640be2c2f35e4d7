#!/usr/bin/env bash
# The layout check: no import circle between a crate's modules, no source file over 600 lines (test code
# left out). It reads the `crate::`, `super::`, `self::` and child-module paths of every file and prints
# each circle by its files; the rules are in tests/src/bin/rackwatch-layout.rs.
#
# Usage: tests/layout.sh [--report] FOLDER...   (exit 1 naming the offenders; --report prints only)
#
# tests/run.sh checks gateway/src and firmware/src.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p rackwatch-tests --bin rackwatch-layout
exec target/debug/rackwatch-layout "$@"
