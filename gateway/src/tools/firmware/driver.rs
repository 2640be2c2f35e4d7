//! The rollout's transfers: what goes to each node over MQTT and when, sans-IO.
//!
//! [`Rollout`] decides which nodes are due; the driver carries the update to each of them,
//! stop-and-wait: the header first (a node that holds part of the update answers with the offset it
//! stands at), then one chunk at the offset each answer names, so a node is never sent more than it
//! can take and a cut transfer goes on where the node says. After `verified` the node is told to
//! `reboot`; its next birth message says whether the new image `confirmed` or was `rolled_back`. A node
//! silent past a deadline is asked again (the header, which makes it say where it stands), then given
//! up as a failure.
//!
//! The caller ([`super::run`]) owns the MQTT connection, the clock and the state file: it feeds the
//! driver acks, births and ticks, and carries out the [`Out`]s it returns.

use std::collections::BTreeMap;

use rackwatch_protocols::update::{HEADER_LEN, MAX_CHUNK, OtaFrame};
use rackwatch_protocols::{FirmwareVersion, OtaAck, OtaResult, Status, UpdateHeader};

use super::rollout::{NodeProgress, Rollout, Step};

/// An update file read into memory: its header and the whole file.
#[derive(Debug, Clone)]
pub struct UpdateFile {
    pub header: UpdateHeader,
    pub bytes: Vec<u8>,
}

impl UpdateFile {
    fn image(&self) -> &[u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or_default()
    }
}

/// Deadlines of the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long to wait for a node's answer to a frame before asking again.
    pub ack_timeout_ms: u64,
    /// Frames sent without an answer before the node is given up.
    pub attempts: u32,
    /// How long a node has, after `reboot`, to come back with the new version confirmed.
    pub boot_timeout_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ack_timeout_ms: 5_000,
            attempts: 4,
            boot_timeout_ms: 180_000,
        }
    }
}

/// What the caller carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Publish `payload` on `rackwatch/v1/{site}/{node}/ota` at QoS 1.
    Frame { node: String, payload: Vec<u8> },
    /// Publish a command (JSON) on the node's `cmd` topic at QoS 1.
    Command { node: String, payload: Vec<u8> },
    /// One line of progress for the operator.
    Line(String),
    /// A node failed; count it under `reason` (`rackwatch_firmware_update_failures_total`).
    Failure { node: String, reason: &'static str },
    /// The state changed: persist the rollout.
    Save,
    /// The rollout paused (the reason names the node) or completed: stop driving it.
    Finished { paused: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Header,
    Chunk,
    Reboot,
}

#[derive(Debug, Clone, Copy)]
struct Transfer {
    sent: Sent,
    sent_ms: u64,
    /// Frames sent since the last answer.
    unanswered: u32,
}

/// Per node: time and bytes of its transfer, for the closing figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    /// MQTT bytes the gateway sent to the node (PUBLISHes on `ota`, their topics and headers).
    pub bytes_out: u64,
    /// MQTT bytes of the node's answers on `ota/ack`.
    pub bytes_in: u64,
}

/// The transfers of one rollout.
#[derive(Debug)]
pub struct Driver {
    pub rollout: Rollout,
    file: UpdateFile,
    site: String,
    timing: Timing,
    transfers: BTreeMap<String, Transfer>,
    next_command_id: u32,
    pub stats: BTreeMap<String, NodeStats>,
}

/// Bytes of an MQTT 3.1.1 QoS 1 PUBLISH (§3.3): fixed header with its remaining length, topic, packet
/// id, payload.
fn publish_len(topic_len: usize, payload_len: usize) -> u64 {
    let remaining = 2 + topic_len + 2 + payload_len;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    (1 + length_bytes + remaining) as u64
}

pub use crate::events::failure_reason;

impl Driver {
    pub fn new(rollout: Rollout, file: UpdateFile, site: &str, timing: Timing) -> Self {
        Driver {
            rollout,
            file,
            site: site.to_owned(),
            timing,
            transfers: BTreeMap::new(),
            next_command_id: 0x7100_0000,
            stats: BTreeMap::new(),
        }
    }

    /// Before [`Self::start`]: a (retained) birth that says the node already runs the version takes
    /// it off the list, so it is not sent an update it would refuse as not newer.
    pub fn already_running(&mut self, status: &Status) -> Vec<Out> {
        let node = status.node.as_str();
        let running = status.firmware.as_deref().and_then(FirmwareVersion::parse);
        match self.rollout.nodes.get_mut(node) {
            Some(progress)
                if running == Some(self.rollout.version)
                    && matches!(progress, NodeProgress::Waiting | NodeProgress::Sending { .. }) =>
            {
                *progress = NodeProgress::Done;
                vec![Out::Line(format!(
                    "{node}: runs {} already",
                    self.rollout.version
                ))]
            }
            _ => Vec::new(),
        }
    }

