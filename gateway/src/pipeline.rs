//! The gateway, top to bottom: sources -> ingest (decode, normalise, spool) -> sink (InfluxDB),
//! with the HTTP server beside them. This file only connects stages.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::cluster::Partition;
use crate::command::{self, NodeCommander};
use crate::config::{Config, ConfigError};
use crate::dashboard::Dashboard;
use crate::deadletter::DeadLetters;
use crate::events::Metrics;
use crate::ingest::{Ingest, ObservationSender};
use crate::inventory::Inventory;
use crate::normalise::Normaliser;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::{http, influx, source, spool};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("spool at {path}: {source}")]
    Spool { path: String, source: spool::SpoolError },
    #[error("dead-letter file: {0}")]
    DeadLetters(std::io::Error),
    #[error(transparent)]
    Alerts(#[from] crate::alert::StartError),
    #[error(transparent)]
    Tls(#[from] http::TlsError),
    #[error("HTTP server on {addr}: {source}")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// How long shutdown waits for the spool to drain into the database.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long shutdown waits for HTTP clients (open dashboards) to finish.
const HTTP_GRACE: Duration = Duration::from_secs(2);

/// Runs the gateway until `shutdown`, then stops the sources, commits, and drains what it can.
pub async fn run(
    config: Config,
    trigger: ShutdownTrigger,
    observers: Option<ObservationSender>,
) -> Result<(), StartError> {
    let mut config = config;
    let partition = config.cluster.as_ref().map(|c| Partition::new(c, &config));
    if let Some(partition) = &partition {
        // Alerts and the dashboard watch this partition's nodes only; the others are their gateways'.
        partition.retain_own_nodes(&mut config);
    }
    let metrics = Arc::new(Metrics::new());
    let inventory = Inventory::from_config(&config);
    let mut normaliser = Normaliser::new(config.site.clone(), inventory, config.normalise.clone());

    let limits = spool::Limits {
        max_bytes: config.spool.max_mb.saturating_mul(1 << 20),
        segment_bytes: config.spool.segment_mb.saturating_mul(1 << 20),
    };
    let mut replayed = 0usize;
    let (spool_writer, spool_reader) = spool::open(&config.spool.dir, limits, |record| {
        if let Some((node, mark)) = record.mark {
            normaliser.restore(node, mark);
            replayed += 1;
        }
    })
    .map_err(|source| StartError::Spool {
        path: config.spool.dir.display().to_string(),
        source,
    })?;
    tracing::info!(
        records = replayed,
        "spool opened; sequence state restored from it"
    );
    let dead_letters = Arc::new(Mutex::new(
        DeadLetters::open(&config.spool.dir.join("dead-letters.jsonl")).map_err(StartError::DeadLetters)?,
    ));

    // Everything that can fail on bad configuration is checked before any task starts.
    let mqtt = match &config.mqtt {
        Some(mqtt) => Some((source::mqtt::options(mqtt)?, mqtt.max_pending)),
        None => None,
    };
    let writer = config
        .influxdb
        .as_ref()
        .map(influx::InfluxWriter::new)
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| StartError::Http {
            addr: config.http.listen,
            source,
        })?;
    tracing::info!(addr = %config.http.listen, "HTTP server listening (/metrics, /health)");

    // Observations flow ingest -> alert engine -> facilities view -> the caller's `observers`.
    let dashboard = Dashboard::new(
        &config.site,
        Inventory::from_config(&config),
        config.http.window_minutes,
    );
    let (dashboard_tx, dashboard_rx) = mpsc::channel(1024);
    let dashboard_task = tokio::spawn(
        dashboard
            .clone()
            .follow(dashboard_rx, observers, trigger.subscribe()),
    );
    let observers = Some(dashboard_tx);
    let max_pending = mqtt.as_ref().map_or(4096, |(_, n)| *n);
    let (incoming_tx, incoming_rx) = mpsc::channel(max_pending);
    let serial_nodes = crate::serial_nodes::SerialNodes::default();
    let (observers, alert_routes, alert_tasks) = match &config.alerts {
        Some(alerts) => {
            let history = Some(incoming_tx.downgrade());
            let service = crate::alert::start(
                &config,
                alerts,
                Arc::clone(&metrics),
                observers,
                history,
                serial_nodes.clone(),
                &trigger,
            )?;
            (Some(service.observations), service.routes, service.tasks)
        }
        None => (observers, axum::Router::new(), Vec::new()),
    };

    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let committed = Arc::new(Notify::new());

    let ingest = Ingest {
        site: config.site.to_string(),
        normaliser,
        spool: spool_writer,
        dead_letters: Arc::clone(&dead_letters),
        acks: ack_tx,
        committed: Arc::clone(&committed),
        metrics: Arc::clone(&metrics),
        observers,
        partition: partition.clone(),
        commit_linger: Duration::from_millis(config.spool.commit_linger_ms),
    };
    let ingest_thread = std::thread::Builder::new()
        .name("rackwatch-ingest".into())
        .spawn({
            let runtime = tokio::runtime::Handle::current();
            move || runtime.block_on(ingest.run(incoming_rx))
        })
        .map_err(|e| StartError::Spool {
            path: "ingest thread".into(),
            source: e.into(),
        })?;

    // Acknowledgements go back to the source that owes them: PUBACKs, serial `Stored` frames.
    let (mqtt_ack_tx, mqtt_ack_rx) = mpsc::unbounded_channel();
    let mut serial_ack_txs = std::collections::HashMap::new();
    let mut serial_ack_rxs = Vec::new();
    for serial in &config.serial {
        let (tx, rx) = mpsc::unbounded_channel();
        serial_ack_txs.insert(Arc::<str>::from(serial.port.as_str()), tx.clone());
        serial_ack_rxs.push((tx, rx));
    }
    let ack_router = tokio::spawn(source::route_acks(ack_rx, mqtt_ack_tx, serial_ack_txs));

    let mut sources = tokio::task::JoinSet::new();
    if let Some((options, _)) = mqtt {
        let share_group = config.mqtt.as_ref().and_then(|m| m.share_group.as_deref());
        let filters = match &partition {
            Some(partition) => partition.subscriptions(&config.site, share_group.unwrap_or("rackwatch")),
            None => source::mqtt::subscriptions(&config.site, share_group),
        };
        sources.spawn(source::mqtt::run(
            options,
            filters,
            incoming_tx.clone(),
            mqtt_ack_rx,
            trigger.subscribe(),
        ));
    }
    for (serial, (commands, outgoing)) in config.serial.iter().zip(serial_ack_rxs) {
        sources.spawn(source::serial::run(source::serial::SerialPort {
            config: serial.clone(),
            incoming: incoming_tx.clone(),
            metrics: Arc::clone(&metrics),
            dead_letters: Arc::clone(&dead_letters),
            outgoing,
            commands,
            nodes: serial_nodes.clone(),
            shutdown: trigger.subscribe(),
        }));
    }
    drop(incoming_tx);

    let sink_status = Arc::new(influx::SinkStatus::default());
    let sink = match (writer, &config.influxdb) {
        (Some(writer), Some(influx_config)) => Some(tokio::spawn(influx::drain(influx::Drain {
            reader: spool_reader,
            writer,
            config: influx_config.clone(),
            committed: Arc::clone(&committed),
            dead_letters: Arc::clone(&dead_letters),
            metrics: Arc::clone(&metrics),
            status: Arc::clone(&sink_status),
            shutdown: trigger.subscribe(),
            grace: SHUTDOWN_GRACE,
        }))),
        _ => {
            tracing::warn!("no [influxdb] configured: readings are kept in the spool until one is");
            None
        }
    };
    let commander = match &config.mqtt {
        Some(mqtt) => {
            let (commander, task) =
                NodeCommander::start(command::options(mqtt)?, config.site.clone(), trigger.subscribe());
            sources.spawn(async move {
                let _ = task.await;
            });
            Some(commander)
        }
        None => None,
    };
    let routes = alert_routes
        .merge(dashboard.routes())
        .merge(command::routes(commander, &config)?)
        .merge(sink_status.routes());
    let http_task = match (&config.http.tls_cert_file, &config.http.tls_key_file) {
        (Some(cert), Some(key)) => {
            let listener = http::TlsListener::new(listener, cert, key)?;
            tokio::spawn(http::serve(
                listener,
                Arc::clone(&metrics),
                routes,
                trigger.subscribe(),
            ))
        }
        _ => tokio::spawn(http::serve(
            listener,
            Arc::clone(&metrics),
            routes,
            trigger.subscribe(),
        )),
    };

    let mut shutdown: Shutdown = trigger.subscribe();
    shutdown.recv().await;
    tracing::info!("shutting down: stopping sources, committing the spool, draining it");
    while sources.join_next().await.is_some() {}
    // Sources are gone, so the ingest thread sees its channel close, commits and ends.
    let _ = tokio::task::spawn_blocking(move || ingest_thread.join()).await;
    let _ = ack_router.await;
    committed.notify_one();
    if let Some(sink) = sink {
        let _ = sink.await;
    }
    // Graceful shutdown waits for open connections, and a dashboard's event stream never ends by
    // itself: give clients a moment, then leave them.
    if tokio::time::timeout(HTTP_GRACE, http_task).await.is_err() {
        tracing::info!("HTTP clients still connected at shutdown were dropped");
    }
    for task in alert_tasks {
        let _ = task.await;
    }
    let _ = dashboard_task.await;
    tracing::info!("stopped");
    Ok(())
}
