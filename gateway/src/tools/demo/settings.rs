//! The gateway configuration the demo runs with: written as the TOML a user would write
//! (gateway/README.md, gateway/ALERTS.md), then the alert rules' durations compressed by the room's
//! speed.

use std::fmt::Write as _;
use std::time::Duration;

use super::options::DemoOptions;
use super::room::Layout;
use crate::config::{Config, ConfigError};

/// The configuration for `options`, the room `layout`, the broker at `mqtt_url` and the API token
/// in `token_file`.
pub fn gateway_config(
    options: &DemoOptions,
    layout: &Layout,
    mqtt_url: &str,
    token_file: &std::path::Path,
) -> Result<Config, ConfigError> {
    let text = config_text(options, layout, mqtt_url, token_file);
    let mut config = Config::parse(&text)?;
    if let Some(alerts) = config.alerts.as_mut() {
        // Configured rules replace preset rules of the same name, so the compressed copies of every
        // preset rule take their place.
        alerts.rules = alerts
            .all_rules()
            .into_iter()
            .map(|mut rule| {
                rule.for_ = compress(rule.for_, options.speed);
                rule.clear_for = compress(rule.clear_for, options.speed);
                rule.window = rule.window.map(|w| compress(w, options.speed));
                rule.after = rule.after.map(|a| compress(a, options.speed));
                rule.within = rule.within.map(|w| compress(w, options.speed));
                rule
            })
            .collect();
    }
    // The tiles' time to the limit follows the room's clock like the rules do.
    config.http.forecast_window = compress(config.http.forecast_window, options.speed);
    // A new demo starts with no open incidents from the last one.
    let state = options.data_dir.join("spool").join("alerts-state.json");
    if state.exists() {
        let _ = std::fs::remove_file(state);
    }
    Ok(config)
}

/// A duration of the room's clock as real time.
fn compress(duration: Duration, speed: f64) -> Duration {
    duration.div_f64(speed.max(1.0))
}

