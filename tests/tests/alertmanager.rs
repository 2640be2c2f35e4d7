//! The gateway against a real Prometheus Alertmanager (issue "Alerts that real alarm systems can rely
//! on"). Alertmanager ends an alert by itself once its `endsAt` passes, or `resolve_timeout` after
//! the last post when none was given; a client must keep re-sending what still fires. So: a rack that
//! stays hot stays active in Alertmanager for three `resolve_timeout`s and more, also after people
//! acknowledged and silenced it in rackwatch and across a SIGKILL of the gateway, and it resolves
//! within one re-send interval of the rack cooling.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::time::{Duration, Instant};

use rackwatch_tests::room::{INLET_HOT_RULE, Room};
use rackwatch_tests::{Alertmanager, Gateway, GatewaySettings, Mosquitto};
use serde_json::{Value, json};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const SITE: &str = "amtest";
const KEY: &str = "inlet_hot.hall-a.r01.a01";
const TOKEN: &str = "am-test-token";
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The gateway's `alerts.resend_interval`: well under `resolve_timeout`.
const RESEND: Duration = Duration::from_secs(2);

/// Our alert as Alertmanager holds it, if it holds it open.
fn open_alert(manager: &Alertmanager) -> Option<Value> {
    manager
        .alerts_where("site", SITE)
        .into_iter()
        .find(|a| a["labels"]["key"] == KEY)
}

/// Polls until `done` or `timeout`; fails with both logs.
async fn wait_for(
    what: &str,
    timeout: Duration,
    gateway: &Gateway,
    manager: &Alertmanager,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}\ngateway log:\n{}\nalertmanager log:\n{}",
            gateway.log(),
            manager.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

/// Watches for `span` that the alert stays open in Alertmanager, every 250 ms.
async fn stays_open(manager: &Alertmanager, span: Duration, during: &str) {
    let start = Instant::now();
    while start.elapsed() < span {
        assert!(
            open_alert(manager).is_some(),
            "the alert left Alertmanager {:?} into {during}; its log:\n{}",
            start.elapsed(),
            manager.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn post(port: u16, path: &str, body: Value) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        // RFC 7235: the scheme is case-insensitive; a lower-case one must work.
        .header("authorization", format!("bearer {TOKEN}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_rack_stays_active_in_alertmanager_until_it_cools_across_acks_and_a_gateway_crash() {
    let started = Instant::now();
    let broker = Mosquitto::start();
    let manager = Alertmanager::start(RESOLVE_TIMEOUT);
    let room = Room::new(SITE, &[("r01", "a01"), ("r01", "a02")]);
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let mut settings = GatewaySettings::new(SITE);
    settings.mqtt_url = Some(broker.url());
    settings.http_extra = format!(
        "token = {{ file = \"{}\" }}\npublic_url = \"https://rackwatch.example/\"",
        token_file.display()
    );
    settings.extra = format!(
        r#"{inventory}
{alerts}
[[alerts.webhooks]]
name = "alertmanager"
url = "{url}"
format = "alertmanager"
max_backoff = "1s"
"#,
        inventory = room.inventory(),
        alerts = INLET_HOT_RULE.replacen(
            "[alerts]\n",
            &format!(
                "[alerts]\nresend_interval = \"{}s\"\nevaluation_interval = \"100ms\"\n",
                RESEND.as_secs()
            ),
            1
        ),
        url = manager.alerts_url(),
    );
    let mut gateway = Gateway::start(GATEWAY, &settings);
    let publisher = room.start(broker.port());

    // 1. The rack runs hot: the alert is active in Alertmanager with the labels people route on.
    room.set_hot("a01", true);
    wait_for(
        "the alert in Alertmanager",
        Duration::from_secs(30),
        &gateway,
        &manager,
        || open_alert(&manager).is_some(),
    )
    .await;
    let alert = open_alert(&manager).unwrap();
    let labels = &alert["labels"];
    for (name, value) in [
        ("alertname", "inlet_hot"),
        ("rule", "inlet_hot"),
        ("severity", "critical"),
        ("site", SITE),
        ("room", "hall-a"),
        ("row", "r01"),
        ("rack", "a01"),
    ] {
        assert_eq!(labels[name], value, "label {name}: {alert}");
    }
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains("°C, above 32 °C"), "{summary}");
    assert!(alert["annotations"]["description"].as_str().is_some(), "{alert}");
    assert_eq!(
        alert["generatorURL"],
        "https://rackwatch.example/?rack=hall-a.r01.a01"
    );
    let groups = manager.groups();
    let group = groups
        .iter()
        .find(|g| g["labels"]["site"] == SITE)
        .unwrap_or_else(|| panic!("no group of site {SITE}: {groups:?}"));
    assert_eq!(group["labels"]["alertname"], "inlet_hot");
    assert_eq!(group["alerts"].as_array().unwrap().len(), 1, "{group}");

    // 2. People acknowledge it and silence the rack in rackwatch: that stops their repeats, not the
    //    re-sends that keep it open in Alertmanager, for three resolve_timeouts.
    let port = gateway.http_port();
    assert_eq!(
        post(port, &format!("/api/alerts/{KEY}/ack"), json!({"by": "ops"})).await,
        204
    );
    assert_eq!(
        post(
            port,
            "/api/silences",
            json!({"matchers": {"rack": "a01"}, "minutes": 60, "created_by": "ops"})
        )
        .await,
        201
    );
    let delivered = "rackwatch_alert_notifications_total{receiver=\"alertmanager\",result=\"delivered\"}";
    let sent_before = gateway.metric(delivered);
    stays_open(
        &manager,
        3 * RESOLVE_TIMEOUT,
        "the acknowledged, silenced stretch",
    )
    .await;
    let resends = gateway.metric(delivered) - sent_before;
    assert!(
        resends >= (3 * RESOLVE_TIMEOUT).as_secs_f64() / RESEND.as_secs_f64() - 2.0,
        "{resends} re-sends in {:?}",
        3 * RESOLVE_TIMEOUT
    );

    // 3. The gateway crashes and comes back while the rack is still hot: the alert never leaves
    //    Alertmanager, and the restarted gateway re-sends it at once.
    gateway.kill();
    stays_open(&manager, RESEND, "the gateway's downtime").await;
    gateway.restart();
    let restarted = Instant::now();
    let resent_after = wait_for(
        "a re-send after the restart",
        Duration::from_secs(10),
        &gateway,
        &manager,
        || gateway.metric(delivered) >= 1.0,
    )
    .await;
    assert!(
        resent_after < RESEND,
        "the first re-send came {resent_after:?} after the restart"
    );
    stays_open(&manager, 2 * RESEND, "the time after the restart").await;
    assert!(restarted.elapsed() >= 2 * RESEND);

    // 4. The rack cools: the resolve reaches Alertmanager within one re-send interval.
    room.set_hot("a01", false);
    let cooled = Instant::now();
    wait_for(
        "the alert to resolve in Alertmanager",
        Duration::from_secs(30),
        &gateway,
        &manager,
        || open_alert(&manager).is_none(),
    )
    .await;
    let resolved_after = cooled.elapsed();
    // The room publishes every 300 ms: the first cool reading comes within that.
    assert!(
        resolved_after <= RESEND + Duration::from_millis(300),
        "resolved in Alertmanager {resolved_after:?} after the rack cooled"
    );
    publisher.abort();
    eprintln!(
        "alertmanager e2e: {:?} in all, resolved {resolved_after:?} after cooling",
        started.elapsed()
    );
}
