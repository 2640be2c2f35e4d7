//! Firmware updates: the signed update file (`.rkfw`) and the frames that carry it to a node over
//! MQTT (protocols/README.md, "Firmware updates").
//!
//! An update file is a fixed 148-byte [`UpdateHeader`] followed by the image. The header names the
//! board the image is for, its version, its length and SHA-256, and ends with an Ed25519 signature
//! over the 84 bytes before it, so one signature check covers board, version, length and (through the
//! hash) every byte of the image. The node checks it with the public key built into its firmware.
//!
//! The gateway sends the file to `rackwatch/v1/{site}/{node}/ota` as binary [`OtaFrame`]s: the header
//! first, then the image in chunks, each with its offset; the node answers each on `.../ota/ack` with
//! the next offset it expects ([`crate::OtaAck`]). Because the offset travels with every chunk and every
//! answer, a transfer cut by a reconnect or a reboot resumes where the node says it stands, and a chunk
//! out of order is refused instead of written.
//!
//! Like smoltcp's `wire` modules: the byte layout is named once in [`field`], [`UpdateHeader::parse`]
//! and [`UpdateHeader::emit`] are exact inverses, and every malformed input is an [`UpdateError`].

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::codec::{Message, message_codec, version};

/// Byte ranges of the update header (all integers little-endian).
pub mod field {
    use core::ops::Range;

    pub const MAGIC: Range<usize> = 0..4;
    pub const FORMAT: usize = 4;
    pub const FLAGS: usize = 5;
    /// Reserved, zero.
    pub const RESERVED0: Range<usize> = 6..8;
    /// ASCII, NUL-padded.
    pub const BOARD: Range<usize> = 8..40;
    pub const VERSION_MAJOR: Range<usize> = 40..42;
    pub const VERSION_MINOR: Range<usize> = 42..44;
    pub const VERSION_PATCH: Range<usize> = 44..46;
    /// Reserved, zero.
    pub const RESERVED1: Range<usize> = 46..48;
    pub const IMAGE_LEN: Range<usize> = 48..52;
    pub const IMAGE_SHA256: Range<usize> = 52..84;
    /// Ed25519 over bytes `0..SIGNED_LEN`.
    pub const SIGNATURE: Range<usize> = 84..148;
    pub const SIGNED_LEN: usize = SIGNATURE.start;
}

/// `RKFW`: the first four bytes of every update file.
pub const MAGIC: [u8; 4] = *b"RKFW";
/// The header layout this build reads and writes.
pub const FORMAT: u8 = 1;
/// Length of the header that precedes the image.
pub const HEADER_LEN: usize = field::SIGNATURE.end;
/// Longest board name.
pub const MAX_BOARD_LEN: usize = field::BOARD.end - field::BOARD.start;
/// Flag bit: the node may install this image over a newer version.
pub const FLAG_ALLOW_DOWNGRADE: u8 = 0b0000_0001;

/// Why an update header or frame was refused. The same reasons travel in the node's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("shorter than its {0}-byte layout")]
    Truncated(usize),
    #[error("not an update file (no RKFW magic)")]
    BadMagic,
    #[error("update format {0} is not supported (this build reads format 1)")]
    UnsupportedFormat(u8),
    #[error("board name is empty, too long or not ASCII")]
    BadBoard,
    #[error("reserved bytes are not zero")]
    Reserved,
    #[error("unknown OTA frame kind {0}")]
    UnknownKind(u8),
    #[error("chunk of {0} bytes is over the {MAX_CHUNK}-byte limit")]
    ChunkTooLarge(usize),
}

/// A firmware version, `major.minor.patch`, ordered as semantic versions are (without pre-releases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FirmwareVersion {
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
}

