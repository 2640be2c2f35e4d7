//! The alert engine without any I/O: observations and the time go in, [`Effect`]s (MQTT publishes,
//! fan commands) and [`DeliveryJob`]s (webhook notifications) come out, and [`Saved`] is what must
//! survive a restart. The runner (`runner.rs`) does the I/O; tests drive this with a made-up clock.
//!
//! Per reading the work is O(rules matching its series): which rules match a series is decided the
//! first time the series is seen and kept with it, with each rule's incident key and member id.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rackwatch_protocols::{
    Alert, AlertState, Command, NodeId, NodeState, Quantity, ReadingStatus, Severity, SiteId, Status,
};
use serde::{Deserialize, Serialize};

use super::cooling::{Cooling, FanCommands, FanOutcome};
use super::delivery::{self, Timing};
use super::inhibit;
use super::rule::{Level, Rule, Scope, alert_key};
use super::silence::{Matchers, Silence};
use super::state::{Acknowledgement, Delivered, Incident, Member, Settled, Step};
use super::track::{RackTrack, RateWindow};
use crate::config::{PowerScope, RuleKind};
use crate::model::{AirSide, Position, Sample, Series};

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

/// A webhook receiver as the engine sees it.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    /// 1: at once; 2: after `escalate_after` without an acknowledgement.
    pub level: u8,
    pub min_severity: Severity,
    pub max_backoff_ms: i64,
    /// An Alertmanager: firing incidents are sent again this often (0: a receiver for people).
    pub resend_interval_ms: i64,
}

/// One notification to send to one receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryJob {
    pub receiver: usize,
    pub key: String,
    pub state: AlertState,
    pub episode: u64,
    /// A reminder of a firing incident already sent.
    pub repeat: bool,
    pub alert: Alert,
    pub acknowledged: bool,
    pub firing_since_ms: i64,
    pub level: u8,
    /// When the alert ends, for receivers that want to know (Alertmanager's `endsAt`).
    pub ends_at_ms: Option<i64>,
    /// The longer text for a person (a row incident names its racks).
    pub description: String,
}

/// How a delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// The receiver refused it for good (HTTP 4xx other than 408 and 429): not sent again.
    Refused,
    /// Try again later.
    Failed,
}

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub incidents: Vec<Incident>,
    #[serde(default)]
    pub silences: Vec<Silence>,
    #[serde(default)]
    pub next_silence_id: u64,
    #[serde(default)]
    pub boosted_racks: Vec<Scope>,
    #[serde(default)]
    pub fan_commands: FanCommands,
}

/// Everything the engine is built from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub site: SiteId,
    pub rules: Vec<Rule>,
    pub receivers: Vec<Receiver>,
    /// People's repeats and escalation.
    pub timing: Timing,
    /// Every node of the inventory with its position (silent-node rules watch them from the start).
    pub nodes: Vec<(NodeId, Position)>,
    pub cooling: Option<Cooling>,
}

/// Why an API request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("no alert with key `{0}`")]
    NoSuchAlert(String),
    #[error("alert `{0}` is not firing")]
    NotFiring(String),
    #[error("no silence with id {0}")]
    NoSuchSilence(u64),
    #[error("{0}")]
    Invalid(&'static str),
}

/// One rule watching one member (a series, rack, row or node), with everything precomputed.
#[derive(Debug)]
struct Watch {
    rule: usize,
    key: String,
    member_id: String,
    scope: Scope,
}

impl Watch {
    fn new(rules: &[Rule], rule: usize, scope: Scope) -> Option<Arc<Watch>> {
        let r = rules.get(rule)?;
        Some(Arc::new(Watch {
            rule,
            key: alert_key(&r.name, &scope.grouped(r.group_by)),
            member_id: scope.id(),
            scope,
        }))
    }
}

