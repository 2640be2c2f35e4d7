//! The incident lifecycle: each [`Evaluation`] steps its member (pending → firing → resolved, with
//! `for` and `clear_for`), an incident settles into the state its members add up to, and a change
//! becomes an MQTT publish or withdrawal. Rack incidents of one row fold into the row's (`inhibit`).

use std::collections::BTreeMap;

use rackwatch_protocols::{Alert, NodeId};

use super::effect::Effect;
use super::evaluate::Watch;
use super::index::RuleIndex;
use super::inhibit;
use super::rule::{Level, Rule};
use super::state::{Incident, Member, Settled, Step};
use super::words;

/// Every open incident (and resolved ones still owed to a receiver), by key.
#[derive(Debug, Clone, Default)]
pub struct Incidents {
    by_key: BTreeMap<String, Incident>,
}

impl Incidents {
    /// The incidents of a previous run whose rule still exists.
    pub fn restore(saved: Vec<Incident>, rules: &RuleIndex) -> Incidents {
        Incidents {
            by_key: saved
                .into_iter()
                .filter(|i| rules.named(&i.rule).is_some())
                .map(|i| (i.key.clone(), i))
                .collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Incident> {
        self.by_key.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Incident> {
        self.by_key.values_mut()
    }

    pub fn keys(&self) -> Vec<String> {
        self.by_key.keys().cloned().collect()
    }

    pub fn get(&self, key: &str) -> Option<&Incident> {
        self.by_key.get(key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Incident> {
        self.by_key.get_mut(key)
    }

    pub fn remove(&mut self, key: &str) {
        self.by_key.remove(key);
    }

    /// One rule's new level for one member; true when its incident must settle.
    pub fn apply(
        &mut self,
        rule: &Rule,
        watch: &Watch,
        level: Level,
        value: Option<f64>,
        now_ms: i64,
    ) -> bool {
        // The common case, a reading that is fine for a rule with nothing pending: no allocation.
        let incident = match self.by_key.get_mut(&watch.key) {
            Some(incident) => incident,
            None if level != Level::Trigger => return false,
            None => self.by_key.entry(watch.key.clone()).or_insert_with(|| {
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
            None if level != Level::Trigger => return false,
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
        step != Step::Unchanged
    }

    /// Lets time pass for one incident's members (`for` and `clear_for` end); the last value seen
    /// when any moved, so the incident settles.
    pub fn step(&mut self, rules: &RuleIndex, key: &str, now_ms: i64) -> Option<Option<f64>> {
        let incident = self.by_key.get_mut(key)?;
        let rule = rules.named(&incident.rule)?;
        if inhibit::is_row_fold(incident, rule) {
            return None;
        }
        let mut moved = false;
        let mut last_value = None;
        incident.members.retain(|_, member| {
            let step = member.step(rule, None, now_ms);
            moved |= step != Step::Unchanged;
            last_value = member.value.or(last_value);
            step != Step::Gone
        });
        moved.then_some(last_value)
    }

    /// Moves the incident `key` to the state its members add up to and publishes a transition;
    /// then its row's incident, when racks fold into it. Returns the keys that changed state, the
    /// row's first; `None` when there is no such incident (or rule) to settle.
    pub fn settle(
        &mut self,
        rules: &RuleIndex,
        key: &str,
        last_value: Option<f64>,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> Option<Vec<String>> {
        let incident = self.by_key.get(key)?;
        rules.named(&incident.rule)?;
        let mut changed = Vec::new();
        let mut next = Some((key.to_owned(), last_value));
        while let Some((key, last_value)) = next.take() {
            let Some(incident) = self.by_key.get_mut(&key) else {
                break;
            };
            let Some(rule) = rules.named(&incident.rule) else {
                break;
            };
            let settled = incident.settle(rule, last_value, now_ms);
            if settled == Settled::Transition {
                incident.summary = words::summary(
                    rule,
                    incident.state,
                    &incident.scope,
                    incident.members.len(),
                    incident.value,
                );
            }
            match settled {
                Settled::Transition => effects.push(Effect::Publish {
                    alert: Box::new(alert_message(incident, rule)),
                    event: true,
                }),
                Settled::Dropped => effects.push(Effect::Withdraw { key: key.clone() }),
                Settled::Unchanged => {}
            }
            next = inhibit::fold_row(&mut self.by_key, rules, &key, now_ms).map(|row| (row, None));
            if settled != Settled::Unchanged {
                changed.insert(0, key);
            }
        }
        Some(changed)
    }

    /// Removes an offline node's members of the rules it makes redundant; the incidents changed.
    pub fn hold_back(&mut self, rules: &RuleIndex, node: &NodeId) -> Vec<String> {
        inhibit::hold_back(&mut self.by_key, rules, node)
    }

    /// Whether a rack's incident is folded into its row's now.
    pub fn folded(&self, rules: &RuleIndex, incident: &Incident) -> bool {
        inhibit::folded(&self.by_key, rules, incident)
    }

    /// The wire message of an incident's current state.
    pub fn alert(rules: &RuleIndex, incident: &Incident) -> Alert {
        match rules.named(&incident.rule) {
            Some(rule) => alert_message(incident, rule),
            None => base_alert(incident),
        }
    }
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

/// The wire message of an incident's current state under its rule.
pub fn alert_message(incident: &Incident, rule: &Rule) -> Alert {
    let threshold = rule.condition.trigger();
    Alert {
        threshold: threshold.is_finite().then_some(threshold),
        ..base_alert(incident)
    }
}
