//! Rule evaluation: which rules watch each probe series, rack, row and node, and the level each
//! reading, status or passing second gives them. Its output is a list of [`Evaluation`]s for the
//! incident lifecycle (`incidents.rs`); it keeps no incident state.
//!
//! Per reading the work is O(rules matching its series): which rules match a series is decided the
//! first time the series is seen and kept with it, with each rule's incident key and member id.
//! Rack and row rules read the measures `derive.rs` computed, never the probes themselves.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use rackwatch_protocols::{NodeId, NodeState, Quantity, ReadingStatus, Status};

use super::index::{RuleIndex, Watched};
use super::rule::{Level, Scope, alert_key};
use super::track::{Memory, RateWindow, minutes_to_limit};
use crate::config::RuleKind;
use crate::model::{Measure, Position, Sample, Series, SeriesId, SeriesScope};

/// One rule watching one member (a series, rack, row or node), with everything precomputed.
#[derive(Debug)]
pub struct Watch {
    pub rule: usize,
    pub key: String,
    pub member_id: String,
    pub scope: Scope,
}

impl Watch {
    fn new(rules: &RuleIndex, rule: usize, scope: Scope) -> Option<Arc<Watch>> {
        let r = rules.get(rule)?;
        Some(Arc::new(Watch {
            rule,
            key: alert_key(&r.name, &scope.grouped(r.group_by)),
            member_id: scope.id(),
            scope,
        }))
    }
}

/// One rule's level for one member, and the value that gave it.
pub type Evaluation = (Arc<Watch>, Level, Option<f64>);

#[derive(Debug)]
struct SeriesEntry {
    /// Whose node it is (a node that comes back restarts its series' staleness).
    series: Arc<Series>,
    last_seen_ms: i64,
    watches: Vec<(Arc<Watch>, Option<Memory>)>,
}

#[derive(Debug)]
struct NodeEntry {
    last_seen_ms: i64,
    online_boot: Option<u32>,
    /// Offline by its last will, and watched by a `node_offline` rule (see `inhibit`).
    away: bool,
    silent: Vec<Arc<Watch>>,
    offline: Vec<Arc<Watch>>,
}

/// Seeded fast hashing (ahash, a random key per process) for the maps looked up per reading.
type Fast = ahash::RandomState;

/// The watches of every member seen so far.
#[derive(Debug, Default)]
pub struct Evaluator {
    /// Every node of the inventory with its position.
    inventory: HashMap<NodeId, Position>,
    /// The probe series some rule watches (a site watches a few of its series; a map entry for each
    /// of the others would be most of the engine's memory).
    series: HashMap<SeriesId, SeriesEntry, Fast>,
    /// One bit per [`SeriesId`]: set once no rule was found to watch the series, so its readings
    /// cost one bit test and no entry.
    unwatched: Vec<u64>,
    nodes: HashMap<NodeId, NodeEntry, Fast>,
    /// ΔT and power rules per rack, power rules per row (a row's position has no rack).
    racks: HashMap<Position, Vec<Arc<Watch>>>,
    rows: HashMap<Position, Vec<Arc<Watch>>>,
}

impl Evaluator {
    /// Watches every node of the inventory from `now_ms` (a node that never reports is silent from
    /// the engine's start).
    pub fn new(rules: &RuleIndex, inventory: &[(NodeId, Position)], now_ms: i64) -> Evaluator {
        let mut evaluator = Evaluator {
            inventory: inventory.iter().cloned().collect(),
            ..Evaluator::default()
        };
        for (node, position) in inventory {
            evaluator.node_entry(rules, node, position, now_ms);
        }
        evaluator
    }

    fn node_entry(
        &mut self,
        rules: &RuleIndex,
        node: &NodeId,
        position: &Position,
        now_ms: i64,
    ) -> &mut NodeEntry {
        self.nodes.entry(node.clone()).or_insert_with(|| {
            let scope = Scope {
                node: Some(node.clone()),
                ..Scope::of_position(position)
            };
            let watching = |watched: Watched| -> Vec<Arc<Watch>> {
                rules
                    .watching(watched)
                    .filter(|(_, r)| r.selector.matches_node(node, position))
                    .filter_map(|(i, _)| Watch::new(rules, i, scope.clone()))
                    .collect()
            };
            NodeEntry {
                last_seen_ms: now_ms,
                online_boot: None,
                away: false,
                silent: watching(Watched::Silent),
                offline: watching(Watched::Offline),
            }
        })
    }

    /// Whether `node` is offline by its last will and watched by a `node_offline` rule.
    pub fn is_away(&self, node: &NodeId) -> bool {
        self.nodes.get(node).is_some_and(|n| n.away)
    }

