//! The release firmware in QEMU against a real Mosquitto: telemetry with the emulated sensors' values,
//! a temperature change made over QMP, a fan command and its ack, and a 30-second broker outage after
//! which every reading sampled meanwhile arrives, in order, once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rackwatch_protocols::{Ack, AckResult, Quantity, ReadingStatus, Telemetry};
use rackwatch_tests::Mosquitto;
use rackwatch_tests::qemu::{Qemu, build_node_image};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

const INTERVAL_MS: u64 = 1_000;
const TMP105: usize = 0;
const ADM1272: usize = 1;

/// A message the subscriber received, with when.
#[derive(Debug)]
struct Received {
    topic: String,
    payload: Vec<u8>,
    at: Instant,
}

/// A persistent-session subscriber (the broker keeps its messages across the restart) that forwards
/// every telemetry and ack to a channel and reconnects by itself.
async fn subscribe(broker: &Mosquitto) -> (AsyncClient, mpsc::UnboundedReceiver<Received>) {
    let mut options = MqttOptions::new("firmware-e2e", "127.0.0.1", broker.port());
    options.set_clean_session(false);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client
        .subscribe("rackwatch/v1/lab/+/telemetry", QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .subscribe("rackwatch/v1/lab/+/cmd/ack", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut subacks = 0;
    while subacks < 2 {
        if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await.unwrap() {
            subacks += 1;
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(Received {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                        at: Instant::now(),
                    });
                }
                Ok(_) => {}
                // The broker is down: try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    (client, rx)
}

/// Every telemetry received, by seq, and the order of arrival.
#[derive(Default)]
struct Log {
    by_seq: BTreeMap<u32, Vec<Telemetry>>,
}

impl Log {
    fn add(&mut self, telemetry: &Telemetry) {
        self.by_seq
            .entry(telemetry.seq)
            .or_default()
            .push(telemetry.clone());
    }
}

/// The next telemetry (logging it), or the next ack, within `timeout`.
async fn next(
    rx: &mut mpsc::UnboundedReceiver<Received>,
    log: &mut Log,
    timeout: Duration,
) -> Option<Received> {
    let received = tokio::time::timeout(timeout, rx.recv()).await.ok()??;
    if received.topic.ends_with("/telemetry") {
        log.add(&Telemetry::decode(&received.payload).unwrap());
    }
    Some(received)
}

/// Waits up to `timeout` for a telemetry that satisfies `wanted`.
async fn telemetry_where(
    rx: &mut mpsc::UnboundedReceiver<Received>,
    log: &mut Log,
    timeout: Duration,
    wanted: impl Fn(&Telemetry) -> bool,
) -> Option<(Telemetry, Instant)> {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let received = next(rx, log, left).await?;
        if received.topic.ends_with("/telemetry") {
            let telemetry = Telemetry::decode(&received.payload).unwrap();
            if wanted(&telemetry) {
                return Some((telemetry, received.at));
            }
        }
    }
    None
}

fn value(telemetry: &Telemetry, channel: &str, quantity: Quantity) -> Option<f64> {
    telemetry
        .readings
        .iter()
        .find(|r| r.channel.as_str() == channel && r.quantity == quantity)
        .and_then(|r| r.value.filter(|_| r.status == ReadingStatus::Ok))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_in_qemu_publishes_obeys_commands_and_forwards_its_backlog_after_an_outage() {
    let started = Instant::now();
    let image = build_node_image();
    let built = started.elapsed();

    let mut broker = Mosquitto::start();
    let (client, mut rx) = subscribe(&broker).await;
    let qemu = Qemu::start(
        &image,
        &format!("broker=10.0.2.2:{} interval_ms={INTERVAL_MS}", broker.port()),
    );
    let fail = |what: &str| -> ! { panic!("{what}; firmware console:\n{}", qemu.console()) };
    let mut log = Log::default();

    // 1. Telemetry with the emulated temperature and power.
    let Some((first, _)) = telemetry_where(&mut rx, &mut log, Duration::from_secs(30), |_| true).await else {
        fail("no telemetry within 30 s of boot")
    };
    let node = first.node.clone();
    let temperature_c = qemu.device_property(TMP105, "temperature").as_f64().unwrap() / 1000.0;
    // QEMU's adm1272 properties are in milli-units, except `pin` in watts.
    let vin_v = qemu.device_property(ADM1272, "vin").as_f64().unwrap() / 1000.0;
    let pin_w = qemu.device_property(ADM1272, "pin").as_f64().unwrap();
    assert_eq!(
        value(&first, "inlet", Quantity::Temperature),
        Some(temperature_c),
        "{first:?}"
    );
    let power = value(&first, "psu_in", Quantity::Power).unwrap();
    assert!(
        (power - pin_w).abs() <= pin_w * 0.01 + 0.5,
        "power {power} W, QEMU {pin_w} W"
    );
    let voltage = value(&first, "psu_in", Quantity::Voltage).unwrap();
    assert!(
        (voltage - vin_v).abs() <= 0.05,
        "voltage {voltage} V, QEMU {vin_v} V"
    );

    // 2. A temperature set over QMP arrives within two sampling intervals.
    qemu.set_device_property(TMP105, "temperature", 31_250);
    let set_at = Instant::now();
    let Some((_, arrived)) = telemetry_where(&mut rx, &mut log, Duration::from_secs(10), |t| {
        value(t, "inlet", Quantity::Temperature) == Some(31.25)
    })
    .await
    else {
        fail("31.25 C never arrived")
    };
    let latency = arrived - set_at;
    assert!(
        latency <= Duration::from_millis(2 * INTERVAL_MS + 300),
        "the new temperature took {latency:?}"
    );

    // 3. A fan command is acked and the next telemetry shows the new duty.
    let command = r#"{"v":1,"id":4242,"action":"set_fan","fan":0,"duty_pct":80.0}"#;
    client
        .publish(
            format!("rackwatch/v1/lab/{node}/cmd"),
            QoS::AtLeastOnce,
            false,
            command,
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ack = loop {
        let Some(received) = next(
            &mut rx,
            &mut log,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await
        else {
            fail("no ack of the fan command")
        };
        if received.topic.ends_with("/cmd/ack") {
            break Ack::decode(&received.payload).unwrap();
        }
    };
    assert_eq!((ack.id, ack.result), (4242, AckResult::Ok), "{ack:?}");
    let Some(received) = next(&mut rx, &mut log, Duration::from_secs(5)).await else {
        fail("no telemetry after the ack")
    };
    let after_ack = Telemetry::decode(&received.payload).unwrap();
    assert_eq!(
        value(&after_ack, "fan0", Quantity::FanDuty),
        Some(80.0),
        "{after_ack:?}"
    );

    // 4. The broker goes away for 30 s; the node buffers and, once it is back, sends everything.
    while next(&mut rx, &mut log, Duration::from_millis(100))
        .await
        .is_some()
    {}
    let before_outage = *log.by_seq.keys().last().unwrap();
    broker.stop();
    tokio::time::sleep(Duration::from_secs(30)).await;
    broker.restart();
    // 30 s at 1 s: at least 29 readings were sampled while the broker was down.
    let wanted = before_outage + 35;
    if telemetry_where(&mut rx, &mut log, Duration::from_secs(45), |t| t.seq >= wanted)
        .await
        .is_none()
    {
        fail(&format!(
            "seq {wanted} never arrived after the restart (last seen {:?})",
            log.by_seq.keys().last()
        ));
    }
    while next(&mut rx, &mut log, Duration::from_millis(300))
        .await
        .is_some()
    {}

    let first_seq = first.seq;
    let last_seq = *log.by_seq.keys().last().unwrap();
    let missing: Vec<u32> = (first_seq..=last_seq)
        .filter(|s| !log.by_seq.contains_key(s))
        .collect();
    assert!(missing.is_empty(), "lost seq {missing:?}");
    let twice: Vec<u32> = log
        .by_seq
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(s, _)| *s)
        .collect();
    assert!(twice.is_empty(), "seq {twice:?} arrived twice");
    assert!(
        log.by_seq.values().all(|v| v[0].boot == first.boot),
        "the node rebooted"
    );
    // The outage's readings kept the uptime they were sampled at: one interval apart.
    let uptimes: Vec<u64> = (before_outage..=before_outage + 30)
        .map(|s| log.by_seq[&s][0].uptime_ms)
        .collect();
    for pair in uptimes.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (INTERVAL_MS / 2..=INTERVAL_MS * 2).contains(&gap),
            "uptimes {uptimes:?}"
        );
    }
    assert!(
        qemu.console().contains("mqtt: disconnected"),
        "{}",
        qemu.console()
    );
    eprintln!(
        "firmware e2e: image build {built:?}, whole test {:?}, seq {first_seq}..={last_seq}",
        started.elapsed()
    );
}