impl FirmwareVersion {
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        FirmwareVersion { major, minor, patch }
    }

    /// Parses `1.4.0`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let mut next = || parts.next()?.parse::<u16>().ok();
        let version = FirmwareVersion::new(next()?, next()?, next()?);
        parts.next().is_none().then_some(version)
    }
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The header of an update file, as its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateHeader {
    pub board: heapless::String<MAX_BOARD_LEN>,
    pub version: FirmwareVersion,
    pub allow_downgrade: bool,
    pub image_len: u32,
    pub image_sha256: [u8; 32],
    pub signature: [u8; 64],
}

fn read_u16(bytes: &[u8], range: core::ops::Range<usize>) -> u16 {
    let mut le = [0u8; 2];
    if let Some(src) = bytes.get(range) {
        le.copy_from_slice(src);
    }
    u16::from_le_bytes(le)
}

fn read_u32(bytes: &[u8], range: core::ops::Range<usize>) -> u32 {
    let mut le = [0u8; 4];
    if let Some(src) = bytes.get(range) {
        le.copy_from_slice(src);
    }
    u32::from_le_bytes(le)
}

fn put(out: &mut [u8], range: core::ops::Range<usize>, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(range) {
        dst.copy_from_slice(bytes);
    }
}

impl UpdateHeader {
    /// Reads the header from the first [`HEADER_LEN`] bytes of `bytes` (an update file or the
    /// header frame). Checks the layout only; the signature is the node's to verify.
    pub fn parse(bytes: &[u8]) -> Result<Self, UpdateError> {
        let bytes = bytes
            .get(..HEADER_LEN)
            .ok_or(UpdateError::Truncated(HEADER_LEN))?;
        if bytes.get(field::MAGIC) != Some(&MAGIC[..]) {
            return Err(UpdateError::BadMagic);
        }
        let format = bytes.get(field::FORMAT).copied().unwrap_or(0);
        if format != FORMAT {
            return Err(UpdateError::UnsupportedFormat(format));
        }
        let reserved_zero =
            |r: core::ops::Range<usize>| bytes.get(r).is_some_and(|b| b.iter().all(|x| *x == 0));
        if !reserved_zero(field::RESERVED0) || !reserved_zero(field::RESERVED1) {
            return Err(UpdateError::Reserved);
        }
        let flags = bytes.get(field::FLAGS).copied().unwrap_or(0);
        let raw_board = bytes.get(field::BOARD).ok_or(UpdateError::BadBoard)?;
        let len = raw_board.iter().position(|b| *b == 0).unwrap_or(raw_board.len());
        let (name, padding) = raw_board.split_at(len);
        let board = core::str::from_utf8(name)
            .ok()
            .filter(|s| !s.is_empty() && s.is_ascii() && padding.iter().all(|b| *b == 0))
            .and_then(|s| heapless::String::try_from(s).ok())
            .ok_or(UpdateError::BadBoard)?;
        let mut image_sha256 = [0u8; 32];
        image_sha256.copy_from_slice(
            bytes
                .get(field::IMAGE_SHA256)
                .ok_or(UpdateError::Truncated(HEADER_LEN))?,
        );
        let mut signature = [0u8; 64];
        signature.copy_from_slice(
            bytes
                .get(field::SIGNATURE)
                .ok_or(UpdateError::Truncated(HEADER_LEN))?,
        );
        Ok(UpdateHeader {
            board,
            version: FirmwareVersion::new(
                read_u16(bytes, field::VERSION_MAJOR),
                read_u16(bytes, field::VERSION_MINOR),
                read_u16(bytes, field::VERSION_PATCH),
            ),
            allow_downgrade: flags & FLAG_ALLOW_DOWNGRADE != 0,
            image_len: read_u32(bytes, field::IMAGE_LEN),
            image_sha256,
            signature,
        })
    }

