//! The backlog scenario: the database away for a while, then the spool draining.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::metrics::{metric, parse_metrics};

use super::load::Counters;
use super::measured::load_notes;
use super::procfs::{find_pid, process_ticks};
use super::report::{Report, Status, row, thousands, utc_now};
use super::run::{Run, begin, finish, start_run};
use super::scenarios::steady_shape;
use super::{TARGET_CPU_US_PER_READING, TARGET_DRAIN_RATIO, env_u64};

/// What the backlog scenario measured while the database was away and after it came back.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    pub(crate) outage: f64,
    pub(crate) built_readings: f64,
    pub(crate) built_bytes: f64,
    pub(crate) drain_secs: Option<f64>,
    pub(crate) written_during_drain: f64,
    pub(crate) timeline: Vec<Sampled>,
}

/// Seconds since the run began, spool bytes, points written, phase.
pub(crate) type Sampled = (f64, f64, f64, &'static str);

pub(crate) async fn backlog() -> Report {
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
    rows.extend(m.rows(TARGET_CPU_US_PER_READING, false, false));
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
pub(crate) async fn backlog_phase(
    run: &mut Run,
    counters: &Counters,
    warmup: u64,
    outage: u64,
    cap: u64,
) -> Backlog {
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
