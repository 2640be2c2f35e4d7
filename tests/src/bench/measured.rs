//! What one run measured, and the report rows and notes derived from it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::metrics::{BucketQuantile, delta_histogram, histogram, histogram_quantile, metric};

use super::database::Exactness;
use super::load::{Counters, Shape};
use super::procfs::CpuUse;
use super::report::{Row, Status, row, thousands};
use super::run::{percentile, rates};
use super::trace::Syscalls;
use super::{COOL, HOT, TARGET_ALERT_P99_MS, TARGET_RSS_MIB, TARGET_WAKEUPS_PER_MESSAGE, env_u64, node_name};

/// What the publishers offered and managed: whether the load was the load intended.
#[derive(Debug, Clone, Default)]
pub(crate) struct Publishing {
    /// Messages per second the shape asks for (`None`: a flood, as fast as the broker takes them).
    pub(crate) offered_per_sec: Option<f64>,
    pub(crate) messages: u64,
    /// First publish → last publish.
    pub(crate) window_secs: f64,
    pub(crate) late_100ms: u64,
    pub(crate) late_1s: u64,
    pub(crate) max_late_ms: f64,
}

impl Publishing {
    pub(crate) fn of(shape: &Shape, counters: &Counters) -> Publishing {
        Publishing {
            offered_per_sec: shape.interval.map(|i| shape.nodes as f64 / i.as_secs_f64()),
            messages: counters.messages.load(Ordering::Relaxed),
            window_secs: counters.last_publish_us.load(Ordering::Relaxed) as f64 / 1e6,
            late_100ms: counters.late_100ms.load(Ordering::Relaxed),
            late_1s: counters.late_1s.load(Ordering::Relaxed),
            max_late_ms: counters.max_late_us.load(Ordering::Relaxed) as f64 / 1e3,
        }
    }

    /// Messages published per second over the publishing window. A paced load that keeps up ends
    /// one interval's spread after its last round began, so this is the offered rate, give or take
    /// one message per node.
    pub(crate) fn achieved_per_sec(&self) -> f64 {
        self.messages as f64 / self.window_secs.max(1e-9)
    }

    /// The paced load went out as offered: at least 99 % of the rate, no message a second late.
    pub(crate) fn kept_pace(&self) -> bool {
        self.offered_per_sec
            .is_none_or(|offered| self.achieved_per_sec() >= 0.99 * offered && self.late_1s == 0)
    }

    pub(crate) fn describe(&self) -> String {
        let achieved = thousands(self.achieved_per_sec());
        match self.offered_per_sec {
            Some(offered) => format!(
                "{} offered, {achieved} published ({} messages in {:.1} s; {} queued > 100 ms late, {} > 1 s, \
                 worst {:.0} ms)",
                thousands(offered),
                thousands(self.messages as f64),
                self.window_secs,
                thousands(self.late_100ms as f64),
                thousands(self.late_1s as f64),
                self.max_late_ms
            ),
            None => format!(
                "{achieved} published ({} messages in {:.1} s, as fast as the broker acknowledged)",
                thousands(self.messages as f64),
                self.window_secs
            ),
        }
    }
}

/// The figures every scenario reports, from one measured window.
pub(crate) struct Measured {
    pub(crate) readings: u64,
    pub(crate) messages: u64,
    pub(crate) first_publish: Instant,
    pub(crate) last_visible: Instant,
    pub(crate) cpu: CpuUse,
    pub(crate) peak_rss_kib: u64,
    pub(crate) rss_kib: u64,
    pub(crate) visibility_ms: Vec<(f64, bool)>,
    pub(crate) unseen_marks: usize,
    pub(crate) alert_buckets: Vec<(f64, f64)>,
    pub(crate) metrics_before: HashMap<String, f64>,
    pub(crate) metrics_after: HashMap<String, f64>,
    pub(crate) exactness: Exactness,
    pub(crate) load_before: String,
    pub(crate) load_after: String,
    pub(crate) samples: RateSamples,
    pub(crate) marked: usize,
    pub(crate) idle_cpu_per_sec: f64,
    pub(crate) idle_switches_per_sec: f64,
    pub(crate) publishing: Publishing,
    /// `perf trace -s` over a window of the same load after the measured one, or why there is none.
    pub(crate) syscalls: Result<Syscalls, String>,
}

