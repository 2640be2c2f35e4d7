//! Commands from `cmd` carried out and answered with an ack, and provisioned configurations taken.

use rackwatch_hardware::{FanControl, Fault, SensorSet};
use rackwatch_protocols::{AckResult, Command, CommandKind};

use crate::transport::Transport;

use super::{Event, Node, PendingAck, Reboot, Session, SessionError};

/// How long a reboot waits for the PUBACK of its ack before it goes ahead anyway.
const REBOOT_ACK_TIMEOUT_MS: u64 = 5_000;

/// Intervals a node accepts (protocols/README.md, "Commands": 100 ms to 1 h). The decoder checks
/// them too; the node does not rely on every sender using that decoder.
const INTERVAL_BOUNDS_MS: core::ops::RangeInclusive<u32> = 100..=3_600_000;

impl<const RING: usize> Node<RING> {
    /// Whether this node can take a provisioned configuration: every channel it calibrates exists.
    pub fn accepts(&self, provisioned: &rackwatch_protocols::NodeConfig) -> Result<(), &'static str> {
        self.sampler
            .check(&provisioned.channels)
            .map_err(|_| "unknown channel")
    }

    /// Takes a provisioned identity, interval, credentials and channel calibration. The session starts again at once with
    /// a CONNECT under the new client id (the old id's last will marks it offline); records not yet
    /// acknowledged are published again under the new id. The board switches the broker address.
    pub fn apply_provisioned<T: Transport + ?Sized>(
        &mut self,
        provisioned: &rackwatch_protocols::NodeConfig,
        now_ms: u64,
        transport: &mut T,
    ) {
        // Checked before the configuration was stored (`accepts`); an unknown channel changes nothing.
        let _ = self.adopt_provisioned(provisioned, now_ms);
        self.config.config_origin = Some(rackwatch_protocols::ConfigOrigin::Provisioned);
        self.lose(now_ms, transport, SessionError::Reprovisioned);
        self.attempts = 0;
        self.session = Session::Offline { retry_at_ms: now_ms };
    }

    /// Takes a provisioned configuration without touching the session: for the configuration loaded
    /// at boot, before the first poll. Identity, interval and credentials are always taken; the
    /// channel calibration only when every channel it names exists (else `unknown channel`, and the
    /// board's own calibration stays).
    pub fn adopt_provisioned(
        &mut self,
        provisioned: &rackwatch_protocols::NodeConfig,
        now_ms: u64,
    ) -> Result<(), &'static str> {
        self.config.site = provisioned.site.clone();
        self.config.node = provisioned.node.clone();
        self.config.interval_ms = provisioned.interval_ms;
        self.config.user_name = provisioned.broker.username.clone();
        self.config.password = provisioned.broker.password.clone();
        self.sampler.set_default_interval(provisioned.interval_ms, now_ms);
        self.sampler
            .configure(&provisioned.channels, now_ms)
            .map_err(|_| "unknown channel")
    }
    pub(super) fn execute<S>(&mut self, command: Command, now_ms: u64, sensors: &mut S)
    where
        S: SensorSet + FanControl + ?Sized,
    {
        let (action, result, detail) = match command.kind {
            CommandKind::SetInterval { interval_ms } => {
                if INTERVAL_BOUNDS_MS.contains(&interval_ms) {
                    self.sampler.set_default_interval(interval_ms, now_ms);
                    ("set_interval", AckResult::Ok, None)
                } else {
                    ("set_interval", AckResult::Rejected, Some("interval out of range"))
                }
            }
            CommandKind::SetFan { fan, target } => match sensors.set_fan(fan, target) {
                Ok(()) => {
                    // The ack promises the effect shows in the next telemetry.
                    self.sampler.sample_all_now(now_ms);
                    ("set_fan", AckResult::Ok, None)
                }
                Err(Fault::Unsupported) => ("set_fan", AckResult::Unsupported, Some("no fan controller")),
                Err(Fault::InvalidInput) => ("set_fan", AckResult::Rejected, Some("no such fan or value")),
                Err(_) => (
                    "set_fan",
                    AckResult::Failed,
                    Some("fan controller did not answer"),
                ),
            },
            CommandKind::Identify { seconds } => {
                self.identify_until_ms = now_ms + u64::from(seconds) * 1000;
                ("identify", AckResult::Ok, None)
            }
            CommandKind::Reboot => {
                self.reboot = Reboot::AfterAck {
                    packet_id: None,
                    deadline_ms: now_ms + REBOOT_ACK_TIMEOUT_MS,
                };
                ("reboot", AckResult::Ok, None)
            }
            CommandKind::Provision(_) => (
                "provision",
                AckResult::Unsupported,
                Some("provisioning is over the serial link"),
            ),
        };
        self.event(Event::Command {
            id: command.id,
            action,
            result,
        });
        let ack = PendingAck {
            id: command.id,
            result,
            detail,
        };
        if self.pending_acks.push_back(ack).is_err() {
            // Four unanswered commands already: the sender times out and asks again.
        }
    }
}
