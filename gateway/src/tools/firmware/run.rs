//! `rackwatch firmware update|status|resume|abort`: a rollout driven over the gateway's broker.
//!
//! The rollout's state lives in `{spool.dir}/firmware/rollout.json`, written after every change, so a
//! restarted gateway host shows it (`status`), goes on with it (`resume`, which also starts again the
//! nodes that failed, optionally with a corrected `--file`), or gives it up (`abort`, which tells the
//! nodes mid-transfer to forget the update). The MQTT connection is the gateway's broker, credentials
//! and TLS under its own client id; the nodes, rows and racks are the configuration's `[nodes]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use rackwatch_protocols::topic::{self, NodeTopic};
use rackwatch_protocols::update::OtaFrame;
use rackwatch_protocols::{NodeId, OtaAck, SiteId, Status, UpdateHeader};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde::{Deserialize, Serialize};

use super::FirmwareError;
use super::driver::{Driver, NodeStats, Out, Timing, UpdateFile};
use super::rollout::{BatchSize, FleetNode, NodeProgress, Rollout, Selector};
use crate::config::Config;
use crate::events::{FirmwareUpdateFailed, Metrics};

/// `rackwatch firmware update`
#[derive(Debug, Clone, Args)]
pub struct UpdateOptions {
    /// The gateway's configuration: broker, site, spool folder and the node inventory.
    #[arg(long)]
    pub config: PathBuf,
    /// The signed update file (`rackwatch firmware sign`).
    #[arg(long)]
    pub file: PathBuf,
    /// Which nodes: `row=r01,rack=a03,node=r01-n1` (any term matches) or `all`.
    #[arg(long)]
    pub select: String,
    /// Nodes updated first, alone.
    #[arg(long, default_value_t = 1)]
    pub canary: usize,
    /// Nodes per batch after the canary: a count (`10`) or a share (`10%`).
    #[arg(long, default_value = "10%")]
    pub batch: String,
    /// Failed nodes tolerated before the rollout pauses.
    #[arg(long, default_value_t = 1)]
    pub max_failures: usize,
    /// How long to wait for a node's answer to a frame (`5s`).
    #[arg(long, default_value = "5s")]
    pub ack_timeout: String,
    /// How long a node has to come back with the new version confirmed after its reboot (`3m`).
    #[arg(long, default_value = "3m")]
    pub boot_timeout: String,
}

/// The persisted rollout.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    rollout: Rollout,
    file: PathBuf,
    ack_timeout_ms: u64,
    boot_timeout_ms: u64,
    /// Failed nodes by reason label, as counted in `rackwatch_firmware_update_failures_total`.
    failures: BTreeMap<String, u64>,
}

fn state_path(config: &Config) -> PathBuf {
    config.spool.dir.join("firmware").join("rollout.json")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FirmwareError + '_ {
    super::io(path)
}

fn load_config(path: &Path) -> Result<Config, FirmwareError> {
    Config::load(path).map_err(|e| FirmwareError::Check(e.to_string()))
}

fn load_state(config: &Config) -> Result<Option<Saved>, FirmwareError> {
    let path = state_path(config);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| FirmwareError::BadFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

fn save_state(config: &Config, saved: &Saved) -> Result<(), FirmwareError> {
    let path = state_path(config);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let temporary = path.with_extension("json.new");
    let json = serde_json::to_vec_pretty(saved).map_err(|e| FirmwareError::Check(e.to_string()))?;
    std::fs::write(&temporary, json).map_err(io(&temporary))?;
    std::fs::rename(&temporary, &path).map_err(io(&path))
}

fn read_update(path: &Path) -> Result<UpdateFile, FirmwareError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let header: UpdateHeader = super::check(&bytes, None).map_err(|reason| FirmwareError::BadFile {
        path: path.display().to_string(),
        reason,
    })?;
    Ok(UpdateFile { header, bytes })
}

