//! The alert engine's task: feeds it observations, the clock and API requests, and carries out what
//! it decides (MQTT publishes, fan commands, webhook deliveries, saving its state).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rackwatch_protocols::{Alert, MAX_MESSAGE_LEN};
use tokio::sync::{mpsc, watch};

use super::api::ApiRequest;
use super::delivery::{DeliveryJob, DeliveryResult};
use super::effect::Effect;
use super::engine::Engine;
use super::http::AlertsView;
use super::mqtt::{AlertPublisher, PublishError};
use super::store::StateFile;
use super::webhook::{Context, Webhook};
use crate::events::{AlertPublishFailed, Metrics, NotificationFailed};
use crate::model::{Observation, now_ms};
use crate::shutdown::Shutdown;

/// Everything the task owns.
#[derive(Debug)]
pub struct Runner {
    pub engine: Engine,
    pub observations: mpsc::Receiver<Observation>,
    /// Ingest's alert input: transitions go there to be spooled and written like readings.
    pub history: Option<mpsc::Sender<Alert>>,
    pub api: mpsc::Receiver<ApiRequest>,
    pub view: watch::Sender<Arc<AlertsView>>,
    pub publisher: Option<AlertPublisher>,
    /// Serial-attached nodes get their commands as frames on their port.
    pub serial_nodes: crate::source::serial_nodes::SerialNodes,
    pub connected: mpsc::UnboundedReceiver<()>,
    pub webhooks: Vec<Webhook>,
    pub context: Context,
    pub store: StateFile,
    pub metrics: Arc<Metrics>,
    pub evaluation_interval: Duration,
    pub shutdown: Shutdown,
}

/// Unix time in microseconds, for the latency histogram.
fn now_us() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

