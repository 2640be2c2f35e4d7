//! The facilities view as a person sees it, in headless Chromium: every rack of the inventory is on
//! the floor plan; a rack made to run hot turns to the alert colour within seconds without a reload;
//! acknowledging its alert from the page is refused without the token and works with it.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::time::Duration;

use fantoccini::Locator;
use rackwatch_tests::room::{INLET_HOT_RULE, Room, within};
use rackwatch_tests::{Browser, Gateway, GatewaySettings, Mosquitto};

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
    let room = Room::new("lab", &RACKS);
    settings.extra = format!("{}\n{INLET_HOT_RULE}", room.inventory());
    let gateway = Gateway::start(GATEWAY, &settings);
    let publisher = room.start(broker.port());

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
    room.set_hot("b02", true);
    let turned = within(Duration::from_secs(10), || async {
        browser
            .rack_tiles()
            .await
            .iter()
            .any(|t| t.rack == "b02" && t.band == "hot" && t.alert == "firing")
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
    page.wait()
        .for_element(Locator::Css(".alert button[data-action='ack']"))
        .await
        .unwrap();
    browser.click(".alert button[data-action='ack']").await;
    let refused = within(Duration::from_secs(5), || async {
        browser
            .texts("#alert-message")
            .await
            .iter()
            .any(|t| t.contains("Refused"))
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
    browser.click(".alert button[data-action='ack']").await;
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
        browser
            .texts(".alert .meta")
            .await
            .iter()
            .any(|t| t.contains("acknowledged"))
    })
    .await;
    assert!(shown.is_some(), "the page does not show the acknowledgement");

    let path = browser.screenshot("dashboard.png").await;
    println!("screenshot: {}", path.display());
    publisher.abort();
}
