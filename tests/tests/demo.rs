//! `rackwatch demo` as a newcomer runs it: one command, nothing else started. The dashboard shows
//! every rack of the simulated room; the cooling failure fires alerts, the fans are raised and
//! acknowledged, the repair resolves the alerts; Ctrl-C ends the demo cleanly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test"
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rackwatch_tests::{Browser, Mosquitto, VictoriaMetrics, free_port, http_get};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const RACKWATCH: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const RACKS: usize = 20;

/// The demo process; killed if the test ends before it exited.
struct Demo {
    child: Child,
    /// Every line it printed so far.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Demo {
    /// `rackwatch demo` at 30× speed with `scenario` from 10 s in for 15 s, and `extra` options.
    fn start(http_port: u16, data_dir: &std::path::Path, scenario: &str, extra: &[&str]) -> Self {
        let timing = [
            "--speed",
            "30",
            "--scenario-start",
            "10s",
            "--scenario-duration",
            "15s",
        ];
        Demo::start_timed(http_port, data_dir, scenario, &timing, extra)
    }

    /// `rackwatch demo` with `scenario`, its speed and scenario timing in `timing`.
    fn start_timed(
        http_port: u16,
        data_dir: &std::path::Path,
        scenario: &str,
        timing: &[&str],
        extra: &[&str],
    ) -> Self {
        let mut child = Command::new(RACKWATCH)
            .args(["demo", "--http", &format!("127.0.0.1:{http_port}"), "--data-dir"])
            .arg(data_dir)
            .args(["--scenario", scenario])
            .args(timing)
            .args(extra)
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

/// Polls `check` every 250 ms until it holds or `timeout` passes; returns how long it took.
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
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_the_room_plays_a_cooling_failure_and_stops_on_ctrl_c() {
    let started = Instant::now();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut demo = Demo::start(port, data.path(), "crac-failure", &[]);

    let up = within(Duration::from_secs(30), || async {
        http_get(port, "/").is_some()
    })
    .await;
    assert!(up.is_some(), "the dashboard did not answer within 30 s");
    assert!(demo.printed(&format!("Dashboard: http://127.0.0.1:{port}/")));

    let browser = Browser::start().await;
    let page = &browser.client;
    page.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();

    // Every rack of the room is drawn and has readings (a band other than `none`).
    let reporting = within(Duration::from_secs(30), || async {
        let tiles = browser.rack_tiles().await;
        tiles.len() == RACKS && tiles.iter().all(|t| t.band != "none" && !t.band.is_empty())
    })
    .await;
    assert!(reporting.is_some(), "not all {RACKS} racks showed readings");
    for rack in ["a01", "a10", "b01", "b10"] {
        page.find(Locator::Css(&format!(".rack[data-rack='{rack}']")))
            .await
            .unwrap();
    }

    // The cooling unit fails 10 s in; the hot row's alerts show on the page.
    let fired = within(Duration::from_secs(45), || async {
        browser.rack_tiles().await.iter().any(|t| t.alert == "firing")
    })
    .await;
    assert!(fired.is_some(), "no rack turned to the alert colour");
    assert!(demo.printed("cooling unit CRAC-2 failed"));
    for tile in browser.rack_tiles().await.iter().filter(|t| t.alert == "firing") {
        assert!(
            tile.rack.starts_with('b'),
            "rack {} of the cooled row alerts",
            tile.rack
        );
    }
    let path = browser.screenshot("demo.png").await;
    println!(
        "alert on the page {:?} after start; screenshot {}",
        started.elapsed(),
        path.display()
    );

    // The gateway raised the hot racks' fans and the nodes acknowledged.
    let fans = within(Duration::from_secs(20), || async {
        demo.printed("raised to 100 % (acknowledged)")
    })
    .await;
    assert!(fans.is_some(), "no fan raise was acknowledged");

    // The unit is repaired 15 s later; every alert resolves and the fans go back.
    let resolved = within(Duration::from_secs(90), || async {
        browser.rack_tiles().await.iter().all(|t| t.alert != "firing") && demo.printed("All alerts resolved")
    })
    .await;
    assert!(resolved.is_some(), "the alerts did not resolve");
    assert!(demo.printed("Cooling restored"));
    assert!(demo.printed("returned to 60 % (acknowledged)"));
    println!("all alerts resolved {:?} after start", started.elapsed());

    // Ctrl-C: the demo stops cleanly, with exit status 0, within seconds.
    let pid = Pid::from_raw(i32::try_from(demo.child.id()).unwrap());
    kill(pid, Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop within 10 s of Ctrl-C"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "the demo exited with {status}");
    assert!(demo.printed("Stopped."));
    println!("demo test took {:?}", started.elapsed());
}

/// The demo against services a site already runs: an external Mosquitto (`--broker`) and an InfluxDB
/// v2 write API (`--influx-url`, here VictoriaMetrics). A tripped power feed is alerted on the
/// broker's alert topics, resolved after the reset, and the rack's power readings in the database
/// show the drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_an_external_broker_and_database_plays_a_power_trip() {
    let broker = Mosquitto::start();
    let db = VictoriaMetrics::start();
    let mut options = MqttOptions::new("demo-watcher", "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client
        .subscribe("rackwatch/v1/demo/alerts/events", QoS::AtLeastOnce)
        .await
        .unwrap();
    let transitions = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let seen = Arc::clone(&transitions);
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(publish)) = event {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&publish.payload).unwrap());
            }
        }
    });

    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let demo = Demo::start(
        port,
        data.path(),
        "psu-trip",
        &["--broker", &broker.url(), "--influx-url", &db.url()],
    );
    let resolved = within(Duration::from_secs(90), || async {
        demo.printed("All alerts resolved")
    })
    .await;
    assert!(
        resolved.is_some(),
        "the power trip's alert did not resolve within 90 s"
    );
    assert!(demo.printed("Rack a05: power feed tripped"));
    assert!(demo.printed("Rack a05: power lost"));

    // The alert system on the broker saw the incident fire and resolve, for rack a05 only.
    let states = within(Duration::from_secs(10), || async {
        let seen = transitions.lock().unwrap();
        ["firing", "resolved"]
            .iter()
            .all(|state| seen.iter().any(|t| t["state"] == *state && t["rack"] == "a05"))
    })
    .await;
    let seen = transitions.lock().unwrap().clone();
    assert!(states.is_some(), "alert transitions on the broker: {seen:?}");
    assert!(seen.iter().all(|t| t["rack"] == "a05"), "{seen:?}");

    // The database has the room, and rack a05's power fell to next to nothing and came back.
    let power = db
        .export_until(
            "{__name__=\"reading_value\",site=\"demo\",rack=\"a05\",quantity=\"power\"}",
            Duration::from_secs(30),
            |series| series.iter().any(|s| s.values.len() > 20),
        )
        .await;
    let values: Vec<f64> = power.iter().flat_map(|s| s.values.iter().copied()).collect();
    let (low, high) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    assert!(
        high > 1000.0 && low < 0.1 * high,
        "rack a05 power from {low} to {high} W"
    );
    let racks = db
        .export_until(
            "{__name__=\"reading_value\",site=\"demo\",quantity=\"temperature\"}",
            Duration::from_secs(30),
            |_| true,
        )
        .await;
    let racks: std::collections::BTreeSet<&str> = racks
        .iter()
        .filter_map(|s| s.metric.get("rack").map(String::as_str))
        .collect();
    assert_eq!(racks.len(), RACKS, "{racks:?}");

    // The alert's history is in the database too, for Grafana annotations: pending, fired, resolved.
    let history = db
        .export_until(
            "{__name__=\"alert_firing\",site=\"demo\",rule=\"rack_power_lost\",rack=\"a05\"}",
            Duration::from_secs(30),
            |series| {
                series
                    .iter()
                    .any(|s| s.metric.get("state").map(String::as_str) == Some("resolved"))
            },
        )
        .await;
    let states: std::collections::BTreeMap<&str, Vec<f64>> = history
        .iter()
        .filter_map(|s| Some((s.metric.get("state")?.as_str(), s.values.clone())))
        .collect();
    assert_eq!(states.get("pending"), Some(&vec![0.0]), "{states:?}");
    assert_eq!(states.get("firing"), Some(&vec![1.0]), "{states:?}");
    assert_eq!(states.get("resolved"), Some(&vec![0.0]), "{states:?}");
}

