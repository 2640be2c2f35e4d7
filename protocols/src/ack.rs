//! The answer to a [`crate::Command`], on `rackwatch/v1/{site}/{node}/cmd/ack`.

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::codec::{Message, message_codec, version};

/// A node's answer to one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    #[serde(rename = "v", default = "version")]
    pub version: u8,
    /// The `id` of the command this answers.
    pub id: u32,
    pub node: NodeId,
    pub result: AckResult,
    /// A short human-readable explanation, e.g. why a value was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<heapless::String<64>>,
}

/// The outcome of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckResult {
    /// Done; its effect shows in the next telemetry.
    Ok,
    /// A value was refused (out of range, unknown fan); nothing changed.
    Rejected,
    /// This node cannot do that (no fan controller, say).
    Unsupported,
    /// Accepted but the hardware failed to carry it out.
    Failed,
}

impl Ack {
    pub fn new(id: u32, node: NodeId, result: AckResult) -> Self {
        Ack {
            version: crate::VERSION,
            id,
            node,
            result,
            detail: None,
        }
    }
}

impl Message for Ack {
    fn version(&self) -> u8 {
        self.version
    }
}

message_codec!(Ack);
