//! `rackwatch broker-acl` output loaded into a real Mosquitto: the `$7$` hashes are accepted, and a
//! node that publishes under another node's id is refused (a subscriber that reads everything never
//! sees the message), while its own telemetry goes through.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::process::Command;
use std::time::Duration;

use rackwatch_tests::{Mosquitto, MosquittoConfig};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

async fn connect(port: u16, user: &str, password: &str) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(user, "127.0.0.1", port);
    options.set_credentials(user, password);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    match eventloop.poll().await.unwrap() {
        Event::Incoming(Packet::ConnAck(ack)) => assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    (client, eventloop)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_cannot_publish_under_another_nodes_id() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        "site = \"fra1\"\n[[node]]\nserial = \"S1\"\nnode = \"r01-n1\"\n[[node]]\nserial = \"S2\"\nnode = \"r01-n2\"\n",
    )
    .unwrap();
    let out = dir.path().join("broker");
    let output = Command::new(env!("CARGO_BIN_EXE_rackwatch-e2e"))
        .args(["broker-acl", "--inventory"])
        .arg(&inventory)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let secret = |name: &str| std::fs::read_to_string(out.join("secrets").join(name)).unwrap();
    for name in ["rackwatch-gateway", "r01-n1", "r01-n2"] {
        assert!(!stderr.contains(&secret(name)), "a secret was printed");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(out.join("secrets").join(name))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    let broker = Mosquitto::start_with(MosquittoConfig {
        password_file: Some(out.join("password_file")),
        acl_file: Some(out.join("acl_file")),
        ..MosquittoConfig::default()
    });
    let (gateway, mut gateway_events) =
        connect(broker.port(), "rackwatch-gateway", &secret("rackwatch-gateway")).await;
    gateway
        .subscribe("rackwatch/v1/+/+/telemetry", QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = gateway_events.poll().await.unwrap() {
            break;
        }
    }
    let (node, mut node_events) = connect(broker.port(), "r01-n1", &secret("r01-n1")).await;
    tokio::spawn(async move { while node_events.poll().await.is_ok() {} });
    node.publish(
        "rackwatch/v1/fra1/r01-n2/telemetry",
        QoS::AtLeastOnce,
        false,
        "forged",
    )
    .await
    .unwrap();
    node.publish(
        "rackwatch/v1/fra1/r01-n1/telemetry",
        QoS::AtLeastOnce,
        false,
        "own",
    )
    .await
    .unwrap();

    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = gateway_events.poll().await {
                received.push((p.topic.clone(), p.payload.to_vec()));
            }
        }
    })
    .await;
    assert_eq!(
        received,
        [("rackwatch/v1/fra1/r01-n1/telemetry".to_owned(), b"own".to_vec())]
    );
}
