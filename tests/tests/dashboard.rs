//! The facilities view as a person sees it, in headless Chromium: every rack of the inventory is on
//! the floor plan; a rack made to run hot turns to the alert colour within seconds without a reload;
//! acknowledging its alert from the page is refused without the token and works with it; a rack's
//! chart, drawn from the gateway's own history, still shows its last hour after a restart; a rack
//! whose hottest inlet climbs shows on its tile how long until the allowable limit; racks stand on a
//! floor plan at their inventory tiles with aisles and a heat overlay, show their inlet profile on
//! hover or tap, also on a phone; the node list gives each node's firmware, slot and last update.

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

/// The point count and the mean line's vertex count of the rack chart, with its range and metric,
/// read in one script run (the page redraws the chart when a range or metric is chosen).
async fn drawn_chart(browser: &Browser) -> Option<(u64, usize, String, String)> {
    let script = "const svg = document.getElementById('history-svg'); if (!svg) return null; \
                  const line = svg.querySelector('polyline.mean'); \
                  return [Number(svg.dataset.points), line ? line.points.numberOfItems : 0, \
                          svg.dataset.range, svg.dataset.metric];";
    let value = browser.client.execute(script, Vec::new()).await.unwrap();
    serde_json::from_value(value).unwrap()
}

async fn history_points(gateway: &Gateway, rack: &str, range: &str, metric: &str) -> usize {
    let url = format!(
        "http://127.0.0.1:{}/api/racks/{rack}/history?range={range}&metric={metric}",
        gateway.http_port()
    );
    let body: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    body["points"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rack_chart_still_draws_the_last_hour_after_a_gateway_restart() {
    let broker = Mosquitto::start();
    let mut settings = GatewaySettings::new("lab");
    settings.mqtt_url = Some(broker.url());
    let room = Room::new("lab", &RACKS[..3]);
    settings.extra = room.inventory();
    let mut gateway = Gateway::start(GATEWAY, &settings);
    let publisher = room.start(broker.port());
    let rack = "hall-a.r01.a02";

    // Readings flow into the history until the rack has its inlet, outlet and ΔT (the simulated
    // room has no power feeds).
    let recorded = within(Duration::from_secs(30), || async {
        let mut all = true;
        for metric in ["inlet", "outlet", "delta_t"] {
            all &= history_points(&gateway, rack, "1h", metric).await > 0;
        }
        all
    })
    .await;
    assert!(recorded.is_some(), "no history within 30 s:\n{}", gateway.log());
    // The rack runs hot for a while, so its minute has a band (22 to 36 °C) around the mean.
    room.set_hot("a02", true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    publisher.abort();
    let drained = within(Duration::from_secs(10), || async {
        gateway.metric("rackwatch_spool_pending_bytes") == 0.0
    })
    .await;
    assert!(drained.is_some(), "the spool did not drain into the history");
    gateway.stop();
    gateway.restart();
    // Nothing new arrives after the restart: whatever the chart draws was kept across it.
    let kept = history_points(&gateway, rack, "1h", "inlet").await;
    assert!(kept > 0, "the history API lost the last hour");

    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("http://127.0.0.1:{}/?rack={rack}", gateway.http_port()))
        .await
        .unwrap();
    let drawn = within(Duration::from_secs(10), || async {
        drawn_chart(&browser)
            .await
            .is_some_and(|(points, vertices, _, _)| points > 0 && vertices > 0)
    })
    .await;
    let chart = drawn_chart(&browser).await;
    assert!(
        drawn.is_some(),
        "the rack chart is empty after the restart: {chart:?}"
    );
    let (points, _, range, metric) = chart.unwrap();
    assert_eq!((range.as_str(), metric.as_str()), ("1h", "inlet"));
    assert_eq!(points, kept as u64, "the chart draws every bucket the API has");
    let path = browser.screenshot("rack-history-after-restart.png").await;
    println!(
        "chart of {points} points after a restart; screenshot: {}",
        path.display()
    );

    // The other ranges and metrics are one click away and drawn from the same history.
    browser.click("#history-ranges button[data-range='24h']").await;
    browser
        .client
        .execute(
            "const s = document.getElementById('history-metric'); s.value = 'delta_t'; \
             s.dispatchEvent(new Event('change'));",
            Vec::new(),
        )
        .await
        .unwrap();
    let switched = within(Duration::from_secs(10), || async {
        drawn_chart(&browser)
            .await
            .is_some_and(|(points, vertices, range, metric)| {
                range == "24h" && metric == "delta_t" && points > 0 && vertices > 0
            })
    })
    .await;
    assert!(
        switched.is_some(),
        "the 24 h ΔT chart is not drawn: {:?}",
        drawn_chart(&browser).await
    );
}

/// Rack a01's last ten minutes, published at once with the node's own timestamps: a reading every
/// 10 s, the top inlet climbing 0.5 °C a minute to 27 °C now (cooling failing).
async fn publish_a_climbing_inlet(broker_port: u16, site: &str) {
    use rackwatch_protocols::{ChannelName, NodeId, Quantity, Reading, Telemetry, Unit};
    let options = rumqttc::MqttOptions::new("climbing-inlet", "127.0.0.1", broker_port);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
    let events = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let now = rackwatch_tests::now_ms();
    for i in 0..=60u32 {
        let inlet = 27.0 - 0.5 * f64::from(60 - i) / 6.0;
        let mut readings = heapless::Vec::new();
        for (channel, value) in [
            ("inlet_top", inlet),
            ("inlet_middle", inlet - 1.0),
            ("outlet", inlet + 12.0),
        ] {
            let channel = ChannelName::new(channel).unwrap();
            readings
                .push(Reading::ok(channel, Quantity::Temperature, value, Unit::Celsius))
                .unwrap();
        }
        let telemetry = Telemetry {
            version: 1,
            node: NodeId::new("n-a01").unwrap(),
            boot: 1,
            seq: i,
            timestamp_ms: Some((now - i64::from(60 - i) * 10_000) as u64),
            uptime_ms: u64::from(i) * 10_000,
            dropped: 0,
            readings,
        };
        let mut buf = [0u8; 1024];
        let n = telemetry.encode(&mut buf).unwrap();
        client
            .publish(
                format!("rackwatch/v1/{site}/n-a01/telemetry"),
                rumqttc::QoS::AtLeastOnce,
                false,
                buf[..n].to_vec(),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.disconnect().await.ok();
    events.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_climbing_inlet_shows_the_time_to_the_limit_on_its_tile() {
    let broker = Mosquitto::start();
    let mut settings = GatewaySettings::new("lab");
    settings.mqtt_url = Some(broker.url());
    settings.extra = Room::new("lab", &RACKS[..2]).inventory();
    let gateway = Gateway::start(GATEWAY, &settings);
    publish_a_climbing_inlet(broker.port(), "lab").await;

    // 5 °C to go at 0.5 °C a minute: 32 °C (class A1's allowable maximum, no preset configured)
    // in about ten minutes; the flat rack has none.
    let room_url = format!("http://127.0.0.1:{}/api/room", gateway.http_port());
    let forecast = within(Duration::from_secs(15), || async {
        let room: serde_json::Value = reqwest::get(&room_url).await.unwrap().json().await.unwrap();
        !room["racks"][0]["time_to_limit"].is_null()
    })
    .await;
    let room: serde_json::Value = reqwest::get(&room_url).await.unwrap().json().await.unwrap();
    assert!(
        forecast.is_some(),
        "no time to the limit: {room}\n{}",
        gateway.log()
    );
    let eta = &room["racks"][0]["time_to_limit"];
    assert_eq!(room["racks"][0]["id"], "hall-a.r01.a01");
    assert_eq!(eta["limit_c"], 32.0);
    assert_eq!(eta["limit_source"], "ashrae-a1 (default)");
    let seconds = eta["seconds"].as_u64().unwrap();
    assert!((540..=600).contains(&seconds), "{eta}");
    assert!(room["racks"][1]["time_to_limit"].is_null(), "{room}");

    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!(
            "http://127.0.0.1:{}/?rack=hall-a.r01.a01",
            gateway.http_port()
        ))
        .await
        .unwrap();
    let shown = within(Duration::from_secs(10), || async {
        browser
            .texts(".rack[data-rack='a01'] .eta")
            .await
            .iter()
            .any(|t| t == "32 °C in ~10 min" || t == "32 °C in ~9 min")
    })
    .await;
    assert!(
        shown.is_some(),
        "the tile does not say the time to the limit: {:?}",
        browser.texts(".rack .eta").await
    );
    assert!(browser.texts(".rack[data-rack='a02'] .eta").await.is_empty());
    let detail = browser.texts("#detail-eta").await;
    assert!(detail.iter().any(|t| t.contains("32 °C in ~")), "{detail:?}");
    let path = browser.screenshot("tile-time-to-limit.png").await;
    println!("time to the limit {seconds} s; screenshot: {}", path.display());
}

/// Publishes the birth of `node`: online, firmware 1.4.0 from slot B, its last update rolled back.
async fn publish_birth(broker_port: u16, site: &str, node: &str) {
    use rackwatch_protocols::{NodeId, NodeState, OtaResult, Slot, Status};
    let options = rumqttc::MqttOptions::new(format!("birth-{node}"), "127.0.0.1", broker_port);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let mut birth = Status::last_will(NodeId::new(node).unwrap(), 2);
    birth.state = NodeState::Online;
    birth.firmware = Some(heapless::String::try_from("1.4.0").unwrap());
    birth.slot = Some(Slot::B);
    birth.update = Some(OtaResult::RolledBack);
    let mut buf = [0u8; rackwatch_protocols::MAX_MESSAGE_LEN];
    let n = birth.encode(&mut buf).unwrap();
    client
        .publish(
            format!("rackwatch/v1/{site}/{node}/status"),
            rumqttc::QoS::AtLeastOnce,
            true,
            buf[..n].to_vec(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    poller.abort();
}

/// The heat overlay's colour (r, g, b) at the centre of rack `rack`'s tile, and the number of racks
/// the overlay interpolates between.
async fn heat_at(browser: &Browser, rack: &str) -> Option<(u8, u8, u8, u64)> {
    let script = "const el = document.querySelector(`.rack[data-rack='${arguments[0]}']`); \
                  if (!el) return null; \
                  const canvas = el.closest('.floor').querySelector('canvas.heat'); \
                  if (canvas.hidden || !canvas.dataset.points) return null; \
                  const sx = canvas.width / canvas.clientWidth, sy = canvas.height / canvas.clientHeight; \
                  const x = Math.floor((el.offsetLeft + el.offsetWidth / 2) * sx); \
                  const y = Math.floor((el.offsetTop + el.offsetHeight / 2) * sy); \
                  const p = canvas.getContext('2d').getImageData(x, y, 1, 1).data; \
                  return [p[0], p[1], p[2], Number(canvas.dataset.points)];";
    let value = browser.eval(script, vec![serde_json::Value::from(rack)]).await;
    serde_json::from_value(value).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_plan_places_racks_draws_aisles_and_heat_and_shows_a_racks_inlet_profile() {
    let broker = Mosquitto::start();
    let mut settings = GatewaySettings::new("floor");
    settings.mqtt_url = Some(broker.url());
    let room = Room::new("floor", &RACKS);
    // Rack b03 is placed by the inventory, facing north; the others by their row.
    let inventory = room.inventory().replace(
        "rack = \"b03\"\n",
        "rack = \"b03\"\nx = 6\ny = 1\ncold_aisle = \"north\"\n",
    );
    settings.extra = inventory;
    let gateway = Gateway::start(GATEWAY, &settings);
    let publisher = room.start(broker.port());
    room.set_hot("b02", true);

    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("http://127.0.0.1:{}/", gateway.http_port()))
        .await
        .unwrap();

    // Heat: red at the hot rack, green at a normal one, between all six racks.
    let heat = within(Duration::from_secs(15), || async {
        match (heat_at(&browser, "b02").await, heat_at(&browser, "a01").await) {
            (Some(hot), Some(normal)) => {
                hot.3 == 6 && hot.0 > 150 && hot.1 < 80 && normal.1 > 120 && normal.0 < 80
            }
            _ => false,
        }
    })
    .await;
    assert!(
        heat.is_some(),
        "heat overlay: b02 {:?}, a01 {:?}",
        heat_at(&browser, "b02").await,
        heat_at(&browser, "a01").await
    );

    // Each rack stands at the tile /api/room gives, and b03 where the inventory put it.
    let body: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{}/api/room", gateway.http_port()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let floor = &body["floor"][0];
    let drawn = browser
        .eval(
            "return Object.fromEntries(Array.from(document.querySelectorAll('.floor .rack')).map(e => \
             [e.dataset.id, [Number(e.style.gridColumnStart) - 1, Number(e.style.gridRowStart) - 1]]));",
            Vec::new(),
        )
        .await;
    assert_eq!(floor["racks"].as_array().unwrap().len(), RACKS.len());
    for rack in floor["racks"].as_array().unwrap() {
        let id = rack["id"].as_str().unwrap();
        assert_eq!(drawn[id], serde_json::json!([rack["x"], rack["y"]]), "{id}");
    }
    let b03 = floor["racks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "hall-a.r02.b03")
        .unwrap();
    assert_eq!(
        (&b03["x"], &b03["y"], &b03["cold_aisle"]),
        (
            &serde_json::json!(6),
            &serde_json::json!(1),
            &serde_json::json!("north")
        )
    );
    let aisles = browser.texts(".floor .aisle[data-kind='cold']").await;
    assert!(aisles.iter().any(|t| t == "cold aisle"), "{aisles:?}");
    assert!(!browser.texts(".floor .aisle[data-kind='hot']").await.is_empty());
    let legend = browser.texts("#heat-legend").await.concat();
    assert!(legend.contains("27") && legend.contains("32 °C"), "{legend}");

    // Hovering b02 shows its inlet profile, top to bottom.
    browser.hover(".rack[data-rack='b02']").await;
    let profile = within(Duration::from_secs(5), || async {
        let text = browser.texts("#profile:not([hidden])").await.concat();
        text.contains("Rack b02") && text.contains("top36.5 °C") && text.contains("bottom35.5 °C")
    })
    .await;
    assert!(
        profile.is_some(),
        "profile on hover: {:?}",
        browser.texts("#profile").await
    );
    let path = browser.screenshot("floor-plan.png").await;
    println!("screenshot: {}", path.display());

    // Node n-a01 is born on firmware 1.4.0 from slot B after a rolled-back update: the node list
    // says so.
    publish_birth(broker.port(), "floor", "n-a01").await;
    let listed = within(Duration::from_secs(10), || async {
        let row = browser.texts("#nodes tr[data-node='n-a01']").await.concat();
        row.contains("1.4.0") && row.contains("B") && row.contains("rolled back") && row.contains("a01")
    })
    .await;
    assert!(
        listed.is_some(),
        "node list: {:?}",
        browser.texts("#nodes tr").await
    );
    assert_eq!(browser.texts("#nodes tbody tr").await.len(), RACKS.len());

    // On a phone the page fits the screen's width (the floor scrolls inside it), and a tap on a
    // rack shows its profile.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.click(".rack[data-rack='a02']").await;
    let tapped = within(Duration::from_secs(5), || async {
        let text = browser.texts("#profile:not([hidden])").await.concat();
        let overflow = browser
            .eval(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                Vec::new(),
            )
            .await;
        text.contains("Rack a02") && text.contains("middle22.0 °C") && overflow.as_i64() == Some(0)
    })
    .await;
    assert!(
        tapped.is_some(),
        "phone: profile {:?}",
        browser.texts("#profile").await
    );
    let path = browser.screenshot("floor-plan-phone.png").await;
    println!("screenshot: {}", path.display());
    publisher.abort();
}
