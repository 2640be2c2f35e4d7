//! One run: its servers and gateway, the load under way, and the measurements when it ends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::metrics::{delta_histogram, histogram, metric, parse_metrics};
use crate::{Gateway, GatewaySettings, Mosquitto, VictoriaClient, VictoriaMetrics};

use super::database::{compare, time_visibility};
use super::load::{Counters, NodeLogs, Shape, join_load, start_load};
use super::measured::{Measured, Publishing, RateSamples};
use super::procfs::{
    CpuSnapshot, Pids, clock_ticks_per_second, cpu_use, loadavg, memory_kib, process_ticks, switches_between,
    thread_switches,
};
use super::trace::trace_syscalls;
use super::{env_u64, node_name};

pub(crate) struct Run {
    pub(crate) broker: Mosquitto,
    pub(crate) db: VictoriaMetrics,
    pub(crate) gateway: Gateway,
    pub(crate) pids: Pids,
    pub(crate) database: VictoriaClient,
    pub(crate) hz: f64,
    /// CPU ticks of database processes that were stopped during the run.
    pub(crate) database_ticks_carried: u64,
    /// The idle gateway's CPU seconds per second, measured before the load.
    pub(crate) idle_cpu_per_sec: f64,
    /// The idle gateway's context switches per second (its timers), measured with the CPU.
    pub(crate) idle_switches_per_sec: f64,
}

impl Run {
    pub(crate) fn snapshot(&self) -> CpuSnapshot {
        let mut snapshot = self.pids.snapshot();
        snapshot.database += self.database_ticks_carried;
        snapshot
    }
}

pub(crate) fn gateway_binary() -> PathBuf {
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

pub(crate) fn start_run(shape: &Shape) -> Run {
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
max_backoff = "2s"

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
    let switches_before = thread_switches(pids.gateway);
    std::thread::sleep(Duration::from_secs(idle_secs));
    let idle_ticks = process_ticks(Some(pids.gateway)) - idle_before;
    let idle_switches = switches_between(&switches_before, &thread_switches(pids.gateway)).total;
    let hz = clock_ticks_per_second();
    let database = db.client();
    Run {
        broker,
        db,
        gateway,
        pids,
        database,
        hz,
        database_ticks_carried: 0,
        idle_cpu_per_sec: idle_ticks as f64 / hz / idle_secs as f64,
        idle_switches_per_sec: idle_switches as f64 / idle_secs as f64,
    }
}

pub(crate) fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// Waits until the database holds `expected` readings of the site, or until nothing changed for
/// `stall` (some are lost), or `timeout`. Returns when the last reading became visible, how many
/// were, and the CPU counters at that moment.
pub(crate) async fn wait_visible(
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
        let query = format!("sum(count_over_time(reading_value{{site=\"{site}\"}}[{window_secs}s]))");
        let count = run.database.query_scalar(&query).await.map_or(0, |v| v as u64);
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

pub(crate) fn sample_rates(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<RateSamples> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut samples = Vec::new();
        // Bounded: stops when told, or after six hours.
        while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(6 * 3600) {
            if let Some(text) = crate::http_get(port, "/metrics") {
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
pub(crate) fn rates(samples: &RateSamples, column: fn(&(f64, f64, f64)) -> f64) -> (f64, f64) {
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
pub(crate) struct InProgress {
    pub(crate) shape: Arc<Shape>,
    pub(crate) load_before: String,
    pub(crate) metrics_before: HashMap<String, f64>,
    pub(crate) stop_timer: Arc<AtomicBool>,
    pub(crate) timer: tokio::task::JoinHandle<(Vec<(f64, bool)>, usize)>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) cpu_before: CpuSnapshot,
    pub(crate) first_publish: Instant,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<NodeLogs>>,
    pub(crate) stop_sampler: Arc<AtomicBool>,
    pub(crate) sampler: std::thread::JoinHandle<RateSamples>,
}

/// Starts `shape` on `run`; the caller may do what the scenario needs before [`finish`].
pub(crate) fn begin(run: &Run, shape: Shape) -> InProgress {
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
pub(crate) async fn finish(run: &mut Run, p: InProgress) -> Measured {
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
    let load_after = loadavg();
    let publishing = Publishing::of(&p.shape, &p.counters);
    let rounds_done = logs.iter().map(Vec::len).max().unwrap_or(0);
    let syscalls = trace_syscalls(run, &p.shape, u32::try_from(rounds_done).unwrap()).await;
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
        load_after,
        samples,
        marked: p.shape.marked.min(p.shape.nodes),
        idle_cpu_per_sec: run.idle_cpu_per_sec,
        idle_switches_per_sec: run.idle_switches_per_sec,
        publishing,
        syscalls,
    }
}
