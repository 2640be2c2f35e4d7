//! The load benchmark (`bench/run.sh [flood|steady|backlog|all]`): simulated nodes publish QoS 1
//! through a real Mosquitto into the release gateway, started as its own process exactly as the
//! end-to-end tests do, which spools durably and writes to a real VictoriaMetrics. It measures
//! throughput end to end, the gateway's CPU time per reading and peak RSS from `/proc`, latencies,
//! and counts readings lost and stored twice from the database, then writes `bench/results/`.
//!
//! Every load is bounded in count (rounds) and time; every wait has a deadline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "benchmark harness: a panic is a failed run, and it reports on stdout"
)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rackwatch_protocols::{ChannelName, NodeId, Quantity, Reading, Telemetry, Unit};
use rackwatch_tests::{ExportedSeries, Gateway, GatewaySettings, Mosquitto, VictoriaMetrics, now_ms};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------------
// Targets (from the issue). Never weakened: a miss is recorded as a miss.

const TARGET_FLOOD_READINGS_PER_SEC: f64 = 200_000.0;
const TARGET_CPU_US_PER_READING: f64 = 2.0;
const TARGET_RSS_MIB: f64 = 64.0;
const TARGET_ALERT_P99_MS: f64 = 10.0;
const TARGET_DRAIN_RATIO: f64 = 10.0;

/// The alert rule's trigger and clear thresholds (°C); ordinary readings stay below both.
const HOT: f64 = 30.0;
const COOL: f64 = 20.0;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn node_name(index: usize) -> String {
    format!("n{index:05}")
}

// ---------------------------------------------------------------------------------------------
// The shape of a load.

#[derive(Debug, Clone)]
struct Shape {
    site: String,
    nodes: usize,
    readings: usize,
    /// Publisher MQTT connections; node `i` publishes on connection `i % connections`.
    connections: usize,
    /// `None`: every connection publishes as fast as the broker takes it (flood).
    interval: Option<Duration>,
    /// Publishing stops after this long ...
    duration: Duration,
    /// ... or after this many messages per node, whichever comes first.
    max_rounds: u32,
    /// Every `alert_every`-th node's channel `ch0` goes hot and cool, crossing the alert rule.
    alert_every: usize,
    /// Messages per hot (or cool) half-period of an alerting node.
    hot_period: u32,
    /// Nodes `0..marked` have their `ch1` readings timed from publish to visible in the database.
    marked: usize,
    /// Synthetic timestamps `base + seq` (ms) for a flood, whose messages of one node come faster
    /// than one per millisecond; `None`: the wall clock at publish.
    ts_base: Option<i64>,
}

impl Shape {
    fn is_alerting(&self, node: usize) -> bool {
        self.alert_every > 0 && node.is_multiple_of(self.alert_every)
    }

    /// The value a node publishes: deterministic, exactly representable, so the database can be
    /// compared value by value. Ordinary readings stay within 18..26 °C, under the rule's clear.
    fn value(&self, node: usize, seq: u32, channel: usize) -> f64 {
        if channel == 0 && self.is_alerting(node) {
            return if (seq / self.hot_period.max(1)) % 2 == 1 {
                HOT
            } else {
                COOL
            };
        }
        let mix = (node as u32)
            .wrapping_mul(7)
            .wrapping_add(channel as u32 * 3)
            .wrapping_add(seq.wrapping_mul(5));
        18.0 + f64::from(mix % 256) / 32.0
    }

    fn alerting_nodes(&self) -> Vec<usize> {
        (0..self.nodes).filter(|n| self.is_alerting(*n)).collect()
    }

    fn readings_per_second_offered(&self) -> Option<f64> {
        self.interval
            .map(|i| (self.nodes * self.readings) as f64 / i.as_secs_f64())
    }
}

/// A timed message: published at `at`, looked for in the database by `(timestamp, node)`.
#[derive(Debug, Clone, Copy)]
struct Mark {
    node: usize,
    ts: i64,
    at: Instant,
    /// The first point of its series (a new series is slower to become searchable).
    first: bool,
}

#[derive(Debug, Default)]
struct Counters {
    messages: AtomicU64,
    acked: AtomicU64,
    /// Set to end the load before its time bound.
    stop: AtomicBool,
}

/// What one publisher connection published: per node, the timestamp of each seq.
type NodeLogs = Vec<(usize, Vec<i64>)>;

async fn publish_connection(
    shape: Arc<Shape>,
    connection: usize,
    port: u16,
    start: Instant,
    marks: mpsc::UnboundedSender<Mark>,
    counters: Arc<Counters>,
) -> NodeLogs {
    let mut options = MqttOptions::new(format!("bench-{}-{connection}", shape.site), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(1000);
    options.set_max_packet_size(64 * 1024, 64 * 1024);
    // A small request queue: a mark's time is when its publish was queued, so a long client-side
    // queue would hide latency in the publisher.
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let acked = Arc::new(AtomicU64::new(0));
    let acked_by_poller = Arc::clone(&acked);
    let finished = Arc::new(AtomicBool::new(false));
    let quiet = Arc::clone(&finished);
    let all_acked = Arc::clone(&counters);
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked_by_poller.fetch_add(1, Ordering::Relaxed);
                    all_acked.acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    if !quiet.load(Ordering::Relaxed) {
                        eprintln!("publisher {connection}: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let mine: Vec<usize> = (connection..shape.nodes).step_by(shape.connections).collect();
    let topics: Vec<String> = mine
        .iter()
        .map(|n| format!("rackwatch/v1/{}/{}/telemetry", shape.site, node_name(*n)))
        .collect();
    let ids: Vec<NodeId> = mine
        .iter()
        .map(|n| NodeId::new(&node_name(*n)).unwrap())
        .collect();
    let channels: Vec<ChannelName> = (0..shape.readings)
        .map(|c| ChannelName::new(&format!("ch{c}")).unwrap())
        .collect();
    let mut logs: Vec<Vec<i64>> = vec![Vec::new(); mine.len()];
    let mut buf = vec![0u8; rackwatch_protocols::MAX_MESSAGE_LEN];
    let mut sent = 0u64;
    'rounds: for seq in 0..shape.max_rounds {
        for (k, &node) in mine.iter().enumerate() {
            match shape.interval {
                Some(interval) => {
                    // Nodes are spread evenly over the interval, as a real fleet's clocks are.
                    let offset = interval.mul_f64(node as f64 / shape.nodes as f64);
                    let due = interval.saturating_mul(seq) + offset;
                    if due >= shape.duration {
                        break 'rounds;
                    }
                    tokio::time::sleep_until((start + due).into()).await;
                }
                None => {
                    if start.elapsed() >= shape.duration {
                        break 'rounds;
                    }
                }
            }
            if counters.stop.load(Ordering::Relaxed) {
                break 'rounds;
            }
            let ts = shape.ts_base.map_or_else(now_ms, |base| base + i64::from(seq));
            let mut readings = heapless::Vec::new();
            for (c, channel) in channels.iter().enumerate() {
                readings
                    .push(Reading::ok(
                        channel.clone(),
                        Quantity::Temperature,
                        shape.value(node, seq, c),
                        Unit::Celsius,
                    ))
                    .unwrap();
            }
            let telemetry = Telemetry {
                version: 1,
                node: ids[k].clone(),
                boot: 0xBE4C,
                seq,
                timestamp_ms: Some(ts as u64),
                uptime_ms: 1_000 + u64::from(seq) * 10,
                dropped: 0,
                readings,
            };
            let n = telemetry.encode(&mut buf).unwrap();
            client
                .publish(&topics[k], QoS::AtLeastOnce, false, buf[..n].to_vec())
                .await
                .unwrap();
            logs[k].push(ts);
            sent += 1;
            counters.messages.fetch_add(1, Ordering::Relaxed);
            if node < shape.marked {
                let _ = marks.send(Mark {
                    node,
                    ts,
                    at: Instant::now(),
                    first: seq == 0,
                });
            }
        }
    }
    // Every publish acknowledged by the broker before the connection goes (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    finished.store(true, Ordering::Relaxed);
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    poller.abort();
    mine.into_iter().zip(logs).collect()
}

/// Starts the load: one task per publisher connection.
fn start_load(
    shape: &Arc<Shape>,
    port: u16,
    marks: &mpsc::UnboundedSender<Mark>,
    counters: &Arc<Counters>,
) -> (Instant, Vec<tokio::task::JoinHandle<NodeLogs>>) {
    let start = Instant::now();
    let tasks = (0..shape.connections)
        .map(|c| {
            tokio::spawn(publish_connection(
                Arc::clone(shape),
                c,
                port,
                start,
                marks.clone(),
                Arc::clone(counters),
            ))
        })
        .collect();
    (start, tasks)
}

async fn join_load(shape: &Shape, tasks: Vec<tokio::task::JoinHandle<NodeLogs>>) -> Vec<Vec<i64>> {
    let mut by_node = vec![Vec::new(); shape.nodes];
    for task in tasks {
        for (node, log) in task.await.unwrap() {
            by_node[node] = log;
        }
    }
    by_node
}

// ---------------------------------------------------------------------------------------------
// /proc: CPU time, memory, the whole machine.

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process (or thread) in clock ticks, from `/proc/.../stat`.
fn cpu_ticks(stat_path: &str) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    let (head, rest) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn process_ticks(pid: Option<u32>) -> u64 {
    pid.and_then(|p| cpu_ticks(&format!("/proc/{p}/stat")))
        .map_or(0, |(_, t)| t)
}

/// CPU ticks per thread name of a process (tokio workers summed under one name).
fn thread_ticks(pid: u32) -> BTreeMap<String, u64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        if let Some((comm, ticks)) = cpu_ticks(&format!("{}/stat", task.path().display())) {
            *by_name.entry(comm).or_insert(0) += ticks;
        }
    }
    by_name
}

