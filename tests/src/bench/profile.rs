//! A profile of a missed target: a second, separate run under `perf record`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::now_ms;

use super::env_u64;
use super::load::{Counters, Shape, join_load, start_load};
use super::report::results_dir;
use super::run::{Run, start_run};

/// After a missed target, profiles a second, separate run of `shape` (unless `BENCH_PROFILE=0`)
/// once `run`'s servers are gone, and adds the profile to the report.
pub(crate) async fn profile_missed(
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

pub(crate) fn perf_binary() -> Result<&'static str, String> {
    ["/usr/bin/perf", "/usr/local/bin/perf"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .ok_or_else(|| "perf is not installed".to_owned())
}

/// A second, separate run of `shape` with `perf record` attached to the gateway for `secs` after
/// `warm` seconds of load: where its time goes. Writes `{scenario}-profile.txt`.
pub(crate) async fn profile(shape: &Shape, scenario: &str, warm: u64, secs: u64) -> Result<String, String> {
    let perf = perf_binary()?;
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