#[derive(Debug)]
struct SeriesEntry {
    /// Held also so the address that keys this entry is never reused.
    series: Arc<Series>,
    last_seen_ms: i64,
    watches: Vec<(Arc<Watch>, Option<RateWindow>)>,
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

#[derive(Debug, Default)]
struct RackEntry {
    track: RackTrack,
    /// ΔT and rack power rules on this rack.
    watches: Vec<Arc<Watch>>,
}

#[derive(Debug, Default)]
struct RowEntry {
    racks: Vec<Position>,
    watches: Vec<Arc<Watch>>,
}

/// The alert engine.
#[derive(Debug)]
pub struct Engine {
    settings: Settings,
    series: HashMap<usize, SeriesEntry>,
    nodes: HashMap<String, NodeEntry>,
    racks: HashMap<Position, RackEntry>,
    rows: HashMap<(Option<String>, Option<String>), RowEntry>,
    incidents: BTreeMap<String, Incident>,
    silences: Vec<Silence>,
    next_silence_id: u64,
    effects: Vec<Effect>,
    evaluations: Vec<(Arc<Watch>, Level, Option<f64>)>,
    /// Per receiver: a delivery in flight, and when a failed one may be tried again.
    in_flight: Vec<bool>,
    retry: Vec<(i64, u32)>,
    cooling_rules: Vec<String>,
    changed: bool,
}

impl Engine {
    /// An engine with the state of a previous run.
    pub fn new(mut settings: Settings, saved: Saved, now_ms: i64) -> Engine {
        let receivers = settings.receivers.len();
        let cooling_rules = settings
            .cooling
            .as_ref()
            .map(|c| {
                c.rules
                    .iter()
                    .filter_map(|&i| settings.rules.get(i))
                    .map(|r| r.name.to_string())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(cooling) = &mut settings.cooling {
            cooling.boosted = saved.boosted_racks.into_iter().collect();
            cooling.commands = saved.fan_commands;
        }
        let known: Vec<String> = settings.receivers.iter().map(|r| r.name.clone()).collect();
        let incidents = saved
            .incidents
            .into_iter()
            .filter(|i| settings.rules.iter().any(|r| r.name == i.rule))
            .map(|mut i| {
                i.delivered.retain(|name, _| known.contains(name));
                (i.key.clone(), i)
            })
            .collect();
        let mut engine = Engine {
            series: HashMap::new(),
            nodes: HashMap::new(),
            racks: HashMap::new(),
            rows: HashMap::new(),
            incidents,
            silences: saved.silences,
            next_silence_id: saved.next_silence_id,
            effects: Vec::new(),
            evaluations: Vec::new(),
            in_flight: vec![false; receivers],
            retry: vec![(i64::MIN, 0); receivers],
            cooling_rules,
            changed: false,
            settings,
        };
        delivery::resend_after_start(engine.incidents.values_mut(), &engine.settings.receivers);
        let nodes = engine.settings.nodes.clone();
        for (node, position) in &nodes {
            engine.node_entry(node, position, now_ms);
        }
        engine
    }

    /// Publishes every incident's state again (retained only: no events) and sends again every
    /// fan command that was awaiting an answer. For a start, and after the broker connection is back.
    pub fn resync(&mut self, now_ms: i64) {
        let alerts: Vec<Alert> = self.incidents.values().map(|i| self.alert(i)).collect();
        for alert in alerts {
            self.effects.push(Effect::Publish {
                alert: Box::new(alert),
                event: false,
            });
        }
        if let Some(cooling) = &mut self.settings.cooling {
            for (node, command) in cooling.commands.resend_all(now_ms) {
                self.effects.push(Effect::Command {
                    node,
                    command: Box::new(command),
                });
            }
        }
    }

    /// Takes the effects produced so far.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Whether anything the state file holds changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    pub fn saved(&self) -> Saved {
        Saved {
            incidents: self.incidents.values().cloned().collect(),
            silences: self.silences.clone(),
            next_silence_id: self.next_silence_id,
            boosted_racks: self
                .settings
                .cooling
                .as_ref()
                .map(|c| c.boosted.iter().cloned().collect())
                .unwrap_or_default(),
            fan_commands: self
                .settings
                .cooling
                .as_ref()
                .map(|c| c.commands.clone())
                .unwrap_or_default(),
        }
    }

    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values()
    }

    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    pub fn is_silenced(&self, incident: &Incident, now_ms: i64) -> bool {
        self.silences.iter().any(|s| s.covers(incident, now_ms))
    }

