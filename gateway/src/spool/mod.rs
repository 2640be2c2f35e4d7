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
use std::path::Path;
use std::sync::{Arc, Mutex};

pub mod deadletter;
mod folder;
mod reader;
mod record;
mod segment;
mod writer;

pub use reader::{Batch, SpoolReader};
pub use record::Record;
pub use segment::{Limits, Position, SpoolError};
pub use writer::SpoolWriter;

use record::scan;
use segment::{FolderIdentity, Index, Segment, open_segment, read_cursor, segment_path, sync_dir};

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

#[cfg(test)]
mod tests;
