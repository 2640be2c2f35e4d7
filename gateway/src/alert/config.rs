//! The `[alerts]` section of the gateway's configuration: rules, presets, receivers, cooling.
//!
//! ```toml
//! [alerts]
//! presets = ["ashrae-a1"]            # gateway/ALERTS.md lists every rule a preset adds
//! repeat_interval = "4h"
//! escalate_after = "30m"
//!
//! [[alerts.rules]]
//! name = "inlet_hot"
//! kind = "threshold"
//! quantity = "temperature"
//! side = "inlet"
//! above = 30.0
//! clear = 29.0
//! for = "2m"
//! severity = "critical"
//! group_by = "row"
//!
//! [[alerts.webhooks]]
//! name = "pager"
//! url = "http://alertmanager:9093/api/v2/alerts"
//! format = "alertmanager"
//! level = 1
//!
//! [alerts.cooling]
//! rules = ["inlet_hot"]
//! boost_duty_percent = 100.0
//! normal_duty_percent = 40.0
//! ```
//!
//! Validation errors name the key, e.g. `alerts.rules[2].clear: must be below `above``.

use std::time::Duration;

use rackwatch_protocols::{Label, NodeId, Quantity, Severity};
use serde::{Deserialize, Deserializer};

use crate::config::ConfigError;
use crate::model::Placement;

/// `[alerts]`: present means the alert engine runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Built-in rule sets (`ashrae-recommended`, `ashrae-a1` .. `ashrae-a4`); see gateway/ALERTS.md.
    #[serde(default)]
    pub presets: Vec<String>,
    /// How preset rules group their alerts into incidents (default `row`: one failed cooling unit
    /// serving a row is one incident, not one per rack).
    #[serde(default = "default_preset_group_by")]
    pub preset_group_by: GroupBy,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    #[serde(default)]
    pub cooling: Option<CoolingConfig>,
    /// A firing incident nobody acknowledged is sent again this often (`0s`: never).
    #[serde(default = "default_repeat_interval", deserialize_with = "duration")]
    pub repeat_interval: Duration,
    /// Level-2 webhooks get a firing incident nobody acknowledged after this long.
    #[serde(default = "default_escalate_after", deserialize_with = "duration")]
    pub escalate_after: Duration,
    /// How often time-based conditions (`for`, stale, silent) are evaluated.
    #[serde(default = "default_evaluation_interval", deserialize_with = "duration")]
    pub evaluation_interval: Duration,
    /// Where the engine keeps its state across restarts (default `{spool.dir}/alerts-state.json`).
    #[serde(default)]
    pub state_file: Option<std::path::PathBuf>,
    /// Alertmanager receivers get every firing incident again this often, so that Alertmanager never
    /// ends it on its own while it fires (Prometheus' docs: clients re-send every 30 s to 3 min).
    #[serde(default = "default_resend_interval", deserialize_with = "duration")]
    pub resend_interval: Duration,
}

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
    /// The quantity watched (`threshold`, `rate`, `stale`, `sensor_fault`).
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
    /// `threshold`, `delta_t`: fire when the value is above this ...
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
    /// `rate`: the window (e.g. `15m`, `1h`).
    #[serde(default, deserialize_with = "optional_duration")]
    pub window: Option<Duration>,
    /// `stale`, `silent_node`: no reading for this long.
    #[serde(default, deserialize_with = "optional_duration")]
    pub after: Option<Duration>,
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

/// Body shape of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// One rackwatch alert object per POST (the JSON of protocols' `Alert`, plus `receiver_level`
    /// and `acknowledged`).
    Json,
    /// Prometheus Alertmanager `POST /api/v2/alerts`: a JSON array of
    /// `{labels, annotations, startsAt, endsAt, generatorURL}`.
    Alertmanager,
}

/// One `[[alerts.webhooks]]` receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Identifies the receiver in the state file and in metrics.
    pub name: Label,
    pub url: String,
    #[serde(default = "default_format")]
    pub format: WebhookFormat,
    /// 1: told at once. 2: told only of incidents nobody acknowledged within `escalate_after`.
    #[serde(default = "default_level")]
    pub level: u8,
    /// Only incidents of at least this severity.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Sent as `Authorization: Bearer ...`.
    #[serde(default)]
    pub token: Option<crate::config::SecretSource>,
    #[serde(default = "default_webhook_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Longest wait between two attempts of a failed delivery (it is retried until it succeeds).
    #[serde(default = "default_max_backoff", deserialize_with = "duration")]
    pub max_backoff: Duration,
}