    /// Held back from people: silenced, or folded into its row's incident.
    fn held(&self, incident: &Incident, now_ms: i64) -> bool {
        self.is_silenced(incident, now_ms) || inhibit::folded(&self.incidents, &self.settings.rules, incident)
    }

    pub fn receivers(&self) -> &[Receiver] {
        &self.settings.receivers
    }

    fn node_entry(&mut self, node: &NodeId, position: &Position, now_ms: i64) -> &mut NodeEntry {
        let rules = &self.settings.rules;
        self.nodes.entry(node.to_string()).or_insert_with(|| {
            let scope = Scope {
                node: Some(node.clone()),
                ..Scope::of_position(position)
            };
            let watching = |kind: RuleKind| -> Vec<Arc<Watch>> {
                rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.kind == kind && r.selector.matches_node(node, position))
                    .filter_map(|(i, _)| Watch::new(rules, i, scope.clone()))
                    .collect()
            };
            NodeEntry {
                // A node of the inventory that never reports is silent from the engine's start.
                last_seen_ms: now_ms,
                online_boot: None,
                away: false,
                silent: watching(RuleKind::SilentNode),
                offline: watching(RuleKind::NodeOffline),
            }
        })
    }

    /// Takes the readings of one ingest commit.
    pub fn observe_samples(&mut self, samples: &[Sample], now_ms: i64) {
        for (index, sample) in samples.iter().enumerate() {
            self.observe_sample(samples, index, sample, now_ms);
        }
        self.apply_evaluations(now_ms);
    }

    fn observe_sample(&mut self, batch: &[Sample], index: usize, sample: &Sample, now_ms: i64) {
        let series = &sample.series;
        let position = &series.position;
        self.node_entry(&series.node, position, now_ms).last_seen_ms = now_ms;
        let rules = &self.settings.rules;
        let key = Arc::as_ptr(series) as usize;
        let entry = self.series.entry(key).or_insert_with(|| SeriesEntry {
            series: Arc::clone(series),
            last_seen_ms: now_ms,
            watches: rules
                .iter()
                .enumerate()
                .filter(|(_, r)| series_kind(r.kind) && r.selector.matches_series(series))
                .filter_map(|(i, r)| {
                    let rate = (r.kind == RuleKind::Rate).then(RateWindow::default);
                    Some((Watch::new(rules, i, Scope::of_series(series))?, rate))
                })
                .collect(),
        });
        entry.last_seen_ms = now_ms;
        for (watch, rate) in &mut entry.watches {
            let Some(rule) = rules.get(watch.rule) else {
                continue;
            };
            let evaluation = match rule.kind {
                RuleKind::Threshold => sample.value.map(|v| (rule.condition.level(v), Some(v))),
                RuleKind::Rate => match (sample.value, rate.as_mut()) {
                    (Some(v), Some(window)) => {
                        let change = window.push(rule.window_ms, sample.timestamp_ms, v);
                        Some((rule.condition.level(change), Some(change)))
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
                self.evaluations.push((Arc::clone(watch), level, value));
            }
        }
        if let Some(value) = sample.value {
            self.observe_rack(series, value, sample.timestamp_ms, now_ms);
        }
    }

    /// Updates the rack's inlet/outlet/power and evaluates its ΔT and power rules and its row's.
    fn observe_rack(&mut self, series: &Arc<Series>, value: f64, timestamp_ms: i64, now_ms: i64) {
        let side = series.placement.and_then(|p| p.air_side());
        let is_power = series.quantity == Quantity::Power;
        let is_air = series.quantity == Quantity::Temperature && side.is_some();
        if !(is_power || is_air) || series.position.rack.is_none() {
            return;
        }
        let rules = &self.settings.rules;
        let position = &series.position;
        let rack = self.racks.entry(Position::clone(position)).or_insert_with(|| {
            let scope = Scope::of_position(position);
            let watches = rules
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    (r.kind == RuleKind::DeltaT
                        || (r.kind == RuleKind::Power && r.power_scope == Some(PowerScope::Rack)))
                        && r.selector.matches_position(position)
                })
                .filter_map(|(i, _)| Watch::new(rules, i, scope.clone()))
                .collect();
            RackEntry {
                track: RackTrack::default(),
                watches,
            }
        });
        let id = Arc::as_ptr(series) as usize;
        let reading = (value, timestamp_ms);
        match (is_power, side) {
            (true, _) => rack.track.power.insert(id, reading),
            (false, Some(AirSide::Inlet)) => rack.track.inlet.insert(id, reading),
            (false, _) => rack.track.outlet.insert(id, reading),
        };
        for watch in &rack.watches {
            let Some(rule) = rules.get(watch.rule) else {
                continue;
            };
            let measure = match rule.kind {
                RuleKind::DeltaT if !is_power => rack.track.delta_t(timestamp_ms),
                RuleKind::Power if is_power => rack.track.power_kw(timestamp_ms),
                _ => None,
            };
            if let Some(v) = measure {
                self.evaluations
                    .push((Arc::clone(watch), rule.condition.level(v), Some(v)));
            }
        }
        if is_power {
            self.observe_row(position, timestamp_ms);
        }
        let _ = now_ms;
    }