/// `VmHWM` (peak RSS) and `VmRSS` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The process whose command line contains `needle` (the harness does not hand out pids: each
/// server is found by its own temporary folder).
fn find_pid(needle: &str) -> Option<u32> {
    let own = std::process::id();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        if pid == own {
            return None;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .replace('\0', " ")
            .contains(needle)
            .then_some(pid)
    })
}

/// (busy, total) ticks of the whole machine, from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return (0, 0);
    };
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The processes of one run and their CPU counters at one moment.
#[derive(Debug, Clone, Default)]
struct CpuSnapshot {
    at: Option<Instant>,
    gateway: u64,
    broker: u64,
    database: u64,
    bench: u64,
    machine_busy: u64,
    machine_total: u64,
    gateway_threads: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct Pids {
    gateway: u32,
    broker: Option<u32>,
    database: Option<u32>,
}

impl Pids {
    fn find(gateway: &Gateway, broker: &Mosquitto, db: &VictoriaMetrics) -> Pids {
        let config = gateway.dir().join("rackwatch.toml").display().to_string();
        Pids {
            gateway: find_pid(&config).expect("the gateway's process"),
            broker: find_pid(&broker.dir().join("mosquitto.conf").display().to_string()),
            database: find_pid(&db.dir().join("data").display().to_string()),
        }
    }

    fn snapshot(&self) -> CpuSnapshot {
        let (machine_busy, machine_total) = machine_ticks();
        CpuSnapshot {
            at: Some(Instant::now()),
            gateway: process_ticks(Some(self.gateway)),
            broker: process_ticks(self.broker),
            database: process_ticks(self.database),
            bench: process_ticks(Some(std::process::id())),
            machine_busy,
            machine_total,
            gateway_threads: thread_ticks(self.gateway),
        }
    }
}

/// CPU used between two snapshots, in seconds.
#[derive(Debug, Clone, Default)]
struct CpuUse {
    wall: f64,
    gateway: f64,
    broker: f64,
    database: f64,
    bench: f64,
    machine_busy: f64,
    machine_capacity: f64,
    gateway_threads: Vec<(String, f64)>,
}

fn cpu_use(before: &CpuSnapshot, after: &CpuSnapshot, hz: f64) -> CpuUse {
    let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz;
    let mut threads: Vec<(String, f64)> = after
        .gateway_threads
        .iter()
        .map(|(name, t)| {
            let was = before.gateway_threads.get(name).copied().unwrap_or(0);
            (name.clone(), secs(was, *t))
        })
        .filter(|(_, s)| *s > 0.0)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    CpuUse {
        wall: match (before.at, after.at) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        },
        gateway: secs(before.gateway, after.gateway),
        broker: secs(before.broker, after.broker),
        database: secs(before.database, after.database),
        bench: secs(before.bench, after.bench),
        machine_busy: secs(before.machine_busy, after.machine_busy),
        machine_capacity: secs(before.machine_total, after.machine_total),
        gateway_threads: threads,
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway's /metrics.

fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn metric(metrics: &HashMap<String, f64>, key: &str) -> f64 {
    metrics.get(key).copied().unwrap_or(0.0)
}

/// The cumulative buckets `(le, count)` of a histogram, `+Inf` last.
fn histogram(metrics: &HashMap<String, f64>, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = metrics
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// A quantile of a histogram as Prometheus' `histogram_quantile` computes it (linear within the
/// bucket), with the bucket's bounds: the true value is only known to lie between them.
#[derive(Debug, Clone, Copy)]
struct BucketQuantile {
    estimate: f64,
    lower: f64,
    upper: f64,
}

fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> Option<BucketQuantile> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(BucketQuantile {
                    estimate: previous.0,
                    lower: previous.0,
                    upper: le,
                });
            }
            let within = if count > previous.1 {
                (rank - previous.1) / (count - previous.1)
            } else {
                1.0
            };
            return Some(BucketQuantile {
                estimate: previous.0 + (le - previous.0) * within,
                lower: previous.0,
                upper: le,
            });
        }
        previous = (le, count);
    }
    None
}

fn delta_histogram(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, count)| {
            let was = before.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, c)| *c);
            (le, count - was)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// VictoriaMetrics: counting, timing visibility, comparing point by point.

#[derive(Debug, Clone)]
struct Database {
    url: String,
    http: reqwest::Client,
}

impl Database {
    /// Readings of `site` stored now (one per series and timestamp), or `None` when the query
    /// failed (database down).
    async fn count(&self, site: &str, window_secs: u64) -> Option<u64> {
        let query = format!("sum(count_over_time(reading_value{{site=\"{site}\"}}[{window_secs}s]))");
        let response = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query.as_str()), ("nocache", "1")])
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = response.json().await.ok()?;
        let result = body["data"]["result"].as_array()?;
        match result.first() {
            None => Some(0),
            Some(first) => first["value"][1].as_str()?.parse::<f64>().ok().map(|v| v as u64),
        }
    }

    async fn export_lines(&self, selector: &str, start_ms: i64, flush: bool) -> Option<reqwest::Response> {
        if flush {
            self.http
                .get(format!("{}/internal/force_flush", self.url))
                .send()
                .await
                .ok()?;
        }
        let start = format!("{:.3}", start_ms as f64 / 1000.0);
        self.http
            .post(format!("{}/api/v1/export", self.url))
            .form(&[("match[]", selector), ("start", start.as_str())])
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()
    }
}

/// Feeds every series line of an export to `each`, reading the response in chunks so a large
/// export is never held whole.
async fn for_each_series(mut response: reqwest::Response, mut each: impl FnMut(ExportedSeries)) {
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        pending.extend_from_slice(&chunk);
        let mut consumed = 0;
        while let Some(end) = pending[consumed..].iter().position(|b| *b == b'\n') {
            let line = &pending[consumed..consumed + end];
            if !line.is_empty() {
                each(serde_json::from_slice(line).unwrap());
            }
            consumed += end + 1;
        }
        pending.drain(..consumed);
    }
    if !pending.is_empty() {
        each(serde_json::from_slice(&pending).unwrap());
    }
}

fn parse_index(label: Option<&str>, prefix: &str) -> Option<usize> {
    label?.strip_prefix(prefix)?.parse().ok()
}

/// Times marked messages from their publish to their first appearance in `/api/v1/export` (no
/// forced flush: what a reader of the database sees). Ends when `stop` is set and every mark was
/// seen, or 120 s after `stop`.
async fn time_visibility(
    db: Database,
    site: String,
    mut marks: mpsc::UnboundedReceiver<Mark>,
    poll: Duration,
    stop: Arc<AtomicBool>,
) -> (Vec<(f64, bool)>, usize) {
    let selector =
        format!("{{__name__=\"reading_value\",site=\"{site}\",channel=\"ch1\",node=~\"n000[0-9][0-9]\"}}");
    let mut pending: BTreeMap<(i64, usize), (Instant, bool)> = BTreeMap::new();
    let mut latencies_ms = Vec::new();
    let mut stopped_at: Option<Instant> = None;
    loop {
        while let Ok(mark) = marks.try_recv() {
            pending.insert((mark.ts, mark.node), (mark.at, mark.first));
        }
        if stop.load(Ordering::Relaxed) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if pending.is_empty() || since.elapsed() > Duration::from_secs(120) {
                break;
            }
        }
        if let Some(&(oldest, _)) = pending.keys().next()
            && let Some(response) = db.export_lines(&selector, oldest - 1, false).await
        {
            let seen_at = Instant::now();
            for_each_series(response, |series| {
                let Some(node) = parse_index(series.label("node"), "n") else {
                    return;
                };
                for ts in &series.timestamps {
                    if let Some((at, first)) = pending.remove(&(*ts, node)) {
                        latencies_ms.push((seen_at.duration_since(at).as_secs_f64() * 1000.0, first));
                    }
                }
            })
            .await;
        }
        tokio::time::sleep(poll).await;
    }
    (latencies_ms, pending.len())
}