fn duration_ms(flag: &str, text: &str) -> Result<u64, FirmwareError> {
    crate::config::parse_duration(text)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .map_err(|e| FirmwareError::Check(format!("{flag}: {e}")))
}

fn fleet(config: &Config) -> Vec<FleetNode> {
    config
        .nodes
        .iter()
        .map(|(node, entry)| FleetNode {
            node: node.as_str().to_owned(),
            row: entry.row.as_ref().map(ToString::to_string).unwrap_or_default(),
            rack: entry.rack.as_ref().map(ToString::to_string).unwrap_or_default(),
        })
        .collect()
}

/// Plans and drives a new rollout; refuses while another is unfinished.
pub async fn update(options: &UpdateOptions) -> Result<String, FirmwareError> {
    let config = load_config(&options.config)?;
    if let Some(saved) = load_state(&config)?
        && !finished(&saved.rollout)
    {
        return Err(FirmwareError::Check(format!(
            "rollout of {} is unfinished ({}): `rackwatch firmware status`, `resume` or `abort` it first",
            saved.rollout.version,
            saved.rollout.paused.as_deref().unwrap_or("under way")
        )));
    }
    let file = read_update(&options.file)?;
    let selector = Selector::parse(&options.select).map_err(|e| FirmwareError::Check(e.to_string()))?;
    let batch = BatchSize::parse(&options.batch).map_err(|e| FirmwareError::Check(e.to_string()))?;
    let rollout = Rollout::plan(
        file.header.update_id(),
        file.header.version,
        &fleet(&config),
        &selector,
        options.canary,
        batch,
        options.max_failures,
    )
    .map_err(|e| FirmwareError::Check(e.to_string()))?;
    let saved = Saved {
        rollout,
        file: options.file.clone(),
        ack_timeout_ms: duration_ms("--ack-timeout", &options.ack_timeout)?,
        boot_timeout_ms: duration_ms("--boot-timeout", &options.boot_timeout)?,
        failures: BTreeMap::new(),
    };
    drive(&config, saved, file).await
}

fn finished(rollout: &Rollout) -> bool {
    rollout.paused.is_none()
        && rollout.nodes.values().all(|p| {
            matches!(
                p,
                NodeProgress::Done | NodeProgress::Failed { .. } | NodeProgress::NotUpdatable { .. }
            )
        })
}

/// Goes on with the saved rollout; its failed nodes start over (with `file`, if given: the same update).
pub async fn resume(config: &Path, file: Option<&Path>) -> Result<String, FirmwareError> {
    let config = load_config(config)?;
    let mut saved =
        load_state(&config)?.ok_or_else(|| FirmwareError::Check("no rollout to resume".into()))?;
    if let Some(path) = file {
        saved.file = path.to_owned();
    }
    let update = read_update(&saved.file)?;
    if update.header.update_id() != saved.rollout.update || update.header.version != saved.rollout.version {
        return Err(FirmwareError::Check(format!(
            "{} is not the update this rollout sends ({}, id {:08x})",
            saved.file.display(),
            saved.rollout.version,
            saved.rollout.update
        )));
    }
    for progress in saved.rollout.nodes.values_mut() {
        if matches!(progress, NodeProgress::Failed { .. }) {
            *progress = NodeProgress::Waiting;
        }
    }
    drive(&config, saved, update).await
}

/// One line per node, the pause reason and the failures so far.
pub fn status(config: &Path) -> Result<String, FirmwareError> {
    let config = load_config(config)?;
    let saved = load_state(&config)?.ok_or_else(|| FirmwareError::Check("no rollout".into()))?;
    let mut lines = vec![format!(
        "rollout of {} (update {:08x}, {}): {}",
        saved.rollout.version,
        saved.rollout.update,
        saved.file.display(),
        match (&saved.rollout.paused, finished(&saved.rollout)) {
            (Some(reason), _) => format!("paused: {reason}"),
            (None, true) => "complete".into(),
            (None, false) => "under way (interrupted: `rackwatch firmware resume`)".into(),
        }
    )];
    lines.extend(saved.rollout.report());
    for (reason, count) in &saved.failures {
        lines.push(format!("failures {reason}: {count}"));
    }
    Ok(lines.join("\n"))
}

