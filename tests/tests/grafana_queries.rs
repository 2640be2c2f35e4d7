//! Every query of every Grafana dashboard (`grafana/*.json`: panels, template variables,
//! annotations) runs on a real InfluxDB 1.6 holding a demo room written by the gateway through the
//! v1 API, and returns a non-empty result named as the dashboard expects: the measurement it reads,
//! the aggregate it plots, the tags its legend names, the columns its annotations show.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rackwatch_protocols::{ChannelName, NodeId, Quantity, Reading, ReadingStatus, Status, Telemetry, Unit};
use rackwatch_tests::room::within;
use rackwatch_tests::{InfluxDb, Mosquitto, QuerySeries, free_port};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::Value;

const RACKWATCH: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const DATABASE: &str = "rackwatch";
/// The rack the demo's power trip breaks: it has alert transitions to annotate.
const TRIPPED_RACK: &str = "a05";
/// A node of the test's own that goes offline and reports a failed sensor.
const PROBE_NODE: &str = "grafana-probe";

/// `rackwatch demo` writing to the database; killed when dropped.
struct Demo {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Demo {
    fn printed(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|line| line.contains(text))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo at 30× speed, its power trip from 5 s in for 10 s, through `broker` into `db`.
async fn demo_room(broker: &Mosquitto, db: &InfluxDb, data_dir: &Path) -> Demo {
    db.execute(&format!("CREATE DATABASE \"{DATABASE}\"")).await;
    db.execute(&format!(
        "CREATE USER \"demo\" WITH PASSWORD 'demo-secret'; GRANT WRITE ON \"{DATABASE}\" TO \"demo\""
    ))
    .await;
    let mut child = Command::new(RACKWATCH)
        .args([
            "demo",
            "--http",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
        ])
        .arg(data_dir)
        .args(["--speed", "30", "--scenario", "psu-trip"])
        .args(["--scenario-start", "5s", "--scenario-duration", "10s"])
        .args(["--broker", &broker.url(), "--influx-url", &db.url()])
        .args(["--influx-database", DATABASE])
        .env("INFLUXDB_USERNAME", "demo")
        .env("INFLUXDB_PASSWORD", "demo-secret")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let collected = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("demo | {line}");
            collected.lock().unwrap().push(line);
        }
    });
    Demo { child, lines }
}

/// What the demo's hall does not do by itself: a node that reports a failed sensor and then goes
/// offline (its last will).
async fn probe_node_fails(broker: &Mosquitto) {
    let (client, mut eventloop) =
        AsyncClient::new(MqttOptions::new("grafana-probe", "127.0.0.1", broker.port()), 16);
    let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let node = NodeId::new(PROBE_NODE).unwrap();
    let mut readings = heapless::Vec::new();
    readings
        .push(Reading {
            channel: ChannelName::new("inlet_top").unwrap(),
            quantity: Quantity::Temperature,
            value: None,
            unit: Unit::Celsius,
            status: ReadingStatus::Fault,
        })
        .unwrap();
    let telemetry = Telemetry {
        version: 1,
        node: node.clone(),
        boot: 1,
        seq: 0,
        timestamp_ms: Some(rackwatch_tests::now_ms() as u64),
        uptime_ms: 5_000,
        dropped: 0,
        readings,
    };
    let mut buf = [0u8; rackwatch_protocols::MAX_MESSAGE_LEN];
    let n = telemetry.encode(&mut buf).unwrap();
    let topic = |kind: &str| format!("rackwatch/v1/demo/{PROBE_NODE}/{kind}");
    client
        .publish(topic("telemetry"), QoS::AtLeastOnce, false, buf[..n].to_vec())
        .await
        .unwrap();
    let n = Status::last_will(node, 1).encode(&mut buf).unwrap();
    client
        .publish(topic("status"), QoS::AtLeastOnce, true, buf[..n].to_vec())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    poller.abort();
}

