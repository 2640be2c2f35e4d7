//! `rackwatch node command` against the release firmware in QEMU, through the real gateway and a real
//! Mosquitto: the command line asks the gateway (`POST /api/nodes/{id}/commands`), the gateway sends
//! the command over its MQTT connection and waits for the node's ack; `identify` and `set-interval`
//! are acked, and the telemetry after the ack comes at the new interval.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::time::{Duration, Instant};

use rackwatch_protocols::Telemetry;
use rackwatch_tests::qemu::{Qemu, build_node_image};
use rackwatch_tests::{Gateway, GatewaySettings, Mosquitto};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const TOKEN: &str = "node-command-token";
const FIRST_INTERVAL_MS: u64 = 1_000;
const NEW_INTERVAL_MS: u64 = 3_000;

/// Every telemetry the node publishes, decoded.
async fn telemetry(broker: &Mosquitto) -> mpsc::UnboundedReceiver<Telemetry> {
    let (client, mut eventloop) = AsyncClient::new(
        MqttOptions::new("command-test-watch", "127.0.0.1", broker.port()),
        64,
    );
    client
        .subscribe("rackwatch/v1/lab/+/telemetry", QoS::AtLeastOnce)
        .await
        .unwrap();
    while !matches!(
        eventloop.poll().await.unwrap(),
        Event::Incoming(Packet::SubAck(_))
    ) {}
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = tx.send(Telemetry::decode(&p.payload).unwrap());
            }
        }
    });
    rx
}

/// Runs `rackwatch node command --node NODE ... ACTION...`; returns (success, stdout, stderr).
async fn node_command(
    gateway: &Gateway,
    token_file: &std::path::Path,
    node: &str,
    action: &[&str],
) -> (bool, String, String) {
    let output = tokio::process::Command::new(GATEWAY)
        .args(["node", "command", "--node", node])
        .arg("--gateway")
        .arg(format!("http://127.0.0.1:{}", gateway.http_port()))
        .arg("--token-file")
        .arg(token_file)
        .args(action)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_command_identify_and_set_interval_are_acked_and_the_interval_changes() {
    let started = Instant::now();
    let image = build_node_image();
    let broker = Mosquitto::start();
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let mut settings = GatewaySettings::new("lab");
    settings.mqtt_url = Some(broker.url());
    settings.http_extra = format!("token = {{ file = \"{}\" }}", token_file.display());
    let gateway = Gateway::start(GATEWAY, &settings);
    let mut readings = telemetry(&broker).await;
    let qemu = Qemu::start(
        &image,
        &format!(
            "broker=10.0.2.2:{} interval_ms={FIRST_INTERVAL_MS}",
            broker.port()
        ),
    );
    let fail = |what: &str| -> ! {
        panic!(
            "{what}\nfirmware console:\n{}\ngateway log:\n{}",
            qemu.console(),
            gateway.log()
        )
    };
    let Ok(Some(first)) = tokio::time::timeout(Duration::from_secs(30), readings.recv()).await else {
        fail("no telemetry within 30 s of boot")
    };
    let node = first.node.to_string();

    // identify: acked.
    let (ok, out, err) = node_command(&gateway, &token_file, &node, &["identify", "--seconds", "5"]).await;
    if !ok {
        fail(&format!("identify failed: {out}{err}"));
    }
    assert!(out.contains(&format!("node {node}: identify acked ok")), "{out}");

    // set-interval: acked, and the node then samples at the new interval.
    let (ok, out, err) = node_command(&gateway, &token_file, &node, &["set-interval", "3s"]).await;
    if !ok {
        fail(&format!("set-interval failed: {out}{err}"));
    }
    assert!(out.contains("set-interval acked ok"), "{out}");
    while readings.try_recv().is_ok() {}
    let mut after = Vec::new();
    while after.len() < 3 {
        let Ok(Some(telemetry)) = tokio::time::timeout(Duration::from_secs(10), readings.recv()).await else {
            fail(&format!(
                "only {} readings within 10 s after set-interval",
                after.len()
            ))
        };
        after.push((telemetry.uptime_ms, Instant::now()));
    }
    for pair in after.windows(2) {
        let sampled = pair[1].0 - pair[0].0;
        let arrived = pair[1].1 - pair[0].1;
        assert!(
            (NEW_INTERVAL_MS - 300..=NEW_INTERVAL_MS + 300).contains(&sampled),
            "sampled {sampled} ms apart after set-interval 3s: {after:?}"
        );
        assert!(
            arrived >= Duration::from_millis(NEW_INTERVAL_MS - 700),
            "arrived {arrived:?} apart after set-interval 3s"
        );
    }

    // A node that is not there: the command line says so and fails.
    let (ok, _, err) = node_command(&gateway, &token_file, "r99-n9", &["--timeout", "2s", "identify"]).await;
    assert!(!ok);
    assert!(
        err.contains("504") && err.contains("did not acknowledge"),
        "{err}"
    );
    eprintln!("node command e2e: {:?}", started.elapsed());
}
