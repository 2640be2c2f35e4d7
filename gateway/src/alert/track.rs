//! What the engine remembers between readings of a series: its swing within a window (rate of
//! change), its recent readings for a trend (forecast). Rack and row measures are not the engine's:
//! `derive.rs` hands them on as samples.

use std::collections::VecDeque;
use std::time::Duration;

use crate::forecast::{Crossing, Recent};

/// A series' memory for one rule that needs one.
#[derive(Debug, Clone)]
pub enum Memory {
    Rate(RateWindow),
    Trend(Recent),
}

/// Keeps a reading in `recent` and returns the minutes until the trend over `window_ms` reaches
/// `limit`: `Some(Some(0.0))` when it is there, `Some(None)` when the trend is flat or falling,
/// `None` with too few readings to tell.
pub fn minutes_to_limit(
    recent: &mut Recent,
    window_ms: i64,
    timestamp_ms: i64,
    value: f64,
    limit: f64,
) -> Option<Option<f64>> {
    let window = Duration::from_millis(u64::try_from(window_ms).unwrap_or(0));
    recent.observe(timestamp_ms, value, window);
    let trend = recent.trend(window, timestamp_ms)?;
    Some(trend.crossing(limit).map(|crossing| match crossing {
        Crossing::Now => 0.0,
        Crossing::In(eta) => eta.as_secs_f64() / 60.0,
    }))
}

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
}
