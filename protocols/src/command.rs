//! Commands to a node on `rackwatch/v1/{site}/{node}/cmd`, each answered by an [`crate::Ack`] with the
//! same `id` on `.../cmd/ack`.

use serde::{Deserialize, Serialize};

use crate::NodeConfig;
use crate::codec::{Message, message_codec, version};

/// A command with its correlation id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CommandWire", into = "CommandWire")]
pub struct Command {
    /// Chosen by the sender, echoed in the ack. Unique per sender for as long as an answer is awaited.
    pub id: u32,
    pub kind: CommandKind,
}

/// What a command asks the node to do.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "no heap on a node to box the config into"
)]
pub enum CommandKind {
    /// Sample every channel at this interval (channels with their own interval keep it).
    SetInterval { interval_ms: u32 },
    /// Drive fan `fan` (0-based, the MAX31785 page) at a duty cycle or a target speed.
    SetFan { fan: u8, target: FanTarget },
    /// Blink the node's identify LED for this many seconds, so a technician finds it in the rack.
    Identify { seconds: u16 },
    /// Restart the node (a new boot id follows).
    Reboot,
    /// Replace the node's configuration (node id, location, intervals, broker, calibration).
    Provision(NodeConfig),
}

/// How a fan is driven.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FanTarget {
    /// PWM duty in percent, 0 to 100.
    DutyPercent(f32),
    /// Closed-loop target speed.
    Rpm(u16),
}

/// Interval bounds a node accepts: faster floods the broker, slower hides a failing cooling unit.
pub const MIN_INTERVAL_MS: u32 = 100;
pub const MAX_INTERVAL_MS: u32 = 3_600_000;

/// The flat JSON shape of a command: `action` says which of the optional arguments must be present.
/// (Internally tagged enums need a heap to decode, flat structs do not.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CommandWire {
    #[serde(rename = "v", default = "version")]
    version: u8,
    id: u32,
    action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fan: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duty_pct: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rpm: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seconds: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<NodeConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    SetInterval,
    SetFan,
    Identify,
    Reboot,
    Provision,
}

/// Why a command's JSON is well-formed but not a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidCommand(&'static str);

impl TryFrom<CommandWire> for Command {
    type Error = InvalidCommand;

    fn try_from(wire: CommandWire) -> Result<Self, InvalidCommand> {
        if wire.version != crate::VERSION {
            return Err(InvalidCommand("unsupported wire version"));
        }
        let kind = match wire.action {
            Action::SetInterval => {
                let interval_ms = wire
                    .interval_ms
                    .ok_or(InvalidCommand("set_interval needs interval_ms"))?;
                if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&interval_ms) {
                    return Err(InvalidCommand("interval_ms must be 100 to 3600000"));
                }
                CommandKind::SetInterval { interval_ms }
            }
            Action::SetFan => {
                let fan = wire.fan.ok_or(InvalidCommand("set_fan needs fan"))?;
                let target = match (wire.duty_pct, wire.rpm) {
                    (Some(duty), None) if (0.0..=100.0).contains(&duty) => FanTarget::DutyPercent(duty),
                    (Some(_), None) => return Err(InvalidCommand("duty_pct must be 0 to 100")),
                    (None, Some(rpm)) => FanTarget::Rpm(rpm),
                    _ => return Err(InvalidCommand("set_fan needs exactly one of duty_pct and rpm")),
                };
                CommandKind::SetFan { fan, target }
            }
            Action::Identify => CommandKind::Identify {
                seconds: wire.seconds.unwrap_or(30),
            },
            Action::Reboot => CommandKind::Reboot,
            Action::Provision => {
                CommandKind::Provision(wire.config.ok_or(InvalidCommand("provision needs config"))?)
            }
        };
        Ok(Command { id: wire.id, kind })
    }
}

impl From<Command> for CommandWire {
    fn from(command: Command) -> Self {
        let mut wire = CommandWire {
            version: crate::VERSION,
            id: command.id,
            action: Action::Reboot,
            interval_ms: None,
            fan: None,
            duty_pct: None,
            rpm: None,
            seconds: None,
            config: None,
        };
        match command.kind {
            CommandKind::SetInterval { interval_ms } => {
                wire.action = Action::SetInterval;
                wire.interval_ms = Some(interval_ms);
            }
            CommandKind::SetFan { fan, target } => {
                wire.action = Action::SetFan;
                wire.fan = Some(fan);
                match target {
                    FanTarget::DutyPercent(duty) => wire.duty_pct = Some(duty),
                    FanTarget::Rpm(rpm) => wire.rpm = Some(rpm),
                }
            }
            CommandKind::Identify { seconds } => {
                wire.action = Action::Identify;
                wire.seconds = Some(seconds);
            }
            CommandKind::Reboot => wire.action = Action::Reboot,
            CommandKind::Provision(config) => {
                wire.action = Action::Provision;
                wire.config = Some(config);
            }
        }
        wire
    }
}

impl Message for Command {
    fn version(&self) -> u8 {
        // Checked while converting from the wire shape.
        crate::VERSION
    }
    fn is_finite(&self) -> bool {
        match &self.kind {
            CommandKind::SetFan {
                target: FanTarget::DutyPercent(duty),
                ..
            } => duty.is_finite(),
            CommandKind::Provision(config) => config.is_finite(),
            _ => true,
        }
    }
}

message_codec!(Command);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DecodeError;

    #[test]
    fn set_fan_by_duty_round_trips() {
        let command = Command {
            id: 18,
            kind: CommandKind::SetFan {
                fan: 0,
                target: FanTarget::DutyPercent(80.0),
            },
        };
        let mut buf = [0u8; 128];
        let n = command.encode(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            br#"{"v":1,"id":18,"action":"set_fan","fan":0,"duty_pct":80.0}"#
        );
        assert_eq!(Command::decode(&buf[..n]), Ok(command));
    }

    #[test]
    fn set_fan_needs_exactly_one_target() {
        let both = br#"{"id":1,"action":"set_fan","fan":0,"duty_pct":50,"rpm":9000}"#;
        assert!(matches!(Command::decode(both), Err(DecodeError::Json(_))));
        let neither = br#"{"id":1,"action":"set_fan","fan":0}"#;
        assert!(matches!(Command::decode(neither), Err(DecodeError::Json(_))));
    }

    #[test]
    fn set_interval_is_bounded() {
        let too_fast = br#"{"id":1,"action":"set_interval","interval_ms":5}"#;
        assert!(Command::decode(too_fast).is_err());
        let ok = br#"{"id":1,"action":"set_interval","interval_ms":5000}"#;
        assert_eq!(
            Command::decode(ok).unwrap().kind,
            CommandKind::SetInterval { interval_ms: 5000 }
        );
    }

    #[test]
    fn unknown_action_is_rejected() {
        assert!(Command::decode(br#"{"id":1,"action":"self_destruct"}"#).is_err());
    }
}
