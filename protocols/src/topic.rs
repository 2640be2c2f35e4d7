//! The MQTT topic layout, version 1 (protocols/README.md, "Topics").
//!
//! ```text
//! rackwatch/v1/{site}/{node}/telemetry   node -> gateway   QoS 1
//! rackwatch/v1/{site}/{node}/status      node -> all       QoS 1, retained (birth and last will)
//! rackwatch/v1/{site}/{node}/cmd         gateway -> node   QoS 1
//! rackwatch/v1/{site}/{node}/cmd/ack     node -> gateway   QoS 1
//! rackwatch/v1/{site}/{node}/ota         gateway -> node   QoS 1 (binary firmware update frames)
//! rackwatch/v1/{site}/{node}/ota/ack     node -> gateway   QoS 1
//! rackwatch/v1/{site}/alerts/{key}       gateway -> all    QoS 1, retained (current state)
//! rackwatch/v1/{site}/alerts/events      gateway -> all    QoS 1 (every transition)
//! ```
//!
//! The node id is the node's identity in the topic; its location comes from the gateway's inventory
//! or the node's provisioned configuration, so a node moved to another rack keeps its topics.

use core::fmt::Write;

use crate::ident::{IdError, validate};
use crate::{NodeId, SiteId};

/// The first two levels of every topic.
pub const PREFIX: &str = "rackwatch/v1";
/// The reserved node level under which the gateway publishes alerts; no node may be called this.
pub const ALERTS: &str = "alerts";
/// Longest topic this layout produces: prefix, site (32), `alerts`, and an alert key (128).
pub const MAX_TOPIC_LEN: usize = 192;

/// A topic built by this module.
pub type TopicBuf = heapless::String<MAX_TOPIC_LEN>;

/// The topics under one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeTopic {
    Telemetry,
    Status,
    Command,
    Ack,
    /// Firmware update frames ([`crate::OtaFrame`]), binary.
    Ota,
    /// A node's answers to them ([`crate::OtaAck`]).
    OtaAck,
}

impl NodeTopic {
    pub const fn suffix(self) -> &'static str {
        match self {
            NodeTopic::Telemetry => "telemetry",
            NodeTopic::Status => "status",
            NodeTopic::Command => "cmd",
            NodeTopic::Ack => "cmd/ack",
            NodeTopic::Ota => "ota",
            NodeTopic::OtaAck => "ota/ack",
        }
    }
}

/// `rackwatch/v1/{site}/{node}/{telemetry|status|cmd|cmd/ack|ota|ota/ack}`.
pub fn node(site: &SiteId, node: &NodeId, kind: NodeTopic) -> TopicBuf {
    let mut topic = TopicBuf::new();
    // Cannot overflow: 12 + 1 + 32 + 1 + 32 + 1 + 7 < MAX_TOPIC_LEN.
    let _ = write!(topic, "{PREFIX}/{site}/{node}/{}", kind.suffix());
    topic
}

/// `rackwatch/v1/{site}/alerts/{key}`, where the retained state of one alert lives.
pub fn alert(site: &SiteId, key: &str) -> TopicBuf {
    let mut topic = TopicBuf::new();
    let _ = write!(topic, "{PREFIX}/{site}/{ALERTS}/{key}");
    topic
}

/// `rackwatch/v1/{site}/alerts/events`, the stream of alert transitions.
pub fn alert_events(site: &SiteId) -> TopicBuf {
    alert(site, "events")
}

/// Subscription filter for one kind of node topic at every site (`site = None`) or one site.
pub fn node_filter(site: Option<&SiteId>, kind: NodeTopic) -> TopicBuf {
    let mut topic = TopicBuf::new();
    let site = site.map_or("+", |s| s.as_str());
    let _ = write!(topic, "{PREFIX}/{site}/+/{}", kind.suffix());
    topic
}

/// A node topic taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedTopic<'a> {
    pub site: &'a str,
    pub node: &'a str,
    pub kind: NodeTopic,
}

/// Why a topic is not a rackwatch node topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic does not start with {PREFIX}/")]
    NotRackwatch,
    #[error("topic is not {PREFIX}/{{site}}/{{node}}/{{telemetry|status|cmd|cmd/ack|ota|ota/ack}}")]
    UnknownLayout,
    #[error("site level: {0}")]
    BadSite(IdError),
    #[error("node level: {0}")]
    BadNode(IdError),
}

/// Parses `rackwatch/v1/{site}/{node}/{kind}`; alert topics and anything else are errors.
pub fn parse(topic: &str) -> Result<ParsedTopic<'_>, TopicError> {
    let rest = topic
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or(TopicError::NotRackwatch)?;
    let (site, rest) = rest.split_once('/').ok_or(TopicError::UnknownLayout)?;
    let (node, suffix) = rest.split_once('/').ok_or(TopicError::UnknownLayout)?;
    let kind = match suffix {
        "telemetry" => NodeTopic::Telemetry,
        "status" => NodeTopic::Status,
        "cmd" => NodeTopic::Command,
        "cmd/ack" => NodeTopic::Ack,
        "ota" => NodeTopic::Ota,
        "ota/ack" => NodeTopic::OtaAck,
        _ => return Err(TopicError::UnknownLayout),
    };
    validate(site, 32).map_err(TopicError::BadSite)?;
    validate(node, 32).map_err(TopicError::BadNode)?;
    if node == ALERTS {
        return Err(TopicError::UnknownLayout);
    }
    Ok(ParsedTopic { site, node, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (SiteId, NodeId) {
        (SiteId::new("fra1").unwrap(), NodeId::new("r01-n1").unwrap())
    }

    #[test]
    fn builds_every_node_topic() {
        let (site, node) = ids();
        assert_eq!(
            super::node(&site, &node, NodeTopic::Telemetry),
            "rackwatch/v1/fra1/r01-n1/telemetry"
        );
        assert_eq!(
            super::node(&site, &node, NodeTopic::Ack),
            "rackwatch/v1/fra1/r01-n1/cmd/ack"
        );
        assert_eq!(
            alert(&site, "inlet_high.a03"),
            "rackwatch/v1/fra1/alerts/inlet_high.a03"
        );
        assert_eq!(node_filter(None, NodeTopic::Status), "rackwatch/v1/+/+/status");
    }

    #[test]
    fn parse_inverts_build() {
        let (site, node) = ids();
        for kind in [
            NodeTopic::Telemetry,
            NodeTopic::Status,
            NodeTopic::Command,
            NodeTopic::Ack,
            NodeTopic::Ota,
            NodeTopic::OtaAck,
        ] {
            let topic = super::node(&site, &node, kind);
            assert_eq!(
                parse(&topic),
                Ok(ParsedTopic {
                    site: "fra1",
                    node: "r01-n1",
                    kind
                })
            );
        }
    }

    #[test]
    fn parse_rejects_foreign_and_malformed_topics() {
        assert_eq!(parse("other/v1/s/n/telemetry"), Err(TopicError::NotRackwatch));
        assert_eq!(parse("rackwatch/v2/s/n/telemetry"), Err(TopicError::NotRackwatch));
        assert_eq!(
            parse("rackwatch/v1/s/n/telemetry/x"),
            Err(TopicError::UnknownLayout)
        );
        assert_eq!(
            parse("rackwatch/v1/s/alerts/events"),
            Err(TopicError::UnknownLayout)
        );
        assert_eq!(
            parse("rackwatch/v1/s//telemetry"),
            Err(TopicError::BadNode(IdError::Empty))
        );
    }
}
