//! Time to the limit: how long until a rising series (a rack's hottest inlet) crosses a limit
//! (the active ASHRAE allowable maximum), from a robust trend over the last minutes.
//!
//! The trend is the Theil–Sen estimator (Sen 1968): the slope is the median of the slopes
//! between every pair of points, the level the median of what each point implies at `now`. One
//! wild reading (a probe glitch, a door opened next to the sensor) moves only a few of the
//! pairwise slopes and so not their median; the estimator tolerates up to ~29 % of outliers,
//! where a least-squares line would be dragged by a single one.
//!
//! Cost: Theil–Sen is O(n²) in the points it looks at, so a window is evenly subsampled to at
//! most [`MAX_POINTS`] (60: one point a minute over an hour, one every 10 s over 10 minutes),
//! which bounds one forecast to 1 770 slopes and a sort of them, whatever the sample rate.
//! The module is sans-IO: the caller hands in the window's samples (or keeps them in a
//! [`Recent`]) and the clock.

use std::collections::VecDeque;
use std::time::Duration;

/// At most this many points enter the pairwise slopes (see the module doc).
pub const MAX_POINTS: usize = 60;

/// Fewer points than this in the window give no forecast: a trend from 2 or 3 readings is a
/// guess, and one outlier among them would decide it.
pub const MIN_POINTS: usize = 5;

/// One reading of the series: Unix milliseconds and a value (°C for an inlet).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub ts_ms: i64,
    pub value: f64,
}

/// The robust trend of a window, anchored at the window's `now`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Change per minute (°C/min for an inlet).
    pub slope_per_min: f64,
    /// The trend's value at `now`, less sensitive to the last reading's noise than that reading.
    pub level_now: f64,
}

/// When the trend reaches the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Crossing {
    /// The trend is already at or above the limit.
    Now,
    /// The rising trend reaches the limit after this long.
    In(Duration),
}

impl Trend {
    /// The Theil–Sen trend of the finite readings in `[now_ms - window, now_ms]`, or `None` with
    /// fewer than [`MIN_POINTS`] of them or when they all share one timestamp.
    pub fn over_window(readings: &[Reading], window: Duration, now_ms: i64) -> Option<Trend> {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let from_ms = now_ms.saturating_sub(window_ms);
        let mut points: Vec<Reading> = readings
            .iter()
            .copied()
            .filter(|r| r.value.is_finite() && (from_ms..=now_ms).contains(&r.ts_ms))
            .collect();
        points.sort_by_key(|r| r.ts_ms);
        let points = subsample(&points, MAX_POINTS);
        if points.len() < MIN_POINTS {
            return None;
        }

        // Times relative to `now` in minutes keep the numbers small and the slope in °C/min.
        let minutes = |ts_ms: i64| (ts_ms - now_ms) as f64 / 60_000.0;
        let mut slopes = Vec::with_capacity(points.len() * (points.len() - 1) / 2);
        for (i, a) in points.iter().enumerate() {
            for b in points.iter().skip(i + 1) {
                if b.ts_ms != a.ts_ms {
                    slopes.push((b.value - a.value) / (minutes(b.ts_ms) - minutes(a.ts_ms)));
                }
            }
        }
        let slope_per_min = median(&mut slopes)?;
        let mut levels: Vec<f64> = points
            .iter()
            .map(|p| p.value - slope_per_min * minutes(p.ts_ms))
            .collect();
        let level_now = median(&mut levels)?;
        Some(Trend {
            slope_per_min,
            level_now,
        })
    }

    /// When this trend reaches `limit`: `Now` if it is already there, `None` if it is flat or
    /// falling (it never gets there) or the crossing is too far to express.
    pub fn crossing(&self, limit: f64) -> Option<Crossing> {
        if self.level_now >= limit {
            return Some(Crossing::Now);
        }
        if self.slope_per_min <= 0.0 {
            return None;
        }
        let minutes = (limit - self.level_now) / self.slope_per_min;
        Duration::try_from_secs_f64(minutes * 60.0).ok().map(Crossing::In)
    }
}

/// The time until the series in `readings` crosses `limit`, from its trend over `window`.
pub fn time_to_limit(readings: &[Reading], window: Duration, now_ms: i64, limit: f64) -> Option<Crossing> {
    Trend::over_window(readings, window, now_ms)?.crossing(limit)
}

/// One reading is kept per step of the window's [`MAX_POINTS`]th part (the latest of it): 61
/// over ten minutes, one per 10 s, about what [`MAX_POINTS`] would subsample a denser series to
/// anyway. A short window (the demo's room runs faster than real time) keeps finer steps, down to
/// [`MIN_STEP_MS`].
pub fn step_ms(window: Duration) -> i64 {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    (window_ms / MAX_POINTS as i64).max(MIN_STEP_MS)
}