    /// Writes the header into `out[..HEADER_LEN]`; the exact inverse of [`Self::parse`].
    pub fn emit(&self, out: &mut [u8; HEADER_LEN]) {
        out.fill(0);
        put(out, field::MAGIC, &MAGIC);
        let flags = if self.allow_downgrade {
            FLAG_ALLOW_DOWNGRADE
        } else {
            0
        };
        put(out, field::FORMAT..field::FORMAT + 1, &[FORMAT]);
        put(out, field::FLAGS..field::FLAGS + 1, &[flags]);
        let board = self.board.as_bytes();
        put(out, field::BOARD.start..field::BOARD.start + board.len(), board);
        put(out, field::VERSION_MAJOR, &self.version.major.to_le_bytes());
        put(out, field::VERSION_MINOR, &self.version.minor.to_le_bytes());
        put(out, field::VERSION_PATCH, &self.version.patch.to_le_bytes());
        put(out, field::IMAGE_LEN, &self.image_len.to_le_bytes());
        put(out, field::IMAGE_SHA256, &self.image_sha256);
        put(out, field::SIGNATURE, &self.signature);
    }

    /// The bytes the signature covers: the header up to the signature.
    pub fn signed_bytes(&self) -> [u8; field::SIGNED_LEN] {
        let mut all = [0u8; HEADER_LEN];
        self.emit(&mut all);
        let mut signed = [0u8; field::SIGNED_LEN];
        put(
            &mut signed,
            0..field::SIGNED_LEN,
            all.get(..field::SIGNED_LEN).unwrap_or(&[]),
        );
        signed
    }

    /// The id both sides use for this update: the first four bytes of the image hash, so the same
    /// file keeps its id across gateway restarts and a node can tell a resumed transfer from a new one.
    pub fn update_id(&self) -> u32 {
        u32::from_le_bytes([
            self.image_sha256[0],
            self.image_sha256[1],
            self.image_sha256[2],
            self.image_sha256[3],
        ])
    }
}

/// Largest image chunk in one frame: with the frame's 9-byte head it stays under
/// [`crate::MAX_MESSAGE_LEN`], so a node's MQTT receive buffer takes it whole.
pub const MAX_CHUNK: usize = 2048;
/// Length of an OTA frame's head: kind, update id, offset.
pub const FRAME_HEAD_LEN: usize = 9;
const _: () = assert!(FRAME_HEAD_LEN + MAX_CHUNK <= crate::MAX_MESSAGE_LEN);

/// One binary message on `rackwatch/v1/{site}/{node}/ota`:
/// `kind (1) | update id (u32 LE) | offset (u32 LE) | payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtaFrame<'a> {
    /// Kind 1: the update's header; offset 0. Starts an update, or resumes one the node holds.
    Header { update: u32, header: &'a [u8] },
    /// Kind 2: image bytes at `offset`.
    Chunk {
        update: u32,
        offset: u32,
        data: &'a [u8],
    },
    /// Kind 3: the gateway gives the update up; the node forgets it and keeps its firmware.
    Abort { update: u32 },
}

impl<'a> OtaFrame<'a> {
    const HEADER: u8 = 1;
    const CHUNK: u8 = 2;
    const ABORT: u8 = 3;

    pub fn parse(bytes: &'a [u8]) -> Result<Self, UpdateError> {
        let head = bytes
            .get(..FRAME_HEAD_LEN)
            .ok_or(UpdateError::Truncated(FRAME_HEAD_LEN))?;
        let update = read_u32(head, 1..5);
        let offset = read_u32(head, 5..9);
        let payload = bytes.get(FRAME_HEAD_LEN..).unwrap_or(&[]);
        match head.first().copied().unwrap_or(0) {
            Self::HEADER => {
                if payload.len() < HEADER_LEN {
                    return Err(UpdateError::Truncated(FRAME_HEAD_LEN + HEADER_LEN));
                }
                Ok(OtaFrame::Header {
                    update,
                    header: payload,
                })
            }
            Self::CHUNK if payload.len() > MAX_CHUNK => Err(UpdateError::ChunkTooLarge(payload.len())),
            Self::CHUNK => Ok(OtaFrame::Chunk {
                update,
                offset,
                data: payload,
            }),
            Self::ABORT => Ok(OtaFrame::Abort { update }),
            other => Err(UpdateError::UnknownKind(other)),
        }
    }

