//! The gateway's own history: per series, 1-minute rollups kept 30 days and 1-hour rollups kept
//! 13 months, in one embedded database file that survives a restart.
//!
//! Why `redb`: it is pure Rust with no dependencies of its own (it builds in seconds on the
//! gateway's 2-core build machines, no C toolchain as `rusqlite` or `rocksdb` would need), and
//! every commit is an ACID transaction over copy-on-write B-trees with a checksummed commit slot,
//! so a crash or power cut leaves the last committed batch readable and nothing half-written.
//! `sled` was left out (unmaintained beta, file format unstable), `fjall` (an LSM tree) for
//! writing in the background with more threads than a small gateway should spend on history.
//!
//! Layout: one table per resolution (`minutes`, `hours`), keyed by (series, bucket start in Unix
//! milliseconds), holding `(min, max, sum, count)`; a `format` table holds the layout's version,
//! and a file of an older layout is moved aside (`*.old-format-<ms>`) and started over. Keys
//! ordered by series make a chart's range query one B-tree walk; a write of 100,000 series
//! touches the pages of two trees instead of 200,000 tables' roots (a table per series cost
//! 33 µs per series and flush, most of it copying each table's page). Retention and the disk
//! bound pass over a whole table, which they do at most every 10 minutes.
//!
//! The store is a cache of what the gateway saw, never the only copy that matters: an empty or
//! deleted file starts over, and a file that cannot be read is moved aside (`*.corrupt-<ms>`)
//! with [`HistoryError::Corrupt`], so the caller shows "history unavailable" and opens again
//! to start fresh, while ingest and alerts go on.
//!
//! redb checks its commit slots but can still reach an `unreachable!()` when a data page is
//! damaged (found by `a_database_with_damaged_data_pages_is_moved_aside_not_a_panic`), so every
//! call into it runs under `catch_unwind`: a panic while opening counts as a corrupt file, one
//! later as [`HistoryError::Internal`], after which the caller drops the store and reopens it.
//!
//! Disk bound (`max_mb`): after each [`History::prune`] and whenever a batch leaves the file
//! above the bound, the oldest minute buckets of every series are dropped first (an eighth of
//! the kept span at a time) until the data fits in 80 % of the bound, then the oldest hour
//! buckets if minutes alone were not enough; then the file is compacted so its length, not only
//! its content, comes back under the bound. Hours outlive minutes because they are 60 times
//! smaller and carry the long charts.

mod bucket;
pub mod drain;
pub mod feed;
pub mod rollup;

pub use bucket::{Bucket, Resolution};

use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use bucket::StoredBucket;
use rollup::Rollup;

pub use crate::config::HistoryLimits;

/// The history file's name inside `[history] dir`.
pub const FILE_NAME: &str = "history.redb";

/// Longest series key accepted: keys are compact (`rack/hall-a.r01.a03/inlet`, `row/hall-a.r01/power`), not free text.
pub const MAX_KEY_LEN: usize = 96;

pub use crate::config::history::MIN_MAX_MB;

/// The share of `max_mb` the data is brought back to once the bound is exceeded, so the next
/// batches do not trigger another round straight away.
const REFILL_HEADROOM: f64 = 0.8;

/// redb's page cache, its write buffer included (redb keeps the write buffer at or under half of
/// it and spills the rest to the file). redb's default of 1 GiB made the gateway's RSS 629 MiB at
/// 100,000 series; the history is written once a minute from the rollup, so the cache serves
/// little: the B-tree's upper levels and a chart's range walk. 4 MiB is 1,024 pages of 4 KiB;
/// what misses it comes from the kernel's page cache (a `pread`), not the disk.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The layout of the file: 2 is one table per resolution keyed by (series, bucket start); 1 (no
/// `format` table) was a table per series and resolution.
const FORMAT_VERSION: u32 = 2;

const FORMAT: TableDefinition<&str, u32> = TableDefinition::new("format");

/// At most this many drop rounds per enforcement: each drops an eighth of the kept span, so
/// 32 rounds bring any history down to a few hours.
const MAX_DROP_ROUNDS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(
        "history unavailable: {path} cannot be read ({reason}); moved aside to {moved_to}, the next open starts a fresh store"
    )]
    Corrupt {
        path: PathBuf,
        moved_to: PathBuf,
        reason: String,
    },
    #[error("history unavailable: {path} is unreadable ({reason}) and could not be moved aside: {source}")]
    CannotMoveAside {
        path: PathBuf,
        reason: String,
        source: std::io::Error,
    },
    #[error("history unavailable: cannot create {dir}: {source}")]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("history unavailable: {0}")]
    Storage(#[from] redb::Error),
    #[error("history unavailable: the store failed inside redb ({0}); drop it and open it again")]
    Internal(String),
    #[error("history.max_mb = {0} is below the minimum of {MIN_MAX_MB}")]
    BoundTooSmall(u64),
    #[error(
        "history series key `{0}` must be 1 to {MAX_KEY_LEN} bytes of letters, digits, '/', '_', '-', '.'"
    )]
    InvalidKey(String),
}