impl Measured {
    /// How busy the machine was over the measured window, the benchmark's own processes aside.
    pub(crate) fn context(&self) -> String {
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

    pub(crate) fn end_to_end_rate(&self) -> f64 {
        self.readings as f64 / self.last_visible.duration_since(self.first_publish).as_secs_f64()
    }

    pub(crate) fn cpu_us_per_reading(&self) -> f64 {
        self.cpu.gateway * 1e6 / self.readings.max(1) as f64
    }

    pub(crate) fn cpu_us_per_message(&self) -> f64 {
        self.cpu.gateway * 1e6 / self.messages.max(1) as f64
    }

    /// The gateway's context switches (all threads) per message published.
    pub(crate) fn wakeups_per_message(&self) -> f64 {
        self.cpu.gateway_switches.total as f64 / self.messages.max(1) as f64
    }

    /// Publish → visible p50 and p99 (ms) of the timed messages; `first`: of new series' first points.
    pub(crate) fn visibility(&self, first: bool) -> (Option<f64>, Option<f64>) {
        let mut sorted: Vec<f64> = self
            .visibility_ms
            .iter()
            .filter(|(_, f)| *f == first)
            .map(|(ms, _)| *ms)
            .collect();
        sorted.sort_by(f64::total_cmp);
        (percentile(&sorted, 0.5), percentile(&sorted, 0.99))
    }

    pub(crate) fn counter(&self, key: &str) -> f64 {
        metric(&self.metrics_after, key) - metric(&self.metrics_before, key)
    }

    /// The figures every scenario reports; the RSS target applies at 10,000 nodes, the wake-up
    /// target to a steady load.
    pub(crate) fn rows(&self, cpu_target: f64, rss_target: bool, wakeup_target: bool) -> Vec<Row> {
        let mut rows = Vec::new();
        rows.push(row(
            "messages/s offered → published (the load generator kept up)",
            self.publishing.describe(),
            if self.publishing.offered_per_sec.is_some() {
                "≥ 99 % of offered, none > 1 s late"
            } else {
                ""
            },
            if self.publishing.offered_per_sec.is_some() {
                Status::of(self.publishing.kept_pace())
            } else {
                Status::Info
            },
        ));
        let cpu = self.cpu_us_per_reading();
        let cpu_goal = format!("≤ {cpu_target} µs");
        rows.push(row(
            "gateway CPU per reading (utime+stime / readings)",
            format!("{cpu:.2} µs ({:.1} µs per message)", self.cpu_us_per_message()),
            &cpu_goal,
            Status::of(cpu <= cpu_target),
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
                "≤ 48 MiB at 10,000 nodes (100,000 series)"
            } else {
                ""
            },
            if rss_target {
                Status::of(rss <= TARGET_RSS_MIB)
            } else {
                Status::Info
            },
        ));
        let wakeups = self.wakeups_per_message();
        rows.push(row(
            "gateway wake-ups per message (context switches of all its threads / messages)",
            format!(
                "{wakeups:.2} ({} switches, {} messages; the idle gateway's {:.0} per s would be {:.2} of them)",
                thousands(self.cpu.gateway_switches.total as f64),
                thousands(self.messages as f64),
                self.idle_switches_per_sec,
                self.idle_switches_per_sec * self.cpu.wall / self.messages.max(1) as f64
            ),
            if wakeup_target {
                "≤ 0.2 at steady load"
            } else {
                ""
            },
            if wakeup_target {
                Status::of(wakeups <= TARGET_WAKEUPS_PER_MESSAGE)
            } else {
                Status::Info
            },
        ));
        rows.push(row(
            "gateway syscalls per message (`perf trace -s`, most frequent)",
            match &self.syscalls {
                Ok(s) => format!("{} ({})", s.per_message_text(), s.top(4)),
                Err(why) => why.clone(),
            },
            "",
            Status::Info,
        ));
        let fmt_ms = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{v:.0} ms"));
        for (figure, first) in [
            ("publish → visible in the database, p50 / p99", false),
            ("… the first point of a new series, p50 / p99", true),
        ] {
            let (p50, p99) = self.visibility(first);
            let samples = self.visibility_ms.iter().filter(|(_, f)| *f == first).count();
            rows.push(row(
                figure,
                format!(
                    "{} / {} ({} samples)",
                    fmt_ms(p50),
                    fmt_ms(p99),
                    thousands(samples as f64)
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

    pub(crate) fn details(&self) -> String {
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
        md.push_str(
            "Gateway threads (`/proc/<pid>/task/*/stat`; context switches, voluntary + involuntary, from \
             `/proc/<pid>/task/*/status`):\n\n| thread | CPU s | µs per reading | context switches per message |\n\
             |---|---:|---:|---:|\n",
        );
        let switches = &c.gateway_switches;
        let mut names: Vec<&String> = c.gateway_threads.iter().map(|(n, _)| n).collect();
        for (name, _) in &switches.by_thread {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        for name in names {
            let secs = c
                .gateway_threads
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |t| t.1);
            let count = switches
                .by_thread
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |t| t.1);
            writeln!(
                md,
                "| `{name}` | {secs:.2} | {:.3} | {:.3} |",
                secs * 1e6 / self.readings.max(1) as f64,
                count as f64 / self.messages.max(1) as f64
            )
            .unwrap();
        }
        if switches.threads_exited > 0 {
            writeln!(
                md,
                "\n{} gateway threads ended during the window; their context switches in it are not counted.",
                switches.threads_exited
            )
            .unwrap();
        }
        md.push_str(&self.syscall_details());
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

impl Measured {
    fn syscall_details(&self) -> String {
        let mut md = String::from("\n## Syscalls per message\n\n");
        match &self.syscalls {
            Ok(s) => {
                writeln!(
                    md,
                    "After the measured window the same load went on, and `perf trace -s -p <gateway pid>` \
                     (the threads alive when it attached) counted the gateway's syscalls for {} s, in which it \
                     received {} messages (`rackwatch_messages_received_total`): {} syscalls per message.{}\n\n\
                     | syscall | calls | per message |\n|---|---:|---:|",
                    s.secs,
                    thousands(s.messages),
                    s.per_message_text(),
                    s.lost.as_ref().map_or_else(String::new, |l| format!(
                        " perf reported lost events (`{l}`), so the counts below are lower bounds."
                    ))
                )
                .unwrap();
                for (call, count) in s.by_call.iter().take(15) {
                    writeln!(
                        md,
                        "| `{call}` | {} | {:.3} |",
                        thousands(*count as f64),
                        *count as f64 / s.messages.max(1.0)
                    )
                    .unwrap();
                }
            }
            Err(why) => writeln!(md, "None: {why}.").unwrap(),
        }
        md
    }
}

/// The gateway's counters once a second: `(seconds since start, readings accepted, points written)`.
pub(crate) type RateSamples = Vec<(f64, f64, f64)>;

pub(crate) fn load_notes(shape: &Shape) -> String {
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