/// Gives the rollout up: nodes mid-transfer are told to forget the update; the state is kept aside.
pub async fn abort(config: &Path) -> Result<String, FirmwareError> {
    let config = load_config(config)?;
    let saved = load_state(&config)?.ok_or_else(|| FirmwareError::Check("no rollout to abort".into()))?;
    let sending: Vec<String> = saved
        .rollout
        .nodes
        .iter()
        .filter(|(_, p)| matches!(p, NodeProgress::Sending { .. }))
        .map(|(n, _)| n.clone())
        .collect();
    if !sending.is_empty() {
        let (client, mut events) = connect(&config)?;
        let mut frame = [0u8; 16];
        let len = OtaFrame::Abort {
            update: saved.rollout.update,
        }
        .emit(&mut frame)
        .unwrap_or_default();
        for node in &sending {
            let payload = frame.get(..len).unwrap_or_default().to_vec();
            publish(&client, &config.site, node, NodeTopic::Ota, payload).await?;
        }
        // Let the event loop hand the aborts to the broker before leaving.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut acked = 0;
        while acked < sending.len() && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(500), events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Err(_)) => break,
                _ => {}
            }
        }
    }
    let path = state_path(&config);
    let aside = path.with_extension("aborted.json");
    std::fs::rename(&path, &aside).map_err(io(&path))?;
    Ok(format!(
        "rollout of {} aborted; {} node(s) told to forget the update; its state is in {}",
        saved.rollout.version,
        sending.len(),
        aside.display()
    ))
}

fn connect(config: &Config) -> Result<(AsyncClient, rumqttc::EventLoop), FirmwareError> {
    let mqtt = config
        .mqtt
        .as_ref()
        .ok_or_else(|| FirmwareError::Check("the configuration has no [mqtt] broker".into()))?;
    let mut options = crate::source::mqtt::options(mqtt).map_err(|e| FirmwareError::Check(e.to_string()))?;
    options.set_client_id(format!("{}-firmware", mqtt.client_id));
    options.set_clean_session(true);
    options.set_manual_acks(false);
    let (client, mut events) = AsyncClient::new(options, 256);
    // Stop-and-wait sends a chunk right after the PUBACK of the node's answer: with Nagle's algorithm
    // the chunk waits for that PUBACK's TCP acknowledgement, which delayed ACK holds back 40 ms or so.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    events.set_network_options(network);
    Ok((client, events))
}

/// MQTT bytes of a PUBLISH received at QoS 1 and its PUBACK (§3.3, §3.4).
fn received_len(topic: &str, payload: usize) -> u64 {
    (1 + 2 + 2 + topic.len() + 2 + payload + 4) as u64
}