/// Runs a call into redb, turning a panic inside it into [`HistoryError::Internal`].
fn guarded<T>(call: impl FnOnce() -> Result<T, HistoryError>) -> Result<T, HistoryError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        Err(HistoryError::Internal(message))
    })
}

fn storage<E: Into<redb::Error>>(error: E) -> HistoryError {
    HistoryError::Storage(error.into())
}

/// A sample to record: the series, its time and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    pub key: &'a str,
    pub ts_ms: i64,
    pub value: f64,
}

/// What a batch did: samples that are not finite (NaN, ±∞) are not recorded, so that one
/// sensor fault cannot poison a bucket's min, max and mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    pub recorded: usize,
    pub not_finite: usize,
}

/// The open history store. One writer: the gateway keeps it on the thread that feeds it.
#[derive(Debug)]
pub struct History {
    db: Database,
    path: PathBuf,
    limits: HistoryLimits,
}

impl History {
    /// Opens `dir/history.redb`, creating the directory and the file when they do not exist.
    pub fn open(dir: &Path, limits: HistoryLimits) -> Result<History, HistoryError> {
        if limits.max_mb < MIN_MAX_MB {
            return Err(HistoryError::BoundTooSmall(limits.max_mb));
        }
        std::fs::create_dir_all(dir).map_err(|source| HistoryError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let mut db = open_database(&path)?;
        if !guarded(|| current_format(&db))? {
            // A file of an older layout: the store is a cache, so it is set aside and started over.
            drop(db);
            let moved_to = aside_path(&path, "old-format");
            std::fs::rename(&path, &moved_to).map_err(|source| HistoryError::CannotMoveAside {
                path: path.clone(),
                reason: "older layout".to_owned(),
                source,
            })?;
            tracing::warn!(
                "history file of an older layout moved aside to {}; a fresh one starts",
                moved_to.display()
            );
            db = open_database(&path)?;
            guarded(|| current_format(&db))?;
        }
        Ok(History { db, path, limits })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one sample (one transaction: prefer [`History::record_batch`]).
    pub fn record(&mut self, key: &str, ts_ms: i64, value: f64) -> Result<BatchOutcome, HistoryError> {
        self.record_batch(&[Sample { key, ts_ms, value }])
    }

    /// Records a batch in one transaction: all of it is kept, or none of it if the gateway
    /// stops before the commit returns.
    pub fn record_batch(&mut self, samples: &[Sample<'_>]) -> Result<BatchOutcome, HistoryError> {
        guarded(|| self.record_batch_unguarded(samples))
    }

    fn record_batch_unguarded(&mut self, samples: &[Sample<'_>]) -> Result<BatchOutcome, HistoryError> {
        if let Some(bad) = samples.iter().find(|s| !valid_key(s.key)) {
            return Err(HistoryError::InvalidKey(bad.key.to_owned()));
        }
        let mut outcome = BatchOutcome::default();
        let mut rollup = Rollup::default();
        for sample in samples {
            if sample.value.is_finite() {
                rollup.add(sample.key, sample.ts_ms, sample.value);
                outcome.recorded += 1;
            } else {
                outcome.not_finite += 1;
            }
        }
        self.write(&rollup)?;
        Ok(outcome)
    }

    /// Records the minutes rolled up in memory in one transaction, merging them with the stored
    /// minutes and hours they fall in. Every key must be valid ([`valid_key`]).
    pub fn record_rollup(&mut self, rollup: &Rollup) -> Result<(), HistoryError> {
        guarded(|| self.write(rollup))
    }

    /// One transaction: per series, its minutes, then the hours they make up (one table visit
    /// per series and resolution, however many samples the minutes hold).
    fn write(&mut self, rollup: &Rollup) -> Result<(), HistoryError> {
        if rollup.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(Durability::Immediate).map_err(storage)?;
        {
            let mut minute_table = txn.open_table(table(Resolution::Minute)).map_err(storage)?;
            let mut hour_table = txn.open_table(table(Resolution::Hour)).map_err(storage)?;
            for (key, minutes) in rollup.series() {
                let mut hours = Vec::new();
                rollup::merge_into(&mut hours, Resolution::Hour, minutes.iter().copied());
                merge_stored(&mut minute_table, key, minutes)?;
                merge_stored(&mut hour_table, key, hours)?;
            }
        }
        txn.commit().map_err(storage)?;
        if self.file_len() > self.limits.max_bytes() {
            self.enforce_bound()?;
        }
        Ok(())
    }

    /// The buckets of `key` at `resolution` whose start lies in `[from_ms, to_ms)`, oldest first.
    /// A series never recorded has no buckets.
    pub fn range(
        &self,
        key: &str,
        from_ms: i64,
        to_ms: i64,
        resolution: Resolution,
    ) -> Result<Vec<Bucket>, HistoryError> {
        guarded(|| self.range_unguarded(key, from_ms, to_ms, resolution))
    }

    fn range_unguarded(
        &self,
        key: &str,
        from_ms: i64,
        to_ms: i64,
        resolution: Resolution,
    ) -> Result<Vec<Bucket>, HistoryError> {
        if !valid_key(key) {
            return Err(HistoryError::InvalidKey(key.to_owned()));
        }
        let txn = self.db.begin_read().map_err(storage)?;
        let table = match txn.open_table(table(resolution)) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(storage(error)),
        };
        let mut buckets = Vec::new();
        for entry in table.range((key, from_ms)..(key, to_ms)).map_err(storage)? {
            let (stored_key, value) = entry.map_err(storage)?;
            let (_, start) = stored_key.value();
            buckets.push(Bucket::from_stored(start, value.value()));
        }
        Ok(buckets)
    }

    /// Drops the buckets older than each resolution's retention, then enforces the disk bound.
    pub fn prune(&mut self, now_ms: i64) -> Result<(), HistoryError> {
        guarded(|| self.prune_unguarded(now_ms))
    }

    fn prune_unguarded(&mut self, now_ms: i64) -> Result<(), HistoryError> {
        for resolution in [Resolution::Minute, Resolution::Hour] {
            let kept_ms = i64::try_from(retention(&self.limits, resolution).as_millis()).unwrap_or(i64::MAX);
            self.drop_before(resolution, now_ms.saturating_sub(kept_ms))?;
        }
        self.enforce_bound()
    }

    /// Drops the oldest buckets (minutes first, then hours) until the data fits in 80 % of
    /// `max_mb`, then compacts the file if its length is still above the bound.
    fn enforce_bound(&mut self) -> Result<(), HistoryError> {
        let target = (self.limits.max_bytes() as f64 * REFILL_HEADROOM) as u64;
        for _ in 0..MAX_DROP_ROUNDS {
            if self.used_bytes()? <= target {
                break;
            }
            let resolution = if self.oldest_start(Resolution::Minute)?.is_some() {
                Resolution::Minute
            } else {
                Resolution::Hour
            };
            let Some((oldest, newest)) = self.oldest_start(resolution)?.zip(self.newest_start(resolution)?)
            else {
                break;
            };
            let step = ((newest - oldest) / 8).max(resolution.width_ms());
            self.drop_before(resolution, oldest.saturating_add(step))?;
        }
        if self.file_len() > self.limits.max_bytes() {
            self.db.compact().map_err(storage)?;
        }
        Ok(())
    }

    /// Removes every bucket of `resolution` that starts before `cutoff_ms`, in every series (one
    /// pass over the resolution's table: keys are ordered by series first).
    fn drop_before(&mut self, resolution: Resolution, cutoff_ms: i64) -> Result<(), HistoryError> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(table(resolution)).map_err(storage)?;
            table
                .retain(|(_, start), _| start >= cutoff_ms)
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    fn oldest_start(&self, resolution: Resolution) -> Result<Option<i64>, HistoryError> {
        self.edge_start(resolution, Edge::Oldest)
    }

    fn newest_start(&self, resolution: Resolution) -> Result<Option<i64>, HistoryError> {
        self.edge_start(resolution, Edge::Newest)
    }

    /// The oldest (or newest) bucket start of `resolution` across all series: a pass over the
    /// table, run only while the disk bound is enforced.
    fn edge_start(&self, resolution: Resolution, edge: Edge) -> Result<Option<i64>, HistoryError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = match txn.open_table(table(resolution)) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(storage(error)),
        };
        let mut found: Option<i64> = None;
        for entry in table.iter().map_err(storage)? {
            let (key, _) = entry.map_err(storage)?;
            let (_, start) = key.value();
            found = Some(match (found, edge) {
                (None, _) => start,
                (Some(seen), Edge::Oldest) => seen.min(start),
                (Some(seen), Edge::Newest) => seen.max(start),
            });
        }
        Ok(found)
    }

    /// Bytes held by live pages (data, metadata and not-yet-reused fragments).
    fn used_bytes(&self) -> Result<u64, HistoryError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let stats = txn.stats().map_err(storage)?;
        txn.abort().map_err(storage)?;
        Ok(stats.allocated_pages().saturating_mul(stats.page_size() as u64))
    }

