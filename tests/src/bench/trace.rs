//! Syscalls per message: `perf trace -s` attached to the gateway for a bounded window of the same
//! load, run after the measured window so that tracing does not weigh on the figures measured.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::metrics::{metric, parse_metrics};

use super::env_u64;
use super::load::{Counters, Shape, join_load, start_load};
use super::profile::perf_binary;
use super::run::Run;

/// What `perf trace -s -p <gateway>` counted over a window of load.
#[derive(Debug, Clone, Default)]
pub(crate) struct Syscalls {
    pub(crate) secs: u64,
    /// Messages the gateway received in the window (`rackwatch_messages_received_total`).
    pub(crate) messages: f64,
    pub(crate) total: u64,
    /// Calls by syscall, all threads summed, most first.
    pub(crate) by_call: Vec<(String, u64)>,
    /// What perf said about events it lost, if it did.
    pub(crate) lost: Option<String>,
}

impl Syscalls {
    pub(crate) fn per_message(&self) -> f64 {
        self.total as f64 / self.messages.max(1.0)
    }

    /// The figure as text: a lower bound (`≥`) when perf lost events.
    pub(crate) fn per_message_text(&self) -> String {
        let bound = if self.lost.is_some() { "≥ " } else { "" };
        format!("{bound}{:.2}", self.per_message())
    }

    /// `futex 2.10, epoll_wait 1.05, ...`: the `n` most frequent, per message.
    pub(crate) fn top(&self, n: usize) -> String {
        self.by_call
            .iter()
            .take(n)
            .map(|(call, count)| format!("{call} {:.2}", *count as f64 / self.messages.max(1.0)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The calls column of `perf trace -s` output, summed over its per-thread tables.
pub(crate) fn parse_summary(text: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `   futex   1234   0   12.345   0.001 ...`: a name, then calls and errors as integers.
        let [name, count, errors, ..] = fields.as_slice() else {
            continue;
        };
        let (Ok(count), Ok(_)) = (count.parse::<u64>(), errors.parse::<u64>()) else {
            continue;
        };
        *calls.entry((*name).to_owned()).or_insert(0) += count;
    }
    calls
}

/// After the measured window, runs `shape` on for `BENCH_TRACE_SECS` (10; 0: off) plus 2 s of
/// warm-up, its sequence numbers going on after `rounds_done`, with `perf trace -s` attached to
/// the gateway's threads, and counts its syscalls per message received.
pub(crate) async fn trace_syscalls(run: &Run, shape: &Shape, rounds_done: u32) -> Result<Syscalls, String> {
    let secs = env_u64("BENCH_TRACE_SECS", 10);
    if secs == 0 {
        return Err("not traced (`BENCH_TRACE_SECS=0`)".into());
    }
    let perf = perf_binary()?;
    let warm = 2;
    let mut shape = shape.clone();
    shape.seq_base += rounds_done;
    shape.duration = Duration::from_secs(warm + secs + 2);
    if let Some(interval) = shape.interval {
        shape.max_rounds =
            u32::try_from(shape.duration.as_secs() / interval.as_secs().max(1) + 1).unwrap_or(u32::MAX);
    }
    let shape = Arc::new(shape);
    let (marks, _unused) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    let (_, tasks) = start_load(&shape, run.broker.port(), &marks, &counters);
    tokio::time::sleep(Duration::from_secs(warm)).await;
    let received = || {
        metric(
            &parse_metrics(&run.gateway.metrics()),
            "rackwatch_messages_received_total",
        )
    };
    let data = std::env::temp_dir().join(format!("rackwatch-bench-trace-{}.txt", std::process::id()));
    let before = received();
    let traced = tokio::process::Command::new(perf)
        // Large ring buffers: at thousands of messages a second the default ones overflow.
        .args(["trace", "-s", "-m", "16M", "-o"])
        .arg(&data)
        .arg("-p")
        .arg(run.pids.gateway.to_string())
        .args(["--", "sleep"])
        .arg(secs.to_string())
        .output()
        .await
        .map_err(|e| format!("perf trace: {e}"));
    let messages = received() - before;
    counters.stop.store(true, Ordering::Relaxed);
    let _ = join_load(&shape, tasks).await;
    let traced = traced?;
    let text = std::fs::read_to_string(&data).unwrap_or_default();
    let _ = std::fs::remove_file(&data);
    let calls = parse_summary(&text);
    if !traced.status.success() || calls.is_empty() {
        return Err(format!(
            "`perf trace -s` gave no summary: {}",
            String::from_utf8_lossy(&traced.stderr).trim()
        ));
    }
    let mut by_call: Vec<(String, u64)> = calls.into_iter().collect();
    by_call.sort_by_key(|c| std::cmp::Reverse(c.1));
    let stderr = String::from_utf8_lossy(&traced.stderr);
    Ok(Syscalls {
        secs,
        messages,
        total: by_call.iter().map(|(_, c)| c).sum(),
        by_call,
        lost: text
            .lines()
            .chain(stderr.lines())
            .find(|l| l.contains("LOST"))
            .map(|l| l.trim().to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_summary;

    #[test]
    fn sums_the_calls_of_every_thread() {
        let text = "\n Summary of events:\n\n rackwatch-e2e (7950), 1102 events, 93.5%\n\n   syscall            calls  errors  total       min       avg       max       stddev\n                                     (msec)    (msec)    (msec)    (msec)        (%)\n   --------------- --------  ------ -------- --------- --------- ---------     ------\n   futex                 76     38  1884.216     0.000    24.792   105.439     20.14%\n   writev                38      0     5.850     0.087     0.154     0.238      4.99%\n\n tokio-runtime-w (7951), 10 events, 1.0%\n\n   syscall            calls  errors  total\n   futex                  4      0     0.100     0.010     0.014     0.051      2.01%\n";
        let calls = parse_summary(text);
        assert_eq!(calls.get("futex"), Some(&80));
        assert_eq!(calls.get("writev"), Some(&38));
        assert_eq!(calls.len(), 2);
    }
}
