//! One `[[alerts.rules]]` entry: what it watches, what it checks, and its validation. The alert
//! engine compiles these into its rules; the [`super::ashrae`] presets build them too.

use std::time::Duration;

use rackwatch_protocols::{Label, NodeId, Quantity, Severity};
use serde::{Deserialize, Deserializer};

use super::duration::{duration, optional_duration};
use super::error::{ConfigError, invalid};
use crate::model::Placement;

/// Which alerts one incident (one notification) gathers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// Every series, rack or node on its own.
    None,
    Rack,
    Row,
    Room,
    Site,
}

/// One `[[alerts.rules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule's name: the first level of its alert keys (an identifier, at most 32 characters).
    pub name: Label,
    pub kind: RuleKind,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// The quantity watched (`threshold`, `rate`, `stale`, `sensor_fault`, `forecast`).
    #[serde(default)]
    pub quantity: Option<Quantity>,
    // Which series, racks, rows or nodes the rule watches. Each selector is one value or a list
    // (any of its values matches); a selector left out matches everything.
    /// Matches the gateway's own site only (a rule for another site never fires here).
    #[serde(default, deserialize_with = "one_or_many")]
    pub site: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub room: Vec<Label>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub row: Vec<Label>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub rack: Vec<Label>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub node: Vec<NodeId>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub placement: Vec<Placement>,
    /// Every inlet (or outlet) placement at once.
    #[serde(default)]
    pub side: Option<SideConfig>,
    /// `threshold`, `delta_t`: fire when the value is above this ... (`forecast`: the limit the
    /// trend is projected to, default the active ASHRAE allowable inlet limit)
    #[serde(default)]
    pub above: Option<f64>,
    /// ... or below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// Resolve only once the value is back past this (hysteresis). Default: the threshold itself.
    #[serde(default)]
    pub clear: Option<f64>,
    /// `rate`: the largest change allowed within `window`, in the quantity's unit.
    #[serde(default)]
    pub max_change: Option<f64>,
    /// `rate`: the window (e.g. `15m`, `1h`); `forecast`: the trend's window (default `10m`).
    #[serde(default, deserialize_with = "optional_duration")]
    pub window: Option<Duration>,
    /// `stale`, `silent_node`: no reading for this long.
    #[serde(default, deserialize_with = "optional_duration")]
    pub after: Option<Duration>,
    /// `forecast`: warn when the trend is predicted to reach `above` within this (e.g. `15m`).
    #[serde(default, deserialize_with = "optional_duration")]
    pub within: Option<Duration>,
    /// `dew_point`: fire when the air is within this many °C of its dew point.
    #[serde(default)]
    pub margin: Option<f64>,
    /// `power`: the budget in kW (the breaker's rating when `above_percent` is set).
    #[serde(default)]
    pub budget_kw: Option<f64>,
    /// `power`: fire above this percentage of `budget_kw` (default 100).
    #[serde(default)]
    pub above_percent: Option<f64>,
    /// `power`: resolve below this percentage of `budget_kw` (default: `above_percent`).
    #[serde(default)]
    pub clear_percent: Option<f64>,
    /// `power`: `rack` or `row` totals.
    #[serde(default)]
    pub scope: Option<PowerScope>,
    /// The condition must hold this long before the alert fires.
    #[serde(default, rename = "for", deserialize_with = "duration")]
    pub for_: Duration,
    /// The clear condition must hold this long before the alert resolves.
    #[serde(default, deserialize_with = "duration")]
    pub clear_for: Duration,
    #[serde(default = "default_group_by")]
    pub group_by: GroupBy,
}

/// What a rule checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A reading above `above` or below `below`, resolving at `clear`.
    Threshold,
    /// A reading that changed by more than `max_change` within `window`.
    Rate,
    /// A series with no reading for `after`.
    Stale,
    /// A node with no telemetry at all for `after`.
    SilentNode,
    /// A node whose MQTT last will (`offline` status) was published.
    NodeOffline,
    /// Air within `margin` °C of its dew point (condensation risk).
    DewPoint,
    /// A rack's outlet mean minus inlet mean above `above` (or below `below`).
    DeltaT,
    /// A rack's or row's power above a budget.
    Power,
    /// A node reports a sensor fault (status other than `ok`).
    SensorFault,
    /// A reading whose rising trend (Theil–Sen over `window`) is predicted to reach `above` within
    /// `within`: the time to the limit, before the threshold rule fires.
    Forecast,
}

