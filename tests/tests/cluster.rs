//! Two gateways sharing one site (gateway/CLUSTER.md): each serves one partition of the site's rows
//! through its own shared-subscription group and spool, both write to one database. One is killed
//! with SIGKILL under load and restarted, as its service manager would; every published reading is
//! then in the database exactly once, and each gateway saw exactly its own partition's readings.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::fmt::Write as _;
use std::time::Duration;

use rackwatch_tests::fleet::{self, Load};
use rackwatch_tests::{Gateway, GatewaySettings, Mosquitto, VictoriaMetrics};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const SITE: &str = "cluster";
const NODES: usize = 10;

/// Nodes 0-3 in row r01 (partition 0), 4-7 in row r02 (partition 1); 8 and 9 are not in the
/// inventory, so partition 0 serves them.
fn row_of(node: usize) -> Option<&'static str> {
    match node {
        0..4 => Some("r01"),
        4..8 => Some("r02"),
        _ => None,
    }
}

fn settings(partition: usize, broker: &Mosquitto, db: &VictoriaMetrics) -> GatewaySettings {
    let mut settings = GatewaySettings::new(SITE);
    settings.mqtt_url = Some(broker.url());
    settings.influx_url = Some(db.url());
    settings.client_id = format!("rackwatch-gw{partition}");
    for node in 0..NODES {
        if let Some(row) = row_of(node) {
            writeln!(
                settings.extra,
                "[nodes.{}]\nroom = \"hall\"\nrow = \"{row}\"\nrack = \"rack{node}\"",
                fleet::node_name(node)
            )
            .unwrap();
        }
    }
    writeln!(
        settings.extra,
        "[cluster]\npartition = {partition}\npartitions = [[\"r01\"], [\"r02\"]]"
    )
    .unwrap();
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_one_killed_under_load_store_every_reading_once() {
    let broker = Mosquitto::start();
    let db = VictoriaMetrics::start();
    let mut first = Gateway::start(GATEWAY, &settings(0, &broker, &db));
    let second = Gateway::start(GATEWAY, &settings(1, &broker, &db));
    let load = Load {
        site: SITE.to_owned(),
        nodes: NODES,
        readings_per_message: 10,
        rounds: 150,
        interval: Duration::from_millis(40),
        unsynced_nodes: 2,
        client_id: "fleet-cluster".to_owned(),
    };
    let (ledger, publisher) = fleet::start(broker.port(), load);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    first.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.restart();
    publisher.await.unwrap();

    let published = ledger.snapshot();
    let comparison = fleet::settle_and_compare(&db, SITE, &published, Duration::from_secs(90)).await;
    assert!(
        comparison.is_exact(),
        "published {}, stored {}, missing {} (first: {:?}), extra {}, wrong values {:?}\nfirst gateway:\n{}\nsecond gateway:\n{}",
        comparison.published,
        comparison.stored,
        comparison.missing.len(),
        comparison.missing.first(),
        comparison.extra,
        comparison.wrong_value.first(),
        first.log(),
        second.log()
    );

    // The second gateway ran throughout: it accepted exactly the readings of row r02's nodes, so no
    // reading of its partition went elsewhere and none of another partition came to it.
    let row_r02 = published
        .iter()
        .filter(|p| (4..8).any(|n| p.node == fleet::node_name(n)))
        .count();
    assert!(row_r02 > 0);
    assert_eq!(second.metric("rackwatch_readings_accepted_total"), row_r02 as f64);
    // The first gateway's wildcard brought it row r02's telemetry too, which it left alone.
    assert!(first.metric("rackwatch_messages_not_ours_total") > 0.0);
}