    /// The file's length on disk: what `max_mb` bounds.
    pub fn file_len(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |meta| meta.len())
    }
}

#[derive(Debug, Clone, Copy)]
enum Edge {
    Oldest,
    Newest,
}

/// The table of `resolution`'s buckets, keyed by series, then bucket start.
fn table(resolution: Resolution) -> TableDefinition<'static, (&'static str, i64), StoredBucket> {
    TableDefinition::new(resolution.table_name())
}

/// Merges `buckets` of series `key` into `table`, each with the stored bucket of the same start.
fn merge_stored(
    table: &mut redb::Table<'_, (&'static str, i64), StoredBucket>,
    key: &str,
    buckets: Vec<Bucket>,
) -> Result<(), HistoryError> {
    for mut bucket in buckets {
        // Most minutes are new to the store: insert first and merge only when one was there,
        // one B-tree walk instead of a get and an insert.
        let old = table
            .insert((key, bucket.start_ms), bucket.to_stored())
            .map_err(storage)?
            .map(|old| Bucket::from_stored(bucket.start_ms, old.value()));
        if let Some(old) = old {
            bucket.merge(&old);
            table
                .insert((key, bucket.start_ms), bucket.to_stored())
                .map_err(storage)?;
        }
    }
    Ok(())
}

/// How long `resolution`'s buckets are kept.
fn retention(limits: &HistoryLimits, resolution: Resolution) -> Duration {
    match resolution {
        Resolution::Minute => limits.minute_retention,
        Resolution::Hour => limits.hour_retention,
    }
}

