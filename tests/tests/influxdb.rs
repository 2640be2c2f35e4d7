//! The gateway against a real InfluxDB 1.6 server (`influxd`, auth enabled) through the v1 write
//! API: every reading stored value by value, and each answer InfluxDB gives handled as
//! gateway/README.md ("Databases") says, read back with InfluxQL through `/query`.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::time::Duration;

use rackwatch_protocols::{ChannelName, NodeId, Quantity, Reading, Telemetry, Unit};
use rackwatch_tests::fleet::{self, Load};
use rackwatch_tests::room::within;
use rackwatch_tests::{Gateway, GatewaySettings, InfluxDb, InfluxDbConfig, Mosquitto};
use rumqttc::{AsyncClient, MqttOptions, QoS};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const DATABASE: &str = "rackwatch";
const DAY_MS: i64 = 24 * 3600 * 1000;

fn load(site: &str, rounds: u32, interval_ms: u64) -> Load {
    Load {
        site: site.to_owned(),
        nodes: 6,
        readings_per_message: 10,
        rounds,
        interval: Duration::from_millis(interval_ms),
        unsynced_nodes: 0,
        client_id: format!("fleet-{site}"),
    }
}

/// A server with the database created, and a gateway writing to it through `nginx`-less v1 API as
/// a user who may only write there.
async fn database() -> InfluxDb {
    database_with(InfluxDbConfig::default()).await
}

async fn database_with(config: InfluxDbConfig) -> InfluxDb {
    let db = InfluxDb::start_with(config);
    db.execute(&format!("CREATE DATABASE \"{DATABASE}\"")).await;
    db
}

fn settings(site: &str, broker: &Mosquitto, db: &InfluxDb, target: String) -> GatewaySettings {
    let mut settings = GatewaySettings::new(site);
    settings.mqtt_url = Some(broker.url());
    settings.influx_url = Some(db.url());
    settings.influx_target = target;
    settings
}