    fn observe_row(&mut self, position: &Position, timestamp_ms: i64) {
        let rules = &self.settings.rules;
        let row_key = (
            position.room.as_ref().map(ToString::to_string),
            position.row.as_ref().map(ToString::to_string),
        );
        let row = self.rows.entry(row_key).or_insert_with(|| {
            let row_position = Position {
                rack: None,
                ..position.clone()
            };
            let scope = Scope::of_position(&row_position);
            RowEntry {
                racks: Vec::new(),
                watches: rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        r.kind == RuleKind::Power
                            && r.power_scope == Some(PowerScope::Row)
                            && r.selector.matches_position(&row_position)
                    })
                    .filter_map(|(i, _)| Watch::new(rules, i, scope.clone()))
                    .collect(),
            }
        });
        if !row.racks.contains(position) {
            row.racks.push(position.clone());
        }
        if row.watches.is_empty() {
            return;
        }
        let total: f64 = row
            .racks
            .iter()
            .filter_map(|p| self.racks.get(p)?.track.power_kw(timestamp_ms))
            .sum();
        for watch in &row.watches {
            if let Some(rule) = rules.get(watch.rule) {
                self.evaluations
                    .push((Arc::clone(watch), rule.condition.level(total), Some(total)));
            }
        }
    }

    /// Takes a node's birth or last will.
    pub fn observe_status(&mut self, status: &Status, now_ms: i64) {
        let position = self
            .settings
            .nodes
            .iter()
            .find(|(n, _)| *n == status.node)
            .map(|(_, p)| p.clone())
            .unwrap_or(Position {
                room: None,
                row: None,
                rack: None,
            });
        let entry = self.node_entry(&status.node, &position, now_ms);
        let level = match status.state {
            NodeState::Online => {
                entry.online_boot = Some(status.boot);
                Level::Clear
            }
            // The will of an older boot arriving after the node came back says nothing about now.
            NodeState::Offline if entry.online_boot.is_some_and(|b| b != status.boot) => return,
            NodeState::Offline => Level::Trigger,
        };
        let value = Some(if level == Level::Trigger { 1.0 } else { 0.0 });
        entry.away = level == Level::Trigger && !entry.offline.is_empty();
        let away = entry.away;
        let watches: Vec<Arc<Watch>> = entry.offline.clone();
        for watch in watches {
            self.evaluations.push((watch, level, value));
        }
        self.apply_evaluations(now_ms);
        if away {
            for key in inhibit::hold_back(&mut self.incidents, &self.settings.rules, &status.node) {
                self.changed = true;
                self.settle(&key, None, now_ms);
            }
        } else if level == Level::Clear {
            // Back: its series and its silence count from now, not from before it went away.
            self.node_entry(&status.node, &position, now_ms).last_seen_ms = now_ms;
            for entry in self.series.values_mut().filter(|e| e.series.node == status.node) {
                entry.last_seen_ms = now_ms;
            }
        }
    }

    /// Takes a node's answer to a command.
    pub fn observe_ack(&mut self, ack: &rackwatch_protocols::Ack) {
        if let Some(outcome) = self.settings.cooling.as_mut().and_then(|c| c.commands.ack(ack)) {
            self.effects.push(Effect::Fan(outcome));
            self.changed = true;
        }
    }

    /// Lets time pass: `for` and `clear_for` end, series go stale, nodes silent, commands time out.
    pub fn tick(&mut self, now_ms: i64) {
        let rules = &self.settings.rules;
        for entry in self.series.values() {
            let age_s = now_ms.saturating_sub(entry.last_seen_ms) as f64 / 1000.0;
            for (watch, _) in &entry.watches {
                if let Some(rule) = rules.get(watch.rule)
                    && rule.kind == RuleKind::Stale
                {
                    self.evaluations
                        .push((Arc::clone(watch), rule.condition.level(age_s), Some(age_s)));
                }
            }
        }
        for entry in self.nodes.values() {
            let age_s = now_ms.saturating_sub(entry.last_seen_ms) as f64 / 1000.0;
            for watch in &entry.silent {
                if let Some(rule) = rules.get(watch.rule) {
                    self.evaluations
                        .push((Arc::clone(watch), rule.condition.level(age_s), Some(age_s)));
                }
            }
        }
        self.apply_evaluations(now_ms);
        let keys: Vec<String> = self.incidents.keys().cloned().collect();
        for key in keys {
            let Some(incident) = self.incidents.get_mut(&key) else {
                continue;
            };
            let Some(rule) = self.settings.rules.iter().find(|r| r.name == incident.rule) else {
                continue;
            };
            if inhibit::is_row_fold(incident, rule) {
                continue;
            }
            let mut moved = false;
            let mut last_value = None;
            incident.members.retain(|_, member| {
                let step = member.step(rule, None, now_ms);
                moved |= step != Step::Unchanged;
                last_value = member.value.or(last_value);
                step != Step::Gone
            });
            if moved {
                self.changed = true;
                self.settle(&key, last_value, now_ms);
            }
        }
        if let Some(cooling) = &mut self.settings.cooling {
            let mut resend = Vec::new();
            let mut outcomes = Vec::new();
            cooling.commands.expire(
                cooling.ack_timeout_ms,
                cooling.retries,
                now_ms,
                &mut resend,
                &mut outcomes,
            );
            if !resend.is_empty() || !outcomes.is_empty() {
                self.changed = true;
            }
            for (node, command) in resend {
                self.effects.push(Effect::Command {
                    node,
                    command: Box::new(command),
                });
            }
            self.effects.extend(outcomes.into_iter().map(Effect::Fan));
        }
    }

    fn apply_evaluations(&mut self, now_ms: i64) {
        let evaluations = std::mem::take(&mut self.evaluations);
        for (watch, level, value) in &evaluations {
            self.apply(watch, *level, *value, now_ms);
        }
        self.evaluations = evaluations;
        self.evaluations.clear();
    }

    /// One rule's new level for one member.
    fn apply(&mut self, watch: &Watch, level: Level, value: Option<f64>, now_ms: i64) {
        let Some(rule) = self.settings.rules.get(watch.rule) else {
            return;
        };
        let away = |node: &NodeId| self.nodes.get(node.as_str()).is_some_and(|n| n.away);
        if inhibit::held_back_while_offline(rule.kind) && watch.scope.node.as_ref().is_some_and(away) {
            return;
        }
        // The common case, a reading that is fine for a rule with nothing pending: no allocation.
        let incident = match self.incidents.get_mut(&watch.key) {
            Some(incident) => incident,
            None if level != Level::Trigger => return,
            None => self.incidents.entry(watch.key.clone()).or_insert_with(|| {
                Incident::new(
                    watch.key.clone(),
                    rule,
                    watch.scope.grouped(rule.group_by),
                    now_ms,
                )
            }),
        };
        let step = match incident.members.get_mut(&watch.member_id) {
            Some(member) => member.step(rule, Some((level, value)), now_ms),
            None if level != Level::Trigger => return,
            None => {
                let mut member = Member::new(watch.scope.clone(), value, now_ms);
                let step = member.step(rule, None, now_ms);
                incident.members.insert(watch.member_id.clone(), member);
                if step == Step::Unchanged {
                    Step::Quiet
                } else {
                    step
                }
            }
        };
        if step == Step::Gone {
            incident.members.remove(&watch.member_id);
        }
        if step != Step::Unchanged {
            self.changed = true;
            let key = watch.key.clone();
            self.settle(&key, value, now_ms);
        }
    }

    /// Publishes the incident's transition, if its members add up to one, and acts on it.
    fn settle(&mut self, key: &str, last_value: Option<f64>, now_ms: i64) {
        let Some(incident) = self.incidents.get_mut(key) else {
            return;
        };
        let Some(rule) = self.settings.rules.iter().find(|r| r.name == incident.rule) else {
            return;
        };
        let settled = incident.settle(rule, last_value, now_ms);
        match settled {
            Settled::Transition => self.effects.push(Effect::Publish {
                alert: Box::new(alert_message(incident, rule)),
                event: true,
            }),
            Settled::Dropped => self.effects.push(Effect::Withdraw { key: key.to_owned() }),
            Settled::Unchanged => {}
        }
        if let Some(row) = inhibit::fold_row(&mut self.incidents, &self.settings.rules, key, now_ms) {
            self.settle(&row, None, now_ms);
        }
        if settled != Settled::Unchanged {
            self.forget_if_finished(key, now_ms);
        }
        self.reconcile_cooling(now_ms);
    }

    fn reconcile_cooling(&mut self, now_ms: i64) {
        let Some(cooling) = &mut self.settings.cooling else {
            return;
        };
        let names: Vec<&str> = self.cooling_rules.iter().map(String::as_str).collect();
        for (node, command) in cooling.reconcile(&names, self.incidents.values(), now_ms) {
            self.effects.push(Effect::Command {
                node,
                command: Box::new(command),
            });
        }
    }

    fn alert(&self, incident: &Incident) -> Alert {
        match self.settings.rules.iter().find(|r| r.name == incident.rule) {
            Some(rule) => alert_message(incident, rule),
            None => base_alert(incident),
        }
    }

    /// The notifications due now: at most one per receiver at a time, so each receiver gets an
    /// incident's transitions in order.
    pub fn due_deliveries(&mut self, now_ms: i64) -> Vec<DeliveryJob> {
        let mut jobs = Vec::new();
        for (index, receiver) in self.settings.receivers.iter().enumerate() {
            let busy = self.in_flight.get(index).copied().unwrap_or(true);
            let retry_at = self.retry.get(index).map_or(i64::MAX, |r| r.0);
            if busy || now_ms < retry_at {
                continue;
            }
            let due = self.incidents.values().find_map(|incident| {
                let silenced = self.held(incident, now_ms);
                let (state, episode, repeat) =
                    delivery::desired(incident, receiver, silenced, self.settings.timing, now_ms)?;
                let mut alert = self.alert(incident);
                alert.state = state;
                let rule = self.settings.rules.iter().find(|r| r.name == incident.rule);
                Some(DeliveryJob {
                    receiver: index,
                    key: incident.key.clone(),
                    state,
                    episode,
                    repeat,
                    alert,
                    acknowledged: incident.acknowledged.is_some(),
                    firing_since_ms: incident.firing_since_ms.unwrap_or(incident.since_ms),
                    level: receiver.level,
                    ends_at_ms: delivery::ends_at_ms(state, incident.since_ms, receiver, now_ms),
                    description: rule.map_or_else(
                        || incident.summary.clone(),
                        |rule| super::words::description(rule, incident),
                    ),
                })
            });
            if let Some(job) = due {
                if let Some(flag) = self.in_flight.get_mut(index) {
                    *flag = true;
                }
                jobs.push(job);
            }
        }
        jobs
    }

    /// Records how a delivery went.
    pub fn delivered(&mut self, job: &DeliveryJob, result: DeliveryResult, now_ms: i64) {
        if let Some(flag) = self.in_flight.get_mut(job.receiver) {
            *flag = false;
        }
        let Some(receiver) = self.settings.receivers.get(job.receiver) else {
            return;
        };
        let Some(retry) = self.retry.get_mut(job.receiver) else {
            return;
        };
        if result == DeliveryResult::Failed {
            retry.1 = retry.1.saturating_add(1);
            retry.0 = now_ms.saturating_add(delivery::backoff_ms(retry.1, receiver.max_backoff_ms));
            return;
        }
        *retry = (i64::MIN, 0);
        if let Some(incident) = self.incidents.get_mut(&job.key) {
            incident.delivered.insert(
                receiver.name.clone(),
                Delivered {
                    state: job.state,
                    episode: job.episode,
                    at_ms: now_ms,
                },
            );
        }
        self.forget_if_finished(&job.key, now_ms);
        self.changed = true;
    }

    /// Drops a resolved incident once no receiver is owed anything about it.
    fn forget_if_finished(&mut self, key: &str, now_ms: i64) {
        let Some(incident) = self.incidents.get(key) else {
            return;
        };
        if incident.state != AlertState::Resolved {
            return;
        }
        let silenced = self.held(incident, now_ms);
        let owed = self
            .settings
            .receivers
            .iter()
            .any(|r| delivery::desired(incident, r, silenced, self.settings.timing, now_ms).is_some());
        if !owed {
            self.incidents.remove(key);
        }
    }

    /// `POST /api/alerts/{key}/ack`: stops repeats and escalation of this firing.
    pub fn acknowledge(
        &mut self,
        key: &str,
        by: String,
        comment: String,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let incident = self
            .incidents
            .get_mut(key)
            .ok_or_else(|| ApiError::NoSuchAlert(key.to_owned()))?;
        if incident.state != AlertState::Firing {
            return Err(ApiError::NotFiring(key.to_owned()));
        }
        incident.acknowledged = Some(Acknowledgement {
            by,
            comment,
            at_ms: now_ms,
        });
        self.changed = true;
        Ok(())
    }

    /// `POST /api/silences`.
    pub fn silence(
        &mut self,
        matchers: Matchers,
        starts_ms: i64,
        ends_ms: i64,
        created_by: String,
        comment: String,
    ) -> Result<u64, ApiError> {
        if ends_ms <= starts_ms {
            return Err(ApiError::Invalid("a silence must end after it starts"));
        }
        if matchers == Matchers::default() {
            return Err(ApiError::Invalid("a silence needs at least one matcher"));
        }
        self.next_silence_id += 1;
        let id = self.next_silence_id;
        self.silences.push(Silence {
            id,
            matchers,
            starts_ms,
            ends_ms,
            created_by,
            comment,
        });
        self.changed = true;
        Ok(id)
    }

    /// `DELETE /api/silences/{id}`.
    pub fn unsilence(&mut self, id: u64) -> Result<(), ApiError> {
        let before = self.silences.len();
        self.silences.retain(|s| s.id != id);
        if self.silences.len() == before {
            return Err(ApiError::NoSuchSilence(id));
        }
        self.changed = true;
        Ok(())
    }

    /// Forgets silences that ended.
    pub fn expire_silences(&mut self, now_ms: i64) {
        let before = self.silences.len();
        self.silences.retain(|s| s.ends_ms > now_ms);
        self.changed |= self.silences.len() != before;
    }
}

