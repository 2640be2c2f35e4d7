//! `[normalise]`: bounds on what the gateway accepts as data.

use std::collections::BTreeMap;
use std::time::Duration;

use rackwatch_protocols::Quantity;
use serde::Deserialize;

use super::duration::duration;
use super::error::{ConfigError, invalid};

/// Bounds on what the gateway accepts as data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormaliseConfig {
    /// A node timestamp further in the future than this is not trusted (the receive time is used).
    #[serde(default = "default_max_future", deserialize_with = "duration")]
    pub max_future: Duration,
    /// A reading older than this is rejected as stale.
    #[serde(default = "default_max_age", deserialize_with = "duration")]
    pub max_age: Duration,
    /// Plausible range per quantity, in the canonical unit. Values outside are counted and kept out
    /// of the data. Quantities not listed use [`default_plausible`].
    #[serde(default)]
    pub plausible: BTreeMap<Quantity, Range>,
}

impl Default for NormaliseConfig {
    fn default() -> Self {
        NormaliseConfig {
            max_future: default_max_future(),
            max_age: default_max_age(),
            plausible: BTreeMap::new(),
        }
    }
}

fn default_max_future() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_max_age() -> Duration {
    Duration::from_secs(7 * 86_400)
}

impl NormaliseConfig {
    pub fn plausible(&self, quantity: Quantity) -> Range {
        self.plausible
            .get(&quantity)
            .copied()
            .unwrap_or_else(|| default_plausible(quantity))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (quantity, range) in &self.plausible {
            if !(range.min.is_finite() && range.max.is_finite() && range.min < range.max) {
                return Err(invalid(
                    format!("normalise.plausible.{}", quantity.as_str()),
                    "min and max must be finite with min < max",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    pub fn contains(&self, value: f64) -> bool {
        (self.min..=self.max).contains(&value)
    }
}

/// Default plausibility ranges: the measuring range of common rack sensors, wide enough for any real
/// rack and narrow enough to catch a unit mix-up or a stuck ADC (0xffff).
pub fn default_plausible(quantity: Quantity) -> Range {
    let (min, max) = match quantity {
        // TMP105/SHT4x measuring range (datasheets: -55..125 and -40..125 °C).
        Quantity::Temperature | Quantity::DewPoint => (-55.0, 125.0),
        Quantity::RelativeHumidity => (0.0, 100.0),
        // 48 V busbars and 12 V rails; ±1 kV covers any DC or mains rack feed.
        Quantity::Voltage => (-1000.0, 1000.0),
        Quantity::Current => (-2000.0, 2000.0),
        // A single rack feed tops out well below 200 kW.
        Quantity::Power => (-1000.0, 200_000.0),
        Quantity::Energy => (0.0, 1e12),
        Quantity::FanSpeed => (0.0, 50_000.0),
        Quantity::FanDuty => (0.0, 100.0),
    };
    Range { min, max }
}