/// The database compared with what was published, point by point.
#[derive(Debug, Default, Clone)]
struct Exactness {
    published: u64,
    stored: u64,
    lost: u64,
    stored_twice: u64,
    wrong_value: u64,
    examples: Vec<String>,
}

async fn compare(db: &Database, shape: &Shape, logs: &[Vec<i64>]) -> Exactness {
    let selector = format!("{{__name__=\"reading_value\",site=\"{}\"}}", shape.site);
    let response = db
        .export_lines(&selector, 0, true)
        .await
        .expect("export of every reading");
    let mut points: Vec<Vec<(i64, f64)>> = vec![Vec::new(); shape.nodes * shape.readings];
    let mut exactness = Exactness::default();
    for_each_series(response, |series| {
        let node = parse_index(series.label("node"), "n").filter(|n| *n < shape.nodes);
        let channel = parse_index(series.label("channel"), "ch").filter(|c| *c < shape.readings);
        match (node, channel) {
            (Some(node), Some(channel)) => points[node * shape.readings + channel].extend(
                series
                    .timestamps
                    .iter()
                    .copied()
                    .zip(series.values.iter().copied()),
            ),
            _ => {
                exactness.stored_twice += series.values.len() as u64;
                exactness.stored += series.values.len() as u64;
                if exactness.examples.len() < 5 {
                    exactness
                        .examples
                        .push(format!("unexpected series {:?}", series.metric));
                }
            }
        }
    })
    .await;
    for (node, log) in logs.iter().enumerate() {
        for channel in 0..shape.readings {
            exactness.published += log.len() as u64;
            let stored = &mut points[node * shape.readings + channel];
            stored.sort_by_key(|(t, _)| *t);
            // One point per series and timestamp, as InfluxDB keeps it.
            stored.dedup_by_key(|(t, _)| *t);
            exactness.stored += stored.len() as u64;
            let mut found = 0u64;
            for &(ts, value) in stored.iter() {
                match log.binary_search(&ts) {
                    Ok(seq) => {
                        found += 1;
                        let expected = shape.value(node, seq as u32, channel);
                        if value != expected {
                            exactness.wrong_value += 1;
                            if exactness.examples.len() < 5 {
                                exactness.examples.push(format!(
                                    "{}/ch{channel} seq {seq}: stored {value}, published {expected}",
                                    node_name(node)
                                ));
                            }
                        }
                    }
                    Err(_) => {
                        exactness.stored_twice += 1;
                        if exactness.examples.len() < 5 {
                            exactness.examples.push(format!(
                                "{}/ch{channel}: stored at {ts}, not a published timestamp",
                                node_name(node)
                            ));
                        }
                    }
                }
            }
            let lost = log.len() as u64 - found;
            if lost > 0 && exactness.examples.len() < 5 {
                exactness.examples.push(format!(
                    "{}/ch{channel}: {lost} readings missing",
                    node_name(node)
                ));
            }
            exactness.lost += lost;
        }
    }
    exactness
}

// ---------------------------------------------------------------------------------------------
// One run: servers, gateway, load, measurements.

struct Run {
    broker: Mosquitto,
    db: VictoriaMetrics,
    gateway: Gateway,
    pids: Pids,
    database: Database,
    hz: f64,
    /// CPU ticks of database processes that were stopped during the run.
    database_ticks_carried: u64,
    /// The idle gateway's CPU seconds per second, measured before the load.
    idle_cpu_per_sec: f64,
}

impl Run {
    fn snapshot(&self) -> CpuSnapshot {
        let mut snapshot = self.pids.snapshot();
        snapshot.database += self.database_ticks_carried;
        snapshot
    }
}

fn gateway_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RACKWATCH_GATEWAY") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().join("rackwatch-e2e");
    assert!(
        path.is_file(),
        "{} is missing: build it (bench/run.sh does)",
        path.display()
    );
    path
}

fn start_run(shape: &Shape) -> Run {
    let broker = Mosquitto::start();
    let db = VictoriaMetrics::start();
    let alerting: Vec<String> = shape
        .alerting_nodes()
        .iter()
        .map(|n| format!("\"{}\"", node_name(*n)))
        .collect();
    let mut settings = GatewaySettings::new(&shape.site);
    // The tables the harness would write, with the gateway's own defaults (batches of 5000 lines
    // or 1 s, gzip); only the retry back-off is capped at 2 s, as the end-to-end tests do.
    settings.extra = format!(
        r#"
[mqtt]
url = "{broker}"
client_id = "rackwatch-bench"

[influxdb]
url = "{db}"
org = "rackwatch"
bucket = "rackwatch"
max_backoff_secs = 2

[alerts]
evaluation_interval = "1s"

[[alerts.rules]]
name = "bench_hot"
kind = "threshold"
quantity = "temperature"
node = [{nodes}]
above = 27.0
clear = 25.0
for = "0s"
group_by = "none"
"#,
        broker = broker.url(),
        db = db.url(),
        nodes = alerting.join(", "),
    );
    let gateway = Gateway::start(gateway_binary().to_str().unwrap(), &settings);
    let pids = Pids::find(&gateway, &broker, &db);
    // What the gateway spends doing nothing (timers, the alert engine's ticks), for reference.
    let idle_secs = 10;
    let idle_before = process_ticks(Some(pids.gateway));
    std::thread::sleep(Duration::from_secs(idle_secs));
    let idle_ticks = process_ticks(Some(pids.gateway)) - idle_before;
    let hz = clock_ticks_per_second();
    let database = Database {
        url: db.url(),
        http: reqwest::Client::new(),
    };
    Run {
        broker,
        db,
        gateway,
        pids,
        database,
        hz,
        database_ticks_carried: 0,
        idle_cpu_per_sec: idle_ticks as f64 / hz / idle_secs as f64,
    }
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// Waits until the database holds `expected` readings of the site, or until nothing changed for
/// `stall` (some are lost), or `timeout`. Returns when the last reading became visible, how many
/// were, and the CPU counters at that moment.
async fn wait_visible(
    run: &Run,
    site: &str,
    expected: u64,
    timeout: Duration,
    stall: Duration,
) -> (Instant, u64, CpuSnapshot) {
    let deadline = Instant::now() + timeout;
    let written = || {
        metric(
            &parse_metrics(&run.gateway.metrics()),
            "rackwatch_points_written_total",
        )
    };
    // The gateway's own counter first: cheap to poll, while the database count is a query. It
    // counts every site's points since the gateway started; one gateway serves one scenario.
    let mut last_written = (Instant::now(), written());
    while last_written.1 < expected as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = written();
        if now != last_written.1 {
            last_written = (Instant::now(), now);
        } else if last_written.0.elapsed() > stall {
            break;
        }
    }
    // Six hours back covers every scenario's timestamps (a flood's start 10 minutes in the past).
    let window_secs = 6 * 3600;
    let mut last = (Instant::now(), 0u64, run.snapshot());
    loop {
        let count = run.database.count(site, window_secs).await.unwrap_or(0);
        let now = Instant::now();
        if count != last.1 {
            last = (now, count, run.snapshot());
        }
        if count >= expected || now > deadline || now.duration_since(last.0) > stall {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Results.

#[derive(Debug, Clone)]
struct Row {
    figure: String,
    value: String,
    target: String,
    status: Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Met,
    Missed,
    Info,
}

impl Status {
    fn text(self) -> &'static str {
        match self {
            Status::Met => "**met**",
            Status::Missed => "**missed**",
            Status::Info => "—",
        }
    }

    fn of(met: bool) -> Status {
        if met { Status::Met } else { Status::Missed }
    }
}

fn row(figure: &str, value: String, target: &str, status: Status) -> Row {
    Row {
        figure: figure.to_owned(),
        value,
        target: target.to_owned(),
        status,
    }
}

#[derive(Debug, Clone)]
struct Report {
    scenario: &'static str,
    title: String,
    started: String,
    rows: Vec<Row>,
    sections: String,
    notes: Vec<String>,
    /// How busy the machine was: the benchmark shares it.
    context: String,
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program).args(args).output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let line = text.lines().find(|l| !l.trim().is_empty())?.trim().to_owned();
    Some(line)
}

fn package_version(package: &str) -> String {
    command_line("dpkg-query", &["-W", "-f=${Version}", package]).unwrap_or_else(|| "unknown".into())
}

fn utc_now() -> String {
    command_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]).unwrap_or_default()
}

fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kib: u64 = meminfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = std::env::var("BENCH_RUSTC")
        .ok()
        .or_else(|| command_line("rustc", &["--version"]))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "| | |\n|---|---|\n| CPU | {model}, {cores} cores (`/proc/cpuinfo`) |\n| RAM | {:.1} GiB |\n\
         | kernel | Linux {} |\n| Mosquitto | {} (Debian package) |\n| VictoriaMetrics | {} (Debian package) |\n\
         | rustc | {rustc} |\n| gateway | release build of `rackwatch-e2e` (the `rackwatch` CLI), its own process |\n",
        ram_kib as f64 / 1024.0 / 1024.0,
        kernel.trim(),
        package_version("mosquitto"),
        package_version("victoria-metrics"),
    )
}

/// The commit the gateway under test was built from (read when the benchmark starts, right after
/// `run.sh` built it), and whether `gateway/` or `protocols/` had uncommitted changes.
static GATEWAY_SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn gateway_source() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = repo.to_str().unwrap_or(".");
    let commit = command_line(
        "git",
        &[
            "-C",
            repo,
            "log",
            "-1",
            "--format=%h %s",
            "--",
            "gateway",
            "protocols",
        ],
    )
    .unwrap_or_else(|| "unknown".into());
    let commit: String = commit.chars().take(90).collect();
    let dirty = std::process::Command::new("git")
        .args(["-C", repo, "status", "--porcelain", "--", "gateway", "protocols"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    format!(
        "Gateway built from the source of commit `{commit}` (the last to touch gateway/ or protocols/){}.",
        if dirty {
            " with uncommitted changes in gateway/ or protocols/"
        } else {
            ""
        }
    )
}

fn results_dir() -> PathBuf {
    std::env::var_os("BENCH_RESULTS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results"),
        PathBuf::from,
    )
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from("| figure | measured | target | |\n|---|---:|---|---|\n");
    for r in rows {
        writeln!(
            out,
            "| {} | {} | {} | {} |",
            r.figure,
            r.value,
            r.target,
            r.status.text()
        )
        .unwrap();
    }
    out
}

fn write_report(report: &Report) {
    let dir = results_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut md = String::new();
    writeln!(md, "# Load benchmark: {}\n", report.title).unwrap();
    writeln!(
        md,
        "Run {} with `bench/run.sh {}`. Written by `tests/src/bin/rackwatch-bench.rs`.\n",
        report.started, report.scenario
    )
    .unwrap();
    writeln!(
        md,
        "{} {}\n",
        report.context,
        GATEWAY_SOURCE.get().map_or("", String::as_str)
    )
    .unwrap();
    md.push_str(&table(&report.rows));
    md.push('\n');
    md.push_str(&report.sections);
    if !report.notes.is_empty() {
        md.push_str("\n## Notes\n\n");
        for note in &report.notes {
            writeln!(md, "- {note}").unwrap();
        }
    }
    md.push_str("\n## Machine\n\n");
    md.push_str(&machine_description());
    std::fs::write(dir.join(format!("{}.md", report.scenario)), md).unwrap();
    let rows: Vec<serde_json::Value> = report
        .rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "figure": r.figure, "value": r.value, "target": r.target, "status": r.status.text()
            })
        })
        .collect();
    let summary = serde_json::json!({
        "scenario": report.scenario, "title": report.title, "started": report.started, "rows": rows,
        "context": format!("{} {}", report.context, GATEWAY_SOURCE.get().map_or("", String::as_str))
    });
    std::fs::write(
        dir.join(format!("{}.json", report.scenario)),
        serde_json::to_string_pretty(&summary).unwrap(),
    )
    .unwrap();
    write_summary(&dir);
    println!("\n{}", table(&report.rows));
    println!(
        "written: {}",
        dir.join(format!("{}.md", report.scenario)).display()
    );
}

/// `README.md`: every scenario's table from its latest run (their `.json`).
fn write_summary(dir: &Path) {
    let mut md = String::from(
        "# Load benchmark results\n\n`bench/run.sh [flood|steady|backlog|all]` builds in release and runs \
         `rackwatch-bench`, which starts a real Mosquitto, a real VictoriaMetrics and the release gateway \
         (durable spool on: every commit is `fdatasync`ed before the broker gets its PUBACK) on loopback, \
         publishes simulated nodes at QoS 1, and writes these files. Each scenario's file has the details \
         (CPU of every process, contention, how the load was modelled).\n\n",
    );
    for scenario in ["flood", "steady", "backlog"] {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{scenario}.json"))) else {
            writeln!(md, "## {scenario}\n\nNot run yet.\n").unwrap();
            continue;
        };
        let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
        writeln!(
            md,
            "## [{}]({scenario}.md)\n\n{}\n",
            summary["title"].as_str().unwrap_or(scenario),
            format_args!(
                "Run {}. {}",
                summary["started"].as_str().unwrap_or("?"),
                summary["context"].as_str().unwrap_or("")
            )
        )
        .unwrap();
        md.push_str("| figure | measured | target | |\n|---|---:|---|---|\n");
        for r in summary["rows"].as_array().into_iter().flatten() {
            writeln!(
                md,
                "| {} | {} | {} | {} |",
                r["figure"].as_str().unwrap_or(""),
                r["value"].as_str().unwrap_or(""),
                r["target"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or("")
            )
            .unwrap();
        }
        md.push('\n');
    }
    if dir.join("analysis.md").is_file() {
        md.push_str(
            "Why the missed targets were missed, with profiles, and what the gateway could change: \
             [analysis.md](analysis.md).\n\n",
        );
    }
    md.push_str("## Machine\n\n");
    md.push_str(&machine_description());
    std::fs::write(dir.join("README.md"), md).unwrap();
}

fn thousands(value: f64) -> String {
    let whole = value.round() as i64;
    let digits = whole.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if whole < 0 { format!("-{out}") } else { out }
}

/// The figures every scenario reports, from one measured window.
struct Measured {
    readings: u64,
    messages: u64,
    first_publish: Instant,
    last_visible: Instant,
    cpu: CpuUse,
    peak_rss_kib: u64,
    rss_kib: u64,
    visibility_ms: Vec<(f64, bool)>,
    unseen_marks: usize,
    alert_buckets: Vec<(f64, f64)>,
    metrics_before: HashMap<String, f64>,
    metrics_after: HashMap<String, f64>,
    exactness: Exactness,
    load_before: String,
    load_after: String,
    samples: RateSamples,
    marked: usize,
    idle_cpu_per_sec: f64,
}

impl Measured {
    /// How busy the machine was over the measured window, the benchmark's own processes aside.
    fn context(&self) -> String {
        let c = &self.cpu;
        let others = (c.machine_busy - c.gateway - c.broker - c.database - c.bench).max(0.0);
        let cores = c.machine_capacity / c.wall.max(1e-9);
        format!(
            "The machine was {:.0} % busy over the measured window; processes other than the benchmark's own \
             (another engineer's builds and tests) used {:.2} of its {:.0} cores on average. Load average \
             `{}` before, `{}` after.",
            100.0 * c.machine_busy / c.machine_capacity.max(1e-9),
            others / c.wall.max(1e-9),
            cores,
            self.load_before,
            self.load_after
        )
    }

    fn end_to_end_rate(&self) -> f64 {
        self.readings as f64 / self.last_visible.duration_since(self.first_publish).as_secs_f64()
    }

    fn cpu_us_per_reading(&self) -> f64 {
        self.cpu.gateway * 1e6 / self.readings.max(1) as f64
    }

    fn counter(&self, key: &str) -> f64 {
        metric(&self.metrics_after, key) - metric(&self.metrics_before, key)
    }

