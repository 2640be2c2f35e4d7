//! A fleet firmware rollout as a plan and its progress: which nodes, in which batches, and when to stop.
//!
//! Sans-IO, like the alert engine: [`Rollout`] is told what each node answered (an `OtaAck`) or that a
//! node stayed silent past its deadline, and says what to do next; the caller owns MQTT, the clock and
//! the file. Its whole state is serde, so the caller persists it after every change (in the spool
//! folder) and a restarted gateway takes the rollout up where it stood.
//!
//! The shape follows what fleets need and today's tools lack (ESPHome users report hour-long,
//! half-finished fleet updates and ask to update only some devices): a selection of nodes, a canary
//! batch first, then batches of a fixed share; each batch must confirm the new version before the next
//! starts; failures beyond `max_failures` pause the rollout and name the node and its reason. A node
//! whose board cannot install updates is shown as not updatable and does not count as a failure.

use std::collections::BTreeMap;

use rackwatch_protocols::{FirmwareVersion, OtaResult};
use serde::{Deserialize, Serialize};

/// One node of the fleet, as the inventory places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetNode {
    pub node: String,
    pub row: String,
    pub rack: String,
}

/// Which nodes an update goes to: `row=r01,rack=a03,node=r01-n1` (any term matches; `all` for every node).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    all: bool,
    terms: Vec<(SelectorKey, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SelectorKey {
    Row,
    Rack,
    Node,
}

/// Why a selector or rollout plan was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("selector term `{0}` is not row=NAME, rack=NAME, node=ID or all")]
    BadTerm(String),
    #[error("the selection matches no node")]
    Empty,
    #[error("batch `{0}` is not a count (10) or a share (10%) between 1 and 100 %")]
    BadBatch(String),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let mut selector = Selector::default();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if term == "all" {
                selector.all = true;
                continue;
            }
            let (key, value) = term
                .split_once('=')
                .ok_or_else(|| PlanError::BadTerm(term.to_owned()))?;
            let key = match key.trim() {
                "row" => SelectorKey::Row,
                "rack" => SelectorKey::Rack,
                "node" => SelectorKey::Node,
                _ => return Err(PlanError::BadTerm(term.to_owned())),
            };
            if value.trim().is_empty() {
                return Err(PlanError::BadTerm(term.to_owned()));
            }
            selector.terms.push((key, value.trim().to_owned()));
        }
        if !selector.all && selector.terms.is_empty() {
            return Err(PlanError::BadTerm(text.to_owned()));
        }
        Ok(selector)
    }

    pub fn matches(&self, node: &FleetNode) -> bool {
        self.all
            || self.terms.iter().any(|(key, value)| match key {
                SelectorKey::Row => node.row == *value,
                SelectorKey::Rack => node.rack == *value,
                SelectorKey::Node => node.node == *value,
            })
    }
}

/// How big each batch after the canary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchSize {
    Count(usize),
    Percent(u8),
}

impl BatchSize {
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let bad = || PlanError::BadBatch(text.to_owned());
        match text.trim().strip_suffix('%') {
            Some(percent) => match percent.trim().parse::<u8>() {
                Ok(p @ 1..=100) => Ok(BatchSize::Percent(p)),
                _ => Err(bad()),
            },
            None => match text.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(BatchSize::Count(n)),
                _ => Err(bad()),
            },
        }
    }

    fn of(self, total: usize) -> usize {
        match self {
            BatchSize::Count(n) => n,
            BatchSize::Percent(p) => (total * usize::from(p)).div_ceil(100),
        }
        .max(1)
    }
}

/// Where one node stands in the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum NodeProgress {
    /// In a batch not started yet.
    Waiting,
    /// Receiving the image; `offset` is the next byte the node expects.
    Sending { offset: u32 },
    /// The image arrived and checked out; waiting for the node to boot it and report the new version.
    Verified,
    /// Runs the new version.
    Done,
    /// Refused the update or rolled back: counts against `max_failures`.
    Failed { reason: String },
    /// This board cannot install updates: shown, never counted as a failure.
    NotUpdatable { reason: String },
}

/// The rollout as persisted: plan and progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub update: u32,
    pub version: FirmwareVersion,
    /// Node ids per batch; batch 0 is the canary.
    pub batches: Vec<Vec<String>>,
    /// The batch under way.
    pub current: usize,
    pub max_failures: usize,
    pub nodes: BTreeMap<String, NodeProgress>,
    /// Why the rollout stopped; `None` while it runs.
    pub paused: Option<String>,
}

/// What the caller does after telling the rollout something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send (or go on sending) the update to these nodes, each from the offset it named.
    Send(Vec<(String, u32)>),
    /// Nothing new: wait for more answers.
    Wait,
    /// The rollout stopped: the reason names the node.
    Paused(String),
    /// Every selected node runs the new version (or cannot be updated).
    Complete,
}

