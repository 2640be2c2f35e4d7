//! Serial framing for nodes on UART, USB CDC or RS-485 (protocols/README.md, "Serial frames").
//!
//! ```text
//! on the line:  COBS( kind:u8 | tag:u8 | body:0..=MAX_MESSAGE_LEN bytes | crc:u16 LE ) 0x00
//! ```
//! - COBS (Cheshire and Baker, 1999) removes every zero byte, so `0x00` marks a frame's end and a
//!   receiver that joins mid-stream resynchronises at the next zero.
//! - The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF; `crc::CRC_16_IBM_3740`) over kind, tag
//!   and body. A frame whose CRC does not match is dropped and the sender retries.
//! - `tag` pairs a reply with its request; the body is a JSON message of this crate or a log line.

use crc::{CRC_16_IBM_3740, Crc};

use crate::MAX_MESSAGE_LEN;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);

/// Header (kind, tag) plus CRC.
const OVERHEAD: usize = 4;
/// Longest raw (un-stuffed) frame.
pub const MAX_RAW_LEN: usize = MAX_MESSAGE_LEN + OVERHEAD;
/// Longest frame on the line: COBS adds one byte per 254, plus the trailing zero.
pub const MAX_ENCODED_LEN: usize = MAX_RAW_LEN + MAX_RAW_LEN / 254 + 2;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Host -> node: "who are you?" (empty body). Answered by `Info`.
    Hello = 0x01,
    /// Node -> host: a [`crate::Status`] with serial number, firmware and node id.
    Info = 0x02,
    /// Host -> node: send your configuration (empty body). Answered by `Config`.
    GetConfig = 0x03,
    /// Node -> host: the [`crate::NodeConfig`] in force, its password left out.
    Config = 0x04,
    /// Host -> node: store this [`crate::NodeConfig`]. Answered by `Result`.
    SetConfig = 0x05,
    /// Node -> host: an [`crate::Ack`] for `SetConfig` or `Command` (the frame tag is its id).
    Result = 0x06,
    /// Node -> host: a [`crate::Telemetry`] from a serial-attached node.
    Telemetry = 0x10,
    /// Node -> host: a [`crate::Status`].
    Status = 0x11,
    /// Node -> host: one UTF-8 log line for the console.
    Log = 0x12,
    /// Host -> node: a [`crate::Command`].
    Command = 0x20,
    /// Host -> node: a `Telemetry` frame is durably stored; the body is an [`crate::Ack`] whose `id`
    /// is the telemetry's `seq`. Until it comes, the node keeps the record and sends it again.
    Stored = 0x21,
}

impl FrameKind {
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x01 => FrameKind::Hello,
            0x02 => FrameKind::Info,
            0x03 => FrameKind::GetConfig,
            0x04 => FrameKind::Config,
            0x05 => FrameKind::SetConfig,
            0x06 => FrameKind::Result,
            0x10 => FrameKind::Telemetry,
            0x11 => FrameKind::Status,
            0x12 => FrameKind::Log,
            0x20 => FrameKind::Command,
            0x21 => FrameKind::Stored,
            _ => return None,
        })
    }
}

/// Why a frame could not be encoded or was dropped on receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame body of {0} bytes is over the limit")]
    BodyTooLarge(usize),
    #[error("output buffer too small for the frame")]
    BufferTooSmall,
    #[error("frame longer than {MAX_ENCODED_LEN} bytes before its delimiter")]
    Overflow,
    #[error("COBS encoding is corrupt")]
    Cobs,
    #[error("frame shorter than its header and CRC")]
    TooShort,
    #[error("CRC mismatch: frame says {expected:#06x}, content gives {actual:#06x}")]
    Crc { expected: u16, actual: u16 },
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
}

/// A received frame, borrowing its body from the decoder's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameKind,
    pub tag: u8,
    pub body: &'a [u8],
}

/// Encodes one frame, delimiter included, into `out`; returns the bytes written.
pub fn encode(kind: FrameKind, tag: u8, body: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    if body.len() > MAX_MESSAGE_LEN {
        return Err(FrameError::BodyTooLarge(body.len()));
    }
    let header = [kind as u8, tag];
    let mut digest = CRC16.digest();
    digest.update(&header);
    digest.update(body);
    let crc = digest.finalize().to_le_bytes();

    // Worst case COBS output for this frame, plus the delimiter.
    let raw_len = body.len() + OVERHEAD;
    if out.len() < raw_len + raw_len / 254 + 2 {
        return Err(FrameError::BufferTooSmall);
    }
    let mut encoder = cobs::CobsEncoder::new(out);
    for part in [&header[..], body, &crc[..]] {
        encoder.push(part).map_err(|_| FrameError::BufferTooSmall)?;
    }
    let len = encoder.finalize();
    *out.get_mut(len).ok_or(FrameError::BufferTooSmall)? = 0;
    Ok(len + 1)
}

