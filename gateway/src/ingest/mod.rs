//! The ingest stage: decode, normalise, derive, stage for the spool. Its own thread, beside the
//! committer's ([`commit`]), which makes what ingest stages durable and then acknowledges it: many
//! messages, one fdatasync (group commit), then their acks. Ingest never waits for the disk, so a
//! reading reaches the alert engine as soon as it is decoded.

pub mod commit;
mod observers;

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rackwatch_protocols::{Alert, OtaResult};
use tokio::sync::mpsc;

use crate::cluster::Partition;
use crate::decode::{Decoded, RejectReason, Rejection, decode};
use crate::derive::Derive;
use crate::events::{
    FirmwareUpdateFailed, MessageRejected, Metrics, NodeLabel, ReadingRejected, SequenceGap, failure_reason,
};
use crate::model::{Incoming, Intake, Observation, Route, Sample};
use crate::normalise::{Normaliser, Output, Verdict};
use crate::schema;
use crate::spool::deadletter::DeadLetters;
use commit::Staged;
pub use observers::{ObservationSender, Observers};

/// Most messages staged for one group commit.
const MAX_BATCH: usize = 2048;
/// Messages taken off the queue at a time: after each chunk the alert engine sees its readings,
/// so none waits for a whole batch to be processed first (a chunk is ~0.3 ms of work in a flood).
const CHUNK: usize = 64;
/// With no message for this long, ingest hands over the gathered observations and any alert
/// transition kept since the last batch.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// What woke the ingest loop.
enum Wake {
    /// How many messages were taken (0: every source is gone).
    Messages(usize),
    /// An alert transition (boxed: it is far larger than a count), or `None` once the alert engine
    /// is gone.
    Alert(Option<Box<Alert>>),
}

/// Everything the ingest thread owns.
#[derive(Debug)]
pub struct Ingest {
    pub site: String,
    pub normaliser: Normaliser,
    /// The rack and row measures of what the normaliser accepted.
    pub derive: Derive,
    /// The committer's end: what ingest stages goes there, at most
    /// [`commit::STAGED_BATCHES`] batches ahead of the disk.
    pub staged: SyncSender<Staged>,
    pub dead_letters: Arc<Mutex<DeadLetters>>,
    /// Told how many MQTT messages ingest took off the queue (the source bounds the queue by time).
    pub intake: Arc<Intake>,
    pub metrics: Arc<Metrics>,
    pub observers: Observers,
    /// This gateway's partition of the site, when it shares the site with others.
    pub partition: Option<Partition>,
    /// How long a batch with serial messages waits for more to share its fdatasync
    /// (`spool.commit_linger`).
    pub commit_linger: Duration,
    /// What is staged for the next commit.
    pub batch: Staged,
}

