//! The alert engine: decides from the readings what is wrong with the racks' cooling and power, and
//! tells people and machines, once per change (issue "gateway: alert engine for cooling and power").
//! gateway/ALERTS.md describes it for operators; this is how it is built:
//!
//! - `crate::config::alerts`: the `[alerts]` section; `crate::config::ashrae`: the built-in ASHRAE
//!   TC 9.9 presets.
//! - [`rule`]: rules compiled to selectors and conditions; [`index`]: them by name and by what
//!   they watch; [`track`]: rate windows.
//! - [`engine`]: observations and time in, [`effect`]s out, no I/O (tests drive it with a fake
//!   clock). It connects [`evaluate`] (the rules' levels from readings, derived rack and row
//!   measures, statuses and time), [`incidents`] (the lifecycle; [`state`]: the pending → firing →
//!   resolved machine of each member and incident), [`delivery`] (who is told what and when:
//!   repeats for people, re-sends for an Alertmanager, back-off) and [`cooling`]; [`api`]: the
//!   acknowledgements and silences the API asks for.
//! - [`inhibit`]: what an offline node holds back, and rack incidents folded into their row's;
//!   [`words`]: the sentences people read.
//! - [`runner`]: the task doing the I/O: [`mqtt`] publishes, [`webhook`] deliveries, [`cooling`]
//!   fan commands, [`store`] the state file; [`http`] is the API; [`silence`] what it can silence.

pub mod api;
pub mod cooling;
pub mod delivery;
pub mod effect;
pub mod engine;
pub mod evaluate;
pub mod http;
pub mod incidents;
pub mod index;
pub mod inhibit;
pub mod mqtt;
pub mod rule;
pub mod runner;
pub mod silence;
pub mod state;
pub mod store;
pub mod track;
pub mod webhook;
pub mod words;

#[cfg(test)]
mod engine_tests;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::config::{self, AlertsConfig, Config, ConfigError};
use crate::events::Metrics;
use crate::ingest::ObservationSender;
use crate::inventory::Inventory;
use crate::shutdown::ShutdownTrigger;
use cooling::{Cooling, FanCommands};
use delivery::Receiver;
use engine::{Engine, Settings};
use rule::{Rule, Scope};

/// How many observations may wait for the engine before ingest starts dropping them (counted).
const OBSERVATION_QUEUE: usize = 4096;

/// Why the alert engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("alert state: {0}")]
    State(#[from] store::StoreError),
}

/// A started engine: where ingest sends observations, the API routes, and the tasks to await.
#[derive(Debug)]
pub struct AlertService {
    pub observations: ObservationSender,
    pub routes: axum::Router,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The engine's settings from the configuration.
pub fn settings(config: &Config, alerts: &AlertsConfig) -> Settings {
    let rule_configs = alerts.all_rules();
    let rules: Vec<Rule> = rule_configs
        .iter()
        .map(|r| Rule::compile(r, &config.site))
        .collect();
    let inventory = Inventory::from_config(config);
    let nodes: Vec<_> = config
        .nodes
        .keys()
        .map(|node| (node.clone(), inventory.position(node)))
        .collect();
    let cooling = alerts.cooling.as_ref().map(|c| {
        let mut nodes_by_rack: HashMap<Scope, Vec<_>> = HashMap::new();
        for (node, position) in nodes.iter().filter(|(_, p)| p.rack.is_some()) {
            nodes_by_rack
                .entry(Scope::of_position(position))
                .or_default()
                .push(node.clone());
        }
        Cooling {
            rules: c
                .rules
                .iter()
                .filter_map(|name| rules.iter().position(|r| r.name == *name))
                .collect(),
            boost_duty: c.boost_duty_percent,
            normal_duty: c.normal_duty_percent,
            fans: c.fans.clone(),
            ack_timeout_ms: millis(c.ack_timeout),
            retries: c.retries,
            nodes_by_rack,
            boosted: Default::default(),
            commands: FanCommands {
                // Ids unique across restarts without persisting every one: start somewhere random.
                next_id: rand::random::<u32>() & 0x7fff_ffff,
                pending: Default::default(),
            },
        }
    });
    Settings {
        site: config.site.clone(),
        rules,
        receivers: alerts
            .webhooks
            .iter()
            .map(|w| Receiver {
                name: w.name.to_string(),
                level: w.level,
                min_severity: w.min_severity,
                max_backoff_ms: millis(w.max_backoff),
                resend_interval_ms: match w.format {
                    config::WebhookFormat::Alertmanager => millis(alerts.resend_interval),
                    config::WebhookFormat::Json => 0,
                },
            })
            .collect(),
        timing: delivery::Timing {
            repeat_interval_ms: millis(alerts.repeat_interval),
            escalate_after_ms: millis(alerts.escalate_after),
        },
        nodes,
        cooling,
    }
}

/// Starts the engine (and its MQTT connection when `[mqtt]` is configured). `history` (ingest's
/// alert input) gets every transition, to keep in the database.
pub fn start(
    config: &Config,
    alerts: &AlertsConfig,
    metrics: Arc<Metrics>,
    history: Option<mpsc::Sender<rackwatch_protocols::Alert>>,
    serial_nodes: crate::source::serial_nodes::SerialNodes,
    trigger: &ShutdownTrigger,
) -> Result<AlertService, StartError> {
    let webhooks = alerts
        .webhooks
        .iter()
        .enumerate()
        .map(|(i, w)| webhook::Webhook::from_config(w, &format!("alerts.webhooks[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let token = config
        .http
        .token
        .as_ref()
        .map(|t| t.read("http.token"))
        .transpose()?
        .map(crate::secret::Secret::new);
    let store = store::StateFile::new(
        alerts
            .state_file
            .clone()
            .unwrap_or_else(|| config.spool.dir.join("alerts-state.json")),
    );
    let saved = store.load()?;
    let mut tasks = Vec::new();
    let (connected_tx, connected) = mpsc::unbounded_channel();
    let publisher = match &config.mqtt {
        Some(mqtt) => {
            let (publisher, task) = mqtt::AlertPublisher::start(
                mqtt::options(mqtt)?,
                config.site.clone(),
                connected_tx,
                trigger.subscribe(),
            );
            tasks.push(task);
            Some(publisher)
        }
        None => {
            tracing::warn!("no [mqtt]: alert state is not published and automated cooling cannot act");
            None
        }
    };
    let engine = Engine::new(settings(config, alerts), saved, crate::model::now_ms());
    let (observations_tx, observations) = mpsc::channel(OBSERVATION_QUEUE);
    let (requests, api) = mpsc::channel(64);
    let (view_tx, view) = watch::channel(Arc::new(http::AlertsView::default()));
    let runner = runner::Runner {
        engine,
        observations,
        history,
        api,
        view: view_tx,
        publisher,
        serial_nodes,
        connected,
        webhooks,
        context: webhook::Context {
            site: config.site.to_string(),
            public_url: config.http.public_url.clone(),
        },
        store: store::StateWriter::start(store)?,
        metrics,
        evaluation_interval: alerts.evaluation_interval,
        shutdown: trigger.subscribe(),
    };
    // The engine has a thread of its own (its deliveries and publishes still run on the runtime):
    // under a flood the runtime's two workers are busy reading the broker and writing the
    // database, and a reading that should raise an alert must not wait behind them.
    let runtime = tokio::runtime::Handle::current();
    tasks.push(tokio::task::spawn_blocking(move || {
        runtime.block_on(runner.run())
    }));
    Ok(AlertService {
        observations: observations_tx,
        routes: http::routes(http::AlertApi {
            view,
            requests,
            token,
        }),
        tasks,
    })
}