    /// The readings of one ingest commit, probes and derived measures.
    pub fn samples(&mut self, rules: &RuleIndex, samples: &[Sample], now_ms: i64, out: &mut Vec<Evaluation>) {
        for (index, sample) in samples.iter().enumerate() {
            let series = &sample.series;
            match (series.scope, sample.value) {
                (SeriesScope::Probe, _) => self.probe(rules, samples, index, sample, now_ms, out),
                (SeriesScope::Rack(measure), Some(value)) => self.rack(rules, series, measure, value, out),
                (SeriesScope::Row(measure), Some(value)) => self.row(rules, series, measure, value, out),
                // A measure with no live member says nothing about its rules.
                (_, None) => {}
            }
        }
    }

    fn probe(
        &mut self,
        rules: &RuleIndex,
        batch: &[Sample],
        index: usize,
        sample: &Sample,
        now_ms: i64,
        out: &mut Vec<Evaluation>,
    ) {
        let series = &sample.series;
        match self.nodes.get_mut(&series.node) {
            Some(node) => node.last_seen_ms = now_ms,
            None => {
                self.node_entry(rules, &series.node, &series.position, now_ms)
                    .last_seen_ms = now_ms
            }
        }
        let (word, bit) = (series.id.index() / 64, 1u64 << (series.id.index() % 64));
        if self.unwatched.get(word).is_some_and(|w| w & bit != 0) {
            return;
        }
        let entry = match self.series.entry(series.id) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(vacant) => {
                let watches: Vec<_> = rules
                    .watching(Watched::Series)
                    .filter(|(_, r)| r.selector.matches_series(series))
                    .filter_map(|(i, r)| {
                        let memory = match r.kind {
                            RuleKind::Rate => Some(Memory::Rate(RateWindow::default())),
                            RuleKind::Forecast => Some(Memory::Trend(Default::default())),
                            _ => None,
                        };
                        Some((Watch::new(rules, i, Scope::of_series(series))?, memory))
                    })
                    .collect();
                if watches.is_empty() {
                    if self.unwatched.len() <= word {
                        self.unwatched.resize(word + 1, 0);
                    }
                    if let Some(w) = self.unwatched.get_mut(word) {
                        *w |= bit;
                    }
                    return;
                }
                vacant.insert(SeriesEntry {
                    series: Arc::clone(series),
                    last_seen_ms: now_ms,
                    watches,
                })
            }
        };
        entry.last_seen_ms = now_ms;
        for (watch, memory) in &mut entry.watches {
            let Some(rule) = rules.get(watch.rule) else {
                continue;
            };
            let evaluation = match rule.kind {
                RuleKind::Threshold => sample.value.map(|v| (rule.condition.level(v), Some(v))),
                RuleKind::Rate => match (sample.value, memory.as_mut()) {
                    (Some(v), Some(Memory::Rate(window))) => {
                        let change = window.push(rule.window_ms, sample.timestamp_ms, v);
                        Some((rule.condition.level(change), Some(change)))
                    }
                    _ => None,
                },
                // Too few readings yet say nothing; a flat or falling trend clears.
                RuleKind::Forecast => match (sample.value, memory.as_mut()) {
                    (Some(v), Some(Memory::Trend(recent))) => {
                        let limit = rule.forecast_limit;
                        minutes_to_limit(recent, rule.window_ms, sample.timestamp_ms, v, limit).map(
                            |minutes| match minutes {
                                Some(m) => (rule.condition.level(m), Some(m)),
                                None => (Level::Clear, None),
                            },
                        )
                    }
                    _ => None,
                },
                RuleKind::SensorFault => Some(if sample.status == ReadingStatus::Ok {
                    (Level::Clear, Some(0.0))
                } else {
                    (Level::Trigger, Some(1.0))
                }),
                RuleKind::Stale => Some((Level::Clear, Some(0.0))),
                RuleKind::DewPoint => sample.value.and_then(|dew_point| {
                    let temperature = same_message_temperature(batch, index, series)?;
                    let spread = temperature - dew_point;
                    Some((rule.condition.level(spread), Some(spread)))
                }),
                _ => None,
            };
            if let Some((level, value)) = evaluation {
                out.push((Arc::clone(watch), level, value));
            }
        }
    }

    /// A rack's ΔT or power rules on one of its derived measures.
    fn rack(
        &mut self,
        rules: &RuleIndex,
        series: &Series,
        measure: Measure,
        value: f64,
        out: &mut Vec<Evaluation>,
    ) {
        let position = &series.position;
        let watches = self.racks.entry(Position::clone(position)).or_insert_with(|| {
            let scope = Scope::of_position(position);
            [Watched::Rack(Measure::DeltaT), Watched::Rack(Measure::Power)]
                .into_iter()
                .flat_map(|watched| rules.watching(watched))
                .filter(|(_, r)| r.selector.matches_position(position))
                .filter_map(|(i, _)| Watch::new(rules, i, scope.clone()))
                .collect()
        });
        evaluate(rules, watches, Watched::Rack(measure), value, out);
    }

    /// A row's power rules on its derived total.
    fn row(
        &mut self,
        rules: &RuleIndex,
        series: &Series,
        measure: Measure,
        value: f64,
        out: &mut Vec<Evaluation>,
    ) {
        let position = &series.position;
        let watches = self.rows.entry(Position::clone(position)).or_insert_with(|| {
            let scope = Scope::of_position(position);
            rules
                .watching(Watched::Row(Measure::Power))
                .filter(|(_, r)| r.selector.matches_position(position))
                .filter_map(|(i, _)| Watch::new(rules, i, scope.clone()))
                .collect()
        });
        evaluate(rules, watches, Watched::Row(measure), value, out);
    }

    /// A node's birth or last will: its `node_offline` rules' level, or `None` for the will of an
    /// older boot (it says nothing about now).
    pub fn status(
        &mut self,
        rules: &RuleIndex,
        status: &Status,
        now_ms: i64,
        out: &mut Vec<Evaluation>,
    ) -> Option<Level> {
        let position = self.inventory.get(&status.node).cloned().unwrap_or(Position {
            room: None,
            row: None,
            rack: None,
        });
        let entry = self.node_entry(rules, &status.node, &position, now_ms);
        let level = match status.state {
            NodeState::Online => {
                entry.online_boot = Some(status.boot);
                Level::Clear
            }
            NodeState::Offline if entry.online_boot.is_some_and(|b| b != status.boot) => return None,
            NodeState::Offline => Level::Trigger,
        };
        let value = Some(if level == Level::Trigger { 1.0 } else { 0.0 });
        entry.away = level == Level::Trigger && !entry.offline.is_empty();
        out.extend(
            entry
                .offline
                .iter()
                .map(|watch| (Arc::clone(watch), level, value)),
        );
        Some(level)
    }

    /// A node came back: its series and its silence count from now, not from before it went away.
    pub fn back(&mut self, node: &NodeId, now_ms: i64) {
        if let Some(entry) = self.nodes.get_mut(node) {
            entry.last_seen_ms = now_ms;
        }
        for entry in self.series.values_mut().filter(|e| e.series.node == *node) {
            entry.last_seen_ms = now_ms;
        }
    }

    /// The rules on silence: series gone stale, nodes gone silent.
    pub fn elapsed(&self, rules: &RuleIndex, now_ms: i64, out: &mut Vec<Evaluation>) {
        for entry in self.series.values() {
            let age_s = now_ms.saturating_sub(entry.last_seen_ms) as f64 / 1000.0;
            for (watch, _) in &entry.watches {
                if let Some(rule) = rules.get(watch.rule)
                    && rule.kind == RuleKind::Stale
                {
                    out.push((Arc::clone(watch), rule.condition.level(age_s), Some(age_s)));
                }
            }
        }
        for entry in self.nodes.values() {
            let age_s = now_ms.saturating_sub(entry.last_seen_ms) as f64 / 1000.0;
            for watch in &entry.silent {
                if let Some(rule) = rules.get(watch.rule) {
                    out.push((Arc::clone(watch), rule.condition.level(age_s), Some(age_s)));
                }
            }
        }
    }
}

