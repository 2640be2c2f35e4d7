//! The durable spool between ingest and the database: what is in it has been acknowledged to the
//! broker, so it must survive crashes, restarts and database outages of hours.
//!
//! Layout: `dir/{id:020}.seg` segment files, appended in order, and `dir/cursor` (how far the
//! writer to the database has drained). A record on disk is
//!
//! ```text
//! len: u32 LE | crc32: u32 LE (of payload) | payload: len bytes
//! payload = 0x01 | node_len: u8 | node | boot: u32 LE | seq: u32 LE | anchor_ms: i64 LE | lines
//!         | 0x02 | lines                      (derived points, no sequence mark)
//! ```
//!
//! - Appends are kept in memory and made durable by [`SpoolWriter::commit`] (one positioned write
//!   and one `fdatasync` for many messages: group commit). Only then are the messages acknowledged
//!   to the broker.
//! - A commit writes at the segment's committed length, never "at the end": a failed or partial
//!   write (ENOSPC halfway through a record) is cut off again (`set_len`), the file reopened, and the
//!   same bytes written again at the same place on the next try. So a torn record can only ever be
//!   the tail of the last segment, left by a crash; [`open`] truncates it. Those messages were never
//!   acknowledged, so the broker delivers them again.
//! - A record that does not parse in the middle of a segment (the disk lied) is skipped by scanning
//!   for the next record whose CRC holds: it never costs the records after it.
//! - The cursor is written after each successful database write (rename, no fsync): after a crash
//!   it may lag, and the points after it are written again with the same timestamps, which InfluxDB
//!   stores once.
//! - When full (`spool.max_mb`, or the disk itself: ENOSPC, EDQUOT), appends or commits fail with
//!   [`SpoolError::Full`] / [`SpoolError::DiskFull`]: the pipeline then stops acknowledging, so the
//!   broker keeps the messages, until the writer has drained space. A fully drained active segment is
//!   sealed and a new one started, so the drained file is deleted and the disk frees itself.
//! - The folder is watched at every commit: removed, replaced by another folder, or without write
//!   permission, the commit fails with [`SpoolError::Folder`] and nothing is acknowledged. The
//!   writer and the reader hold every segment open, so what was committed is still drained; when the
//!   folder can be (re)created, every segment not yet drained is written into it again ("rehomed"),
//!   so a restart finds everything that was acknowledged.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::model::SequenceMark;

mod folder;
mod record;
use folder::FolderIdentity;
pub use record::Record;
use record::{HEADER, KIND_DERIVED, KIND_TELEMETRY, MAX_RECORD, parse_at, resync, scan};

/// The reader reads segments in windows of this size; a record always fits in one.
const READ_WINDOW: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool is full ({bytes} bytes of {max}); waiting for the database writer to drain it")]
    Full { bytes: u64, max: u64 },
    #[error("the disk under the spool is full ({0}); waiting for the database writer to drain it")]
    DiskFull(std::io::Error),
    #[error("spool folder {path}: {detail}")]
    Folder { path: String, detail: String },
    #[error("spool I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl SpoolError {
    /// ENOSPC and EDQUOT mean "full", like `spool.max_mb`: wait for the drain, count it as full.
    fn from_write(error: std::io::Error) -> Self {
        match error.raw_os_error() {
            Some(nix::libc::ENOSPC | nix::libc::EDQUOT) => SpoolError::DiskFull(error),
            _ => SpoolError::Io(error),
        }
    }

    /// True when the spool refuses for lack of space (its limit or the disk's).
    pub fn is_full(&self) -> bool {
        matches!(self, SpoolError::Full { .. } | SpoolError::DiskFull(_))
    }
}

/// Size limits of a spool.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub segment_bytes: u64,
}

#[derive(Debug, Clone)]
struct Segment {
    id: u64,
    /// Bytes made durable; the reader never reads past this.
    committed: u64,
    /// Bytes appended (committed or not).
    written: u64,
    /// Held open by the spool so a removed folder can still be drained and rehomed.
    file: Arc<File>,
}

#[derive(Debug)]
struct Index {
    segments: VecDeque<Segment>,
    /// How far the database writer has drained (the reader's cursor).
    drained: Position,
}

impl Index {
    fn total(&self) -> u64 {
        self.segments.iter().map(|s| s.written).sum()
    }
}

fn lock(index: &Mutex<Index>) -> std::sync::MutexGuard<'_, Index> {
    // The index is a few integers updated in single statements: it is consistent even if a holder
    // panicked.
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn open_segment(dir: &Path, id: u64) -> std::io::Result<Arc<File>> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(segment_path(dir, id))
        .map(Arc::new)
}