/// The finest step kept: nodes report every few seconds at most, a tenth of a second is finer.
pub const MIN_STEP_MS: i64 = 100;

/// The recent readings of one series, bounded: the latest reading of each step ([`step_ms`]) over
/// the window it is kept for, whatever the sample rate.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    readings: VecDeque<Reading>,
}

impl Recent {
    /// Keeps `value` at `ts_ms` and forgets what is older than `window`. A reading older than the
    /// last kept one is dropped: a trend is about the present, not a late replay.
    pub fn observe(&mut self, ts_ms: i64, value: f64, window: Duration) {
        if !value.is_finite() {
            return;
        }
        let reading = Reading { ts_ms, value };
        let step = step_ms(window);
        match self.readings.back_mut() {
            Some(last) if last.ts_ms > ts_ms => return,
            Some(last) if last.ts_ms.div_euclid(step) == ts_ms.div_euclid(step) => {
                *last = reading;
            }
            _ => self.readings.push_back(reading),
        }
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let from_ms = ts_ms.saturating_sub(window_ms);
        while self.readings.front().is_some_and(|r| r.ts_ms < from_ms) {
            self.readings.pop_front();
        }
    }

    /// The trend of the readings kept, over `window` up to `now_ms` (see [`Trend::over_window`]).
    pub fn trend(&self, window: Duration, now_ms: i64) -> Option<Trend> {
        let readings: Vec<Reading> = self.readings.iter().copied().collect();
        Trend::over_window(&readings, window, now_ms)
    }

    /// How many readings are kept.
    pub fn len(&self) -> usize {
        self.readings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }
}

/// At most `max` points evenly spread over `points`, keeping the first and the last.
fn subsample(points: &[Reading], max: usize) -> Vec<Reading> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let last = points.len() - 1;
    (0..max)
        .filter_map(|i| points.get(i * last / (max - 1)).copied())
        .collect()
}