/// The rules among `watches` that read `measure`, on its value (power budgets are in kW).
fn evaluate(
    rules: &RuleIndex,
    watches: &[Arc<Watch>],
    measure: Watched,
    value: f64,
    out: &mut Vec<Evaluation>,
) {
    for watch in watches {
        let Some(rule) = rules.get(watch.rule) else {
            continue;
        };
        let reads = match (rule.kind, measure) {
            (RuleKind::DeltaT, Watched::Rack(Measure::DeltaT)) => Some(value),
            (RuleKind::Power, Watched::Rack(Measure::Power) | Watched::Row(Measure::Power)) => {
                Some(value / 1000.0)
            }
            _ => None,
        };
        if let Some(v) = reads {
            out.push((Arc::clone(watch), rule.condition.level(v), Some(v)));
        }
    }
}

/// The temperature the normaliser computed `series`' dew point from: same node and channel, same
/// message, so just before it in the batch.
fn same_message_temperature(batch: &[Sample], index: usize, series: &Series) -> Option<f64> {
    let earlier = batch.get(..index)?;
    earlier
        .iter()
        .rev()
        .take(rackwatch_protocols::MAX_READINGS * 2)
        .find(|s| {
            s.series.quantity == Quantity::Temperature
                && s.series.node == series.node
                && s.series.channel == series.channel
        })
        .and_then(|s| s.value)
}
