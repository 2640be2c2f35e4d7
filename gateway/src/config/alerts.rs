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

use rackwatch_protocols::{Label, Severity};
use serde::Deserialize;

use super::ashrae::Preset;
use super::duration::duration;
use super::error::{ConfigError, check_http_url, invalid};
use super::rules::{GroupBy, RuleConfig, RuleKind};
use super::secret::SecretSource;

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
    pub token: Option<SecretSource>,
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

impl AlertsConfig {
    /// The active ASHRAE allowable inlet limit: the tightest of the class presets configured, with
    /// the preset's name; `None` without a class preset.
    pub fn allowable_inlet_max(&self) -> Option<(f64, &str)> {
        self.presets
            .iter()
            .filter_map(|name| Some((Preset::parse(name)?.allowable_inlet_max()?, name.as_str())))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// Checks every key; the error names the first one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, preset) in self.presets.iter().enumerate() {
            let Some(parsed) = Preset::parse(preset) else {
                return Err(invalid(
                    format!("alerts.presets[{i}]"),
                    format!("unknown preset `{preset}` (known: {})", Preset::NAMES.join(", ")),
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
            check_http_url(&format!("{key}.url"), &hook.url)?;
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
            .filter_map(|p| Preset::parse(p))
            .flat_map(|p| p.rules(self.preset_group_by))
            .map(|r| r.name.to_string())
            .collect()
    }

    /// The configured rules followed by the presets' rules. A `forecast` rule without `above`
    /// aims at the active allowable inlet limit, else class A1's (32 °C), as the dashboard does.
    pub fn all_rules(&self) -> Vec<RuleConfig> {
        let mut rules = self.rules.clone();
        let limit = self
            .allowable_inlet_max()
            .map_or(super::ashrae::A1.temperature.1, |(celsius, _)| celsius);
        for rule in rules.iter_mut().filter(|r| r.kind == RuleKind::Forecast) {
            rule.above.get_or_insert(limit);
        }
        for preset in self.presets.iter().filter_map(|p| Preset::parse(p)) {
            for rule in preset.rules(self.preset_group_by) {
                if !rules.iter().any(|r| r.name == rule.name) {
                    rules.push(rule);
                }
            }
        }
        rules
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
    fn the_active_inlet_limit_is_the_tightest_class_preset() {
        let limit = |presets: &str| {
            parse(&format!("presets = {presets}"))
                .unwrap()
                .allowable_inlet_max()
                .map(|(c, name)| (c, name.to_owned()))
        };
        assert_eq!(
            limit(r#"["ashrae-recommended", "ashrae-a3", "ashrae-a2"]"#),
            Some((35.0, "ashrae-a2".to_owned()))
        );
        assert_eq!(limit(r#"["ashrae-a1"]"#), Some((32.0, "ashrae-a1".to_owned())));
        assert_eq!(limit(r#"["ashrae-recommended"]"#), None);
        assert_eq!(limit("[]"), None);
    }

    #[test]
    fn a_forecast_rule_aims_at_the_active_limit_unless_it_names_one() {
        let config = parse(
            r#"
            presets = ["ashrae-a2"]
            [[rules]]
            name = "inlet_eta"
            kind = "forecast"
            within = "15m"
            [[rules]]
            name = "inlet_eta_30"
            kind = "forecast"
            within = "15m"
            above = 30.0
            "#,
        )
        .unwrap();
        let rules = config.all_rules();
        assert_eq!((rules[0].above, rules[1].above), (Some(35.0), Some(30.0)));
        let error = parse("[[rules]]\nname = \"eta\"\nkind = \"forecast\"").unwrap_err();
        assert!(error.contains("rules[0].within"), "{error}");
        let defaulted = parse("[[rules]]\nname = \"eta\"\nkind = \"forecast\"\nwithin = \"5m\"");
        assert_eq!(defaulted.unwrap().all_rules()[0].above, Some(32.0));
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
