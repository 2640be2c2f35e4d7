//! Runs simulated rack nodes against an MQTT broker until Ctrl-C.
//!
//! `cargo run -p rackwatch-firmware --features host --example sim_nodes -- [BROKER] [NODES] [INTERVAL_MS]`
//! (defaults `127.0.0.1:1883`, 40 nodes, 1000 ms). The hall is stepped once a second; watch with
//! `mosquitto_sub -t 'rackwatch/v1/#' -v`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rackwatch_firmware::host::{HostNodeConfig, SimRack, spawn_node};
use rackwatch_hardware::sim::{DataHall, HallConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let broker = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:1883".to_owned())
        .parse()?;
    let count: usize = args.next().map_or(Ok(40), |a| a.parse())?;
    let interval_ms: u32 = args.next().map_or(Ok(1_000), |a| a.parse())?;

    let racks_per_row = 20;
    let hall = Arc::new(Mutex::new(DataHall::new(&HallConfig {
        rows: count.div_ceil(racks_per_row).max(1),
        racks_per_row,
        ..HallConfig::default()
    })));
    let stepper = {
        let hall = Arc::clone(&hall);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Ok(mut hall) = hall.lock() {
                    hall.step(Duration::from_secs(1));
                }
            }
        })
    };
    let mut nodes = Vec::with_capacity(count);
    for index in 0..count {
        let config = HostNodeConfig::new("lab", &format!("sim{index:03}"))?.with_interval_ms(interval_ms);
        nodes.push(spawn_node(config, SimRack::new(Arc::clone(&hall), index), broker));
    }
    eprintln!("{count} nodes publishing to {broker} every {interval_ms} ms; Ctrl-C stops them");
    tokio::signal::ctrl_c().await?;
    let delivered: u64 = nodes.iter().map(|n| n.status().delivered()).sum();
    for node in nodes {
        node.stop().await;
    }
    stepper.abort();
    eprintln!("stopped; {delivered} telemetry messages acknowledged by the broker");
    Ok(())
}
