//! A real rate-limiting proxy (nginx `limit_req`) in front of a real InfluxDB: the proxy answers 429
//! with `Retry-After`, as seconds or as an HTTP-date; the gateway waits exactly that long before it
//! asks again, counts `rackwatch_write_failures_total{reason="throttled"}`, and every reading ends
//! up in the database once.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rackwatch_tests::fleet::{self, Load};
use rackwatch_tests::{Gateway, GatewaySettings, InfluxDb, Logged, Mosquitto, Nginx};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const DATABASE: &str = "rackwatch";

fn load(site: &str, rounds: u32) -> Load {
    Load {
        site: site.to_owned(),
        nodes: 4,
        readings_per_message: 10,
        rounds,
        interval: Duration::from_millis(100),
        unsynced_nodes: 0,
        client_id: format!("fleet-{site}"),
    }
}

/// Mosquitto, InfluxDB with the database, and nginx in front of it allowing one request a second,
/// answering 429 with the `Retry-After` that `retry_after` gives just before nginx starts.
async fn servers(retry_after: impl FnOnce() -> String) -> (Mosquitto, InfluxDb, Nginx, String) {
    let broker = Mosquitto::start();
    let db = InfluxDb::start();
    db.execute(&format!("CREATE DATABASE \"{DATABASE}\"")).await;
    let target = db.gateway_writer(DATABASE, "gateway").await;
    let proxy = Nginx::start_rate_limited(db.port(), "1r/s", &retry_after());
    (broker, db, proxy, target)
}

fn gateway(site: &str, broker: &Mosquitto, proxy: &Nginx, target: String) -> Gateway {
    let mut settings = GatewaySettings::new(site);
    settings.mqtt_url = Some(broker.url());
    settings.influx_url = Some(proxy.url());
    settings.influx_target = target;
    Gateway::start(GATEWAY, &settings)
}

/// Every reading in the database once, every line written once, throttling counted.
async fn assert_all_stored_once(db: &InfluxDb, gateway: &Gateway, site: &str, ledger: &fleet::Ledger) {
    let published = ledger.snapshot();
    let comparison = db
        .settle_and_compare(DATABASE, site, &published, Duration::from_secs(60))
        .await;
    assert!(comparison.is_exact(), "{comparison:?}");
    // A throttled request reached no database: each line was sent until stored once, never again.
    assert_eq!(
        gateway.metric("rackwatch_points_written_total") as usize,
        published.len()
    );
}

/// The requests that followed each 429, as (the 429, the next request).
fn after_each_throttle(requests: &[Logged]) -> Vec<(Logged, Logged)> {
    requests
        .windows(2)
        .filter(|pair| pair[0].status == 429)
        .map(|pair| (pair[0], pair[1]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_seconds_is_waited_out_and_nothing_is_lost_or_doubled() {
    let (broker, db, proxy, target) = servers(|| "2".to_owned()).await;
    let gateway = gateway("throttled", &broker, &proxy, target);
    let (ledger, publisher) = fleet::start(broker.port(), load("throttled", 80));
    publisher.await.unwrap();
    assert_all_stored_once(&db, &gateway, "throttled", &ledger).await;

    let requests = proxy.requests();
    let throttled = after_each_throttle(&requests);
    assert!(throttled.len() >= 2, "nginx throttled the gateway: {requests:?}");
    for (refused, next) in &throttled {
        assert!(
            next.at_ms - refused.at_ms >= 1990,
            "asked again {} ms after a 429 with Retry-After: 2 ({requests:?})",
            next.at_ms - refused.at_ms
        );
    }
    assert_eq!(
        gateway.metric("rackwatch_write_failures_total{reason=\"throttled\"}") as usize,
        requests.iter().filter(|r| r.status == 429).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_http_date_is_waited_for() {
    // nginx answers every 429 with the same date, 8 s from now (whole seconds, as HTTP-dates are):
    // the gateway must not ask again before it; afterwards the date is past, and it backs off.
    let mut until = UNIX_EPOCH;
    let (broker, db, proxy, target) = servers(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        until = UNIX_EPOCH + Duration::from_secs(now + 8);
        httpdate::fmt_http_date(until)
    })
    .await;
    let until_ms = i64::try_from(until.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let gateway = gateway("dated", &broker, &proxy, target);
    let (ledger, publisher) = fleet::start(broker.port(), load("dated", 80));
    publisher.await.unwrap();
    assert_all_stored_once(&db, &gateway, "dated", &ledger).await;

    let requests = proxy.requests();
    let throttled = after_each_throttle(&requests);
    let early: Vec<&(Logged, Logged)> = throttled
        .iter()
        .filter(|(refused, _)| refused.at_ms < until_ms - 1000)
        .collect();
    assert!(!early.is_empty(), "a 429 came well before the date: {requests:?}");
    for (refused, next) in early {
        assert!(
            next.at_ms >= until_ms,
            "asked again at {} after a 429 at {} saying Retry-After {until_ms}",
            next.at_ms,
            refused.at_ms
        );
    }
    assert!(gateway.metric("rackwatch_write_failures_total{reason=\"throttled\"}") >= 1.0);
}
