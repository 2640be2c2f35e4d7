//! Events of the way out: database writes that failed, a database that refuses everything, points it
//! dropped.

use std::time::Duration;

use super::metrics::{Metrics, ReasonLabel};

/// A database write failed; it will be retried (or dead-lettered when refused).
#[derive(Debug)]
pub struct WriteFailed<'a> {
    pub reason: &'static str,
    pub detail: &'a str,
    pub retry_in: Option<Duration>,
}

impl WriteFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics
            .write_failures
            .get_or_create(&ReasonLabel { reason: self.reason })
            .inc();
        if let Some(suppressed) = metrics.should_log(self.reason) {
            match self.retry_in {
                Some(delay) => tracing::warn!(
                    reason = self.reason,
                    suppressed,
                    retry_in_ms = delay.as_millis() as u64,
                    "database write failed: {}",
                    self.detail
                ),
                None => tracing::error!(
                    reason = self.reason,
                    suppressed,
                    "database refused points, dead-lettered: {}",
                    self.detail
                ),
            }
        }
    }
}

/// The database refuses every write until an operator acts (credentials, a missing database): the
/// sink keeps the spool and asks again after `retry_in`. Logged once a minute, not per attempt.
#[derive(Debug)]
pub struct DatabaseHalted<'a> {
    pub reason: &'static str,
    pub detail: &'a str,
    pub retry_in: Duration,
}

impl DatabaseHalted<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics
            .write_failures
            .get_or_create(&ReasonLabel { reason: self.reason })
            .inc();
        if let Some(suppressed) = metrics.should_log_every("database_halted", Duration::from_secs(60)) {
            tracing::error!(
                reason = self.reason,
                suppressed,
                retry_in_ms = self.retry_in.as_millis() as u64,
                "database refuses writes, readings stay in the spool: {}",
                self.detail
            );
        }
    }
}

/// The database stored a batch but not these points (a field type conflict, lines it could not
/// parse, points older than its retention policy).
#[derive(Debug)]
pub struct PointsDroppedByDatabase<'a> {
    pub reason: &'static str,
    pub count: u64,
    pub detail: &'a str,
}

impl PointsDroppedByDatabase<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics
            .points_dropped_by_database
            .get_or_create(&ReasonLabel { reason: self.reason })
            .inc_by(self.count);
        if let Some(suppressed) = metrics.should_log(self.reason) {
            tracing::warn!(
                reason = self.reason,
                count = self.count,
                suppressed,
                "database dropped points: {}",
                self.detail
            );
        }
    }
}
