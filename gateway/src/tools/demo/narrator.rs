//! Tells a person at the terminal what happens in the demo, in the words of a facilities team:
//! alerts as the gateway publishes them, fan commands and the nodes' acknowledgements, read from
//! MQTT like any other client of the broker; and every half minute the room's inlet temperatures.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use rackwatch_protocols::topic::{self, NodeTopic};
use rackwatch_protocols::{Ack, AckResult, Alert, AlertState, Command, CommandKind, FanTarget, SiteId};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use super::room::{Hall, Layout};
use crate::shutdown::Shutdown;

/// Prints one line, prefixed with the time of day (UTC), on standard output.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}  {line}", time_of_day());
    let _ = out.flush();
}

/// `HH:MM:SS` in UTC.
fn time_of_day() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// How often the room's temperatures are summarised.
const ROOM_REPORT_EVERY: Duration = Duration::from_secs(30);

/// Follows the broker at `broker` and the simulated `hall` until shutdown.
pub async fn run(broker: SocketAddr, layout: Layout, hall: Hall, mut shutdown: Shutdown) {
    let Ok(site) = SiteId::new(super::room::SITE) else {
        return;
    };
    let mut options = MqttOptions::new("rackwatch-demo-narrator", broker.ip().to_string(), broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 64);
    let mut story = Story::new(layout.clone());
    let mut report = tokio::time::interval(ROOM_REPORT_EVERY);
    report.tick().await;
    loop {
        tokio::select! {
            () = shutdown.recv() => {
                let _ = client.disconnect().await;
                return;
            }
            _ = report.tick() => report_room(&layout, &hall),
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for filter in [
                        topic::alert_events(&site),
                        topic::node_filter(Some(&site), NodeTopic::Command),
                        topic::node_filter(Some(&site), NodeTopic::Ack),
                    ] {
                        let _ = client.subscribe(filter.as_str(), QoS::AtLeastOnce).await;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    story.message(&publish.topic, &publish.payload);
                }
                Ok(_) => {}
                // The event loop reconnects on the next poll; do not spin meanwhile.
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            },
        }
    }
}

/// One line per row: the coolest and warmest inlet in it, from the simulated hall.
fn report_room(layout: &Layout, hall: &Hall) {
    let rows: Vec<String> = layout
        .rows()
        .iter()
        .filter_map(|row| {
            let inlets: Vec<f32> = row
                .racks
                .iter()
                .filter_map(|rack| hall.with_rack(rack.index, |r| r.inlet_c()))
                .collect();
            let low = inlets.iter().copied().reduce(f32::min)?;
            let high = inlets.iter().copied().reduce(f32::max)?;
            Some(format!("row {} {low:.1}–{high:.1} °C", row.label))
        })
        .collect();
    if !rows.is_empty() {
        say(&format!("Inlet temperatures: {}", rows.join(", ")));
    }
}

/// What the narrator remembers between messages.
#[derive(Debug)]
struct Story {
    layout: Layout,
    firing: HashSet<String>,
    /// Fan command id -> node and duty, until the node acknowledges it.
    commands: HashMap<u32, (String, f32)>,
    /// The fan duty last told for each node.
    told_duty: HashMap<String, f32>,
}

impl Story {
    fn new(layout: Layout) -> Self {
        Story {
            layout,
            firing: HashSet::new(),
            commands: HashMap::new(),
            told_duty: HashMap::new(),
        }
    }

    fn message(&mut self, topic_name: &str, payload: &[u8]) {
        if topic_name.ends_with("/alerts/events") {
            if let Ok(alert) = Alert::decode(payload) {
                self.alert(&alert);
            }
            return;
        }
        let Ok(parsed) = topic::parse(topic_name) else {
            return;
        };
        match parsed.kind {
            NodeTopic::Command => {
                if let Ok(Command {
                    id,
                    kind:
                        CommandKind::SetFan {
                            target: FanTarget::DutyPercent(duty),
                            ..
                        },
                }) = Command::decode(payload)
                {
                    self.commands.insert(id, (parsed.node.to_owned(), duty));
                }
            }
            NodeTopic::Ack => {
                if let Ok(ack) = Ack::decode(payload) {
                    self.ack(&ack);
                }
            }
            NodeTopic::Telemetry | NodeTopic::Status | NodeTopic::Ota | NodeTopic::OtaAck => {}
        }
    }

