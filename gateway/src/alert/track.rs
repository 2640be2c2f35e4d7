//! What the engine remembers between readings to compute derived measures: the swing of a series
//! within a window (rate of change), and a rack's latest inlet, outlet and power readings (ΔT, totals).

use std::collections::{HashMap, VecDeque};

/// The largest change of a series within a sliding window, in O(1) amortised per reading: two
/// monotonic queues keep the window's minimum and maximum.
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    mins: VecDeque<(i64, f64)>,
    maxs: VecDeque<(i64, f64)>,
}

impl RateWindow {
    /// Adds a reading and returns max − min over the last `window_ms` (readings out of order by time
    /// are taken as they come).
    pub fn push(&mut self, window_ms: i64, timestamp_ms: i64, value: f64) -> f64 {
        while self.mins.back().is_some_and(|&(_, v)| v >= value) {
            self.mins.pop_back();
        }
        self.mins.push_back((timestamp_ms, value));
        while self.maxs.back().is_some_and(|&(_, v)| v <= value) {
            self.maxs.pop_back();
        }
        self.maxs.push_back((timestamp_ms, value));
        let oldest = timestamp_ms.saturating_sub(window_ms);
        while self.mins.front().is_some_and(|&(t, _)| t < oldest) {
            self.mins.pop_front();
        }
        while self.maxs.front().is_some_and(|&(t, _)| t < oldest) {
            self.maxs.pop_front();
        }
        match (self.mins.front(), self.maxs.front()) {
            (Some(&(_, min)), Some(&(_, max))) => max - min,
            _ => 0.0,
        }
    }
}

/// Values older than this no longer count towards a rack's ΔT and power (as in normalise.rs).
pub const RACK_VALUE_MAX_AGE_MS: i64 = 5 * 60 * 1000;

/// A rack's latest readings per series (keyed by the series' identity).
#[derive(Debug, Clone, Default)]
pub struct RackTrack {
    pub inlet: HashMap<usize, (f64, i64)>,
    pub outlet: HashMap<usize, (f64, i64)>,
    /// Watts.
    pub power: HashMap<usize, (f64, i64)>,
}

fn fresh(values: &HashMap<usize, (f64, i64)>, now_ms: i64) -> impl Iterator<Item = f64> + '_ {
    values
        .values()
        .filter(move |(_, t)| now_ms.saturating_sub(*t) <= RACK_VALUE_MAX_AGE_MS)
        .map(|(v, _)| *v)
}

fn mean(values: &HashMap<usize, (f64, i64)>, now_ms: i64) -> Option<f64> {
    let (sum, n) = fresh(values, now_ms).fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

impl RackTrack {
    /// Outlet mean minus inlet mean, when both sides have fresh readings.
    pub fn delta_t(&self, now_ms: i64) -> Option<f64> {
        Some(mean(&self.outlet, now_ms)? - mean(&self.inlet, now_ms)?)
    }

    /// Total power in kW, when any feed has a fresh reading.
    pub fn power_kw(&self, now_ms: i64) -> Option<f64> {
        let mut values = fresh(&self.power, now_ms).peekable();
        values.peek()?;
        Some(values.sum::<f64>() / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_forgets_readings_older_than_the_window() {
        let mut window = RateWindow::default();
        let minute = 60_000;
        assert_eq!(window.push(15 * minute, 0, 22.0), 0.0);
        assert_eq!(window.push(15 * minute, 5 * minute, 25.0), 3.0);
        assert_eq!(window.push(15 * minute, 10 * minute, 27.5), 5.5);
        // 22.0 at minute 0 has left the window at minute 16: the swing is 25.0 .. 27.5 .. 26.0.
        assert_eq!(window.push(15 * minute, 16 * minute, 26.0), 2.5);
    }

    #[test]
    fn rack_delta_t_needs_both_sides_and_ignores_old_values() {
        let mut rack = RackTrack::default();
        rack.inlet.insert(1, (22.0, 0));
        assert_eq!(rack.delta_t(0), None);
        rack.outlet.insert(2, (34.0, 0));
        rack.outlet.insert(3, (36.0, 0));
        assert_eq!(rack.delta_t(1000), Some(13.0));
        assert_eq!(rack.delta_t(RACK_VALUE_MAX_AGE_MS + 1), None);
        rack.power.insert(4, (3500.0, 0));
        rack.power.insert(5, (1500.0, 0));
        assert_eq!(rack.power_kw(0), Some(5.0));
    }
}
