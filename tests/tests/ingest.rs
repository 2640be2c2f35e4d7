//! The gateway's promise, checked on real servers: every reading published at QoS 1 is in the
//! database exactly once with its value, whatever fails in between (issue: gateway ingest).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::time::Duration;

use rackwatch_tests::fleet::{self, Load};
use rackwatch_tests::{Gateway, GatewaySettings, Mosquitto, VictoriaMetrics};
use rumqttc::{AsyncClient, MqttOptions, QoS};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");

fn settings(site: &str, broker: &Mosquitto, db: &VictoriaMetrics) -> GatewaySettings {
    let mut settings = GatewaySettings::new(site);
    settings.mqtt_url = Some(broker.url());
    settings.influx_url = Some(db.url());
    settings
}

fn load(site: &str, rounds: u32, interval_ms: u64) -> Load {
    Load {
        site: site.to_owned(),
        nodes: 8,
        readings_per_message: 10,
        rounds,
        interval: Duration::from_millis(interval_ms),
        unsynced_nodes: 0,
        client_id: format!("fleet-{site}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_reading_is_stored_once_with_its_value() {
    let broker = Mosquitto::start();
    let db = VictoriaMetrics::start();
    let gateway = Gateway::start(GATEWAY, &settings("plain", &broker, &db));
    let (ledger, publisher) = fleet::start(broker.port(), load("plain", 50, 20));
    publisher.await.unwrap();
    fleet::assert_exact(&db, &gateway, "plain", &ledger).await;
    assert_eq!(
        gateway.metric("rackwatch_points_written_total") as usize,
        8 * 50 * 10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_for_a_minute_under_load_loses_nothing() {
    let broker = Mosquitto::start();
    let mut db = VictoriaMetrics::start();
    let gateway = Gateway::start(GATEWAY, &settings("dbdown", &broker, &db));
    // 80 s of load: the database is away from second 5 to second 65.
    let (ledger, publisher) = fleet::start(broker.port(), load("dbdown", 400, 200));
    tokio::time::sleep(Duration::from_secs(5)).await;
    db.stop();
    let published_at_stop = ledger.len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        ledger.len() > published_at_stop + 1000,
        "the load kept running while the database was down"
    );
    assert!(
        gateway.metric("rackwatch_spool_pending_bytes") > 0.0,
        "readings wait in the spool"
    );
    db.restart();
    publisher.await.unwrap();
    fleet::assert_exact(&db, &gateway, "dbdown", &ledger).await;
    assert!(gateway.metric("rackwatch_write_failures_total{reason=\"connection\"}") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_under_load_and_restarted_loses_nothing() {
    let broker = Mosquitto::start();
    let db = VictoriaMetrics::start();
    let mut gateway = Gateway::start(GATEWAY, &settings("killed", &broker, &db));
    let mut shape = load("killed", 150, 40);
    // Two nodes without a synced clock: after the restart their redelivered messages must still be
    // recognised and dated as before, or they would be stored twice under different timestamps.
    shape.unsynced_nodes = 2;
    let (ledger, publisher) = fleet::start(broker.port(), shape);
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        gateway.kill();
        tokio::time::sleep(Duration::from_millis(700)).await;
        gateway.restart();
    }
    publisher.await.unwrap();
    fleet::assert_exact(&db, &gateway, "killed", &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarted_under_load_loses_nothing() {
    let mut broker = Mosquitto::start();
    let db = VictoriaMetrics::start();
    let gateway = Gateway::start(GATEWAY, &settings("brokerdown", &broker, &db));
    let (ledger, publisher) = fleet::start(broker.port(), load("brokerdown", 150, 40));
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.restart();
    publisher.await.unwrap();
    fleet::assert_exact(&db, &gateway, "brokerdown", &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_rejected_with_their_reason_while_good_traffic_flows() {
    let broker = Mosquitto::start();
    let db = VictoriaMetrics::start();
    let gateway = Gateway::start(GATEWAY, &settings("bad", &broker, &db));
    let (ledger, publisher) = fleet::start(broker.port(), load("bad", 60, 50));

    let (client, mut eventloop) =
        AsyncClient::new(MqttOptions::new("bad-actor", "127.0.0.1", broker.port()), 64);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let good = |node: &str, value: &str| {
        format!(
            r#"{{"node":"{node}","boot":1,"seq":0,"ts":{},"up":5,"readings":[{{"ch":"rh","q":"relative_humidity","val":{value},"unit":"%RH"}}]}}"#,
            rackwatch_tests::now_ms()
        )
    };
    let cases: Vec<(String, Vec<u8>)> = vec![
        (
            "rackwatch/v1/bad/x1/telemetry".into(),
            b"{\"node\":\"x1\",\"boot\":".to_vec(),
        ),
        ("rackwatch/v1/bad/x2/telemetry".into(), vec![b' '; 3000]),
        (
            "rackwatch/v1/bad/x3/telemetry".into(),
            good("someone-else", "50").into_bytes(),
        ),
        (
            "rackwatch/v1/bad/x4/telemetry".into(),
            good("x4", "180").into_bytes(),
        ),
        // `alerts` is reserved for the gateway's own topics: never a node.
        (
            "rackwatch/v1/bad/alerts/telemetry".into(),
            good("alerts", "50").into_bytes(),
        ),
    ];
    for (topic, payload) in &cases {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
    }
    publisher.await.unwrap();
    fleet::assert_exact(&db, &gateway, "bad", &ledger).await;

    let count = |reason: &str| {
        gateway.metric(&format!(
            "rackwatch_messages_rejected_total{{reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(count("malformed"), 1.0);
    assert_eq!(count("oversize"), 1.0);
    assert_eq!(count("node_mismatch"), 1.0);
    assert_eq!(count("wrong_topic"), 1.0);
    assert_eq!(
        gateway.metric("rackwatch_readings_rejected_total{reason=\"implausible\"}"),
        1.0
    );
    let letters = gateway.dead_letters();
    let reasons: Vec<&str> = letters.iter().filter_map(|l| l["reason"].as_str()).collect();
    for reason in [
        "malformed",
        "oversize",
        "node_mismatch",
        "wrong_topic",
        "reading_rejected",
    ] {
        assert!(
            reasons.contains(&reason),
            "{reason} missing from dead letters {reasons:?}"
        );
    }
    let mismatch = letters.iter().find(|l| l["reason"] == "node_mismatch").unwrap();
    assert_eq!(mismatch["topic"], "rackwatch/v1/bad/x3/telemetry");
    assert!(mismatch["payload"].as_str().unwrap().contains("someone-else"));
}