/// Fails with the numbers and the gateway's log tail unless the database holds exactly `ledger`.
async fn assert_exact(db: &InfluxDb, gateway: &Gateway, site: &str, ledger: &fleet::Ledger) {
    let published = ledger.snapshot();
    assert!(!published.is_empty());
    let comparison = db
        .settle_and_compare(DATABASE, site, &published, Duration::from_secs(60))
        .await;
    if !comparison.is_exact() {
        let log = gateway.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "published {}, stored {}, missing {} (first: {:?}), extra {}, wrong values {:?}\ngateway log tail:\n{}",
            comparison.published,
            comparison.stored,
            comparison.missing.len(),
            comparison.missing.first(),
            comparison.extra,
            comparison.wrong_value.first(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// Publishes `messages` telemetry messages of node `node`, two readings each, dated from `first_ms`
/// one second apart.
async fn publish_dated(broker: &Mosquitto, site: &str, node: &str, first_ms: i64, messages: u32) {
    let (client, mut eventloop) = AsyncClient::new(
        MqttOptions::new(format!("dated-{node}"), "127.0.0.1", broker.port()),
        64,
    );
    let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    for seq in 0..messages {
        let mut readings = heapless::Vec::new();
        for (channel, value) in [("inlet", 21.5), ("outlet", 33.25)] {
            let channel = ChannelName::new(channel).unwrap();
            readings
                .push(Reading::ok(channel, Quantity::Temperature, value, Unit::Celsius))
                .unwrap();
        }
        let telemetry = Telemetry {
            version: 1,
            node: NodeId::new(node).unwrap(),
            boot: 1,
            seq,
            timestamp_ms: Some((first_ms + i64::from(seq) * 1000) as u64),
            uptime_ms: 10_000 + u64::from(seq) * 1000,
            dropped: 0,
            readings,
        };
        let mut buf = [0u8; rackwatch_protocols::MAX_MESSAGE_LEN];
        let n = telemetry.encode(&mut buf).unwrap();
        client
            .publish(
                format!("rackwatch/v1/{site}/{node}/telemetry"),
                QoS::AtLeastOnce,
                false,
                buf[..n].to_vec(),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    poller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_is_stored_once_with_its_value_through_the_v1_api() {
    let broker = Mosquitto::start();
    let db = database().await;
    let target = db.gateway_writer(DATABASE, "gateway").await;
    let gateway = Gateway::start(GATEWAY, &settings("plain", &broker, &db, target));
    let (ledger, publisher) = fleet::start(broker.port(), load("plain", 40, 20));
    publisher.await.unwrap();
    assert_exact(&db, &gateway, "plain", &ledger).await;
    assert_eq!(
        gateway.metric("rackwatch_points_written_total") as usize,
        6 * 40 * 10
    );
    // The spot check a person would make: one value, by node, channel and time.
    let first = &ledger.snapshot()[0];
    let rows = db
        .query(
            DATABASE,
            &format!(
                "SELECT \"value\" FROM \"reading\" WHERE \"node\" = '{}' AND \"channel\" = '{}' AND time = {}ms",
                first.node,
                first.channel,
                first.timestamp_ms.unwrap()
            ),
        )
        .await;
    assert_eq!(rows[0][0].values[0][1].as_f64(), Some(first.value));
    assert!(
        !gateway.log().contains("gateway-secret"),
        "the password is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_halts_writing_says_why_and_loses_nothing() {
    let broker = Mosquitto::start();
    let db = database().await;
    let target = db.gateway_writer(DATABASE, "gateway").await;
    // The gateway's file holds another password than the server's.
    db.password_file("gateway", "not-the-password");
    let gateway = Gateway::start(GATEWAY, &settings("unauth", &broker, &db, target));
    let (ledger, publisher) = fleet::start(broker.port(), load("unauth", 30, 100));
    let refused = within(Duration::from_secs(20), || async {
        gateway.metric("rackwatch_write_failures_total{reason=\"unauthorized\"}") >= 3.0
    })
    .await;
    assert!(
        refused.is_some(),
        "401s counted as unauthorized:\n{}",
        gateway.metrics()
    );
    gateway.wait_for_readiness(503, "unauthorized", Duration::from_secs(5));
    let (_, body) = gateway.readiness();
    assert!(
        body.contains("database: down") && body.contains("authorization failed"),
        "{body}"
    );
    assert_eq!(gateway.metric("rackwatch_points_written_total"), 0.0);
    assert!(
        gateway.metric("rackwatch_spool_pending_bytes") > 0.0,
        "readings wait in the spool"
    );
    let said = gateway.log().matches("database refuses writes").count();
    assert_eq!(
        said,
        1,
        "logged once a minute, not per attempt:\n{}",
        gateway.log()
    );
    assert!(
        !gateway.log().contains("not-the-password"),
        "the password is never logged"
    );

    // The operator fixes the password: everything spooled meanwhile arrives, once.
    db.execute("SET PASSWORD FOR \"gateway\" = 'not-the-password'")
        .await;
    publisher.await.unwrap();
    assert_exact(&db, &gateway, "unauth", &ledger).await;
    gateway.wait_for_readiness(200, "database: up", Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_database_halts_writing_until_it_is_created() {
    let broker = Mosquitto::start();
    let db = InfluxDb::start();
    let password = db.password_file("admin", rackwatch_tests::INFLUXDB_ADMIN.1);
    let target = format!(
        "api = \"v1\"\ndatabase = \"{DATABASE}\"\nusername = \"admin\"\npassword = {{ file = \"{}\" }}",
        password.display()
    );
    let gateway = Gateway::start(GATEWAY, &settings("nodb", &broker, &db, target));
    let (ledger, publisher) = fleet::start(broker.port(), load("nodb", 30, 100));
    let refused = within(Duration::from_secs(20), || async {
        gateway.metric("rackwatch_write_failures_total{reason=\"database_not_found\"}") >= 2.0
    })
    .await;
    assert!(refused.is_some(), "404s counted:\n{}", gateway.metrics());
    gateway.wait_for_readiness(503, "database not found", Duration::from_secs(5));

    db.execute(&format!("CREATE DATABASE \"{DATABASE}\"")).await;
    publisher.await.unwrap();
    assert_exact(&db, &gateway, "nodb", &ledger).await;
    gateway.wait_for_readiness(200, "database: up", Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_type_conflict_dead_letters_only_the_lines_the_server_dropped() {
    let broker = Mosquitto::start();
    let db = database().await;
    // A month ago, someone wrote `reading.value` as an integer: InfluxDB 1.x fixes a field's type
    // per shard, so the gateway's float readings of that week conflict, and this week's do not.
    let month_ago = rackwatch_tests::now_ms() - 30 * DAY_MS;
    let status = reqwest::Client::new()
        .post(format!("{}/write?db={DATABASE}&precision=ms", db.url()))
        .basic_auth("admin", Some(rackwatch_tests::INFLUXDB_ADMIN.1))
        .body(format!(
            "reading,site=elsewhere,node=legacy,channel=x,quantity=temperature value=1i {}",
            month_ago - DAY_MS
        ))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);
    let target = db.gateway_writer(DATABASE, "gateway").await;
    let mut settings = settings("conflict", &broker, &db, target);
    settings.extra = "[normalise]\nmax_age = \"90d\"\n".to_owned();
    // Batches that mix both weeks.
    settings.batch_max_age = Duration::from_secs(1);
    let gateway = Gateway::start(GATEWAY, &settings);
    let (ledger, publisher) = fleet::start(broker.port(), load("conflict", 30, 50));
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish_dated(&broker, "conflict", "old-node", month_ago, 5).await;
    publisher.await.unwrap();
    assert_exact(&db, &gateway, "conflict", &ledger).await;

    let dropped = within(Duration::from_secs(20), || async {
        gateway.metric("rackwatch_points_dropped_by_database_total{reason=\"field_type_conflict\"}") >= 10.0
    })
    .await;
    assert!(dropped.is_some(), "{}", gateway.metrics());
    assert_eq!(
        gateway.metric("rackwatch_points_dropped_by_database_total{reason=\"field_type_conflict\"}"),
        10.0,
        "5 messages of 2 readings"
    );
    let letters = gateway.dead_letters();
    let lines: Vec<String> = letters
        .iter()
        .filter(|l| l["reason"] == "field_type_conflict")
        .flat_map(|l| {
            l["payload"]
                .as_str()
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(lines.len(), 10, "only the dropped lines: {lines:#?}");
    assert!(lines.iter().all(|l| l.contains("node=old-node")), "{lines:#?}");
    assert!(
        letters.iter().all(|l| l["reason"] != "write_refused"),
        "no batch dead-lettered whole: {letters:#?}"
    );
    assert_eq!(
        gateway.metric("rackwatch_points_written_total") as usize,
        ledger.len(),
        "each stored line counted once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_beyond_retention_are_counted_and_not_retried() {
    let broker = Mosquitto::start();
    let db = database().await;
    db.execute(&format!(
        "CREATE RETENTION POLICY \"hour\" ON \"{DATABASE}\" DURATION 1h REPLICATION 1 DEFAULT"
    ))
    .await;
    let target = db.gateway_writer(DATABASE, "gateway").await;
    let mut settings = settings("retention", &broker, &db, target);
    settings.extra = "[normalise]\nmax_age = \"7d\"\n".to_owned();
    let gateway = Gateway::start(GATEWAY, &settings);
    let (ledger, publisher) = fleet::start(broker.port(), load("retention", 30, 50));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Two days old: within what the gateway accepts, beyond what the database keeps.
    publish_dated(
        &broker,
        "retention",
        "late-node",
        rackwatch_tests::now_ms() - 2 * DAY_MS,
        4,
    )
    .await;
    publisher.await.unwrap();
    assert_exact(&db, &gateway, "retention", &ledger).await;
    let counted = within(Duration::from_secs(20), || async {
        gateway.metric("rackwatch_points_dropped_by_database_total{reason=\"beyond_retention\"}") >= 8.0
    })
    .await;
    assert!(counted.is_some(), "{}", gateway.metrics());
    // Not retried: the count stays and the spool drains.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        gateway.metric("rackwatch_points_dropped_by_database_total{reason=\"beyond_retention\"}"),
        8.0
    );
    assert_eq!(gateway.metric("rackwatch_spool_pending_bytes"), 0.0);
    assert_eq!(
        gateway.metric("rackwatch_points_written_total") as usize,
        ledger.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_the_server_finds_too_large_are_split_and_all_stored() {
    let broker = Mosquitto::start();
    // 3 KiB of gzip: a few hundred readings, where a second of this load is about a thousand.
    let db = database_with(InfluxDbConfig {
        max_body_size: Some(3 * 1024),
    })
    .await;
    let target = db.gateway_writer(DATABASE, "gateway").await;
    let mut settings = settings("split", &broker, &db, target);
    settings.batch_max_age = Duration::from_secs(1);
    let gateway = Gateway::start(GATEWAY, &settings);
    let (ledger, publisher) = fleet::start(broker.port(), load("split", 60, 50));
    publisher.await.unwrap();
    assert_exact(&db, &gateway, "split", &ledger).await;
    assert!(
        gateway.metric("rackwatch_write_failures_total{reason=\"too_large\"}") >= 1.0,
        "the server answered 413 at least once:\n{}",
        gateway.metrics()
    );
    assert_eq!(
        gateway.metric("rackwatch_points_written_total") as usize,
        ledger.len()
    );
    assert!(gateway.dead_letters().is_empty(), "{:?}", gateway.dead_letters());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_killed_and_restarted_under_load_loses_nothing() {
    let broker = Mosquitto::start();
    let mut db = database().await;
    let target = db.gateway_writer(DATABASE, "gateway").await;
    let gateway = Gateway::start(GATEWAY, &settings("dbkill", &broker, &db, target));
    let (ledger, publisher) = fleet::start(broker.port(), load("dbkill", 200, 40));
    tokio::time::sleep(Duration::from_secs(2)).await;
    db.kill();
    let at_kill = ledger.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        ledger.len() > at_kill,
        "the load went on while the database was away"
    );
    db.restart();
    publisher.await.unwrap();
    assert_exact(&db, &gateway, "dbkill", &ledger).await;
    assert!(gateway.metric("rackwatch_write_failures_total{reason=\"connection\"}") > 0.0);
}