    /// Writes the frame into `out`; returns its length, or `None` when `out` is too small.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let (kind, update, offset, payload): (u8, u32, u32, &[u8]) = match *self {
            OtaFrame::Header { update, header } => (Self::HEADER, update, 0, header),
            OtaFrame::Chunk { update, offset, data } => (Self::CHUNK, update, offset, data),
            OtaFrame::Abort { update } => (Self::ABORT, update, 0, &[]),
        };
        let len = FRAME_HEAD_LEN + payload.len();
        let out = out.get_mut(..len)?;
        let (head, body) = out.split_at_mut(FRAME_HEAD_LEN);
        put(head, 0..1, &[kind]);
        put(head, 1..5, &update.to_le_bytes());
        put(head, 5..9, &offset.to_le_bytes());
        body.copy_from_slice(payload);
        Some(len)
    }
}

/// A node's answer on `rackwatch/v1/{site}/{node}/ota/ack`: where the update stands on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaAck {
    #[serde(rename = "v", default = "version")]
    pub version: u8,
    pub node: NodeId,
    /// The update this answers ([`UpdateHeader::update_id`]); 0 when the node holds none.
    pub update: u32,
    /// The next image offset the node expects: the resume point after a reconnect or a reboot.
    pub offset: u32,
    pub result: OtaResult,
    /// Why a frame or update was refused, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<heapless::String<64>>,
}

/// Where an update stands on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtaResult {
    /// The frame was taken; send from `offset` on.
    Accepted,
    /// The frame or the whole update was refused (`reason`); the node keeps its firmware.
    Refused,
    /// This board cannot install updates (its flash is not writable from the firmware).
    Unsupported,
    /// The whole image arrived and passed its hash and signature checks; it boots at the next reset.
    Verified,
    /// The node runs the new image and has confirmed it to its bootloader.
    Confirmed,
    /// The new image did not confirm in time; the bootloader went back to the previous one.
    RolledBack,
}

/// One of the two firmware slots of an A/B layout: the node runs from one and receives an update
/// into the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    /// The slot an update goes into while this one runs.
    pub const fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

impl Message for OtaAck {
    fn version(&self) -> u8 {
        self.version
    }
}

