//! A fleet firmware rollout end to end: host-built nodes (the same update state machine as a board,
//! file-backed slots) against a real Mosquitto and the real gateway, driven by `rackwatch firmware
//! update`. An update signed with the wrong key is refused by the canary and the rollout pauses
//! naming it; `resume --file` with the right file runs the canary and two batches, one node killed
//! mid-download comes back and finishes where it stopped, and every node reports the new version from
//! slot B, confirmed.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rackwatch_firmware::host::{HostNodeConfig, NodeHandle, SimRack, spawn_node};
use rackwatch_firmware::host_update::HostUpdates;
use rackwatch_firmware::ota::OtaConfig;
use rackwatch_hardware::sim::{DataHall, HallConfig};
use rackwatch_protocols::{NodeState, OtaResult, Slot, Status};
use rackwatch_tests::room::within;
use rackwatch_tests::{Gateway, GatewaySettings, Mosquitto};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const NODES: usize = 20;
/// Killed mid-download and started again (in the first batch after the canary).
const KILLED: usize = 3;
const IMAGE_LEN: usize = 200 * 1024;

fn rackwatch(args: &[&str]) -> Output {
    Command::new(GATEWAY).args(args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn public_key(path: &Path) -> ed25519_dalek::VerifyingKey {
    let hex = std::fs::read_to_string(path).unwrap();
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex.trim()[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    ed25519_dalek::VerifyingKey::from_bytes(&bytes.try_into().unwrap()).unwrap()
}

/// The newest retained birth of every node, read as a late subscriber would.
async fn births(port: u16) -> Vec<Status> {
    let mut options = MqttOptions::new("firmware-test-reader", "127.0.0.1", port);
    options.set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, mut events) = AsyncClient::new(options, 64);
    client
        .subscribe("rackwatch/v1/lab/+/status", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut found = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
            tokio::time::timeout(Duration::from_millis(300), events.poll()).await
            && let Ok(status) = Status::decode(&p.payload)
        {
            found.push(status);
        }
    }
    let _ = client.disconnect().await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_updates_in_stages_pauses_on_a_bad_signature_and_completes_after_resume() {
    let broker = Mosquitto::start();
    let mut settings = GatewaySettings::new("lab");
    settings.mqtt_url = Some(broker.url());
    for i in 0..NODES {
        settings.extra.push_str(&format!(
            "[nodes.n{i}]\nroom = \"hall-a\"\nrow = \"r01\"\nrack = \"a{i:02}\"\n"
        ));
    }
    let gateway = Gateway::start(GATEWAY, &settings);
    let config = gateway.dir().join("rackwatch.toml");
    let work = tempfile::tempdir().unwrap();

    // Keys and files, as an operator makes them.
    let key = work.path().join("update.key");
    let other_key = work.path().join("other.key");
    for path in [&key, &other_key] {
        let made = rackwatch(&["firmware", "keygen", "--out", path.to_str().unwrap()]);
        assert!(made.status.success(), "{}", text(&made));
    }
    let image = work.path().join("node.bin");
    std::fs::write(
        &image,
        (0..IMAGE_LEN).map(|i| (i * 7 % 256) as u8).collect::<Vec<u8>>(),
    )
    .unwrap();
    let sign = |key: &Path, out: &Path| {
        let signed = rackwatch(&[
            "firmware",
            "sign",
            "--key",
            key.to_str().unwrap(),
            "--image",
            image.to_str().unwrap(),
            "--version",
            "1.4.0",
            "--board",
            "host",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(signed.status.success(), "{}", text(&signed));
    };
    let good = work.path().join("node-1.4.0.rkfw");
    let bad = work.path().join("node-1.4.0-other-key.rkfw");
    sign(&key, &good);
    sign(&other_key, &bad);

    let hall = Arc::new(Mutex::new(DataHall::new(&HallConfig {
        rows: 1,
        racks_per_row: NODES,
        ..HallConfig::default()
    })));
    let broker_address = format!("127.0.0.1:{}", broker.port()).parse().unwrap();
    let verifying = public_key(&work.path().join("update.key.pub"));
    let host_node = |i: usize| {
        let config = HostNodeConfig::new("lab", &format!("n{i}"))
            .unwrap()
            .with_interval_ms(1_000)
            .with_updates(HostUpdates {
                dir: work.path().join(format!("n{i}")),
                key: verifying,
                ota: OtaConfig {
                    confirm_within_ms: 20_000,
                },
            });
        spawn_node(config, SimRack::new(Arc::clone(&hall), i), broker_address)
    };
    let mut nodes: Vec<NodeHandle> = (0..NODES).map(host_node).collect();
    let online = Instant::now();
    while !nodes.iter().all(|n| n.status().is_online()) {
        assert!(
            online.elapsed() < Duration::from_secs(20),
            "nodes did not connect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let config_arg = config.to_str().unwrap();
    let update = |file: &Path| {
        let file = file.to_str().unwrap().to_owned();
        let config_arg = config_arg.to_owned();
        tokio::task::spawn_blocking(move || {
            rackwatch(&[
                "firmware",
                "update",
                "--config",
                &config_arg,
                "--file",
                &file,
                "--select",
                "row=r01",
                "--canary",
                "1",
                "--batch",
                "50%",
                "--max-failures",
                "0",
            ])
        })
    };

    // The wrong key: the canary refuses at the header, the rollout pauses naming it.
    let refused = update(&bad).await.unwrap();
    let said = text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("n0") && said.contains("signature"), "{said}");
    let status = rackwatch(&["firmware", "status", "--config", config_arg]);
    let shown = text(&status);
    assert!(
        shown.contains("paused") && shown.contains("failures signature: 1"),
        "{shown}"
    );
    assert!(
        shown.contains("batch 1: n1: waiting"),
        "the batches never started: {shown}"
    );
    // The running gateway saw the refusal on `ota/ack` too: it is on its /metrics for the fleet.
    let counted = within(Duration::from_secs(5), || async {
        gateway.metric("rackwatch_firmware_update_failures_total{reason=\"signature\"}") == 1.0
    })
    .await;
    assert!(
        counted.is_some(),
        "the gateway did not count the refusal:\n{}",
        gateway.metrics()
    );
    let again = update(&good).await.unwrap();
    assert!(
        !again.status.success() && text(&again).contains("unfinished"),
        "a paused rollout blocks a new one: {}",
        text(&again)
    );

    // Resume with the right file: the canary starts over, then the batches.
    let started = Instant::now();
    let config_owned = config_arg.to_owned();
    let good_owned = good.to_str().unwrap().to_owned();
    let resuming = tokio::task::spawn_blocking(move || {
        rackwatch(&[
            "firmware",
            "resume",
            "--config",
            &config_owned,
            "--file",
            &good_owned,
        ])
    });
    // Pull the plug on one node once it holds part of the image, and power it up again.
    let state = work.path().join(format!("n{KILLED}")).join("boot.state");
    let mid_download = Instant::now();
    let kept_offset = loop {
        let kept = std::fs::read_to_string(&state).unwrap_or_default();
        if let Some(offset) = kept
            .lines()
            .find_map(|l| l.strip_prefix("progress "))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|offset| offset.parse::<u32>().ok())
            .filter(|offset| *offset >= 16 * 1024)
        {
            break offset;
        }
        assert!(
            mid_download.elapsed() < Duration::from_secs(60),
            "n{KILLED} never started its download"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    nodes.remove(KILLED).kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    nodes.insert(KILLED, host_node(KILLED));
    let resumed = resuming.await.unwrap();
    let took = started.elapsed();
    let said = text(&resumed);
    assert!(resumed.status.success(), "{said}\n{}", gateway.log());
    println!("{said}");
    println!("{NODES} nodes, {IMAGE_LEN}-byte image: {took:?}; n{KILLED} killed at byte {kept_offset}");
    assert!(
        said.contains(&format!("n{KILLED}: runs 1.4.0")),
        "the killed node finished: {said}"
    );
    let canary_done = said.find("n0: runs 1.4.0").unwrap();
    let batch_started = said.find("n1: sending").unwrap();
    assert!(canary_done < batch_started, "the canary confirmed first: {said}");

    let births = births(broker.port()).await;
    for i in 0..NODES {
        let node = format!("n{i}");
        let birth = births
            .iter()
            .rev()
            .find(|s| s.node.as_str() == node && s.state == NodeState::Online)
            .unwrap_or_else(|| panic!("no birth of {node}"));
        assert_eq!(
            (birth.firmware.as_deref(), birth.slot, birth.update),
            (Some("1.4.0"), Some(Slot::B), Some(OtaResult::Confirmed)),
            "{node}"
        );
    }
    // The gateway's API shows the same, from the births it ingested.
    let listed = within(Duration::from_secs(10), || async {
        let Some(body) = rackwatch_tests::http_get(gateway.http_port(), "/api/firmware") else {
            return false;
        };
        let nodes: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let updated = nodes.as_array().map_or(0, |nodes| {
            nodes
                .iter()
                .filter(|n| n["firmware"] == "1.4.0" && n["slot"] == "b" && n["ota"] == "confirmed")
                .count()
        });
        updated == NODES
    })
    .await;
    assert!(
        listed.is_some(),
        "GET /api/firmware lists every node on 1.4.0, slot b, confirmed"
    );
    let status = rackwatch(&["firmware", "status", "--config", config_arg]);
    assert!(text(&status).contains("complete"), "{}", text(&status));
    let aborted = rackwatch(&["firmware", "abort", "--config", config_arg]);
    assert!(
        aborted.status.success() && text(&aborted).contains("aborted; 0 node(s) told"),
        "{}",
        text(&aborted)
    );
    let status = rackwatch(&["firmware", "status", "--config", config_arg]);
    assert!(
        !status.status.success() && text(&status).contains("no rollout"),
        "{}",
        text(&status)
    );
    for node in nodes {
        node.stop().await;
    }
}
