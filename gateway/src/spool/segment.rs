//! The spool on disk: segment files, the drain cursor, the index both ends share, and the errors.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

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
    pub(super) fn from_write(error: std::io::Error) -> Self {
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
pub(super) struct Segment {
    pub(super) id: u64,
    /// Bytes made durable; the reader never reads past this.
    pub(super) committed: u64,
    /// Bytes appended (committed or not).
    pub(super) written: u64,
    /// Held open by the spool so a removed folder can still be drained and rehomed.
    pub(super) file: Arc<File>,
}

#[derive(Debug)]
pub(super) struct Index {
    pub(super) segments: VecDeque<Segment>,
    /// How far the database writer has drained (the reader's cursor).
    pub(super) drained: Position,
}

impl Index {
    pub(super) fn total(&self) -> u64 {
        self.segments.iter().map(|s| s.written).sum()
    }
}

pub(super) fn lock(index: &Mutex<Index>) -> std::sync::MutexGuard<'_, Index> {
    // The index is a few integers updated in single statements: it is consistent even if a holder
    // panicked.
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

pub(super) fn open_segment(dir: &Path, id: u64) -> std::io::Result<Arc<File>> {
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

/// Which folder the spool lives in (device and inode), to notice it removed or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FolderIdentity {
    dev: u64,
    ino: u64,
}

impl FolderIdentity {
    pub(super) fn of(dir: &Path) -> std::io::Result<Self> {
        Ok(Self::from_metadata(&std::fs::metadata(dir)?))
    }

    pub(super) fn from_metadata(meta: &std::fs::Metadata) -> Self {
        FolderIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

pub(super) fn read_cursor(dir: &Path) -> Option<Position> {
    let text = std::fs::read_to_string(dir.join("cursor")).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some(Position {
        segment: segment.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

pub(super) fn write_cursor(dir: &Path, to: Position) -> std::io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    std::fs::write(&tmp, format!("{} {}\n", to.segment, to.offset))?;
    std::fs::rename(&tmp, dir.join("cursor"))
}

pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