/// Rules evaluated per reading of a series (the others work on racks, rows and nodes).
fn series_kind(kind: RuleKind) -> bool {
    matches!(
        kind,
        RuleKind::Threshold | RuleKind::Rate | RuleKind::Stale | RuleKind::SensorFault | RuleKind::DewPoint
    )
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

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

fn base_alert(incident: &Incident) -> Alert {
    Alert {
        version: rackwatch_protocols::VERSION,
        key: cut(&incident.key, 128).try_into().unwrap_or_default(),
        rule: incident.rule.clone(),
        severity: incident.severity,
        state: incident.state,
        room: incident.scope.room.clone(),
        row: incident.scope.row.clone(),
        rack: incident.scope.rack.clone(),
        node: incident.scope.node.clone(),
        channel: incident.scope.channel.clone(),
        value: incident.value.filter(|v| v.is_finite()),
        threshold: None,
        since_ms: u64::try_from(incident.since_ms).unwrap_or(0),
        summary: cut(&incident.summary, 192).try_into().unwrap_or_default(),
    }
}

/// The wire message of an incident's current state.
pub fn alert_message(incident: &Incident, rule: &Rule) -> Alert {
    let threshold = rule.condition.trigger();
    Alert {
        threshold: threshold.is_finite().then_some(threshold),
        ..base_alert(incident)
    }
}
