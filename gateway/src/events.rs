//! Internal events: every counted occurrence is a typed event whose `emit` updates its metric and
//! writes its (rate-limited) log line together, so a counter and its message never drift apart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::decode::Rejection;
use crate::normalise::ReadingRejection;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabel {
    pub component: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    pub node: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertStateLabel {
    pub state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabel {
    pub receiver: String,
    pub result: &'static str,
}

/// The gateway's metrics, served at `/metrics` in the Prometheus text format.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub messages_received: Counter,
    pub messages_not_ours: Counter,
    pub messages_acknowledged: Counter,
    pub messages_rejected: Family<ReasonLabel, Counter>,
    pub readings_accepted: Counter,
    pub readings_rejected: Family<ReasonLabel, Counter>,
    pub duplicates_dropped: Counter,
    pub sequence_gaps: Counter,
    pub node_dropped: Counter,
    pub points_written: Counter,
    pub write_failures: Family<ReasonLabel, Counter>,
    pub points_dropped_by_database: Family<ReasonLabel, Counter>,
    pub write_seconds: Histogram,
    pub spool_bytes: Gauge,
    pub spool_pending_bytes: Gauge,
    pub spool_full: Counter,
    pub spool_failures: Family<ReasonLabel, Counter>,
    pub mqtt_connection_failures: Family<ReasonLabel, Counter>,
    pub dead_letters_sampled: Family<ReasonLabel, Counter>,
    pub component_up: Family<ComponentLabel, Gauge>,
    pub node_last_seen_seconds: Family<NodeLabel, Gauge>,
    pub observations_dropped: Counter,
    pub alert_latency_seconds: Histogram,
    pub alert_transitions: Family<AlertStateLabel, Counter>,
    pub alert_notifications: Family<ReceiverLabel, Counter>,
    pub alert_publish_failures: Counter,
    pub alert_fan_commands: Family<ReasonLabel, Counter>,
    pub alerts_firing: Gauge,
    log_limits: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rackwatch");
        let metrics = Metrics {
            messages_received: Counter::default(),
            messages_not_ours: Counter::default(),
            messages_acknowledged: Counter::default(),
            messages_rejected: Family::default(),
            readings_accepted: Counter::default(),
            readings_rejected: Family::default(),
            duplicates_dropped: Counter::default(),
            sequence_gaps: Counter::default(),
            node_dropped: Counter::default(),
            points_written: Counter::default(),
            write_failures: Family::default(),
            points_dropped_by_database: Family::default(),
            write_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            spool_bytes: Gauge::default(),
            spool_pending_bytes: Gauge::default(),
            spool_full: Counter::default(),
            spool_failures: Family::default(),
            mqtt_connection_failures: Family::default(),
            dead_letters_sampled: Family::default(),
            component_up: Family::default(),
            node_last_seen_seconds: Family::default(),
            observations_dropped: Counter::default(),
            // 100 µs to 3.3 s: the budget from a reading's arrival to its alert's publish is 10 ms.
            alert_latency_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            alert_transitions: Family::default(),
            alert_notifications: Family::default(),
            alert_publish_failures: Counter::default(),
            alert_fan_commands: Family::default(),
            alerts_firing: Gauge::default(),
            log_limits: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        registry.register(
            "messages_received",
            "Messages received from all sources",
            metrics.messages_received.clone(),
        );
        registry.register(
            "messages_not_ours",
            "Messages of another gateway's partition, acknowledged and left alone (gateway/CLUSTER.md)",
            metrics.messages_not_ours.clone(),
        );
        registry.register(
            "messages_acknowledged",
            "Messages acknowledged to the broker: durably spooled or dead-lettered",
            metrics.messages_acknowledged.clone(),
        );
        registry.register(
            "messages_rejected",
            "Messages rejected, by reason",
            metrics.messages_rejected.clone(),
        );
        registry.register(
            "readings_accepted",
            "Readings normalised and spooled",
            metrics.readings_accepted.clone(),
        );
        registry.register(
            "readings_rejected",
            "Readings kept out of the data, by reason",
            metrics.readings_rejected.clone(),
        );
        registry.register(
            "duplicates_dropped",
            "Messages dropped as redeliveries of a seen (boot, seq)",
            metrics.duplicates_dropped.clone(),
        );
        registry.register(
            "sequence_gaps",
            "Telemetry messages missing between sequence numbers",
            metrics.sequence_gaps.clone(),
        );
        registry.register(
            "node_dropped",
            "Messages nodes report dropped from their store-and-forward buffer",
            metrics.node_dropped.clone(),
        );
        registry.register(
            "points_written",
            "Points accepted by the database",
            metrics.points_written.clone(),
        );
        registry.register(
            "write_failures",
            "Failed database writes, by reason",
            metrics.write_failures.clone(),
        );
        registry.register(
            "points_dropped_by_database",
            "Points the database answered it did not store, by reason (gateway/README.md, \"Databases\")",
            metrics.points_dropped_by_database.clone(),
        );
        registry.register(
            "write_seconds",
            "Duration of successful database writes",
            metrics.write_seconds.clone(),
        );
        registry.register("spool_bytes", "Bytes in the spool", metrics.spool_bytes.clone());
        registry.register(
            "spool_pending_bytes",
            "Committed spool bytes not yet in the database",
            metrics.spool_pending_bytes.clone(),
        );
        registry.register(
            "spool_full",
            "Times the spool (its spool.max_mb, or the disk: ENOSPC, EDQUOT) was full and ingest stopped acknowledging",
            metrics.spool_full.clone(),
        );
        registry.register(
            "spool_failures",
            "Times the spool could not commit for another reason (folder removed, replaced or read-only; I/O error), by reason",
            metrics.spool_failures.clone(),
        );
        registry.register(
            "mqtt_connection_failures",
            "MQTT connection failures, by reason",
            metrics.mqtt_connection_failures.clone(),
        );
        registry.register(
            "dead_letters_sampled",
            "Dead letters counted but not written, by reason: over the per-reason rate or the file's size cap",
            metrics.dead_letters_sampled.clone(),
        );
        registry.register(
            "component_up",
            "1 when the component is ready (what /health/ready says), by component",
            metrics.component_up.clone(),
        );
        registry.register(
            "node_last_seen_seconds",
            "Unix time of each node's last telemetry",
            metrics.node_last_seen_seconds.clone(),
        );
        registry.register(
            "observations_dropped",
            "Observations the alert engine or dashboard could not take in time",
            metrics.observations_dropped.clone(),
        );
        registry.register(
            "alert_latency_seconds",
            "From an observation reaching the alert engine (status: its receipt) to its alert's MQTT publish",
            metrics.alert_latency_seconds.clone(),
        );
        registry.register(
            "alert_transitions",
            "Alert incident transitions, by new state",
            metrics.alert_transitions.clone(),
        );
        registry.register(
            "alert_notifications",
            "Webhook notification attempts, by receiver and result",
            metrics.alert_notifications.clone(),
        );
        registry.register(
            "alert_publish_failures",
            "Alert or command publishes the MQTT client could not queue",
            metrics.alert_publish_failures.clone(),
        );
        registry.register(
            "alert_fan_commands",
            "Automated cooling fan commands, by outcome",
            metrics.alert_fan_commands.clone(),
        );
        registry.register(
            "alerts_firing",
            "Alert incidents firing now",
            metrics.alerts_firing.clone(),
        );
        Metrics { registry, ..metrics }
    }

    /// Counts an alert transition and, when known, how long it took from the observation.
    pub fn record_alert_transition(&self, alert: &rackwatch_protocols::Alert, latency_us: Option<i64>) {
        let state = match alert.state {
            rackwatch_protocols::AlertState::Pending => "pending",
            rackwatch_protocols::AlertState::Firing => "firing",
            rackwatch_protocols::AlertState::Resolved => "resolved",
        };
        self.alert_transitions
            .get_or_create(&AlertStateLabel { state })
            .inc();
        if let Some(us) = latency_us {
            self.alert_latency_seconds.observe(us.max(0) as f64 / 1e6);
        }
    }

    /// Counts one webhook attempt.
    pub fn record_notification(&self, receiver: &str, result: crate::alert::engine::DeliveryResult) {
        let result = match result {
            crate::alert::engine::DeliveryResult::Delivered => "delivered",
            crate::alert::engine::DeliveryResult::Refused => "refused",
            crate::alert::engine::DeliveryResult::Failed => "failed",
        };
        self.alert_notifications
            .get_or_create(&ReceiverLabel {
                receiver: receiver.to_owned(),
                result,
            })
            .inc();
    }

    /// Every metric in the OpenMetrics text format (`application/openmetrics-text; version=1.0.0`).
    pub fn render_openmetrics(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Every metric in the Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), which is what
    /// Prometheus and `promtool check metrics` read without negotiation. It differs from the
    /// OpenMetrics the encoder writes in three places: a counter's `# HELP`/`# TYPE` name is its
    /// sample's (`x_total`), there is no `# UNIT`, and no `# EOF`.
    pub fn render(&self) -> String {
        to_text_format(&self.render_openmetrics())
    }

    /// True at most once a second per `key`; returns how many were suppressed since the last one.
    fn should_log(&self, key: &'static str) -> Option<u64> {
        self.should_log_every(key, Duration::from_secs(1))
    }

    /// True at most once per `period` per `key`; returns how many were suppressed since the last one.
    fn should_log_every(&self, key: &'static str, period: Duration) -> Option<u64> {
        let mut limits = self
            .log_limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        // The first occurrence always logs (an `Instant` in the past may not exist shortly after boot).
        let mut first = false;
        let entry = limits.entry(key).or_insert_with(|| {
            first = true;
            (now, 0)
        });
        if first || now.duration_since(entry.0) >= period {
            let suppressed = entry.1;
            *entry = (now, 0);
            Some(suppressed)
        } else {
            entry.1 += 1;
            None
        }
    }
}

/// OpenMetrics text -> Prometheus text format 0.0.4 (see [`Metrics::render`]).
fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match header {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) { "_total" } else { "" };
                text.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            }
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
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
    pub rejection: &'a Rejection,
    pub topic: Option<&'a str>,
}

