//! The history beside a database: with `[influxdb]` configured the database drains the spool, and
//! the gateway's own history (the dashboard's charts, the forecast) is fed from ingest's
//! observations instead, one bounded queue like the alert engine's and the dashboard's. A full
//! queue drops observations for the history only (counted as `rackwatch_observations_dropped_total`);
//! the database still gets every point from the spool.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::HistoryLimits;
use super::drain::{FLUSH_EVERY, HistoryStatus, Store};
use crate::events::Metrics;
use crate::model::{Observation, Sample};

/// Observations taken from the queue at a time, at most.
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

/// Records the samples of every observation until ingest is gone, then writes what it holds.
/// Blocks on the history's writes (fsync): run it on its own thread.
///
/// The samples are rolled up in memory and written once per [`FLUSH_EVERY`] (see
/// [`super::rollup`]): one transaction a minute instead of one per batch of observations.
pub fn run(feed: HistoryFeed) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            feed.status.off(&format!(
                "history unavailable: cannot start its thread's timer: {e}"
            ));
            return;
        }
    };
    runtime.block_on(record(feed));
}

async fn record(feed: HistoryFeed) {
    let HistoryFeed {
        mut observations,
        dir,
        limits,
        metrics,
        status,
    } = feed;
    let mut store = Store::new(dir, limits, status, metrics);
    store.open();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // Wake at least once per flush interval, so a site gone quiet still gets its minutes written.
        match tokio::time::timeout(FLUSH_EVERY, observations.recv()).await {
            Ok(Some(first)) => {
                batch.clear();
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    let Ok(next) = observations.try_recv() else { break };
                    batch.push(next);
                }
                store.add(samples(&batch));
            }
            Ok(None) => break,
            Err(_quiet) => {}
        }
        store.flush_when_due();
        store.prune_when_due();
    }
    store.flush();
}

fn samples(observations: &[Observation]) -> impl Iterator<Item = &Sample> {
    observations.iter().flat_map(|observation| match observation {
        Observation::Samples(samples) => samples.as_ref(),
        _ => &[],
    })
}

#[cfg(test)]
mod tests {
    use rackwatch_protocols::{ChannelName, Label, NodeId, Quantity, ReadingStatus};

    use super::*;
    use crate::model::{Measure, Position, Series, SeriesScope, now_ms};
    use crate::sink::history::{History, Resolution};

    /// A sample of rack `hall-a.r01.a03`'s inlet: history series `rack/hall-a.r01.a03/inlet`.
    fn inlet(ts_ms: i64, value: f64) -> Sample {
        Sample {
            series: Arc::new(Series {
                scope: SeriesScope::Rack(Measure::Inlet),
                node: NodeId::new(crate::model::DERIVED_NODE).unwrap(),
                channel: ChannelName::new("inlet").unwrap(),
                quantity: Quantity::Temperature,
                placement: None,
                position: Arc::new(Position {
                    room: Some(Label::new("hall-a").unwrap()),
                    row: Some(Label::new("r01").unwrap()),
                    rack: Some(Label::new("a03").unwrap()),
                }),
                id: crate::model::SeriesId::next(),
                line_tags: Arc::from([]),
            }),
            value: Some(value),
            status: ReadingStatus::Ok,
            timestamp_ms: ts_ms,
            received_ms: ts_ms,
        }
    }

