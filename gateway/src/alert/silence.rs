//! Silences: for a while, matching incidents are not sent to webhooks (their state is still published
//! on MQTT, and automated cooling still acts: a silence is about people, not about the racks).

use serde::{Deserialize, Serialize};

use super::state::Incident;

/// Which incidents a silence covers: every given field must equal the incident's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matchers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// One incident by its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: u64,
    pub matchers: Matchers,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

fn same(wanted: Option<&String>, actual: Option<&str>) -> bool {
    wanted.is_none_or(|w| actual == Some(w.as_str()))
}

impl Silence {
    pub fn active(&self, now_ms: i64) -> bool {
        (self.starts_ms..self.ends_ms).contains(&now_ms)
    }

    pub fn covers(&self, incident: &Incident, now_ms: i64) -> bool {
        let m = &self.matchers;
        let s = &incident.scope;
        self.active(now_ms)
            && same(m.rule.as_ref(), Some(incident.rule.as_str()))
            && same(m.key.as_ref(), Some(incident.key.as_str()))
            && same(m.room.as_ref(), s.room.as_deref())
            && same(m.row.as_ref(), s.row.as_deref())
            && same(m.rack.as_ref(), s.rack.as_deref())
            && same(m.node.as_ref(), s.node.as_deref())
    }
}
