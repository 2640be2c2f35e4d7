//! Rules compiled from the configuration: what each watches (a [`Selector`], checked once per series
//! and remembered) and when its condition holds (a [`Condition`] giving a [`Level`]).

use rackwatch_protocols::{ChannelName, Label, NodeId, Quantity, Severity, SiteId, Unit};
use serde::{Deserialize, Serialize};

use crate::config::{GroupBy, PowerScope, RuleConfig, RuleKind, SideConfig};
use crate::model::{AirSide, Placement, Position, Series};

/// Where one value of a rule's condition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Past the trigger threshold: the alert goes pending, then fires.
    Trigger,
    /// Between the trigger and the clear threshold (hysteresis): nothing changes.
    Hold,
    /// Back past the clear threshold: the alert resolves.
    Clear,
}

/// A threshold with its clear point. For `Above`, `clear <= trigger`; for `Below`, `clear >= trigger`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    Above { trigger: f64, clear: f64 },
    Below { trigger: f64, clear: f64 },
}

impl Condition {
    pub fn level(self, value: f64) -> Level {
        match self {
            Condition::Above { trigger, clear } => {
                if value > trigger {
                    Level::Trigger
                } else if value <= clear {
                    Level::Clear
                } else {
                    Level::Hold
                }
            }
            Condition::Below { trigger, clear } => {
                if value < trigger {
                    Level::Trigger
                } else if value >= clear {
                    Level::Clear
                } else {
                    Level::Hold
                }
            }
        }
    }

    pub fn trigger(self) -> f64 {
        match self {
            Condition::Above { trigger, .. } | Condition::Below { trigger, .. } => trigger,
        }
    }

    /// Of two values, the one further past the threshold.
    pub fn worse(self, a: f64, b: f64) -> f64 {
        match self {
            Condition::Above { .. } => a.max(b),
            Condition::Below { .. } => a.min(b),
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Condition::Above { .. } => "above",
            Condition::Below { .. } => "below",
        }
    }
}

/// What a rule watches, checked against a series' tags (or a rack's, row's or node's position).
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// False when the rule names only other sites: it then matches nothing here.
    pub this_site: bool,
    pub rooms: Vec<Label>,
    pub rows: Vec<Label>,
    pub racks: Vec<Label>,
    pub nodes: Vec<NodeId>,
    pub placements: Vec<Placement>,
    pub side: Option<AirSide>,
    pub quantity: Option<Quantity>,
}

fn any_of<T: PartialEq>(wanted: &[T], value: Option<&T>) -> bool {
    wanted.is_empty() || value.is_some_and(|v| wanted.contains(v))
}

impl Selector {
    pub fn matches_position(&self, position: &Position) -> bool {
        self.this_site
            && any_of(&self.rooms, position.room.as_ref())
            && any_of(&self.rows, position.row.as_ref())
            && any_of(&self.racks, position.rack.as_ref())
    }

    pub fn matches_node(&self, node: &NodeId, position: &Position) -> bool {
        self.matches_position(position) && any_of(&self.nodes, Some(node))
    }

    pub fn matches_series(&self, series: &Series) -> bool {
        self.matches_node(&series.node, &series.position)
            && self.quantity.is_none_or(|q| q == series.quantity)
            && any_of(&self.placements, series.placement.as_ref())
            && self
                .side
                .is_none_or(|side| series.placement.and_then(Placement::air_side) == Some(side))
    }
}

/// What a rule's alerts are about, as far as it is known: the member of an incident, and (cut down to
/// the rule's `group_by`) the incident itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Label>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<Label>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<Label>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelName>,
}

impl Scope {
    pub fn of_position(position: &Position) -> Scope {
        Scope {
            room: position.room.clone(),
            row: position.row.clone(),
            rack: position.rack.clone(),
            node: None,
            channel: None,
        }
    }

    pub fn of_series(series: &Series) -> Scope {
        Scope {
            node: Some(series.node.clone()),
            channel: Some(series.channel.clone()),
            ..Scope::of_position(&series.position)
        }
    }

    /// The scope of the incident this member belongs to under `group_by`.
    pub fn grouped(&self, group_by: GroupBy) -> Scope {
        let mut scope = self.clone();
        if group_by != GroupBy::None {
            scope.node = None;
            scope.channel = None;
        }
        if matches!(group_by, GroupBy::Row | GroupBy::Room | GroupBy::Site) {
            scope.rack = None;
        }
        if matches!(group_by, GroupBy::Room | GroupBy::Site) {
            scope.row = None;
        }
        if group_by == GroupBy::Site {
            scope.room = None;
        }
        scope
    }

    /// `room/row/rack/node/channel` with the known parts: the member's id inside its incident.
    pub fn id(&self) -> String {
        self.parts().collect::<Vec<_>>().join("/")
    }

