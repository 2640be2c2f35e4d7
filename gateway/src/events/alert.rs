//! Events of the alert engine's effects: notifications, MQTT publishes and fan commands.

use super::metrics::{Metrics, ReasonLabel};

/// A webhook delivery failed; the engine tries again after a back-off.
#[derive(Debug)]
pub struct NotificationFailed<'a> {
    pub receiver: &'a str,
    pub detail: &'a str,
}

impl NotificationFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        // Counted by `record_notification` with the attempt's result.
        if let Some(suppressed) = metrics.should_log("alert_notification_failed") {
            tracing::warn!(
                receiver = self.receiver,
                suppressed,
                "alert notification failed, will retry: {}",
                self.detail
            );
        }
    }
}

/// An alert or a command could not be handed to the MQTT client (its queue is full while the broker
/// is away); the retained state is published again on reconnect.
#[derive(Debug)]
pub struct AlertPublishFailed<'a> {
    pub detail: &'a str,
}

impl AlertPublishFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.alert_publish_failures.inc();
        if let Some(suppressed) = metrics.should_log("alert_publish_failed") {
            tracing::error!(suppressed, "alert MQTT publish failed: {}", self.detail);
        }
    }
}

/// What became of an automated cooling fan command.
#[derive(Debug)]
pub struct FanCommandOutcome<'a> {
    pub node: &'a str,
    pub fan: u8,
    pub duty: f32,
    /// Sends so far, the first included.
    pub attempts: u32,
    pub result: FanCommandResult<'a>,
}

/// How a fan command ended.
#[derive(Debug)]
pub enum FanCommandResult<'a> {
    Acked,
    /// The node answered, but not `ok`; its answer, for the log.
    Refused(&'a dyn std::fmt::Debug),
    /// No answer after every retry.
    Unanswered,
}

impl FanCommandOutcome<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let reason = match self.result {
            FanCommandResult::Acked => "acked",
            FanCommandResult::Refused(_) => "refused",
            FanCommandResult::Unanswered => "unanswered",
        };
        metrics
            .alert_fan_commands
            .get_or_create(&ReasonLabel { reason })
            .inc();
        let (node, fan) = (self.node, self.fan);
        match self.result {
            FanCommandResult::Acked => {
                tracing::info!(node, fan, duty = self.duty, "fan command acknowledged");
            }
            FanCommandResult::Refused(result) => {
                tracing::warn!(node, fan, ?result, "fan command refused by the node");
            }
            FanCommandResult::Unanswered => {
                if let Some(suppressed) = metrics.should_log("fan_command_unanswered") {
                    tracing::error!(
                        node,
                        fan,
                        attempts = self.attempts,
                        suppressed,
                        "fan command never acknowledged; automated cooling gave up on this node"
                    );
                }
            }
        }
    }
}
