//! The rackwatch wire format: the one specification that sensor nodes, the gateway and third-party
//! devices follow. `protocols/README.md` shows every message with an example.
//!
//! What is here, in the order data flows through it:
//! - [`topic`]: the versioned MQTT topic layout (`rackwatch/v1/{site}/{node}/telemetry`, ...).
//! - [`Telemetry`], [`Status`], [`Command`], [`Ack`], [`Alert`], [`NodeConfig`]: the messages, as plain
//!   structs with `decode(&[u8])` and `encode(&self, &mut [u8])`. The encoding is JSON (serde-json-core:
//!   no heap, bounded sizes); decoders ignore unknown fields so the format can grow.
//! - [`update`]: the signed firmware update file and the binary frames that carry it over MQTT.
//! - [`frame`]: COBS frames with a CRC-16 for nodes on UART, USB or RS-485 (provisioning, and
//!   telemetry from serial-attached nodes).
//!
//! Nothing here allocates or panics: every malformed input is a typed [`DecodeError`] or
//! [`frame::FrameError`].
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(feature = "std")]
extern crate std;

mod ack;
mod alert;
mod codec;
mod command;
mod config;
pub mod frame;
mod ident;
mod quantity;
mod status;
mod telemetry;
pub mod topic;
#[cfg(feature = "tls")]
mod trust;
pub mod update;

pub use ack::{Ack, AckResult};
pub use alert::{Alert, AlertState, Severity};
pub use codec::{DecodeError, EncodeError};
pub use command::{Command, CommandKind, FanTarget, MAX_INTERVAL_MS, MIN_INTERVAL_MS};
pub use config::{BrokerConfig, ChannelConfig, Location, NodeConfig, Secret};
pub use ident::{ChannelName, IdError, Label, NodeId, SiteId};
pub use quantity::{Quantity, ReadingStatus, Unit};
pub use status::{ConfigOrigin, LinkFailure, NodeState, Status};
pub use telemetry::{MAX_READINGS, Reading, Telemetry};
#[cfg(feature = "tls")]
pub use trust::{CaCertificate, CaPin, MAX_CA_DER};
pub use update::{FirmwareVersion, OtaAck, OtaFrame, OtaResult, Slot, UpdateError, UpdateHeader};

/// Version of this wire format: the `v1` in every topic and the `"v":1` in every message.
pub const VERSION: u8 = 1;

/// Hard maximum size of one encoded message in bytes, on MQTT and inside a serial frame.
///
/// A telemetry message with [`MAX_READINGS`] readings of the longest names and values fits
/// (`telemetry::tests::worst_case_telemetry_fits`); anything longer is rejected unread.
pub const MAX_MESSAGE_LEN: usize = 2304;
