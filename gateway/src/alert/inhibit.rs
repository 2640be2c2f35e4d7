//! Inhibition where the gateway knows more than a receiver could: while a node is offline (its MQTT
//! last will arrived, and a `node_offline` rule watches it), the alerts that merely follow from that
//! — its series going stale, the node going silent, its sensors' faults — are held back, so people
//! get one alert that says what happened: the node is offline. Alerts of that kind already open for
//! the node resolve, saying they were held back; they count again from the node's return.
//!
//! Only a node that some `node_offline` rule watches is held back: otherwise nothing would say it
//! is gone.
//!
//! And a row-level cooling incident: when racks of one row fire the same rule (grouped by rack) at
//! once, what failed is most likely what cools the row. While two or more of its racks fire, a row
//! incident of that rule (key `rule.room.row`) fires, gathering their members and naming the racks;
//! the per-rack incidents are folded into it: not notified on their own (like a silence: one told
//! before the fold still gets its re-sends and its resolve). They still publish their state on MQTT.

use std::collections::BTreeMap;

use rackwatch_protocols::NodeId;

use rackwatch_protocols::AlertState;

use super::index::RuleIndex;
use super::rule::{Rule, alert_key};
use super::state::Incident;
use crate::config::{GroupBy, RuleKind};

/// How many firing racks of a row make a row-level incident.
pub const FOLD_RACKS: usize = 2;

/// Rules whose alerts an offline node makes redundant.
pub fn held_back_while_offline(kind: RuleKind) -> bool {
    matches!(
        kind,
        RuleKind::Stale | RuleKind::SilentNode | RuleKind::SensorFault
    )
}

/// Removes `node`'s members of held-back rules from every incident; returns the incidents changed,
/// to settle.
pub fn hold_back(
    incidents: &mut BTreeMap<String, Incident>,
    rules: &RuleIndex,
    node: &NodeId,
) -> Vec<String> {
    let mut changed = Vec::new();
    for (key, incident) in incidents.iter_mut() {
        let held = rules
            .named(&incident.rule)
            .is_some_and(|r| held_back_while_offline(r.kind));
        if !held {
            continue;
        }
        let before = incident.members.len();
        incident
            .members
            .retain(|_, member| member.scope.node.as_ref() != Some(node));
        if incident.members.len() != before {
            changed.push(key.clone());
        }
    }
    changed
}

/// Whether `incident` is a row incident made of `rule`'s per-rack incidents (its members are copies,
/// kept by [`fold_row`], not stepped on their own).
pub fn is_row_fold(incident: &Incident, rule: &Rule) -> bool {
    // A node without a rack in the inventory makes rack-less incidents of its own: those step.
    rule.group_by == GroupBy::Rack
        && incident.scope.rack.is_none()
        && incident.members.values().any(|m| m.scope.rack.is_some())
}

fn firing_racks_of_row<'a>(
    incidents: &'a BTreeMap<String, Incident>,
    rule: &'a Rule,
    row: &'a super::rule::Scope,
) -> impl Iterator<Item = &'a Incident> {
    incidents.values().filter(move |i| {
        i.rule == rule.name
            && i.scope.rack.is_some()
            && i.scope.grouped(GroupBy::Row) == *row
            && i.state == AlertState::Firing
    })
}

/// Whether `incident` (one rack's) is folded into its row's incident now, or resolved after it was.
pub fn folded(incidents: &BTreeMap<String, Incident>, rules: &RuleIndex, incident: &Incident) -> bool {
    if incident.folded && incident.state != AlertState::Firing {
        return true;
    }
    let Some(rule) = rules.named(&incident.rule) else {
        return false;
    };
    if rule.group_by != GroupBy::Rack || incident.scope.rack.is_none() {
        return false;
    }
    let row = incident.scope.grouped(GroupBy::Row);
    firing_racks_of_row(incidents, rule, &row).count() >= FOLD_RACKS
}

/// After the rack incident `key` changed: brings its row's incident up to date (its members: those of
/// the row's firing racks while at least [`FOLD_RACKS`] fire, none otherwise). Returns the row
/// incident's key, to settle, when there is one.
pub fn fold_row(
    incidents: &mut BTreeMap<String, Incident>,
    rules: &RuleIndex,
    key: &str,
    now_ms: i64,
) -> Option<String> {
    let incident = incidents.get(key)?;
    let rule = rules.named(&incident.rule)?;
    if rule.group_by != GroupBy::Rack || incident.scope.rack.is_none() {
        return None;
    }
    let row = incident.scope.grouped(GroupBy::Row);
    let row_key = alert_key(&rule.name, &row);
    let firing: Vec<String> = firing_racks_of_row(incidents, rule, &row)
        .map(|i| i.key.clone())
        .collect();
    let mut members = BTreeMap::new();
    if firing.len() >= FOLD_RACKS {
        for key in &firing {
            if let Some(rack) = incidents.get_mut(key) {
                rack.folded = true;
                members.extend(rack.members.iter().map(|(id, m)| (id.clone(), m.clone())));
            }
        }
    }
    if members.is_empty() && !incidents.contains_key(&row_key) {
        return None;
    }
    let fold = incidents
        .entry(row_key.clone())
        .or_insert_with(|| Incident::new(row_key.clone(), rule, row, now_ms));
    fold.members = members;
    Some(row_key)
}
