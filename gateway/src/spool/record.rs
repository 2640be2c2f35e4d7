//! One record on disk: `len: u32 LE | crc32: u32 LE | payload` (layout in the parent module), how
//! it is parsed, and how a scan steps over unreadable bytes to the next record whose CRC holds.

use crate::model::SequenceMark;

pub(super) const HEADER: usize = 8;
pub(super) const KIND_TELEMETRY: u8 = 1;
pub(super) const KIND_DERIVED: u8 = 2;
/// A record longer than this is corruption, not data (a message is at most a few KiB of lines).
pub(super) const MAX_RECORD: u32 = 1024 * 1024;

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub mark: Option<(&'a str, SequenceMark)>,
    pub lines: &'a [u8],
}

/// What [`scan`] found in a segment.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Scanned {
    /// Length up to the end of the last valid record.
    pub(super) valid: usize,
    /// Unreadable bytes between valid records.
    pub(super) skipped: usize,
}

/// Calls `f` for each valid record of `data`, stepping over unreadable bytes to the next valid
/// record; returns where the last valid record ends.
pub(super) fn scan(data: &[u8], f: &mut impl FnMut(Record<'_>)) -> Scanned {
    let mut offset = 0;
    let mut skipped = 0;
    loop {
        while let Some((record, next)) = parse_at(data, offset) {
            f(record);
            offset = next;
        }
        match resync(data, offset) {
            Some(next) => {
                skipped += next - offset;
                offset = next;
            }
            None => {
                return Scanned {
                    valid: offset,
                    skipped,
                };
            }
        }
    }
}

/// The offset of the next valid record after an unreadable one at `from`, if any.
pub(super) fn resync(data: &[u8], from: usize) -> Option<usize> {
    (from + 1..data.len().saturating_sub(HEADER)).find(|&at| parse_at(data, at).is_some())
}

/// Parses the record at `offset`; `None` at the end or at a torn or corrupt record.
pub(super) fn parse_at(data: &[u8], offset: usize) -> Option<(Record<'_>, usize)> {
    let header = data.get(offset..offset + HEADER)?;
    let len = u32::from_le_bytes(header.get(..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(header.get(4..8)?.try_into().ok()?);
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let end = offset + HEADER + len as usize;
    let payload = data.get(offset + HEADER..end)?;
    // Cheap before the CRC: resynchronising tries every offset of a damaged stretch.
    if !matches!(payload.first(), Some(&KIND_TELEMETRY | &KIND_DERIVED)) {
        return None;
    }
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