    fn parts(&self) -> impl Iterator<Item = &str> {
        [
            self.room.as_deref(),
            self.row.as_deref(),
            self.rack.as_deref(),
            self.node.as_deref(),
            self.channel.as_deref(),
        ]
        .into_iter()
        .flatten()
    }

    /// Words for a person: `rack a03 (row r01, hall-a)`, `node n7 channel inlet_top`, `the site`.
    pub fn describe(&self) -> String {
        let mut words = Vec::new();
        if let Some(node) = &self.node {
            words.push(format!("node {node}"));
            if let Some(channel) = &self.channel {
                words.push(format!("{channel}"));
            }
        }
        if let Some(rack) = &self.rack {
            words.push(format!("rack {rack}"));
        }
        if let Some(row) = &self.row {
            words.push(format!("row {row}"));
        }
        if let Some(room) = &self.room {
            words.push(format!("room {room}"));
        }
        if words.is_empty() {
            "the site".to_owned()
        } else {
            words.join(", ")
        }
    }
}

/// The longest alert key (protocols' `Alert::key`).
pub const MAX_KEY_LEN: usize = 128;

/// `rule.room.row.rack.node.channel` with the scope's known parts: stable, a valid MQTT topic level.
/// A key that would be longer than [`MAX_KEY_LEN`] is cut and ends in a hash of the whole.
pub fn alert_key(rule: &Label, scope: &Scope) -> String {
    let mut key = rule.to_string();
    for part in scope.parts() {
        key.push('.');
        key.push_str(part);
    }
    if key.len() > MAX_KEY_LEN {
        let hash = crc32fast::hash(key.as_bytes());
        key.truncate(MAX_KEY_LEN - 9);
        key.push_str(&format!("-{hash:08x}"));
    }
    key
}

/// A rule ready to evaluate.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Label,
    pub kind: RuleKind,
    pub severity: Severity,
    pub selector: Selector,
    /// The condition on the rule's measured value (the reading, its change, its age in seconds ...).
    pub condition: Condition,
    pub for_ms: i64,
    pub clear_for_ms: i64,
    pub group_by: GroupBy,
    /// `rate`, `forecast`: the window; `stale`, `silent_node`: the silence allowed.
    pub window_ms: i64,
    /// `forecast`: the limit the trend is projected to (its condition is on the minutes left).
    pub forecast_limit: f64,
    pub power_scope: Option<PowerScope>,
    /// The unit of the measured value, for summaries.
    pub unit: &'static str,
}

/// A unit as people write it: `°C`, not the wire's `C`.
fn unit(unit: Unit) -> &'static str {
    match unit {
        Unit::Celsius => "°C",
        Unit::Fahrenheit => "°F",
        Unit::PercentRh => "% RH",
        other => other.symbol(),
    }
}

