//! A firmware rollout that reaches the QEMU board: QEMU keeps its flash read-only, so the release
//! firmware answers the update's first frame `unsupported` with its reason, and `rackwatch firmware
//! update` shows the node as not updatable and completes instead of failing or waiting for it.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::time::Duration;

use rackwatch_protocols::{Slot, Status};
use rackwatch_tests::qemu::{Qemu, build_node_image};
use rackwatch_tests::{Gateway, GatewaySettings, Mosquitto};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
/// The id the QEMU board takes from its MAC before it is provisioned.
const NODE: &str = "lm3s-525400123456";

/// The node's first birth.
async fn birth(port: u16) -> Option<Status> {
    let (client, mut events) = AsyncClient::new(MqttOptions::new("qemu-update-watch", "127.0.0.1", port), 64);
    client
        .subscribe(format!("rackwatch/v1/lab/{NODE}/status"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let found = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = events.poll().await
                && let Ok(status) = Status::decode(&p.payload)
                && status.state == rackwatch_protocols::NodeState::Online
            {
                return status;
            }
        }
    })
    .await
    .ok();
    let _ = client.disconnect().await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qemu_board_answers_unsupported_and_the_rollout_shows_it_not_updatable() {
    let image = build_node_image();
    let broker = Mosquitto::start();
    let mut settings = GatewaySettings::new("lab");
    settings.mqtt_url = Some(broker.url());
    settings.extra = format!("[nodes.{NODE}]\nroom = \"hall-a\"\nrow = \"r01\"\nrack = \"a01\"\n");
    let gateway = Gateway::start(GATEWAY, &settings);
    let qemu = Qemu::start(
        &image,
        &format!("broker=10.0.2.2:{} interval_ms=1000", broker.port()),
    );
    let Some(status) = birth(broker.port()).await else {
        panic!("no birth within 40 s\nfirmware console:\n{}", qemu.console())
    };
    assert_eq!(status.slot, None::<Slot>, "no A/B slots on this board");

    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("update.key");
    let file = work.path().join("node-9.0.0.rkfw");
    let firmware = work.path().join("node.bin");
    std::fs::write(&firmware, vec![0xA5u8; 8 * 1024]).unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(GATEWAY).args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    assert!(run(&["firmware", "keygen", "--out", key.to_str().unwrap()]).0);
    let (signed, said) = run(&[
        "firmware",
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--image",
        firmware.to_str().unwrap(),
        "--version",
        "9.0.0",
        "--board",
        "lm3s6965evb",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(signed, "{said}");
    let config = gateway.dir().join("rackwatch.toml");
    let (config, file) = (
        config.to_str().unwrap().to_owned(),
        file.to_str().unwrap().to_owned(),
    );
    let (done, said) = tokio::task::spawn_blocking(move || {
        run(&[
            "firmware",
            "update",
            "--config",
            &config,
            "--file",
            &file,
            "--select",
            &format!("node={NODE}"),
            "--max-failures",
            "0",
        ])
    })
    .await
    .unwrap();
    assert!(done, "{said}\nfirmware console:\n{}", qemu.console());
    assert!(
        said.contains(&format!(
            "{NODE}: not updatable: QEMU keeps this board's flash read-only"
        )),
        "{said}"
    );
    assert!(said.contains("rollout complete"), "{said}");
    assert!(
        qemu.console().contains("firmware update refused"),
        "{}",
        qemu.console()
    );
}
