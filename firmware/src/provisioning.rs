//! Serial provisioning, the node's side (protocols/README.md, "Serial frames"): sans-IO, so the board
//! feeds it the bytes its UART received and writes out the frames it returns.
//!
//! - `Hello` is answered by `Info` (a [`Status`] with firmware version and serial number) and marks a
//!   host as attached: the board then sends its log lines as `Log` frames.
//! - `GetConfig` is answered by `Config`: the configuration in force, its password left out.
//! - `SetConfig` is checked ([`check`]); a refused value is answered `rejected` and changes nothing,
//!   an accepted one is handed to the board (to store and apply) and answered by [`result_frame`].
//!
//! A frame whose CRC or COBS encoding is broken is dropped without an answer: the host times out and
//! sends it again. Every frame this module writes starts with a delimiter, so a plain-text log line
//! the board wrote before it ends there instead of corrupting the frame.

use rackwatch_protocols::frame::{self, FrameDecoder, FrameKind};
use rackwatch_protocols::{Ack, AckResult, EncodeError, NodeConfig, NodeId, Status, Telemetry};

/// The longest frame the node accepts: a configuration with every channel calibrated fits.
pub const MAX_FRAME_LEN: usize = 2048;

/// A request from the provisioning host.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "no heap to box it in; one request lives at a time"
)]
pub enum Request {
    /// Who are you? Answer with [`info_frame`].
    Hello,
    /// Send your configuration: answer with [`config_frame`].
    GetConfig,
    /// Store and apply this configuration (already [`check`]ed); answer with [`result_frame`].
    SetConfig(NodeConfig),
    /// A `SetConfig` that was refused; answer `rejected` with this reason and change nothing.
    Refused(&'static str),
}

/// The reassembler of the host's frames.
#[derive(Debug, Default)]
pub struct Provisioning {
    decoder: FrameDecoder<MAX_FRAME_LEN>,
    host_attached: bool,
    dropped: u32,
}

impl Provisioning {
    pub const fn new() -> Self {
        Provisioning {
            decoder: FrameDecoder::new(),
            host_attached: false,
            dropped: 0,
        }
    }

    /// Feeds one received byte; returns a request and its tag when a frame for the node ends.
    pub fn feed(&mut self, byte: u8) -> Option<(u8, Request)> {
        let frame = match self.decoder.feed(&[byte]).1? {
            Ok(frame) => frame,
            Err(_) => {
                self.dropped = self.dropped.wrapping_add(1);
                return None;
            }
        };
        let request = match frame.kind {
            FrameKind::Hello => Request::Hello,
            FrameKind::GetConfig => Request::GetConfig,
            FrameKind::SetConfig => match NodeConfig::decode(frame.body) {
                Ok(config) => match check(&config) {
                    Ok(()) => Request::SetConfig(config),
                    Err(reason) => Request::Refused(reason),
                },
                Err(_) => Request::Refused("not a valid configuration"),
            },
            // Frames for the host (an echo on a loop-back line) or not for provisioning.
            _ => return None,
        };
        self.host_attached = true;
        Some((frame.tag, request))
    }

    /// Whether a host has spoken to the node since boot (it wants log lines as `Log` frames).
    pub fn host_attached(&self) -> bool {
        self.host_attached
    }

    /// Frames dropped for a bad CRC, COBS or length since boot.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }
}

/// The limits a configuration must keep; the same as the `set_interval` command's.
pub fn check(config: &NodeConfig) -> Result<(), &'static str> {
    if config.version != rackwatch_protocols::VERSION {
        return Err("bad version");
    }
    if !(100..=3_600_000).contains(&config.interval_ms) {
        return Err("interval_ms out of range");
    }
    if config.broker.port == 0 || config.broker.host.is_empty() {
        return Err("no broker");
    }
    let bad_channel = config.channels.iter().any(|c| {
        !(c.gain.is_finite() && c.offset.is_finite())
            || c.interval_ms.is_some_and(|ms| !(100..=3_600_000).contains(&ms))
    });
    if bad_channel {
        return Err("channel out of range");
    }
    Ok(())
}

/// `Info` answering a `Hello`. `body` is scratch space for the JSON.
pub fn info_frame<'o>(tag: u8, status: &Status, body: &mut [u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    write_frame(FrameKind::Info, tag, |b| status.encode(b), body, out)
}

/// `Config` answering a `GetConfig`: `config` with its password left out.
pub fn config_frame<'o>(
    tag: u8,
    config: &NodeConfig,
    body: &mut [u8],
    out: &'o mut [u8],
) -> Option<&'o [u8]> {
    let mut shown = config.clone();
    shown.broker.password = None;
    write_frame(FrameKind::Config, tag, |b| shown.encode(b), body, out)
}

/// `Result` answering a `SetConfig`: the ack's id is the frame's tag.
pub fn result_frame<'o>(
    tag: u8,
    node: NodeId,
    result: AckResult,
    detail: Option<&str>,
    body: &mut [u8],
    out: &'o mut [u8],
) -> Option<&'o [u8]> {
    let mut ack = Ack::new(u32::from(tag), node, result);
    ack.detail = detail.and_then(|d| heapless::String::try_from(d).ok());
    write_frame(FrameKind::Result, tag, |b| ack.encode(b), body, out)
}