impl MessageRejected<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let reason = self.rejection.reason.as_str();
        metrics
            .messages_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
        if let Some(suppressed) = metrics.should_log(reason) {
            tracing::warn!(
                reason,
                node = self.rejection.node.as_deref().unwrap_or("-"),
                topic = self.topic.unwrap_or("-"),
                suppressed,
                "message rejected: {}",
                self.rejection.detail
            );
        }
    }
}

/// One reading of a good message was kept out of the data.
#[derive(Debug)]
pub struct ReadingRejected<'a> {
    pub node: &'a str,
    pub channel: &'a str,
    pub reason: ReadingRejection,
}

impl ReadingRejected<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let reason = self.reason.as_str();
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

/// A webhook delivery failed; the engine tries again after a back-off.
#[derive(Debug)]
pub struct NotificationFailed<'a> {
    pub receiver: &'a str,
    pub detail: &'a str,
}

impl NotificationFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        // Counted by `record_notification` with the attempt's result.
        if let Some(suppressed) = metrics.should_log("alert_notification_failed") {
            tracing::warn!(
                receiver = self.receiver,
                suppressed,
                "alert notification failed, will retry: {}",
                self.detail
            );
        }
    }
}

/// An alert or a command could not be handed to the MQTT client (its queue is full while the broker
/// is away); the retained state is published again on reconnect.
#[derive(Debug)]
pub struct AlertPublishFailed<'a> {
    pub detail: &'a str,
}

