//! What `rackwatch demo` takes on its command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::scenario::Scenario;
use crate::config::parse_duration;

/// What `rackwatch demo` takes on its command line.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// What goes wrong in the room.
    #[arg(long, value_enum, default_value_t = Scenario::CracFailure)]
    pub scenario: Scenario,
    /// When the scenario's failure starts, after the room is up (real time).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub scenario_start: Duration,
    /// How long the failure lasts before it is repaired (real time).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub scenario_duration: Duration,
    /// How many times faster than real time the room's thermal model runs.
    #[arg(long, default_value_t = 10.0, value_parser = parse_speed)]
    pub speed: f64,
    /// How often each rack's sensor node samples and publishes, in milliseconds (real time).
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u32,
    /// Where the dashboard and the API listen.
    #[arg(long, default_value = "127.0.0.1:9180")]
    pub http: SocketAddr,
    /// Where the gateway keeps its spool and alert state.
    #[arg(long, default_value = "rackwatch-demo-data")]
    pub data_dir: PathBuf,
    /// Use this MQTT broker (`mqtt://host:port`) instead of the embedded one.
    #[arg(long)]
    pub broker: Option<String>,
    /// Port of the embedded broker on 127.0.0.1 (default: a free one).
    #[arg(long)]
    pub mqtt_port: Option<u16>,
    /// Also write every reading to this InfluxDB (v2 write API), e.g. `http://127.0.0.1:8086`;
    /// the token comes from the environment variable INFLUXDB_TOKEN.
    #[arg(long)]
    pub influx_url: Option<String>,
    #[arg(long, default_value = "rackwatch")]
    pub influx_org: String,
    #[arg(long, default_value = "rackwatch")]
    pub influx_bucket: String,
    /// Write through the InfluxDB v1 API (`/write`) to this database instead (InfluxDB 1.x, or 2.x
    /// with a DBRP mapping); user and password from INFLUXDB_USERNAME and INFLUXDB_PASSWORD.
    #[arg(long)]
    pub influx_database: Option<String>,
}

fn parse_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(speed) if (1.0..=1000.0).contains(&speed) => Ok(speed),
        _ => Err("a number from 1 to 1000".to_owned()),
    }
}
