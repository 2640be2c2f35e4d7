#!/usr/bin/env bash
# The load benchmark: bench/run.sh [flood|steady|backlog|scaling|all]
#
# Builds the gateway (`rackwatch-e2e`) and `rackwatch-bench` in release, then runs the scenarios against
# a real Mosquitto and a real VictoriaMetrics on loopback. Results: bench/results/<scenario>.md and
# bench/results/README.md. Development knobs (environment): BENCH_FLOOD_SECS (30), BENCH_FLOOD_NODES (40),
# BENCH_STEADY_NODES (10000), BENCH_STEADY_SECS (180), BENCH_BACKLOG_NODES (10000),
# BENCH_BACKLOG_SECS (600: the outage; the recorded run uses 600), BENCH_READINGS (10 a message),
# BENCH_FLOOD_CONNECTIONS (4), BENCH_STEADY_CONNECTIONS (10), BENCH_SCALING_NODES (1000,10000,50000),
# BENCH_SCALING_SECS (120 a step), BENCH_SCALING_CONNECTIONS (10 per 10,000 nodes), BENCH_TRACE_SECS (10:
# perf trace -s after each measured window; 0: off), BENCH_PROFILE (1: profile a missed flood
# target with perf), BENCH_RESULTS_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."
scenario="${1:-all}"
case "$scenario" in
  flood|steady|backlog|scaling|all) ;;
  *) echo "usage: bench/run.sh [flood|steady|backlog|scaling|all]" >&2; exit 2 ;;
esac

# Mosquitto, VictoriaMetrics, perf for the profile of a missed target, and the toolchain's parts.
bash tests/setup.sh --bench

# Our own target folder: no lock contention with other builds in the workspace.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-bench}"
cargo build --release --locked -p rackwatch-tests --bin rackwatch-e2e --bin rackwatch-bench

# Publishers, the broker and the gateway hold many sockets; take the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Temporary folders (spool, broker persistence, database) on the same disk as the build, never tmpfs:
# the spool's fdatasync must reach a real disk for "durable spool on" to mean it.
export TMPDIR="${BENCH_TMPDIR:-$CARGO_TARGET_DIR/bench-tmp}"
mkdir -p "$TMPDIR"
export BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$PWD/bench/results}"
BENCH_RUSTC="$(rustc --version)"
export BENCH_RUSTC

exec "$CARGO_TARGET_DIR/release/rackwatch-bench" "$scenario"
