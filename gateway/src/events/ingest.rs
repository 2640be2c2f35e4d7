//! Events of the way in: the MQTT connection, rejected messages and readings, sequence gaps, and the
//! spool refusing a commit.

use std::time::Duration;

use super::metrics::{Metrics, ReasonLabel};

/// The MQTT connection failed; the source reconnects after a back-off.
#[derive(Debug)]
pub struct MqttConnectionFailed<'a> {
    pub reason: &'static str,
    /// `host:port` of the broker.
    pub broker: &'a str,
    pub detail: &'a str,
    pub in_a_row: u32,
    pub retry_in: Duration,
}

impl MqttConnectionFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics
            .mqtt_connection_failures
            .get_or_create(&ReasonLabel { reason: self.reason })
            .inc();
        if let Some(suppressed) = metrics.should_log("mqtt_connection_failed") {
            tracing::warn!(
                reason = self.reason,
                in_a_row = self.in_a_row,
                retry_in_ms = self.retry_in.as_millis() as u64,
                suppressed,
                "MQTT connection to {}: {}",
                self.broker,
                self.detail
            );
        }
    }
}

/// A whole message was rejected (and dead-lettered).
#[derive(Debug)]
pub struct MessageRejected<'a> {
    /// The rejection's metric label (`malformed`, `oversize`, `wrong_topic`, ...).
    pub reason: &'static str,
    pub node: Option<&'a str>,
    pub detail: &'a str,
    pub topic: Option<&'a str>,
}

impl MessageRejected<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let reason = self.reason;
        metrics
            .messages_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
        if let Some(suppressed) = metrics.should_log(reason) {
            tracing::warn!(
                reason,
                node = self.node.unwrap_or("-"),
                topic = self.topic.unwrap_or("-"),
                suppressed,
                "message rejected: {}",
                self.detail
            );
        }
    }
}

/// One reading of a good message was kept out of the data.
#[derive(Debug)]
pub struct ReadingRejected<'a> {
    pub node: &'a str,
    pub channel: &'a str,
    /// The rejection's metric label (`implausible`, `stale`, ...).
    pub reason: &'static str,
}

impl ReadingRejected<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let reason = self.reason;
        metrics
            .readings_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
        if let Some(suppressed) = metrics.should_log(reason) {
            tracing::warn!(
                reason,
                node = self.node,
                channel = self.channel,
                suppressed,
                "reading rejected"
            );
        }
    }
}

/// A node's sequence numbers jumped: messages are missing.
#[derive(Debug)]
pub struct SequenceGap<'a> {
    pub node: &'a str,
    pub missing: u32,
}

impl SequenceGap<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.sequence_gaps.inc_by(u64::from(self.missing));
        if let Some(suppressed) = metrics.should_log("sequence_gap") {
            tracing::warn!(
                node = self.node,
                missing = self.missing,
                suppressed,
                "telemetry sequence gap"
            );
        }
    }
}

/// The spool refused a commit for another reason than space: counted once per episode.
#[derive(Debug)]
pub struct SpoolFailed<'a> {
    pub reason: &'static str,
    pub detail: &'a str,
}

impl SpoolFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics
            .spool_failures
            .get_or_create(&ReasonLabel { reason: self.reason })
            .inc();
        if let Some(suppressed) = metrics.should_log("spool_failed") {
            tracing::error!(
                reason = self.reason,
                suppressed,
                "{}; messages stay unacknowledged at the broker",
                self.detail
            );
        }
    }
}

/// The spool is full (its limit or the disk): ingest stops acknowledging. Counted once per episode.
#[derive(Debug)]
pub struct SpoolFull<'a> {
    pub detail: &'a str,
}

impl SpoolFull<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.spool_full.inc();
        if let Some(suppressed) = metrics.should_log("spool_full") {
            tracing::error!(
                suppressed,
                "{}; messages stay unacknowledged at the broker",
                self.detail
            );
        }
    }
}
