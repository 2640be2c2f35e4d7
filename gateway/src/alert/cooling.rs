//! Automated cooling: while a cooling rule fires for a rack, that rack's nodes drive their fans at the
//! boost duty; once it resolves they go back to the normal duty. Every `set_fan` waits for the node's
//! `Ack` with its id, and is sent again (with a new id) when none comes within the timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rackwatch_protocols::{Ack, AckResult, Command, CommandKind, FanTarget, NodeId};
use serde::{Deserialize, Serialize};

use super::index::RuleIndex;
use super::rule::Scope;
use super::state::Incident;
use crate::events::{FanCommandOutcome, FanCommandResult};

/// A `set_fan` sent and not yet answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingFan {
    pub id: u32,
    pub node: NodeId,
    pub fan: u8,
    pub duty: f32,
    pub sent_ms: i64,
    /// Sends so far, the first included.
    pub attempts: u32,
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum FanOutcome {
    Acked(PendingFan),
    /// The node answered, but not `ok` (it has no such fan, say): not sent again.
    Refused(PendingFan, AckResult),
    /// No answer after every retry.
    Unanswered(PendingFan),
}

impl FanOutcome {
    /// The event that counts and logs this outcome.
    pub fn event(&self) -> FanCommandOutcome<'_> {
        let (pending, result) = match self {
            FanOutcome::Acked(p) => (p, FanCommandResult::Acked),
            FanOutcome::Refused(p, answer) => (p, FanCommandResult::Refused(answer)),
            FanOutcome::Unanswered(p) => (p, FanCommandResult::Unanswered),
        };
        FanCommandOutcome {
            node: pending.node.as_str(),
            fan: pending.fan,
            duty: pending.duty,
            attempts: pending.attempts,
            result,
        }
    }
}

/// The commands awaiting an answer, by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FanCommands {
    pub next_id: u32,
    pub pending: BTreeMap<u32, PendingFan>,
}

impl FanCommands {
    fn command(&mut self, node: NodeId, fan: u8, duty: f32, attempts: u32, now_ms: i64) -> (NodeId, Command) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        // A newer target for the same fan replaces the one still in flight.
        self.pending.retain(|_, p| !(p.node == node && p.fan == fan));
        self.pending.insert(
            id,
            PendingFan {
                id,
                node: node.clone(),
                fan,
                duty,
                sent_ms: now_ms,
                attempts,
            },
        );
        let command = Command {
            id,
            kind: CommandKind::SetFan {
                fan,
                target: FanTarget::DutyPercent(duty),
            },
        };
        (node, command)
    }

    /// Sends `duty` to `fan` of `node`.
    pub fn send(&mut self, node: NodeId, fan: u8, duty: f32, now_ms: i64) -> (NodeId, Command) {
        self.command(node, fan, duty, 1, now_ms)
    }

    /// Matches a node's answer to the command it answers.
    pub fn ack(&mut self, ack: &Ack) -> Option<FanOutcome> {
        if self.pending.get(&ack.id).is_none_or(|p| p.node != ack.node) {
            return None;
        }
        let pending = self.pending.remove(&ack.id)?;
        Some(match ack.result {
            AckResult::Ok => FanOutcome::Acked(pending),
            other => FanOutcome::Refused(pending, other),
        })
    }

    /// Sends again what timed out; gives up after `retries` resends.
    pub fn expire(
        &mut self,
        timeout_ms: i64,
        retries: u32,
        now_ms: i64,
        resend: &mut Vec<(NodeId, Command)>,
        outcomes: &mut Vec<FanOutcome>,
    ) {
        let expired: Vec<PendingFan> = self
            .pending
            .values()
            .filter(|p| now_ms.saturating_sub(p.sent_ms) >= timeout_ms)
            .cloned()
            .collect();
        for pending in expired {
            self.pending.remove(&pending.id);
            if pending.attempts > retries {
                outcomes.push(FanOutcome::Unanswered(pending));
            } else {
                resend.push(self.command(
                    pending.node,
                    pending.fan,
                    pending.duty,
                    pending.attempts + 1,
                    now_ms,
                ));
            }
        }
    }

    /// Every command still awaiting an answer, sent again (after a restart the old ids are void).
    pub fn resend_all(&mut self, now_ms: i64) -> Vec<(NodeId, Command)> {
        let pending: Vec<PendingFan> = std::mem::take(&mut self.pending).into_values().collect();
        pending
            .into_iter()
            .map(|p| self.command(p.node, p.fan, p.duty, p.attempts, now_ms))
            .collect()
    }
}

