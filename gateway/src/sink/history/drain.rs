//! The history as the spool's sink: when no `[influxdb]` is configured, the spool drains into the
//! gateway's own history instead of growing until its bound stops ingest.
//!
//! Each committed batch is read back into history samples ([`crate::schema::read`]) and recorded
//! in one transaction; then the spool's cursor moves past it. The history is a cache of what the
//! gateway saw, not the only copy that matters to ingest, so a history that cannot take a batch
//! (disk full, a corrupt file moved aside, a storage error) does not hold the spool back: the
//! batch's samples are counted as dropped (`rackwatch_history_samples_dropped_total{reason}`), the
//! status says why for the dashboard and `/health/ready`, the store is reopened at the next batch,
//! and ingest and alerts go on.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::rollup::{self, Rollup};
use super::{Bucket, History, HistoryError, HistoryLimits, Resolution, Sample, valid_key};
use crate::events::{Metrics, ReasonLabel};
use crate::model;
use crate::model::now_ms;
use crate::schema::read::{HistoryPoint, history_samples, sample_keys};
use crate::shutdown::Shutdown;
use crate::spool::{Batch, SpoolReader};

/// Lines read from the spool per history transaction.
const BATCH_LINES: usize = 5_000;

/// How often retention and the disk bound are enforced.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How often the history beside a database writes the minutes it rolled up in memory: a series
/// reporting every 10 s gives 6 samples a minute, written as one bucket. A crash loses at most
/// this much of the history (a cache: the database has every point).
pub(super) const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// How long a drain with nothing to do sleeps before it looks at the clock again (for pruning).
const IDLE_WAKE: Duration = Duration::from_secs(5);

/// The open history shared by the drain, which writes it, and the API, which reads it; with why
/// it is unavailable when it is.
#[derive(Debug, Clone, Default)]
pub struct HistoryStatus {
    store: Arc<Mutex<Option<History>>>,
    /// Minutes the feed rolled up and has not written yet; always locked after `store`.
    pending: Arc<Mutex<Rollup>>,
    unavailable: Arc<Mutex<Option<String>>>,
}

impl HistoryStatus {
    fn set(&self, problem: Option<String>) {
        *self.unavailable.lock().unwrap_or_else(PoisonError::into_inner) = problem;
    }

    /// The history is not in use here, and why: what the API answers.
    pub fn off(&self, why: &str) {
        self.set(Some(why.to_owned()));
    }

