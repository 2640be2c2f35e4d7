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
//!
//! [`load`] reads the configuration a node boots on from its [`ConfigStore`], and [`Provisioner`]
//! answers the requests and keeps the store: a board supplies only the bytes of its serial port (UART,
//! USB CDC-ACM), a way to send bytes back, its flash, and what its network stack cannot do
//! ([`BoardCheck`]).

use embedded_storage::nor_flash::NorFlash;
use rackwatch_protocols::frame::{self, FrameDecoder, FrameKind, MAX_ENCODED_LEN};
use rackwatch_protocols::{
    Ack, AckResult, BrokerConfig, ConfigOrigin, EncodeError, NodeConfig, NodeId, NodeState, Status, Telemetry,
};

use crate::config_store::{ConfigStore, Loaded};
use crate::node::Node;
use crate::transport::Transport;

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
    #[cfg(feature = "tls")]
    if config.broker.tls && config.broker.ca.is_none() && config.broker.ca_pin.is_none() {
        return Err("tls without a CA or CA pin");
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

/// The configuration a node boots on, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct BootConfig {
    pub config: NodeConfig,
    pub origin: ConfigOrigin,
}

/// Reads the configuration stored in `store`; `defaults` (the board's build or command-line settings)
/// when the store is empty, both slots fail their CRC, the flash cannot be read, or the stored
/// configuration no longer passes [`check`]. `scratch` holds a slot while it is read.
pub fn load<F: NorFlash, const SLOT: usize>(
    store: &mut ConfigStore<F, SLOT>,
    defaults: NodeConfig,
    scratch: &mut [u8; SLOT],
) -> BootConfig {
    let stored = match store.load(scratch) {
        Ok(Loaded::Config(len)) => scratch
            .get(..len)
            .and_then(|json| NodeConfig::decode(json).ok())
            .filter(|config| check(config).is_ok())
            .ok_or(ConfigOrigin::DefaultsStoreUnusable),
        Ok(Loaded::Empty) => Err(ConfigOrigin::DefaultsUnprovisioned),
        Ok(Loaded::Corrupt) => Err(ConfigOrigin::DefaultsStoreCorrupt),
        Err(_) => Err(ConfigOrigin::DefaultsStoreUnusable),
    };
    match stored {
        Ok(config) => BootConfig {
            config,
            origin: ConfigOrigin::Provisioned,
        },
        Err(origin) => BootConfig {
            config: defaults,
            origin,
        },
    }
}

/// What a board's network stack cannot take, beyond [`check`] and the node's own channels: e.g. a
/// broker host that is not an IPv4 literal on a board without DNS, or TLS on a board without a TLS
/// stack. Returns the reason for the `rejected` answer.
pub type BoardCheck = fn(&NodeConfig) -> Result<(), &'static str>;

/// The broker of a configuration, for a board with neither a TLS stack nor DNS: its IPv4 address and
/// port, or why the board cannot reach it (refusing `tls` beats connecting in clear unasked).
pub fn plain_ipv4_broker(broker: &BrokerConfig) -> Result<(core::net::Ipv4Addr, u16), &'static str> {
    if broker.tls {
        return Err("no TLS on this board");
    }
    let address = broker.host.parse().map_err(|_| "broker host not IPv4")?;
    Ok((address, broker.port))
}

/// The [`BoardCheck`] of a board with neither a TLS stack nor DNS ([`plain_ipv4_broker`]).
pub fn check_plain_ipv4_broker(config: &NodeConfig) -> Result<(), &'static str> {
    plain_ipv4_broker(&config.broker).map(|_| ())
}

/// The broker of a configuration, for a board built to speak only TLS, without DNS: its IPv4
/// address and port. A configuration without `tls` is refused rather than sent over TLS unasked;
/// its CA or pin [`check`] already required.
pub fn tls_ipv4_broker(broker: &BrokerConfig) -> Result<(core::net::Ipv4Addr, u16), &'static str> {
    if !broker.tls {
        return Err("this build speaks only TLS (provision with --tls --ca)");
    }
    let address = broker.host.parse().map_err(|_| "broker host not IPv4")?;
    Ok((address, broker.port))
}

/// The [`BoardCheck`] of a board with a TLS stack and no DNS ([`tls_ipv4_broker`]).
pub fn check_tls_ipv4_broker(config: &NodeConfig) -> Result<(), &'static str> {
    tls_ipv4_broker(&config.broker).map(|_| ())
}

#[cfg(feature = "tls")]
/// Whether two broker configurations ask for the same TLS: flag, name and trust. A board whose TLS
/// engine runs on the boot-time settings restarts when a provisioned configuration changes them.
pub fn same_tls(a: &BrokerConfig, b: &BrokerConfig) -> bool {
    a.tls == b.tls && a.tls_name() == b.tls_name() && a.ca == b.ca && a.ca_pin == b.ca_pin
}

/// The node's side of provisioning: reassembles the host's frames, answers them, stores an accepted
/// configuration in the two-slot store and applies it to the node.
#[derive(Debug)]
pub struct Provisioner<F, const SLOT: usize> {
    frames: Provisioning,
    store: ConfigStore<F, SLOT>,
    in_force: NodeConfig,
    origin: ConfigOrigin,
    board_check: BoardCheck,
    /// Where a record is assembled before it is written.
    scratch: [u8; SLOT],
}

