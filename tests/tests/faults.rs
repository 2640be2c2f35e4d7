//! The faults a site actually meets, on real servers: an oversized message, a full disk, the spool
//! folder removed, SIGTERM while the disk fails, a burst of bad messages. After each, every reading
//! the broker got a PUBACK for is in the database exactly once, `/health/ready` named the failing
//! component while it failed, and `/metrics` stays valid for Prometheus (issue: faults lose nothing).
//!
//! While the spool refuses, readings still reach the alert engine and the dashboard (the lookout
//! session), so a rack running hot is not missed.
//!
//! The full-disk test puts the spool on a tmpfs of its own, which needs root (as CI runs); without
//! root it fails saying so.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::time::{Duration, Instant};

use rackwatch_tests::fleet::{self, Load};
use rackwatch_tests::room::{INLET_HOT_RULE, Room};
use rackwatch_tests::{
    Gateway, GatewaySettings, MESSAGE_SIZE_LIMIT, Mosquitto, Tmpfs, VictoriaMetrics, find_binary,
    http_response,
};
use rumqttc::{AsyncClient, MqttOptions, QoS};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");

fn settings(site: &str, broker: &Mosquitto, db: &VictoriaMetrics) -> GatewaySettings {
    let mut settings = GatewaySettings::new(site);
    settings.mqtt_url = Some(broker.url());
    settings.influx_url = Some(db.url());
    settings
}

fn load(site: &str, nodes: usize, rounds: u32, interval_ms: u64) -> Load {
    Load {
        site: site.to_owned(),
        nodes,
        readings_per_message: 10,
        rounds,
        interval: Duration::from_millis(interval_ms),
        unsynced_nodes: 0,
        client_id: format!("fleet-{site}"),
    }
}

/// A publisher of hand-made messages, with room for packets up to the broker's limit.
fn publisher(broker: &Mosquitto, id: &str) -> AsyncClient {
    let mut options = MqttOptions::new(id, "127.0.0.1", broker.port());
    options.set_max_packet_size(4 * MESSAGE_SIZE_LIMIT, 4 * MESSAGE_SIZE_LIMIT);
    options.set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
}

