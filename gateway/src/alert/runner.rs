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
use super::store::{SAVE_INTERVAL, StateWriter};
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
    /// Writes the state file off the async workers, coalesced (see [`Saving`]).
    pub store: StateWriter,
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

/// When the state file is next written. A transition changes the state; writing it each time
/// (two fsyncs) cost ~12 writes a second at a site's steady load, so changes are written at most once
/// per [`SAVE_INTERVAL`], together. An operator's acknowledgement or silence is written before the
/// API answers, and the latest state at shutdown.
///
/// A crash between two writes loses at most the last [`SAVE_INTERVAL`] of transitions from the file,
/// never an operator's decision. On restart the engine starts from the older state and the readings
/// that follow are evaluated again: an alert whose firing was not written fires again while its
/// condition holds (its `firing` notification may be sent twice), one whose resolve was not written
/// resolves again (its `resolved` notification may repeat), and a delivery whose outcome was not
/// written is retried. Nothing that fires after the restart is missed.
#[derive(Debug, Default)]
struct Saving {
    /// When the changes not yet written are due; `None` when the file is up to date.
    due: Option<tokio::time::Instant>,
    last: Option<tokio::time::Instant>,
}

impl Saving {
    /// The state changed: write it one interval after the last write, or now.
    fn changed(&mut self, now: tokio::time::Instant) {
        if self.due.is_none() {
            self.due = Some(self.last.map_or(now, |last| (last + SAVE_INTERVAL).max(now)));
        }
    }

    fn written(&mut self, now: tokio::time::Instant) {
        self.due = None;
        self.last = Some(now);
    }

    /// A time to sleep until while nothing is due (the branch is disabled then).
    fn deadline(&self) -> tokio::time::Instant {
        self.due
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600))
    }
}