message_codec!(OtaAck);

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> UpdateHeader {
        UpdateHeader {
            board: heapless::String::try_from("w5500-evb-pico").unwrap(),
            version: FirmwareVersion::new(1, 4, 0),
            allow_downgrade: true,
            image_len: 123_456,
            image_sha256: core::array::from_fn(|i| i as u8),
            signature: core::array::from_fn(|i| 200u8.wrapping_add(i as u8)),
        }
    }

    #[test]
    fn header_emit_and_parse_are_inverses() {
        let mut bytes = [0u8; HEADER_LEN];
        header().emit(&mut bytes);
        assert_eq!(&bytes[..4], b"RKFW");
        assert_eq!(UpdateHeader::parse(&bytes), Ok(header()));
    }

    #[test]
    fn header_fields_sit_where_the_spec_says() {
        let mut bytes = [0u8; HEADER_LEN];
        header().emit(&mut bytes);
        assert_eq!(bytes[4], 1, "format");
        assert_eq!(bytes[5], FLAG_ALLOW_DOWNGRADE);
        assert_eq!(&bytes[8..22], b"w5500-evb-pico");
        assert_eq!(&bytes[40..46], &[1, 0, 4, 0, 0, 0]);
        assert_eq!(&bytes[48..52], &123_456u32.to_le_bytes());
        assert_eq!(bytes[52], 0);
        assert_eq!(bytes[84], 200);
    }

    #[test]
    fn header_refuses_what_is_not_one() {
        let mut bytes = [0u8; HEADER_LEN];
        header().emit(&mut bytes);
        assert_eq!(
            UpdateHeader::parse(&bytes[..100]),
            Err(UpdateError::Truncated(HEADER_LEN))
        );
        let mut wrong = bytes;
        wrong[0] = b'X';
        assert_eq!(UpdateHeader::parse(&wrong), Err(UpdateError::BadMagic));
        let mut wrong = bytes;
        wrong[4] = 2;
        assert_eq!(
            UpdateHeader::parse(&wrong),
            Err(UpdateError::UnsupportedFormat(2))
        );
        let mut wrong = bytes;
        wrong[8] = 0;
        assert_eq!(UpdateHeader::parse(&wrong), Err(UpdateError::BadBoard));
        let mut wrong = bytes;
        wrong[7] = 1;
        assert_eq!(UpdateHeader::parse(&wrong), Err(UpdateError::Reserved));
    }

    #[test]
    fn versions_order_as_semantic_versions() {
        assert!(FirmwareVersion::new(1, 10, 0) > FirmwareVersion::new(1, 9, 9));
        assert_eq!(
            FirmwareVersion::parse("1.4.0"),
            Some(FirmwareVersion::new(1, 4, 0))
        );
        assert_eq!(FirmwareVersion::parse("1.4"), None);
        assert_eq!(FirmwareVersion::parse("1.4.0.1"), None);
        assert_eq!(FirmwareVersion::parse("1.x.0"), None);
    }

    #[test]
    fn frames_round_trip_and_refuse_garbage() {
        let data = [7u8; 100];
        let mut buf = [0u8; 4096];
        for frame in [
            OtaFrame::Chunk {
                update: 9,
                offset: 4096,
                data: &data,
            },
            OtaFrame::Abort { update: 9 },
        ] {
            let n = frame.emit(&mut buf).unwrap();
            assert_eq!(OtaFrame::parse(&buf[..n]), Ok(frame));
        }
        let mut header_bytes = [0u8; HEADER_LEN];
        header().emit(&mut header_bytes);
        let n = OtaFrame::Header {
            update: 9,
            header: &header_bytes,
        }
        .emit(&mut buf)
        .unwrap();
        assert_eq!(
            OtaFrame::parse(&buf[..n]),
            Ok(OtaFrame::Header {
                update: 9,
                header: &header_bytes
            })
        );
        assert_eq!(
            OtaFrame::parse(&[2, 0, 0]),
            Err(UpdateError::Truncated(FRAME_HEAD_LEN))
        );
        assert_eq!(OtaFrame::parse(&[9; 12]), Err(UpdateError::UnknownKind(9)));
        let big = [0u8; FRAME_HEAD_LEN + MAX_CHUNK + 1];
        let mut big = big;
        big[0] = 2;
        assert_eq!(
            OtaFrame::parse(&big),
            Err(UpdateError::ChunkTooLarge(MAX_CHUNK + 1))
        );
    }

    #[test]
    fn ota_ack_round_trips_as_json() {
        let mut ack = OtaAck {
            version: 1,
            node: NodeId::new("r01-n1").unwrap(),
            update: 0x0403_0201,
            offset: 8192,
            result: OtaResult::Refused,
            reason: Some(heapless::String::try_from("signature does not verify").unwrap()),
        };
        let mut buf = [0u8; 256];
        let n = ack.encode(&mut buf).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"v":1,"node":"r01-n1","update":67305985,"offset":8192,"result":"refused","reason":"signature does not verify"}"#
        );
        assert_eq!(OtaAck::decode(&buf[..n]), Ok(ack.clone()));
        ack.result = OtaResult::RolledBack;
        ack.reason = None;
        let n = ack.encode(&mut buf).unwrap();
        assert_eq!(OtaAck::decode(&buf[..n]), Ok(ack));
    }
}
