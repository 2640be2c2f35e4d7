//! Time to the limit of one rack: its hottest inlet over the last minutes, and when that inlet,
//! rising, reaches the active ASHRAE allowable limit ("32 °C in ~7 min" on the tile).
//!
//! The trend itself is `forecast.rs` (Theil–Sen, robust to a glitching probe); this module keeps
//! the readings it needs, bounded, and says which limit it aims at.

use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::config::ashrae;
use crate::forecast::{Crossing, Recent};

/// A crossing further away than this many trend windows is not shown (two hours for the usual ten
/// minutes): ten minutes of trend say little about the hours after, and a staff member reads
/// "in ~40 h" as a promise.
pub const HORIZON_WINDOWS: u32 = 12;

/// The limit the forecast aims at, where it comes from, and how far back its trend looks.
#[derive(Debug, Clone, PartialEq)]
pub struct InletLimit {
    /// `[http] forecast_window`: long enough that one probe's noise does not make a trend, short
    /// enough to follow a cooling failure, which moves inlets by about a degree a minute.
    pub window: Duration,
    /// °C.
    pub celsius: f64,
    /// The preset that sets it (`ashrae-a2`), or `ashrae-a1 (default)` when no class preset is
    /// configured.
    pub source: String,
}

impl InletLimit {
    /// The tightest class preset of `[alerts]`, else class A1's allowable maximum (32 °C): the
    /// dashboard's colour bands are A1's, so the forecast aims at the same line they draw.
    pub fn from_config(config: &Config) -> Self {
        match config
            .alerts
            .as_ref()
            .and_then(|alerts| alerts.allowable_inlet_max())
        {
            Some((celsius, preset)) => InletLimit {
                window: config.http.forecast_window,
                celsius,
                source: preset.to_owned(),
            },
            None => InletLimit {
                window: config.http.forecast_window,
                ..InletLimit::default()
            },
        }
    }
}

impl Default for InletLimit {
    fn default() -> Self {
        InletLimit {
            window: Duration::from_secs(600),
            celsius: ashrae::A1.temperature.1,
            source: "ashrae-a1 (default)".to_owned(),
        }
    }
}

/// `time_to_limit` of a rack in `/api/room`: present while the hottest inlet's trend rises toward
/// the limit (or is already past it), absent when it is flat, falling, or too short to tell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeToLimit {
    /// The limit, °C.
    pub limit_c: f64,
    /// Which preset sets the limit.
    pub limit_source: String,
    /// Seconds until the trend reaches the limit; 0 when it is there already.
    pub seconds: u64,
    /// The trend, °C per minute.
    pub slope_c_per_min: f64,
    /// The trend's value now, °C.
    pub inlet_c: f64,
}

/// A rack's hottest inlet over the last [`InletLimit::window`], one reading per 60th of it.
#[derive(Debug, Default)]
pub struct InletTrend {
    readings: Recent,
}

impl InletTrend {
    /// Keeps the hottest inlet at `ts_ms`.
    pub fn observe(&mut self, ts_ms: i64, celsius: f64, limit: &InletLimit) {
        self.readings.observe(ts_ms, celsius, limit.window);
    }

    /// When the trend reaches `limit`, within [`HORIZON_WINDOWS`] of its window.
    pub fn time_to_limit(&self, now_ms: i64, limit: &InletLimit) -> Option<TimeToLimit> {
        let trend = self.readings.trend(limit.window, now_ms)?;
        let seconds = match trend.crossing(limit.celsius)? {
            Crossing::Now => 0,
            Crossing::In(eta) if eta <= limit.window.saturating_mul(HORIZON_WINDOWS) => eta.as_secs(),
            Crossing::In(_) => return None,
        };
        Some(TimeToLimit {
            limit_c: limit.celsius,
            limit_source: limit.source.clone(),
            seconds,
            slope_c_per_min: trend.slope_per_min,
            inlet_c: trend.level_now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000;

    /// A reading every 2 s over the last ten minutes, `value_at(minutes ago)`.
    fn trend(value_at: impl Fn(f64) -> f64) -> InletTrend {
        let mut trend = InletTrend::default();
        for i in 0..=300 {
            let ts_ms = NOW - 600_000 + i * 2_000;
            let limit = InletLimit::default();
            trend.observe(ts_ms, value_at((NOW - ts_ms) as f64 / 60_000.0), &limit);
        }
        trend
    }

    #[test]
    fn a_rising_inlet_gives_the_time_to_the_limit() {
        // 0.5 °C/min, at 28.5 °C now: 3.5 °C to go to 32 °C is 7 minutes.
        let eta = trend(|ago| 28.5 - 0.5 * ago)
            .time_to_limit(NOW, &InletLimit::default())
            .unwrap();
        assert_eq!(eta.seconds, 420, "{eta:?}");
        assert_eq!(
            (eta.limit_c, eta.limit_source.as_str()),
            (32.0, "ashrae-a1 (default)")
        );
        assert!((eta.slope_c_per_min - 0.5).abs() < 1e-9, "{eta:?}");
    }

    #[test]
    fn a_flat_or_falling_inlet_gives_none() {
        let limit = InletLimit::default();
        assert_eq!(trend(|_| 24.0).time_to_limit(NOW, &limit), None);
        assert_eq!(trend(|ago| 24.0 + 0.2 * ago).time_to_limit(NOW, &limit), None);
    }

    #[test]
    fn an_inlet_past_the_limit_is_there_now_and_a_far_crossing_is_not_shown() {
        let limit = InletLimit::default();
        let past = trend(|ago| 33.0 - 0.1 * ago).time_to_limit(NOW, &limit);
        assert_eq!(past.map(|t| t.seconds), Some(0));
        // 0.01 °C/min from 24 °C: 800 minutes away, beyond the 2 h horizon.
        assert_eq!(trend(|ago| 24.0 - 0.01 * ago).time_to_limit(NOW, &limit), None);
    }

    #[test]
    fn the_limit_comes_from_the_tightest_class_preset_or_defaults_to_a1() {
        let base = "site = \"x\"\n[mqtt]\nurl = \"mqtt://127.0.0.1\"\n[spool]\ndir = \"/tmp/x\"\n";
        let config = Config::parse(&format!("{base}[alerts]\npresets = [\"ashrae-a2\"]\n")).unwrap();
        assert_eq!(
            InletLimit::from_config(&config),
            InletLimit {
                window: Duration::from_secs(600),
                celsius: 35.0,
                source: "ashrae-a2".to_owned()
            }
        );
        let config = Config::parse(base).unwrap();
        assert_eq!(InletLimit::from_config(&config), InletLimit::default());
        // The trend's window is `[http] forecast_window`.
        let config = Config::parse(&format!("{base}[http]\nforecast_window = \"20s\"\n")).unwrap();
        assert_eq!(InletLimit::from_config(&config).window, Duration::from_secs(20));
    }
}
