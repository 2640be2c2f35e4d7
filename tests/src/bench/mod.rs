//! The load benchmark (`bench/run.sh [flood|steady|backlog|scaling|all]`): simulated nodes publish QoS 1
//! through a real Mosquitto into the release gateway, started as its own process exactly as the
//! end-to-end tests do, which spools durably and writes to a real VictoriaMetrics. It measures
//! throughput end to end, the gateway's CPU time per reading and peak RSS from `/proc`, latencies,
//! and counts readings lost and stored twice from the database, then writes `bench/results/`.
//!
//! Every load is bounded in count (rounds) and time; every wait has a deadline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "benchmark harness: a panic is a failed run, and it reports on stdout"
)]

mod backlog;
mod database;
mod load;
mod measured;
mod procfs;
mod profile;
mod report;
mod run;
mod scaling;
mod scenarios;
mod trace;

use backlog::backlog;
use report::{GATEWAY_SOURCE, gateway_source, results_dir, write_report, write_summary};
use scaling::scaling;
use scenarios::{flood, steady};

// Targets (from the issue). Never weakened: a miss is recorded as a miss.
pub(crate) const TARGET_FLOOD_READINGS_PER_SEC: f64 = 250_000.0;
pub(crate) const TARGET_CPU_US_PER_READING: f64 = 2.0;
/// Under the flood messages come in full batches: less per reading is expected there.
pub(crate) const TARGET_FLOOD_CPU_US_PER_READING: f64 = 1.5;
pub(crate) const TARGET_RSS_MIB: f64 = 48.0;
pub(crate) const TARGET_ALERT_P99_MS: f64 = 10.0;
pub(crate) const TARGET_DRAIN_RATIO: f64 = 10.0;
pub(crate) const TARGET_WAKEUPS_PER_MESSAGE: f64 = 0.2;

/// The alert rule's trigger and clear thresholds (°C); ordinary readings stay below both.
pub(crate) const HOT: f64 = 30.0;
pub(crate) const COOL: f64 = 20.0;

pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

pub(crate) fn node_name(index: usize) -> String {
    format!("n{index:05}")
}

/// Runs the scenario named by the first argument (`flood`, `steady`, `backlog`, `scaling`, `all`,
/// `summary`).
pub fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let _ = GATEWAY_SOURCE.set(gateway_source());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let scenarios: Vec<&str> = match scenario.as_str() {
            "all" => vec!["flood", "steady", "backlog", "scaling"],
            // Only rewrites README.md from the scenarios' latest results.
            "summary" => {
                write_summary(&results_dir());
                return;
            }
            "flood" | "steady" | "backlog" | "scaling" => vec![scenario.as_str()],
            other => {
                eprintln!("unknown scenario `{other}`: flood, steady, backlog, scaling or all");
                std::process::exit(2);
            }
        };
        for name in scenarios {
            let report = match name {
                "flood" => flood().await,
                "steady" => steady().await,
                "backlog" => backlog().await,
                _ => scaling().await,
            };
            write_report(&report);
        }
    });
}