/// `Telemetry` frame of the newest readings, for `rackwatch node console` (tag 0: not an answer).
pub fn telemetry_frame<'o>(telemetry: &Telemetry, body: &mut [u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    write_frame(FrameKind::Telemetry, 0, |b| telemetry.encode(b), body, out)
}

/// `Log` carrying one line for the console.
pub fn log_frame<'o>(line: &str, out: &'o mut [u8]) -> Option<&'o [u8]> {
    write_frame(
        FrameKind::Log,
        0,
        |b| {
            let bytes = line.as_bytes();
            let len = bytes.len().min(b.len());
            b.get_mut(..len)
                .ok_or(EncodeError::BufferTooSmall)?
                .copy_from_slice(bytes.get(..len).unwrap_or_default());
            Ok(len)
        },
        &mut [0u8; 160],
        out,
    )
}

/// Encodes the body with `encode`, then the frame after a leading delimiter.
fn write_frame<'o>(
    kind: FrameKind,
    tag: u8,
    encode: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>,
    body: &mut [u8],
    out: &'o mut [u8],
) -> Option<&'o [u8]> {
    let len = encode(body).ok()?;
    let (delimiter, rest) = out.split_first_mut()?;
    *delimiter = 0;
    let written = frame::encode(kind, tag, body.get(..len)?, rest).ok()?;
    out.get(..written + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackwatch_protocols::frame::MAX_ENCODED_LEN;

    const CONFIG: &[u8] = br#"{"v":1,"node":"r01-n1","site":"fra1","location":{"room":"hall-a","rack":"a01"},"interval_ms":5000,"broker":{"host":"10.0.2.2","port":1883,"username":"r01-n1","password":"s3cret"},"channels":[{"ch":"inlet","gain":1.02,"offset":-0.5}]}"#;

    fn line(kind: FrameKind, tag: u8, body: &[u8]) -> std::vec::Vec<u8> {
        let mut out = [0u8; MAX_ENCODED_LEN];
        let n = frame::encode(kind, tag, body, &mut out).unwrap();
        out[..n].to_vec()
    }

    fn feed_all(provisioning: &mut Provisioning, bytes: &[u8]) -> std::vec::Vec<(u8, Request)> {
        bytes.iter().filter_map(|&b| provisioning.feed(b)).collect()
    }

    #[test]
    fn hello_get_and_set_config_are_recognised() {
        let mut p = Provisioning::new();
        assert!(!p.host_attached());
        assert_eq!(
            feed_all(&mut p, &line(FrameKind::Hello, 1, b"")),
            [(1, Request::Hello)]
        );
        assert!(p.host_attached());
        assert_eq!(
            feed_all(&mut p, &line(FrameKind::GetConfig, 2, b"")),
            [(2, Request::GetConfig)]
        );
        let got = feed_all(&mut p, &line(FrameKind::SetConfig, 3, CONFIG));
        assert_eq!(
            got,
            [(3, Request::SetConfig(NodeConfig::decode(CONFIG).unwrap()))]
        );
    }

    #[test]
    fn a_corrupted_frame_is_dropped_and_the_next_one_read() {
        let mut p = Provisioning::new();
        let mut bad = line(FrameKind::SetConfig, 4, CONFIG);
        bad[20] ^= 0x01;
        assert_eq!(feed_all(&mut p, &bad), []);
        assert_eq!(p.dropped(), 1);
        assert_eq!(
            feed_all(&mut p, &line(FrameKind::Hello, 5, b"")),
            [(5, Request::Hello)]
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut p = Provisioning::new();
        let slow = std::string::String::from_utf8_lossy(CONFIG).replace("5000", "99");
        assert_eq!(
            feed_all(&mut p, &line(FrameKind::SetConfig, 6, slow.as_bytes())),
            [(6, Request::Refused("interval_ms out of range"))]
        );
        assert_eq!(
            feed_all(&mut p, &line(FrameKind::SetConfig, 7, b"{\"node\":1}")),
            [(7, Request::Refused("not a valid configuration"))]
        );
    }

    #[test]
    fn config_frame_leaves_the_password_out() {
        let config = NodeConfig::decode(CONFIG).unwrap();
        let (mut body, mut out) = ([0u8; 1024], [0u8; 1200]);
        let frame = config_frame(9, &config, &mut body, &mut out).unwrap().to_vec();
        assert_eq!(frame[0], 0, "a frame starts with a delimiter");
        let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
        let (_, parsed) = decoder.feed(&frame[1..]);
        let parsed = parsed.unwrap().unwrap();
        assert_eq!((parsed.kind, parsed.tag), (FrameKind::Config, 9));
        assert!(!std::str::from_utf8(parsed.body).unwrap().contains("s3cret"));
        let read_back = NodeConfig::decode(parsed.body).unwrap();
        assert_eq!(read_back.broker.password, None);
        assert_eq!(read_back.node, config.node);
    }

    #[test]
    fn result_carries_the_tag_as_ack_id() {
        let (mut body, mut out) = ([0u8; 256], [0u8; 300]);
        let node = NodeId::new("r01-n1").unwrap();
        let frame = result_frame(12, node, AckResult::Rejected, Some("no"), &mut body, &mut out).unwrap();
        let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
        let parsed = decoder.feed(&frame[1..]).1.unwrap().unwrap();
        let ack = Ack::decode(parsed.body).unwrap();
        assert_eq!(
            (ack.id, ack.result, ack.detail.as_deref()),
            (12, AckResult::Rejected, Some("no"))
        );
    }
}
