//! The scaling scenario: the steady load at growing fleet sizes, each step on a fresh broker,
//! database and gateway, and how the gateway's cost per reading and memory per series follow.

use std::fmt::Write as _;
use std::time::Duration;

use super::load::Shape;
use super::measured::{Measured, load_notes};
use super::report::{Report, Row, Status, row, table, thousands, utc_now};
use super::scenarios::{measure, steady_shape};
use super::{TARGET_ALERT_P99_MS, TARGET_CPU_US_PER_READING, TARGET_WAKEUPS_PER_MESSAGE, env_u64};
use crate::metrics::histogram_quantile;

/// "Linear or better": a step's cost per reading (or memory per series) may exceed the previous
/// step's by this factor at most, the noise of a shared 2-core machine.
const NOISE: f64 = 1.1;

struct Step {
    shape: Shape,
    m: Measured,
}

impl Step {
    fn series(&self) -> f64 {
        (self.shape.nodes * self.shape.readings) as f64
    }

    fn rss_mib(&self) -> f64 {
        self.m.peak_rss_kib as f64 / 1024.0
    }

    fn rss_kib_per_1000_series(&self) -> f64 {
        self.m.peak_rss_kib as f64 / (self.series() / 1000.0).max(1e-9)
    }

    fn cores(&self, secs: f64) -> f64 {
        secs / self.m.cpu.wall.max(1e-9)
    }

    fn label(&self) -> String {
        format!("{} nodes", thousands(self.shape.nodes as f64))
    }

    /// What limited the load, when it was not what was offered.
    fn limit(&self) -> String {
        let c = &self.m.cpu;
        let (broker, bench, gateway) = (self.cores(c.broker), self.cores(c.bench), self.cores(c.gateway));
        let busy = 100.0 * c.machine_busy / c.machine_capacity.max(1e-9);
        let cpus = format!(
            "Mosquitto used {broker:.2} cores (it runs on one), the benchmark process (publishers and pollers) \
             {bench:.2}, the gateway {gateway:.2}; the machine was {busy:.0} % busy"
        );
        if self.m.publishing.kept_pace() {
            format!("the offered rate went out: {cpus}.")
        } else if broker >= 0.9 {
            format!("**Mosquitto was the limit**: {cpus}.")
        } else if busy >= 95.0 {
            format!("**the machine was the limit** (its cores were all busy): {cpus}.")
        } else {
            format!("**the load generator was the limit** (raise `BENCH_SCALING_CONNECTIONS`): {cpus}.")
        }
    }
}

/// Connections for `nodes`: `per_10k` for every 10,000 nodes (at least one), so every connection
/// carries the same rate at every step.
fn connections(nodes: usize, per_10k: usize) -> usize {
    (nodes * per_10k).div_ceil(10_000).max(1)
}

fn node_counts() -> Vec<usize> {
    let text = std::env::var("BENCH_SCALING_NODES").unwrap_or_else(|_| "1000,10000,50000".into());
    let counts: Vec<usize> = text
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    assert!(
        !counts.is_empty(),
        "BENCH_SCALING_NODES: no node counts in {text:?}"
    );
    counts
}