    /// Starts the rollout, or takes it up after a restart or `resume`.
    pub fn start(&mut self, now_ms: u64) -> Vec<Out> {
        let mut out = vec![Out::Save];
        let step = self.rollout.start();
        self.follow(step, now_ms, &mut out);
        out
    }

    /// A node's answer on `ota/ack` (`len`: its MQTT bytes).
    pub fn on_ack(&mut self, ack: &OtaAck, len: u64, now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        let node = ack.node.as_str().to_owned();
        if ack.update != self.rollout.update || !self.transfers.contains_key(&node) {
            return out;
        }
        self.stats.entry(node.clone()).or_default().bytes_in += len;
        let reason = ack.reason.as_deref().unwrap_or_default();
        if ack.result == OtaResult::Refused && failure_reason(reason) == "out_of_order" {
            // A late answer to a frame sent twice (after a timeout): the node goes on from the offset
            // its other answer named, and a node really stuck is asked again by `tick`.
            return out;
        }
        let step = self
            .rollout
            .on_ack(&node, ack.update, ack.result, ack.offset, reason);
        match ack.result {
            OtaResult::Accepted => self.send_chunk(&node, ack.offset, now_ms, &mut out),
            OtaResult::Verified => {
                out.push(Out::Line(format!("{node}: image verified, rebooting into it")));
                self.send_reboot(&node, now_ms, &mut out);
            }
            OtaResult::Refused | OtaResult::RolledBack => {
                self.fail(&node, reason, now_ms, &mut out);
            }
            OtaResult::Unsupported => {
                self.transfers.remove(&node);
                out.push(Out::Line(format!("{node}: not updatable: {reason}")));
                self.bar(&node, &mut out);
            }
            OtaResult::Confirmed => self.finish(&node, now_ms, &mut out),
        }
        out.push(Out::Save);
        self.follow(step, now_ms, &mut out);
        out
    }

    /// A node's status message: a birth with the new version confirmed finishes its update; one
    /// that says `rolled_back` after the reboot fails it.
    pub fn on_status(&mut self, status: &Status, now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        let node = status.node.as_str().to_owned();
        let Some(progress) = self.rollout.nodes.get(&node) else {
            return out;
        };
        if matches!(progress, NodeProgress::Done | NodeProgress::NotUpdatable { .. }) {
            return out;
        }
        let running = status.firmware.as_deref().and_then(FirmwareVersion::parse);
        let rebooted = self.transfers.get(&node).is_some_and(|t| t.sent == Sent::Reboot);
        if running == Some(self.rollout.version) && status.update == Some(OtaResult::Confirmed) {
            let step = self.rollout.on_version(&node, self.rollout.version);
            self.finish(&node, now_ms, &mut out);
            out.push(Out::Save);
            self.follow(step, now_ms, &mut out);
        } else if rebooted && status.update == Some(OtaResult::RolledBack) {
            let update = self.rollout.update;
            let step = self.rollout.on_ack(&node, update, OtaResult::RolledBack, 0, "");
            self.fail(
                &node,
                "the new firmware did not confirm; the node went back to its previous one",
                now_ms,
                &mut out,
            );
            out.push(Out::Save);
            self.follow(step, now_ms, &mut out);
        }
        out
    }

