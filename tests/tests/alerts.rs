//! The alert engine end to end (issue "gateway: alert engine for cooling and power"): a real
//! Mosquitto, the real gateway binary, a simulated node that runs hot and cools when its fans are
//! driven up, and a webhook receiver that is down when the alert fires and comes back later.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rackwatch_protocols::topic::{self, NodeTopic};
use rackwatch_protocols::{
    Ack, AckResult, Alert, AlertState, ChannelName, Command, CommandKind, FanTarget, NodeId, Quantity,
    Reading, SiteId, Telemetry, Unit,
};
use rackwatch_tests::{Gateway, GatewaySettings, Mosquitto, free_port};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const SITE: &str = "cool";
const KEY: &str = "inlet_hot.hall-a.r01.a01";

/// What the simulated node went through.
#[derive(Debug, Default)]
struct NodeLog {
    duties: Vec<f32>,
    temperature: f64,
}

/// A rack node: telemetry every 200 ms with its inlet temperature. Its rack's cooling has failed, so
/// the inlet sits at 30 °C until its fans run at 80 % or more; then it falls 1 °C per reading to 22 °C.
/// It answers every `set_fan` with an `ok` ack.
fn simulated_node(port: u16) -> Arc<Mutex<NodeLog>> {
    let log = Arc::new(Mutex::new(NodeLog {
        duties: Vec::new(),
        temperature: 30.0,
    }));
    let state = Arc::clone(&log);
    let site = SiteId::new(SITE).unwrap();
    let node = NodeId::new("n1").unwrap();
    let mut options = MqttOptions::new("sim-n1", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let cmd_topic = topic::node(&site, &node, NodeTopic::Command).to_string();
    let ack_topic = topic::node(&site, &node, NodeTopic::Ack).to_string();
    let telemetry_topic = topic::node(&site, &node, NodeTopic::Telemetry).to_string();
    let answer = client.clone();
    let answer_state = Arc::clone(&log);
    let answer_node = node.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    answer.subscribe(&cmd_topic, QoS::AtLeastOnce).await.unwrap();
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == cmd_topic => {
                    let command = Command::decode(&p.payload).unwrap();
                    if let CommandKind::SetFan {
                        target: FanTarget::DutyPercent(duty),
                        ..
                    } = command.kind
                    {
                        answer_state.lock().unwrap().duties.push(duty);
                    }
                    let mut buf = [0u8; 256];
                    let n = Ack::new(command.id, answer_node.clone(), AckResult::Ok)
                        .encode(&mut buf)
                        .unwrap();
                    answer
                        .publish(&ack_topic, QoS::AtLeastOnce, false, buf[..n].to_vec())
                        .await
                        .unwrap();
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::spawn(async move {
        let mut seq = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let temperature = {
                let mut s = state.lock().unwrap();
                if s.duties.last().is_some_and(|d| *d >= 80.0) || s.temperature < 30.0 {
                    s.temperature = (s.temperature - 1.0).max(22.0);
                }
                s.temperature
            };
            let mut readings = heapless::Vec::new();
            readings
                .push(Reading::ok(
                    ChannelName::new("inlet_top").unwrap(),
                    Quantity::Temperature,
                    temperature,
                    Unit::Celsius,
                ))
                .unwrap();
            let telemetry = Telemetry {
                version: 1,
                node: node.clone(),
                boot: 1,
                seq,
                timestamp_ms: Some(rackwatch_tests::now_ms() as u64),
                uptime_ms: u64::from(seq) * 200,
                dropped: 0,
                readings,
            };
            seq += 1;
            let mut buf = [0u8; 1024];
            let n = telemetry.encode(&mut buf).unwrap();
            let _ = client
                .publish(&telemetry_topic, QoS::AtLeastOnce, false, buf[..n].to_vec())
                .await;
        }
    });
    log
}

/// Every alert the gateway publishes, with its topic and whether it came retained.
fn alert_listener(port: u16) -> Arc<Mutex<Vec<(String, Alert)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let (client, mut eventloop) = AsyncClient::new(MqttOptions::new("alert-listener", "127.0.0.1", port), 64);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .subscribe(format!("rackwatch/v1/{SITE}/alerts/#"), QoS::AtLeastOnce)
                        .await
                        .unwrap();
                }
                // An empty retained message withdraws a pending alert that never fired.
                Ok(Event::Incoming(Packet::Publish(p))) if p.payload.is_empty() => {}
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let alert = Alert::decode(&p.payload).unwrap();
                    record.lock().unwrap().push((p.topic, alert));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    seen
}

/// A webhook receiver on `port`: answers every POST with 200 and keeps (path, JSON body).
async fn webhook_receiver(port: u16) -> Arc<Mutex<Vec<(String, serde_json::Value)>>> {
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&received);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = stream.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() < length {
                        continue;
                    }
                    let path = head.split_whitespace().nth(1).unwrap().to_owned();
                    record
                        .lock()
                        .unwrap()
                        .push((path, serde_json::from_str(&body[..length]).unwrap()));
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await
                        .unwrap();
                    return;
                }
            });
        }
    });
    received
}