    fn rows(&self, rss_target: bool) -> Vec<Row> {
        let mut rows = Vec::new();
        let cpu = self.cpu_us_per_reading();
        rows.push(row(
            "gateway CPU per reading (utime+stime / readings)",
            format!("{cpu:.2} µs"),
            "≤ 2 µs",
            Status::of(cpu <= TARGET_CPU_US_PER_READING),
        ));
        let idle = self.idle_cpu_per_sec * self.cpu.wall;
        rows.push(row(
            "… of which above the idle gateway's own CPU",
            format!(
                "{:.2} µs (idle: {:.1} ms CPU per s)",
                (self.cpu.gateway - idle).max(0.0) * 1e6 / self.readings.max(1) as f64,
                self.idle_cpu_per_sec * 1e3
            ),
            "",
            Status::Info,
        ));
        let rss = self.peak_rss_kib as f64 / 1024.0;
        rows.push(row(
            "gateway peak RSS (VmHWM)",
            format!("{rss:.1} MiB"),
            if rss_target {
                "≤ 64 MiB at 10,000 nodes"
            } else {
                ""
            },
            if rss_target {
                Status::of(rss <= TARGET_RSS_MIB)
            } else {
                Status::Info
            },
        ));
        let fmt_ms = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{v:.0} ms"));
        for (figure, first) in [
            ("publish → visible in the database, p50 / p99", false),
            ("… the first point of a new series, p50 / p99", true),
        ] {
            let mut sorted: Vec<f64> = self
                .visibility_ms
                .iter()
                .filter(|(_, f)| *f == first)
                .map(|(ms, _)| *ms)
                .collect();
            sorted.sort_by(f64::total_cmp);
            rows.push(row(
                figure,
                format!(
                    "{} / {} ({} samples)",
                    fmt_ms(percentile(&sorted, 0.5)),
                    fmt_ms(percentile(&sorted, 0.99)),
                    thousands(sorted.len() as f64)
                ),
                "",
                Status::Info,
            ));
        }
        let p50 = histogram_quantile(&self.alert_buckets, 0.5);
        let p99 = histogram_quantile(&self.alert_buckets, 0.99);
        let count = self.alert_buckets.last().map_or(0.0, |b| b.1);
        let show = |q: Option<BucketQuantile>| {
            q.map_or_else(
                || "n/a".into(),
                |q| {
                    format!(
                        "{:.2} ms (bucket {:.1}–{} ms)",
                        q.estimate * 1e3,
                        q.lower * 1e3,
                        if q.upper.is_infinite() {
                            "∞".to_owned()
                        } else {
                            format!("{:.1}", q.upper * 1e3)
                        }
                    )
                },
            )
        };
        let alert_status = match p99 {
            None => Status::Missed,
            Some(q) if q.upper * 1e3 <= TARGET_ALERT_P99_MS => Status::Met,
            Some(q) if q.lower * 1e3 >= TARGET_ALERT_P99_MS => Status::Missed,
            // The bucket straddles 10 ms: judged by the interpolated estimate (said in the value).
            Some(q) => Status::of(q.estimate * 1e3 <= TARGET_ALERT_P99_MS),
        };
        rows.push(row(
            "alert latency p50 (reading arrives → alert published)",
            show(p50),
            "",
            Status::Info,
        ));
        rows.push(row(
            "alert latency p99",
            format!("{} of {} transitions", show(p99), thousands(count)),
            "≤ 10 ms",
            alert_status,
        ));
        let e = &self.exactness;
        rows.push(row(
            "readings lost (published, not in the database)",
            thousands(e.lost as f64),
            "0 (the gateway's promise)",
            Status::of(e.lost == 0),
        ));
        rows.push(row(
            "readings stored twice (extra points)",
            thousands(e.stored_twice as f64),
            "0 (the gateway's promise)",
            Status::of(e.stored_twice == 0),
        ));
        rows.push(row(
            "stored with a wrong value",
            thousands(e.wrong_value as f64),
            "0",
            Status::of(e.wrong_value == 0),
        ));
        rows
    }

    fn details(&self) -> String {
        let mut md = String::new();
        let c = &self.cpu;
        writeln!(md, "## Where the CPU went\n").unwrap();
        writeln!(
            md,
            "Over the measured window of {:.1} s (first publish → last reading visible), CPU seconds \
             (utime+stime from `/proc/<pid>/stat`):\n",
            c.wall
        )
        .unwrap();
        md.push_str("| process | CPU s | cores busy |\n|---|---:|---:|\n");
        let others = (c.machine_busy - c.gateway - c.broker - c.database - c.bench).max(0.0);
        for (name, secs) in [
            ("gateway (`rackwatch-e2e run`)", c.gateway),
            ("Mosquitto", c.broker),
            ("VictoriaMetrics", c.database),
            ("benchmark (publishers, pollers)", c.bench),
            ("everything else on the machine", others),
            ("whole machine (`/proc/stat`)", c.machine_busy),
        ] {
            writeln!(md, "| {name} | {secs:.1} | {:.2} |", secs / c.wall.max(1e-9)).unwrap();
        }
        writeln!(
            md,
            "\nThe machine had {:.1} CPU-seconds in the window ({:.0} % busy). Load average before: \
             `{}`, after: `{}`.\n",
            c.machine_capacity,
            100.0 * c.machine_busy / c.machine_capacity.max(1e-9),
            self.load_before,
            self.load_after
        )
        .unwrap();
        md.push_str("Gateway threads (`/proc/<pid>/task/*/stat`):\n\n| thread | CPU s | µs per reading |\n|---|---:|---:|\n");
        for (name, secs) in &c.gateway_threads {
            writeln!(
                md,
                "| `{name}` | {secs:.2} | {:.3} |",
                secs * 1e6 / self.readings.max(1) as f64
            )
            .unwrap();
        }
        writeln!(
            md,
            "\nGateway RSS at the end: {:.1} MiB (peak {:.1} MiB).\n",
            self.rss_kib as f64 / 1024.0,
            self.peak_rss_kib as f64 / 1024.0
        )
        .unwrap();
        let (ingest_mean, ingest_peak) = rates(&self.samples, |s| s.1);
        let (write_mean, write_peak) = rates(&self.samples, |s| s.2);
        let writes = self.counter("rackwatch_write_seconds_count");
        let write_buckets = delta_histogram(
            &histogram(&self.metrics_before, "rackwatch_write_seconds"),
            &histogram(&self.metrics_after, "rackwatch_write_seconds"),
        );
        let ms = |q: Option<BucketQuantile>| {
            q.map_or_else(|| "n/a".to_owned(), |q| format!("{:.0} ms", q.estimate * 1e3))
        };
        writeln!(
            md,
            "## Pipeline stages\n\nFrom the gateway's counters sampled once a second: readings accepted \
             (decoded, normalised, spooled and fsynced) {} /s on average while moving, {} /s at the best second; \
             points written to the database {} /s on average, {} /s at the best second. {} database writes \
             ({:.0} lines each on average), write time p50 {} / p99 {} (`rackwatch_write_seconds`).\n",
            thousands(ingest_mean),
            thousands(ingest_peak),
            thousands(write_mean),
            thousands(write_peak),
            thousands(writes),
            self.counter("rackwatch_points_written_total") / writes.max(1.0),
            ms(histogram_quantile(&write_buckets, 0.5)),
            ms(histogram_quantile(&write_buckets, 0.99)),
        )
        .unwrap();
        md.push_str("## Gateway counters over the run (`/metrics`)\n\n| counter | value |\n|---|---:|\n");
        for key in [
            "rackwatch_messages_received_total",
            "rackwatch_readings_accepted_total",
            "rackwatch_points_written_total",
            "rackwatch_duplicates_dropped_total",
            "rackwatch_sequence_gaps_total",
            "rackwatch_spool_full_total",
            "rackwatch_observations_dropped_total",
            "rackwatch_write_failures_total{reason=\"connection\"}",
            "rackwatch_alert_transitions_total{state=\"pending\"}",
            "rackwatch_alert_transitions_total{state=\"firing\"}",
            "rackwatch_alert_transitions_total{state=\"resolved\"}",
            "rackwatch_alert_latency_seconds_count",
            "rackwatch_alert_publish_failures_total",
        ] {
            writeln!(md, "| `{key}` | {} |", thousands(self.counter(key))).unwrap();
        }
        let e = &self.exactness;
        writeln!(
            md,
            "\n## Exactness\n\nPublished {} readings in {} messages; the database holds {} distinct points \
             of the site (`/api/v1/export`, compared point by point: series, timestamp, value).",
            thousands(e.published as f64),
            thousands(self.messages as f64),
            thousands(e.stored as f64)
        )
        .unwrap();
        if !e.examples.is_empty() {
            writeln!(md, " First differences: {}.", e.examples.join("; ")).unwrap();
        }
        writeln!(
            md,
            "\nPublish → visible: the `ch1` readings of nodes {} were timed from the moment \
             their publish was queued in the publisher's MQTT client to the first `/api/v1/export` poll \
             that returned them (polled every {} ms, no forced flush, so the figure includes \
             VictoriaMetrics' own ~1 s before new points are searchable and the gateway's 1 s batch age); \
             {} timed messages were never seen.",
            if self.marked <= 1 {
                "n00000".to_owned()
            } else {
                format!("n00000–{}", node_name(self.marked - 1))
            },
            env_u64("BENCH_POLL_MS", 200),
            self.unseen_marks
        )
        .unwrap();
        md
    }
}

