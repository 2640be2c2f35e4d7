//! The harness's own smoke tests: real values through the real servers it starts.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rackwatch_tests::{Mosquitto, VictoriaMetrics};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

async fn connect(broker: &Mosquitto, id: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    AsyncClient::new(options, 16)
}

/// Polls `eventloop` until a PUBLISH arrives, returning its topic and payload.
async fn next_publish(eventloop: &mut rumqttc::EventLoop) -> (String, Vec<u8>) {
    loop {
        if let Event::Incoming(Packet::Publish(p)) = eventloop.poll().await.unwrap() {
            return (p.topic, p.payload.to_vec());
        }
    }
}

#[tokio::test]
async fn mosquitto_delivers_a_published_message() {
    let broker = Mosquitto::start();
    let (subscriber, mut sub_loop) = connect(&broker, "smoke-sub").await;
    subscriber
        .subscribe("rackwatch/v1/+/+/telemetry", QoS::AtLeastOnce)
        .await
        .unwrap();
    // Wait for the SUBACK before publishing, so the message cannot race the subscription.
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = sub_loop.poll().await.unwrap() {
            break;
        }
    }
    let (publisher, mut pub_loop) = connect(&broker, "smoke-pub").await;
    let payload = br#"{"v":1,"node":"n1","boot":1,"seq":0,"up":5,"readings":[]}"#;
    publisher
        .publish(
            "rackwatch/v1/lab/n1/telemetry",
            QoS::AtLeastOnce,
            false,
            payload.to_vec(),
        )
        .await
        .unwrap();
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });

    let (topic, received) = tokio::time::timeout(Duration::from_secs(10), next_publish(&mut sub_loop))
        .await
        .unwrap();
    assert_eq!(topic, "rackwatch/v1/lab/n1/telemetry");
    assert_eq!(received, payload);
    let telemetry = rackwatch_protocols::Telemetry::decode(&received).unwrap();
    assert_eq!(
        (telemetry.node.as_str(), telemetry.seq, telemetry.uptime_ms),
        ("n1", 0, 5)
    );
}

#[tokio::test]
async fn mosquitto_keeps_queued_messages_across_a_restart() {
    let mut broker = Mosquitto::start();
    // A persistent session (clean session off) that subscribes, then goes away.
    let mut options = MqttOptions::new("smoke-persistent", "127.0.0.1", broker.port());
    options.set_clean_session(false);
    let (client, mut eventloop) = AsyncClient::new(options.clone(), 16);
    client.subscribe("t/q", QoS::AtLeastOnce).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await.unwrap() {
            break;
        }
    }
    client.disconnect().await.unwrap();
    while eventloop.poll().await.is_ok() {}

    let (publisher, mut pub_loop) = connect(&broker, "smoke-pub2").await;
    publisher
        .publish("t/q", QoS::AtLeastOnce, false, b"42.5".to_vec())
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = pub_loop.poll().await.unwrap() {
            break;
        }
    }
    broker.stop();
    broker.restart();

    let (_client, mut eventloop) = AsyncClient::new(options, 16);
    let received = tokio::time::timeout(Duration::from_secs(10), next_publish(&mut eventloop)).await;
    let (topic, payload) =
        received.unwrap_or_else(|_| panic!("nothing after restart; broker log:\n{}", broker.log()));
    assert_eq!((topic.as_str(), payload.as_slice()), ("t/q", &b"42.5"[..]));
}

#[tokio::test]
async fn victoria_metrics_stores_a_written_point_exactly() {
    let db = VictoriaMetrics::start();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    let lines = format!(
        "smoke,node=n1,channel=inlet_top value=24.0625 {now_ms}\n\
         smoke,node=n1,channel=inlet_top value=24.0625 {now_ms}\n\
         smoke,node=n1,channel=outlet value=-3.5e-7 {now_ms}\n"
    );
    assert_eq!(db.write_lines(&lines).await.unwrap().as_u16(), 204);

    let mut series = db
        .export_until(r#"{__name__="smoke_value"}"#, Duration::from_secs(10), |s| {
            s.len() == 2
        })
        .await;
    series.sort_by(|a, b| a.label("channel").cmp(&b.label("channel")));
    assert_eq!(series.len(), 2, "{series:?}");
    assert_eq!(series[0].label("channel"), Some("inlet_top"));
    // The same point written twice is stored once, as in InfluxDB.
    assert_eq!(series[0].values, vec![24.0625]);
    assert_eq!(series[0].timestamps, vec![i64::try_from(now_ms).unwrap()]);
    assert_eq!(series[1].values, vec![-3.5e-7]);
}

#[tokio::test]
async fn victoria_metrics_keeps_data_across_a_restart() {
    let mut db = VictoriaMetrics::start();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    db.write_lines(&format!("smoke,node=n2 value=7 {now_ms}\n"))
        .await
        .unwrap();
    let before = db
        .export_until(r#"{__name__="smoke_value"}"#, Duration::from_secs(10), |s| {
            !s.is_empty()
        })
        .await;
    assert_eq!(before.len(), 1);
    db.stop();
    assert!(
        db.write_lines("smoke,node=n2 value=8\n").await.is_err(),
        "the stopped server still answers"
    );
    db.restart();
    let series = db
        .export_until(r#"{__name__="smoke_value"}"#, Duration::from_secs(10), |s| {
            !s.is_empty()
        })
        .await;
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].values, vec![7.0]);
}