    /// Why the history takes no samples, or `None` when it does.
    pub fn problem(&self) -> Option<String> {
        self.unavailable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The buckets of `key` whose start lies in `[from_ms, to_ms)`, or why the history cannot say.
    pub fn range(
        &self,
        key: &str,
        from_ms: i64,
        to_ms: i64,
        resolution: Resolution,
    ) -> Result<Vec<Bucket>, String> {
        let store = self.store();
        let Some(history) = store.as_ref() else {
            return Err(self
                .problem()
                .unwrap_or_else(|| "history is not open yet".to_owned()));
        };
        let mut buckets = history
            .range(key, from_ms, to_ms, resolution)
            .map_err(|e| e.to_string())?;
        let pending = self.pending().range(key, from_ms, to_ms, resolution);
        rollup::merge_into(&mut buckets, resolution, pending.into_iter());
        Ok(buckets)
    }

    fn store(&self) -> MutexGuard<'_, Option<History>> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pending(&self) -> MutexGuard<'_, Rollup> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything the history drain needs.
#[derive(Debug)]
pub struct HistoryDrain {
    pub reader: SpoolReader,
    /// `[history] dir`.
    pub dir: PathBuf,
    pub limits: HistoryLimits,
    /// Signalled by ingest after every commit.
    pub committed: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub status: HistoryStatus,
    pub shutdown: Shutdown,
}

/// Drains the spool into the history until shutdown, and what is committed by then. Blocks on
/// the history's own writes (fsync): run it on its own thread (`Handle::block_on`).
pub async fn drain(task: HistoryDrain) {
    let HistoryDrain {
        mut reader,
        dir,
        limits,
        committed,
        metrics,
        status,
        mut shutdown,
    } = task;
    let mut store = Store::new(dir, limits, status, metrics);
    let mut batch = Batch::default();
    let mut points = Vec::new();
    loop {
        batch.body.clear();
        batch.lines = 0;
        batch.end = None;
        if let Err(e) = reader.read(&mut batch, BATCH_LINES) {
            tracing::error!("spool read failed: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        store
            .metrics
            .spool_pending_bytes
            .set(i64::try_from(reader.pending_bytes()).unwrap_or(i64::MAX));
        if batch.lines > 0 {
            points.clear();
            store.read_back(&batch.body, &mut points);
            store.record(&points);
        }
        if let Some(end) = batch.end
            && let Err(e) = reader.advance(end)
        {
            tracing::error!("spool cursor could not be saved: {e}");
        }
        store.prune_when_due();
        if batch.lines == 0 {
            if shutdown.is_shutdown() {
                return;
            }
            tokio::select! {
                () = committed.notified() => {}
                () = tokio::time::sleep(IDLE_WAKE) => {}
                () = shutdown.recv() => {}
            }
        }
    }
}

/// The history store, opened when first needed and again after it failed.
pub(super) struct Store {
    dir: PathBuf,
    limits: HistoryLimits,
    status: HistoryStatus,
    metrics: Arc<Metrics>,
    last_prune: Option<Instant>,
    last_flush: Instant,
    /// The buffer a sample's series keys are built in.
    key: String,
}

impl Store {
    pub(super) fn new(
        dir: PathBuf,
        limits: HistoryLimits,
        status: HistoryStatus,
        metrics: Arc<Metrics>,
    ) -> Self {
        Store {
            dir,
            limits,
            status,
            metrics,
            last_prune: None,
            last_flush: Instant::now(),
            key: String::new(),
        }
    }

    /// The history samples of every line of `body`; a line that does not read back is counted.
    fn read_back(&self, body: &[u8], points: &mut Vec<HistoryPoint>) {
        for line in body.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
            if let Err(e) = history_samples(line, points) {
                self.dropped("unreadable", 1);
                tracing::debug!("spooled line feeds no history: {e}");
            }
        }
    }

    /// Runs `f` on the open history, opening it first if needed; a failure closes it (reopened
    /// next time: a corrupt file was moved aside, a full disk may have room again) and says why.
    fn with_history<T>(&self, f: impl FnOnce(&mut History) -> Result<T, HistoryError>) -> Option<T> {
        let mut store = self.status.store();
        if store.is_none() {
            match History::open(&self.dir, self.limits.clone()) {
                Ok(history) => *store = Some(history),
                Err(e) => {
                    drop(store);
                    self.unavailable(&e.to_string());
                    return None;
                }
            }
        }
        let result = f(store.as_mut()?);
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                *store = None;
                drop(store);
                self.unavailable(&e.to_string());
                None
            }
        }
    }

    pub(super) fn record(&mut self, points: &[HistoryPoint]) {
        if points.is_empty() {
            return;
        }
        let samples: Vec<Sample<'_>> = points
            .iter()
            .map(|p| Sample {
                key: &p.key,
                ts_ms: p.ts_ms,
                value: p.value,
            })
            .collect();
        match self.with_history(|history| history.record_batch(&samples)) {
            Some(outcome) => {
                self.status.set(None);
                self.metrics
                    .history_samples_recorded
                    .inc_by(outcome.recorded as u64);
                self.dropped("not_finite", outcome.not_finite);
            }
            None => self.dropped("unavailable", samples.len()),
        }
    }

    /// Opens the history now rather than at the first write, so the API answers from the start
    /// (a failure says why, and the next write tries again).
    pub(super) fn open(&self) {
        let _ = self.with_history(|_| Ok(()));
    }

    /// Rolls the samples' history series up in memory (what the history beside a database does):
    /// they reach the store at the next [`Store::flush`], and the API sees them at once.
    pub(super) fn add<'a>(&mut self, samples: impl Iterator<Item = &'a model::Sample>) {
        let mut invalid = 0;
        let mut pending = self.status.pending();
        for sample in samples {
            sample_keys(sample, &mut self.key, |key, ts_ms, value| {
                if valid_key(key) {
                    pending.add(key, ts_ms, value);
                } else {
                    invalid += 1;
                }
            });
        }
        drop(pending);
        self.dropped("invalid_key", invalid);
    }

