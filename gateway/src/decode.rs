//! Decode: from a received message to a typed one, or a reason it is rejected.

use rackwatch_protocols::frame::FrameKind;
use rackwatch_protocols::topic::{self, NodeTopic};
use rackwatch_protocols::{Ack, DecodeError, MAX_MESSAGE_LEN, OtaAck, Status, Telemetry};

use crate::model::Route;

/// A message the pipeline can use.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "decoded on the stack and consumed at once; boxing would allocate per message"
)]
pub enum Decoded {
    Telemetry(Telemetry),
    Status(Status),
    Ack(Ack),
    /// A node's answer to a firmware update frame (counted when it refuses).
    OtaAck(OtaAck),
}

/// Why a whole message was rejected. The names are the `reason` label of
/// `rackwatch_messages_rejected_total` and of the dead-letter file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Over the wire format's size limit.
    Oversize,
    /// Not a message of the wire format (syntax, a missing field, a bad identifier ...).
    Malformed,
    /// Not a rackwatch node topic, or a topic of another site.
    WrongTopic,
    /// The payload's node id differs from the topic's.
    NodeMismatch,
    /// A wire format version this gateway does not speak.
    UnsupportedVersion,
    /// Dated further back than `normalise.max_age`.
    Stale,
    /// A serial frame whose COBS encoding, length or CRC is broken.
    BadFrame,
}

impl RejectReason {
    pub const ALL: [RejectReason; 7] = [
        RejectReason::Oversize,
        RejectReason::Malformed,
        RejectReason::WrongTopic,
        RejectReason::NodeMismatch,
        RejectReason::UnsupportedVersion,
        RejectReason::Stale,
        RejectReason::BadFrame,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::Oversize => "oversize",
            RejectReason::Malformed => "malformed",
            RejectReason::WrongTopic => "wrong_topic",
            RejectReason::NodeMismatch => "node_mismatch",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::Stale => "stale",
            RejectReason::BadFrame => "bad_frame",
        }
    }
}

/// A rejection with what the log and the dead-letter file say about it.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub reason: RejectReason,
    /// The node, when the topic or payload named one.
    pub node: Option<String>,
    pub detail: String,
}

fn reject(reason: RejectReason, node: Option<&str>, detail: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        node: node.map(str::to_owned),
        detail: detail.into(),
    }
}

impl From<DecodeError> for RejectReason {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::TooLarge { .. } => RejectReason::Oversize,
            DecodeError::UnsupportedVersion(_) => RejectReason::UnsupportedVersion,
            _ => RejectReason::Malformed,
        }
    }
}

/// Decodes an MQTT message of `site`. Commands are the gateway's own and are not expected here.
pub fn decode_mqtt(site: &str, topic: &str, payload: &[u8]) -> Result<Decoded, Rejection> {
    let parsed = topic::parse(topic).map_err(|e| reject(RejectReason::WrongTopic, None, e.to_string()))?;
    if parsed.site != site {
        return Err(reject(
            RejectReason::WrongTopic,
            Some(parsed.node),
            format!("site {} is not this gateway's site {site}", parsed.site),
        ));
    }
    let node = Some(parsed.node);
    if payload.len() > MAX_MESSAGE_LEN {
        return Err(reject(
            RejectReason::Oversize,
            node,
            format!("{} bytes, limit {MAX_MESSAGE_LEN}", payload.len()),
        ));
    }
    let decoded = match parsed.kind {
        NodeTopic::Telemetry => Telemetry::decode(payload).map(Decoded::Telemetry),
        NodeTopic::Status => Status::decode(payload).map(Decoded::Status),
        NodeTopic::Ack => Ack::decode(payload).map(Decoded::Ack),
        NodeTopic::OtaAck => OtaAck::decode(payload).map(Decoded::OtaAck),
        NodeTopic::Command | NodeTopic::Ota => {
            return Err(reject(
                RejectReason::WrongTopic,
                node,
                "commands and firmware updates are not ingested",
            ));
        }
    }
    .map_err(|e| reject(e.into(), node, e.to_string()))?;
    let payload_node = match &decoded {
        Decoded::Telemetry(t) => t.node.as_str(),
        Decoded::Status(s) => s.node.as_str(),
        Decoded::Ack(a) => a.node.as_str(),
        Decoded::OtaAck(a) => a.node.as_str(),
    };
    if payload_node != parsed.node {
        return Err(reject(
            RejectReason::NodeMismatch,
            node,
            format!("payload says node {payload_node}"),
        ));
    }
    Ok(decoded)
}

/// Decodes a serial frame's body; the frame kind says what it is, the payload names the node.
pub fn decode_serial(kind: FrameKind, payload: &[u8]) -> Result<Decoded, Rejection> {
    let decoded = match kind {
        FrameKind::Telemetry => Telemetry::decode(payload).map(Decoded::Telemetry),
        FrameKind::Status | FrameKind::Info => Status::decode(payload).map(Decoded::Status),
        FrameKind::Result => Ack::decode(payload).map(Decoded::Ack),
        other => {
            return Err(reject(
                RejectReason::WrongTopic,
                None,
                format!("frame kind {other:?} is not ingested"),
            ));
        }
    };
    decoded.map_err(|e| reject(e.into(), None, e.to_string()))
}

/// Decodes a message from any source.
pub fn decode(site: &str, route: &Route, payload: &[u8]) -> Result<Decoded, Rejection> {
    match route {
        Route::Mqtt { topic } => decode_mqtt(site, topic, payload),
        Route::Serial { kind, .. } => decode_serial(*kind, payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TELEMETRY: &[u8] = br#"{"node":"n1","boot":1,"seq":0,"up":5,"readings":[]}"#;

    #[test]
    fn good_telemetry_decodes() {
        assert!(matches!(
            decode_mqtt("s", "rackwatch/v1/s/n1/telemetry", TELEMETRY),
            Ok(Decoded::Telemetry(_))
        ));
    }

    #[test]
    fn each_fault_has_its_reason() {
        let reason = |topic: &str, payload: &[u8]| decode_mqtt("s", topic, payload).unwrap_err().reason;
        assert_eq!(
            reason("rackwatch/v1/s/n2/telemetry", TELEMETRY),
            RejectReason::NodeMismatch
        );
        assert_eq!(
            reason("rackwatch/v1/other/n1/telemetry", TELEMETRY),
            RejectReason::WrongTopic
        );
        assert_eq!(reason("elsewhere/n1", TELEMETRY), RejectReason::WrongTopic);
        assert_eq!(
            reason("rackwatch/v1/s/n1/telemetry", b"{\"node\":"),
            RejectReason::Malformed
        );
        assert_eq!(
            reason("rackwatch/v1/s/n1/telemetry", &[b' '; 5000]),
            RejectReason::Oversize
        );
        let v9 = br#"{"v":9,"node":"n1","boot":1,"seq":0,"up":5,"readings":[]}"#;
        assert_eq!(
            reason("rackwatch/v1/s/n1/telemetry", v9),
            RejectReason::UnsupportedVersion
        );
    }
}