impl Ingest {
    /// Processes messages until every sender of `incoming` is gone, and this gateway's own alert
    /// transitions from `alerts` (spooled like readings: the `alert` measurement). Runs on ingest's
    /// own thread (`Handle::block_on`): the runtime only lends its timer, for the linger.
    pub async fn run(mut self, mut incoming: mpsc::Receiver<Incoming>, mut alerts: mpsc::Receiver<Alert>) {
        let mut batch = Vec::with_capacity(CHUNK);
        let mut out = Output::default();
        let mut samples = Vec::new();
        let mut observations = Vec::new();
        let mut alerts_open = true;
        loop {
            let received = tokio::time::timeout(IDLE_CHECK, async {
                tokio::select! {
                    biased;
                    taken = incoming.recv_many(&mut batch, CHUNK) => Wake::Messages(taken),
                    alert = alerts.recv(), if alerts_open => Wake::Alert(alert.map(Box::new)),
                }
            });
            match received.await {
                Ok(Wake::Messages(0)) => break,
                Ok(Wake::Messages(_)) => {}
                // A transition rides with the next batch of messages, or goes on its own once
                // ingest has been idle for `IDLE_CHECK`: no commit of its own while messages flow.
                Ok(Wake::Alert(Some(alert))) => {
                    self.keep_alert(&alert);
                    continue;
                }
                Ok(Wake::Alert(None)) => {
                    alerts_open = false;
                    continue;
                }
                Err(_) => {
                    self.observers.flush();
                    if !self.hand_over() {
                        return;
                    }
                    continue;
                }
            }
            // One batch: the messages taken until the queue is empty share one commit. The MQTT
            // source gathers its messages already (`mqtt.read_interval`); a serial trickle is
            // gathered here, for up to `spool.commit_linger`. Each chunk is processed, and its
            // readings shown to the alert engine, as soon as it is taken.
            let linger_until = tokio::time::Instant::now() + self.commit_linger;
            let mut taken = 0;
            let mut linger = false;
            loop {
                taken += batch.len();
                let mqtt = batch
                    .iter()
                    .filter(|m| matches!(m.route, Route::Mqtt { .. }))
                    .count();
                self.intake.took(mqtt);
                linger |= mqtt < batch.len();
                for message in batch.drain(..) {
                    self.process(&message, &mut out, &mut samples, &mut observations);
                    self.batch.acks.extend(message.ack.clone());
                }
                while let Ok(alert) = alerts.try_recv() {
                    self.keep_alert(&alert);
                }
                self.observe(&mut samples, &mut observations);
                let room = MAX_BATCH.saturating_sub(taken).min(CHUNK);
                if room == 0 {
                    break;
                }
                while batch.len() < room {
                    match incoming.try_recv() {
                        Ok(message) => batch.push(message),
                        Err(_) => break,
                    }
                }
                if !batch.is_empty() {
                    continue;
                }
                if !linger || self.commit_linger.is_zero() {
                    break;
                }
                match tokio::time::timeout_at(linger_until, incoming.recv_many(&mut batch, room)).await {
                    Ok(n) if n > 0 => {}
                    // The linger is over, or the channel closed (shutdown): commit what we have.
                    _ => break,
                }
            }
            if !self.hand_over() {
                return;
            }
        }
        self.hand_over();
    }

    /// Hands the staged batch to the committer, waiting while it is [`commit::STAGED_BATCHES`]
    /// behind. False when the committer is gone (shutdown with the spool refusing): then nothing
    /// more is acknowledged.
    fn hand_over(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.staged.send(std::mem::take(&mut self.batch)).is_ok()
    }

    /// Hands what was just processed to the alert engine and the dashboard, before the spool's
    /// fdatasync: an alert must not wait for the disk. If the gateway dies before the commit, the
    /// broker delivers the messages again and the engine sees the same readings twice, which changes
    /// nothing.
    fn observe(&mut self, samples: &mut Vec<Sample>, observations: &mut Vec<Observation>) {
        if !self.observers.is_empty() {
            if !samples.is_empty() {
                observations.push(Observation::Samples(Arc::from(std::mem::take(samples))));
            }
            for observation in observations.drain(..) {
                self.observers.send(observation);
            }
        }
        samples.clear();
        observations.clear();
    }