impl Rollout {
    /// Plans a rollout of `version` (update id `update`) to the selected nodes: `canary` nodes first,
    /// then batches of `batch`, in inventory order.
    pub fn plan(
        update: u32,
        version: FirmwareVersion,
        fleet: &[FleetNode],
        selector: &Selector,
        canary: usize,
        batch: BatchSize,
        max_failures: usize,
    ) -> Result<Self, PlanError> {
        let selected: Vec<String> = fleet
            .iter()
            .filter(|n| selector.matches(n))
            .map(|n| n.node.clone())
            .collect();
        if selected.is_empty() {
            return Err(PlanError::Empty);
        }
        let size = batch.of(selected.len());
        let (first, rest) = selected.split_at(canary.min(selected.len()));
        let mut batches: Vec<Vec<String>> = Vec::new();
        if !first.is_empty() {
            batches.push(first.to_vec());
        }
        batches.extend(rest.chunks(size).map(<[String]>::to_vec));
        let nodes = selected.into_iter().map(|n| (n, NodeProgress::Waiting)).collect();
        Ok(Rollout {
            update,
            version,
            batches,
            current: 0,
            max_failures,
            nodes,
            paused: None,
        })
    }

    /// Starts (or, after a restart or `resume`, restarts) the current batch: every node of it not
    /// finished yet is sent the update from where it stood.
    pub fn start(&mut self) -> Step {
        self.paused = None;
        self.advance()
    }

    /// A node answered on its `ota/ack` topic.
    pub fn on_ack(&mut self, node: &str, update: u32, result: OtaResult, offset: u32, reason: &str) -> Step {
        if update != self.update {
            return Step::Wait;
        }
        let Some(progress) = self.nodes.get_mut(node) else {
            return Step::Wait;
        };
        *progress = match result {
            OtaResult::Accepted => NodeProgress::Sending { offset },
            OtaResult::Verified => NodeProgress::Verified,
            OtaResult::Confirmed => NodeProgress::Done,
            OtaResult::Refused => NodeProgress::Failed {
                reason: reason.to_owned(),
            },
            OtaResult::RolledBack => NodeProgress::Failed {
                reason: "the new firmware did not confirm; the node went back to its previous one".into(),
            },
            OtaResult::Unsupported => NodeProgress::NotUpdatable {
                reason: reason.to_owned(),
            },
        };
        self.advance()
    }

    /// A node reported the version it runs (in its birth message): done when it is the new one.
    pub fn on_version(&mut self, node: &str, running: FirmwareVersion) -> Step {
        if running == self.version
            && let Some(progress) = self.nodes.get_mut(node)
        {
            *progress = NodeProgress::Done;
        }
        self.advance()
    }

    /// A node stayed silent past the caller's deadline.
    pub fn on_timeout(&mut self, node: &str, what: &str) -> Step {
        if let Some(progress) = self.nodes.get_mut(node)
            && !matches!(progress, NodeProgress::Done | NodeProgress::NotUpdatable { .. })
        {
            *progress = NodeProgress::Failed {
                reason: format!("no answer: {what}"),
            };
        }
        self.advance()
    }

    fn failures(&self) -> Vec<(&String, &String)> {
        self.nodes
            .iter()
            .filter_map(|(node, p)| match p {
                NodeProgress::Failed { reason } => Some((node, reason)),
                _ => None,
            })
            .collect()
    }

    fn advance(&mut self) -> Step {
        if let Some(reason) = &self.paused {
            return Step::Paused(reason.clone());
        }
        let failures = self.failures();
        if failures.len() > self.max_failures {
            let named: Vec<String> = failures.iter().map(|(n, r)| format!("{n}: {r}")).collect();
            let reason = format!(
                "paused after {} failure(s), more than --max-failures {}: {}",
                failures.len(),
                self.max_failures,
                named.join("; ")
            );
            self.paused = Some(reason.clone());
            return Step::Paused(reason);
        }
        loop {
            let Some(batch) = self.batches.get(self.current) else {
                return Step::Complete;
            };
            let settled = |p: &NodeProgress| {
                matches!(
                    p,
                    NodeProgress::Done | NodeProgress::Failed { .. } | NodeProgress::NotUpdatable { .. }
                )
            };
            let mut send = Vec::new();
            let mut open = false;
            for node in batch {
                match self.nodes.get(node) {
                    Some(NodeProgress::Waiting) => send.push((node.clone(), 0)),
                    Some(NodeProgress::Sending { offset }) => {
                        send.push((node.clone(), *offset));
                    }
                    Some(p) if settled(p) => {}
                    _ => open = true,
                }
            }
            if !send.is_empty() {
                for (node, offset) in &send {
                    self.nodes
                        .insert(node.clone(), NodeProgress::Sending { offset: *offset });
                }
                return Step::Send(send);
            }
            if open {
                return Step::Wait;
            }
            self.current += 1;
        }
    }

