//! The gateway, top to bottom: sources -> ingest (decode, normalise, derive, spool) -> sink
//! (InfluxDB), with the HTTP server beside them. This file only connects stages.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::cluster::Partition;
use crate::config::{Config, ConfigError};
use crate::derive::Derive;
use crate::events::Metrics;
use crate::health::{Component, Health};
use crate::ingest::{Ingest, Observers};
use crate::inventory::Inventory;
use crate::normalise::Normaliser;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::sink::history::{self, drain::HistoryStatus};
use crate::sink::influx;
use crate::spool::deadletter::DeadLetters;
use crate::view::command::{self, NodeCommander};
use crate::view::dashboard::{Dashboard, InletLimit};
use crate::view::http;
use crate::{source, spool};

/// Why the gateway could not start.
/// Alert transitions waiting for ingest to spool them (they are few: one per rule and rack at most
/// per evaluation).
const ALERT_HISTORY_QUEUE: usize = 1024;

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
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);
/// How long shutdown waits for HTTP clients (open dashboards) to finish.
const HTTP_GRACE: Duration = Duration::from_secs(1);
/// Everything of a shutdown, whatever the spool, the disk or the database is doing: systemd and
/// `docker stop` kill after 10 s, and what was committed is on disk by then anyway.
const STOP_BUDGET: Duration = Duration::from_secs(8);
/// The database is reported down when the spool has waited this long without a successful write.
const DATABASE_STALL: Duration = Duration::from_secs(10);

/// What `run` needs beyond a well-formed file, checked by `rackwatch check-config`: every secret
/// readable (never shown), every certificate and key readable, the spool folder creatable and
/// writable. One sentence per problem, naming the key.
pub fn preflight(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(mqtt) = &config.mqtt
        && let Err(e) = source::mqtt::options(mqtt)
    {
        problems.push(e.to_string());
    }
    if let Some(influx) = &config.influxdb
        && let Err(e) = influx::InfluxWriter::new(influx)
    {
        problems.push(e.to_string());
    }
    if let Some(token) = &config.http.token
        && let Err(e) = token.read("http.token")
    {
        problems.push(e.to_string());
    }
    for (key, file) in [
        ("http.tls_cert_file", &config.http.tls_cert_file),
        ("http.tls_key_file", &config.http.tls_key_file),
    ] {
        if let Some(file) = file
            && let Err(e) = std::fs::File::open(file)
        {
            problems.push(format!("{key}: cannot read {}: {e}", file.display()));
        }
    }
    let dir = &config.spool.dir;
    let probe = dir.join(".rackwatch-check-config");
    let writable = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b"probe"))
        .and_then(|()| std::fs::remove_file(&probe));
    if let Err(e) = writable {
        problems.push(format!(
            "spool.dir: the gateway cannot create or write {}: {e}",
            dir.display()
        ));
    }
    problems
}