/// Drives the rollout until it completes or pauses.
async fn drive(config: &Config, mut saved: Saved, file: UpdateFile) -> Result<String, FirmwareError> {
    let (client, mut events) = connect(config)?;
    let site: SiteId = config.site.clone();
    let metrics = Metrics::new();
    let timing = Timing {
        ack_timeout_ms: saved.ack_timeout_ms,
        boot_timeout_ms: saved.boot_timeout_ms,
        ..Timing::default()
    };
    let mut driver = Driver::new(saved.rollout.clone(), file, site.as_str(), timing);
    let started = Instant::now();
    let now_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Retained births arrive right after the subscription; they say which nodes already run the
    // version. Start once they had a moment to arrive.
    let mut start_at: Option<Instant> = None;
    let mut begun = false;
    let mut early: Vec<Status> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        let mut outs = Vec::new();
        tokio::select! {
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for kind in [NodeTopic::OtaAck, NodeTopic::Status] {
                        let filter = topic::node_filter(Some(&site), kind);
                        let _ = client.subscribe(filter.as_str(), QoS::AtLeastOnce).await;
                    }
                    start_at.get_or_insert(Instant::now() + Duration::from_secs(1));
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    match topic::parse(&publish.topic).map(|t| t.kind) {
                        Ok(NodeTopic::OtaAck) => if let Ok(ack) = OtaAck::decode(&publish.payload) {
                            let len = received_len(&publish.topic, publish.payload.len());
                            outs = driver.on_ack(&ack, len, now_ms());
                        },
                        Ok(NodeTopic::Status) => if let Ok(status) = Status::decode(&publish.payload) {
                            if begun {
                                outs = driver.on_status(&status, now_ms());
                            } else {
                                early.push(status);
                            }
                        },
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    say(&format!("broker: {e}; connecting again"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = tick.tick() => {
                if !begun && start_at.is_some_and(|at| Instant::now() >= at) {
                    begun = true;
                    for status in early.drain(..) {
                        outs.extend(driver.already_running(&status));
                    }
                    outs.extend(driver.start(now_ms()));
                } else if begun {
                    outs = driver.tick(now_ms());
                }
            }
        }
        for out in outs {
            match out {
                Out::Frame { node, payload } => {
                    publish(&client, &site, &node, NodeTopic::Ota, payload).await?;
                }
                Out::Command { node, payload } => {
                    publish(&client, &site, &node, NodeTopic::Command, payload).await?;
                }
                Out::Line(line) => say(&line),
                Out::Failure { node, reason } => {
                    FirmwareUpdateFailed { node: &node, reason }.emit(&metrics);
                    *saved.failures.entry(reason.to_owned()).or_default() += 1;
                }
                Out::Save => {
                    saved.rollout = driver.rollout.clone();
                    save_state(config, &saved)?;
                }
                Out::Finished { paused } => {
                    saved.rollout = driver.rollout.clone();
                    save_state(config, &saved)?;
                    let _ = client.disconnect().await;
                    let summary = summary(&driver.stats);
                    return match paused {
                        Some(reason) => Err(FirmwareError::Check(format!("rollout {reason}\n{summary}"))),
                        None => Ok(summary),
                    };
                }
            }
        }
    }
}

/// One line of progress, as it happens (the operator watches the rollout).
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Publishes to a node's `kind` topic at QoS 1.
async fn publish(
    client: &AsyncClient,
    site: &SiteId,
    node: &str,
    kind: NodeTopic,
    payload: Vec<u8>,
) -> Result<(), FirmwareError> {
    let Ok(id) = NodeId::new(node) else {
        say(&format!("{node}: not a node id; skipped"));
        return Ok(());
    };
    client
        .publish(
            topic::node(site, &id, kind).as_str(),
            QoS::AtLeastOnce,
            false,
            payload,
        )
        .await
        .map_err(|e| FirmwareError::Check(format!("MQTT client: {e}")))
}

/// The closing figures: per node, the time and the bytes on the wire.
fn summary(stats: &BTreeMap<String, NodeStats>) -> String {
    let finished: Vec<(&String, &NodeStats)> =
        stats.iter().filter(|(_, s)| s.finished_ms.is_some()).collect();
    let mut lines: Vec<String> = finished
        .iter()
        .map(|(node, s)| {
            format!(
                "{node}: {:.1} s, {} bytes to the node, {} bytes back",
                s.finished_ms.unwrap_or_default().saturating_sub(s.started_ms) as f64 / 1000.0,
                s.bytes_out,
                s.bytes_in
            )
        })
        .collect();
    let first = finished
        .iter()
        .map(|(_, s)| s.started_ms)
        .min()
        .unwrap_or_default();
    let last = finished
        .iter()
        .filter_map(|(_, s)| s.finished_ms)
        .max()
        .unwrap_or_default();
    lines.push(format!(
        "{} node(s) in {:.1} s",
        finished.len(),
        last.saturating_sub(first) as f64 / 1000.0
    ));
    lines.join("\n")
}
