//! Store and forward: every sampling round becomes a [`Record`] in a bounded ring in RAM, and the
//! session publishes records oldest first whenever the broker is reachable. While it is not, the ring
//! fills; when it is full the oldest record is dropped and counted, and the count goes out in the
//! `dropped` field of the next telemetry (protocols/README.md, "Telemetry").
//!
//! A record keeps its original sequence number and uptime, so a backlog sent after an outage dates
//! every reading to when it was sampled. It stores compact values (channel index, status, `f32`), not
//! JSON: 112 bytes a round for up to [`MAX_CHANNELS`] channels, against 300 to 600 bytes of JSON.

use rackwatch_protocols::ReadingStatus;

/// The most readings a record holds, so the most channels one node samples ([`crate::sampling`]
/// re-exports it under that name).
pub const MAX_CHANNELS: usize = 12;

/// Records the ring holds by default: 128 × 112 bytes = 14 KiB, i.e. 21 minutes 20 seconds at the
/// default 10 s interval.
pub const DEFAULT_RING_CAPACITY: usize = 128;

/// One channel's value in a [`Record`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredReading {
    /// Index of the channel in the node's channel list.
    pub channel: u8,
    pub status: ReadingStatus,
    /// Calibrated and filtered; meaningless unless `status` is `Ok`.
    pub value: f32,
}

/// One sampling round, waiting to be published.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The telemetry sequence number, assigned when sampled.
    pub seq: u32,
    /// Uptime when sampled.
    pub uptime_ms: u64,
    pub readings: heapless::Vec<StoredReading, MAX_CHANNELS>,
}

/// The bounded ring of records not yet handed to the session.
#[derive(Debug, Clone)]
pub struct Ring<const N: usize> {
    records: heapless::Deque<Record, N>,
    /// Records dropped since the count was last taken by [`Ring::take_dropped`].
    dropped: u32,
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Ring {
            records: heapless::Deque::new(),
            dropped: 0,
        }
    }
}

impl<const N: usize> Ring<N> {
    /// Appends a record; when full, the oldest is dropped first and counted.
    pub fn push(&mut self, record: Record) {
        if self.records.is_full() && self.records.pop_front().is_some() {
            self.dropped = self.dropped.saturating_add(1);
        }
        // Cannot fail: room was made above (or N is 0 and the record is dropped below).
        if self.records.push_back(record).is_err() {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// The oldest record, leaving it in the ring.
    pub fn oldest(&self) -> Option<&Record> {
        self.records.front()
    }

    /// Removes and returns the oldest record.
    pub fn pop_oldest(&mut self) -> Option<Record> {
        self.records.pop_front()
    }

    /// How many records were dropped since the last call, resetting the count.
    pub fn take_dropped(&mut self) -> u32 {
        core::mem::take(&mut self.dropped)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub const fn capacity(&self) -> usize {
        N
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn record(seq: u32) -> Record {
        Record {
            seq,
            uptime_ms: u64::from(seq) * 1000,
            readings: heapless::Vec::new(),
        }
    }

    #[test]
    fn overflow_drops_the_oldest_and_counts_them() {
        let mut ring = Ring::<4>::default();
        for seq in 0..7 {
            ring.push(record(seq));
        }
        assert_eq!(ring.take_dropped(), 3);
        assert_eq!(ring.take_dropped(), 0);
        let left: heapless::Vec<u32, 4> = core::iter::from_fn(|| ring.pop_oldest().map(|r| r.seq)).collect();
        assert_eq!(left.as_slice(), &[3, 4, 5, 6]);
    }

    #[test]
    fn default_ring_holds_ten_minutes_at_the_default_interval() {
        let minutes = DEFAULT_RING_CAPACITY as u64 * u64::from(crate::node::DEFAULT_INTERVAL_MS) / 60_000;
        assert!(minutes >= 10, "{minutes} minutes");
        // 112 bytes on the 32-bit target; the vector's length is 8 bytes wide on a 64-bit host.
        assert!(size_of::<Record>() <= 112 + 8);
    }
}
