//! A load: the simulated nodes (`Shape`), and the publisher connections that send it at QoS 1.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rackwatch_protocols::{ChannelName, NodeId, Quantity, Reading, Telemetry, Unit};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use crate::now_ms;

use super::{COOL, HOT, node_name};

#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) site: String,
    pub(crate) nodes: usize,
    pub(crate) readings: usize,
    /// Publisher MQTT connections; node `i` publishes on connection `i % connections`.
    pub(crate) connections: usize,
    /// `None`: every connection publishes as fast as the broker takes it (flood).
    pub(crate) interval: Option<Duration>,
    /// Publishing stops after this long ...
    pub(crate) duration: Duration,
    /// ... or after this many messages per node, whichever comes first.
    pub(crate) max_rounds: u32,
    /// Every `alert_every`-th node's channel `ch0` goes hot and cool, crossing the alert rule.
    pub(crate) alert_every: usize,
    /// Messages per hot (or cool) half-period of an alerting node.
    pub(crate) hot_period: u32,
    /// Nodes `0..marked` have their `ch1` readings timed from publish to visible in the database.
    pub(crate) marked: usize,
    /// Synthetic timestamps `base + seq` (ms) for a flood, whose messages of one node come faster
    /// than one per millisecond; `None`: the wall clock at publish.
    pub(crate) ts_base: Option<i64>,
    /// The first message's sequence number: a later load on the same gateway goes on where the
    /// last one ended, so its messages are not duplicates.
    pub(crate) seq_base: u32,
}

impl Shape {
    pub(crate) fn is_alerting(&self, node: usize) -> bool {
        self.alert_every > 0 && node.is_multiple_of(self.alert_every)
    }

    /// The value a node publishes: deterministic, exactly representable, so the database can be
    /// compared value by value. Ordinary readings stay within 18..26 °C, under the rule's clear.
    pub(crate) fn value(&self, node: usize, seq: u32, channel: usize) -> f64 {
        if channel == 0 && self.is_alerting(node) {
            return if (seq / self.hot_period.max(1)) % 2 == 1 {
                HOT
            } else {
                COOL
            };
        }
        let mix = (node as u32)
            .wrapping_mul(7)
            .wrapping_add(channel as u32 * 3)
            .wrapping_add(seq.wrapping_mul(5));
        18.0 + f64::from(mix % 256) / 32.0
    }

    pub(crate) fn alerting_nodes(&self) -> Vec<usize> {
        (0..self.nodes).filter(|n| self.is_alerting(*n)).collect()
    }

    pub(crate) fn readings_per_second_offered(&self) -> Option<f64> {
        self.interval
            .map(|i| (self.nodes * self.readings) as f64 / i.as_secs_f64())
    }
}

/// A timed message: published at `at`, looked for in the database by `(timestamp, node)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    pub(crate) node: usize,
    pub(crate) ts: i64,
    pub(crate) at: Instant,
    /// The first point of its series (a new series is slower to become searchable).
    pub(crate) first: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages: AtomicU64,
    pub(crate) acked: AtomicU64,
    /// Set to end the load before its time bound.
    pub(crate) stop: AtomicBool,
    /// When the last message was queued, µs after the load started.
    pub(crate) last_publish_us: AtomicU64,
    /// A paced load's messages queued more than 100 ms and more than 1 s after they were due, and
    /// the worst lateness (µs): the load generator or the broker not keeping up.
    pub(crate) late_100ms: AtomicU64,
    pub(crate) late_1s: AtomicU64,
    pub(crate) max_late_us: AtomicU64,
}

impl Counters {
    fn published(&self, start: Instant, due: Option<Duration>) {
        let now = start.elapsed();
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.last_publish_us
            .fetch_max(now.as_micros() as u64, Ordering::Relaxed);
        if let Some(due) = due {
            let late = now.saturating_sub(due);
            if late > Duration::from_millis(100) {
                self.late_100ms.fetch_add(1, Ordering::Relaxed);
            }
            if late > Duration::from_secs(1) {
                self.late_1s.fetch_add(1, Ordering::Relaxed);
            }
            self.max_late_us
                .fetch_max(late.as_micros() as u64, Ordering::Relaxed);
        }
    }
}

/// What one publisher connection published: per node, the timestamp of each seq.
pub(crate) type NodeLogs = Vec<(usize, Vec<i64>)>;