impl AlertPublishFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.alert_publish_failures.inc();
        if let Some(suppressed) = metrics.should_log("alert_publish_failed") {
            tracing::error!(suppressed, "alert MQTT publish failed: {}", self.detail);
        }
    }
}

/// What became of an automated cooling fan command.
#[derive(Debug)]
pub struct FanCommandOutcome<'a> {
    pub outcome: &'a crate::alert::cooling::FanOutcome,
}

impl FanCommandOutcome<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        use crate::alert::cooling::FanOutcome;
        let reason = match self.outcome {
            FanOutcome::Acked(_) => "acked",
            FanOutcome::Refused(..) => "refused",
            FanOutcome::Unanswered(_) => "unanswered",
        };
        metrics
            .alert_fan_commands
            .get_or_create(&ReasonLabel { reason })
            .inc();
        match self.outcome {
            FanOutcome::Acked(p) => {
                tracing::info!(node = %p.node, fan = p.fan, duty = p.duty, "fan command acknowledged");
            }
            FanOutcome::Refused(p, result) => {
                tracing::warn!(node = %p.node, fan = p.fan, ?result, "fan command refused by the node");
            }
            FanOutcome::Unanswered(p) => {
                if let Some(suppressed) = metrics.should_log("fan_command_unanswered") {
                    tracing::error!(
                        node = %p.node,
                        fan = p.fan,
                        attempts = p.attempts,
                        suppressed,
                        "fan command never acknowledged; automated cooling gave up on this node"
                    );
                }
            }
        }
    }
}