fn config_text(
    options: &DemoOptions,
    layout: &Layout,
    mqtt_url: &str,
    token_file: &std::path::Path,
) -> String {
    let spool = options.data_dir.join("spool");
    let mut text = format!(
        r#"site = "{site}"

[mqtt]
url = "{mqtt_url}"
client_id = "rackwatch-demo"

[spool]
dir = {spool:?}
max_mb = 1024
segment_mb = 16

[http]
listen = "{http}"
window = "1h"
forecast_window = "10m"
token = {{ file = {token_file:?} }}

[alerts]
presets = ["ashrae-a1"]
preset_group_by = "row"
evaluation_interval = "1s"

# Acts early, per rack: an inlet above the ASHRAE recommended 27 °C for a minute of room time
# raises that rack's fans.
[[alerts.rules]]
name = "inlet_hot"
kind = "threshold"
quantity = "temperature"
side = "inlet"
above = 27.0
clear = 26.0
for = "1m"
clear_for = "2m"
group_by = "rack"

# Warns before the ASHRAE A1 allowable limit (32 °C) is reached: the hottest inlet's trend over
# ten minutes of room time reaches it within fifteen.
[[alerts.rules]]
name = "inlet_forecast"
kind = "forecast"
within = "15m"
window = "10m"
group_by = "rack"

# A rack that loses its feed (tripped hot-swap controller) draws next to nothing.
[[alerts.rules]]
name = "rack_power_lost"
kind = "threshold"
quantity = "power"
below = 500.0
clear = 1000.0
for = "30s"
clear_for = "1m"
severity = "critical"
group_by = "rack"

# A fan whose tachometer reads next to nothing has stopped: the rack loses airflow.
[[alerts.rules]]
name = "fan_stopped"
kind = "threshold"
quantity = "fan_speed"
below = 500.0
clear = 1000.0
for = "30s"
clear_for = "1m"
group_by = "rack"

[alerts.cooling]
rules = ["inlet_hot", "ashrae_a1_inlet_high"]
boost_duty_percent = 100.0
# The simulated racks' fans move their design airflow at 60 %.
normal_duty_percent = 60.0
fans = [0, 1, 2, 3, 4, 5]
ack_timeout = "3s"
retries = 2
"#,
        site = super::room::SITE,
        http = options.http,
    );
    match (&options.influx_url, &options.influx_database) {
        (Some(url), Some(database)) => {
            let _ = write!(
                text,
                "\n[influxdb]\nurl = {url:?}\napi = \"v1\"\ndatabase = {database:?}\n"
            );
            if let Some(user) = std::env::var_os("INFLUXDB_USERNAME") {
                let _ = write!(
                    text,
                    "username = {:?}\npassword = {{ env = \"INFLUXDB_PASSWORD\" }}\n",
                    user.to_string_lossy()
                );
            }
        }
        (Some(url), None) => {
            let _ = write!(
                text,
                "\n[influxdb]\nurl = {url:?}\norg = {org:?}\nbucket = {bucket:?}\n",
                org = options.influx_org,
                bucket = options.influx_bucket,
            );
            if std::env::var_os("INFLUXDB_TOKEN").is_some() {
                text.push_str("token = { env = \"INFLUXDB_TOKEN\" }\n");
            }
        }
        (None, _) => {}
    }
    for row in layout.rows() {
        for rack in &row.racks {
            let _ = write!(
                text,
                "\n[nodes.{node}]\nroom = {room:?}\nrow = {row:?}\nrack = {rack:?}\nu = 42\n\
                 placement = {{ humidity = \"inlet_middle\", psu_in = \"power\", fan0 = \"fan\" }}\n",
                node = rack.node,
                room = layout.room,
                row = row.label,
                rack = rack.label,
            );
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Args {
        #[command(flatten)]
        demo: DemoOptions,
    }

    #[test]
    fn demo_config_is_valid_with_inventory_and_compressed_alert_rules() {
        let dir = tempfile::tempdir().unwrap();
        let options = Args::parse_from([
            "demo",
            "--speed",
            "10",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--influx-url",
            "http://127.0.0.1:8086",
        ])
        .demo;
        let config = gateway_config(
            &options,
            &Layout::demo(),
            "mqtt://127.0.0.1:1883",
            &dir.path().join("token"),
        )
        .unwrap();
        assert_eq!(config.nodes.len(), 20);
        assert!(config.influxdb.is_some());
        let alerts = config.alerts.unwrap();
        let rule = |name: &str| alerts.rules.iter().find(|r| r.name.as_str() == name).unwrap();
        assert_eq!(rule("inlet_hot").for_, Duration::from_secs(6));
        // ASHRAE A1 allowable: 1 min of room time is 6 s at 10×.
        assert_eq!(rule("ashrae_a1_inlet_high").for_, Duration::from_secs(6));
        assert_eq!(rule("ashrae_inlet_high").clear_for, Duration::from_secs(30));
        // The forecast warns 15 min of room time ahead, from a 10 min trend.
        assert_eq!(rule("inlet_forecast").within, Some(Duration::from_secs(90)));
        assert_eq!(rule("inlet_forecast").window, Some(Duration::from_secs(60)));
        assert_eq!(config.http.forecast_window, Duration::from_secs(60));
    }

    #[test]
    fn demo_keeps_its_history_in_the_gateway_without_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let options = Args::parse_from(["demo", "--data-dir", dir.path().to_str().unwrap()]).demo;
        let config = gateway_config(
            &options,
            &Layout::demo(),
            "mqtt://127.0.0.1:1883",
            &dir.path().join("token"),
        )
        .unwrap();
        // Without [influxdb] the gateway's own history is the spool's sink: the spool drains.
        assert!(config.influxdb.is_none());
        assert!(config.history.enabled);
        // The token the demo prints makes Acknowledge and Silence work.
        assert!(config.http.token.is_some());
    }
}