    fn process(
        &mut self,
        message: &Incoming,
        out: &mut Output,
        samples: &mut Vec<Sample>,
        observations: &mut Vec<Observation>,
    ) {
        self.metrics.messages_received.inc();
        if let Some(partition) = &self.partition
            && !partition.owns_route(&message.route)
        {
            // Acknowledged with the batch and left to its gateway: only partition 0's wildcard and
            // the status and ack subscriptions bring these here.
            self.metrics.messages_not_ours.inc();
            return;
        }
        let decoded = match decode(&self.site, &message.route, &message.payload) {
            Ok(decoded) => decoded,
            Err(rejection) => return self.reject(message, &rejection),
        };
        match decoded {
            Decoded::Telemetry(telemetry) => {
                out.clear();
                let (verdict, mark) = self.normaliser.telemetry(&telemetry, message.received_ms, out);
                match verdict {
                    Verdict::Duplicate => {
                        self.metrics.duplicates_dropped.inc();
                        return;
                    }
                    Verdict::Stale => {
                        let rejection = Rejection {
                            reason: RejectReason::Stale,
                            node: Some(telemetry.node.to_string()),
                            detail: "dated before normalise.max_age".into(),
                        };
                        return self.reject(message, &rejection);
                    }
                    Verdict::Accepted { gap } => {
                        if gap > 0 {
                            SequenceGap {
                                node: &telemetry.node,
                                missing: gap,
                            }
                            .emit(&self.metrics);
                        }
                    }
                }
                out.points += self.derive.derive(&mut out.samples, &mut out.lines);
                if telemetry.dropped > 0 {
                    self.metrics.node_dropped.inc_by(u64::from(telemetry.dropped));
                    tracing::warn!(node = %telemetry.node, dropped = telemetry.dropped, "node reports readings lost from its buffer");
                }
                for (channel, _, reason) in &out.rejected {
                    ReadingRejected {
                        node: &telemetry.node,
                        channel,
                        reason: reason.as_str(),
                    }
                    .emit(&self.metrics);
                }
                if !out.rejected.is_empty() {
                    self.dead_letter(
                        message,
                        "reading_rejected",
                        Some(&telemetry.node),
                        "some readings were kept out of the data",
                    );
                }
                self.metrics.readings_accepted.inc_by(out.points as u64);
                self.metrics
                    .node_last_seen_seconds
                    .get_or_create(&NodeLabel {
                        node: telemetry.node.to_string(),
                    })
                    .set(message.received_ms / 1000);
                let mark = mark.map(|m| (telemetry.node.as_str(), m));
                self.batch.push(mark, &out.lines);
                samples.append(&mut out.samples);
            }
            Decoded::Status(status) => {
                if let Some(up) = status.uptime_ms {
                    self.normaliser
                        .observe_uptime(&status.node, status.boot, up, message.received_ms);
                }
                let mut lines = Vec::with_capacity(96);
                let online = status.state == rackwatch_protocols::NodeState::Online;
                schema::node_status(
                    &mut lines,
                    &self.site,
                    &status.node,
                    online,
                    status.boot,
                    message.received_ms,
                );
                self.batch.push(None, &lines);
                if !self.observers.is_empty() {
                    // Keep the samples before it in order: they were received first.
                    if !samples.is_empty() {
                        observations.push(Observation::Samples(Arc::from(std::mem::take(samples))));
                    }
                    observations.push(Observation::Status {
                        status: Box::new(status),
                        received_ms: message.received_ms,
                    });
                }
            }
            Decoded::Ack(ack) => {
                if !self.observers.is_empty() {
                    observations.push(Observation::Ack {
                        ack,
                        received_ms: message.received_ms,
                    });
                }
            }
            // Whoever drives the update (`rackwatch firmware update`) acts on the answers; the
            // gateway counts the refusals, so they show on its /metrics for the whole fleet.
            Decoded::OtaAck(ack) => {
                if ack.result == OtaResult::Refused {
                    FirmwareUpdateFailed {
                        node: &ack.node,
                        reason: failure_reason(ack.reason.as_deref().unwrap_or_default()),
                    }
                    .emit(&self.metrics);
                }
            }
        }
    }

    /// One transition of this gateway's alert engine, as a point of the `alert` measurement.
    fn keep_alert(&mut self, alert: &Alert) {
        let mut lines = Vec::with_capacity(256);
        schema::alert(&mut lines, &self.site, alert);
        self.batch.push(None, &lines);
    }

    fn reject(&mut self, message: &Incoming, rejection: &Rejection) {
        // The letter first: whoever sees the count finds the letter on disk.
        self.dead_letter(
            message,
            rejection.reason.as_str(),
            rejection.node.as_deref(),
            &rejection.detail,
        );
        MessageRejected {
            reason: rejection.reason.as_str(),
            node: rejection.node.as_deref(),
            detail: &rejection.detail,
            topic: message.route.topic(),
        }
        .emit(&self.metrics);
    }

    fn dead_letter(&mut self, message: &Incoming, reason: &'static str, node: Option<&str>, detail: &str) {
        let mut letters = self
            .dead_letters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = letters.record(
            message.received_ms,
            reason,
            message.route.topic(),
            node,
            detail,
            &message.payload,
        ) {
            tracing::error!("dead-letter file: {e}");
        }
    }
}
