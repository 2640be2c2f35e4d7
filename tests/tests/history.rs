//! The gateway's own history as the spool's sink (no `[influxdb]`): the spool drains into it, a
//! rack's chart data is served per metric and range, it is the same after a restart, and the CSV
//! export carries it.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::time::Duration;

use rackwatch_tests::room::{INLET_HOT_RULE, Room, within};
use rackwatch_tests::{Gateway, GatewaySettings, Mosquitto, VictoriaMetrics};
use serde_json::Value;

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");

async fn get(gateway: &Gateway, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://127.0.0.1:{}{path}", gateway.http_port()))
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn history(gateway: &Gateway, rack: &str, metric: &str) -> Value {
    let (status, body) = get(
        gateway,
        &format!("/api/racks/hall-a.r01.{rack}/history?range=1h&metric={metric}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn means(history: &Value) -> Vec<f64> {
    history["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["mean"].as_f64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_database_the_spool_drains_into_a_history_that_survives_a_restart() {
    let broker = Mosquitto::start();
    let room = Room::new("hist", &[("r01", "a01"), ("r01", "a02")]);
    room.set_hot("a02", true);
    let mut settings = GatewaySettings::new("hist");
    settings.mqtt_url = Some(broker.url());
    settings.extra = room.inventory();
    let mut gateway = Gateway::start(GATEWAY, &settings);
    let publisher = room.start(broker.port());

    // Readings reach the history: the hot rack's inlet mean is 36 °C (probes 36.5, 36, 35.5), the
    // cool one's 22 °C, the hot rack's outlet 48 °C.
    let recorded = within(Duration::from_secs(20), || async {
        let hot = history(&gateway, "a02", "inlet").await;
        let cool = history(&gateway, "a01", "inlet").await;
        hot["points"].as_array().is_some_and(|p| !p.is_empty())
            && cool["points"].as_array().is_some_and(|p| !p.is_empty())
    })
    .await;
    assert!(
        recorded.is_some(),
        "no history points within 20 s:\n{}",
        gateway.log()
    );
    publisher.abort();
    for mean in means(&history(&gateway, "a02", "inlet").await) {
        assert!((mean - 36.0).abs() < 1e-6, "hot inlet mean {mean}");
    }
    for mean in means(&history(&gateway, "a01", "inlet").await) {
        assert!((mean - 22.0).abs() < 1e-6, "cool inlet mean {mean}");
    }
    let outlet = history(&gateway, "a02", "outlet").await;
    assert_eq!(outlet["unit"], "C");
    assert_eq!(outlet["resolution"], "1m");
    for point in outlet["points"].as_array().unwrap() {
        assert_eq!(point["max"].as_f64().unwrap(), 48.0, "{point}");
    }
    assert!(gateway.metric("rackwatch_history_samples_recorded_total") > 0.0);
    // Nothing waits in the spool once the drain has caught up.
    let drained = within(Duration::from_secs(10), || async {
        gateway.metric("rackwatch_spool_pending_bytes") == 0.0
    })
    .await;
    assert!(drained.is_some(), "the spool did not drain into the history");

    // A restart keeps every point, value for value (once the last messages sent are in).
    let mut before = history(&gateway, "a02", "inlet").await["points"].clone();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = history(&gateway, "a02", "inlet").await["points"].clone();
        if now == before {
            break;
        }
        before = now;
    }
    gateway.stop();
    gateway.restart();
    let after = history(&gateway, "a02", "inlet").await["points"].clone();
    assert_eq!(before, after, "the rack's last hour after a restart");

    // The CSV export carries each metric with its unit.
    let (status, csv) = get(&gateway, "/api/export.csv?rack=hall-a.r01.a02&range=24h").await;
    assert_eq!(status, 200, "{csv}");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time,metric,unit,min,mean,max,count"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(
        rows.iter()
            .any(|r| r[1] == "inlet" && r[2] == "C" && r[4] == "36"),
        "{csv}"
    );
    assert!(rows.iter().any(|r| r[1] == "outlet" && r[5] == "48"), "{csv}");

    // A range or metric the API does not know is refused, naming the known ones.
    let (status, body) = get(&gateway, "/api/racks/hall-a.r01.a02/history?range=2w").await;
    assert_eq!(status, 400);
    assert!(body.contains("1h, 24h, 7d, 30d"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beside_a_database_the_history_is_fed_from_the_same_readings() {
    let broker = Mosquitto::start();
    let database = VictoriaMetrics::start();
    let room = Room::new("beside", &[("r01", "a01"), ("r01", "a02")]);
    room.set_hot("a02", true);
    let mut settings = GatewaySettings::new("beside");
    settings.mqtt_url = Some(broker.url());
    settings.influx_url = Some(database.url());
    settings.extra = room.inventory();
    let gateway = Gateway::start(GATEWAY, &settings);
    let publisher = room.start(broker.port());

    // The database gets the points from the spool, and the history gets the same readings.
    let recorded = within(Duration::from_secs(20), || async {
        gateway.metric("rackwatch_points_written_total") > 0.0
            && history(&gateway, "a02", "inlet").await["points"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
    })
    .await;
    assert!(
        recorded.is_some(),
        "no history beside the database within 20 s:\n{}",
        gateway.log()
    );
    publisher.abort();
    for mean in means(&history(&gateway, "a02", "inlet").await) {
        assert!((mean - 36.0).abs() < 1e-6, "hot inlet mean {mean}");
    }
    for point in history(&gateway, "a02", "outlet").await["points"]
        .as_array()
        .unwrap()
    {
        assert_eq!(point["max"].as_f64().unwrap(), 48.0, "{point}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_history_file_is_moved_aside_while_ingest_and_alerts_go_on() {
    let broker = Mosquitto::start();
    let data = tempfile::tempdir().unwrap();
    let spool = data.path().join("spool");
    // A history file that is no database: a disk fault, a copy cut short.
    std::fs::create_dir_all(spool.join("history")).unwrap();
    std::fs::write(spool.join("history/history.redb"), vec![0xa5u8; 64 * 1024]).unwrap();
    let room = Room::new("corrupt", &[("r01", "a01"), ("r01", "a02")]);
    room.set_hot("a02", true);
    let mut settings = GatewaySettings::new("corrupt");
    settings.mqtt_url = Some(broker.url());
    settings.spool_dir = Some(spool.clone());
    settings.extra = format!("{}\n{INLET_HOT_RULE}", room.inventory());
    let gateway = Gateway::start(GATEWAY, &settings);
    let publisher = room.start(broker.port());

    // Alerts go on: the hot rack's alert fires.
    let fired = within(Duration::from_secs(20), || async {
        let (status, body) = get(&gateway, "/api/alerts").await;
        status == 200 && body.contains("\"firing\"")
    })
    .await;
    assert!(
        fired.is_some(),
        "the hot rack's alert never fired:\n{}",
        gateway.log()
    );
    // Ingest goes on: messages keep being acknowledged.
    let acknowledged = gateway.metric("rackwatch_messages_acknowledged_total");
    let more = within(Duration::from_secs(5), || async {
        gateway.metric("rackwatch_messages_acknowledged_total") > acknowledged
    })
    .await;
    assert!(more.is_some(), "ingest stopped");
    // The bad file was moved aside, and a fresh store took the readings.
    let moved: Vec<String> = std::fs::read_dir(spool.join("history"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("history.redb.corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    let recorded = within(Duration::from_secs(10), || async {
        history(&gateway, "a02", "inlet").await["points"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    })
    .await;
    assert!(
        recorded.is_some(),
        "no fresh history after the corrupt file:\n{}",
        gateway.log()
    );
    publisher.abort();
}