pub(crate) async fn scaling() -> Report {
    let started = utc_now();
    let secs = env_u64("BENCH_SCALING_SECS", 120);
    let per_10k = env_u64("BENCH_SCALING_CONNECTIONS", 10) as usize;
    let mut steps = Vec::new();
    for nodes in node_counts() {
        let mut shape = steady_shape(&format!("scale{nodes}"), nodes, Duration::from_secs(secs));
        shape.connections = connections(nodes, per_10k);
        println!(
            "scaling: {nodes} nodes on {} connections for {secs} s",
            shape.connections
        );
        // The servers of one step are gone before the next starts.
        let (run, shape, m) = measure(shape).await;
        drop(run);
        steps.push(Step { shape, m });
    }
    let rows = summary_rows(&steps);
    let mut sections = across(&steps);
    for step in &steps {
        writeln!(sections, "\n## {}\n", step.label()).unwrap();
        sections.push_str(&demote(&load_notes(&step.shape)));
        sections.push_str(&table(&step.m.rows(
            TARGET_CPU_US_PER_READING,
            step.shape.nodes == 10_000,
            true,
        )));
        sections.push('\n');
        sections.push_str(&demote(&step.m.details()));
    }
    let notes = vec![
        format!(
            "Each step ran the steady load (`BENCH_SCALING_NODES`, one message of {} readings per node every {} s) \
             for {secs} s (`BENCH_SCALING_SECS`, default 120) on a fresh Mosquitto, VictoriaMetrics and gateway, \
             from {per_10k} publisher connections per 10,000 nodes (`BENCH_SCALING_CONNECTIONS`), so every \
             connection carries the same rate at every step.",
            steps.first().map_or(0, |s| s.shape.readings),
            steps
                .first()
                .and_then(|s| s.shape.interval)
                .map_or(0, |i| i.as_secs())
        ),
        format!(
            "Linear or better: no step's CPU per reading, nor its peak RSS per 1,000 series, above {NOISE}× the \
             previous step's (the noise of a shared machine); the ratios to the first step show the curve. \
             Peak RSS includes what the gateway holds whatever the fleet, so per-series memory falls with size; the \
             growth per 1,000 extra series between steps is the memory each series really costs."
        ),
        "No profile is taken here (the steady scenario profiles a missed CPU target).".into(),
    ];
    let context = steps
        .iter()
        .map(|s| format!("{}: {}", s.label(), s.m.context()))
        .collect::<Vec<_>>()
        .join(" ");
    Report {
        context,
        scenario: "scaling",
        title: format!(
            "scaling (steady load at {} nodes, {secs} s each)",
            steps
                .iter()
                .map(|s| thousands(s.shape.nodes as f64))
                .collect::<Vec<_>>()
                .join(" / ")
        ),
        started,
        rows,
        sections,
        notes,
    }
}