pub(super) fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'))
}

/// Errors that mean the file's content is not a readable redb database (as opposed to the
/// file being locked by another gateway, or the disk failing).
fn is_unreadable_file(error: &redb::DatabaseError) -> bool {
    match error {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_))
        | redb::DatabaseError::UpgradeRequired(_)
        | redb::DatabaseError::RepairAborted => true,
        // A file that is not redb at all ("magic number mismatch").
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            io.kind() == std::io::ErrorKind::InvalidData
        }
        _ => false,
    }
}

fn open_database(path: &Path) -> Result<Database, HistoryError> {
    let opened = guarded(|| {
        Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|error| {
                if is_unreadable_file(&error) {
                    HistoryError::Internal(error.to_string())
                } else {
                    storage(error)
                }
            })
    });
    match opened {
        Err(HistoryError::Internal(reason)) => Err(move_aside(path, reason)),
        other => other,
    }
}

/// Whether `db` has the current layout ([`FORMAT_VERSION`]); an empty file is given it.
fn current_format(db: &Database) -> Result<bool, HistoryError> {
    let txn = db.begin_read().map_err(storage)?;
    let has_tables = txn.list_tables().map_err(storage)?.next().is_some();
    let version = match txn.open_table(FORMAT) {
        Ok(table) => table.get("version").map_err(storage)?.map(|v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(error) => return Err(storage(error)),
    };
    drop(txn);
    match version {
        Some(version) => Ok(version == FORMAT_VERSION),
        None if has_tables => Ok(false),
        None => {
            let txn = db.begin_write().map_err(storage)?;
            txn.open_table(FORMAT)
                .map_err(storage)?
                .insert("version", FORMAT_VERSION)
                .map_err(storage)?;
            txn.commit().map_err(storage)?;
            Ok(true)
        }
    }
}

/// `path` with `.<tag>-<unix ms>` appended: where a file set aside goes.
fn aside_path(path: &Path, tag: &str) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let mut moved_to = path.as_os_str().to_owned();
    moved_to.push(format!(".{tag}-{stamp}"));
    PathBuf::from(moved_to)
}

/// Moves an unreadable file aside so the next open starts a fresh store, keeping the old one
/// for a post-mortem instead of deleting it.
fn move_aside(path: &Path, reason: String) -> HistoryError {
    let moved_to = aside_path(path, "corrupt");
    match std::fs::rename(path, &moved_to) {
        Ok(()) => HistoryError::Corrupt {
            path: path.to_path_buf(),
            moved_to,
            reason,
        },
        Err(source) => HistoryError::CannotMoveAside {
            path: path.to_path_buf(),
            reason,
            source,
        },
    }
}

#[cfg(test)]
mod tests;
