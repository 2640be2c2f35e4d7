//! The status message: a node's birth and last will, retained on `rackwatch/v1/{site}/{node}/status`.

use serde::{Deserialize, Serialize};

use crate::codec::{Message, message_codec, version};
use crate::telemetry::MAX_READINGS;
use crate::update::{OtaResult, Slot};
use crate::{ChannelName, NodeId};

/// Whether a node is connected to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Published (retained) by the node right after it connects: its birth message.
    Online,
    /// Registered as the node's MQTT last will at connect time; the broker publishes it when the
    /// node's connection dies without a DISCONNECT (MQTT 3.1.1 §3.1.2.5). A node that shuts down
    /// cleanly publishes it itself.
    Offline,
}

/// Where the configuration a node runs on came from, so a node that lost its provisioning says so
/// in its birth message instead of quietly publishing under its factory identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigOrigin {
    /// Loaded from the node's configuration store, or provisioned since boot.
    Provisioned,
    /// Build or command-line defaults: the store is empty (the node was never provisioned).
    DefaultsUnprovisioned,
    /// Build or command-line defaults: both slots of the store failed their CRC.
    DefaultsStoreCorrupt,
    /// Build or command-line defaults: the store could not be read, or held a configuration this
    /// firmware cannot use (unknown version, out-of-range values).
    DefaultsStoreUnusable,
}

impl ConfigOrigin {
    /// The words a console shows.
    pub const fn describe(self) -> &'static str {
        match self {
            ConfigOrigin::Provisioned => "provisioned configuration",
            ConfigOrigin::DefaultsUnprovisioned => "defaults: never provisioned (store empty)",
            ConfigOrigin::DefaultsStoreCorrupt => "defaults: both configuration slots failed their CRC",
            ConfigOrigin::DefaultsStoreUnusable => "defaults: stored configuration unreadable or invalid",
        }
    }
}

/// Why a node's encrypted link to the broker failed: what the node prints on its console and puts
/// in its next birth message, so a certificate or listener mistake is visible from the gateway
/// without a serial cable. Every one is followed by the same recovery: the node drops the
/// connection, keeps its readings and retries with back-off; it never falls back to plain TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkFailure {
    /// The broker's certificate does not chain to the CA the node was provisioned with.
    UnknownCa,
    /// The certificate chains to the CA but names another host (RFC 6125 §6.4).
    WrongHostName,
    /// The last certificate the broker sent (its CA) does not have the provisioned SHA-256 pin, or
    /// the broker sent no CA with its certificate.
    PinMismatch,
    /// The CertificateVerify signature does not verify with the certificate's key (RFC 8446 §4.4.3).
    BadSignature,
    /// The broker does not speak TLS 1.3 (its `protocol_version` alert, RFC 8446 §4.2.1).
    ProtocolVersion,
    /// The broker sent a TLS alert other than `close_notify` (RFC 8446 §6.2).
    Alert,
    /// The connection closed inside a TLS record: the bytes received end mid-record.
    TruncatedRecord,
    /// A record longer than the node's record buffer: the broker ignored max_fragment_length.
    RecordTooLarge,
    /// Any other violation of the TLS 1.3 handshake or record protocol.
    Protocol,
}

impl LinkFailure {
    /// The words a console shows.
    pub const fn describe(self) -> &'static str {
        match self {
            LinkFailure::UnknownCa => "tls: broker certificate not signed by the provisioned CA",
            LinkFailure::WrongHostName => "tls: broker certificate names another host",
            LinkFailure::PinMismatch => "tls: broker's CA does not match the provisioned pin",
            LinkFailure::BadSignature => "tls: handshake signature does not verify",
            LinkFailure::ProtocolVersion => "tls: broker does not offer TLS 1.3",
            LinkFailure::Alert => "tls: alert from the broker",
            LinkFailure::TruncatedRecord => "tls: connection closed inside a record",
            LinkFailure::RecordTooLarge => "tls: record larger than the buffer",
            LinkFailure::Protocol => "tls: protocol violation",
        }
    }
}

/// A node's status. The last will carries only `state`, `node` and `boot`, since it is written at
/// connect time; the birth message carries everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    #[serde(rename = "v", default = "version")]
    pub version: u8,
    pub node: NodeId,
    pub state: NodeState,
    /// The boot this status belongs to: an `offline` of an older boot does not mark a node that has
    /// already come back as offline.
    pub boot: u32,
    /// Firmware version (semver).
    #[serde(rename = "fw", default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<heapless::String<24>>,
    /// The hardware's serial number, which links a node to its inventory entry before provisioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<heapless::String<24>>,
    /// Milliseconds since boot when this status was published.
    #[serde(rename = "up", default, skip_serializing_if = "Option::is_none")]
    pub uptime_ms: Option<u64>,
    /// The node's default sampling interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u32>,
    /// Where the configuration in force came from (birth message only).
    #[serde(rename = "cfg", default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigOrigin>,
    /// The channels the node samples, each name once (birth only): on a board that finds its sensors
    /// by probing the bus, what it found.
    #[serde(rename = "ch", default, skip_serializing_if = "heapless::Vec::is_empty")]
    pub channels: heapless::Vec<ChannelName, MAX_READINGS>,
    /// The firmware slot the node runs from (birth only; a board without A/B slots leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<Slot>,
    /// How the last firmware update ended on this node (birth only): `confirmed` on the first boot
    /// of a new image that reached the broker, `rolled_back` after one that did not, `refused` or
    /// `unsupported` when the last update offered was turned down.
    #[serde(rename = "ota", default, skip_serializing_if = "Option::is_none")]
    pub update: Option<OtaResult>,
    /// Why the encrypted link to the broker failed since the previous birth (birth only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkFailure>,
}

impl Status {
    /// The last will a node registers when it connects.
    pub fn last_will(node: NodeId, boot: u32) -> Self {
        Status {
            version: crate::VERSION,
            node,
            state: NodeState::Offline,
            boot,
            firmware: None,
            serial: None,
            uptime_ms: None,
            interval_ms: None,
            config: None,
            channels: heapless::Vec::new(),
            slot: None,
            update: None,
            link: None,
        }
    }
}

impl Message for Status {
    fn version(&self) -> u8 {
        self.version
    }
}

message_codec!(Status);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_will_is_minimal() {
        let mut buf = [0u8; 128];
        let n = Status::last_will(NodeId::new("r01-n1").unwrap(), 9)
            .encode(&mut buf)
            .unwrap();
        assert_eq!(
            &buf[..n],
            br#"{"v":1,"node":"r01-n1","state":"offline","boot":9}"#
        );
    }
}
