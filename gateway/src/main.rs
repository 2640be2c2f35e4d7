//! `rackwatch`: the gateway's command line.

use clap::Parser;

/// rackwatch watches the racks of a data centre: it takes readings from sensor nodes over MQTT or
/// serial, stores them in InfluxDB and raises cooling and power alerts.
#[derive(Debug, Parser)]
#[command(name = "rackwatch", version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
