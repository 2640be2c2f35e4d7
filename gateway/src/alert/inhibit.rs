//! Inhibition where the gateway knows more than a receiver could: while a node is offline (its MQTT
//! last will arrived, and a `node_offline` rule watches it), the alerts that merely follow from that
//! — its series going stale, the node going silent, its sensors' faults — are held back, so people
//! get one alert that says what happened: the node is offline. Alerts of that kind already open for
//! the node resolve, saying they were held back; they count again from the node's return.
//!
//! Only a node that some `node_offline` rule watches is held back: otherwise nothing would say it
//! is gone.

use std::collections::BTreeMap;

use rackwatch_protocols::NodeId;

use super::config::RuleKind;
use super::rule::Rule;
use super::state::Incident;

/// Rules whose alerts an offline node makes redundant.
pub fn held_back_while_offline(kind: RuleKind) -> bool {
    matches!(
        kind,
        RuleKind::Stale | RuleKind::SilentNode | RuleKind::SensorFault
    )
}

/// Removes `node`'s members of held-back rules from every incident; returns the incidents changed,
/// to settle.
pub fn hold_back(incidents: &mut BTreeMap<String, Incident>, rules: &[Rule], node: &NodeId) -> Vec<String> {
    let mut changed = Vec::new();
    for (key, incident) in incidents.iter_mut() {
        let held = rules
            .iter()
            .any(|r| r.name == incident.rule && held_back_while_offline(r.kind));
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
