//! The history beside a database: with `[influxdb]` configured the database drains the spool, and
//! the gateway's own history (the dashboard's charts, the forecast) is fed from ingest's
//! observations instead, one bounded queue like the alert engine's and the dashboard's. A full
//! queue drops observations for the history only (counted as `rackwatch_observations_dropped_total`);
//! the database still gets every point from the spool.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::HistoryLimits;
use super::drain::{HistoryStatus, Store};
use crate::events::Metrics;
use crate::model::Observation;
use crate::schema::read::{HistoryPoint, sample_history};

/// Observations taken per history transaction, at most.
const MAX_BATCH: usize = 64;

/// Everything the history feed needs.
#[derive(Debug)]
pub struct HistoryFeed {
    pub observations: mpsc::Receiver<Observation>,
    /// `[history] dir`.
    pub dir: PathBuf,
    pub limits: HistoryLimits,
    pub metrics: Arc<Metrics>,
    pub status: HistoryStatus,
}

/// Records the samples of every observation until ingest is gone. Blocks on the history's writes
/// (fsync): run it on its own thread.
pub fn run(feed: HistoryFeed) {
    let HistoryFeed {
        mut observations,
        dir,
        limits,
        metrics,
        status,
    } = feed;
    let mut store = Store::new(dir, limits, status, metrics);
    let mut points = Vec::new();
    while let Some(first) = observations.blocking_recv() {
        points.clear();
        take(&first, &mut points);
        // What queued up while the last batch was written goes in one transaction.
        for _ in 1..MAX_BATCH {
            let Ok(next) = observations.try_recv() else { break };
            take(&next, &mut points);
        }
        store.record(&points);
        store.prune_when_due();
    }
}

fn take(observation: &Observation, points: &mut Vec<HistoryPoint>) {
    if let Observation::Samples(samples) = observation {
        for sample in samples.iter() {
            sample_history(sample, points);
        }
    }
}