/// The cooling policy and what it has done.
#[derive(Debug, Clone)]
pub struct Cooling {
    /// Indexes of the rules that drive it.
    pub rules: Vec<usize>,
    pub boost_duty: f32,
    pub normal_duty: f32,
    pub fans: Vec<u8>,
    pub ack_timeout_ms: i64,
    pub retries: u32,
    /// Rack (room, row, rack) → the nodes mounted in it.
    pub nodes_by_rack: HashMap<Scope, Vec<NodeId>>,
    /// Racks whose fans were commanded up.
    pub boosted: BTreeSet<Scope>,
    pub commands: FanCommands,
}

impl Cooling {
    /// The names of the rules that drive it (incidents name their rule).
    pub fn rule_names(&self, rules: &RuleIndex) -> Vec<String> {
        self.rules
            .iter()
            .filter_map(|&i| rules.get(i))
            .map(|r| r.name.to_string())
            .collect()
    }

    /// Takes up what a previous run boosted and commanded.
    pub fn restore(&mut self, boosted: Vec<Scope>, commands: FanCommands) {
        self.boosted = boosted.into_iter().collect();
        self.commands = commands;
    }

    /// Commands unanswered for too long: sent again (returned), or given up (their outcomes).
    pub fn expire(&mut self, now_ms: i64) -> (Vec<(NodeId, Command)>, Vec<FanOutcome>) {
        let (mut resend, mut outcomes) = (Vec::new(), Vec::new());
        self.commands.expire(
            self.ack_timeout_ms,
            self.retries,
            now_ms,
            &mut resend,
            &mut outcomes,
        );
        (resend, outcomes)
    }

    /// Racks with a firing member of a cooling rule.
    fn wanted<'a>(
        &self,
        rule_names: &[&str],
        incidents: impl Iterator<Item = &'a Incident>,
    ) -> BTreeSet<Scope> {
        incidents
            .filter(|i| rule_names.contains(&i.rule.as_str()))
            .flat_map(|i| i.members.values())
            .filter(|m| m.phase.is_firing() && m.scope.rack.is_some())
            .map(|m| Scope {
                node: None,
                channel: None,
                ..m.scope.clone()
            })
            .collect()
    }

    /// Brings the fans in line with the firing alerts: boost newly hot racks, restore cooled ones.
    pub fn reconcile<'a>(
        &mut self,
        rule_names: &[&str],
        incidents: impl Iterator<Item = &'a Incident>,
        now_ms: i64,
    ) -> Vec<(NodeId, Command)> {
        let wanted = self.wanted(rule_names, incidents);
        let mut commands = Vec::new();
        let changes: Vec<(Scope, f32)> = wanted
            .difference(&self.boosted)
            .map(|rack| (rack.clone(), self.boost_duty))
            .chain(
                self.boosted
                    .difference(&wanted)
                    .map(|rack| (rack.clone(), self.normal_duty)),
            )
            .collect();
        for (rack, duty) in changes {
            if let Some(nodes) = self.nodes_by_rack.get(&rack) {
                for node in nodes {
                    for &fan in &self.fans {
                        commands.push(self.commands.send(node.clone(), fan, duty, now_ms));
                    }
                }
            }
            tracing::info!(rack = %rack.describe(), duty, "automated cooling: setting the rack's fans");
        }
        self.boosted = wanted;
        commands
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    #[test]
    fn unanswered_command_is_sent_again_with_a_new_id_then_given_up() {
        let mut commands = FanCommands::default();
        let (_, first) = commands.send(node("n1"), 0, 100.0, 0);
        let (mut resend, mut outcomes) = (Vec::new(), Vec::new());
        commands.expire(5000, 1, 4999, &mut resend, &mut outcomes);
        assert!(resend.is_empty());
        commands.expire(5000, 1, 5000, &mut resend, &mut outcomes);
        assert_eq!(resend.len(), 1);
        assert_ne!(resend[0].1.id, first.id);
        assert_eq!(resend[0].1.kind, first.kind);
        resend.clear();
        commands.expire(5000, 1, 10_000, &mut resend, &mut outcomes);
        assert!(resend.is_empty());
        assert!(matches!(&outcomes[..], [FanOutcome::Unanswered(p)] if p.attempts == 2));
    }

    #[test]
    fn ack_must_come_from_the_commanded_node() {
        let mut commands = FanCommands::default();
        let (_, command) = commands.send(node("n1"), 0, 100.0, 0);
        assert_eq!(
            commands.ack(&Ack::new(command.id, node("n2"), AckResult::Ok)),
            None
        );
        let outcome = commands.ack(&Ack::new(command.id, node("n1"), AckResult::Ok));
        assert!(matches!(outcome, Some(FanOutcome::Acked(_))));
        assert!(commands.pending.is_empty());
    }

    #[test]
    fn newer_target_replaces_the_one_in_flight() {
        let mut commands = FanCommands::default();
        commands.send(node("n1"), 0, 100.0, 0);
        let (_, normal) = commands.send(node("n1"), 0, 40.0, 10);
        assert_eq!(commands.pending.len(), 1);
        assert!(commands.pending.contains_key(&normal.id));
    }
}
