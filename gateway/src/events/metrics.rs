//! The gateway's metrics: one registry, its label sets, the two text formats `/metrics` serves, and
//! the log rate limit every event shares.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
    pub history_samples_recorded: Counter,
    pub history_samples_dropped: Family<ReasonLabel, Counter>,
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
    pub firmware_update_failures: Family<ReasonLabel, Counter>,
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
            history_samples_recorded: Counter::default(),
            history_samples_dropped: Family::default(),
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
            firmware_update_failures: Family::default(),
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
            "history_samples_recorded",
            "Samples recorded in the gateway's own history (when it is the spool's sink)",
            metrics.history_samples_recorded.clone(),
        );
        registry.register(
            "history_samples_dropped",
            "Samples the gateway's own history could not keep, by reason (unavailable, unreadable)",
            metrics.history_samples_dropped.clone(),
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
        registry.register(
            "firmware_update_failures",
            "Nodes whose firmware update failed, by reason (refusal, rollback, timeout)",
            metrics.firmware_update_failures.clone(),
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

    /// Counts one webhook attempt by its result (`delivered`, `refused`, `failed`).
    pub fn record_notification(&self, receiver: &str, result: &'static str) {
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
    pub(super) fn should_log(&self, key: &'static str) -> Option<u64> {
        self.should_log_every(key, Duration::from_secs(1))
    }

    /// True at most once per `period` per `key`; returns how many were suppressed since the last one.
    pub(super) fn should_log_every(&self, key: &'static str, period: Duration) -> Option<u64> {
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