    #[test]
    fn charts_see_the_rolled_up_minute_before_it_is_written_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let status = HistoryStatus::default();
        let mut store = Store::new(
            dir.path().to_path_buf(),
            HistoryLimits::default(),
            status.clone(),
            Arc::clone(&metrics),
        );
        store.open();
        let minute = Resolution::Minute.bucket_start(now_ms()) - 60_000;
        let seen = |resolution| {
            status
                .range("rack/hall-a.r01.a03/inlet", 0, i64::MAX, resolution)
                .unwrap()
                .iter()
                .map(|b| (b.min, b.max, b.count))
                .collect::<Vec<_>>()
        };
        store.add([inlet(minute + 1_000, 21.0), inlet(minute + 2_000, 25.0)].iter());
        assert_eq!(seen(Resolution::Minute), vec![(21.0, 25.0, 2)], "held in memory");
        assert_eq!(metrics.history_samples_recorded.get(), 0, "not written yet");
        store.flush();
        assert_eq!(metrics.history_samples_recorded.get(), 2);
        // The same minute goes on after the flush: the store's bucket and memory's are one.
        store.add([inlet(minute + 3_000, 19.0)].iter());
        assert_eq!(seen(Resolution::Minute), vec![(19.0, 25.0, 3)]);
        assert_eq!(seen(Resolution::Hour), vec![(19.0, 25.0, 3)]);
        store.flush();
        drop(store);
        drop(status);
        // What was flushed survives a reopen, whole.
        let reopened = History::open(dir.path(), HistoryLimits::default()).unwrap();
        let stored = reopened
            .range("rack/hall-a.r01.a03/inlet", 0, i64::MAX, Resolution::Minute)
            .unwrap();
        assert_eq!(
            stored
                .iter()
                .map(|b| (b.min, b.max, b.sum, b.count))
                .collect::<Vec<_>>(),
            vec![(19.0, 25.0, 65.0, 3)]
        );
    }

    #[test]
    fn a_history_that_cannot_open_drops_the_rolled_up_minutes_counted() {
        let blocker = tempfile::NamedTempFile::new().unwrap();
        let metrics = Arc::new(Metrics::new());
        let status = HistoryStatus::default();
        let mut store = Store::new(
            blocker.path().join("history"),
            HistoryLimits::default(),
            status.clone(),
            Arc::clone(&metrics),
        );
        store.open();
        store.add([inlet(60_000, 21.0), inlet(61_000, 22.0)].iter());
        store.flush();
        let dropped = metrics
            .history_samples_dropped
            .get_or_create(&crate::events::ReasonLabel {
                reason: "unavailable",
            })
            .get();
        assert_eq!(dropped, 2);
        assert!(status.problem().is_some_and(|p| p.contains("history")));
        store.flush();
        assert_eq!(metrics.history_samples_recorded.get(), 0);
    }

    /// This thread's CPU time (user and system), from `/proc/thread-self/stat` in clock ticks.
    fn thread_cpu() -> std::time::Duration {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        // utime and stime: fields 14 and 15 of proc(5), 11 and 12 after the command's `)`.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        std::time::Duration::from_millis(ticks * 10)
    }

    /// 1,000 nodes of 10 channels in racks of 10 nodes: 10,000 channel series and 100 rack pools.
    fn site() -> Vec<Arc<Series>> {
        let mut series = Vec::new();
        for node in 0..1_000 {
            let position = Arc::new(Position {
                room: Some(Label::new("hall-a").unwrap()),
                row: Some(Label::new("r01").unwrap()),
                rack: Some(Label::new(&format!("a{:03}", node / 10)).unwrap()),
            });
            for channel in 0..10 {
                series.push(Arc::new(Series {
                    scope: SeriesScope::Probe,
                    node: NodeId::new(&format!("n{node:04}")).unwrap(),
                    channel: ChannelName::new(&format!("t{channel}")).unwrap(),
                    quantity: Quantity::Temperature,
                    placement: None,
                    position: Arc::clone(&position),
                    id: crate::model::SeriesId::next(),
                    line_tags: Arc::from([]),
                }));
            }
        }
        series
    }

    /// The feed's cost per reading: 100,000 readings over 10,000 series (10 rounds 10 s apart), in
    /// observations of 10 readings taken 64 at a time as `run` does. A profiling driver, not a
    /// check: `cargo test --release -p rackwatch-gateway --lib feed_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "profiling driver"]
    fn feed_cost_per_reading() {
        let dir = tempfile::tempdir().unwrap();
        let series = site();
        let metrics = Arc::new(Metrics::new());
        let status = HistoryStatus::default();
        let mut store = Store::new(
            dir.path().to_path_buf(),
            HistoryLimits::default(),
            status.clone(),
            Arc::clone(&metrics),
        );
        // Two passes of 10 rounds: the first creates the series' tables, the second is the
        // steady state measured (its minutes merge into stored hours).
        let start_ms = now_ms() - 200_000;
        let pass = |offset_ms: i64| -> Vec<Observation> {
            (0..10)
                .flat_map(|round| {
                    series.chunks(10).map(move |node| {
                        let samples: Vec<Sample> = node
                            .iter()
                            .map(|series| Sample {
                                series: Arc::clone(series),
                                value: Some(20.0 + f64::from(round)),
                                status: ReadingStatus::Ok,
                                timestamp_ms: offset_ms + i64::from(round) * 10_000,
                                received_ms: 0,
                            })
                            .collect();
                        Observation::Samples(samples.into())
                    })
                })
                .collect()
        };
        let mut feed = |observations: &[Observation]| {
            for batch in observations.chunks(MAX_BATCH) {
                store.add(samples(batch));
                store.flush_when_due();
                store.prune_when_due();
            }
            let rolled_up = thread_cpu();
            // 100,000 readings take well under a flush interval: write them as its flush would.
            store.flush();
            (rolled_up, thread_cpu())
        };
        feed(&pass(start_ms));
        let observations = pass(start_ms + 100_000);
        let began = thread_cpu();
        let (rolled_up, flushed) = feed(&observations);
        let elapsed = flushed - began;
        eprintln!(
            "CPU rolling up: {:?}, flushing: {:?}",
            rolled_up - began,
            flushed - rolled_up
        );
        drop(store);
        let readings = series.len() * 10;
        eprintln!(
            "{readings} readings in {elapsed:?} of CPU: {:.2} µs per reading, {} samples recorded",
            elapsed.as_secs_f64() * 1e6 / readings as f64,
            metrics.history_samples_recorded.get()
        );
        let buckets = status
            .range("rack/hall-a.r01.a007/temperature", 0, i64::MAX, Resolution::Hour)
            .unwrap();
        assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), 2_000);
    }
}
