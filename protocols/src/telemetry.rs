//! The telemetry message: one node's readings at one moment (protocols/README.md, "Telemetry").

use serde::{Deserialize, Serialize};

use crate::codec::{Message, is_default, message_codec, version};
use crate::{ChannelName, NodeId, Quantity, ReadingStatus, Unit};

/// The most readings one telemetry message may carry.
pub const MAX_READINGS: usize = 16;

/// One node's readings, sampled together, published on `rackwatch/v1/{site}/{node}/telemetry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    #[serde(rename = "v", default = "version")]
    pub version: u8,
    /// The node's identity; must equal the `{node}` level of the topic it came on.
    pub node: NodeId,
    /// Random per boot: together with `seq` it tells a reboot from a gap.
    pub boot: u32,
    /// Per boot, starting at 0 and increasing by one per message. The gateway drops a repeated
    /// `(boot, seq)` and counts the missing ones.
    pub seq: u32,
    /// Unix time in milliseconds when the node's clock is synced; absent otherwise.
    #[serde(rename = "ts", default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<u64>,
    /// Milliseconds since boot when the readings were sampled. With the node's `status` uptime the
    /// gateway dates messages that an unsynced node buffered while it was offline.
    #[serde(rename = "up")]
    pub uptime_ms: u64,
    /// Messages this node dropped from its store-and-forward ring since the previous message.
    #[serde(default, skip_serializing_if = "is_default")]
    pub dropped: u32,
    pub readings: heapless::Vec<Reading, MAX_READINGS>,
}

/// One channel's value in a [`Telemetry`] message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The channel, e.g. `inlet_top`; its placement comes from the inventory or the node's config.
    #[serde(rename = "ch")]
    pub channel: ChannelName,
    #[serde(rename = "q")]
    pub quantity: Quantity,
    /// The value in `unit`; absent when `status` is not `ok`.
    #[serde(rename = "val", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub unit: Unit,
    #[serde(rename = "st", default, skip_serializing_if = "is_default")]
    pub status: ReadingStatus,
}

impl Reading {
    /// A good reading.
    pub fn ok(channel: ChannelName, quantity: Quantity, value: f64, unit: Unit) -> Self {
        Reading {
            channel,
            quantity,
            value: Some(value),
            unit,
            status: ReadingStatus::Ok,
        }
    }

    /// A reading whose sensor failed: no value, and the reason.
    pub fn failed(channel: ChannelName, quantity: Quantity, unit: Unit, status: ReadingStatus) -> Self {
        Reading {
            channel,
            quantity,
            value: None,
            unit,
            status,
        }
    }
}

impl Message for Telemetry {
    fn version(&self) -> u8 {
        self.version
    }
    fn is_finite(&self) -> bool {
        self.readings.iter().all(|r| r.value.is_none_or(f64::is_finite))
    }
}

message_codec!(Telemetry);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DecodeError, EncodeError, MAX_MESSAGE_LEN};

    fn example() -> Telemetry {
        let mut readings = heapless::Vec::new();
        let ch = |s| ChannelName::new(s).unwrap();
        readings
            .push(Reading::ok(
                ch("inlet_top"),
                Quantity::Temperature,
                24.5,
                Unit::Celsius,
            ))
            .unwrap();
        readings
            .push(Reading::failed(
                ch("outlet"),
                Quantity::Temperature,
                Unit::Celsius,
                ReadingStatus::Fault,
            ))
            .unwrap();
        Telemetry {
            version: 1,
            node: NodeId::new("r01-n1").unwrap(),
            boot: 7,
            seq: 42,
            timestamp_ms: None,
            uptime_ms: 120_000,
            dropped: 0,
            readings,
        }
    }

    #[test]
    fn encodes_compact_json_without_defaults() {
        let mut buf = [0u8; 512];
        let n = example().encode(&mut buf).unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"v":1,"node":"r01-n1","boot":7,"seq":42,"up":120000,"readings":[{"ch":"inlet_top","q":"temperature","val":24.5,"unit":"C"},{"ch":"outlet","q":"temperature","unit":"C","st":"fault"}]}"#
        );
    }

    #[test]
    fn decode_ignores_unknown_fields() {
        let json = br#"{"v":1,"node":"n","boot":1,"seq":2,"up":3,"fw_extra":{"a":[1,2]},"readings":[{"ch":"c","q":"power","val":1.5,"unit":"kW","future":true}]}"#;
        let t = Telemetry::decode(json).unwrap();
        assert_eq!(t.readings[0].value, Some(1.5));
        assert_eq!(t.readings[0].unit, Unit::Kilowatt);
    }

    #[test]
    fn decode_rejects_other_versions_and_trailing_bytes() {
        let v2 = br#"{"v":2,"node":"n","boot":1,"seq":2,"up":3,"readings":[]}"#;
        assert_eq!(Telemetry::decode(v2), Err(DecodeError::UnsupportedVersion(2)));
        let trailing = br#"{"node":"n","boot":1,"seq":2,"up":3,"readings":[]} x"#;
        assert!(matches!(Telemetry::decode(trailing), Err(DecodeError::Json(_))));
    }

    #[test]
    fn decode_rejects_a_node_id_that_could_not_be_a_topic_level() {
        let json = br#"{"node":"a/b","boot":1,"seq":2,"up":3,"readings":[]}"#;
        assert!(matches!(Telemetry::decode(json), Err(DecodeError::Json(_))));
    }

    #[test]
    fn decode_rejects_more_readings_than_allowed() {
        let mut json = heapless::String::<2048>::new();
        json.push_str(r#"{"node":"n","boot":1,"seq":2,"up":3,"readings":["#)
            .unwrap();
        for i in 0..=MAX_READINGS {
            if i > 0 {
                json.push(',').unwrap();
            }
            json.push_str(r#"{"ch":"c","q":"power","val":1,"unit":"W"}"#)
                .unwrap();
        }
        json.push_str("]}").unwrap();
        assert!(matches!(
            Telemetry::decode(json.as_bytes()),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn decode_rejects_oversized_input_unread() {
        let big = [b' '; MAX_MESSAGE_LEN + 1];
        assert_eq!(
            Telemetry::decode(&big),
            Err(DecodeError::TooLarge {
                len: MAX_MESSAGE_LEN + 1
            })
        );
    }

    #[test]
    fn encode_refuses_nan() {
        let mut t = example();
        t.readings[0].value = Some(f64::NAN);
        assert_eq!(t.encode(&mut [0u8; 512]), Err(EncodeError::NonFinite));
    }

    #[test]
    fn worst_case_telemetry_fits() {
        let mut t = example();
        t.node = NodeId::new(&"n".repeat(32)).unwrap();
        t.boot = u32::MAX;
        t.seq = u32::MAX;
        t.timestamp_ms = Some(u64::MAX);
        t.uptime_ms = u64::MAX;
        t.dropped = u32::MAX;
        t.readings.clear();
        let channel = ChannelName::new(&"c".repeat(24)).unwrap();
        while t.readings.len() < MAX_READINGS {
            let mut r = Reading::ok(
                channel.clone(),
                Quantity::RelativeHumidity,
                -1.2345678901234567e-300,
                Unit::KilowattHour,
            );
            r.status = ReadingStatus::OutOfRange;
            t.readings.push(r).unwrap();
        }
        let mut buf = [0u8; 4096];
        let n = t.encode(&mut buf).unwrap();
        assert!(n <= MAX_MESSAGE_LEN, "worst case is {n} bytes");
    }
}