impl RuleKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleKind::Threshold => "threshold",
            RuleKind::Rate => "rate",
            RuleKind::Stale => "stale",
            RuleKind::SilentNode => "silent_node",
            RuleKind::NodeOffline => "node_offline",
            RuleKind::DewPoint => "dew_point",
            RuleKind::DeltaT => "delta_t",
            RuleKind::Power => "power",
            RuleKind::SensorFault => "sensor_fault",
            RuleKind::Forecast => "forecast",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerScope {
    Rack,
    Row,
}

/// Which air side of the rack a probe is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SideConfig {
    Inlet,
    Outlet,
}

fn default_group_by() -> GroupBy {
    GroupBy::Rack
}
fn default_severity() -> Severity {
    Severity::Warning
}

fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

impl RuleConfig {
    /// A rule with every optional key unset, for presets and tests.
    pub fn new(name: &str, kind: RuleKind) -> Option<Self> {
        Some(RuleConfig {
            name: Label::new(name).ok()?,
            kind,
            severity: Severity::Warning,
            quantity: None,
            site: Vec::new(),
            room: Vec::new(),
            row: Vec::new(),
            rack: Vec::new(),
            node: Vec::new(),
            placement: Vec::new(),
            side: None,
            above: None,
            below: None,
            clear: None,
            max_change: None,
            window: None,
            after: None,
            within: None,
            margin: None,
            budget_kw: None,
            above_percent: None,
            clear_percent: None,
            scope: None,
            for_: Duration::ZERO,
            clear_for: Duration::ZERO,
            group_by: GroupBy::Rack,
        })
    }

    pub(super) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let finite = |name: &str, v: Option<f64>| match v {
            Some(v) if !v.is_finite() => Err(invalid(format!("{key}.{name}"), "must be a finite number")),
            _ => Ok(()),
        };
        finite("above", self.above)?;
        finite("below", self.below)?;
        finite("clear", self.clear)?;
        finite("max_change", self.max_change)?;
        finite("margin", self.margin)?;
        finite("budget_kw", self.budget_kw)?;
        let needs = |name: &str, present: bool| {
            if present {
                Ok(())
            } else {
                Err(invalid(
                    format!("{key}.{name}"),
                    format!("a `{}` rule needs `{name}`", self.kind.as_str()),
                ))
            }
        };
        match self.kind {
            RuleKind::Threshold | RuleKind::DeltaT => {
                if self.kind == RuleKind::Threshold {
                    needs("quantity", self.quantity.is_some())?;
                }
                match (self.above, self.below) {
                    (Some(above), None) => {
                        if self.clear.is_some_and(|c| c > above) {
                            return Err(invalid(format!("{key}.clear"), "must not be above `above`"));
                        }
                    }
                    (None, Some(below)) => {
                        if self.clear.is_some_and(|c| c < below) {
                            return Err(invalid(format!("{key}.clear"), "must not be below `below`"));
                        }
                    }
                    _ => {
                        return Err(invalid(
                            format!("{key}.above"),
                            "give exactly one of `above` and `below` (one rule per direction)",
                        ));
                    }
                }
            }
            RuleKind::Rate => {
                needs("quantity", self.quantity.is_some())?;
                needs("max_change", self.max_change.is_some_and(|c| c > 0.0))?;
                needs("window", self.window.is_some_and(|w| !w.is_zero()))?;
            }
            RuleKind::Stale | RuleKind::SilentNode => {
                needs("after", self.after.is_some_and(|a| !a.is_zero()))?;
            }
            RuleKind::DewPoint => needs("margin", self.margin.is_some_and(|m| m >= 0.0))?,
            RuleKind::Power => {
                needs("budget_kw", self.budget_kw.is_some_and(|b| b > 0.0))?;
                needs("scope", self.scope.is_some())?;
                let above = self.above_percent.unwrap_or(100.0);
                if !(above.is_finite() && above > 0.0) {
                    return Err(invalid(format!("{key}.above_percent"), "must be more than 0"));
                }
                if self.clear_percent.is_some_and(|c| !(c.is_finite() && c <= above)) {
                    return Err(invalid(
                        format!("{key}.clear_percent"),
                        "must be finite and not above `above_percent`",
                    ));
                }
            }
            RuleKind::Forecast => {
                needs("within", self.within.is_some_and(|w| !w.is_zero()))?;
                if self.window.is_some_and(|w| w.is_zero()) {
                    return Err(invalid(format!("{key}.window"), "must be more than 0s"));
                }
                if self.below.is_some() {
                    return Err(invalid(
                        format!("{key}.below"),
                        "a `forecast` rule projects a rising trend to `above`",
                    ));
                }
            }
            RuleKind::NodeOffline | RuleKind::SensorFault => {}
        }
        Ok(())
    }
}