/// Polls `condition` every 100 ms for up to `timeout`; fails with `what`.
async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mebibyte_message_is_dead_lettered_and_never_stalls_ingest_even_after_a_restart() {
    let broker = Mosquitto::start();
    let db = VictoriaMetrics::start();
    let mut gateway = Gateway::start(GATEWAY, &settings("big", &broker, &db));
    // Two nodes, 12 s of readings; the big message comes in the middle, then the gateway restarts.
    let (ledger, fleet) = fleet::start(broker.port(), load("big", 2, 300, 40));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let big = vec![b'{'; MESSAGE_SIZE_LIMIT];
    publisher(&broker, "big-sender")
        .publish("rackwatch/v1/big/n000/telemetry", QoS::AtLeastOnce, false, big)
        .await
        .unwrap();
    wait_until("the big message is counted", Duration::from_secs(10), || {
        gateway.metric("rackwatch_messages_rejected_total{reason=\"oversize\"}") == 1.0
    })
    .await;
    let letter = gateway
        .dead_letters()
        .into_iter()
        .find(|l| l["reason"] == "oversize")
        .unwrap();
    assert_eq!(letter["payload_bytes"], MESSAGE_SIZE_LIMIT);
    let acknowledged = gateway.metric("rackwatch_messages_acknowledged_total");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        gateway.metric("rackwatch_messages_acknowledged_total") > acknowledged,
        "good messages keep flowing after the big one"
    );
    gateway.stop();
    gateway.restart();
    fleet.await.unwrap();
    fleet::assert_exact(&db, &gateway, "big", &ledger).await;
    assert_eq!(
        gateway.metric("rackwatch_messages_rejected_total{reason=\"oversize\"}"),
        0.0,
        "acknowledged once, never delivered again"
    );
    assert_eq!(
        gateway.metric("rackwatch_mqtt_connection_failures_total{reason=\"packet_too_large\"}"),
        0.0
    );
    gateway.wait_for_readiness(200, "mqtt: up", Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_full_spool_and_loses_nothing_once_the_database_returns() {
    let disk = Tmpfs::mount(6);
    let broker = Mosquitto::start();
    let mut db = VictoriaMetrics::start();
    db.stop();
    let mut settings = settings("diskfull", &broker, &db);
    settings.spool_dir = Some(disk.path().join("spool"));
    let mut gateway = Gateway::start(GATEWAY, &settings);
    // About 1.6 KB a message: 9,600 messages are more than twice the disk.
    let (ledger, fleet) = fleet::start(broker.port(), load("diskfull", 8, 1200, 10));
    wait_until("the spool reports the disk full", Duration::from_secs(60), || {
        gateway.metric("rackwatch_spool_full_total") >= 1.0
    })
    .await;
    gateway.wait_for_readiness(
        503,
        "spool: down: the disk under the spool is full",
        Duration::from_secs(5),
    );
    let acknowledged = gateway.metric("rackwatch_messages_acknowledged_total");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        gateway.metric("rackwatch_messages_acknowledged_total"),
        acknowledged,
        "nothing is acknowledged while the disk is full"
    );
    // SIGTERM with the disk full and the database away still ends the process in time.
    let stopping = gateway.stop_timed();
    assert!(stopping < Duration::from_secs(10), "SIGTERM took {stopping:?}");
    gateway.restart();
    gateway.wait_for_readiness(503, "database: down", Duration::from_secs(20));

    db.restart();
    fleet.await.unwrap();
    fleet::assert_exact(&db, &gateway, "diskfull", &ledger).await;
    wait_until(
        "the drained segments are deleted and the disk frees",
        Duration::from_secs(20),
        || disk.used_bytes() < 2 * 1024 * 1024,
    )
    .await;
    gateway.wait_for_readiness(200, "spool: up", Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_folder_removed_under_load_stops_acknowledging_and_loses_nothing() {
    let broker = Mosquitto::start();
    let db = VictoriaMetrics::start();
    let mut gateway = Gateway::start(GATEWAY, &settings("rmspool", &broker, &db));
    let spool = gateway.spool_dir().to_owned();
    let (ledger, fleet) = fleet::start(broker.port(), load("rmspool", 8, 400, 40));

    // Removed, and something else in its place, so the gateway cannot make it again at once.
    let take_away = |round: u32| loop {
        let gone = spool.with_extension(format!("removed-{round}"));
        std::fs::rename(&spool, &gone).unwrap();
        std::fs::remove_dir_all(&gone).unwrap();
        if std::fs::write(&spool, b"not the spool").is_ok() {
            return;
        }
        // The gateway made the folder again between the two steps: take it away again.
    };
    for round in 0..2 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        take_away(round);
        gateway.wait_for_readiness(503, "spool: down", Duration::from_secs(5));
        let acknowledged = gateway.metric("rackwatch_messages_acknowledged_total");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            gateway.metric("rackwatch_messages_acknowledged_total"),
            acknowledged,
            "no acknowledgement without a spool folder"
        );
        assert!(gateway.metric("rackwatch_spool_failures_total{reason=\"folder\"}") >= 1.0);
        if round == 0 {
            // The folder comes back: the gateway makes it again and resumes by itself.
            std::fs::remove_file(&spool).unwrap();
            gateway.wait_for_readiness(200, "spool: up", Duration::from_secs(5));
        } else {
            // SIGTERM while the spool cannot be written, then a restart once it can.
            let stopping = gateway.stop_timed();
            assert!(stopping < Duration::from_secs(10), "SIGTERM took {stopping:?}");
            std::fs::remove_file(&spool).unwrap();
            gateway.restart();
        }
    }
    fleet.await.unwrap();
    fleet::assert_exact(&db, &gateway, "rmspool", &ledger).await;
    gateway.wait_for_readiness(200, "spool: up", Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_bad_messages_keeps_the_dead_letters_under_their_cap_and_metrics_pass_promtool() {
    const BAD: usize = 100_000;
    let promtool = find_binary("promtool", "prometheus");
    let broker = Mosquitto::start();
    let db = VictoriaMetrics::start();
    let mut settings = settings("burst", &broker, &db);
    settings.spool_extra = "dead_letter_max_mb = 1\ndead_letter_rate = 20".into();
    let gateway = Gateway::start(GATEWAY, &settings);
    let client = publisher(&broker, "bad-actor");
    for i in 0..BAD {
        let payload = format!("{{\"node\":\"x1\",\"boot\":{i},");
        client
            .publish(
                "rackwatch/v1/burst/x1/telemetry",
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }
    wait_until("every bad message is counted", Duration::from_secs(120), || {
        gateway.metric("rackwatch_messages_rejected_total{reason=\"malformed\"}") == BAD as f64
    })
    .await;
    let size = |name: &str| std::fs::metadata(gateway.spool_dir().join(name)).map_or(0, |m| m.len());
    let on_disk = size("dead-letters.jsonl") + size("dead-letters.1.jsonl");
    assert!(on_disk <= 1024 * 1024, "{on_disk} bytes of dead letters");
    let written = gateway.dead_letters().len() as f64;
    let sampled = gateway.metric("rackwatch_dead_letters_sampled_total{reason=\"malformed\"}");
    assert!(sampled > 0.0 && written > 0.0);
    assert!(
        written + sampled >= BAD as f64 - 10_000.0,
        "rotated away at most what one file holds"
    );

    // A real scrape, as Prometheus asks for it, through promtool.
    let (status, head, body) = http_response(gateway.http_port(), "/metrics", &[]).unwrap();
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let mut check = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let output = check.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(body.contains("# TYPE rackwatch_messages_rejected_total counter"));
    let (_, head, body) = http_response(
        gateway.http_port(),
        "/metrics",
        &["Accept: application/openmetrics-text; version=1.0.0"],
    )
    .unwrap();
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_still_shows_a_hot_rack_to_alerts_and_the_dashboard() {
    let broker = Mosquitto::start();
    let mut db = VictoriaMetrics::start();
    db.stop();
    let room = Room::new("blind", &[("r01", "a01"), ("r01", "a02")]);
    let mut settings = settings("blind", &broker, &db);
    // 3 MB of which 1 for dead letters: the spool refuses after 2 MiB.
    settings.spool_extra = "max_mb = 3\nsegment_mb = 1\ndead_letter_max_mb = 1".into();
    settings.extra = format!("{}\n{INLET_HOT_RULE}", room.inventory());
    let gateway = Gateway::start(GATEWAY, &settings);
    let (ledger, fleet) = fleet::start(broker.port(), load("blind", 8, 300, 10));
    wait_until("the spool is full", Duration::from_secs(60), || {
        gateway.metric("rackwatch_spool_full_total") >= 1.0
    })
    .await;
    gateway.wait_for_readiness(503, "spool: down: spool is full", Duration::from_secs(5));

    // A rack runs hot while nothing can be spooled: its alert fires and the floor plan shows it.
    room.set_hot("a02", true);
    let readings = room.start(broker.port());
    wait_until("the hot rack's alert fires", Duration::from_secs(20), || {
        let alerts: serde_json::Value =
            serde_json::from_str(&rackwatch_tests::http_get(gateway.http_port(), "/api/alerts").unwrap())
                .unwrap();
        alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["state"] == "firing" && a["key"].as_str().is_some_and(|k| k.ends_with(".a02")))
    })
    .await;
    let room_view: serde_json::Value =
        serde_json::from_str(&rackwatch_tests::http_get(gateway.http_port(), "/api/room").unwrap()).unwrap();
    let hot = room_view["racks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rack"] == "a02")
        .unwrap();
    assert_eq!(hot["inlet_max"], 36.5, "{hot}");
    assert_eq!(
        gateway.metric("rackwatch_spool_full_total"),
        1.0,
        "the spool was full all along (one episode)"
    );
    gateway.wait_for_readiness(503, "spool: down", Duration::from_secs(1));
    readings.abort();

    // The database returns: every acknowledged reading of the fleet arrives once.
    db.restart();
    fleet.await.unwrap();
    fleet::assert_exact_nodes(&db, &gateway, "blind", "n[0-9]+", &ledger).await;
    gateway.wait_for_readiness(200, "spool: up", Duration::from_secs(20));
}
