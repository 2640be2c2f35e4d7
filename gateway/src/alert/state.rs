//! The life of an alert: each member (one series, rack, row or node) goes pending → firing →
//! resolved on its own; an incident gathers the members of one rule and scope (a row, say) and is
//! what gets notified, once per transition. Everything here is plain data with the time passed in,
//! so tests drive it with a made-up clock, and it is what the state file holds.

use std::collections::BTreeMap;

use rackwatch_protocols::{AlertState, Label, Severity};
use serde::{Deserialize, Serialize};

use super::rule::{Level, Rule, Scope};

/// Where one member is. A member that is not pending or firing is not stored at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// The trigger condition was met at `since_ms`; fires once that is `for` ago.
    Pending {
        since_ms: i64,
    },
    Firing {
        since_ms: i64,
    },
    /// Firing, and the clear condition has held since `since_ms`; resolves once that is `clear_for` ago.
    Clearing {
        since_ms: i64,
        firing_since_ms: i64,
    },
}

impl Phase {
    pub fn is_firing(self) -> bool {
        matches!(self, Phase::Firing { .. } | Phase::Clearing { .. })
    }
}

/// One member of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub scope: Scope,
    pub phase: Phase,
    /// The latest value of the rule's measure for this member.
    pub value: Option<f64>,
    /// The latest level, which time alone can carry on (a `for` ending between readings).
    pub level: Level,
}

/// What one step did to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Unchanged,
    /// Changed phase without the incident needing to know (firing ↔ clearing).
    Quiet,
    Fired,
    /// Gone: resolved after firing, or its pending condition cleared before it fired.
    Gone,
}

impl Member {
    /// A member whose trigger condition was just met.
    pub fn new(scope: Scope, value: Option<f64>, now_ms: i64) -> Member {
        Member {
            scope,
            phase: Phase::Pending { since_ms: now_ms },
            value,
            level: Level::Trigger,
        }
    }

    /// Takes a new level (`None`: only time has passed) and moves the phase on.
    pub fn step(&mut self, rule: &Rule, level: Option<(Level, Option<f64>)>, now_ms: i64) -> Step {
        let before = self.phase;
        if let Some((level, value)) = level {
            self.level = level;
            if value.is_some() {
                self.value = value;
            }
        }
        self.phase = match (self.phase, self.level) {
            // Hysteresis: between the thresholds a pending alert keeps counting towards `for`, so a
            // value wobbling around the limit still fires.
            (Phase::Pending { .. }, Level::Clear) => return Step::Gone,
            (Phase::Pending { since_ms }, _) if now_ms.saturating_sub(since_ms) >= rule.for_ms => {
                Phase::Firing { since_ms: now_ms }
            }
            (Phase::Firing { since_ms }, Level::Clear) => Phase::Clearing {
                since_ms: now_ms,
                firing_since_ms: since_ms,
            },
            (Phase::Clearing { firing_since_ms, .. }, Level::Trigger | Level::Hold) => Phase::Firing {
                since_ms: firing_since_ms,
            },
            (phase, _) => phase,
        };
        if let Phase::Clearing { since_ms, .. } = self.phase
            && now_ms.saturating_sub(since_ms) >= rule.clear_for_ms
        {
            return Step::Gone;
        }
        match (before.is_firing(), self.phase) {
            (false, Phase::Firing { .. }) => Step::Fired,
            (_, phase) if phase == before => Step::Unchanged,
            _ => Step::Quiet,
        }
    }
}

/// What one receiver was last told about an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub state: AlertState,
    /// Which firing episode of the incident (its count of firings).
    pub episode: u64,
    pub at_ms: i64,
}

/// Who acknowledged a firing incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub by: String,
    #[serde(default)]
    pub comment: String,
    pub at_ms: i64,
}

/// What [`Incident::settle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Unchanged,
    /// A new state to publish and notify.
    Transition,
    /// A pending incident whose condition cleared before it fired: withdrawn, not resolved.
    Dropped,
}

/// One rule's alerts for one scope: the unit of notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub key: String,
    pub rule: Label,
    pub severity: Severity,
    pub scope: Scope,
    /// As last published: pending, firing or resolved.
    pub state: AlertState,
    pub since_ms: i64,
    /// Incremented each time the incident starts firing.
    pub episode: u64,
    pub firing_since_ms: Option<i64>,
    /// Member id → member.
    pub members: BTreeMap<String, Member>,
    /// The value reported with the last transition.
    pub value: Option<f64>,
    pub summary: String,
    #[serde(default)]
    pub acknowledged: Option<Acknowledgement>,
    /// Receiver name → what it was last told.
    #[serde(default)]
    pub delivered: BTreeMap<String, Delivered>,
    /// This episode was folded into its row's incident (`inhibit`): a resolve is owed to nobody who
    /// was not told of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub folded: bool,
}

impl Incident {
    pub fn new(key: String, rule: &Rule, scope: Scope, now_ms: i64) -> Incident {
        Incident {
            key,
            rule: rule.name.clone(),
            severity: rule.severity,
            scope,
            state: AlertState::Resolved,
            since_ms: now_ms,
            episode: 0,
            firing_since_ms: None,
            members: BTreeMap::new(),
            value: None,
            summary: String::new(),
            acknowledged: None,
            delivered: BTreeMap::new(),
            folded: false,
        }
    }

    /// The state the members add up to: firing if any fires, pending if any is pending.
    pub fn derived_state(&self) -> AlertState {
        let phases = || self.members.values().map(|m| m.phase);
        if phases().any(Phase::is_firing) {
            AlertState::Firing
        } else if phases().next().is_some() {
            AlertState::Pending
        } else {
            AlertState::Resolved
        }
    }

    /// The worst value among the members that are pending or firing.
    pub fn worst_value(&self, rule: &Rule) -> Option<f64> {
        self.members
            .values()
            .filter_map(|m| m.value)
            .reduce(|a, b| rule.condition.worse(a, b))
    }

    /// Moves to the state the members add up to, and says whether that is a transition to publish
    /// (the caller then writes its `summary`: `words.rs`).
    pub fn settle(&mut self, rule: &Rule, last_value: Option<f64>, now_ms: i64) -> Settled {
        let state = self.derived_state();
        if state == self.state {
            return Settled::Unchanged;
        }
        if (self.state, state) == (AlertState::Pending, AlertState::Resolved) {
            // Pending that never fired: nothing happened that anyone should read as "resolved".
            self.state = state;
            self.since_ms = now_ms;
            return Settled::Dropped;
        }
        if state == AlertState::Firing {
            self.episode += 1;
            self.firing_since_ms = Some(now_ms);
            self.acknowledged = None;
            self.folded = false;
        }
        self.state = state;
        self.since_ms = now_ms;
        self.value = self.worst_value(rule).or(last_value);
        Settled::Transition
    }
}