    /// Writes the rolled-up minutes when [`FLUSH_EVERY`] has passed since the last write.
    pub(super) fn flush_when_due(&mut self) {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Writes the rolled-up minutes in one transaction. The store's lock is held from before the
    /// minutes leave memory until they are committed, so a reader finds them in one place or the
    /// other, never in neither. A store that cannot take them drops them (counted).
    pub(super) fn flush(&mut self) {
        self.last_flush = Instant::now();
        let samples = self.status.pending().samples();
        if samples == 0 {
            return;
        }
        let status = self.status.clone();
        let written = self.with_history(|history| {
            let mut pending = status.pending();
            let written = history.record_rollup(&pending);
            pending.clear();
            written
        });
        if written.is_some() {
            self.status.set(None);
            self.metrics.history_samples_recorded.inc_by(samples as u64);
        } else {
            self.status.pending().clear();
            self.dropped("unavailable", samples);
        }
    }

    pub(super) fn prune_when_due(&mut self) {
        if self.last_prune.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.last_prune = Some(Instant::now());
        let _ = self.with_history(|history| history.prune(now_ms()));
    }

    fn unavailable(&self, reason: &str) {
        if self.status.problem().as_deref() != Some(reason) {
            tracing::warn!("{reason}; ingest and alerts go on, the spool keeps draining");
        }
        self.status.set(Some(reason.to_owned()));
    }

    fn dropped(&self, reason: &'static str, count: usize) {
        if count > 0 {
            self.metrics
                .history_samples_dropped
                .get_or_create(&ReasonLabel { reason })
                .inc_by(count as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use rackwatch_protocols::Label;

    use super::*;
    use crate::model::Position;
    use crate::schema::{self, RackMeasures};
    use crate::shutdown;
    use crate::spool::{self, Limits};

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 20,
        segment_bytes: 4096,
    };
    const MINUTE: i64 = 60_000;

    fn position() -> Position {
        Position {
            room: Some(Label::new("hall-a").unwrap()),
            row: Some(Label::new("r01").unwrap()),
            rack: Some(Label::new("a03").unwrap()),
        }
    }

    /// The start of the minute before this one: samples there are inside the retention (the drain
    /// prunes after its first batch).
    fn last_minute() -> i64 {
        (now_ms() / MINUTE - 1) * MINUTE
    }

    /// Spools rack points with these inlets, one a second from `base`, and drains them with
    /// shutdown already asked: the drain takes what is committed, then returns.
    fn spool_and_drain(
        spool_dir: &std::path::Path,
        history_dir: PathBuf,
        base: i64,
        inlets: &[f64],
    ) -> Drained {
        let (mut writer, reader) = spool::open(spool_dir, LIMITS, |_| {}).unwrap();
        for (i, inlet) in inlets.iter().enumerate() {
            let mut lines = Vec::new();
            let measures = RackMeasures {
                inlet: Some(*inlet),
                ..RackMeasures::default()
            };
            let ts = base + i64::try_from(i).unwrap() * 1_000;
            schema::rack(&mut lines, "fra1", &position(), &measures, ts);
            schema::node_status(&mut lines, "fra1", "r01-n1", true, 1, ts);
            writer.append(None, &lines).unwrap();
        }
        writer.commit().unwrap();
        let (trigger, shutdown) = shutdown::channel();
        trigger.trigger();
        let metrics = Arc::new(Metrics::new());
        let status = HistoryStatus::default();
        let task = HistoryDrain {
            reader,
            dir: history_dir,
            limits: HistoryLimits::default(),
            committed: Arc::new(Notify::new()),
            metrics: Arc::clone(&metrics),
            status: status.clone(),
            shutdown,
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(drain(task));
        drop(writer);
        let (_, reader) = spool::open(spool_dir, LIMITS, |_| {}).unwrap();
        Drained {
            pending: reader.pending_bytes(),
            metrics,
            status,
        }
    }

    struct Drained {
        pending: u64,
        metrics: Arc<Metrics>,
        status: HistoryStatus,
    }

    fn dropped(metrics: &Metrics, reason: &'static str) -> u64 {
        metrics
            .history_samples_dropped
            .get_or_create(&ReasonLabel { reason })
            .get()
    }

    #[test]
    fn the_spool_drains_into_minute_rollups_of_the_rack() {
        let spool_dir = tempfile::tempdir().unwrap();
        let history_dir = tempfile::tempdir().unwrap();
        let base = last_minute();
        let drained = spool_and_drain(
            spool_dir.path(),
            history_dir.path().to_path_buf(),
            base,
            &[21.0, 23.0, 25.0],
        );
        assert_eq!(drained.pending, 0, "the spool is drained");
        assert_eq!(drained.status.problem(), None);
        assert_eq!(drained.metrics.history_samples_recorded.get(), 3);
        let buckets = drained
            .status
            .range(
                "rack/hall-a.r01.a03/inlet",
                0,
                now_ms() + MINUTE,
                Resolution::Minute,
            )
            .unwrap();
        assert_eq!(buckets.len(), 1);
        let bucket = &buckets[0];
        assert_eq!(
            (bucket.start_ms, bucket.min, bucket.max, bucket.count),
            (base, 21.0, 25.0, 3)
        );
        assert!((bucket.mean() - 23.0).abs() < 1e-9);
    }

    #[test]
    fn a_history_that_cannot_open_still_lets_the_spool_drain_and_says_why() {
        let spool_dir = tempfile::tempdir().unwrap();
        let blocker = tempfile::NamedTempFile::new().unwrap();
        // A file where the history's folder should be: it can never be created.
        let history_dir = blocker.path().join("history");
        let drained = spool_and_drain(spool_dir.path(), history_dir, last_minute(), &[21.0, 22.0]);
        assert_eq!(drained.pending, 0, "ingest is never held back by the history");
        assert_eq!(drained.metrics.history_samples_recorded.get(), 0);
        assert_eq!(dropped(&drained.metrics, "unavailable"), 2);
        let problem = drained
            .status
            .problem()
            .expect("the status says history is unavailable");
        assert!(problem.contains("history"), "{problem}");
    }
}
