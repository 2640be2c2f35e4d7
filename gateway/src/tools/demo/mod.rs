//! `rackwatch demo`: the whole system in one process, with nothing installed by hand.
//!
//! ```text
//! room (simulated hall, one host node per rack) ─MQTT─▶ broker (embedded rumqttd, or --broker)
//!                                                          │
//!                  narrator (prints what happens) ◀──MQTT──┤
//!                                                          ▼
//!                      gateway (pipeline::run: spool, alerts, fan commands, dashboard)
//! ```
//!
//! The scenario plays a failure on the simulated hall; everything else reacts to it exactly as it
//! would to real hardware, over real MQTT. The hall runs `--speed` times faster than real time, and
//! the alert rules' durations are compressed by the same factor ([`settings`]), so a demo shows in
//! minutes what a real cooling failure does in half an hour.

mod broker;
mod narrator;
mod options;
mod room;
mod scenario;
mod settings;
mod token;

use std::process::ExitCode;
use std::time::Duration;

use crate::{pipeline, shutdown};

pub use options::DemoOptions;
pub use room::SITE;
pub use scenario::Scenario;

/// Runs the demo until Ctrl-C or SIGTERM, then stops the nodes, the gateway and the broker.
pub fn main(options: DemoOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            narrator::say(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(options));
    // The embedded broker's threads are not ours to join; the process ends with them.
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

async fn run(options: DemoOptions) -> ExitCode {
    let broker = match &options.broker {
        Some(url) => broker::External::resolve(url).await,
        None => broker::start_embedded(options.mqtt_port).await,
    };
    let broker = match broker {
        Ok(broker) => broker,
        Err(e) => {
            narrator::say(&format!("cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let room = room::Layout::demo();
    let (token, token_file) = match token::issue(&options.data_dir) {
        Ok(issued) => issued,
        Err(e) => {
            narrator::say(&format!("cannot write the demo's API token: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let config = match settings::gateway_config(&options, &room, &broker.url, &token_file) {
        Ok(config) => config,
        Err(e) => {
            narrator::say(&format!("cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };

    let (trigger, _) = shutdown::channel();
    let gateway = tokio::spawn(pipeline::run(config, trigger.clone()));
    narrator::say(&format!(
        "rackwatch demo: {} racks in {} rows, broker {}, readings every {} ms, room clock {}× real time",
        room.racks().len(),
        room.rows().len(),
        broker.url,
        options.interval_ms,
        options.speed
    ));
    let hall = room::Hall::new(&room);
    let narration = tokio::spawn(narrator::run(
        broker.addr,
        room.clone(),
        hall.clone(),
        trigger.subscribe(),
    ));
    let stepper = tokio::spawn(hall.clone().run(options.speed, trigger.subscribe()));
    let nodes = match hall.spawn_nodes(&room, broker.addr, options.interval_ms) {
        Ok(nodes) => nodes,
        Err(e) => {
            narrator::say(&format!("cannot start the sensor nodes: {e}"));
            trigger.trigger();
            let _ = gateway.await;
            return ExitCode::FAILURE;
        }
    };
    narrator::say(&format!("Dashboard: http://{}/", options.http));
    narrator::say(&format!(
        "Token for Acknowledge and Silence: {token} (already filled in at http://{}/#token={token})",
        options.http
    ));
    narrator::say("Press Ctrl-C to stop.");
    let play = tokio::spawn(scenario::play(scenario::Plan {
        scenario: options.scenario,
        start: options.scenario_start,
        duration: options.scenario_duration,
        hall: hall.clone(),
        room: room.clone(),
        shutdown: trigger.subscribe(),
    }));

    let mut gateway = gateway;
    let early_end = tokio::select! {
        () = shutdown::wait_for_signal() => None,
        ended = &mut gateway => Some(ended),
    };
    narrator::say("Stopping: sensor nodes sign off, the gateway commits its spool.");
    futures_util::future::join_all(nodes.into_iter().map(|node| node.stop())).await;
    trigger.trigger();
    let ended = match early_end {
        Some(ended) => ended,
        None => gateway.await,
    };
    let _ = play.await;
    let _ = stepper.await;
    let _ = narration.await;
    match ended {
        Ok(Ok(())) => {
            narrator::say("Stopped.");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            narrator::say(&format!("the gateway could not run: {e}"));
            ExitCode::FAILURE
        }
        Err(e) => {
            narrator::say(&format!("the gateway failed: {e}"));
            ExitCode::FAILURE
        }
    }
}