/// Where the reader is: segment id and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Appends records. Owned by the one thread that commits.
#[derive(Debug)]
pub struct SpoolWriter {
    dir: PathBuf,
    home: FolderIdentity,
    segment: u64,
    file: Arc<File>,
    /// Durable length of the active segment: every commit writes here.
    committed: u64,
    /// Appended records not yet committed, encoded; kept until a commit succeeds.
    pending: Vec<u8>,
    /// A write or sync failed: the file is cut back and reopened before the next one.
    failed: bool,
    /// The last commit found the disk full: release the active segment as soon as it is drained.
    short_of_space: bool,
    limits: Limits,
    index: Arc<Mutex<Index>>,
    scratch: Vec<u8>,
    /// Tests: the next commit writes this many bytes, then fails as a full disk does.
    #[cfg(test)]
    disk_full_after: Option<usize>,
}

/// Reads committed records in order and deletes what the database has taken.
#[derive(Debug)]
pub struct SpoolReader {
    dir: PathBuf,
    index: Arc<Mutex<Index>>,
    cursor: Position,
    buffer: Vec<u8>,
}

/// Opens (or creates) the spool in `dir`, repairs a torn tail, and calls `replay` for every record
/// still in it, oldest first, so sequence state can be rebuilt.
pub fn open(
    dir: &Path,
    limits: Limits,
    mut replay: impl FnMut(Record<'_>),
) -> Result<(SpoolWriter, SpoolReader), SpoolError> {
    std::fs::create_dir_all(dir)?;
    let mut ids: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .collect();
    ids.sort_unstable();

    let cursor = read_cursor(dir).unwrap_or(Position {
        segment: ids.first().copied().unwrap_or(1),
        offset: 0,
    });
    let mut segments = VecDeque::new();
    for id in ids {
        if id < cursor.segment {
            // Fully drained before the crash but not yet deleted.
            std::fs::remove_file(segment_path(dir, id))?;
            continue;
        }
        let file = open_segment(dir, id)?;
        let data = std::fs::read(segment_path(dir, id))?;
        let scanned = scan(&data, &mut replay);
        if scanned.skipped > 0 {
            tracing::error!(
                segment = id,
                bytes = scanned.skipped,
                "spool: unreadable bytes between valid records are skipped; the records after them are kept"
            );
        }
        if scanned.valid < data.len() {
            tracing::warn!(
                segment = id,
                bytes = data.len() - scanned.valid,
                "spool: truncating a torn record left by a crash (never acknowledged)"
            );
            file.set_len(scanned.valid as u64)?;
        }
        let len = scanned.valid as u64;
        segments.push_back(Segment {
            id,
            committed: len,
            written: len,
            file,
        });
    }
    let active = match segments.back() {
        Some(s) => s.clone(),
        None => {
            let s = Segment {
                id: cursor.segment.max(1),
                committed: 0,
                written: 0,
                file: open_segment(dir, cursor.segment.max(1))?,
            };
            segments.push_back(s.clone());
            s
        }
    };
    sync_dir(dir)?;
    let index = Arc::new(Mutex::new(Index {
        segments,
        drained: cursor,
    }));
    let writer = SpoolWriter {
        dir: dir.to_owned(),
        home: FolderIdentity::of(dir)?,
        segment: active.id,
        file: active.file,
        committed: active.committed,
        pending: Vec::with_capacity(1 << 20),
        failed: false,
        short_of_space: false,
        limits,
        index: Arc::clone(&index),
        scratch: Vec::new(),
        #[cfg(test)]
        disk_full_after: None,
    };
    let reader = SpoolReader {
        dir: dir.to_owned(),
        index,
        cursor,
        buffer: Vec::new(),
    };
    Ok((writer, reader))
}

fn read_cursor(dir: &Path) -> Option<Position> {
    let text = std::fs::read_to_string(dir.join("cursor")).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some(Position {
        segment: segment.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

fn write_cursor(dir: &Path, to: Position) -> std::io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    std::fs::write(&tmp, format!("{} {}\n", to.segment, to.offset))?;
    std::fs::rename(&tmp, dir.join("cursor"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl SpoolWriter {
    /// Takes one record. Durable only after [`Self::commit`].
    pub fn append(&mut self, mark: Option<(&str, SequenceMark)>, lines: &[u8]) -> Result<(), SpoolError> {
        self.scratch.clear();
        match mark {
            Some((node, mark)) => {
                self.scratch.push(KIND_TELEMETRY);
                let node = node.as_bytes();
                let node_len =
                    u8::try_from(node.len()).map_err(|_| std::io::Error::other("node id over 255 bytes"))?;
                self.scratch.push(node_len);
                self.scratch.extend_from_slice(node);
                self.scratch.extend_from_slice(&mark.boot.to_le_bytes());
                self.scratch.extend_from_slice(&mark.seq.to_le_bytes());
                self.scratch.extend_from_slice(&mark.anchor_ms.to_le_bytes());
            }
            None => self.scratch.push(KIND_DERIVED),
        }
        self.scratch.extend_from_slice(lines);
        let len = u32::try_from(self.scratch.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD);
        let len = len.ok_or_else(|| std::io::Error::other("spool record over 1 MiB"))?;
        let size = HEADER as u64 + u64::from(len);

        let total = lock(&self.index).total();
        if total + size > self.limits.max_bytes {
            return Err(SpoolError::Full {
                bytes: total,
                max: self.limits.max_bytes,
            });
        }
        if self.written() > 0 && self.written() + size > self.limits.segment_bytes {
            self.rotate()?;
        }
        self.pending.extend_from_slice(&len.to_le_bytes());
        self.pending
            .extend_from_slice(&crc32fast::hash(&self.scratch).to_le_bytes());
        self.pending.extend_from_slice(&self.scratch);
        let written = self.written();
        if let Some(s) = lock(&self.index).segments.back_mut() {
            s.written = written;
        }
        Ok(())
    }

    fn written(&self) -> u64 {
        self.committed + self.pending.len() as u64
    }

    /// Makes every appended record durable (one positioned write + fdatasync) and visible to the
    /// reader. On failure nothing of it counts: the bytes are cut off again and written anew, at the
    /// same place, by the next call.
    pub fn commit(&mut self) -> Result<(), SpoolError> {
        self.watch_folder()?;
        if self.failed {
            self.recover()?;
        }
        if self.short_of_space {
            self.release_drained()?;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self.write_pending();
        if let Err(e) = written {
            self.failed = true;
            // Best effort now; `recover` does it again before the next write.
            let _ = self.file.set_len(self.committed);
            let error = SpoolError::from_write(e);
            self.short_of_space = error.is_full();
            return Err(error);
        }
        self.short_of_space = false;
        if self.file.metadata()?.nlink() == 0 {
            // Durable, but in a file no longer in the folder: a restart would not find it.
            self.failed = true;
            return Err(self.folder_error("a segment file was deleted"));
        }
        self.committed += self.pending.len() as u64;
        self.pending.clear();
        let committed = self.committed;
        if let Some(s) = lock(&self.index).segments.back_mut() {
            s.committed = committed;
        }
        Ok(())
    }

    #[cfg(not(test))]
    fn write_pending(&mut self) -> std::io::Result<()> {
        self.file.write_all_at(&self.pending, self.committed)?;
        self.file.sync_data()
    }

    #[cfg(test)]
    fn write_pending(&mut self) -> std::io::Result<()> {
        if let Some(bytes) = self.disk_full_after.take() {
            let part = self.pending.get(..bytes).unwrap_or(&self.pending);
            self.file.write_all_at(part, self.committed)?;
            return Err(std::io::Error::from_raw_os_error(nix::libc::ENOSPC));
        }
        self.file.write_all_at(&self.pending, self.committed)?;
        self.file.sync_data()
    }

    /// Cuts the active segment back to what was committed and reopens it: a writer whose write
    /// failed is never reused.
    fn recover(&mut self) -> Result<(), SpoolError> {
        let file = open_segment(&self.dir, self.segment)?;
        file.set_len(self.committed).map_err(SpoolError::from_write)?;
        if let Some(s) = lock(&self.index).segments.back_mut() {
            s.file = Arc::clone(&file);
        }
        self.file = file;
        self.failed = false;
        Ok(())
    }

    /// When the database has taken everything of the active segment, starts a new one, so the
    /// drained file can be deleted: with a single segment the disk would otherwise never free.
    /// Called when the disk is short of space and when ingest is idle; a busy spool rotates at
    /// `segment_mb` anyway, and sealing on every commit would make a file per commit.
    pub fn release_drained(&mut self) -> Result<(), SpoolError> {
        let drained = lock(&self.index).drained;
        let all_taken = drained
            == Position {
                segment: self.segment,
                offset: self.committed,
            };
        if self.committed == 0 || !all_taken {
            return Ok(());
        }
        self.start_segment()
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        self.commit()?;
        self.start_segment()
    }

    /// Seals the active segment at its committed length and opens the next; what is pending moves
    /// with the writer into the new one.
    fn start_segment(&mut self) -> Result<(), SpoolError> {
        let next = self.segment + 1;
        let file = open_segment(&self.dir, next)?;
        file.set_len(0).map_err(SpoolError::from_write)?;
        // The new file's directory entry must be durable before records in it are acknowledged.
        sync_dir(&self.dir)?;
        let pending = self.pending.len() as u64;
        let mut index = lock(&self.index);
        if let Some(s) = index.segments.back_mut() {
            s.written = s.committed;
        }
        index.segments.push_back(Segment {
            id: next,
            committed: 0,
            written: pending,
            file: Arc::clone(&file),
        });
        drop(index);
        self.file = file;
        self.segment = next;
        self.committed = 0;
        Ok(())
    }

    /// Bytes on disk (committed or not), for the metrics.
    pub fn bytes(&self) -> u64 {
        lock(&self.index).total()
    }
}

/// One read of the reader: line protocol, how many lines, and where it ends.
#[derive(Debug, Default)]
pub struct Batch {
    pub body: Vec<u8>,
    pub lines: usize,
    pub end: Option<Position>,
}

impl SpoolReader {
    /// Appends committed records after the cursor to `batch` until it holds `max_lines` lines or
    /// the committed data ends. Does not move the cursor: call [`Self::advance`] once written.
    pub fn read(&mut self, batch: &mut Batch, max_lines: usize) -> Result<(), SpoolError> {
        let mut position = batch.end.unwrap_or(self.cursor);
        loop {
            let segments: Vec<Segment> = lock(&self.index).segments.iter().cloned().collect();
            let Some(segment) = segments.iter().find(|s| s.id >= position.segment) else {
                return Ok(());
            };
            if segment.id > position.segment {
                position = Position {
                    segment: segment.id,
                    offset: 0,
                };
            }
            if position.offset >= segment.committed {
                // Everything of this segment is read; move on only if it is sealed.
                match segments.iter().find(|s| s.id > segment.id) {
                    Some(next) if segment.committed == segment.written => {
                        position = Position {
                            segment: next.id,
                            offset: 0,
                        };
                        batch.end = Some(position);
                        continue;
                    }
                    _ => return Ok(()),
                }
            }
            let want = usize::try_from(segment.committed - position.offset)
                .unwrap_or(usize::MAX)
                .min(READ_WINDOW as usize);
            self.buffer.resize(want, 0);
            segment.file.read_exact_at(&mut self.buffer, position.offset)?;
            let mut offset = 0;
            while let Some((record, next)) = parse_at(&self.buffer, offset) {
                batch.body.extend_from_slice(record.lines);
                batch.lines += record.lines.iter().filter(|&&b| b == b'\n').count();
                offset = next;
                if batch.lines >= max_lines {
                    break;
                }
            }
            if offset == 0 {
                // A committed record that does not parse: the disk lied. Step over the damage to
                // the next valid record; never drop the records after it.
                let skip = resync(&self.buffer, 0).unwrap_or(if want < READ_WINDOW as usize {
                    want
                } else {
                    want - HEADER - MAX_RECORD as usize
                });
                tracing::error!(
                    segment = segment.id,
                    offset = position.offset,
                    bytes = skip,
                    "spool: unreadable committed bytes skipped up to the next valid record"
                );
                position.offset += skip as u64;
                batch.end = Some(position);
                continue;
            }
            position.offset += offset as u64;
            batch.end = Some(position);
            if batch.lines >= max_lines {
                return Ok(());
            }
        }
    }

    /// Records that everything before `to` is in the database, and deletes drained segments.
    pub fn advance(&mut self, to: Position) -> Result<(), SpoolError> {
        self.cursor = to;
        let drained: Vec<u64> = {
            let mut index = lock(&self.index);
            index.drained = to;
            let mut drained = Vec::new();
            while index.segments.len() > 1 && index.segments.front().is_some_and(|s| s.id < to.segment) {
                if let Some(s) = index.segments.pop_front() {
                    drained.push(s.id);
                }
            }
            drained
        };
        // Deleted before the cursor is written: on a full disk the cursor can only be written once
        // space is freed. A crash in between leaves a cursor in a deleted segment, which `open`
        // reads as "from the start of the next one".
        for id in drained {
            match std::fs::remove_file(segment_path(&self.dir, id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        write_cursor(&self.dir, to)?;
        Ok(())
    }

    /// Committed bytes not yet drained, for the metrics and the spool-depth gauge.
    pub fn pending_bytes(&self) -> u64 {
        lock(&self.index)
            .segments
            .iter()
            .map(|s| {
                if s.id == self.cursor.segment {
                    s.committed.saturating_sub(self.cursor.offset)
                } else if s.id > self.cursor.segment {
                    s.committed
                } else {
                    0
                }
            })
            .sum()
    }
}

#[cfg(test)]
mod tests;