impl<F: NorFlash, const SLOT: usize> Provisioner<F, SLOT> {
    /// Loads the configuration in `store` ([`load`]); the node must be built or [`adopt`ed]
    /// (`Node::adopt_provisioned`) from [`Provisioner::in_force`] afterwards.
    ///
    /// [`adopt`ed]: Node::adopt_provisioned
    pub fn new(mut store: ConfigStore<F, SLOT>, defaults: NodeConfig, board_check: BoardCheck) -> Self {
        let mut scratch = [0u8; SLOT];
        let BootConfig { config, origin } = load(&mut store, defaults, &mut scratch);
        Provisioner {
            frames: Provisioning::new(),
            store,
            in_force: config,
            origin,
            board_check,
            scratch,
        }
    }

    /// The configuration in force: the loaded or last provisioned one, or the defaults.
    pub fn in_force(&self) -> &NodeConfig {
        &self.in_force
    }

    /// Where [`Provisioner::in_force`] came from.
    pub fn origin(&self) -> ConfigOrigin {
        self.origin
    }

    /// Whether a host has spoken since boot (the board then sends log lines as `Log` frames).
    pub fn host_attached(&self) -> bool {
        self.frames.host_attached()
    }

    /// Frames dropped for a bad CRC, COBS or length since boot.
    pub fn dropped(&self) -> u32 {
        self.frames.dropped()
    }

    /// Feeds one byte from the serial port. When it completes a request, the answer goes out through
    /// `send`; a configuration that was accepted is stored, applied to `node` (the session starts
    /// again under the new identity) and returned, for the board to switch its broker address.
    pub fn feed<const RING: usize, T: Transport + ?Sized>(
        &mut self,
        byte: u8,
        node: &mut Node<RING>,
        now_ms: u64,
        transport: &mut T,
        send: &mut dyn FnMut(&[u8]),
    ) -> Option<&NodeConfig> {
        let (tag, request) = self.frames.feed(byte)?;
        let mut body = [0u8; MAX_FRAME_LEN];
        let mut out = [0u8; MAX_ENCODED_LEN + 1];
        let (frame, stored) = match request {
            Request::Hello => {
                let status = self.status(node, now_ms);
                (info_frame(tag, &status, &mut body, &mut out), false)
            }
            Request::GetConfig => (config_frame(tag, &self.in_force, &mut body, &mut out), false),
            Request::Refused(reason) => {
                let node_id = node.config().node.clone();
                let frame = result_frame(
                    tag,
                    node_id,
                    AckResult::Rejected,
                    Some(reason),
                    &mut body,
                    &mut out,
                );
                (frame, false)
            }
            Request::SetConfig(config) => {
                let verdict = node
                    .accepts(&config)
                    .and_then(|()| (self.board_check)(&config))
                    .and_then(|()| self.store(&config, &mut body));
                let (node_id, result, reason) = match verdict {
                    Ok(()) => (config.node.clone(), AckResult::Ok, None),
                    Err(reason) => (node.config().node.clone(), AckResult::Rejected, Some(reason)),
                };
                let stored = verdict.is_ok();
                if stored {
                    node.apply_provisioned(&config, now_ms, transport);
                    self.in_force = config;
                    self.origin = ConfigOrigin::Provisioned;
                }
                (
                    result_frame(tag, node_id, result, reason, &mut body, &mut out),
                    stored,
                )
            }
        };
        if let Some(frame) = frame {
            send(frame);
        }
        stored.then_some(&self.in_force)
    }

    /// Writes `config` to the store; `body` is scratch space for its JSON.
    fn store(&mut self, config: &NodeConfig, body: &mut [u8]) -> Result<(), &'static str> {
        let len = config.encode(body).map_err(|_| "configuration too large")?;
        let json = body.get(..len).ok_or("configuration too large")?;
        self.store
            .save(json, &mut self.scratch)
            .map_err(|_| "configuration not stored (flash write failed or too large)")
    }

    /// The `Info` a `Hello` gets: who the node is, and where its configuration came from.
    fn status<const RING: usize>(&self, node: &Node<RING>, now_ms: u64) -> Status {
        let config = node.config();
        Status {
            version: rackwatch_protocols::VERSION,
            node: config.node.clone(),
            state: if node.is_online() {
                NodeState::Online
            } else {
                NodeState::Offline
            },
            boot: config.boot,
            firmware: Some(config.firmware.clone()),
            serial: config.serial.clone(),
            uptime_ms: Some(now_ms),
            interval_ms: Some(node.interval_ms()),
            config: Some(self.origin),
            channels: heapless::Vec::new(),
            slot: None,
            update: None,
            link: None,
        }
    }
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

/// One console line as the serial port carries it: plain text ending in CR LF until a provisioning
/// host has attached (a terminal shows it as is), a `Log` frame afterwards. Cut at 160 bytes.
pub fn console_line<'o>(
    host_attached: bool,
    line: core::fmt::Arguments<'_>,
    out: &'o mut [u8],
) -> Option<&'o [u8]> {
    use core::fmt::Write as _;
    let mut text: heapless::String<160> = heapless::String::new();
    // A line longer than the buffer is cut there; the part that fits is still worth showing.
    let _ = text.write_fmt(line);
    if host_attached {
        return log_frame(&text, out);
    }
    let bytes = text.as_bytes();
    let len = bytes.len();
    let shown = out.get_mut(..len + 2)?;
    shown.get_mut(..len)?.copy_from_slice(bytes);
    shown.get_mut(len..)?.copy_from_slice(b"\r\n");
    Some(shown)
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
mod tests;