impl Runner {
    pub async fn run(mut self) {
        let http = reqwest::Client::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(DeliveryJob, DeliveryResult)>();
        let mut ticker = tokio::time::interval(self.evaluation_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut saving = Saving::default();
        self.engine.resync(now_ms());
        if self.flush(None, &http, &done_tx) {
            saving.changed(tokio::time::Instant::now());
        }
        loop {
            let mut origin_us = None;
            tokio::select! {
                biased;
                () = self.shutdown.recv() => break,
                () = tokio::time::sleep_until(saving.deadline()), if saving.due.is_some() => {
                    drop(self.store.save(self.engine.saved()));
                    saving.written(tokio::time::Instant::now());
                }
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
                Some(request) = self.api.recv() => self.handle(request, &mut saving),
                Some((job, result)) = done_rx.recv() => self.engine.delivered(&job, result, now_ms()),
                _ = ticker.tick() => {
                    let now = now_ms();
                    self.engine.expire_silences(now);
                    self.engine.tick(now);
                }
            }
            if self.flush(origin_us, &http, &done_tx) {
                saving.changed(tokio::time::Instant::now());
            }
        }
        // The latest state, whatever is due: the next start begins from it.
        let _ = self.store.save(self.engine.saved()).await;
    }

    /// Carries out an API request; the answer goes out once the change is on disk (its own task
    /// waits for the writer thread, so the engine goes on meanwhile).
    fn handle(&mut self, request: ApiRequest, saving: &mut Saving) {
        let now = now_ms();
        let answer: Box<dyn FnOnce() + Send> = match request {
            ApiRequest::Acknowledge {
                key,
                by,
                comment,
                reply,
            } => {
                let result = self.engine.acknowledge(&key, by, comment, now);
                Box::new(move || drop(reply.send(result)))
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
                Box::new(move || drop(reply.send(result)))
            }
            ApiRequest::Unsilence { id, reply } => {
                let result = self.engine.unsilence(id);
                Box::new(move || drop(reply.send(result)))
            }
        };
        self.refresh_view();
        if !self.engine.take_changed() {
            // Refused (unknown key or id): nothing to write.
            answer();
            return;
        }
        // The whole state, with any change that was waiting for its interval.
        let written = self.store.save(self.engine.saved());
        saving.written(tokio::time::Instant::now());
        tokio::spawn(async move {
            let _ = written.await;
            answer();
        });
    }

    /// Carries out the engine's effects (publishes first: they are what the latency budget is for),
    /// starts due deliveries and refreshes the API's view; whether the state to save changed.
    fn flush(
        &mut self,
        origin_us: Option<i64>,
        http: &reqwest::Client,
        done: &mpsc::UnboundedSender<(DeliveryJob, DeliveryResult)>,
    ) -> bool {
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
        if changed || !effects.is_empty() {
            self.refresh_view();
        }
        changed
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use rackwatch_protocols::{ChannelName, NodeId, Quantity, ReadingStatus, SiteId};
    use tokio::sync::oneshot;

    use super::*;
    use crate::alert::delivery::Timing;
    use crate::alert::engine::Settings;
    use crate::alert::rule::Rule;
    use crate::alert::store::StateFile;
    use crate::config::{RuleConfig, RuleKind};
    use crate::events::AlertStateLabel;
    use crate::model::{Position, Sample, Series, SeriesId, SeriesScope};

    /// A runner with one threshold rule (above 27 °C, clear at 25 °C, no `for`) on `file`.
    struct Started {
        observations: mpsc::Sender<Observation>,
        api: mpsc::Sender<ApiRequest>,
        view: watch::Receiver<Arc<AlertsView>>,
        metrics: Arc<Metrics>,
        saves: Arc<AtomicU64>,
        trigger: crate::shutdown::ShutdownTrigger,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(file: &StateFile) -> Started {
        let site = SiteId::new("fra1").unwrap();
        let mut rule = RuleConfig::new("hot", RuleKind::Threshold).unwrap();
        rule.quantity = Some(Quantity::Temperature);
        rule.above = Some(27.0);
        rule.clear = Some(25.0);
        let settings = Settings {
            site: site.clone(),
            rules: vec![Rule::compile(&rule, &site)],
            receivers: Vec::new(),
            timing: Timing {
                repeat_interval_ms: 3_600_000,
                escalate_after_ms: 1_800_000,
            },
            nodes: Vec::new(),
            cooling: None,
        };
        let engine = Engine::new(settings, file.load().unwrap(), now_ms());
        let (observations, observations_rx) = mpsc::channel(1024);
        let (api, api_rx) = mpsc::channel(8);
        let (view_tx, view) = watch::channel(Arc::new(AlertsView::default()));
        let (_connected_tx, connected) = mpsc::unbounded_channel();
        let (trigger, shutdown) = crate::shutdown::channel();
        let metrics = Arc::new(Metrics::new());
        let store = StateWriter::start(file.clone()).unwrap();
        let saves = store.saves();
        let runner = Runner {
            engine,
            observations: observations_rx,
            history: None,
            api: api_rx,
            view: view_tx,
            publisher: None,
            serial_nodes: Default::default(),
            connected,
            webhooks: Vec::new(),
            context: Context {
                site: "fra1".into(),
                public_url: None,
            },
            store,
            metrics: Arc::clone(&metrics),
            evaluation_interval: Duration::from_secs(1),
            shutdown,
        };
        Started {
            observations,
            api,
            view,
            metrics,
            saves,
            trigger,
            task: tokio::spawn(runner.run()),
        }
    }

    fn inlet() -> Arc<Series> {
        Arc::new(Series {
            id: SeriesId::next(),
            scope: SeriesScope::Probe,
            node: NodeId::new("n1").unwrap(),
            channel: ChannelName::new("t_in").unwrap(),
            quantity: Quantity::Temperature,
            placement: None,
            position: Arc::new(Position {
                room: None,
                row: None,
                rack: None,
            }),
            line_tags: Arc::from([]),
        })
    }

    fn reading(series: &Arc<Series>, value: f64) -> Observation {
        let now = now_ms();
        Observation::Samples(Arc::from(vec![Sample {
            series: Arc::clone(series),
            value: Some(value),
            status: ReadingStatus::Ok,
            timestamp_ms: now,
            received_ms: now,
        }]))
    }

    fn transitions(metrics: &Metrics, state: &'static str) -> u64 {
        metrics
            .alert_transitions
            .get_or_create(&AlertStateLabel { state })
            .get()
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn many_transitions_within_a_second_are_saved_together_not_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("alerts-state.json"));
        let runner = start(&file);
        let series = inlet();
        let started = std::time::Instant::now();
        // 100 transitions spread over ~0.7 s, as a busy site has them.
        for i in 0..100 {
            let value = if i % 2 == 0 { 30.0 } else { 20.0 };
            runner.observations.send(reading(&series, value)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
        until("100 transitions", || {
            transitions(&runner.metrics, "resolved") == 50
        })
        .await;
        assert_eq!(transitions(&runner.metrics, "firing"), 50);
        // One write for the first change, then at most one a second: never one per transition
        // (on a busy machine the 100 take longer than 0.7 s, hence the bound from the time taken).
        tokio::time::sleep(SAVE_INTERVAL + Duration::from_millis(200)).await;
        let during = runner.saves.load(Ordering::Relaxed);
        let most = 1 + started.elapsed().as_secs();
        assert!(
            (1..=most).contains(&during),
            "{during} saves for 100 transitions in {:?}",
            started.elapsed()
        );
        // The last reading was hot: at shutdown the file holds the firing alert.
        runner.observations.send(reading(&series, 30.0)).await.unwrap();
        until("the last firing", || transitions(&runner.metrics, "firing") == 51).await;
        runner.trigger.trigger();
        runner.task.await.unwrap();
        let saved = file.load().unwrap();
        assert_eq!(saved.incidents.len(), 1);
        assert_eq!(saved.incidents[0].state, rackwatch_protocols::AlertState::Firing);
    }

    #[tokio::test]
    async fn an_acknowledgement_is_on_disk_when_the_api_answers_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("alerts-state.json"));
        let runner = start(&file);
        runner.observations.send(reading(&inlet(), 31.0)).await.unwrap();
        let mut view = runner.view.clone();
        until("the firing alert", || !view.borrow_and_update().alerts.is_empty()).await;
        let key = view.borrow().alerts[0].incident.key.clone();
        // The first write (the firing) is done; the next is not due for a second.
        until("the firing saved", || runner.saves.load(Ordering::Relaxed) == 1).await;
        let (reply, answer) = oneshot::channel();
        runner
            .api
            .send(ApiRequest::Acknowledge {
                key: key.clone(),
                by: "ops".into(),
                comment: "on it".into(),
                reply,
            })
            .await
            .unwrap();
        answer.await.unwrap().unwrap();
        // Answered: the file already has it, with the gateway still running (a crash now keeps it).
        let on_disk = file.load().unwrap();
        let acked = on_disk.incidents.iter().find(|i| i.key == key).unwrap();
        assert_eq!(acked.acknowledged.as_ref().map(|a| a.by.as_str()), Some("ops"));
        // A restart from that file shows the alert acknowledged.
        runner.trigger.trigger();
        runner.task.await.unwrap();
        let restarted = start(&file);
        let mut view = restarted.view.clone();
        until("the restored alert", || {
            !view.borrow_and_update().alerts.is_empty()
        })
        .await;
        assert!(view.borrow().alerts[0].incident.acknowledged.is_some());
        restarted.trigger.trigger();
        restarted.task.await.unwrap();
    }
}
