//! Minute buckets rolled up in memory before they reach the store.
//!
//! A series reporting every 10 s puts 6 samples in each minute. Writing each sample to redb cost
//! a B-tree get and insert per sample and resolution (46 µs of CPU per reading at 10,000 readings/s,
//! most of it opening the series' tables); rolling the samples up here first writes each minute
//! bucket once, and the hour bucket as the merge of its minutes (exact: [`Bucket::merge`] adds
//! sums and counts), so a batch costs one table visit per series, not one per sample.
//!
//! Readers see what is held here merged into what is stored ([`merge_into`]), so a chart never
//! lags behind the store's flush interval.

use std::collections::HashMap;

use super::bucket::{Bucket, Resolution};

/// The minute buckets of each series not yet written to the store.
#[derive(Debug, Default)]
pub struct Rollup {
    series: HashMap<Box<str>, Minutes>,
    samples: usize,
}

/// One series' minutes, oldest first in the usual case (samples arrive in time order).
#[derive(Debug)]
struct Minutes {
    /// The minute the last sample fell in.
    current: Bucket,
    /// Minutes left behind by `current` (usually one per flush: the minute a flush interval
    /// crossed), or ahead of it when a late sample arrived.
    others: Vec<Bucket>,
}

impl Minutes {
    fn add(&mut self, start_ms: i64, value: f64) {
        let sample = Bucket::of_sample(start_ms, value);
        if self.current.start_ms == start_ms {
            self.current.merge(&sample);
        } else if let Some(other) = self.others.iter_mut().find(|b| b.start_ms == start_ms) {
            other.merge(&sample);
        } else {
            self.others.push(std::mem::replace(&mut self.current, sample));
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Bucket> {
        self.others.iter().chain(std::iter::once(&self.current))
    }
}

impl Rollup {
    /// Adds one finite sample to its series' minute. The caller checks the key and the value.
    pub fn add(&mut self, key: &str, ts_ms: i64, value: f64) {
        let start_ms = Resolution::Minute.bucket_start(ts_ms);
        self.samples += 1;
        match self.series.get_mut(key) {
            Some(minutes) => minutes.add(start_ms, value),
            None => {
                self.series.insert(
                    key.into(),
                    Minutes {
                        current: Bucket::of_sample(start_ms, value),
                        others: Vec::new(),
                    },
                );
            }
        }
    }

    /// Samples held.
    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// Every series with its minute buckets, oldest first, in key order (the store's B-tree order).
    /// Only the order is collected up front (a pointer pair per series); each series' buckets are
    /// gathered as it is written, so a flush of 100,000 series holds no second copy of them all.
    pub fn series(&self) -> impl Iterator<Item = (&str, Vec<Bucket>)> {
        let mut order: Vec<(&str, &Minutes)> = self
            .series
            .iter()
            .map(|(key, minutes)| (&**key, minutes))
            .collect();
        order.sort_unstable_by_key(|(key, _)| *key);
        order.into_iter().map(|(key, minutes)| {
            let mut buckets: Vec<Bucket> = minutes.iter().copied().collect();
            buckets.sort_by_key(|b| b.start_ms);
            (key, buckets)
        })
    }

    /// Forgets what is held (once it is written, or given up on).
    pub fn clear(&mut self) {
        self.series.clear();
        self.samples = 0;
    }

    /// The buckets of `key` at `resolution` whose start lies in `[from_ms, to_ms)`, oldest first.
    pub fn range(&self, key: &str, from_ms: i64, to_ms: i64, resolution: Resolution) -> Vec<Bucket> {
        let mut buckets = Vec::new();
        if let Some(minutes) = self.series.get(key) {
            merge_into(&mut buckets, resolution, minutes.iter().copied());
        }
        buckets.retain(|b| (from_ms..to_ms).contains(&b.start_ms));
        buckets
    }
}

/// Merges minute buckets into `buckets` (sorted by start) at `resolution`: each minute joins the
/// bucket of `resolution` that holds it, or opens it.
pub fn merge_into(buckets: &mut Vec<Bucket>, resolution: Resolution, minutes: impl Iterator<Item = Bucket>) {
    for minute in minutes {
        let start_ms = resolution.bucket_start(minute.start_ms);
        match buckets.binary_search_by_key(&start_ms, |b| b.start_ms) {
            Ok(at) => {
                if let Some(bucket) = buckets.get_mut(at) {
                    bucket.merge(&minute);
                }
            }
            Err(at) => buckets.insert(at, Bucket { start_ms, ..minute }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    #[test]
    fn samples_roll_up_into_their_minutes_and_hours_even_out_of_order() {
        let mut rollup = Rollup::default();
        for (ts, value) in [
            (5_000, 20.0),
            (MINUTE + 1, 30.0),
            (59_999, 22.0),
            (MINUTE + 2, 10.0),
        ] {
            rollup.add("r07/inlet", ts, value);
        }
        rollup.add("r08/inlet", 0, 1.0);
        assert_eq!(rollup.samples(), 5);
        let minutes = rollup.range("r07/inlet", 0, 2 * MINUTE, Resolution::Minute);
        let seen: Vec<_> = minutes
            .iter()
            .map(|b| (b.start_ms, b.min, b.max, b.count))
            .collect();
        assert_eq!(seen, vec![(0, 20.0, 22.0, 2), (MINUTE, 10.0, 30.0, 2)]);
        let hours = rollup.range("r07/inlet", 0, 3_600_000, Resolution::Hour);
        assert_eq!(hours.len(), 1);
        assert_eq!(
            (hours[0].min, hours[0].max, hours[0].sum, hours[0].count),
            (10.0, 30.0, 82.0, 4)
        );
        assert!(
            rollup
                .range("r07/inlet", MINUTE, 2 * MINUTE, Resolution::Minute)
                .len()
                == 1
        );
        let keys: Vec<_> = rollup.series().map(|(key, b)| (key, b.len())).collect();
        assert_eq!(keys, vec![("r07/inlet", 2), ("r08/inlet", 1)]);
        rollup.clear();
        assert!(
            rollup.is_empty()
                && rollup
                    .range("r07/inlet", 0, MINUTE, Resolution::Minute)
                    .is_empty()
        );
    }
}
