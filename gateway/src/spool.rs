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
//! - Appends are buffered and made durable by [`SpoolWriter::commit`] (one `fdatasync` for many
//!   messages: group commit). Only then are the messages acknowledged to the broker.
//! - A crash can leave a torn record at the end of the last segment; [`open`] truncates it. Those
//!   messages were never acknowledged, so the broker delivers them again.
//! - The cursor is written after each successful database write (rename, no fsync): after a crash
//!   it may lag, and the points after it are written again with the same timestamps, which InfluxDB
//!   stores once.
//! - When full (`spool.max_mb`), appends fail with [`SpoolError::Full`]: the pipeline then stops
//!   acknowledging, so the broker keeps the messages, until the writer has drained space. Nothing
//!   accepted is dropped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::normalise::SequenceMark;

const HEADER: usize = 8;
const KIND_TELEMETRY: u8 = 1;
const KIND_DERIVED: u8 = 2;
/// A record longer than this is corruption, not data (a message is at most a few KiB of lines).
const MAX_RECORD: u32 = 1024 * 1024;
/// The reader reads segments in windows of this size; a record always fits in one.
const READ_WINDOW: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool is full ({bytes} bytes of {max}); waiting for the database writer to drain it")]
    Full { bytes: u64, max: u64 },
    #[error("spool I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Size limits of a spool.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub segment_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    id: u64,
    /// Bytes made durable; the reader never reads past this.
    committed: u64,
    /// Bytes written (committed or not).
    written: u64,
}

#[derive(Debug)]
struct Index {
    segments: VecDeque<Segment>,
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

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub mark: Option<(&'a str, SequenceMark)>,
    pub lines: &'a [u8],
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
    file: BufWriter<File>,
    segment: u64,
    written: u64,
    limits: Limits,
    index: Arc<Mutex<Index>>,
    scratch: Vec<u8>,
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
    let last = ids.last().copied();
    for id in ids {
        if id < cursor.segment {
            // Fully drained before the crash but not yet deleted.
            std::fs::remove_file(segment_path(dir, id))?;
            continue;
        }
        let path = segment_path(dir, id);
        let data = std::fs::read(&path)?;
        let valid = scan(&data, &mut replay);
        if valid < data.len() {
            let torn = data.len() - valid;
            if Some(id) == last {
                tracing::warn!(
                    segment = id,
                    bytes = torn,
                    "spool: truncating a torn record left by a crash"
                );
            } else {
                tracing::error!(
                    segment = id,
                    bytes = torn,
                    "spool: corrupt bytes in a sealed segment are skipped"
                );
            }
            OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(valid as u64)?;
        }
        let len = valid as u64;
        segments.push_back(Segment {
            id,
            committed: len,
            written: len,
        });
    }
    let active = match segments.back() {
        Some(s) => *s,
        None => {
            let s = Segment {
                id: cursor.segment.max(1),
                committed: 0,
                written: 0,
            };
            segments.push_back(s);
            s
        }
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, active.id))?;
    sync_dir(dir)?;
    let index = Arc::new(Mutex::new(Index { segments }));
    let writer = SpoolWriter {
        dir: dir.to_owned(),
        file: BufWriter::with_capacity(1 << 20, file),
        segment: active.id,
        written: active.written,
        limits,
        index: Arc::clone(&index),
        scratch: Vec::new(),
    };
    let reader = SpoolReader {
        dir: dir.to_owned(),
        index,
        cursor,
        buffer: Vec::new(),
    };
    Ok((writer, reader))
}