    /// The progress bar of the batch `node` is in: `batch 1 [######----] 6/10 settled (5 run 1.4.0,
    /// 1 failed)`. A node is settled when it runs the new version, failed, or cannot be updated.
    pub fn batch_bar(&self, node: &str) -> Option<String> {
        const WIDTH: usize = 20;
        let (index, batch) = self
            .batches
            .iter()
            .enumerate()
            .find(|(_, batch)| batch.iter().any(|n| n == node))?;
        let (mut done, mut failed, mut skipped) = (0, 0, 0);
        for progress in batch.iter().filter_map(|n| self.nodes.get(n)) {
            match progress {
                NodeProgress::Done => done += 1,
                NodeProgress::Failed { .. } => failed += 1,
                NodeProgress::NotUpdatable { .. } => skipped += 1,
                _ => {}
            }
        }
        let settled = done + failed + skipped;
        let filled = (settled * WIDTH).checked_div(batch.len()).unwrap_or(WIDTH);
        let name = if index == 0 {
            "canary".to_owned()
        } else {
            format!("batch {index}")
        };
        Some(format!(
            "{name} [{}{}] {settled}/{} settled ({done} run {}, {failed} failed, {skipped} not updatable)",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            batch.len(),
            self.version
        ))
    }

    /// One line per node, for `rackwatch firmware status` and the API.
    pub fn report(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (i, batch) in self.batches.iter().enumerate() {
            let name = if i == 0 {
                "canary".to_owned()
            } else {
                format!("batch {i}")
            };
            for node in batch {
                let state = match self.nodes.get(node) {
                    Some(NodeProgress::Waiting) | None => "waiting".to_owned(),
                    Some(NodeProgress::Sending { offset }) => format!("sending, at byte {offset}"),
                    Some(NodeProgress::Verified) => "verified, waiting for it to boot the new version".into(),
                    Some(NodeProgress::Done) => format!("runs {}", self.version),
                    Some(NodeProgress::Failed { reason }) => format!("failed: {reason}"),
                    Some(NodeProgress::NotUpdatable { reason }) => format!("not updatable: {reason}"),
                };
                lines.push(format!("{name}: {node}: {state}"));
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    fn fleet(n: usize) -> Vec<FleetNode> {
        (0..n)
            .map(|i| FleetNode {
                node: format!("r{:02}-n{}", i / 10 + 1, i % 10),
                row: format!("r{:02}", i / 10 + 1),
                rack: format!("a{:02}", i % 10),
            })
            .collect()
    }

    const V: FirmwareVersion = FirmwareVersion::new(1, 4, 0);

    fn plan(n: usize, select: &str, canary: usize, batch: &str, max_failures: usize) -> Rollout {
        Rollout::plan(
            7,
            V,
            &fleet(n),
            &Selector::parse(select).unwrap(),
            canary,
            BatchSize::parse(batch).unwrap(),
            max_failures,
        )
        .unwrap()
    }

    fn finish(rollout: &mut Rollout, nodes: &[(String, u32)]) -> Step {
        let mut last = Step::Wait;
        for (node, _) in nodes {
            rollout.on_ack(node, 7, OtaResult::Verified, 100, "");
            last = rollout.on_version(node, V);
        }
        last
    }

    #[test]
    fn selectors_pick_rows_racks_and_nodes() {
        let fleet = fleet(30);
        let pick = |s: &str| -> Vec<String> {
            let sel = Selector::parse(s).unwrap();
            fleet
                .iter()
                .filter(|n| sel.matches(n))
                .map(|n| n.node.clone())
                .collect()
        };
        assert_eq!(pick("row=r02").len(), 10);
        assert_eq!(pick("rack=a03"), ["r01-n3", "r02-n3", "r03-n3"]);
        assert_eq!(pick("node=r03-n9,row=r01").len(), 11);
        assert_eq!(pick("all").len(), 30);
        assert!(Selector::parse("shelf=3").is_err());
        assert!(Selector::parse("row=").is_err());
        assert!(Selector::parse("").is_err());
    }

    #[test]
    fn a_canary_then_batches_each_waiting_for_the_last_to_confirm() {
        let mut rollout = plan(20, "all", 1, "50%", 1);
        assert_eq!(
            rollout.batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [1, 10, 9]
        );
        let Step::Send(canary) = rollout.start() else {
            panic!()
        };
        assert_eq!(canary, [("r01-n0".to_owned(), 0)]);
        // The canary's image arrives but it has not booted it yet: the next batch waits.
        assert_eq!(
            rollout.on_ack("r01-n0", 7, OtaResult::Verified, 100, ""),
            Step::Wait
        );
        let Step::Send(first) = rollout.on_version("r01-n0", V) else {
            panic!()
        };
        assert_eq!(first.len(), 10);
        let Step::Send(second) = finish(&mut rollout, &first) else {
            panic!()
        };
        assert_eq!(second.len(), 9);
        assert_eq!(finish(&mut rollout, &second), Step::Complete);
    }

    #[test]
    fn failures_beyond_the_limit_pause_the_rollout_naming_the_node() {
        let mut rollout = plan(10, "all", 0, "5", 0);
        let Step::Send(batch) = rollout.start() else {
            panic!()
        };
        let step = rollout.on_ack(&batch[2].0, 7, OtaResult::Refused, 0, "signature does not verify");
        let Step::Paused(reason) = step else {
            panic!("{step:?}")
        };
        assert!(reason.contains("r01-n2: signature does not verify"), "{reason}");
        // Answers keep coming in while paused; nothing more is sent.
        assert!(matches!(
            rollout.on_ack(&batch[0].0, 7, OtaResult::Accepted, 2048, ""),
            Step::Paused(_)
        ));
    }

    #[test]
    fn resume_after_a_pause_sends_again_from_where_each_node_stood() {
        let mut rollout = plan(4, "all", 0, "4", 0);
        rollout.start();
        rollout.on_ack("r01-n0", 7, OtaResult::Accepted, 4096, "");
        rollout.on_ack(
            "r01-n1",
            7,
            OtaResult::Refused,
            0,
            "image hash does not match the signed header",
        );
        // The operator fixes the file and resumes: the failed node starts over, the others go on.
        rollout.nodes.insert("r01-n1".into(), NodeProgress::Waiting);
        let Step::Send(again) = rollout.start() else {
            panic!()
        };
        assert!(again.contains(&("r01-n0".to_owned(), 4096)));
        assert!(again.contains(&("r01-n1".to_owned(), 0)));
    }

    #[test]
    fn a_node_that_cannot_update_is_shown_and_does_not_stop_the_rollout() {
        let mut rollout = plan(2, "all", 1, "1", 0);
        rollout.start();
        let Step::Send(next) =
            rollout.on_ack("r01-n0", 7, OtaResult::Unsupported, 0, "QEMU flash is read-only")
        else {
            panic!()
        };
        assert_eq!(next, [("r01-n1".to_owned(), 0)]);
        assert!(rollout.report()[0].contains("not updatable: QEMU flash is read-only"));
    }

    #[test]
    fn the_persisted_rollout_reads_back_the_same() {
        let mut rollout = plan(12, "row=r01", 2, "25%", 1);
        rollout.start();
        rollout.on_ack("r01-n0", 7, OtaResult::Accepted, 2048, "");
        let json = serde_json::to_string(&rollout).unwrap();
        let back: Rollout = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rollout);
    }

    #[test]
    fn batch_sizes_parse_as_counts_or_shares() {
        assert_eq!(BatchSize::parse("10%"), Ok(BatchSize::Percent(10)));
        assert_eq!(BatchSize::parse("3"), Ok(BatchSize::Count(3)));
        assert!(BatchSize::parse("0").is_err());
        assert!(BatchSize::parse("101%").is_err());
        assert_eq!(BatchSize::Percent(10).of(15), 2);
        assert_eq!(BatchSize::Percent(1).of(5), 1);
    }

    #[test]
    fn the_batch_bar_counts_what_has_settled_in_the_nodes_batch() {
        let mut rollout = plan(5, "all", 1, "2", 1);
        rollout.start();
        let canary = rollout.batches[0][0].clone();
        assert_eq!(
            rollout.batch_bar(&canary).unwrap(),
            "canary [--------------------] 0/1 settled (0 run 1.4.0, 0 failed, 0 not updatable)"
        );
        rollout.nodes.insert(canary.clone(), NodeProgress::Done);
        assert!(
            rollout
                .batch_bar(&canary)
                .unwrap()
                .starts_with("canary [####################] 1/1")
        );
        let second = rollout.batches[1].clone();
        rollout
            .nodes
            .insert(second[0].clone(), NodeProgress::Failed { reason: "x".into() });
        assert!(
            rollout
                .batch_bar(&second[1])
                .unwrap()
                .starts_with("batch 1 [##########----------] 1/2 settled (0 run 1.4.0, 1 failed"),
            "{}",
            rollout.batch_bar(&second[1]).unwrap()
        );
        assert_eq!(rollout.batch_bar("nobody"), None);
    }
}
