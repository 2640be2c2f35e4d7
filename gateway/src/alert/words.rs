//! The words a person reads, often at 3 a.m. on a phone: an incident's one-line summary (MQTT,
//! webhooks, logs) and its longer description (Alertmanager's `description` annotation).
//!
//! What they must never do: claim a value is past a limit when it is not ("31.6 °C: above 32 °C"),
//! say "for 5 min" of something that has not lasted that long, or repeat the firing value in a
//! resolve. So the sentence depends on the state and on where the value stands now.

use std::collections::BTreeMap;

use rackwatch_protocols::AlertState;

use super::rule::{Level, Rule, Scope};
use super::state::Incident;
use crate::config::RuleKind;

/// A duration for a person: `45 s`, `15 min`, `1 h 30 min` (rule windows shortened for the demo
/// come out in seconds rather than as `0 min`).
pub fn span(ms: i64) -> String {
    let secs = ms.max(0).unsigned_abs().div_ceil(1000);
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

/// `31.6 °C` (or `31.6 %` ...): one decimal, the unit after a space.
fn amount(value: f64, unit: &str) -> String {
    if unit.is_empty() {
        format!("{value:.1}")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// The limit as a phrase: `above 32 °C`.
fn limit(rule: &Rule) -> String {
    let trigger = rule.condition.trigger();
    let words = rule.condition.words();
    if rule.unit.is_empty() {
        format!("{words} {trigger}")
    } else {
        format!("{words} {trigger} {}", rule.unit)
    }
}

/// What is wrong (or, for a resolve, how things are now), without the rule name and scope.
fn condition(rule: &Rule, state: AlertState, value: Option<f64>) -> String {
    let resolved = state == AlertState::Resolved;
    match (rule.kind, resolved) {
        (RuleKind::NodeOffline, false) => return "node offline (MQTT last will)".to_owned(),
        (RuleKind::NodeOffline, true) => return "node back online".to_owned(),
        (RuleKind::SensorFault, false) => return "sensor fault reported".to_owned(),
        (RuleKind::Stale | RuleKind::SilentNode, false) => {
            return format!("no reading for over {}", span(rule.window_ms));
        }
        // A value of `None` on these resolves: the member was held back, not healed.
        (RuleKind::SensorFault | RuleKind::Stale | RuleKind::SilentNode, true) => {
            return match value {
                Some(_) if rule.kind == RuleKind::SensorFault => "readings good again".to_owned(),
                Some(_) => "readings arriving again".to_owned(),
                None => "held back while the node is offline (see its node_offline alert)".to_owned(),
            };
        }
        (RuleKind::Forecast, _) => return forecast(rule, resolved, value),
        _ => {}
    }
    let Some(value) = value.filter(|v| v.is_finite()) else {
        return if resolved {
            format!("no longer {}", limit(rule))
        } else {
            limit(rule)
        };
    };
    let now = amount(value, rule.unit);
    let what = match rule.kind {
        RuleKind::Rate => format!("changed by {now} within {}", span(rule.window_ms)),
        RuleKind::DewPoint => format!("air {now} from its dew point"),
        _ => now,
    };
    if resolved {
        return format!("now {what} (limit: {})", limit(rule));
    }
    match (state, rule.condition.level(value)) {
        (AlertState::Pending, Level::Trigger) if rule.for_ms > 0 => format!(
            "{what}, {} (fires if it lasts {})",
            limit(rule),
            span(rule.for_ms)
        ),
        (AlertState::Firing, Level::Trigger) if rule.for_ms > 0 => {
            format!("{what}, {} for {}", limit(rule), span(rule.for_ms))
        }
        (_, Level::Trigger) => format!("{what}, {}", limit(rule)),
        // Between the limit and its clear point (hysteresis), or already clearing: still open, but
        // the value is not past the limit right now, and the sentence must not say it is.
        (AlertState::Firing, _) => format!("{what} now (went {})", limit(rule)),
        _ => format!("{what} (limit: {})", limit(rule)),
    }
}

/// A `forecast` rule's condition: its value is the minutes left before the trend reaches the
/// limit, `None` once the trend no longer rises.
fn forecast(rule: &Rule, resolved: bool, minutes: Option<f64>) -> String {
    let limit = format!("{} °C", rule.forecast_limit);
    let within = span((rule.condition.trigger() * 60_000.0) as i64);
    match (minutes.filter(|m| m.is_finite()), resolved) {
        (Some(m), _) if m <= 0.0 => format!("at {limit} now (trend of the last {})", span(rule.window_ms)),
        (Some(m), false) => format!(
            "rising, {limit} predicted in ~{} (warns within {within})",
            span((m * 60_000.0).round() as i64)
        ),
        (Some(m), true) => format!(
            "{limit} now predicted in ~{}, no longer within {within}",
            span((m * 60_000.0).round() as i64)
        ),
        (None, _) => format!("no longer rising toward {limit}"),
    }
}

/// A sentence for a person, e.g. `ashrae_a1_inlet_high firing: rack a03, row r01: 33.1 °C, above
/// 32 °C for 1 min`.
pub fn summary(rule: &Rule, state: AlertState, scope: &Scope, members: usize, value: Option<f64>) -> String {
    let word = match state {
        AlertState::Pending => "pending",
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    };
    let count = if members > 1 {
        format!(" ({members} alerts)")
    } else {
        String::new()
    };
    format!(
        "{} {word}: {}{count}: {}",
        rule.name,
        scope.describe(),
        condition(rule, state, value)
    )
}

/// The summary, and for an incident gathering several racks (a row, a room), which racks with their
/// worst value: `... Racks: a01 (31.6 °C), a02 (30.8 °C).`
pub fn description(rule: &Rule, incident: &Incident) -> String {
    let mut racks: BTreeMap<&str, Option<f64>> = BTreeMap::new();
    if incident.scope.rack.is_none() {
        for member in incident.members.values() {
            if let Some(rack) = member.scope.rack.as_deref() {
                let worst = racks.entry(rack).or_default();
                *worst = match (*worst, member.value) {
                    (Some(a), Some(b)) => Some(rule.condition.worse(a, b)),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    if racks.is_empty() {
        return incident.summary.clone();
    }
    let listed: Vec<String> = racks
        .into_iter()
        .map(|(rack, value)| match value.filter(|v| v.is_finite()) {
            Some(value) if !rule.unit.is_empty() => format!("{rack} ({})", amount(value, rule.unit)),
            _ => rack.to_owned(),
        })
        .collect();
    format!("{}. Racks: {}.", incident.summary, listed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleConfig;
    use rackwatch_protocols::{Label, SiteId};

    fn rule(toml: &str) -> Rule {
        let config: RuleConfig = toml::from_str(toml).unwrap();
        Rule::compile(&config, &SiteId::new("fra1").unwrap())
    }

    fn rack(name: &str) -> Scope {
        Scope {
            row: Some(Label::new("r01").unwrap()),
            rack: Some(Label::new(name).unwrap()),
            ..Scope::default()
        }
    }

    const HOT: &str = "name = \"inlet_hot\"\nkind = \"threshold\"\nabove = 32.0\nclear = 31.0\nfor = \"5m\"";

    #[test]
    fn summaries_say_degrees_and_only_what_is_true_now() {
        let hot = rule(HOT);
        let scope = rack("a03");
        let said = |state, value| summary(&hot, state, &scope, 1, Some(value));
        assert_eq!(
            said(AlertState::Pending, 33.14),
            "inlet_hot pending: rack a03, row r01: 33.1 °C, above 32 °C (fires if it lasts 5 min)"
        );
        assert_eq!(
            said(AlertState::Firing, 33.14),
            "inlet_hot firing: rack a03, row r01: 33.1 °C, above 32 °C for 5 min"
        );
        assert_eq!(
            said(AlertState::Firing, 31.6),
            "inlet_hot firing: rack a03, row r01: 31.6 °C now (went above 32 °C)"
        );
        assert_eq!(
            said(AlertState::Resolved, 22.5),
            "inlet_hot resolved: rack a03, row r01: now 22.5 °C (limit: above 32 °C)"
        );
        for state in [AlertState::Pending, AlertState::Firing, AlertState::Resolved] {
            let sentence = said(state, 31.6);
            assert!(!sentence.contains("31.6 °C, above"), "{sentence}");
            assert!(!sentence.contains(" C"), "{sentence}");
        }
    }

    #[test]
    fn a_resolve_without_a_value_says_the_limit_is_no_longer_passed() {
        let hot = rule(HOT);
        assert_eq!(
            summary(&hot, AlertState::Resolved, &rack("a03"), 0, None),
            "inlet_hot resolved: rack a03, row r01: no longer above 32 °C"
        );
    }

    #[test]
    fn for_is_said_only_when_the_rule_has_one() {
        let instant = rule("name = \"hot\"\nkind = \"threshold\"\nabove = 30.0");
        assert_eq!(
            summary(&instant, AlertState::Firing, &rack("a01"), 1, Some(30.5)),
            "hot firing: rack a01, row r01: 30.5 °C, above 30 °C"
        );
    }

    #[test]
    fn node_alerts_held_back_say_so_on_resolve() {
        let silent = rule("name = \"quiet\"\nkind = \"silent_node\"\nafter = \"2m\"");
        let scope = rack("a01");
        assert_eq!(
            summary(&silent, AlertState::Firing, &scope, 1, Some(130.0)),
            "quiet firing: rack a01, row r01: no reading for over 2 min"
        );
        assert!(summary(&silent, AlertState::Resolved, &scope, 1, None).contains("node is offline"));
        assert!(summary(&silent, AlertState::Resolved, &scope, 1, Some(1.0)).contains("arriving again"));
    }

    #[test]
    fn forecasts_say_the_limit_and_the_time_left() {
        let forecast = rule("name = \"inlet_eta\"\nkind = \"forecast\"\nabove = 32.0\nwithin = \"15m\"");
        let scope = rack("a03");
        assert_eq!(
            summary(&forecast, AlertState::Firing, &scope, 1, Some(7.0)),
            "inlet_eta firing: rack a03, row r01: rising, 32 °C predicted in ~7 min (warns within 15 min)"
        );
        assert_eq!(
            summary(&forecast, AlertState::Resolved, &scope, 1, None),
            "inlet_eta resolved: rack a03, row r01: no longer rising toward 32 °C"
        );
        assert!(summary(&forecast, AlertState::Firing, &scope, 1, Some(0.0)).contains("at 32 °C now"));
    }

    #[test]
    fn spans_read_like_a_person_would_say_them() {
        let spans: Vec<String> = [1_500, 45_000, 900_000, 90_000, 3_600_000, 5_400_000]
            .into_iter()
            .map(span)
            .collect();
        assert_eq!(
            spans,
            ["2 s", "45 s", "15 min", "1 min 30 s", "1 h", "1 h 30 min"]
        );
    }
}