/// The gateway's counters once a second: `(seconds since start, readings accepted, points written)`.
type RateSamples = Vec<(f64, f64, f64)>;

fn sample_rates(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<RateSamples> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut samples = Vec::new();
        // Bounded: stops when told, or after six hours.
        while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(6 * 3600) {
            if let Some(text) = rackwatch_tests::http_get(port, "/metrics") {
                let m = parse_metrics(&text);
                samples.push((
                    start.elapsed().as_secs_f64(),
                    metric(&m, "rackwatch_readings_accepted_total"),
                    metric(&m, "rackwatch_points_written_total"),
                ));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        samples
    })
}

/// Mean and highest 1-s rate of a counter column while it moved.
fn rates(samples: &RateSamples, column: fn(&(f64, f64, f64)) -> f64) -> (f64, f64) {
    let mut peak = 0.0f64;
    let (mut first, mut last) = (None, None);
    for pair in samples.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let delta = column(b) - column(a);
        if delta > 0.0 {
            peak = peak.max(delta / (b.0 - a.0));
            first.get_or_insert((a.0, column(a)));
            last = Some((b.0, column(b)));
        }
    }
    match (first, last) {
        (Some(f), Some(l)) if l.0 > f.0 => ((l.1 - f.1) / (l.0 - f.0), peak),
        _ => (0.0, peak),
    }
}

/// A load under way, with what was read before it started.
struct InProgress {
    shape: Arc<Shape>,
    load_before: String,
    metrics_before: HashMap<String, f64>,
    stop_timer: Arc<AtomicBool>,
    timer: tokio::task::JoinHandle<(Vec<(f64, bool)>, usize)>,
    counters: Arc<Counters>,
    cpu_before: CpuSnapshot,
    first_publish: Instant,
    tasks: Vec<tokio::task::JoinHandle<NodeLogs>>,
    stop_sampler: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<RateSamples>,
}

/// Starts `shape` on `run`; the caller may do what the scenario needs before [`finish`].
fn begin(run: &Run, shape: Shape) -> InProgress {
    let shape = Arc::new(shape);
    let load_before = loadavg();
    let metrics_before = parse_metrics(&run.gateway.metrics());
    let (marks_tx, marks_rx) = mpsc::unbounded_channel();
    let stop_timer = Arc::new(AtomicBool::new(false));
    let poll = Duration::from_millis(env_u64("BENCH_POLL_MS", 200));
    let timer = tokio::spawn(time_visibility(
        run.database.clone(),
        shape.site.clone(),
        marks_rx,
        poll,
        Arc::clone(&stop_timer),
    ));
    let counters = Arc::new(Counters::default());
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = sample_rates(run.gateway.http_port(), Arc::clone(&stop_sampler));
    let cpu_before = run.snapshot();
    let (first_publish, tasks) = start_load(&shape, run.broker.port(), &marks_tx, &counters);
    InProgress {
        shape,
        load_before,
        metrics_before,
        stop_timer,
        timer,
        counters,
        cpu_before,
        first_publish,
        tasks,
        stop_sampler,
        sampler,
    }
}

/// Waits for the load to end and every reading to be visible, then measures.
async fn finish(run: &mut Run, p: InProgress) -> Measured {
    let logs = join_load(&p.shape, p.tasks).await;
    let readings: u64 = logs.iter().map(|l| l.len() as u64).sum::<u64>() * p.shape.readings as u64;
    let messages = p.counters.messages.load(Ordering::Relaxed);
    println!(
        "load done: {messages} messages, {readings} readings, broker acked {}; waiting for the database",
        p.counters.acked.load(Ordering::Relaxed)
    );
    let (last_visible, visible, cpu_after) = wait_visible(
        run,
        &p.shape.site,
        readings,
        Duration::from_secs(1800),
        Duration::from_secs(60),
    )
    .await;
    println!("visible: {visible} of {readings}");
    p.stop_timer.store(true, Ordering::Relaxed);
    p.stop_sampler.store(true, Ordering::Relaxed);
    let samples = tokio::task::block_in_place(|| p.sampler.join().unwrap());
    let (visibility_ms, unseen_marks) = p.timer.await.unwrap();
    let metrics_after = parse_metrics(&run.gateway.metrics());
    let alert_before = histogram(&p.metrics_before, "rackwatch_alert_latency_seconds");
    let alert_after = histogram(&metrics_after, "rackwatch_alert_latency_seconds");
    let (peak_rss_kib, rss_kib) = memory_kib(run.pids.gateway);
    let exactness = compare(&run.database, &p.shape, &logs).await;
    let mut cpu_before = p.cpu_before;
    cpu_before.at = Some(p.first_publish);
    Measured {
        readings,
        messages,
        first_publish: p.first_publish,
        last_visible,
        cpu: cpu_use(&cpu_before, &cpu_after, run.hz),
        peak_rss_kib,
        rss_kib,
        visibility_ms,
        unseen_marks,
        alert_buckets: delta_histogram(&alert_before, &alert_after),
        metrics_before: p.metrics_before,
        metrics_after,
        exactness,
        load_before: p.load_before,
        load_after: loadavg(),
        samples,
        marked: p.shape.marked.min(p.shape.nodes),
        idle_cpu_per_sec: run.idle_cpu_per_sec,
    }
}

