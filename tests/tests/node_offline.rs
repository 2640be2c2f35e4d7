//! A node that dies without a word (its task ended like a pulled plug: the TCP connection closes
//! without an MQTT DISCONNECT): the broker publishes the node's last will, and the gateway writes
//! `node_status online=0` for its boot and raises `node_offline` for its rack.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rackwatch_firmware::host::{HostNodeConfig, SimRack, spawn_node};
use rackwatch_hardware::sim::{DataHall, HallConfig};
use rackwatch_tests::room::within;
use rackwatch_tests::{Gateway, GatewaySettings, InfluxDb, Mosquitto};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const DATABASE: &str = "rackwatch";
const NODE: &str = "r01-n1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_without_disconnect_goes_offline_and_raises_node_offline() {
    let broker = Mosquitto::start();
    let db = InfluxDb::start();
    db.execute(&format!("CREATE DATABASE \"{DATABASE}\"")).await;
    let mut settings = GatewaySettings::new("lab");
    settings.mqtt_url = Some(broker.url());
    settings.influx_url = Some(db.url());
    settings.influx_target = db.gateway_writer(DATABASE, "gateway").await;
    settings.extra = format!(
        "[nodes.{NODE}]\nroom = \"hall-a\"\nrow = \"r01\"\nrack = \"a01\"\n\
         [alerts]\n[[alerts.rules]]\nname = \"node_offline\"\nkind = \"node_offline\"\nfor = \"1s\"\nseverity = \"critical\"\n"
    );
    let gateway = Gateway::start(GATEWAY, &settings);

    let hall = Arc::new(Mutex::new(DataHall::new(&HallConfig {
        rows: 1,
        racks_per_row: 1,
        ..HallConfig::default()
    })));
    let config = HostNodeConfig::new("lab", NODE).unwrap().with_interval_ms(500);
    let broker_address = format!("127.0.0.1:{}", broker.port()).parse().unwrap();
    let node = spawn_node(config, SimRack::new(hall, 0), broker_address);
    let online = |value: i64| {
        let db = &db;
        async move {
            let rows = db
                .query(
                    DATABASE,
                    &format!(
                        "SELECT last(\"online\"), \"boot\" FROM \"node_status\" WHERE \"node\" = '{NODE}'"
                    ),
                )
                .await;
            rows[0]
                .first()
                .is_some_and(|s| s.values[0][1].as_i64() == Some(value))
        }
    };
    assert!(
        within(Duration::from_secs(20), || online(1)).await.is_some(),
        "the node's birth (online=1) is in the database"
    );
    let readings = db
        .query(
            DATABASE,
            &format!("SELECT count(\"value\") FROM \"reading\" WHERE \"node\" = '{NODE}'"),
        )
        .await;
    assert!(!readings[0].is_empty(), "the node's telemetry is in the database");
    let boot = node.status().boot();

    node.kill();
    assert!(
        within(Duration::from_secs(20), || online(0)).await.is_some(),
        "the last will (online=0) is in the database:\n{}",
        gateway.log()
    );
    let last = db
        .query(
            DATABASE,
            &format!("SELECT last(\"online\"), \"boot\" FROM \"node_status\" WHERE \"node\" = '{NODE}'"),
        )
        .await;
    assert_eq!(
        last[0][0].values[0][2].as_i64(),
        Some(i64::from(boot)),
        "the will of this boot"
    );
    assert!(
        broker
            .log()
            .contains(&format!("Client {NODE} closed its connection")),
        "the broker saw the connection drop without DISCONNECT:\n{}",
        broker.log()
    );

    let fired = within(Duration::from_secs(20), || async {
        let rows = db
            .query(
                DATABASE,
                "SELECT \"firing\", \"summary\" FROM \"alert\" WHERE \"rule\" = 'node_offline' AND \"state\" = 'firing' AND \"rack\" = 'a01'",
            )
            .await;
        rows[0].first().is_some_and(|s| s.values.iter().any(|row| row[1].as_i64() == Some(1)))
    })
    .await;
    assert!(fired.is_some(), "node_offline fired:\n{}", gateway.log());
    assert_eq!(gateway.metric("rackwatch_alerts_firing"), 1.0);
}