/// A `forecast` rule's trend window when the rule gives none: as the dashboard's time to the limit.
const FORECAST_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Rule {
    /// Compiles a validated rule for the gateway of `site`.
    pub fn compile(config: &RuleConfig, site: &SiteId) -> Rule {
        let threshold = |trigger: f64| match (config.above, config.below) {
            (_, Some(below)) => Condition::Below {
                trigger: below,
                clear: config.clear.unwrap_or(below),
            },
            (above, None) => {
                let above = above.unwrap_or(trigger);
                Condition::Above {
                    trigger: above,
                    clear: config.clear.unwrap_or(above),
                }
            }
        };
        let window_ms = match config.kind {
            RuleKind::Forecast => millis(config.window.unwrap_or(FORECAST_WINDOW)),
            _ => millis(config.window.or(config.after).unwrap_or_default()),
        };
        let (quantity, condition, unit) = match config.kind {
            RuleKind::Threshold => {
                let quantity = config.quantity.unwrap_or(Quantity::Temperature);
                (Some(quantity), threshold(0.0), unit(quantity.canonical_unit()))
            }
            RuleKind::Rate => {
                let max = config.max_change.unwrap_or(f64::INFINITY);
                let quantity = config.quantity.unwrap_or(Quantity::Temperature);
                let condition = Condition::Above {
                    trigger: max,
                    // The change must come well back under the limit: a steady climb right at the
                    // limit would otherwise resolve and fire again with every reading.
                    clear: config.clear.unwrap_or(max * 0.8),
                };
                (Some(quantity), condition, unit(quantity.canonical_unit()))
            }
            RuleKind::Stale | RuleKind::SilentNode => {
                let seconds = window_ms as f64 / 1000.0;
                let condition = Condition::Above {
                    trigger: seconds,
                    clear: seconds,
                };
                (config.quantity, condition, "s")
            }
            RuleKind::NodeOffline | RuleKind::SensorFault => (
                config.quantity,
                Condition::Above {
                    trigger: 0.5,
                    clear: 0.5,
                },
                "",
            ),
            RuleKind::DewPoint => {
                let margin = config.margin.unwrap_or(2.0);
                let condition = Condition::Below {
                    trigger: margin,
                    clear: config.clear.unwrap_or(margin),
                };
                (Some(Quantity::DewPoint), condition, "°C")
            }
            RuleKind::DeltaT => (None, threshold(0.0), "°C"),
            RuleKind::Power => {
                let budget = config.budget_kw.unwrap_or(f64::INFINITY);
                let above = config.above_percent.unwrap_or(100.0);
                let clear = config.clear_percent.unwrap_or(above);
                let condition = Condition::Above {
                    trigger: budget * above / 100.0,
                    clear: budget * clear / 100.0,
                };
                (Some(Quantity::Power), condition, "kW")
            }
            RuleKind::Forecast => {
                // The measured value is the minutes left before the trend reaches the limit.
                let within = config.within.unwrap_or_default().as_secs_f64() / 60.0;
                let condition = Condition::Below {
                    trigger: within,
                    clear: within,
                };
                let quantity = config.quantity.unwrap_or(Quantity::Temperature);
                (Some(quantity), condition, "min")
            }
        };
        // A forecast rule left without a side watches inlets: outlets run well above any inlet
        // limit by design.
        let side = match config.kind {
            RuleKind::Forecast if config.placement.is_empty() => config.side.or(Some(SideConfig::Inlet)),
            _ => config.side,
        };
        let side = side.map(|s| match s {
            SideConfig::Inlet => AirSide::Inlet,
            SideConfig::Outlet => AirSide::Outlet,
        });
        Rule {
            name: config.name.clone(),
            kind: config.kind,
            severity: config.severity,
            selector: Selector {
                this_site: config.site.is_empty() || config.site.iter().any(|s| s == site.as_str()),
                rooms: config.room.clone(),
                rows: config.row.clone(),
                racks: config.rack.clone(),
                nodes: config.node.clone(),
                placements: config.placement.clone(),
                side,
                quantity,
            },
            condition,
            for_ms: millis(config.for_),
            clear_for_ms: millis(config.clear_for),
            group_by: config.group_by,
            window_ms,
            forecast_limit: config.above.unwrap_or(f64::INFINITY),
            power_scope: config.scope,
            unit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(s: &str) -> Label {
        Label::new(s).unwrap()
    }

    #[test]
    fn hysteresis_holds_between_trigger_and_clear() {
        let above = Condition::Above {
            trigger: 27.0,
            clear: 26.5,
        };
        assert_eq!(above.level(27.1), Level::Trigger);
        assert_eq!(above.level(27.0), Level::Hold);
        assert_eq!(above.level(26.6), Level::Hold);
        assert_eq!(above.level(26.5), Level::Clear);
        let below = Condition::Below {
            trigger: 18.0,
            clear: 18.5,
        };
        assert_eq!(below.level(17.9), Level::Trigger);
        assert_eq!(below.level(18.2), Level::Hold);
        assert_eq!(below.level(18.5), Level::Clear);
    }

    #[test]
    fn grouping_cuts_the_scope_down() {
        let member = Scope {
            room: Some(label("hall-a")),
            row: Some(label("r01")),
            rack: Some(label("a03")),
            node: Some(NodeId::new("n1").unwrap()),
            channel: Some(ChannelName::new("inlet_top").unwrap()),
        };
        let rule = label("hot");
        assert_eq!(
            alert_key(&rule, &member.grouped(GroupBy::None)),
            "hot.hall-a.r01.a03.n1.inlet_top"
        );
        assert_eq!(
            alert_key(&rule, &member.grouped(GroupBy::Rack)),
            "hot.hall-a.r01.a03"
        );
        assert_eq!(alert_key(&rule, &member.grouped(GroupBy::Row)), "hot.hall-a.r01");
        assert_eq!(alert_key(&rule, &member.grouped(GroupBy::Room)), "hot.hall-a");
        assert_eq!(alert_key(&rule, &member.grouped(GroupBy::Site)), "hot");
        assert_eq!(member.id(), "hall-a/r01/a03/n1/inlet_top");
    }

    #[test]
    fn long_keys_are_cut_and_stay_distinct() {
        let long = |rack: &str| Scope {
            room: Some(label(&"r".repeat(32))),
            row: Some(label(&"w".repeat(32))),
            rack: Some(label(rack)),
            ..Scope::default()
        };
        let rule = label(&"x".repeat(32));
        let a = alert_key(&rule, &long(&"a".repeat(32)));
        let b = alert_key(&rule, &long(&format!("{}b", "a".repeat(31))));
        assert_eq!(a.len(), MAX_KEY_LEN);
        assert_ne!(a, b);
    }
}
