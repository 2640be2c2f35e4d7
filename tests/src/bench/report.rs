//! Results: the rows of a scenario's report, the machine it ran on, and the files under
//! `bench/results/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) figure: String,
    pub(crate) value: String,
    pub(crate) target: String,
    pub(crate) status: Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Met,
    Missed,
    Info,
}

impl Status {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Status::Met => "**met**",
            Status::Missed => "**missed**",
            Status::Info => "—",
        }
    }

    pub(crate) fn of(met: bool) -> Status {
        if met { Status::Met } else { Status::Missed }
    }
}

pub(crate) fn row(figure: &str, value: String, target: &str, status: Status) -> Row {
    Row {
        figure: figure.to_owned(),
        value,
        target: target.to_owned(),
        status,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    pub(crate) title: String,
    pub(crate) started: String,
    pub(crate) rows: Vec<Row>,
    pub(crate) sections: String,
    pub(crate) notes: Vec<String>,
    /// How busy the machine was: the benchmark shares it.
    pub(crate) context: String,
}

pub(crate) fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program).args(args).output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let line = text.lines().find(|l| !l.trim().is_empty())?.trim().to_owned();
    Some(line)
}

pub(crate) fn package_version(package: &str) -> String {
    command_line("dpkg-query", &["-W", "-f=${Version}", package]).unwrap_or_else(|| "unknown".into())
}

pub(crate) fn utc_now() -> String {
    command_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]).unwrap_or_default()
}

pub(crate) fn machine_description() -> String {
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
pub(crate) static GATEWAY_SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub(crate) fn gateway_source() -> String {
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

pub(crate) fn results_dir() -> PathBuf {
    std::env::var_os("BENCH_RESULTS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results"),
        PathBuf::from,
    )
}

pub(crate) fn table(rows: &[Row]) -> String {
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

pub(crate) fn write_report(report: &Report) {
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
pub(crate) fn write_summary(dir: &Path) {
    let mut md = String::from(
        "# Load benchmark results\n\n`bench/run.sh [flood|steady|backlog|scaling|all]` builds in release and runs \
         `rackwatch-bench`, which starts a real Mosquitto, a real VictoriaMetrics and the release gateway \
         (durable spool on: every commit is `fdatasync`ed before the broker gets its PUBACK) on loopback, \
         publishes simulated nodes at QoS 1, and writes these files. Each scenario's file has the details \
         (CPU of every process, contention, how the load was modelled).\n\n",
    );
    for scenario in ["flood", "steady", "backlog", "scaling"] {
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

pub(crate) fn thousands(value: f64) -> String {
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
