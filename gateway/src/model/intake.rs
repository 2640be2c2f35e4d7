//! The queue from the MQTT source to ingest, bounded by time rather than by count.
//!
//! A reading that waits behind thousands of others reaches the alert engine late: under a flood a
//! 4,096-message queue held 0.1–0.4 s of work. So the source stops reading while the oldest message
//! it handed over and ingest has not yet taken is older than `mqtt.max_queue_delay`; the broker keeps
//! the rest (QoS 1), and TCP slows it down. Ingest says how many MQTT messages it has taken; the
//! source keeps when each of its messages arrived.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// What ingest tells the MQTT source: how many of its messages were taken off the queue.
#[derive(Debug, Default)]
pub struct Intake {
    taken: AtomicU64,
    took: Notify,
}

impl Intake {
    /// Ingest took `count` MQTT messages off the queue.
    pub fn took(&self, count: usize) {
        if count > 0 {
            self.taken.fetch_add(count as u64, Ordering::Relaxed);
            self.took.notify_one();
        }
    }

    /// Resolves once ingest takes messages (at once if it took some since the last call).
    pub async fn taken(&self) {
        self.took.notified().await;
    }
}

/// The source's side: the arrival of every message handed to ingest and not yet taken.
#[derive(Debug, Default)]
pub struct Queued {
    arrivals: VecDeque<Instant>,
    handed: u64,
}

impl Queued {
    pub fn handed(&mut self, arrived: Instant) {
        self.arrivals.push_back(arrived);
        self.handed += 1;
    }

    /// How long the oldest message ingest has not taken has waited.
    pub fn oldest_wait(&mut self, intake: &Intake, now: Instant) -> Duration {
        let taken = intake.taken.load(Ordering::Relaxed);
        let untaken = self.handed.saturating_sub(taken);
        while self.arrivals.len() as u64 > untaken {
            self.arrivals.pop_front();
        }
        self.arrivals
            .front()
            .map_or(Duration::ZERO, |arrived| now.saturating_duration_since(*arrived))
    }

    /// Messages handed over and not yet taken.
    pub fn len(&self) -> usize {
        self.arrivals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.arrivals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_wait_is_that_of_the_first_message_not_taken() {
        let intake = Intake::default();
        let mut queued = Queued::default();
        let start = Instant::now();
        for ms in 0..5 {
            queued.handed(start + Duration::from_millis(ms));
        }
        let now = start + Duration::from_millis(10);
        assert_eq!(queued.oldest_wait(&intake, now), Duration::from_millis(10));
        intake.took(3);
        assert_eq!(queued.oldest_wait(&intake, now), Duration::from_millis(7));
        assert_eq!(queued.len(), 2);
        intake.took(2);
        assert_eq!(queued.oldest_wait(&intake, now), Duration::ZERO);
        assert!(queued.is_empty());
    }
}
