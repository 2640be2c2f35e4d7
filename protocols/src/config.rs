//! A node's provisioned configuration: identity, location, sampling, broker and calibration.
//! Written by `rackwatch node provision` in a serial frame, or sent in a `provision` command.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::{Message, message_codec, version};
#[cfg(feature = "tls")]
use crate::trust::{CaCertificate, CaPin};
use crate::{ChannelName, Label, NodeId, SiteId};

/// The most channels a node's configuration may calibrate.
pub const MAX_CHANNELS: usize = 16;

/// Everything a node needs to know about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeConfig {
    #[serde(rename = "v", default = "version")]
    pub version: u8,
    pub node: NodeId,
    pub site: SiteId,
    #[serde(default)]
    pub location: Location,
    /// Default sampling interval of every channel.
    pub interval_ms: u32,
    pub broker: BrokerConfig,
    /// Per-channel placement, calibration and interval; channels not listed use the defaults.
    #[serde(default)]
    pub channels: heapless::Vec<ChannelConfig, MAX_CHANNELS>,
}

/// Where a node is mounted. Any part may be unknown; the gateway's inventory wins over it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Label>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<Label>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<Label>,
    /// Rack unit position, counted from the bottom (EIA-310).
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<u8>,
}

/// How a node reaches its MQTT broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerConfig {
    /// Host name or IP address.
    pub host: heapless::String<64>,
    pub port: u16,
    #[serde(default)]
    pub tls: bool,
    /// With `tls`: the name the broker's certificate must carry, sent as SNI; `host` when absent
    /// (e.g. when `host` is an IP address and the certificate names `broker.example`).
    #[cfg(feature = "tls")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<heapless::String<64>>,
    /// With `tls`: the CA the broker's certificate must chain to (`crate::trust`).
    #[cfg(feature = "tls")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaCertificate>,
    /// With `tls`, instead of `ca` where the store is too small: the SHA-256 of the CA's DER.
    #[cfg(feature = "tls")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pin: Option<CaPin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<heapless::String<32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

/// A credential. Its `Debug` and `Display` never show it, so it cannot leak into a log line.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(heapless::String<64>);

impl Secret {
    pub fn new(value: &str) -> Option<Self> {
        heapless::String::try_from(value).ok().map(Secret)
    }

    /// The secret itself, for the one place that needs it (the MQTT CONNECT packet).
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Placement, calibration and interval of one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelConfig {
    #[serde(rename = "ch")]
    pub channel: ChannelName,
    /// Where the probe sits, e.g. `inlet_top`, `outlet`, `ambient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Label>,
    /// Calibrated value = raw × gain + offset.
    #[serde(default = "one")]
    pub gain: f32,
    #[serde(default)]
    pub offset: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u32>,
}

fn one() -> f32 {
    1.0
}

impl BrokerConfig {
    /// `host:port` in clear, without credentials.
    pub fn plain(host: heapless::String<64>, port: u16) -> Self {
        BrokerConfig {
            host,
            port,
            tls: false,
            #[cfg(feature = "tls")]
            server_name: None,
            #[cfg(feature = "tls")]
            ca: None,
            #[cfg(feature = "tls")]
            ca_pin: None,
            username: None,
            password: None,
        }
    }

    /// The name the broker's certificate must carry: `server_name`, else `host`.
    #[cfg(feature = "tls")]
    pub fn tls_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or(&self.host)
    }
}

impl NodeConfig {
    pub(crate) fn is_finite(&self) -> bool {
        self.channels
            .iter()
            .all(|c| c.gain.is_finite() && c.offset.is_finite())
    }
}

impl Message for NodeConfig {
    fn version(&self) -> u8 {
        self.version
    }
    fn is_finite(&self) -> bool {
        NodeConfig::is_finite(self)
    }
}

message_codec!(NodeConfig);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_shows_in_debug() {
        let broker = BrokerConfig {
            username: Some("r01-n1".try_into().unwrap()),
            password: Secret::new("hunter2"),
            ..BrokerConfig::plain("10.0.2.2".try_into().unwrap(), 1883)
        };
        let mut shown = heapless::String::<256>::new();
        fmt::write(&mut shown, format_args!("{broker:?}")).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn channel_calibration_defaults_to_identity() {
        let json = br#"{"node":"n","site":"s","interval_ms":10000,"broker":{"host":"h","port":1883},"channels":[{"ch":"inlet_top"}]}"#;
        let config = NodeConfig::decode(json).unwrap();
        assert_eq!((config.channels[0].gain, config.channels[0].offset), (1.0, 0.0));
        assert_eq!(config.location, Location::default());
    }
}