    fn rack_of(&self, node: &str) -> String {
        self.layout
            .rack_of_node(node)
            .map_or_else(|| node.to_owned(), |rack| rack.label.clone())
    }

    fn ack(&mut self, ack: &Ack) {
        let Some((node, duty)) = self.commands.remove(&ack.id) else {
            return;
        };
        let rack = self.rack_of(&node);
        if ack.result != AckResult::Ok {
            say(&format!(
                "Fans of rack {rack}: the node refused the command ({:?})",
                ack.result
            ));
            return;
        }
        if self
            .told_duty
            .get(&node)
            .is_some_and(|told| (told - duty).abs() < 0.5)
        {
            return;
        }
        let verb = if duty > 60.0 { "raised to" } else { "returned to" };
        say(&format!("Fans of rack {rack} {verb} {duty:.0} % (acknowledged)"));
        self.told_duty.insert(node, duty);
    }

    fn alert(&mut self, alert: &Alert) {
        let key = alert.key.to_string();
        match alert.state {
            AlertState::Pending => {}
            AlertState::Firing => {
                let severity = format!("{:?}", alert.severity).to_uppercase();
                say(&format!("{severity}  {}", describe(alert)));
                self.firing.insert(key);
            }
            // Only what was told as firing is told as resolved.
            AlertState::Resolved if self.firing.remove(&key) => {
                say(&format!("Resolved  {}", describe(alert)));
                if self.firing.is_empty() {
                    say("All alerts resolved");
                }
            }
            AlertState::Resolved => {}
        }
    }
}

/// The alert in a facilities person's words, from its rule, place and value.
fn describe(alert: &Alert) -> String {
    let place = match (&alert.rack, &alert.row) {
        (Some(rack), _) => format!("Rack {rack}"),
        (None, Some(row)) => format!("Row {row}"),
        (None, None) => "The room".to_owned(),
    };
    let value = alert.value.map_or_else(String::new, |v| format!(" {v:.1} °C"));
    let threshold = alert.threshold.map_or_else(String::new, |t| format!("{t:.0}"));
    let rule = alert.rule.as_str();
    let resolved = alert.state == AlertState::Resolved;
    match rule {
        "inlet_hot" | "ashrae_inlet_high" if resolved => {
            format!("{place}: inlet back within the ASHRAE recommended range")
        }
        "inlet_hot" | "ashrae_inlet_high" => {
            format!("{place} inlet{value}: above the ASHRAE recommended {threshold} °C")
        }
        "ashrae_a1_inlet_high" if resolved => {
            format!("{place}: inlet back below the ASHRAE A1 allowable limit")
        }
        "ashrae_a1_inlet_high" => {
            format!("{place} inlet{value}: above the ASHRAE A1 allowable {threshold} °C — equipment at risk")
        }
        "inlet_forecast" if resolved => format!("{place}: inlet no longer heading for the allowable limit"),
        "inlet_forecast" => format!(
            "{place}: inlet rising — at this trend it passes the ASHRAE allowable limit within 15 minutes"
        ),
        "ashrae_rate_15m" | "ashrae_rate_1h" if resolved => {
            format!("{place}: inlet temperature steady again")
        }
        "ashrae_rate_15m" | "ashrae_rate_1h" => format!(
            "{place}: inlet temperature changing faster than ASHRAE allows ({threshold} °C per window)"
        ),
        "fan_stopped" if resolved => format!("{place}: fans turning again"),
        "fan_stopped" => format!(
            "{place}: a fan stopped ({} rpm) — the rack is losing airflow",
            alert.value.map_or(0.0, |v| v.round())
        ),
        "rack_power_lost" if resolved => format!("{place}: power back"),
        "rack_power_lost" => format!("{place}: power lost — the rack draws next to nothing"),
        _ => alert.summary.to_string(),
    }
}
