//! The CPU cost of one reading through decode + normalise + derive + line-protocol encoding, the
//! work the ingest thread does per reading before the spool (target: well under the 2 µs per
//! reading the whole gateway may spend). `cargo bench -p rackwatch-gateway --bench ingest`.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "benchmark setup"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rackwatch_gateway::config::Config;
use rackwatch_gateway::decode::{Decoded, decode_mqtt};
use rackwatch_gateway::derive::Derive;
use rackwatch_gateway::inventory::Inventory;
use rackwatch_gateway::normalise::{Normaliser, Output};
use rackwatch_protocols::{ChannelName, NodeId, Quantity, Reading, Telemetry, Unit};

const NODES: u32 = 40;
const READINGS: usize = 10;

fn payloads() -> Vec<(String, Vec<u8>)> {
    (0..NODES)
        .map(|n| {
            let node = format!("n{n:03}");
            let mut readings = heapless::Vec::new();
            for c in 0..READINGS {
                let channel = ChannelName::new(&format!("inlet{c}")).unwrap();
                readings
                    .push(Reading::ok(
                        channel,
                        Quantity::Temperature,
                        21.0 + c as f64 * 0.125,
                        Unit::Celsius,
                    ))
                    .unwrap();
            }
            let t = Telemetry {
                version: 1,
                node: NodeId::new(&node).unwrap(),
                boot: 1,
                seq: 0,
                timestamp_ms: Some(1_795_000_000_000),
                uptime_ms: 1000,
                dropped: 0,
                readings,
            };
            let mut buf = vec![0u8; 2048];
            let len = t.encode(&mut buf).unwrap();
            buf.truncate(len);
            (format!("rackwatch/v1/fra1/{node}/telemetry"), buf)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let config = Config::parse(
        "site = \"fra1\"\n[mqtt]\nurl = \"mqtt://127.0.0.1\"\n[spool]\ndir = \"/tmp/unused\"\n",
    )
    .unwrap();
    let mut normaliser = Normaliser::new(
        config.site.clone(),
        Inventory::from_config(&config),
        config.normalise.clone(),
    );
    let mut derive = Derive::new(config.site.clone());
    let messages = payloads();
    let mut out = Output::default();
    let mut seq = 0u32;
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(READINGS as u64));
    group.bench_function("decode_normalise_encode_per_message_of_10_readings", |b| {
        let mut i = 0;
        b.iter(|| {
            let (topic, payload) = &messages[i % messages.len()];
            i += 1;
            if i % messages.len() == 0 {
                seq += 1;
            }
            let Ok(Decoded::Telemetry(mut t)) = decode_mqtt("fra1", topic, payload) else {
                unreachable!()
            };
            // A new sequence number per round, so dedup accepts every message.
            t.seq = seq;
            out.clear();
            let verdict = normaliser.telemetry(&t, 1_795_000_000_005, &mut out);
            let derived = derive.derive(&mut out.samples, &mut out.lines);
            black_box((verdict, derived, out.lines.len()));
        });
    });
    group.bench_function("decode_only", |b| {
        let (topic, payload) = &messages[0];
        b.iter(|| black_box(decode_mqtt("fra1", topic, payload).is_ok()));
    });
    group.bench_function("decode_only_serde_json", |b| {
        let (_, payload) = &messages[0];
        b.iter(|| black_box(serde_json::from_slice::<Telemetry>(payload).is_ok()));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