/// A query with the dashboard's variables as Grafana substitutes them.
fn substitute(query: &str, variables: &[(&str, String)]) -> String {
    let mut query = query
        .replace("$timeFilter", "time > now() - 30m")
        .replace("$__interval", "10s");
    for (name, value) in variables {
        query = query
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    assert!(!query.contains('$'), "a variable left unsubstituted: {query}");
    query
}

/// `FROM "measurement"` of a query.
fn measurement(query: &str) -> &str {
    let rest = query
        .split("FROM \"")
        .nth(1)
        .unwrap_or_else(|| panic!("no FROM: {query}"));
    rest.split('"').next().unwrap()
}

/// The tags of `GROUP BY time(...), "a", "b"` or `GROUP BY "a", "b"`.
fn grouped_tags(query: &str) -> Vec<String> {
    let Some(group) = query.split("GROUP BY ").nth(1) else {
        return Vec::new();
    };
    group
        .split(',')
        .map(str::trim)
        .filter(|part| part.starts_with('"'))
        .map(|part| part.split('"').nth(1).unwrap().to_owned())
        .collect()
}

/// The aggregate a panel plots: `max` of `SELECT max("value")`.
fn aggregate(query: &str) -> &str {
    query.strip_prefix("SELECT ").unwrap().split('(').next().unwrap()
}

async fn run(db: &InfluxDb, query: &str) -> Vec<QuerySeries> {
    let mut statements = db.query(DATABASE, query).await;
    assert_eq!(statements.len(), 1, "{query}");
    statements.pop().unwrap()
}

/// Requires a non-empty, correctly named time series result.
fn check_panel(title: &str, query: &str, series: &[QuerySeries]) {
    assert!(!series.is_empty(), "panel {title:?}: no data for {query}");
    let function = aggregate(query);
    for s in series {
        assert_eq!(s.name, measurement(query), "panel {title:?}: {query}");
        assert_eq!(s.columns, ["time", function], "panel {title:?}: {query}");
        for tag in grouped_tags(query) {
            assert!(
                s.tags.contains_key(&tag),
                "panel {title:?}: series without tag {tag}: {s:?}"
            );
        }
    }
    let numbers = series
        .iter()
        .flat_map(|s| &s.values)
        .filter(|row| row[1].is_number())
        .count();
    assert!(numbers > 0, "panel {title:?}: only nulls for {query}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_named_data_from_a_demo_room() {
    let broker = Mosquitto::start();
    let db = InfluxDb::start();
    let data = tempfile::tempdir().unwrap();
    let demo = demo_room(&broker, &db, data.path()).await;
    let resolved = within(Duration::from_secs(90), || async {
        demo.printed("All alerts resolved")
    })
    .await;
    assert!(
        resolved.is_some(),
        "the demo's power trip did not resolve within 90 s"
    );
    probe_node_fails(&broker).await;
    // The probe's status and fault are written within a batch age.
    let written = within(Duration::from_secs(20), || async {
        let faults = run(&db, "SELECT count(\"count\") FROM \"sensor_fault\"").await;
        let offline = run(
            &db,
            "SELECT count(\"online\") FROM \"node_status\" WHERE \"online\" = 0",
        )
        .await;
        !faults.is_empty() && !offline.is_empty()
    })
    .await;
    assert!(
        written.is_some(),
        "the probe node's fault and last will are in the database"
    );

    let dashboards = ["rackwatch-room", "rackwatch-rack", "rackwatch-power"];
    let mut queries_run = 0;
    for name in dashboards {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../grafana/{name}.json"));
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();

        // Template variables, in order: each may use the ones before it.
        let mut variables: Vec<(&str, String)> = Vec::new();
        for variable in dashboard["templating"]["list"].as_array().unwrap() {
            let name = variable["name"].as_str().unwrap();
            let query = substitute(variable["query"].as_str().unwrap(), &variables);
            assert!(query.starts_with("SHOW TAG VALUES"), "{query}");
            let series = run(&db, &query).await;
            queries_run += 1;
            let values: Vec<&str> = series
                .iter()
                .flat_map(|s| &s.values)
                .map(|row| row[1].as_str().unwrap())
                .collect();
            assert_eq!(
                series.first().map(|s| s.columns.clone()),
                Some(vec!["key".into(), "value".into()])
            );
            let wanted = match name {
                "site" => "demo",
                "rack" => TRIPPED_RACK,
                other => panic!("{path:?}: unexpected variable {other}"),
            };
            assert!(values.contains(&wanted), "{name} values {values:?} lack {wanted}");
            variables.push((name, wanted.to_owned()));
        }

        for panel in dashboard["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap();
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "panel {title:?} has no query");
            for target in targets {
                assert_eq!(target["rawQuery"], true, "panel {title:?}");
                let query = substitute(target["query"].as_str().unwrap(), &variables);
                assert!(
                    query.starts_with("SELECT "),
                    "panel {title:?} is not InfluxQL: {query}"
                );
                let series = run(&db, &query).await;
                queries_run += 1;
                check_panel(title, &query, &series);
            }
        }

        for annotation in dashboard["annotations"]["list"].as_array().unwrap() {
            let title = annotation["name"].as_str().unwrap();
            let query = substitute(annotation["query"].as_str().unwrap(), &variables);
            let series = run(&db, &query).await;
            queries_run += 1;
            assert!(!series.is_empty(), "annotation {title:?}: no events for {query}");
            let columns = &series[0].columns;
            let text = annotation["textColumn"].as_str().unwrap();
            let tags = annotation["tagsColumn"].as_str().unwrap();
            for column in std::iter::once(text).chain(tags.split(',')) {
                assert!(
                    columns.iter().any(|c| c == column),
                    "annotation {title:?}: no column {column} in {columns:?}"
                );
            }
            let text_at = columns.iter().position(|c| c == text).unwrap();
            assert!(
                series[0].values.iter().all(|row| row[text_at].is_string()),
                "annotation {title:?}: {:?}",
                series[0].values
            );
        }
    }
    println!("{queries_run} dashboard queries answered");
    assert!(queries_run >= 20);
}