/// The median (the mean of the two middle values for an even count), `None` when empty.
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => values.get(mid).copied(),
        _ => Some((values.get(mid - 1)? + values.get(mid)?) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000;
    const TEN_MIN: Duration = Duration::from_secs(600);

    /// One reading every `step_s` seconds over the last ten minutes, ending at `NOW`.
    fn series(step_s: i64, value_at: impl Fn(f64) -> f64) -> Vec<Reading> {
        (0..=600 / step_s)
            .map(|i| {
                let ts_ms = NOW - 600_000 + i * step_s * 1000;
                let minutes_ago = (NOW - ts_ms) as f64 / 60_000.0;
                Reading {
                    ts_ms,
                    value: value_at(minutes_ago),
                }
            })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_known_slope_and_level_are_recovered() {
        // 0.5 °C/min rising to 27 °C now.
        let readings = series(10, |ago| 27.0 - 0.5 * ago);
        let trend = Trend::over_window(&readings, TEN_MIN, NOW).unwrap();
        assert!(close(trend.slope_per_min, 0.5), "{trend:?}");
        assert!(close(trend.level_now, 27.0), "{trend:?}");
        // 5 °C to go at 0.5 °C/min.
        let Some(Crossing::In(eta)) = trend.crossing(32.0) else {
            panic!("{:?}", trend.crossing(32.0))
        };
        assert!((eta.as_secs_f64() - 600.0).abs() < 1e-6, "{eta:?}");
    }

    #[test]
    fn a_single_wild_outlier_is_ignored() {
        let mut readings = series(30, |ago| 25.0 - 0.2 * ago);
        // A glitch of +60 °C at the last reading would swing a least-squares line hard.
        if let Some(last) = readings.last_mut() {
            last.value += 60.0;
        }
        let trend = Trend::over_window(&readings, TEN_MIN, NOW).unwrap();
        assert!((trend.slope_per_min - 0.2).abs() < 0.02, "{trend:?}");
        assert!((trend.level_now - 25.0).abs() < 0.2, "{trend:?}");
        // Not "now", though the glitch reads 85 °C.
        assert!(
            matches!(trend.crossing(32.0), Some(Crossing::In(_))),
            "{:?}",
            trend.crossing(32.0)
        );
    }

    #[test]
    fn a_falling_series_never_crosses() {
        let readings = series(10, |ago| 24.0 + 0.3 * ago);
        let trend = Trend::over_window(&readings, TEN_MIN, NOW).unwrap();
        assert!(close(trend.slope_per_min, -0.3), "{trend:?}");
        assert_eq!(trend.crossing(32.0), None);
    }

    #[test]
    fn a_flat_series_never_crosses() {
        let readings = series(10, |_| 24.0);
        assert_eq!(time_to_limit(&readings, TEN_MIN, NOW, 32.0), None);
    }

    #[test]
    fn a_series_already_at_or_above_the_limit_crosses_now() {
        let above = series(10, |ago| 33.0 - 0.1 * ago);
        assert_eq!(time_to_limit(&above, TEN_MIN, NOW, 32.0), Some(Crossing::Now));
        let flat_at_limit = series(10, |_| 32.0);
        assert_eq!(
            time_to_limit(&flat_at_limit, TEN_MIN, NOW, 32.0),
            Some(Crossing::Now)
        );
        let falling_but_above = series(10, |ago| 34.0 + 0.1 * ago);
        assert_eq!(
            time_to_limit(&falling_but_above, TEN_MIN, NOW, 32.0),
            Some(Crossing::Now)
        );
    }

    #[test]
    fn too_few_points_give_no_forecast() {
        let readings = series(150, |ago| 27.0 - 0.5 * ago);
        assert_eq!(readings.len(), MIN_POINTS);
        assert!(Trend::over_window(&readings, TEN_MIN, NOW).is_some());
        assert_eq!(time_to_limit(&readings[1..], TEN_MIN, NOW, 32.0), None);
        assert_eq!(time_to_limit(&[], TEN_MIN, NOW, 32.0), None);
    }

    #[test]
    fn readings_outside_the_window_or_not_finite_do_not_count() {
        let mut readings = series(150, |ago| 27.0 - 0.5 * ago);
        // Far older readings on another slope, and a NaN: none of them may count.
        readings.push(Reading {
            ts_ms: NOW - 3_600_000,
            value: 90.0,
        });
        readings.push(Reading {
            ts_ms: NOW - 3_000_000,
            value: -40.0,
        });
        if let Some(first) = readings.first_mut() {
            first.value = f64::NAN;
        }
        assert_eq!(
            time_to_limit(&readings, TEN_MIN, NOW, 32.0),
            None,
            "4 usable readings are too few"
        );
    }

    #[test]
    fn a_dense_window_is_subsampled_to_the_cap_and_keeps_its_slope() {
        // One reading a second for ten minutes: 601 points, 180k pairs without the cap.
        let readings = series(1, |ago| 22.0 - 0.25 * ago);
        let sampled = subsample(&readings, MAX_POINTS);
        assert_eq!(sampled.len(), MAX_POINTS);
        assert_eq!(sampled.first(), readings.first());
        assert_eq!(sampled.last(), readings.last());
        let trend = Trend::over_window(&readings, TEN_MIN, NOW).unwrap();
        assert!(close(trend.slope_per_min, 0.25), "{trend:?}");
    }

    #[test]
    fn recent_keeps_one_reading_per_step_over_its_window() {
        let mut recent = Recent::default();
        // One reading every 2 s for ten minutes: one kept per 10 s.
        for i in 0..=300 {
            recent.observe(NOW - 600_000 + i * 2_000, 22.0 + i as f64 * 0.01, TEN_MIN);
        }
        assert_eq!(recent.len(), 61);
        let trend = recent.trend(TEN_MIN, NOW).unwrap();
        assert!((trend.slope_per_min - 0.3).abs() < 1e-9, "{trend:?}");
        // An hour more at one reading a second keeps the window, not the hour.
        for s in 1..=3600 {
            recent.observe(NOW + s * 1000, 22.0, TEN_MIN);
        }
        assert_eq!(recent.len(), 61);
        // A late reading and a NaN are dropped.
        recent.observe(NOW, 90.0, TEN_MIN);
        recent.observe(NOW + 3_601_000, f64::NAN, TEN_MIN);
        let flat = recent.trend(TEN_MIN, NOW + 3_600_000).unwrap();
        assert_eq!((flat.slope_per_min, flat.level_now), (0.0, 22.0));
    }

    #[test]
    fn a_short_window_keeps_finer_steps() {
        // Twenty seconds (ten minutes of a room run 30 times faster), a reading every 100 ms: one
        // kept per 333 ms, so the window still holds a trend's worth of points.
        let window = Duration::from_secs(20);
        assert_eq!(step_ms(window), 333);
        assert_eq!(step_ms(Duration::from_millis(10)), MIN_STEP_MS);
        let mut recent = Recent::default();
        for i in 0..=200 {
            recent.observe(NOW - 20_000 + i * 100, 22.0 + i as f64 * 0.01, window);
        }
        assert_eq!(recent.len(), 61);
        let trend = recent.trend(window, NOW).unwrap();
        assert!((trend.slope_per_min - 6.0).abs() < 0.1, "{trend:?}");
    }

    #[test]
    fn unsorted_readings_give_the_same_trend() {
        let readings = series(20, |ago| 26.0 - 0.4 * ago);
        let mut shuffled = readings.clone();
        shuffled.reverse();
        shuffled.swap(3, 17);
        assert_eq!(
            Trend::over_window(&shuffled, TEN_MIN, NOW),
            Trend::over_window(&readings, TEN_MIN, NOW)
        );
    }
}
