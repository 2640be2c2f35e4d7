//! The flood and steady scenarios.

use std::time::Duration;

use crate::now_ms;

use super::load::Shape;
use super::measured::{Measured, load_notes};
use super::profile::profile_missed;
use super::report::{Report, Status, row, thousands, utc_now};
use super::run::{Run, begin, finish, start_run};
use super::{
    TARGET_CPU_US_PER_READING, TARGET_FLOOD_CPU_US_PER_READING, TARGET_FLOOD_READINGS_PER_SEC,
    TARGET_RSS_MIB, env_u64,
};

pub(crate) async fn flood() -> Report {
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
        seq_base: 0,
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
        "≥ 250,000 with the durable spool on",
        Status::of(rate >= TARGET_FLOOD_READINGS_PER_SEC),
    )];
    rows.extend(m.rows(TARGET_FLOOD_CPU_US_PER_READING, false, false));
    let mut sections = load_notes(&notes_shape);
    sections.push_str(&m.details());
    let mut notes = vec![format!(
        "The publishers ran for {secs} s (`BENCH_FLOOD_SECS`); the window ends when the database count of \
         the site's readings (`count_over_time`, polled every 200 ms) reached the number published."
    )];
    let missed =
        rate < TARGET_FLOOD_READINGS_PER_SEC || m.cpu_us_per_reading() > TARGET_FLOOD_CPU_US_PER_READING;
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
pub(crate) async fn measure(shape: Shape) -> (Run, Shape, Measured) {
    let mut run = start_run(&shape);
    let notes_shape = shape.clone();
    let load = begin(&run, shape);
    let m = finish(&mut run, load).await;
    (run, notes_shape, m)
}

pub(crate) fn steady_shape(site: &str, nodes: usize, duration: Duration) -> Shape {
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
        seq_base: 0,
    }
}

pub(crate) async fn steady() -> Report {
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
    rows.extend(m.rows(TARGET_CPU_US_PER_READING, nodes == 10_000, true));
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
