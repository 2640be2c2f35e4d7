//! The spool's reading end: committed records in order, for the database writer, and what it has
//! taken deleted.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::record::{HEADER, MAX_RECORD, parse_at, resync};
use super::segment::{Index, Position, Segment, SpoolError, lock, segment_path, write_cursor};

/// The reader reads segments in windows of this size; a record always fits in one.
const READ_WINDOW: u64 = 4 * 1024 * 1024;

/// Reads committed records in order and deletes what the database has taken.
#[derive(Debug)]
pub struct SpoolReader {
    pub(super) dir: PathBuf,
    pub(super) index: Arc<Mutex<Index>>,
    pub(super) cursor: Position,
    pub(super) buffer: Vec<u8>,
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
