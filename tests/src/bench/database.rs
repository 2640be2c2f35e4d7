//! The database side: publish-to-visible timing of marked messages, and what was stored compared
//! with what was published, point by point.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::VictoriaClient;

use super::load::{Mark, Shape};
use super::node_name;

pub(crate) fn parse_index(label: Option<&str>, prefix: &str) -> Option<usize> {
    label?.strip_prefix(prefix)?.parse().ok()
}

/// Times marked messages from their publish to their first appearance in `/api/v1/export` (no
/// forced flush: what a reader of the database sees). Ends when `stop` is set and every mark was
/// seen, or 120 s after `stop`.
pub(crate) async fn time_visibility(
    db: VictoriaClient,
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
            && let Some(response) = db.export(&selector, oldest - 1, false).await
        {
            let seen_at = Instant::now();
            VictoriaClient::for_each_series(response, |series| {
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
pub(crate) struct Exactness {
    pub(crate) published: u64,
    pub(crate) stored: u64,
    pub(crate) lost: u64,
    pub(crate) stored_twice: u64,
    pub(crate) wrong_value: u64,
    pub(crate) examples: Vec<String>,
}

pub(crate) async fn compare(db: &VictoriaClient, shape: &Shape, logs: &[Vec<i64>]) -> Exactness {
    let selector = format!("{{__name__=\"reading_value\",site=\"{}\"}}", shape.site);
    let response = db
        .export(&selector, 0, true)
        .await
        .expect("export of every reading");
    let mut points: Vec<Vec<(i64, f64)>> = vec![Vec::new(); shape.nodes * shape.readings];
    let mut exactness = Exactness::default();
    VictoriaClient::for_each_series(response, |series| {
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
