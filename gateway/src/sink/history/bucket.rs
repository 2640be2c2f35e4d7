//! One rollup bucket: the min, max, sum and count of the samples that fell in its interval.
//!
//! The mean is kept as `sum` and `count`, not as a mean, so two buckets merge exactly
//! (`sum + sum`, `count + count`): an hour is the merge of its minutes, a chart point the merge
//! of whatever buckets it spans.

/// The width of a bucket. Minutes serve the recent charts (1 h, 24 h), hours the long ones
/// (7 d, 30 d) and the 13-month report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    pub const fn width_ms(self) -> i64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
        }
    }

    /// The start of the bucket that holds `ts_ms`: a sample at exactly 12:01:00.000 opens the
    /// 12:01 bucket, one at 12:00:59.999 is the last of the 12:00 bucket.
    pub const fn bucket_start(self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.width_ms()) * self.width_ms()
    }

    /// The store's table of this resolution's buckets.
    pub(super) const fn table_name(self) -> &'static str {
        match self {
            Resolution::Minute => "minutes",
            Resolution::Hour => "hours",
        }
    }
}

/// The rollup of one series over `[start_ms, start_ms + width)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start_ms: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
}

/// How a bucket is stored: `(min, max, sum, count)`, the key being its start.
pub(super) type StoredBucket = (f64, f64, f64, u64);

impl Bucket {
    /// A bucket holding one sample.
    pub fn of_sample(start_ms: i64, value: f64) -> Self {
        Self {
            start_ms,
            min: value,
            max: value,
            sum: value,
            count: 1,
        }
    }

    pub fn mean(&self) -> f64 {
        // count is never 0: a bucket exists only once a sample fell in it.
        self.sum / self.count.max(1) as f64
    }

    /// Adds the samples of `other` to this bucket (the start of `self` is kept).
    pub fn merge(&mut self, other: &Bucket) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.count += other.count;
    }

    pub(super) fn from_stored(start_ms: i64, (min, max, sum, count): StoredBucket) -> Self {
        Self {
            start_ms,
            min,
            max,
            sum,
            count,
        }
    }

    pub(super) fn to_stored(self) -> StoredBucket {
        (self.min, self.max, self.sum, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_on_a_minute_boundary_opens_the_next_bucket() {
        assert_eq!(Resolution::Minute.bucket_start(120_000), 120_000);
        assert_eq!(Resolution::Minute.bucket_start(119_999), 60_000);
        assert_eq!(Resolution::Hour.bucket_start(3_600_000 + 59_999), 3_600_000);
        assert_eq!(Resolution::Minute.bucket_start(-1), -60_000);
    }

    #[test]
    fn merging_keeps_min_max_and_an_exact_mean() {
        let mut bucket = Bucket::of_sample(0, 21.0);
        bucket.merge(&Bucket::of_sample(0, 25.0));
        bucket.merge(&Bucket {
            start_ms: 60_000,
            min: 19.5,
            max: 30.0,
            sum: 49.5,
            count: 2,
        });
        assert_eq!((bucket.min, bucket.max, bucket.count), (19.5, 30.0, 4));
        assert_eq!(bucket.mean(), 23.875);
        assert_eq!(bucket.start_ms, 0);
    }
}