/// A step's full report sits under its own heading: its `##` headings become `###`.
fn demote(md: &str) -> String {
    md.lines()
        .map(|l| {
            if l.starts_with("## ") {
                format!("#{l}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn joined(steps: &[Step], f: impl Fn(&Step) -> String) -> String {
    steps.iter().map(f).collect::<Vec<_>>().join(" / ")
}

/// Each step's figure relative to the first step's.
fn ratios(steps: &[Step], f: impl Fn(&Step) -> f64) -> String {
    let first = steps.first().map_or(1.0, &f).max(1e-9);
    joined(steps, |s| format!("{:.2}×", f(s) / first))
}

/// No step's figure above [`NOISE`] times the previous step's.
fn linear_or_better(steps: &[Step], f: impl Fn(&Step) -> f64) -> bool {
    steps.windows(2).all(|w| f(&w[1]) <= NOISE * f(&w[0]))
}

fn alert_p99_ms(m: &Measured) -> Option<f64> {
    histogram_quantile(&m.alert_buckets, 0.99).map(|q| q.estimate * 1e3)
}

fn summary_rows(steps: &[Step]) -> Vec<Row> {
    let nodes = joined(steps, |s| thousands(s.shape.nodes as f64));
    let cpu = |s: &Step| s.m.cpu_us_per_reading();
    let rss = Step::rss_kib_per_1000_series;
    let ms = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{v:.0}"));
    vec![
        row(
            &format!("messages/s offered → published ({nodes} nodes)"),
            joined(steps, |s| {
                format!(
                    "{} → {}",
                    thousands(s.m.publishing.offered_per_sec.unwrap_or(0.0)),
                    thousands(s.m.publishing.achieved_per_sec())
                )
            }),
            "≥ 99 % of offered, none > 1 s late",
            Status::of(steps.iter().all(|s| s.m.publishing.kept_pace())),
        ),
        row(
            "gateway CPU per reading (ratio to the first step)",
            format!(
                "{} µs ({})",
                joined(steps, |s| format!("{:.2}", cpu(s))),
                ratios(steps, cpu)
            ),
            &format!("linear or better (no step > {NOISE}× the previous)"),
            Status::of(linear_or_better(steps, cpu)),
        ),
        row(
            "gateway CPU per message",
            format!(
                "{} µs",
                joined(steps, |s| format!("{:.1}", s.m.cpu_us_per_message()))
            ),
            "",
            Status::Info,
        ),
        row(
            "gateway peak RSS (VmHWM)",
            format!("{} MiB", joined(steps, |s| format!("{:.1}", s.rss_mib()))),
            "",
            Status::Info,
        ),
        row(
            "peak RSS per 1,000 series (ratio to the first step)",
            format!(
                "{} KiB ({})",
                joined(steps, |s| format!("{:.0}", rss(s))),
                ratios(steps, rss)
            ),
            &format!("linear or better (no step > {NOISE}× the previous)"),
            Status::of(linear_or_better(steps, rss)),
        ),
        row(
            "RSS growth per 1,000 extra series (from the previous step)",
            growth(steps),
            "",
            Status::Info,
        ),
        row(
            "gateway wake-ups per message (context switches)",
            joined(steps, |s| format!("{:.2}", s.m.wakeups_per_message())),
            "≤ 0.2",
            Status::of(
                steps
                    .iter()
                    .all(|s| s.m.wakeups_per_message() <= TARGET_WAKEUPS_PER_MESSAGE),
            ),
        ),
        row(
            "gateway syscalls per message (`perf trace -s`)",
            joined(steps, |s| {
                s.m.syscalls
                    .as_ref()
                    .map_or_else(|_| "n/a".into(), super::trace::Syscalls::per_message_text)
            }),
            "",
            Status::Info,
        ),
        row(
            "publish → visible in the database, p50 / p99",
            format!(
                "{} ms",
                joined(steps, |s| {
                    let (p50, p99) = s.m.visibility(false);
                    format!("{} / {}", ms(p50), ms(p99))
                })
            ),
            "",
            Status::Info,
        ),
        row(
            "alert latency p99",
            format!(
                "{} ms",
                joined(steps, |s| alert_p99_ms(&s.m)
                    .map_or_else(|| "n/a".into(), |v| format!("{v:.2}")))
            ),
            "≤ 10 ms",
            Status::of(
                steps
                    .iter()
                    .all(|s| alert_p99_ms(&s.m).is_some_and(|v| v <= TARGET_ALERT_P99_MS)),
            ),
        ),
        row(
            "readings lost / stored twice / wrong value",
            joined(steps, |s| {
                let e = &s.m.exactness;
                format!("{} / {} / {}", e.lost, e.stored_twice, e.wrong_value)
            }),
            "0 (the gateway's promise)",
            Status::of(steps.iter().all(|s| {
                let e = &s.m.exactness;
                e.lost == 0 && e.stored_twice == 0 && e.wrong_value == 0
            })),
        ),
        row(
            "cores busy: gateway / Mosquitto / publishers (benchmark process)",
            joined(steps, |s| {
                let c = &s.m.cpu;
                format!(
                    "{:.2}·{:.2}·{:.2}",
                    s.cores(c.gateway),
                    s.cores(c.broker),
                    s.cores(c.bench)
                )
            }),
            "",
            Status::Info,
        ),
    ]
}

fn growth(steps: &[Step]) -> String {
    if steps.len() < 2 {
        return "n/a (one step)".into();
    }
    steps
        .windows(2)
        .map(|w| {
            let extra = (w[1].series() - w[0].series()) / 1000.0;
            let kib = (w[1].m.peak_rss_kib as f64 - w[0].m.peak_rss_kib as f64) / extra;
            format!("{} → {}: {kib:.0} KiB", w[0].label(), w[1].label())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One line of the table across steps: a step's value.
type Figure<'a> = dyn Fn(&Step) -> String + 'a;

/// The table across steps, one column a step, and what limited each step's load.
fn across(steps: &[Step]) -> String {
    let mut md = String::from("## Across the steps\n\n| figure |");
    for s in steps {
        write!(md, " {} |", s.label()).unwrap();
    }
    md.push_str("\n|---|");
    md.push_str(&"---:|".repeat(steps.len()));
    md.push('\n');
    let first_cpu = steps.first().map_or(1.0, |s| s.m.cpu_us_per_reading()).max(1e-9);
    let first_rss = steps.first().map_or(1.0, Step::rss_kib_per_1000_series).max(1e-9);
    let lines: [(&str, &Figure<'_>); 17] = [
        ("series (nodes × channels)", &|s| thousands(s.series())),
        ("publisher connections", &|s| s.shape.connections.to_string()),
        ("messages/s offered", &|s| {
            thousands(s.m.publishing.offered_per_sec.unwrap_or(0.0))
        }),
        ("messages/s published (first → last publish)", &|s| {
            format!("{:.0}", s.m.publishing.achieved_per_sec())
        }),
        ("messages queued > 100 ms / > 1 s late, worst", &|s| {
            let p = &s.m.publishing;
            format!("{} / {}, {:.0} ms", p.late_100ms, p.late_1s, p.max_late_ms)
        }),
        ("gateway CPU µs per reading", &|s| {
            format!("{:.2}", s.m.cpu_us_per_reading())
        }),
        ("… ratio to the first step", &|s| {
            format!("{:.2}×", s.m.cpu_us_per_reading() / first_cpu)
        }),
        ("gateway CPU µs per message", &|s| {
            format!("{:.1}", s.m.cpu_us_per_message())
        }),
        ("gateway peak RSS (MiB)", &|s| format!("{:.1}", s.rss_mib())),
        ("… KiB per 1,000 series", &|s| {
            format!("{:.0}", s.rss_kib_per_1000_series())
        }),
        ("… ratio to the first step", &|s| {
            format!("{:.2}×", s.rss_kib_per_1000_series() / first_rss)
        }),
        ("gateway wake-ups per message", &|s| {
            format!("{:.2}", s.m.wakeups_per_message())
        }),
        ("gateway syscalls per message (`perf trace -s`)", &|s| {
            s.m.syscalls
                .as_ref()
                .map_or_else(|_| "n/a".into(), super::trace::Syscalls::per_message_text)
        }),
        ("publish → visible p50 / p99 (ms)", &|s| {
            let (p50, p99) = s.m.visibility(false);
            let ms = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{v:.0}"));
            format!("{} / {}", ms(p50), ms(p99))
        }),
        ("alert latency p99 (ms)", &|s| {
            alert_p99_ms(&s.m).map_or_else(|| "n/a".into(), |v| format!("{v:.2}"))
        }),
        ("readings lost / stored twice", &|s| {
            format!("{} / {}", s.m.exactness.lost, s.m.exactness.stored_twice)
        }),
        ("cores: gateway · Mosquitto · publishers · database", &|s| {
            let c = &s.m.cpu;
            format!(
                "{:.2} · {:.2} · {:.2} · {:.2}",
                s.cores(c.gateway),
                s.cores(c.broker),
                s.cores(c.bench),
                s.cores(c.database)
            )
        }),
    ];
    for (figure, value) in lines {
        write!(md, "| {figure} |").unwrap();
        for s in steps {
            write!(md, " {} |", value(s)).unwrap();
        }
        md.push('\n');
    }
    writeln!(md, "\nRSS growth per 1,000 extra series: {}.\n", growth(steps)).unwrap();
    md.push_str("What limited the load:\n\n");
    for s in steps {
        writeln!(md, "- {}: {}", s.label(), s.limit()).unwrap();
    }
    md
}