fn load_notes(shape: &Shape) -> String {
    let alerting = shape.alerting_nodes().len();
    let pace = match shape.interval {
        Some(i) => format!(
            "each node publishes one message every {} s, the nodes spread evenly over the interval \
             ({} readings/s offered)",
            i.as_secs(),
            thousands(shape.readings_per_second_offered().unwrap_or(0.0))
        ),
        None => "every connection publishes as fast as the broker acknowledges (1000 QoS 1 messages in flight per \
                 connection), round-robin over its nodes"
            .to_owned(),
    };
    format!(
        "## How the load is modelled\n\n{} simulated nodes (`n00000`…), {} temperature readings a message (channels \
         `ch0`…), QoS 1, from {} MQTT connections (node *i* publishes on connection *i* mod {}): {pace}. \
         The gateway sees exactly what it would see from one connection per node — one subscription, the same \
         topics, node ids, sequence numbers and payloads; only the broker holds fewer client connections \
         (the gateway's per-node state, dedup windows and series all scale with node ids, not connections). \
         Messages carry the node's timestamp{}. Alerts: a threshold rule (`above = 27`, `clear = 25`, `for = \"0s\"`, \
         `group_by = \"none\"`) watches {} nodes (every {}th) whose `ch0` alternates between {HOT} °C and {COOL} °C \
         every {} messages; all other readings stay within 18–26 °C.\n\n",
        thousands(shape.nodes as f64),
        shape.readings,
        shape.connections,
        shape.connections,
        if shape.ts_base.is_some() {
            " (synthetic: a base 10 minutes in the past + seq ms, since a flooding node publishes faster than one \
             message per millisecond)"
        } else {
            " (the wall clock at publish)"
        },
        alerting,
        shape.alert_every,
        shape.hot_period
    )
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

async fn flood() -> Report {
    let started = utc_now();
    let nodes = env_u64("BENCH_FLOOD_NODES", 40) as usize;
    let secs = env_u64("BENCH_FLOOD_SECS", 30);
    let shape = Shape {
        site: "flood".into(),
        nodes,
        readings: env_u64("BENCH_READINGS", 10) as usize,
        connections: env_u64("BENCH_FLOOD_CONNECTIONS", 4) as usize,
        interval: None,
        duration: Duration::from_secs(secs),
        // With synthetic timestamps base + seq, 590,000 rounds stay in the past.
        max_rounds: 590_000,
        alert_every: 10,
        hot_period: 1000,
        marked: 1,
        ts_base: Some(now_ms() - 600_000),
    };
    println!("flood: {nodes} nodes for {secs} s");
    let (run, notes_shape, m) = measure(shape).await;
    let rate = m.end_to_end_rate();
    let mut rows = vec![row(
        "readings/s end to end (first publish → last reading visible in the database)",
        format!(
            "{} ({} readings in {:.1} s)",
            thousands(rate),
            thousands(m.readings as f64),
            m.last_visible.duration_since(m.first_publish).as_secs_f64()
        ),
        "≥ 200,000 with the durable spool on",
        Status::of(rate >= TARGET_FLOOD_READINGS_PER_SEC),
    )];
    rows.extend(m.rows(false));
    let mut sections = load_notes(&notes_shape);
    sections.push_str(&m.details());
    let mut notes = vec![format!(
        "The publishers ran for {secs} s (`BENCH_FLOOD_SECS`); the window ends when the database count of \
         the site's readings (`count_over_time`, polled every 200 ms) reached the number published."
    )];
    let missed = rate < TARGET_FLOOD_READINGS_PER_SEC || m.cpu_us_per_reading() > TARGET_CPU_US_PER_READING;
    if missed {
        profile_missed(run, &notes_shape, "flood", 2, 15, &mut sections, &mut notes).await;
    }
    Report {
        context: m.context(),
        scenario: "flood",
        title: format!(
            "flood ({nodes} nodes × {} readings a message, as fast as possible)",
            notes_shape.readings
        ),
        started,
        rows,
        sections,
        notes,
    }
}

/// Runs `shape` from start to finish: its servers (still up), the shape, and the measurements.
async fn measure(shape: Shape) -> (Run, Shape, Measured) {
    let mut run = start_run(&shape);
    let notes_shape = shape.clone();
    let load = begin(&run, shape);
    let m = finish(&mut run, load).await;
    (run, notes_shape, m)
}

/// After a missed target, profiles a second, separate run of `shape` (unless `BENCH_PROFILE=0`)
/// once `run`'s servers are gone, and adds the profile to the report.
async fn profile_missed(
    run: Run,
    shape: &Shape,
    scenario: &str,
    warmup_secs: u64,
    default_secs: u64,
    sections: &mut String,
    notes: &mut Vec<String>,
) {
    if env_u64("BENCH_PROFILE", 1) != 1 {
        return;
    }
    drop(run);
    match profile(
        shape,
        scenario,
        warmup_secs,
        env_u64("BENCH_PROFILE_SECS", default_secs),
    )
    .await
    {
        Ok(summary) => {
            sections.push_str(&summary);
            notes.push(format!(
                "A target was missed, so a second, separate {scenario} run went under `perf record` for \
                 the profile above; the figures in the table come from the first, unprofiled run."
            ));
        }
        Err(e) => notes.push(format!("No profile: {e}")),
    }
}

/// A second, separate run of `shape` with `perf record` attached to the gateway for `secs` after
/// `warm` seconds of load: where its time goes. Writes `{scenario}-profile.txt`.
async fn profile(shape: &Shape, scenario: &str, warm: u64, secs: u64) -> Result<String, String> {
    let perf = ["/usr/bin/perf", "/usr/local/bin/perf"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .ok_or("perf is not installed")?;
    let mut shape = shape.clone();
    shape.site = format!("{scenario}prof");
    shape.duration = Duration::from_secs(warm + secs + 3);
    if shape.ts_base.is_some() {
        shape.ts_base = Some(now_ms() - 600_000);
    } else {
        shape.max_rounds = u32::MAX;
    }
    let run = start_run(&shape);
    let data = std::env::temp_dir().join(format!("rackwatch-bench-perf-{}.data", std::process::id()));
    let shape = Arc::new(shape);
    let (marks, _unused) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    let (_, tasks) = start_load(&shape, run.broker.port(), &marks, &counters);
    tokio::time::sleep(Duration::from_secs(warm)).await;
    let recorded = tokio::process::Command::new(perf)
        .args(["record", "-F", "999", "-e", "cpu-clock", "-g", "-p"])
        .arg(run.pids.gateway.to_string())
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep"])
        .arg(secs.to_string())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let _ = join_load(&shape, tasks).await;
    if !recorded.status.success() {
        return Err(String::from_utf8_lossy(&recorded.stderr).into_owned());
    }
    let report = |sort: &str, extra: &[&str]| {
        let mut command = std::process::Command::new(perf);
        command
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--percent-limit",
                "0.7",
                "-g",
                "none",
                "--sort",
                sort,
                "-i",
            ])
            .arg(&data)
            .args(extra);
        command
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                    // `perf report` pads every line with empty columns (`-      -`).
                    .map(|l| l.trim_end().trim_end_matches([' ', '-']).to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let by_thread = report("comm", &[]);
    let by_dso = report("dso", &[]);
    let by_symbol = report("symbol", &[]);
    let _ = std::fs::remove_file(&data);
    let mut text = String::new();
    writeln!(
        text,
        "perf record -F 999 -e cpu-clock -g -p <gateway> for {secs} s of {scenario}\n"
    )
    .unwrap();
    for (title, lines) in [
        ("by thread", &by_thread),
        ("by library", &by_dso),
        ("by function", &by_symbol),
    ] {
        writeln!(text, "== {title}").unwrap();
        for l in lines.iter() {
            writeln!(text, "{l}").unwrap();
        }
        text.push('\n');
    }
    std::fs::write(results_dir().join(format!("{scenario}-profile.txt")), &text).unwrap();
    let mut md = format!(
        "\n## Profile of the gateway under {scenario}\n\n`perf record -F 999 -e cpu-clock -g -p <gateway pid>` for {secs} s \
         (after {warm} s of load) of a second, separate run of the same load (full output: \
         [{scenario}-profile.txt]({scenario}-profile.txt)).\n\n"
    );
    for (title, lines, take) in [
        ("By thread", &by_thread, 8),
        ("By library", &by_dso, 10),
        ("By function", &by_symbol, 30),
    ] {
        writeln!(md, "{title}:\n\n```text").unwrap();
        for l in lines.iter().take(take) {
            writeln!(md, "{l}").unwrap();
        }
        md.push_str("```\n\n");
    }
    Ok(md)
}

fn steady_shape(site: &str, nodes: usize, duration: Duration) -> Shape {
    let interval = Duration::from_secs(env_u64("BENCH_INTERVAL_SECS", 10));
    Shape {
        site: site.into(),
        nodes,
        readings: env_u64("BENCH_READINGS", 10) as usize,
        connections: env_u64("BENCH_STEADY_CONNECTIONS", 10) as usize,
        interval: Some(interval),
        duration,
        max_rounds: u32::try_from(duration.as_secs() / interval.as_secs().max(1) + 1).unwrap(),
        alert_every: 100,
        hot_period: 1,
        marked: 100,
        ts_base: None,
    }
}

async fn steady() -> Report {
    let started = utc_now();
    let nodes = env_u64("BENCH_STEADY_NODES", 10_000) as usize;
    let secs = env_u64("BENCH_STEADY_SECS", 180);
    let shape = steady_shape("steady", nodes, Duration::from_secs(secs));
    println!("steady: {nodes} nodes for {secs} s");
    let (run, notes_shape, m) = measure(shape).await;
    let rate = m.end_to_end_rate();
    let mut rows = vec![row(
        "readings/s end to end (offered load)",
        format!(
            "{} ({} readings in {:.1} s; offered {})",
            thousands(rate),
            thousands(m.readings as f64),
            m.last_visible.duration_since(m.first_publish).as_secs_f64(),
            thousands(notes_shape.readings_per_second_offered().unwrap_or(0.0))
        ),
        "",
        Status::Info,
    )];
    rows.extend(m.rows(nodes >= 10_000));
    let mut sections = load_notes(&notes_shape);
    sections.push_str(&m.details());
    let mut notes = vec![format!(
        "The load ran for {secs} s (`BENCH_STEADY_SECS`, default 180)."
    )];
    if nodes < 10_000 {
        notes.push(format!(
            "A development run with {nodes} nodes (`BENCH_STEADY_NODES`): the RSS target applies at 10,000."
        ));
    }
    let missed =
        m.cpu_us_per_reading() > TARGET_CPU_US_PER_READING || m.peak_rss_kib as f64 / 1024.0 > TARGET_RSS_MIB;
    if missed {
        profile_missed(run, &notes_shape, "steady", 15, 40, &mut sections, &mut notes).await;
    }
    Report {
        context: m.context(),
        scenario: "steady",
        title: format!(
            "steady ({} nodes, one message each per {} s, {secs} s)",
            thousands(nodes as f64),
            notes_shape.interval.map_or(0, |i| i.as_secs())
        ),
        started,
        rows,
        sections,
        notes,
    }
}

/// What the backlog scenario measured while the database was away and after it came back.
#[derive(Debug, Default)]
struct Backlog {
    outage: f64,
    built_readings: f64,
    built_bytes: f64,
    drain_secs: Option<f64>,
    written_during_drain: f64,
    timeline: Vec<Sampled>,
}

/// Seconds since the run began, spool bytes, points written, phase.
type Sampled = (f64, f64, f64, &'static str);

async fn backlog() -> Report {
    let started = utc_now();
    let nodes = env_u64("BENCH_BACKLOG_NODES", 10_000) as usize;
    let outage_secs = env_u64("BENCH_BACKLOG_SECS", 600);
    let warmup = env_u64("BENCH_BACKLOG_WARMUP_SECS", 30);
    // The load runs through the outage and for as long after it as a drain at 1× could take.
    let drain_cap = env_u64("BENCH_BACKLOG_DRAIN_CAP_SECS", outage_secs.max(120));
    let load_secs = warmup + outage_secs + drain_cap;
    let shape = steady_shape("backlog", nodes, Duration::from_secs(load_secs));
    println!("backlog: {nodes} nodes, database down for {outage_secs} s after {warmup} s");
    let mut run = start_run(&shape);
    let notes_shape = shape.clone();
    let load = begin(&run, shape);
    let b = backlog_phase(&mut run, &load.counters, warmup, outage_secs, drain_cap).await;
    let m = finish(&mut run, load).await;
    let build_rate = b.built_readings / b.outage.max(1e-9);
    let mut rows = vec![row(
        "backlog built while the database was down",
        format!(
            "{} readings ({:.0} MiB of spool) in {:.0} s = {} readings/s",
            thousands(b.built_readings),
            b.built_bytes / 1048576.0,
            b.outage,
            thousands(build_rate)
        ),
        "",
        Status::Info,
    )];
    match b.drain_secs {
        Some(drain) => {
            let drain_rate = b.built_readings / drain.max(1e-9);
            let ratio = drain_rate / build_rate.max(1e-9);
            rows.push(row(
                "backlog drained (database back → every reading accepted before it returned is written)",
                format!(
                    "in {drain:.1} s = {} readings/s of backlog ({} readings/s written in all, load going on)",
                    thousands(drain_rate),
                    thousands(b.written_during_drain / drain.max(1e-9))
                ),
                "",
                Status::Info,
            ));
            rows.push(row(
                "drain rate ÷ build-up rate",
                format!("{ratio:.1}×"),
                "≥ 10×",
                Status::of(ratio >= TARGET_DRAIN_RATIO),
            ));
        }
        None => rows.push(row(
            "drain rate ÷ build-up rate",
            format!("not drained within {drain_cap} s"),
            "≥ 10×",
            Status::Missed,
        )),
    }
    rows.extend(m.rows(false));
    let mut sections = load_notes(&notes_shape);
    sections.push_str("## Spool during the run\n\n| t (s) | spool size (MiB, `rackwatch_spool_bytes`) | points written | phase |\n|---:|---:|---:|---|\n");
    for (t, pending, written, phase) in &b.timeline {
        writeln!(
            sections,
            "| {t:.0} | {:.1} | {} | {phase} |",
            pending / 1048576.0,
            thousands(*written)
        )
        .unwrap();
    }
    sections.push('\n');
    sections.push_str(&m.details());
    let mut notes = vec![format!(
        "The load ran {warmup} s before the outage, through the {outage_secs} s outage (`BENCH_BACKLOG_SECS`; the \
         recorded run must use 600) and on while the spool drained (bounded by {drain_cap} s), then stopped. \
         The database was stopped with SIGTERM and started again on the same port and data. The build-up rate is \
         the readings the gateway accepted while the database was down divided by the outage; the drain time runs \
         from the database answering again until `rackwatch_points_written_total` reached \
         `rackwatch_readings_accepted_total` as it was at that moment."
    )];
    notes.push(
        "Gateway CPU per reading covers the whole run, spooling and the later writing of every reading. \
         The publish → visible latency here is dominated by the outage and is not a figure of merit."
            .into(),
    );
    if outage_secs < 600 {
        notes.push(format!(
            "A development run: the outage was {outage_secs} s, not the 600 s of the recorded run."
        ));
    }
    Report {
        context: m.context(),
        scenario: "backlog",
        title: format!(
            "backlog ({} nodes steady, database down {} min, then drain)",
            thousands(nodes as f64),
            outage_secs as f64 / 60.0
        ),
        started,
        rows,
        sections,
        notes,
    }
}

/// The database goes away under load and comes back; the spool builds up and drains.
async fn backlog_phase(run: &mut Run, counters: &Counters, warmup: u64, outage: u64, cap: u64) -> Backlog {
    let t0 = Instant::now();
    let mut backlog = Backlog::default();
    let sample = |run: &Run, timeline: &mut Vec<Sampled>, phase: &'static str| {
        let m = parse_metrics(&run.gateway.metrics());
        timeline.push((
            t0.elapsed().as_secs_f64(),
            metric(&m, "rackwatch_spool_bytes"),
            metric(&m, "rackwatch_points_written_total"),
            phase,
        ));
        m
    };
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    let at_stop = sample(run, &mut backlog.timeline, "database stopped");
    run.database_ticks_carried += process_ticks(run.pids.database);
    tokio::task::block_in_place(|| run.db.stop());
    let down = Instant::now();
    println!("database stopped");
    while down.elapsed() < Duration::from_secs(outage) {
        let left = Duration::from_secs(outage).saturating_sub(down.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(60))).await;
        if down.elapsed() < Duration::from_secs(outage) {
            sample(run, &mut backlog.timeline, "database down");
        }
    }
    let at_restart = sample(run, &mut backlog.timeline, "database started again");
    tokio::task::block_in_place(|| run.db.restart());
    let back = Instant::now();
    backlog.outage = back.duration_since(down).as_secs_f64();
    run.pids.database = find_pid(&run.db.dir().join("data").display().to_string());
    println!("database back after {:.0} s", backlog.outage);
    let accepted = metric(&at_restart, "rackwatch_readings_accepted_total");
    let written_before = metric(&at_restart, "rackwatch_points_written_total");
    backlog.built_readings = accepted - written_before;
    backlog.built_bytes =
        metric(&at_restart, "rackwatch_spool_bytes") - metric(&at_stop, "rackwatch_spool_bytes");
    let mut next_sample = Instant::now() + Duration::from_secs(10);
    while back.elapsed() < Duration::from_secs(cap) {
        let m = parse_metrics(&run.gateway.metrics());
        let written = metric(&m, "rackwatch_points_written_total");
        if written >= accepted {
            backlog.drain_secs = Some(back.elapsed().as_secs_f64());
            backlog.written_during_drain = written - written_before;
            sample(run, &mut backlog.timeline, "backlog drained");
            println!("drained in {:.1} s", back.elapsed().as_secs_f64());
            break;
        }
        if Instant::now() >= next_sample {
            sample(run, &mut backlog.timeline, "draining");
            next_sample += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A little more steady load after the drain, then the publishers stop.
    tokio::time::sleep(Duration::from_secs(20)).await;
    sample(run, &mut backlog.timeline, "load stopped");
    counters.stop.store(true, Ordering::Relaxed);
    backlog
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let _ = GATEWAY_SOURCE.set(gateway_source());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let scenarios: Vec<&str> = match scenario.as_str() {
            "all" => vec!["flood", "steady", "backlog"],
            // Only rewrites README.md from the scenarios' latest results.
            "summary" => {
                write_summary(&results_dir());
                return;
            }
            "flood" | "steady" | "backlog" => vec![scenario.as_str()],
            other => {
                eprintln!("unknown scenario `{other}`: flood, steady, backlog or all");
                std::process::exit(2);
            }
        };
        for name in scenarios {
            let report = match name {
                "flood" => flood().await,
                "steady" => steady().await,
                _ => backlog().await,
            };
            write_report(&report);
        }
    });
}