/// Reassembles frames from a byte stream, one byte or one chunk at a time. No heap: the buffer is
/// `N` bytes, and a frame longer than that is dropped whole (`Overflow`) up to the next delimiter.
#[derive(Debug)]
pub struct FrameDecoder<const N: usize = MAX_ENCODED_LEN> {
    buffer: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameDecoder<N> {
    pub const fn new() -> Self {
        FrameDecoder {
            buffer: [0; N],
            len: 0,
            overflowed: false,
        }
    }

    /// Feeds bytes until one frame ends. Returns how many bytes of `input` were used and, if a
    /// delimiter was reached, the frame or why it was dropped. Call again with the rest of `input`.
    pub fn feed<'a>(&'a mut self, input: &[u8]) -> (usize, Option<Result<Frame<'a>, FrameError>>) {
        for (used, &byte) in input.iter().enumerate() {
            if byte == 0 {
                let len = core::mem::take(&mut self.len);
                if core::mem::take(&mut self.overflowed) {
                    return (used + 1, Some(Err(FrameError::Overflow)));
                }
                if len == 0 {
                    continue; // Back-to-back delimiters: an idle line, not a frame.
                }
                return (used + 1, Some(self.finish(len)));
            }
            match self.buffer.get_mut(self.len) {
                Some(slot) => {
                    *slot = byte;
                    self.len += 1;
                }
                None => self.overflowed = true,
            }
        }
        (input.len(), None)
    }

    fn finish(&mut self, len: usize) -> Result<Frame<'_>, FrameError> {
        let stuffed = self.buffer.get_mut(..len).ok_or(FrameError::Overflow)?;
        let raw_len = cobs::decode_in_place(stuffed).map_err(|_| FrameError::Cobs)?;
        let raw = self.buffer.get(..raw_len).ok_or(FrameError::Cobs)?;
        parse_raw(raw)
    }
}

/// Checks the CRC and splits a de-stuffed frame into its parts.
fn parse_raw(raw: &[u8]) -> Result<Frame<'_>, FrameError> {
    let [kind, tag, rest @ ..] = raw else {
        return Err(FrameError::TooShort);
    };
    let [body @ .., crc_lo, crc_hi] = rest else {
        return Err(FrameError::TooShort);
    };
    let expected = u16::from_le_bytes([*crc_lo, *crc_hi]);
    let mut digest = CRC16.digest();
    digest.update(&[*kind, *tag]);
    digest.update(body);
    let actual = digest.finalize();
    if actual != expected {
        return Err(FrameError::Crc { expected, actual });
    }
    let kind = FrameKind::from_u8(*kind).ok_or(FrameError::UnknownKind(*kind))?;
    Ok(Frame {
        kind,
        tag: *tag,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(kind: FrameKind, tag: u8, body: &[u8]) -> heapless::Vec<u8, MAX_ENCODED_LEN> {
        let mut out = [0u8; MAX_ENCODED_LEN];
        let n = encode(kind, tag, body, &mut out).unwrap();
        heapless::Vec::from_slice(&out[..n]).unwrap()
    }

    #[test]
    fn crc_is_ccitt_false() {
        // The CRC catalogue's check value for CRC-16/IBM-3740 over "123456789".
        assert_eq!(CRC16.checksum(b"123456789"), 0x29B1);
    }

    #[test]
    fn frame_has_no_zero_before_its_delimiter() {
        let line = encoded(FrameKind::Log, 0, &[0, 1, 0, 2, 0]);
        assert_eq!(line.last(), Some(&0));
        assert!(!line[..line.len() - 1].contains(&0));
    }

    #[test]
    fn decoder_returns_the_frame_that_was_encoded() {
        let line = encoded(FrameKind::SetConfig, 7, br#"{"node":"n"}"#);
        let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
        let (used, frame) = decoder.feed(&line);
        assert_eq!(used, line.len());
        assert_eq!(
            frame,
            Some(Ok(Frame {
                kind: FrameKind::SetConfig,
                tag: 7,
                body: br#"{"node":"n"}"#
            }))
        );
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_crc() {
        let mut line = encoded(FrameKind::Telemetry, 1, b"{\"seq\":1}");
        line[4] ^= 0x10;
        let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
        assert!(matches!(decoder.feed(&line).1, Some(Err(FrameError::Crc { .. }))));
    }

    #[test]
    fn decoder_resynchronises_after_garbage_and_overflow() {
        let mut decoder = FrameDecoder::<16>::new();
        let (_, first) = decoder.feed(&[0x55; 40]);
        assert_eq!(first, None);
        assert_eq!(decoder.feed(&[0]).1, Some(Err(FrameError::Overflow)));
        let line = encoded(FrameKind::Hello, 3, b"");
        assert_eq!(
            decoder.feed(&line).1,
            Some(Ok(Frame {
                kind: FrameKind::Hello,
                tag: 3,
                body: b""
            }))
        );
    }

    #[test]
    fn short_and_unknown_frames_are_typed_errors() {
        let mut decoder = FrameDecoder::<64>::new();
        assert_eq!(
            decoder.feed(&[0x02, 0x01, 0x00]).1,
            Some(Err(FrameError::TooShort))
        );
        let line = encoded(FrameKind::Hello, 0, b"");
        let mut bad = line.clone();
        // Re-encode with an unknown kind but a correct CRC.
        let mut raw = [0x7f, 0, 0, 0];
        let crc = CRC16.checksum(&raw[..2]).to_le_bytes();
        raw[2..].copy_from_slice(&crc);
        let mut out = [0u8; 16];
        let n = cobs::encode(&raw, &mut out);
        bad.clear();
        bad.extend_from_slice(&out[..n]).unwrap();
        bad.push(0).unwrap();
        assert_eq!(decoder.feed(&bad).1, Some(Err(FrameError::UnknownKind(0x7f))));
    }
}
