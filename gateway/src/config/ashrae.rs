//! Rule presets from ASHRAE TC 9.9, *Thermal Guidelines for Data Processing Environments*, 5th edition
//! (2021), Table 2-1 "2021 Thermal Guidelines for Air Cooling" and its footnotes: the recommended
//! envelope and the allowable envelopes of classes A1 to A4, measured at the IT equipment's air
//! inlet. gateway/ALERTS.md lists every rule with its numbers.
//!
//! The thresholds are ASHRAE's; the hysteresis (how far back a value must come before the alert
//! resolves) and the `for` durations are ours, chosen so that a reading wobbling around a limit is one
//! alert, not a stream of them.

use std::time::Duration;

use rackwatch_protocols::{Quantity, Severity};

use super::rules::{GroupBy, RuleConfig, RuleKind, SideConfig};
use crate::model::Placement;

/// One allowable class's limits (Table 2-1, "Allowable envelope").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Envelope {
    /// Dry-bulb inlet temperature, °C.
    pub temperature: (f64, f64),
    /// Dew point, °C.
    pub dew_point: (f64, f64),
    /// Relative humidity, %.
    pub humidity: (f64, f64),
}

/// The recommended envelope, the same for A1 to A4 (Table 2-1, "Recommended"): 18 to 27 °C, dew point
/// -9 to 15 °C, at most 70 % RH (50 % RH where gaseous contamination is high; see footnote).
pub const RECOMMENDED: Envelope = Envelope {
    temperature: (18.0, 27.0),
    dew_point: (-9.0, 15.0),
    humidity: (0.0, 70.0),
};

/// Class A1: 15 to 32 °C, -12 °C dew point and 8 % RH up to 17 °C dew point and 80 % RH.
pub const A1: Envelope = Envelope {
    temperature: (15.0, 32.0),
    dew_point: (-12.0, 17.0),
    humidity: (8.0, 80.0),
};
/// Class A2: 10 to 35 °C, -12 °C dew point and 8 % RH up to 21 °C dew point and 80 % RH.
pub const A2: Envelope = Envelope {
    temperature: (10.0, 35.0),
    dew_point: (-12.0, 21.0),
    humidity: (8.0, 80.0),
};
/// Class A3: 5 to 40 °C, -12 °C dew point and 8 % RH up to 24 °C dew point and 85 % RH.
pub const A3: Envelope = Envelope {
    temperature: (5.0, 40.0),
    dew_point: (-12.0, 24.0),
    humidity: (8.0, 85.0),
};
/// Class A4: 5 to 45 °C, -12 °C dew point and 8 % RH up to 24 °C dew point and 90 % RH.
pub const A4: Envelope = Envelope {
    temperature: (5.0, 45.0),
    dew_point: (-12.0, 24.0),
    humidity: (8.0, 90.0),
};

/// Rate of change of inlet temperature (Table 2-1 footnote for equipment other than tape drives):
/// at most 20 °C in an hour and at most 5 °C in any 15-minute period.
pub const RATE_PER_HOUR: f64 = 20.0;
pub const RATE_PER_15_MIN: f64 = 5.0;

/// A built-in rule set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Warnings when inlet air leaves the recommended envelope, and the rate-of-change limits.
    Recommended,
    /// The recommended warnings plus critical alerts at the class's allowable limits.
    Class(Class),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    A1,
    A2,
    A3,
    A4,
}

impl Class {
    const fn envelope(self) -> Envelope {
        match self {
            Class::A1 => A1,
            Class::A2 => A2,
            Class::A3 => A3,
            Class::A4 => A4,
        }
    }
    const fn name(self) -> &'static str {
        match self {
            Class::A1 => "a1",
            Class::A2 => "a2",
            Class::A3 => "a3",
            Class::A4 => "a4",
        }
    }
}

/// Hysteresis of the presets: temperature and dew point 0.5 °C, humidity 2 % RH.
const TEMPERATURE_HYSTERESIS: f64 = 0.5;
const HUMIDITY_HYSTERESIS: f64 = 2.0;

const INLET: [Placement; 4] = [
    Placement::InletTop,
    Placement::InletMiddle,
    Placement::InletBottom,
    Placement::Inlet,
];

impl Preset {
    pub const NAMES: [&'static str; 5] = [
        "ashrae-recommended",
        "ashrae-a1",
        "ashrae-a2",
        "ashrae-a3",
        "ashrae-a4",
    ];

    pub fn parse(name: &str) -> Option<Preset> {
        Some(match name {
            "ashrae-recommended" => Preset::Recommended,
            "ashrae-a1" => Preset::Class(Class::A1),
            "ashrae-a2" => Preset::Class(Class::A2),
            "ashrae-a3" => Preset::Class(Class::A3),
            "ashrae-a4" => Preset::Class(Class::A4),
            _ => return None,
        })
    }

    /// The allowable maximum inlet temperature, °C, of a class preset; `None` for the recommended
    /// preset, which warns at 27 °C but sets no allowable limit.
    pub const fn allowable_inlet_max(self) -> Option<f64> {
        match self {
            Preset::Recommended => None,
            Preset::Class(class) => Some(class.envelope().temperature.1),
        }
    }