impl Runner {
    pub async fn run(mut self) {
        let http = reqwest::Client::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(DeliveryJob, DeliveryResult)>();
        let mut ticker = tokio::time::interval(self.evaluation_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.engine.resync(now_ms());
        self.flush(None, &http, &done_tx);
        loop {
            let mut origin_us = None;
            tokio::select! {
                biased;
                () = self.shutdown.recv() => break,
                Some(observation) = self.observations.recv() => {
                    let now = now_ms();
                    match &observation {
                        Observation::Samples(samples) => {
                            // Latency is measured from the earliest arrival in the batch.
                            origin_us = samples.iter().map(|s| s.received_ms).min().map(|ms| ms.saturating_mul(1000));
                            self.engine.observe_samples(samples, now);
                        }
                        Observation::Status { status, received_ms } => {
                            origin_us = Some(received_ms.saturating_mul(1000));
                            self.engine.observe_status(status, now);
                        }
                        Observation::Ack { ack, .. } => self.engine.observe_ack(ack),
                    }
                }
                Some(()) = self.connected.recv() => self.engine.resync(now_ms()),
                Some(request) = self.api.recv() => self.handle(request),
                Some((job, result)) = done_rx.recv() => self.engine.delivered(&job, result, now_ms()),
                _ = ticker.tick() => {
                    let now = now_ms();
                    self.engine.expire_silences(now);
                    self.engine.tick(now);
                }
            }
            self.flush(origin_us, &http, &done_tx);
        }
        self.save();
    }

    fn handle(&mut self, request: ApiRequest) {
        let now = now_ms();
        match request {
            ApiRequest::Acknowledge {
                key,
                by,
                comment,
                reply,
            } => {
                let result = self.engine.acknowledge(&key, by, comment, now);
                self.refresh_view();
                let _ = reply.send(result);
            }
            ApiRequest::Silence {
                matchers,
                starts_ms,
                ends_ms,
                created_by,
                comment,
                reply,
            } => {
                let result = self
                    .engine
                    .silence(matchers, starts_ms, ends_ms, created_by, comment);
                self.refresh_view();
                let _ = reply.send(result);
            }
            ApiRequest::Unsilence { id, reply } => {
                let result = self.engine.unsilence(id);
                self.refresh_view();
                let _ = reply.send(result);
            }
        }
    }

    /// Carries out the engine's effects (publishes first: they are what the latency budget is for),
    /// starts due deliveries, saves the state if it changed and refreshes the API's view.
    fn flush(
        &mut self,
        origin_us: Option<i64>,
        http: &reqwest::Client,
        done: &mpsc::UnboundedSender<(DeliveryJob, DeliveryResult)>,
    ) {
        let effects = self.engine.take_effects();
        for effect in &effects {
            match effect {
                Effect::Publish { alert, event } => {
                    let payload = encode(alert);
                    let published = match (&self.publisher, &payload) {
                        (Some(publisher), Ok(payload)) => publisher.alert(alert, payload, *event),
                        (Some(_), Err(e)) => Err(PublishError::Encode(*e)),
                        (None, _) => Ok(()),
                    };
                    if let Err(e) = published {
                        AlertPublishFailed {
                            detail: &e.to_string(),
                        }
                        .emit(&self.metrics);
                    }
                    if *event {
                        self.keep(alert);
                        self.metrics
                            .record_alert_transition(alert, origin_us.map(|o| now_us().saturating_sub(o)));
                        tracing::info!(key = %alert.key, state = ?alert.state, "alert: {}", alert.summary);
                    }
                }
                Effect::Command { node, command } => {
                    let sent = match (self.serial_nodes.command(node, command), &self.publisher) {
                        (Some(sent), _) => sent.map_err(|e| e.to_string()),
                        (None, Some(publisher)) => {
                            publisher.command(node, command).map_err(|e| e.to_string())
                        }
                        (None, None) => Ok(()),
                    };
                    if let Err(detail) = sent {
                        AlertPublishFailed { detail: &detail }.emit(&self.metrics);
                    }
                }
                Effect::Fan(outcome) => outcome.event().emit(&self.metrics),
                Effect::Withdraw { key } => {
                    if let Some(publisher) = &self.publisher
                        && let Err(e) = publisher.withdraw(key)
                    {
                        AlertPublishFailed {
                            detail: &e.to_string(),
                        }
                        .emit(&self.metrics);
                    }
                }
            }
        }
        for job in self.engine.due_deliveries(now_ms()) {
            let Some(hook) = self.webhooks.get(job.receiver).cloned() else {
                continue;
            };
            let http = http.clone();
            let done = done.clone();
            let context = self.context.clone();
            let metrics = Arc::clone(&self.metrics);
            tokio::spawn(async move {
                let result = match hook.send(&http, &job, &context).await {
                    Ok(result) => result,
                    Err(detail) => {
                        NotificationFailed {
                            receiver: &hook.name,
                            detail: &detail,
                        }
                        .emit(&metrics);
                        DeliveryResult::Failed
                    }
                };
                metrics.record_notification(&hook.name, result.label());
                let _ = done.send((job, result));
            });
        }
        let changed = self.engine.take_changed();
        if changed {
            self.save();
        }
        if changed || !effects.is_empty() {
            self.refresh_view();
        }
    }

    /// What the HTTP API shows. Refreshed before an API request is answered, so a client reads its
    /// own change (a silence it created is in the next `GET /api/silences`).
    fn refresh_view(&self) {
        let _ = self.view.send(Arc::new(AlertsView::of(&self.engine, now_ms())));
        self.metrics
            .alerts_firing
            .set(self.view.borrow().firing_count() as i64);
    }

    /// Sends a transition to ingest, to be spooled and written like a reading (the `alert`
    /// measurement). Never waits: the send runs on its own task, and is given up once ingest has
    /// stopped at shutdown.
    fn keep(&self, alert: &Alert) {
        let Some(history) = self.history.clone() else {
            return;
        };
        let alert = alert.clone();
        tokio::spawn(async move {
            let _ = history.send(alert).await;
        });
    }

    fn save(&self) {
        if let Err(e) = self.store.save(&self.engine.saved()) {
            tracing::error!("alert state not saved: {e}");
        }
    }
}

/// An alert's JSON, as published and kept.
fn encode(alert: &Alert) -> Result<Bytes, rackwatch_protocols::EncodeError> {
    let mut payload = vec![0u8; MAX_MESSAGE_LEN];
    let len = alert.encode(&mut payload)?;
    payload.truncate(len);
    Ok(Bytes::from(payload))
}

impl DeliveryResult {
    /// The metric label of the result (`rackwatch_alert_notifications_total{result}`).
    pub fn label(self) -> &'static str {
        match self {
            DeliveryResult::Delivered => "delivered",
            DeliveryResult::Refused => "refused",
            DeliveryResult::Failed => "failed",
        }
    }
}
