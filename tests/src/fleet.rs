//! Simulated nodes for the ingest tests: publish telemetry at QoS 1 through a real broker and
//! remember exactly what was published, so a test can compare it with the database point by point.
//! Every load is bounded: a fixed number of rounds at a fixed interval.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rackwatch_protocols::{ChannelName, NodeId, Quantity, Reading, Telemetry, Unit};
use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::victoria::{ExportedSeries, VictoriaMetrics};

/// The shape of a load.
#[derive(Debug, Clone)]
pub struct Load {
    pub site: String,
    pub nodes: usize,
    pub readings_per_message: usize,
    pub rounds: u32,
    pub interval: Duration,
    /// Nodes whose clock is not synced (no `ts`): the gateway dates them from their uptime.
    pub unsynced_nodes: usize,
    pub client_id: String,
}

/// One published reading. `timestamp_ms` is `None` for an unsynced node.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub node: String,
    pub channel: String,
    pub seq: u32,
    pub timestamp_ms: Option<i64>,
    pub value: f64,
}

/// What a running load has published so far.
#[derive(Debug, Clone, Default)]
pub struct Ledger(Arc<Mutex<Vec<Published>>>);

impl Ledger {
    pub fn snapshot(&self) -> Vec<Published> {
        self.0.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The node ids of a load: `n000`, `n001`, ...
pub fn node_name(index: usize) -> String {
    format!("n{index:03}")
}

fn value_of(node: usize, seq: u32, channel: usize) -> f64 {
    // Distinct, exactly representable values in the plausible temperature range.
    18.0 + f64::from(((node * 7 + channel * 3) as u32 + seq * 5) % 640) / 32.0
}

/// Publishes `load` from one MQTT connection (the broker does not care which client publishes a
/// node's topic here) and returns the ledger and the task, which ends after the last round.
pub fn start(broker_port: u16, load: Load) -> (Ledger, tokio::task::JoinHandle<()>) {
    let ledger = Ledger::default();
    let record = ledger.clone();
    let task = tokio::spawn(async move {
        let mut options = MqttOptions::new(&load.client_id, "127.0.0.1", broker_port);
        // A persistent session: messages in flight when the broker restarts are sent again.
        options.set_clean_session(false);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_inflight(200);
        let (client, mut eventloop) = AsyncClient::new(options, 100_000);
        let poller = tokio::spawn(async move {
            loop {
                if eventloop.poll().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        let start_ms = crate::now_ms();
        let boot = 0xB007;
        let mut ticker = tokio::time::interval(load.interval);
        for seq in 0..load.rounds {
            ticker.tick().await;
            for node in 0..load.nodes {
                let synced = node >= load.unsynced_nodes;
                let timestamp_ms =
                    synced.then(|| start_ms + i64::from(seq) * load.interval.as_millis() as i64);
                let mut readings = heapless::Vec::new();
                let mut published = Vec::new();
                for channel in 0..load.readings_per_message {
                    let name = format!("ch{channel}");
                    let value = value_of(node, seq, channel);
                    let reading = Reading::ok(
                        ChannelName::new(&name).unwrap(),
                        Quantity::Temperature,
                        value,
                        Unit::Celsius,
                    );
                    readings.push(reading).unwrap();
                    published.push(Published {
                        node: node_name(node),
                        channel: name,
                        seq,
                        timestamp_ms,
                        value,
                    });
                }
                let telemetry = Telemetry {
                    version: 1,
                    node: NodeId::new(&node_name(node)).unwrap(),
                    boot,
                    seq,
                    timestamp_ms: timestamp_ms.map(|t| t as u64),
                    uptime_ms: 1_000 + u64::from(seq) * load.interval.as_millis() as u64,
                    dropped: 0,
                    readings,
                };
                let mut buf = [0u8; rackwatch_protocols::MAX_MESSAGE_LEN];
                let n = telemetry.encode(&mut buf).unwrap();
                let topic = format!("rackwatch/v1/{}/{}/telemetry", load.site, node_name(node));
                client
                    .publish(topic, QoS::AtLeastOnce, false, buf[..n].to_vec())
                    .await
                    .unwrap();
                record.0.lock().unwrap().extend(published);
            }
        }
        // Leave time for the last publishes to be acknowledged before the connection goes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        poller.abort();
    });
    (ledger, task)
}

/// What the database holds compared with what was published.
#[derive(Debug, Default)]
pub struct Comparison {
    pub published: usize,
    pub stored: usize,
    /// Published readings with no stored point of the same value.
    pub missing: Vec<String>,
    /// Stored points beyond one per published reading (a reading stored under two timestamps).
    pub extra: usize,
    pub wrong_value: Vec<String>,
}

impl Comparison {
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty()
            && self.extra == 0
            && self.wrong_value.is_empty()
            && self.published == self.stored
    }
}

/// Compares the `reading_value` series of `site` with the ledger. Synced readings are matched by
/// timestamp; an unsynced node's readings by order (the gateway chose their timestamps).
pub fn compare(series: &[ExportedSeries], published: &[Published]) -> Comparison {
    let mut stored: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
    for s in series {
        let key = (
            s.label("node").unwrap_or_default().to_owned(),
            s.label("channel").unwrap_or_default().to_owned(),
        );
        let points = stored.entry(key).or_default();
        points.extend(s.timestamps.iter().copied().zip(s.values.iter().copied()));
    }
    let mut expected: BTreeMap<(String, String), Vec<&Published>> = BTreeMap::new();
    for p in published {
        expected
            .entry((p.node.clone(), p.channel.clone()))
            .or_default()
            .push(p);
    }
    let mut comparison = Comparison {
        published: published.len(),
        ..Comparison::default()
    };
    comparison.stored = stored.values().map(Vec::len).sum();
    for (key, wanted) in &expected {
        let mut have = stored.get(key).cloned().unwrap_or_default();
        have.sort_by_key(|(t, _)| *t);
        comparison.extra += have.len().saturating_sub(wanted.len());
        for (i, p) in wanted.iter().enumerate() {
            let found = match p.timestamp_ms {
                Some(ts) => have.iter().find(|(t, _)| *t == ts).copied(),
                None => {
                    let mut by_seq: Vec<&&Published> = wanted.iter().collect();
                    by_seq.sort_by_key(|p| p.seq);
                    let rank = by_seq.iter().position(|q| q.seq == p.seq).unwrap_or(i);
                    have.get(rank).copied()
                }
            };
            match found {
                None => comparison
                    .missing
                    .push(format!("{}/{} seq {}", key.0, key.1, p.seq)),
                Some((_, v)) if v != p.value => comparison.wrong_value.push(format!(
                    "{}/{} seq {}: stored {v}, published {}",
                    key.0, key.1, p.seq, p.value
                )),
                Some(_) => {}
            }
        }
    }
    for key in stored.keys().filter(|k| !expected.contains_key(*k)) {
        comparison.extra += stored.get(key).map_or(0, Vec::len);
    }
    comparison
}

/// Waits until the database holds at least `expected` readings of `site` (or `timeout`), then
/// compares them with `published`.
pub async fn settle_and_compare(
    db: &VictoriaMetrics,
    site: &str,
    published: &[Published],
    timeout: Duration,
) -> Comparison {
    settle_and_compare_nodes(db, site, ".+", published, timeout).await
}

/// [`settle_and_compare`] for the nodes whose id matches the regular expression `nodes` only, when
/// other nodes publish on the site too.
pub async fn settle_and_compare_nodes(
    db: &VictoriaMetrics,
    site: &str,
    nodes: &str,
    published: &[Published],
    timeout: Duration,
) -> Comparison {
    let selector = format!("{{__name__=\"reading_value\",site=\"{site}\",node=~\"{nodes}\"}}");
    let expected = published.len();
    let series = db
        .export_until(&selector, timeout, |s| {
            s.iter().map(|s| s.values.len()).sum::<usize>() >= expected
        })
        .await;
    compare(&series, published)
}

/// Fails with the numbers and the gateway's log when the database differs from the ledger.
pub async fn assert_exact(db: &VictoriaMetrics, gateway: &crate::Gateway, site: &str, ledger: &Ledger) {
    assert_exact_nodes(db, gateway, site, ".+", ledger).await;
}

/// [`assert_exact`] for the nodes whose id matches `nodes` (a regular expression).
pub async fn assert_exact_nodes(
    db: &VictoriaMetrics,
    gateway: &crate::Gateway,
    site: &str,
    nodes: &str,
    ledger: &Ledger,
) {
    let published = ledger.snapshot();
    assert!(!published.is_empty());
    let comparison = settle_and_compare_nodes(db, site, nodes, &published, Duration::from_secs(90)).await;
    if !comparison.is_exact() {
        let log = gateway.log();
        let tail: String = log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "published {}, stored {}, missing {} (first: {:?}), extra {}, wrong values {:?}\ngateway log tail:\n{tail}",
            comparison.published,
            comparison.stored,
            comparison.missing.len(),
            comparison.missing.first(),
            comparison.extra,
            comparison.wrong_value.first()
        );
    }
}