async fn wait_for(what: &str, gateway: &Gateway, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            let log = gateway.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "timed out waiting for {what}; gateway log tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn states(alerts: &[(String, Alert)], topic: &str) -> Vec<AlertState> {
    alerts
        .iter()
        .filter(|(t, a)| t == topic && a.key.as_str() == KEY)
        .map(|(_, a)| a.state)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_rack_alerts_boosts_its_fans_and_resolves_when_cooled() {
    let broker = Mosquitto::start();
    let hook_port = free_port();
    let mut settings = GatewaySettings::new(SITE);
    settings.mqtt_url = Some(broker.url());
    settings.extra = format!(
        r#"
[nodes.n1]
room = "hall-a"
row = "r01"
rack = "a01"

[alerts]
repeat_interval = "1h"
evaluation_interval = "100ms"

[[alerts.rules]]
name = "inlet_hot"
kind = "threshold"
quantity = "temperature"
side = "inlet"
above = 27.0
clear = 25.0
for = "1s"
severity = "critical"

[[alerts.webhooks]]
name = "ops"
url = "http://127.0.0.1:{hook_port}/rackwatch"
max_backoff = "1s"

[[alerts.webhooks]]
name = "alertmanager"
url = "http://127.0.0.1:{hook_port}/api/v2/alerts"
format = "alertmanager"
max_backoff = "1s"

[alerts.cooling]
rules = ["inlet_hot"]
boost_duty_percent = 100.0
normal_duty_percent = 40.0
ack_timeout = "2s"
"#
    );
    let gateway = Gateway::start(GATEWAY, &settings);
    let alerts = alert_listener(broker.port());
    let node = simulated_node(broker.port());
    let events = format!("rackwatch/v1/{SITE}/alerts/events");
    let retained = format!("rackwatch/v1/{SITE}/alerts/{KEY}");

    // The rack runs hot: the alert fires on MQTT; the webhook receiver is down, so delivery fails.
    wait_for("the firing event", &gateway, Duration::from_secs(30), || {
        states(&alerts.lock().unwrap(), &events).contains(&AlertState::Firing)
    })
    .await;
    wait_for(
        "a failed webhook delivery",
        &gateway,
        Duration::from_secs(30),
        || gateway.metric("rackwatch_alert_notifications_total{receiver=\"ops\",result=\"failed\"}") >= 1.0,
    )
    .await;
    let api = rackwatch_tests::http_get(gateway.http_port(), "/api/alerts").unwrap();
    assert!(api.contains(KEY), "{api}");
    let refused = rackwatch_tests::http_get(gateway.http_port(), "/api/silences").unwrap();
    assert_eq!(refused.trim(), "[]");

    // The fans were commanded up, the node acked and cooled, the alert resolved, the fans went back.
    wait_for("fans back to normal", &gateway, Duration::from_secs(60), || {
        node.lock().unwrap().duties.contains(&40.0)
    })
    .await;
    assert_eq!(node.lock().unwrap().duties, [100.0, 40.0]);
    wait_for("the resolved event", &gateway, Duration::from_secs(30), || {
        states(&alerts.lock().unwrap(), &events).contains(&AlertState::Resolved)
    })
    .await;
    assert_eq!(
        states(&alerts.lock().unwrap(), &events),
        [AlertState::Pending, AlertState::Firing, AlertState::Resolved],
        "one event per transition"
    );
    wait_for("both fan acks counted", &gateway, Duration::from_secs(10), || {
        gateway.metric("rackwatch_alert_fan_commands_total{reason=\"acked\"}") == 2.0
    })
    .await;
    assert_eq!(
        states(&alerts.lock().unwrap(), &retained).last(),
        Some(&AlertState::Resolved),
        "the retained state is the latest"
    );

    // The receiver comes back: each hook gets the firing once, then the resolve once.
    let received = webhook_receiver(hook_port).await;
    wait_for(
        "both notifications on both hooks",
        &gateway,
        Duration::from_secs(30),
        || received.lock().unwrap().len() >= 4,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = received.lock().unwrap().clone();
    let ops: Vec<&serde_json::Value> = received
        .iter()
        .filter(|(path, _)| path == "/rackwatch")
        .map(|(_, body)| body)
        .collect();
    assert_eq!(ops.len(), 2, "{received:?}");
    assert_eq!(ops[0]["alert"]["state"], "firing");
    assert_eq!(ops[0]["alert"]["key"], KEY);
    assert_eq!(ops[1]["alert"]["state"], "resolved");
    let manager: Vec<&serde_json::Value> = received
        .iter()
        .filter(|(path, _)| path == "/api/v2/alerts")
        .map(|(_, body)| body)
        .collect();
    assert_eq!(manager.len(), 2, "{received:?}");
    let firing = &manager[0][0];
    assert_eq!(firing["labels"]["alertname"], "inlet_hot");
    assert_eq!(firing["labels"]["rack"], "a01");
    assert_eq!(firing["labels"]["severity"], "critical");
    assert!(firing["startsAt"].as_str().unwrap().ends_with('Z'));
    // RFC 3339 UTC in one format: ordered as text as in time.
    let (starts, ends) = (
        firing["startsAt"].as_str().unwrap(),
        firing["endsAt"].as_str().unwrap(),
    );
    assert!(ends > starts, "a firing's endsAt lies ahead: {firing}");
    assert_eq!(firing["labels"]["site"], SITE);
    assert!(
        manager[1][0]["endsAt"].as_str().is_some(),
        "the resolve carries endsAt"
    );
    // Transitions that follow a reading are timed from its arrival; one that the ticker causes (a
    // `for` running out between readings) has no arrival to time. The first, pending, always follows
    // a reading.
    assert!(gateway.metric("rackwatch_alert_latency_seconds_count") >= 1.0);
    assert!(gateway.dir().join("spool/alerts-state.json").exists());
}
