//! The facilities view as a person sees it, in headless Chromium: every rack of the inventory is on
//! the floor plan; a rack made to run hot turns to the alert colour within seconds without a reload;
//! acknowledging its alert from the page is refused without the token and works with it.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use rackwatch_protocols::{ChannelName, NodeId, Quantity, Reading, Telemetry, Unit};
use rackwatch_tests::{Browser, Gateway, GatewaySettings, Mosquitto};
use rumqttc::{AsyncClient, MqttOptions, QoS};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const TOKEN: &str = "let-me-acknowledge";
const RACKS: [(&str, &str); 6] = [
    ("r01", "a01"),
    ("r01", "a02"),
    ("r01", "a03"),
    ("r02", "b01"),
    ("r02", "b02"),
    ("r02", "b03"),
];

fn inventory() -> String {
    RACKS
        .iter()
        .map(|(row, rack)| {
            format!("[nodes.n-{rack}]\nroom = \"hall-a\"\nrow = \"{row}\"\nrack = \"{rack}\"\n")
        })
        .collect()
}

/// One node per rack, publishing its inlet probes and outlet every 300 ms; racks in `hot` run at 36 °C.
fn start_room(port: u16, hot: Arc<Mutex<HashSet<&'static str>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (client, mut eventloop) = AsyncClient::new(MqttOptions::new("room-sim", "127.0.0.1", port), 1000);
        tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        // Bounded: at most 10 minutes of readings.
        for seq in 0..2000u32 {
            for (_, rack) in RACKS {
                let inlet = if hot.lock().unwrap().contains(rack) {
                    36.0
                } else {
                    22.0
                };
                let mut readings = heapless::Vec::new();
                for (channel, value) in [
                    ("inlet_top", inlet + 0.5),
                    ("inlet_middle", inlet),
                    ("inlet_bottom", inlet - 0.5),
                    ("outlet", inlet + 12.0),
                ] {
                    let reading = Reading::ok(
                        ChannelName::new(channel).unwrap(),
                        Quantity::Temperature,
                        value,
                        Unit::Celsius,
                    );
                    readings.push(reading).unwrap();
                }
                let telemetry = Telemetry {
                    version: 1,
                    node: NodeId::new(&format!("n-{rack}")).unwrap(),
                    boot: 1,
                    seq,
                    timestamp_ms: Some(rackwatch_tests::now_ms() as u64),
                    uptime_ms: u64::from(seq) * 300,
                    dropped: 0,
                    readings,
                };
                let mut buf = [0u8; 1024];
                let n = telemetry.encode(&mut buf).unwrap();
                let topic = format!("rackwatch/v1/lab/n-{rack}/telemetry");
                client
                    .publish(topic, QoS::AtLeastOnce, false, buf[..n].to_vec())
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// Polls `check` every 200 ms until it holds or `timeout` passes; returns how long it took.
async fn within<F, Fut>(timeout: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

async fn alerts(gateway: &Gateway) -> serde_json::Value {
    let response = reqwest::get(format!("http://127.0.0.1:{}/api/alerts", gateway.http_port()))
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "GET /api/alerts: {status} {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_plan_shows_a_hot_rack_live_and_acknowledges_only_with_the_token() {
    let broker = Mosquitto::start();
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut settings = GatewaySettings::new("lab");
    settings.mqtt_url = Some(broker.url());
    settings.http_extra = format!("token = {{ file = \"{}\" }}", token_file.display());
    settings.extra = format!(
        "{}\n[alerts]\n[[alerts.rules]]\nname = \"inlet_hot\"\nkind = \"threshold\"\nquantity = \"temperature\"\nside = \"inlet\"\nabove = 32.0\nclear = 30.0\nseverity = \"critical\"\ngroup_by = \"rack\"\n",
        inventory()
    );
    let gateway = Gateway::start(GATEWAY, &settings);
    let hot = Arc::new(Mutex::new(HashSet::new()));
    let room = start_room(broker.port(), Arc::clone(&hot));

    let browser = Browser::start().await;
    let page = &browser.client;
    page.goto(&format!("http://127.0.0.1:{}/", gateway.http_port()))
        .await
        .unwrap();

    // Every rack of the inventory is drawn, and shows the normal colour once readings arrive.
    let all_drawn = within(Duration::from_secs(15), || async {
        let tiles = page
            .find_all(Locator::Css(".rack[data-band='ok']"))
            .await
            .unwrap();
        tiles.len() == RACKS.len()
    })
    .await;
    assert!(
        all_drawn.is_some(),
        "not every rack turned up green on the floor plan"
    );
    for (_, rack) in RACKS {
        page.find(Locator::Css(&format!(".rack[data-rack='{rack}']")))
            .await
            .unwrap();
    }

    // Rack b02 runs hot: its tile turns to the alert colour, without reloading the page.
    hot.lock().unwrap().insert("b02");
    let turned = within(Duration::from_secs(10), || async {
        let tile = page.find(Locator::Css(".rack[data-rack='b02']")).await.unwrap();
        tile.attr("data-band").await.unwrap().as_deref() == Some("hot")
            && tile.attr("data-alert").await.unwrap().as_deref() == Some("firing")
    })
    .await
    .expect("rack b02 did not turn to the alert colour within 10 s");
    println!("hot rack shown in the alert colour after {turned:?}");
    let others = page
        .find_all(Locator::Css(".rack[data-alert='firing']"))
        .await
        .unwrap();
    assert_eq!(others.len(), 1, "only the hot rack is alerting");

    // Acknowledge without a token: refused, and the alert stays unacknowledged.
    let ack = page
        .wait()
        .for_element(Locator::Css(".alert button[data-action='ack']"))
        .await
        .unwrap();
    ack.click().await.unwrap();
    let refused = within(Duration::from_secs(5), || async {
        page.find(Locator::Id("alert-message"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("Refused")
    })
    .await;
    assert!(refused.is_some(), "acknowledging without a token was not refused");
    let firing: Vec<serde_json::Value> = alerts(&gateway)
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .cloned()
        .collect();
    assert_eq!(firing.len(), 1);
    assert!(firing[0]["acknowledged"].is_null(), "{firing:?}");

    // With the token: acknowledged.
    page.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    page.find(Locator::Css(".alert button[data-action='ack']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let acknowledged = within(Duration::from_secs(5), || async {
        alerts(&gateway)
            .await
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["state"] == "firing" && !a["acknowledged"].is_null())
    })
    .await;
    assert!(
        acknowledged.is_some(),
        "acknowledging with the token did not reach the alert engine"
    );
    let shown = within(Duration::from_secs(5), || async {
        page.find(Locator::Css(".alert .meta"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("acknowledged")
    })
    .await;
    assert!(shown.is_some(), "the page does not show the acknowledgement");

    let path = browser.screenshot("dashboard.png").await;
    println!("screenshot: {}", path.display());
    room.abort();
}
