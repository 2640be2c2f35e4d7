//! No configured secret is ever printed: the gateway runs at `RUST_LOG=trace` (its own and every
//! library's most verbose logging) through a full flow — MQTT login with a password, readings written
//! to the database with a token, an alert posted to Alertmanager with a bearer token, acknowledged and
//! a node commanded through the API with its token — and its whole output holds none of the four.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::time::Duration;

use rackwatch_tests::room::{INLET_HOT_RULE, Room, within};
use rackwatch_tests::{Alertmanager, Gateway, GatewaySettings, Mosquitto, VictoriaMetrics};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const SITE: &str = "secrets";
const KEY: &str = "inlet_hot.hall-a.r01.a01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_configured_secret_reaches_the_log_even_at_trace() {
    let broker = Mosquitto::start();
    let db = VictoriaMetrics::start();
    let manager = Alertmanager::start(Duration::from_secs(60));
    let room = Room::new(SITE, &[("r01", "a01")]);
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        ("mqtt-password", "mqtt-pw-7Hq2xZ91"),
        ("influx-token", "influx-tok-Kp3Vw8Ld"),
        ("api-token", "api-tok-Ry5Nc0Ts"),
        ("webhook-token", "hook-tok-Ux4Mb6Qe"),
    ];
    for (name, value) in secrets {
        std::fs::write(dir.path().join(name), value).unwrap();
    }
    let file = |name: &str| dir.path().join(name).display().to_string();
    let mut settings = GatewaySettings::new(SITE);
    settings.env = vec![("RUST_LOG".into(), "trace".into())];
    settings.http_extra = format!("token = {{ file = \"{}\" }}", file("api-token"));
    // Mosquitto here lets anyone in, so a password is sent and accepted without being checked.
    settings.extra = format!(
        r#"{inventory}
[mqtt]
url = "{mqtt}"
client_id = "secrets-test"
username = "gateway"
password = {{ file = "{mqtt_password}" }}

[influxdb]
url = "{influx}"
org = "rackwatch"
bucket = "rackwatch"
batch_max_age = "200ms"
token = {{ file = "{influx_token}" }}

{alerts}
[[alerts.webhooks]]
name = "alertmanager"
url = "{alertmanager}"
format = "alertmanager"
token = {{ file = "{webhook_token}" }}
"#,
        inventory = room.inventory(),
        alerts = INLET_HOT_RULE.replacen(
            "[alerts]\n",
            "[alerts]\nresend_interval = \"2s\"\nevaluation_interval = \"200ms\"\n",
            1
        ),
        mqtt = broker.url(),
        mqtt_password = file("mqtt-password"),
        influx = db.url(),
        influx_token = file("influx-token"),
        alertmanager = manager.alerts_url(),
        webhook_token = file("webhook-token"),
    );
    let mut gateway = Gateway::start(GATEWAY, &settings);
    let publisher = room.start(broker.port());
    room.set_hot("a01", true);

    let in_alertmanager = within(Duration::from_secs(30), || async {
        !manager.alerts_where("key", KEY).is_empty()
    })
    .await;
    assert!(in_alertmanager.is_some(), "{}", gateway.log());
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", gateway.http_port());
    let acked = http
        .post(format!("{base}/api/alerts/{KEY}/ack"))
        .bearer_auth(secrets[2].1)
        .json(&serde_json::json!({"by": "ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 204);
    let commanded = http
        .post(format!("{base}/api/nodes/n-a01/commands"))
        .bearer_auth(secrets[2].1)
        .json(&serde_json::json!({"action": "identify", "timeout": "1s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        commanded.status(),
        504,
        "the simulated room does not answer commands"
    );
    let written = within(Duration::from_secs(20), || async {
        gateway.metric("rackwatch_points_written_total") > 0.0
    })
    .await;
    assert!(
        written.is_some(),
        "nothing reached the database: {}",
        gateway.log()
    );
    // A few re-sends to Alertmanager, then a clean stop (shutdown logs too).
    tokio::time::sleep(Duration::from_secs(5)).await;
    publisher.abort();
    gateway.stop();

    let log = gateway.log();
    assert!(
        log.lines().filter(|l| l.contains("TRACE")).count() > 100,
        "the gateway did not log at trace: {} lines",
        log.lines().count()
    );
    // The libraries that carry the secrets logged at trace too: the MQTT client that sends the
    // password, the HTTP client that sends the tokens.
    for library in ["rumqttc", "hyper_util", "reqwest"] {
        assert!(log.contains(library), "nothing from {library} at trace");
    }
    for (name, value) in secrets {
        let shown: Vec<&str> = log.lines().filter(|l| l.contains(value)).take(3).collect();
        assert!(shown.is_empty(), "the {name} was printed:\n{}", shown.join("\n"));
    }
    eprintln!("secrets: {} log lines checked", log.lines().count());
}
