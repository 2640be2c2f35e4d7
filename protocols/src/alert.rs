//! Alerts the gateway publishes: the current state retained on `rackwatch/v1/{site}/alerts/{key}`
//! and every transition on `rackwatch/v1/{site}/alerts/events`.

use serde::{Deserialize, Serialize};

use crate::codec::{Message, message_codec, version};
use crate::{ChannelName, Label, NodeId};

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

/// Where an alert is in its life. Each transition is notified exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds but not yet for the rule's `for` duration.
    Pending,
    Firing,
    Resolved,
}

impl Severity {
    /// The wire name, as in the JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl AlertState {
    /// The wire name, as in the JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert of one rule for one scope (a channel, a rack, a row or a room).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    #[serde(rename = "v", default = "version")]
    pub version: u8,
    /// Stable identity of the alert: rule and scope joined with `.`, also its topic level.
    pub key: heapless::String<128>,
    pub rule: Label,
    pub severity: Severity,
    pub state: AlertState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Label>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<Label>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<Label>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeId>,
    #[serde(rename = "ch", default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelName>,
    /// The value that triggered the last transition, in the quantity's canonical unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Unix milliseconds when the alert entered `state`.
    pub since_ms: u64,
    /// One sentence for a person, e.g. "Rack A03 inlet top 29.1 °C, above 27 °C for 5 min".
    pub summary: heapless::String<192>,
}

impl Message for Alert {
    fn version(&self) -> u8 {
        self.version
    }
    fn is_finite(&self) -> bool {
        self.value.is_none_or(f64::is_finite) && self.threshold.is_none_or(f64::is_finite)
    }
}

message_codec!(Alert);