    /// Asks silent nodes again, and gives up on those silent too long.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Out> {
        let mut out = Vec::new();
        let overdue: Vec<(String, Transfer)> = self
            .transfers
            .iter()
            .filter(|(_, t)| {
                let wait = if t.sent == Sent::Reboot {
                    self.timing.boot_timeout_ms
                } else {
                    self.timing.ack_timeout_ms
                };
                now_ms.saturating_sub(t.sent_ms) >= wait
            })
            .map(|(n, t)| (n.clone(), *t))
            .collect();
        for (node, transfer) in overdue {
            if transfer.sent != Sent::Reboot && transfer.unanswered < self.timing.attempts {
                self.send_header(&node, now_ms, &mut out);
                continue;
            }
            let what = if transfer.sent == Sent::Reboot {
                "it did not come back with the new version confirmed"
            } else {
                "it does not answer update frames"
            };
            let step = self.rollout.on_timeout(&node, what);
            self.fail(&node, &format!("no answer: {what}"), now_ms, &mut out);
            out.push(Out::Save);
            self.follow(step, now_ms, &mut out);
        }
        out
    }

    fn follow(&mut self, step: Step, now_ms: u64, out: &mut Vec<Out>) {
        match step {
            Step::Send(nodes) => {
                for (node, _) in nodes {
                    if !self.transfers.contains_key(&node) {
                        self.stats.entry(node.clone()).or_insert(NodeStats {
                            started_ms: now_ms,
                            ..NodeStats::default()
                        });
                        out.push(Out::Line(format!("{node}: sending {}", self.rollout.version)));
                        self.send_header(&node, now_ms, out);
                    }
                }
            }
            Step::Wait => {}
            Step::Paused(reason) => {
                self.transfers.clear();
                out.push(Out::Line(format!("rollout {reason}")));
                out.push(Out::Finished { paused: Some(reason) });
            }
            Step::Complete => {
                out.push(Out::Line(format!(
                    "rollout complete: every selected node runs {} or cannot be updated",
                    self.rollout.version
                )));
                out.push(Out::Finished { paused: None });
            }
        }
    }

    fn frame(&mut self, node: &str, frame: OtaFrame<'_>, sent: Sent, now_ms: u64, out: &mut Vec<Out>) {
        let mut payload = vec![0u8; HEADER_LEN + MAX_CHUNK + 16];
        let Some(len) = frame.emit(&mut payload) else {
            return;
        };
        payload.truncate(len);
        let topic_len = format!("rackwatch/v1/{}/{node}/ota", self.site).len();
        self.stats.entry(node.to_owned()).or_default().bytes_out += publish_len(topic_len, len);
        let unanswered = match (sent, self.transfers.get(node)) {
            (Sent::Header, Some(t)) => t.unanswered + 1,
            _ => 1,
        };
        self.transfers.insert(
            node.to_owned(),
            Transfer {
                sent,
                sent_ms: now_ms,
                unanswered,
            },
        );
        out.push(Out::Frame {
            node: node.to_owned(),
            payload,
        });
    }

    fn send_header(&mut self, node: &str, now_ms: u64, out: &mut Vec<Out>) {
        let header = self.file.bytes.get(..HEADER_LEN).unwrap_or_default().to_vec();
        let update = self.rollout.update;
        self.frame(
            node,
            OtaFrame::Header {
                update,
                header: &header,
            },
            Sent::Header,
            now_ms,
            out,
        );
    }

    fn send_chunk(&mut self, node: &str, offset: u32, now_ms: u64, out: &mut Vec<Out>) {
        let image = self.file.image();
        let start = (offset as usize).min(image.len());
        let data = image
            .get(start..(start + MAX_CHUNK).min(image.len()))
            .unwrap_or_default()
            .to_vec();
        let update = self.rollout.update;
        self.frame(
            node,
            OtaFrame::Chunk {
                update,
                offset,
                data: &data,
            },
            Sent::Chunk,
            now_ms,
            out,
        );
    }

    fn send_reboot(&mut self, node: &str, now_ms: u64, out: &mut Vec<Out>) {
        self.next_command_id = self.next_command_id.wrapping_add(1);
        let payload = format!(r#"{{"v":1,"id":{},"action":"reboot"}}"#, self.next_command_id);
        self.transfers.insert(
            node.to_owned(),
            Transfer {
                sent: Sent::Reboot,
                sent_ms: now_ms,
                unanswered: 1,
            },
        );
        out.push(Out::Command {
            node: node.to_owned(),
            payload: payload.into_bytes(),
        });
    }

    fn finish(&mut self, node: &str, now_ms: u64, out: &mut Vec<Out>) {
        self.transfers.remove(node);
        let stats = self.stats.entry(node.to_owned()).or_default();
        stats.finished_ms = Some(now_ms);
        out.push(Out::Line(format!(
            "{node}: runs {} (confirmed) after {:.1} s, {} bytes sent, {} received",
            self.rollout.version,
            now_ms.saturating_sub(stats.started_ms) as f64 / 1000.0,
            stats.bytes_out,
            stats.bytes_in
        )));
        self.bar(node, out);
    }

    /// The progress bar of the node's batch, after one of its nodes settled.
    fn bar(&self, node: &str, out: &mut Vec<Out>) {
        if let Some(bar) = self.rollout.batch_bar(node) {
            out.push(Out::Line(bar));
        }
    }

    fn fail(&mut self, node: &str, reason: &str, now_ms: u64, out: &mut Vec<Out>) {
        self.transfers.remove(node);
        if let Some(stats) = self.stats.get_mut(node) {
            stats.finished_ms = Some(now_ms);
        }
        out.push(Out::Line(format!("{node}: failed: {reason}")));
        self.bar(node, out);
        out.push(Out::Failure {
            node: node.to_owned(),
            reason: failure_reason(reason),
        });
    }
}

#[cfg(test)]
mod tests;
