//! What `/proc` says: CPU ticks per process and thread, peak RSS, the whole machine's load.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::{Gateway, Mosquitto, VictoriaMetrics};

pub(crate) fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process (or thread) in clock ticks, from `/proc/.../stat`.
pub(crate) fn cpu_ticks(stat_path: &str) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    let (head, rest) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

pub(crate) fn process_ticks(pid: Option<u32>) -> u64 {
    pid.and_then(|p| cpu_ticks(&format!("/proc/{p}/stat")))
        .map_or(0, |(_, t)| t)
}

/// CPU ticks per thread name of a process (tokio workers summed under one name).
pub(crate) fn thread_ticks(pid: u32) -> BTreeMap<String, u64> {
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

/// Context switches (voluntary + involuntary) of every thread of a process, by thread id, with the
/// thread's name: each one is a wake-up of that thread (or a preemption). `/proc/<pid>/status` holds
/// the main thread's only, so the threads are read one by one from `/proc/<pid>/task/*/status`.
pub(crate) fn thread_switches(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let mut by_tid = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_tid;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let field =
            |name: &str| -> Option<&str> { text.lines().find_map(|l| l.strip_prefix(name)).map(str::trim) };
        let count = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let name = field("Name:").unwrap_or("?").to_owned();
        by_tid.insert(
            tid,
            (
                name,
                count("voluntary_ctxt_switches:") + count("nonvoluntary_ctxt_switches:"),
            ),
        );
    }
    by_tid
}

/// `VmHWM` (peak RSS) and `VmRSS` of a process, in KiB.
pub(crate) fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The process whose command line contains `needle` (the harness hands out the gateway's pid only:
/// the broker and the database are found by their own temporary folders).
pub(crate) fn find_pid(needle: &str) -> Option<u32> {
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
pub(crate) fn machine_ticks() -> (u64, u64) {
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

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The processes of one run and their CPU counters at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuSnapshot {
    pub(crate) at: Option<Instant>,
    pub(crate) gateway: u64,
    pub(crate) broker: u64,
    pub(crate) database: u64,
    pub(crate) bench: u64,
    pub(crate) machine_busy: u64,
    pub(crate) machine_total: u64,
    pub(crate) gateway_threads: BTreeMap<String, u64>,
    pub(crate) gateway_switches: BTreeMap<u32, (String, u64)>,
}

#[derive(Debug)]
pub(crate) struct Pids {
    pub(crate) gateway: u32,
    pub(crate) broker: Option<u32>,
    pub(crate) database: Option<u32>,
}

impl Pids {
    pub(crate) fn find(gateway: &Gateway, broker: &Mosquitto, db: &VictoriaMetrics) -> Pids {
        Pids {
            gateway: gateway.pid().expect("the gateway's process"),
            broker: find_pid(&broker.dir().join("mosquitto.conf").display().to_string()),
            database: find_pid(&db.dir().join("data").display().to_string()),
        }
    }

    pub(crate) fn snapshot(&self) -> CpuSnapshot {
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
            gateway_switches: thread_switches(self.gateway),
        }
    }
}

/// CPU used between two snapshots, in seconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuUse {
    pub(crate) wall: f64,
    pub(crate) gateway: f64,
    pub(crate) broker: f64,
    pub(crate) database: f64,
    pub(crate) bench: f64,
    pub(crate) machine_busy: f64,
    pub(crate) machine_capacity: f64,
    pub(crate) gateway_threads: Vec<(String, f64)>,
    /// The gateway's context switches, all its threads summed (see [`switches_between`]).
    pub(crate) gateway_switches: Switches,
}

/// Context switches of a process's threads between two snapshots.
#[derive(Debug, Clone, Default)]
pub(crate) struct Switches {
    pub(crate) total: u64,
    /// By thread name (tokio's workers summed under one name), most first.
    pub(crate) by_thread: Vec<(String, u64)>,
    /// Threads seen in the first snapshot and gone by the second: their switches after the first
    /// snapshot are not counted.
    pub(crate) threads_exited: usize,
}

/// The switches between two per-thread readings: a thread that started in between counts from zero.
pub(crate) fn switches_between(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
) -> Switches {
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    for (tid, (name, count)) in after {
        let was = before.get(tid).map_or(0, |(_, c)| *c);
        *by_name.entry(name.clone()).or_insert(0) += count.saturating_sub(was);
    }
    let mut by_thread: Vec<(String, u64)> = by_name.into_iter().filter(|(_, c)| *c > 0).collect();
    by_thread.sort_by_key(|t| std::cmp::Reverse(t.1));
    Switches {
        total: by_thread.iter().map(|(_, c)| c).sum(),
        by_thread,
        threads_exited: before.keys().filter(|tid| !after.contains_key(tid)).count(),
    }
}

pub(crate) fn cpu_use(before: &CpuSnapshot, after: &CpuSnapshot, hz: f64) -> CpuUse {
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
        gateway_switches: switches_between(&before.gateway_switches, &after.gateway_switches),
    }
}