/// `[alerts.cooling]`: fans up on the racks of listed rules' alerts, back to normal on resolve.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoolingConfig {
    /// Rules whose firing alerts (per rack) command that rack's nodes' fans up.
    pub rules: Vec<Label>,
    #[serde(default = "default_boost")]
    pub boost_duty_percent: f32,
    #[serde(default = "default_normal")]
    pub normal_duty_percent: f32,
    /// Fan indexes (MAX31785 pages) to drive on every node of the rack.
    #[serde(default = "default_fans")]
    pub fans: Vec<u8>,
    /// How long to wait for a node's ack before sending the command again.
    #[serde(default = "default_ack_timeout", deserialize_with = "duration")]
    pub ack_timeout: Duration,
    /// Sends after the first before giving up on a node.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_preset_group_by() -> GroupBy {
    GroupBy::Row
}
fn default_group_by() -> GroupBy {
    GroupBy::Rack
}
fn default_severity() -> Severity {
    Severity::Warning
}
fn default_min_severity() -> Severity {
    Severity::Warning
}
fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_resend_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_escalate_after() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_evaluation_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_format() -> WebhookFormat {
    WebhookFormat::Json
}
fn default_level() -> u8 {
    1
}
fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_boost() -> f32 {
    100.0
}
fn default_normal() -> f32 {
    40.0
}
fn default_fans() -> Vec<u8> {
    vec![0]
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retries() -> u32 {
    2
}

/// Parses `90s`, `15m`, `1h`, `2d`, `500ms` (one number, one unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` needs a unit (ms, s, m, h, d)"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 90s, 15m, 1h"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86400.0,
        _ => return Err(format!("`{unit}` is not a unit (ms, s, m, h, d)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn optional_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
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

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl AlertsConfig {
    /// Checks every key; the error names the first one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, preset) in self.presets.iter().enumerate() {
            let Some(parsed) = super::ashrae::Preset::parse(preset) else {
                return Err(invalid(
                    format!("alerts.presets[{i}]"),
                    format!(
                        "unknown preset `{preset}` (known: {})",
                        super::ashrae::Preset::NAMES.join(", ")
                    ),
                ));
            };
            for rule in parsed.rules(self.preset_group_by) {
                rule.validate(&format!("alerts.presets[{i}] rule {}", rule.name))?;
            }
        }
        if self.resend_interval.is_zero() {
            return Err(invalid("alerts.resend_interval", "must be more than 0s"));
        }
        if self.evaluation_interval.is_zero() {
            return Err(invalid("alerts.evaluation_interval", "must be more than 0s"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate(&format!("alerts.rules[{i}]"))?;
            if !names.insert(rule.name.as_str()) {
                return Err(invalid(
                    format!("alerts.rules[{i}].name"),
                    format!("`{}` is used by another rule", rule.name),
                ));
            }
        }
        let mut receivers = std::collections::BTreeSet::new();
        for (i, hook) in self.webhooks.iter().enumerate() {
            let key = format!("alerts.webhooks[{i}]");
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return Err(invalid(
                    format!("{key}.url"),
                    "must start with http:// or https://",
                ));
            }
            if !(1..=2).contains(&hook.level) {
                return Err(invalid(format!("{key}.level"), "must be 1 or 2"));
            }
            if hook.timeout.is_zero() {
                return Err(invalid(format!("{key}.timeout"), "must be more than 0s"));
            }
            if let Some(token) = &hook.token {
                token.validate(&format!("{key}.token"))?;
            }
            if !receivers.insert(hook.name.as_str()) || hook.name.as_str() == crate::model::MQTT_RECEIVER {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("`{}` is taken by another receiver", hook.name),
                ));
            }
        }
        if let Some(cooling) = &self.cooling {
            let duty_ok = |d: f32| (0.0..=100.0).contains(&d);
            if !duty_ok(cooling.boost_duty_percent) {
                return Err(invalid("alerts.cooling.boost_duty_percent", "must be 0 to 100"));
            }
            if !duty_ok(cooling.normal_duty_percent) {
                return Err(invalid("alerts.cooling.normal_duty_percent", "must be 0 to 100"));
            }
            if cooling.fans.is_empty() {
                return Err(invalid("alerts.cooling.fans", "name at least one fan"));
            }
            if cooling.ack_timeout.is_zero() {
                return Err(invalid("alerts.cooling.ack_timeout", "must be more than 0s"));
            }
            let presets = self.preset_rule_names();
            for (i, name) in cooling.rules.iter().enumerate() {
                if !names.contains(name.as_str()) && !presets.iter().any(|p| p == name.as_str()) {
                    return Err(invalid(
                        format!("alerts.cooling.rules[{i}]"),
                        format!("no rule or preset rule is called `{name}`"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn preset_rule_names(&self) -> Vec<String> {
        self.presets
            .iter()
            .filter_map(|p| super::ashrae::Preset::parse(p))
            .flat_map(|p| p.rules(self.preset_group_by))
            .map(|r| r.name.to_string())
            .collect()
    }

    /// The configured rules followed by the presets' rules.
    pub fn all_rules(&self) -> Vec<RuleConfig> {
        let mut rules = self.rules.clone();
        for preset in self
            .presets
            .iter()
            .filter_map(|p| super::ashrae::Preset::parse(p))
        {
            for rule in preset.rules(self.preset_group_by) {
                if !rules.iter().any(|r| r.name == rule.name) {
                    rules.push(rule);
                }
            }
        }
        rules
    }
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

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
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
            RuleKind::NodeOffline | RuleKind::SensorFault => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AlertsConfig, String> {
        let config: AlertsConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("5 fortnights").is_err());
    }

    #[test]
    fn a_full_section_parses() {
        let config = parse(
            r#"
            presets = ["ashrae-a1"]
            repeat_interval = "1h"
            [[rules]]
            name = "inlet_hot"
            kind = "threshold"
            quantity = "temperature"
            side = "inlet"
            room = "hall-a"
            row = ["r01", "r02"]
            above = 30.0
            clear = 29.0
            for = "2m"
            severity = "critical"
            group_by = "row"
            [[webhooks]]
            name = "pager"
            url = "http://127.0.0.1:9093/api/v2/alerts"
            format = "alertmanager"
            [cooling]
            rules = ["inlet_hot", "ashrae_a1_inlet_high"]
            "#,
        )
        .unwrap();
        let rule = &config.rules[0];
        assert_eq!(rule.row.len(), 2);
        assert_eq!(rule.room.len(), 1);
        assert_eq!(rule.for_, Duration::from_secs(120));
        assert!(config.all_rules().len() > 1);
    }

    #[test]
    fn errors_name_the_key() {
        let base = "[[rules]]\nname = \"hot\"\nkind = \"threshold\"\nquantity = \"temperature\"\n";
        assert_eq!(
            parse(&format!("{base}above = 30.0\nclear = 31.0")).unwrap_err(),
            "alerts.rules[0].clear: must not be above `above`"
        );
        assert_eq!(
            parse(&format!("{base}above = 30.0\nbelow = 10.0")).unwrap_err(),
            "alerts.rules[0].above: give exactly one of `above` and `below` (one rule per direction)"
        );
        assert!(
            parse("[[rules]]\nname = \"r\"\nkind = \"rate\"\nquantity = \"temperature\"\nmax_change = 5.0")
                .unwrap_err()
                .starts_with("alerts.rules[0].window:")
        );
        assert!(
            parse("presets = [\"ashrae-z9\"]")
                .unwrap_err()
                .starts_with("alerts.presets[0]:")
        );
        assert!(
            parse("[[webhooks]]\nname = \"w\"\nurl = \"ftp://x\"")
                .unwrap_err()
                .starts_with("alerts.webhooks[0].url:")
        );
        assert!(
            parse("[cooling]\nrules = [\"nope\"]")
                .unwrap_err()
                .starts_with("alerts.cooling.rules[0]:")
        );
        assert!(parse(&format!("{base}above = 30.0\nfor = \"5\"")).is_err());
    }
}