/// Calls `f` for each valid record of `data`; returns the length of the valid prefix.
fn scan(data: &[u8], f: &mut impl FnMut(Record<'_>)) -> usize {
    let mut offset = 0;
    while let Some((record, next)) = parse_at(data, offset) {
        f(record);
        offset = next;
    }
    offset
}

/// Parses the record at `offset`; `None` at the end or at a torn or corrupt record.
fn parse_at(data: &[u8], offset: usize) -> Option<(Record<'_>, usize)> {
    let header = data.get(offset..offset + HEADER)?;
    let len = u32::from_le_bytes(header.get(..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(header.get(4..8)?.try_into().ok()?);
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let end = offset + HEADER + len as usize;
    let payload = data.get(offset + HEADER..end)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    Some((decode_payload(payload)?, end))
}

fn decode_payload(payload: &[u8]) -> Option<Record<'_>> {
    match payload.split_first()? {
        (&KIND_DERIVED, lines) => Some(Record { mark: None, lines }),
        (&KIND_TELEMETRY, rest) => {
            let (&node_len, rest) = rest.split_first()?;
            let node = std::str::from_utf8(rest.get(..node_len as usize)?).ok()?;
            let rest = rest.get(node_len as usize..)?;
            let boot = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?);
            let seq = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
            let anchor_ms = i64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
            Some(Record {
                mark: Some((node, SequenceMark { boot, seq, anchor_ms })),
                lines: rest.get(16..)?,
            })
        }
        _ => None,
    }
}

fn read_cursor(dir: &Path) -> Option<Position> {
    let text = std::fs::read_to_string(dir.join("cursor")).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some(Position {
        segment: segment.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl SpoolWriter {
    /// Buffers one record. Durable only after [`Self::commit`].
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
        if self.written > 0 && self.written + size > self.limits.segment_bytes {
            self.rotate()?;
        }
        self.file.write_all(&len.to_le_bytes())?;
        self.file
            .write_all(&crc32fast::hash(&self.scratch).to_le_bytes())?;
        self.file.write_all(&self.scratch)?;
        self.written += size;
        if let Some(s) = lock(&self.index).segments.back_mut() {
            s.written = self.written;
        }
        Ok(())
    }

    /// Makes every appended record durable (flush + fdatasync) and visible to the reader.
    pub fn commit(&mut self) -> Result<(), SpoolError> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        if let Some(s) = lock(&self.index).segments.back_mut() {
            s.committed = self.written;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        self.commit()?;
        let next = self.segment + 1;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(&self.dir, next))?;
        // The new file's directory entry must be durable before records in it are acknowledged.
        sync_dir(&self.dir)?;
        self.file = BufWriter::with_capacity(1 << 20, file);
        self.segment = next;
        self.written = 0;
        lock(&self.index).segments.push_back(Segment {
            id: next,
            committed: 0,
            written: 0,
        });
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
            let segments: Vec<Segment> = lock(&self.index).segments.iter().copied().collect();
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
            let file = File::open(segment_path(&self.dir, segment.id))?;
            file.read_exact_at(&mut self.buffer, position.offset)?;
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
                // A committed record that does not parse: the disk lied. Skip the rest of the segment
                // rather than stall forever; the loss is logged loudly.
                tracing::error!(
                    segment = segment.id,
                    offset = position.offset,
                    "spool: unreadable committed record, skipping to the next segment"
                );
                position = Position {
                    segment: segment.id,
                    offset: segment.committed,
                };
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
        let tmp = self.dir.join("cursor.tmp");
        std::fs::write(&tmp, format!("{} {}\n", to.segment, to.offset))?;
        std::fs::rename(&tmp, self.dir.join("cursor"))?;
        let drained: Vec<u64> = {
            let mut index = lock(&self.index);
            let mut drained = Vec::new();
            while index.segments.len() > 1 && index.segments.front().is_some_and(|s| s.id < to.segment) {
                if let Some(s) = index.segments.pop_front() {
                    drained.push(s.id);
                }
            }
            drained
        };
        for id in drained {
            std::fs::remove_file(segment_path(&self.dir, id))?;
        }
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
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 20,
        segment_bytes: 4096,
    };

    fn mark(seq: u32) -> SequenceMark {
        SequenceMark {
            boot: 9,
            seq,
            anchor_ms: 1_000,
        }
    }

    fn read_all(reader: &mut SpoolReader) -> Batch {
        let mut batch = Batch::default();
        reader.read(&mut batch, usize::MAX).unwrap();
        batch
    }

    #[test]
    fn committed_records_are_read_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path(), LIMITS, |_| {}).unwrap();
        for i in 0..5 {
            writer
                .append(Some(("n1", mark(i))), format!("m v={i} {i}\n").as_bytes())
                .unwrap();
        }
        assert_eq!(
            read_all(&mut reader).lines,
            0,
            "uncommitted records are invisible"
        );
        for i in 5..200 {
            writer
                .append(Some(("n1", mark(i))), format!("m v={i} {i}\n").as_bytes())
                .unwrap();
        }
        writer.commit().unwrap();
        let batch = read_all(&mut reader);
        assert_eq!(batch.lines, 200);
        let text = String::from_utf8(batch.body).unwrap();
        assert!(text.starts_with("m v=0 0\nm v=1 1\n") && text.ends_with("m v=199 199\n"));
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() >= 2,
            "rotated into several segments"
        );
    }

    #[test]
    fn advance_deletes_drained_segments_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path(), LIMITS, |_| {}).unwrap();
        for i in 0..200 {
            writer.append(None, format!("m v={i} {i}\n").as_bytes()).unwrap();
        }
        writer.commit().unwrap();
        let mut first = Batch::default();
        reader.read(&mut first, 150).unwrap();
        assert_eq!(first.lines, 150);
        reader.advance(first.end.unwrap()).unwrap();
        drop((writer, reader));

        let (_, mut reader) = open(dir.path(), LIMITS, |_| {}).unwrap();
        let rest = read_all(&mut reader);
        assert_eq!(rest.lines, 50);
        assert!(String::from_utf8(rest.body).unwrap().starts_with("m v=150 150\n"));
    }

    #[test]
    fn torn_tail_is_truncated_and_the_rest_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, _) = open(
            dir.path(),
            Limits {
                max_bytes: 1 << 20,
                segment_bytes: 1 << 20,
            },
            |_| {},
        )
        .unwrap();
        for i in 0..10 {
            writer.append(Some(("n1", mark(i))), b"m v=1 1\n").unwrap();
        }
        writer.commit().unwrap();
        drop(writer);
        // A crash in the middle of the eleventh append.
        let path = segment_path(dir.path(), 1);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 1, 2]).unwrap();
        drop(file);

        let mut marks = Vec::new();
        let (mut writer, mut reader) =
            open(dir.path(), LIMITS, |r| marks.push(r.mark.unwrap().1.seq)).unwrap();
        assert_eq!(marks, (0..10).collect::<Vec<_>>());
        writer.append(Some(("n1", mark(10))), b"m v=2 2\n").unwrap();
        writer.commit().unwrap();
        assert_eq!(read_all(&mut reader).lines, 11);
    }

    #[test]
    fn a_flipped_bit_ends_the_valid_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, _) = open(dir.path(), LIMITS, |_| {}).unwrap();
        writer.append(None, b"a v=1 1\n").unwrap();
        writer.append(None, b"b v=1 1\n").unwrap();
        writer.commit().unwrap();
        drop(writer);
        let path = segment_path(dir.path(), 1);
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 3;
        data[last] ^= 1;
        std::fs::write(&path, data).unwrap();
        let (_, mut reader) = open(dir.path(), LIMITS, |_| {}).unwrap();
        assert_eq!(read_all(&mut reader).body, b"a v=1 1\n");
    }

    #[test]
    fn full_spool_refuses_appends_until_drained() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_bytes: 3000,
            segment_bytes: 1000,
        };
        let (mut writer, mut reader) = open(dir.path(), limits, |_| {}).unwrap();
        let line = [b'x'; 200];
        let mut appended = 0;
        while writer.append(None, &line).is_ok() {
            appended += 1;
        }
        assert!(matches!(writer.append(None, &line), Err(SpoolError::Full { .. })));
        writer.commit().unwrap();
        let mut batch = Batch::default();
        reader.read(&mut batch, usize::MAX).unwrap();
        reader.advance(batch.end.unwrap()).unwrap();
        writer.append(None, &line).unwrap();
        assert!(appended >= 10);
    }
}
