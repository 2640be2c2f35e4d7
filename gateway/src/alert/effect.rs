//! What the engine asks the runner to do now (webhook deliveries aside: `delivery.rs`).

use rackwatch_protocols::{Alert, Command, NodeId};

use super::cooling::FanOutcome;

/// Something the runner must do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Publish the alert retained on its topic and, when `event`, on the events topic too.
    Publish { alert: Box<Alert>, event: bool },
    /// Send a command to a node.
    Command { node: NodeId, command: Box<Command> },
    /// A fan command was answered, refused, or never answered (for metrics and logs).
    Fan(FanOutcome),
    /// Remove the alert's retained state: it was pending and cleared without firing.
    Withdraw { key: String },
}

impl Effect {
    /// A command to a node.
    pub fn command((node, command): (NodeId, Command)) -> Effect {
        Effect::Command {
            node,
            command: Box::new(command),
        }
    }
}