    /// The rules this preset adds, grouped by `group_by`.
    pub fn rules(self, group_by: GroupBy) -> Vec<RuleConfig> {
        let mut rules = Vec::new();
        let warn = Severity::Warning;
        let crit = Severity::Critical;
        let recommended = Duration::from_secs(5 * 60);
        let allowable = Duration::from_secs(60);
        envelope_rules(&mut rules, "ashrae", RECOMMENDED, warn, recommended, false);
        if let Preset::Class(class) = self {
            let prefix = format!("ashrae_{}", class.name());
            envelope_rules(&mut rules, &prefix, class.envelope(), crit, allowable, true);
        }
        for (name, change, window) in [
            ("ashrae_rate_15m", RATE_PER_15_MIN, Duration::from_secs(15 * 60)),
            ("ashrae_rate_1h", RATE_PER_HOUR, Duration::from_secs(3600)),
        ] {
            if let Some(mut rule) = RuleConfig::new(name, RuleKind::Rate) {
                rule.quantity = Some(Quantity::Temperature);
                rule.side = Some(SideConfig::Inlet);
                rule.max_change = Some(change);
                rule.window = Some(window);
                rule.severity = crit;
                rule.clear_for = Duration::from_secs(5 * 60);
                rules.push(rule);
            }
        }
        for rule in &mut rules {
            rule.group_by = group_by;
        }
        rules
    }
}

/// Inlet temperature high and low, dew point high and low, humidity high (and low for a class).
fn envelope_rules(
    rules: &mut Vec<RuleConfig>,
    prefix: &str,
    envelope: Envelope,
    severity: Severity,
    hold: Duration,
    humidity_low: bool,
) {
    let mut add = |suffix: &str, quantity: Quantity, above: Option<f64>, below: Option<f64>, margin: f64| {
        let Some(mut rule) = RuleConfig::new(&format!("{prefix}_{suffix}"), RuleKind::Threshold) else {
            return;
        };
        rule.quantity = Some(quantity);
        rule.above = above;
        rule.below = below;
        rule.clear = above.map(|a| a - margin).or(below.map(|b| b + margin));
        rule.severity = severity;
        rule.for_ = hold;
        rule.clear_for = hold;
        if quantity == Quantity::Temperature {
            rule.side = Some(SideConfig::Inlet);
        } else {
            // Humidity probes often hang in the aisle rather than on a rack face: the moisture
            // content of the air is the same there.
            rule.placement = INLET.iter().copied().chain([Placement::Ambient]).collect();
        }
        rules.push(rule);
    };
    let (t_low, t_high) = envelope.temperature;
    let (dp_low, dp_high) = envelope.dew_point;
    let (rh_low, rh_high) = envelope.humidity;
    add(
        "inlet_high",
        Quantity::Temperature,
        Some(t_high),
        None,
        TEMPERATURE_HYSTERESIS,
    );
    add(
        "inlet_low",
        Quantity::Temperature,
        None,
        Some(t_low),
        TEMPERATURE_HYSTERESIS,
    );
    add(
        "dew_point_high",
        Quantity::DewPoint,
        Some(dp_high),
        None,
        TEMPERATURE_HYSTERESIS,
    );
    add(
        "dew_point_low",
        Quantity::DewPoint,
        None,
        Some(dp_low),
        TEMPERATURE_HYSTERESIS,
    );
    add(
        "humidity_high",
        Quantity::RelativeHumidity,
        Some(rh_high),
        None,
        HUMIDITY_HYSTERESIS,
    );
    if humidity_low {
        add(
            "humidity_low",
            Quantity::RelativeHumidity,
            None,
            Some(rh_low),
            HUMIDITY_HYSTERESIS,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule<'a>(rules: &'a [RuleConfig], name: &str) -> &'a RuleConfig {
        rules.iter().find(|r| r.name.as_str() == name).unwrap()
    }

    #[test]
    fn a1_preset_has_recommended_warnings_and_allowable_criticals() {
        let rules = Preset::parse("ashrae-a1").unwrap().rules(GroupBy::Row);
        let warn = rule(&rules, "ashrae_inlet_high");
        assert_eq!(
            (warn.above, warn.clear, warn.severity),
            (Some(27.0), Some(26.5), Severity::Warning)
        );
        let crit = rule(&rules, "ashrae_a1_inlet_high");
        assert_eq!((crit.above, crit.severity), (Some(32.0), Severity::Critical));
        assert_eq!(rule(&rules, "ashrae_a1_inlet_low").below, Some(15.0));
        assert_eq!(rule(&rules, "ashrae_a1_dew_point_high").above, Some(17.0));
        assert_eq!(rule(&rules, "ashrae_a1_humidity_high").above, Some(80.0));
        assert_eq!(rule(&rules, "ashrae_a1_humidity_low").below, Some(8.0));
        assert_eq!(rule(&rules, "ashrae_rate_15m").max_change, Some(5.0));
        assert!(rules.iter().all(|r| r.group_by == GroupBy::Row));
    }

    #[test]
    fn classes_widen_the_allowable_envelope() {
        let high = |class: &str| {
            let rules = Preset::parse(class).unwrap().rules(GroupBy::Row);
            let name = format!("ashrae_{}_inlet_high", class.trim_start_matches("ashrae-"));
            rule(&rules, &name).above.unwrap()
        };
        assert_eq!(
            [
                high("ashrae-a1"),
                high("ashrae-a2"),
                high("ashrae-a3"),
                high("ashrae-a4")
            ],
            [32.0, 35.0, 40.0, 45.0]
        );
    }

    #[test]
    fn every_preset_rule_passes_validation() {
        for name in Preset::NAMES {
            let config: super::super::AlertsConfig = toml::from_str(&format!(
                "presets = [\"{name}\"]\n[cooling]\nrules = [\"ashrae_inlet_high\"]"
            ))
            .unwrap();
            config.validate().unwrap();
        }
    }
}