pub(crate) async fn publish_connection(
    shape: Arc<Shape>,
    connection: usize,
    port: u16,
    start: Instant,
    marks: mpsc::UnboundedSender<Mark>,
    counters: Arc<Counters>,
) -> NodeLogs {
    let mut options = MqttOptions::new(format!("bench-{}-{connection}", shape.site), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(1000);
    options.set_max_packet_size(64 * 1024, 64 * 1024);
    // A small request queue: a mark's time is when its publish was queued, so a long client-side
    // queue would hide latency in the publisher.
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let acked = Arc::new(AtomicU64::new(0));
    let acked_by_poller = Arc::clone(&acked);
    let finished = Arc::new(AtomicBool::new(false));
    let quiet = Arc::clone(&finished);
    let all_acked = Arc::clone(&counters);
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked_by_poller.fetch_add(1, Ordering::Relaxed);
                    all_acked.acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    if !quiet.load(Ordering::Relaxed) {
                        eprintln!("publisher {connection}: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let mine: Vec<usize> = (connection..shape.nodes).step_by(shape.connections).collect();
    let topics: Vec<String> = mine
        .iter()
        .map(|n| format!("rackwatch/v1/{}/{}/telemetry", shape.site, node_name(*n)))
        .collect();
    let ids: Vec<NodeId> = mine
        .iter()
        .map(|n| NodeId::new(&node_name(*n)).unwrap())
        .collect();
    let channels: Vec<ChannelName> = (0..shape.readings)
        .map(|c| ChannelName::new(&format!("ch{c}")).unwrap())
        .collect();
    let mut logs: Vec<Vec<i64>> = vec![Vec::new(); mine.len()];
    let mut buf = vec![0u8; rackwatch_protocols::MAX_MESSAGE_LEN];
    let mut sent = 0u64;
    'rounds: for round in 0..shape.max_rounds {
        let seq = shape.seq_base + round;
        for (k, &node) in mine.iter().enumerate() {
            let due = match shape.interval {
                Some(interval) => {
                    // Nodes are spread evenly over the interval, as a real fleet's clocks are.
                    let offset = interval.mul_f64(node as f64 / shape.nodes as f64);
                    let due = interval.saturating_mul(round) + offset;
                    if due >= shape.duration {
                        break 'rounds;
                    }
                    tokio::time::sleep_until((start + due).into()).await;
                    Some(due)
                }
                None => {
                    if start.elapsed() >= shape.duration {
                        break 'rounds;
                    }
                    None
                }
            };
            if counters.stop.load(Ordering::Relaxed) {
                break 'rounds;
            }
            let ts = shape.ts_base.map_or_else(now_ms, |base| base + i64::from(seq));
            let mut readings = heapless::Vec::new();
            for (c, channel) in channels.iter().enumerate() {
                readings
                    .push(Reading::ok(
                        channel.clone(),
                        Quantity::Temperature,
                        shape.value(node, seq, c),
                        Unit::Celsius,
                    ))
                    .unwrap();
            }
            let telemetry = Telemetry {
                version: 1,
                node: ids[k].clone(),
                boot: 0xBE4C,
                seq,
                timestamp_ms: Some(ts as u64),
                uptime_ms: 1_000 + u64::from(seq) * 10,
                dropped: 0,
                readings,
            };
            let n = telemetry.encode(&mut buf).unwrap();
            client
                .publish(&topics[k], QoS::AtLeastOnce, false, buf[..n].to_vec())
                .await
                .unwrap();
            logs[k].push(ts);
            sent += 1;
            counters.published(start, due);
            if node < shape.marked {
                let _ = marks.send(Mark {
                    node,
                    ts,
                    at: Instant::now(),
                    first: round == 0,
                });
            }
        }
    }
    // Every publish acknowledged by the broker before the connection goes (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    finished.store(true, Ordering::Relaxed);
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    poller.abort();
    mine.into_iter().zip(logs).collect()
}

/// Starts the load: one task per publisher connection.
pub(crate) fn start_load(
    shape: &Arc<Shape>,
    port: u16,
    marks: &mpsc::UnboundedSender<Mark>,
    counters: &Arc<Counters>,
) -> (Instant, Vec<tokio::task::JoinHandle<NodeLogs>>) {
    let start = Instant::now();
    let tasks = (0..shape.connections)
        .map(|c| {
            tokio::spawn(publish_connection(
                Arc::clone(shape),
                c,
                port,
                start,
                marks.clone(),
                Arc::clone(counters),
            ))
        })
        .collect();
    (start, tasks)
}

pub(crate) async fn join_load(shape: &Shape, tasks: Vec<tokio::task::JoinHandle<NodeLogs>>) -> Vec<Vec<i64>> {
    let mut by_node = vec![Vec::new(); shape.nodes];
    for task in tasks {
        for (node, log) in task.await.unwrap() {
            by_node[node] = log;
        }
    }
    by_node
}