/// Runs the gateway until `shutdown`, then stops the sources, commits, and drains what it can.
pub async fn run(config: Config, trigger: ShutdownTrigger) -> Result<(), StartError> {
    let mut config = config;
    let partition = config.cluster.as_ref().map(|c| Partition::new(c, &config));
    if let Some(partition) = &partition {
        // Alerts and the dashboard watch this partition's nodes only; the others are their gateways'.
        partition.retain_own_nodes(&mut config);
    }
    let metrics = Arc::new(Metrics::new());
    let mut components = vec![Component::Spool];
    for (configured, component) in [
        (config.mqtt.is_some(), Component::Mqtt),
        (config.influxdb.is_some(), Component::Database),
        (config.alerts.is_some(), Component::Alerts),
    ] {
        if configured {
            components.push(component);
        }
    }
    let health = Health::new(Arc::clone(&metrics), &components);
    let inventory = Inventory::from_config(&config);
    let mut normaliser = Normaliser::new(config.site.clone(), inventory, config.normalise.clone());

    let limits = spool::Limits {
        // The dead letters live beside the segments and count against the same budget.
        max_bytes: (config
            .spool
            .max_mb
            .saturating_sub(config.spool.dead_letter_max_mb))
        .saturating_mul(1 << 20),
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
        DeadLetters::open(
            &config.spool.dir.join("dead-letters.jsonl"),
            spool::deadletter::Bounds {
                max_bytes: config.spool.dead_letter_max_mb.saturating_mul(1 << 20),
                per_reason_per_second: config.spool.dead_letter_rate,
            },
            Arc::clone(&metrics),
        )
        .map_err(StartError::DeadLetters)?,
    ));

    // Everything that can fail on bad configuration is checked before any task starts.
    let mqtt = match &config.mqtt {
        Some(mqtt) => Some((
            source::mqtt::options(mqtt)?,
            mqtt.max_pending,
            (mqtt.read_interval, mqtt.max_queue_delay),
        )),
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

    // Observations fan out from ingest to the alert engine and the facilities view, each with its
    // own queue; alert transitions come back to ingest on their own channel, to be spooled.
    let dashboard = Dashboard::new(
        &config.site,
        Inventory::from_config(&config),
        config.http.window_minutes(),
        InletLimit::from_config(&config),
    );
    let (dashboard_tx, dashboard_rx) = mpsc::channel(1024);
    let dashboard_task = tokio::spawn(dashboard.clone().follow(dashboard_rx, trigger.subscribe()));
    // The alert engine and the dashboard see each chunk at once (the API answers for both must
    // agree); the history, a cache for charts, gets its observations gathered.
    let mut urgent = vec![dashboard_tx];
    let mut gathered = Vec::new();
    let max_pending = mqtt.as_ref().map_or(4096, |(_, n, _)| *n);
    let intake = Arc::new(crate::model::Intake::default());
    let (incoming_tx, incoming_rx) = mpsc::channel(max_pending);
    let (history_tx, history_rx) = mpsc::channel(ALERT_HISTORY_QUEUE);
    let serial_nodes = source::serial_nodes::SerialNodes::default();
    let (alert_routes, alert_tasks) = match &config.alerts {
        Some(alerts) => {
            let service = crate::alert::start(
                &config,
                alerts,
                Arc::clone(&metrics),
                Some(history_tx),
                serial_nodes.clone(),
                &trigger,
            )?;
            urgent.insert(0, service.observations);
            (service.routes, service.tasks)
        }
        None => (axum::Router::new(), Vec::new()),
    };
    // With a database draining the spool, the gateway's own history is fed beside it from the
    // observations; without one it is the spool's sink (below).
    let history_status = HistoryStatus::default();
    let mut history_thread = None;
    if config.influxdb.is_some() && config.history.enabled {
        let (tx, rx) = mpsc::channel(1024);
        gathered.push(tx);
        let feed = history::feed::HistoryFeed {
            observations: rx,
            dir: config.history.dir(&config.spool.dir),
            limits: config.history.limits(),
            metrics: Arc::clone(&metrics),
            status: history_status.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("rackwatch-history".into())
            .spawn(move || history::feed::run(feed))
            .map_err(|e| StartError::Spool {
                path: "history thread".into(),
                source: e.into(),
            })?;
        history_thread = Some(thread);
    }
    let observers = Observers::new(urgent, gathered, Arc::clone(&metrics));

    // Acknowledgements go back to the source that owes them: PUBACKs, serial `Stored` frames.
    let (mqtt_ack_tx, mqtt_ack_rx) = mpsc::unbounded_channel();
    let mut acks = crate::model::AckRoutes {
        mqtt: Some(mqtt_ack_tx),
        serial: std::collections::HashMap::new(),
    };
    let mut serial_ack_rxs = Vec::new();
    for serial in &config.serial {
        let (tx, rx) = mpsc::unbounded_channel();
        acks.serial
            .insert(Arc::<str>::from(serial.port.as_str()), tx.clone());
        serial_ack_rxs.push((tx, rx));
    }
    let committed = Arc::new(Notify::new());

    // While the spool refuses, the lookout keeps the alert engine and the dashboard seeing the site.
    let lookout = match &mqtt {
        Some((options, _, _)) => Some(source::lookout::Lookout {
            options: options.clone(),
            site: config.site.clone(),
            normaliser: Normaliser::new(
                config.site.clone(),
                Inventory::from_config(&config),
                config.normalise.clone(),
            ),
            derive: Derive::new(config.site.clone()),
            partition: partition.clone(),
            observers: observers.clone(),
            health: Arc::clone(&health),
            shutdown: trigger.subscribe(),
        }),
        _ => None,
    };
    let lookout_task = lookout.map(|lookout| tokio::spawn(lookout.run()));

    let (staged_tx, staged_rx) = std::sync::mpsc::sync_channel(crate::ingest::commit::STAGED_BATCHES);
    let committer = crate::ingest::commit::Committer {
        spool: spool_writer,
        dead_letters: Arc::clone(&dead_letters),
        acks,
        committed: Arc::clone(&committed),
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
        shutdown: trigger.subscribe(),
        refusing: false,
    };
    let committer_thread = std::thread::Builder::new()
        .name("rackwatch-commit".into())
        .spawn(move || committer.run(staged_rx))
        .map_err(|e| StartError::Spool {
            path: "commit thread".into(),
            source: e.into(),
        })?;
    let ingest = Ingest {
        site: config.site.to_string(),
        normaliser,
        derive: Derive::new(config.site.clone()),
        staged: staged_tx,
        dead_letters: Arc::clone(&dead_letters),
        intake: Arc::clone(&intake),
        metrics: Arc::clone(&metrics),
        observers,
        partition: partition.clone(),
        commit_linger: config.spool.commit_linger,
        batch: crate::ingest::commit::Staged::default(),
    };
    let ingest_thread = std::thread::Builder::new()
        .name("rackwatch-ingest".into())
        .spawn({
            let runtime = tokio::runtime::Handle::current();
            move || runtime.block_on(ingest.run(incoming_rx, history_rx))
        })
        .map_err(|e| StartError::Spool {
            path: "ingest thread".into(),
            source: e.into(),
        })?;

    let mut sources = tokio::task::JoinSet::new();
    if let Some((options, _, (read_interval, max_queue_delay))) = mqtt {
        let share_group = config.mqtt.as_ref().and_then(|m| m.share_group.as_deref());
        let filters = match &partition {
            Some(partition) => partition.subscriptions(&config.site, share_group.unwrap_or("rackwatch")),
            None => source::mqtt::subscriptions(&config.site, share_group),
        };
        let (host, port) = options.broker_address();
        let watch = source::mqtt::Watch {
            metrics: Arc::clone(&metrics),
            health: Arc::clone(&health),
            broker: format!("{host}:{port}"),
        };
        sources.spawn(source::mqtt::run(
            options,
            filters,
            incoming_tx.clone(),
            mqtt_ack_rx,
            watch,
            source::mqtt::Pace {
                read_interval,
                max_queue_delay,
                intake,
            },
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
        (Some(writer), Some(influx_config)) => {
            if !config.history.enabled {
                history_status.off("[history] enabled = false");
            }
            Some(tokio::spawn(influx::drain(influx::Drain {
                reader: spool_reader,
                writer,
                config: influx_config.clone(),
                committed: Arc::clone(&committed),
                dead_letters: Arc::clone(&dead_letters),
                metrics: Arc::clone(&metrics),
                status: Arc::clone(&sink_status),
                shutdown: trigger.subscribe(),
                grace: SHUTDOWN_GRACE,
            })))
        }
        _ if config.history.enabled => {
            let dir = config.history.dir(&config.spool.dir);
            tracing::info!(
                "no [influxdb] configured: the spool drains into the gateway's own history in {}",
                dir.display()
            );
            let task = history::drain::HistoryDrain {
                reader: spool_reader,
                dir,
                limits: config.history.limits(),
                committed: Arc::clone(&committed),
                metrics: Arc::clone(&metrics),
                status: history_status.clone(),
                shutdown: trigger.subscribe(),
            };
            // Its writes block on fsync: a thread of the blocking pool, not a runtime worker.
            let runtime = tokio::runtime::Handle::current();
            Some(tokio::task::spawn_blocking(move || {
                runtime.block_on(history::drain::drain(task))
            }))
        }
        _ => {
            history_status.off("[history] enabled = false");
            tracing::warn!(
                "no [influxdb] configured and [history] off: readings are kept in the spool until a database is configured"
            );
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
        .merge(crate::view::history::routes(history_status))
        .merge(command::routes(commander, &config)?);
    let http_task = match (&config.http.tls_cert_file, &config.http.tls_key_file) {
        (Some(cert), Some(key)) => {
            let listener = http::TlsListener::new(listener, cert, key)?;
            tokio::spawn(http::serve(
                listener,
                Arc::clone(&metrics),
                Arc::clone(&health),
                routes,
                trigger.subscribe(),
            ))
        }
        _ => tokio::spawn(http::serve(
            listener,
            Arc::clone(&metrics),
            Arc::clone(&health),
            routes,
            trigger.subscribe(),
        )),
    };
    let judge = tokio::spawn(judge_health(
        Arc::clone(&metrics),
        Arc::clone(&health),
        config.influxdb.is_some().then(|| Arc::clone(&sink_status)),
        alert_tasks
            .iter()
            .map(tokio::task::JoinHandle::abort_handle)
            .collect(),
        trigger.subscribe(),
    ));

    let mut shutdown: Shutdown = trigger.subscribe();
    shutdown.recv().await;
    tracing::info!("shutting down: stopping sources, committing the spool, draining it");
    let stop_by = tokio::time::Instant::now() + STOP_BUDGET;
    // Each step waits at most until the budget is spent; what is left then is abandoned: committed
    // data is on disk and what was not committed was not acknowledged.
    let joined = tokio::time::timeout_at(stop_by, async { while sources.join_next().await.is_some() {} });
    if joined.await.is_err() {
        sources.abort_all();
    }
    // Sources are gone, so the ingest thread sees its channel close, commits and ends (or, with the
    // spool refusing, ends without acknowledging).
    // Ingest ends first and drops its end of the hand-over, so the committer commits what is
    // staged and ends too.
    let ingest_done = tokio::task::spawn_blocking(move || {
        let _ = ingest_thread.join();
        committer_thread.join()
    });
    if tokio::time::timeout_at(stop_by, ingest_done).await.is_err() {
        tracing::warn!("ingest did not finish in time; its uncommitted messages were not acknowledged");
    }
    committed.notify_one();
    if let Some(sink) = sink {
        let abort = sink.abort_handle();
        if tokio::time::timeout_at(stop_by, sink).await.is_err() {
            abort.abort();
            tracing::warn!(
                "shutdown budget spent with the spool not drained; it is written after the restart"
            );
        }
    }
    // Graceful shutdown waits for open connections, and a dashboard's event stream never ends by
    // itself: give clients a moment, then leave them.
    let http_by = (tokio::time::Instant::now() + HTTP_GRACE).min(stop_by + HTTP_GRACE);
    if tokio::time::timeout_at(http_by, http_task).await.is_err() {
        tracing::info!("HTTP clients still connected at shutdown were dropped");
    }
    judge.abort();
    if let Some(task) = lookout_task {
        task.abort();
    }
    // Ingest and the lookout are gone, so the history feed sees its queue close and writes the
    // minutes it rolled up.
    if let Some(thread) = history_thread {
        let written = tokio::task::spawn_blocking(move || thread.join());
        if tokio::time::timeout_at(http_by, written).await.is_err() {
            tracing::warn!("the history's last minutes were not written in time");
        }
    }
    for task in alert_tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout_at(http_by, task).await.is_err() {
            abort.abort();
        }
    }
    let _ = tokio::time::timeout_at(http_by, dashboard_task).await;
    tracing::info!("stopped");
    Ok(())
}

/// Judges the components no stage reports itself, once a second: the database from what the sink
/// already exposes (points written, bytes waiting), the alert engine from its tasks still running.
async fn judge_health(
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    // `None` without `[influxdb]`: the spool drains into the history, and there is no database to
    // judge.
    sink: Option<Arc<influx::SinkStatus>>,
    alert_tasks: Vec<tokio::task::AbortHandle>,
    mut shutdown: Shutdown,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut written = metrics.points_written.get();
    let mut progress_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.recv() => return,
        }
        if let Some(sink) = &sink {
            let now_written = metrics.points_written.get();
            let waiting = metrics.spool_pending_bytes.get();
            if now_written != written || waiting == 0 {
                written = now_written;
                progress_at = tokio::time::Instant::now();
            }
            let stalled = progress_at.elapsed();
            health.set(
                Component::Database,
                // A refusal only an operator can end (credentials, a missing database) says so at once;
                // otherwise the database is down when writes have stalled for long.
                if let Some(problem) = sink.problem() {
                    Err(format!(
                        "refusing writes ({problem}); readings are kept in the spool"
                    ))
                } else if stalled < DATABASE_STALL {
                    Ok(())
                } else {
                    Err(format!(
                        "no successful write for {} s with {waiting} bytes waiting in the spool",
                        stalled.as_secs()
                    ))
                },
            );
        }
        if !alert_tasks.is_empty() {
            let stopped = alert_tasks.iter().filter(|t| t.is_finished()).count();
            health.set(
                Component::Alerts,
                if stopped == 0 {
                    Ok(())
                } else {
                    Err(format!("{stopped} alert engine task(s) stopped"))
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_names_a_missing_secret_and_a_spool_folder_that_cannot_be_made() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("a-file");
        std::fs::write(&blocker, b"x").unwrap();
        let text = format!(
            "site = \"fra1\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nusername = \"gw\"\n\
             password = {{ env = \"RACKWATCH_TEST_PREFLIGHT_UNSET\" }}\n[spool]\ndir = \"{}\"\n",
            blocker.join("spool").display()
        );
        let config = Config::parse(&text).unwrap();
        let problems = preflight(&config);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(
            problems[0],
            "mqtt.password: environment variable RACKWATCH_TEST_PREFLIGHT_UNSET is not set"
        );
        assert!(
            problems[1].starts_with("spool.dir: the gateway cannot create or write"),
            "{problems:?}"
        );

        let fine = text.replace(
            &blocker.join("spool").display().to_string(),
            &dir.path().join("spool").display().to_string(),
        );
        let fine = fine.replace(
            "username = \"gw\"\npassword = { env = \"RACKWATCH_TEST_PREFLIGHT_UNSET\" }\n",
            "",
        );
        assert_eq!(preflight(&Config::parse(&fine).unwrap()), Vec::<String>::new());
    }
}