/// The inlet rules that fire on a reading past a fixed temperature (the demo's own `inlet_hot` at
/// 27 °C, the ASHRAE presets' recommended and A1 allowable limits).
const INLET_THRESHOLD_RULES: [&str; 3] = ["inlet_hot", "ashrae_inlet_high", "ashrae_a1_inlet_high"];

/// The rules of the alerts firing now.
async fn firing_rules(port: u16) -> Vec<String> {
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/api/alerts")).await else {
        return Vec::new();
    };
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let alerts = body.as_array().cloned().unwrap_or_default();
    alerts
        .iter()
        .filter(|a| a["state"] == "firing")
        .filter_map(|a| a["rule"].as_str().map(str::to_owned))
        .collect()
}

/// Each tile's rack and its time-to-the-limit line, when it shows one.
async fn forecasts(browser: &Browser) -> Vec<(String, String)> {
    let script = "return Array.from(document.querySelectorAll('.rack[data-rack]')) \
                  .map(e => [e.dataset.rack, (e.querySelector('.eta') || {}).textContent || '']) \
                  .filter(([, eta]) => eta);";
    serde_json::from_value(browser.eval(script, Vec::new()).await).unwrap()
}

/// "32 °C in ~N min".
fn is_forecast_text(text: &str) -> bool {
    text.strip_prefix("32 °C in ~")
        .and_then(|rest| rest.strip_suffix(" min"))
        .is_some_and(|minutes| minutes.parse::<u32>().is_ok_and(|m| m >= 1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_the_cooling_failures_forecast_on_the_tiles_before_the_threshold_alert() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    // 10× speed, the failure from 10 s in for a minute (ten minutes of room time).
    let timing = [
        "--speed",
        "10",
        "--scenario-start",
        "10s",
        "--scenario-duration",
        "60s",
    ];
    let demo = Demo::start_timed(port, data.path(), "crac-failure", &timing, &[]);
    let up = within(Duration::from_secs(30), || async {
        http_get(port, "/").is_some()
    })
    .await;
    assert!(up.is_some(), "the dashboard did not answer within 30 s");
    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let reporting = within(Duration::from_secs(30), || async {
        let tiles = browser.rack_tiles().await;
        tiles.len() == RACKS && tiles.iter().all(|t| t.band != "none" && !t.band.is_empty())
    })
    .await;
    assert!(reporting.is_some(), "not all {RACKS} racks showed readings");

    // Until the first inlet threshold alert fires: when did the failed row's tiles first show the
    // forecast, and what did they say?
    let started = Instant::now();
    let mut forecast_seen: Option<(Duration, Vec<(String, String)>)> = None;
    let threshold_fired = loop {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no inlet threshold alert fired within 90 s; forecasts seen: {forecast_seen:?}"
        );
        let firing = firing_rules(port).await;
        if firing
            .iter()
            .any(|rule| INLET_THRESHOLD_RULES.contains(&rule.as_str()))
        {
            break started.elapsed();
        }
        let shown: Vec<(String, String)> = forecasts(&browser)
            .await
            .into_iter()
            .filter(|(rack, eta)| rack.starts_with('b') && is_forecast_text(eta))
            .collect();
        if forecast_seen.is_none() && shown.len() >= 3 {
            // What a wall screen shows at that moment, firing rules included (none of the inlet
            // threshold ones: checked just before).
            let path = browser.screenshot("demo-forecast.png").await;
            println!(
                "forecast on {} tiles: {shown:?}; firing: {firing:?}; {}",
                shown.len(),
                path.display()
            );
            forecast_seen = Some((started.elapsed(), shown));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (forecast_at, shown) =
        forecast_seen.expect("the failed row's tiles never showed a forecast before the threshold alert");
    println!(
        "forecast shown {forecast_at:?}, first inlet threshold alert {threshold_fired:?} after watching began"
    );
    assert!(forecast_at < threshold_fired);
    assert!(shown.iter().all(|(rack, _)| rack.starts_with('b')), "{shown:?}");
    assert!(demo.printed("cooling unit CRAC-2 failed"));

    // The floor plan during the failure: the failed row's heat, between all twenty racks.
    let hot = within(Duration::from_secs(30), || async {
        let tiles = browser.rack_tiles().await;
        let points = browser
            .eval("return Number((document.querySelector('canvas.heat') || {dataset: {}}).dataset.points || 0);", Vec::new())
            .await;
        points.as_u64() == Some(RACKS as u64)
            && tiles.iter().filter(|t| t.rack.starts_with('b') && t.band == "warn").count() >= 3
    })
    .await;
    assert!(
        hot.is_some(),
        "the failed row did not turn warm on the floor plan"
    );
    let path = browser.screenshot("demo-floor-heat.png").await;
    println!(
        "floor plan with the heat overlay during the failure: {}",
        path.display()
    );
    // The forecast rule warned too, in words.
    let warned = within(Duration::from_secs(20), || async {
        demo.printed("inlet rising — at this trend it passes the ASHRAE allowable limit")
    })
    .await;
    assert!(warned.is_some(), "the forecast rule did not warn");

    // The failed row's forecast alerts are one card, in words; pending alerts have no buttons.
    let grouped = within(Duration::from_secs(10), || async {
        let cards = browser
            .texts(".alert[data-rule='inlet_forecast'][data-state='firing'] strong")
            .await;
        cards.len() == 1 && cards[0] == "Inlet heading for the allowable limit"
    })
    .await;
    assert!(
        grouped.is_some(),
        "forecast cards: {:?}",
        browser.texts(".alert[data-rule='inlet_forecast']").await
    );
    assert!(
        browser
            .texts(".alert[data-state='pending'] button")
            .await
            .is_empty()
    );

    // The page opened at the address the demo printed with its token acknowledges an alert.
    let link = demo
        .lines
        .lock()
        .unwrap()
        .iter()
        .find_map(|line| {
            line.split("already filled in at ")
                .nth(1)
                .map(|l| l.trim_end_matches(')').to_owned())
        })
        .expect("the demo printed no token");
    browser.client.goto(&link).await.unwrap();
    browser.click(".alert button[data-action='ack']").await;
    let acknowledged = within(Duration::from_secs(10), || async {
        browser
            .texts("#alert-message")
            .await
            .iter()
            .any(|t| t == "Acknowledged.")
    })
    .await;
    assert!(
        acknowledged.is_some(),
        "acknowledging with the demo's token: {:?}",
        browser.texts("#alert-message").await
    );
}
