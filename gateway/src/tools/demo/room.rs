//! The demo's room: its layout (rows, cooling units, racks, node ids) and the simulated hall that
//! the sensor nodes read, stepped faster than real time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rackwatch_firmware::host::{HostNodeConfig, NodeHandle, SimRack, rack_channels, spawn_node};
use rackwatch_firmware::sampling::ChannelSetup;
use rackwatch_hardware::sim::{DataHall, HallConfig, SimulatedRack, probe};
use rackwatch_protocols::{ChannelName, IdError};

use crate::shutdown::Shutdown;

/// The site every demo node publishes under.
pub const SITE: &str = "demo";

/// The room the demo simulates: 2 rows of 10 racks, each row cooled by its own unit.
pub const ROWS: usize = 2;
pub const RACKS_PER_ROW: usize = 10;

/// One row: its label, its cooling unit and its racks.
#[derive(Debug, Clone)]
pub struct RowLayout {
    pub label: String,
    pub cooling_unit: String,
    pub racks: Vec<RackLayout>,
}

/// One rack and the sensor node mounted in it.
#[derive(Debug, Clone)]
pub struct RackLayout {
    pub label: String,
    pub node: String,
    /// Row-major index in the simulated hall.
    pub index: usize,
}

/// Where everything in the room is.
#[derive(Debug, Clone)]
pub struct Layout {
    pub room: String,
    rows: Vec<RowLayout>,
}

impl Layout {
    /// Rows `r01`, `r02` cooled by `CRAC-1`, `CRAC-2`; racks `a01`…`a10` and `b01`…`b10`, each with
    /// node `node-{rack}`.
    pub fn demo() -> Self {
        let rows = (0..ROWS)
            .map(|row| {
                let letter = char::from(b'a'.saturating_add(u8::try_from(row).unwrap_or(0)));
                RowLayout {
                    label: format!("r{:02}", row + 1),
                    cooling_unit: format!("CRAC-{}", row + 1),
                    racks: (0..RACKS_PER_ROW)
                        .map(|position| {
                            let label = format!("{letter}{:02}", position + 1);
                            RackLayout {
                                node: format!("node-{label}"),
                                label,
                                index: row * RACKS_PER_ROW + position,
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        Layout {
            room: "hall-a".to_owned(),
            rows,
        }
    }

    pub fn rows(&self) -> &[RowLayout] {
        &self.rows
    }

    pub fn racks(&self) -> Vec<&RackLayout> {
        self.rows.iter().flat_map(|row| &row.racks).collect()
    }

    /// The rack a node is mounted in.
    pub fn rack_of_node(&self, node: &str) -> Option<&RackLayout> {
        self.rows
            .iter()
            .flat_map(|row| &row.racks)
            .find(|rack| rack.node == node)
    }
}

/// The channels of a demo node: those of firmware's simulated rack, with the one inlet probe
/// reported as three (top, middle, bottom), as a rack front is usually instrumented. The
/// simulation has one inlet temperature per rack, so the three read the same air.
fn demo_channels() -> Vec<ChannelSetup> {
    rack_channels()
        .into_iter()
        .flat_map(|setup| {
            if setup.channel.device != probe::INLET {
                return vec![setup];
            }
            ["inlet_top", "inlet_middle", "inlet_bottom"]
                .into_iter()
                .filter_map(|name| {
                    let mut probe = setup.clone();
                    probe.channel.name = ChannelName::new(name).ok()?;
                    Some(probe)
                })
                .collect()
        })
        .collect()
}

/// The simulated hall, shared by the nodes (which sample it), the scenario (which breaks it) and
/// the stepper (which moves its clock).
#[derive(Debug, Clone)]
pub struct Hall(Arc<Mutex<DataHall>>);

/// How often the stepper advances the model, in real time.
const STEP_EVERY: Duration = Duration::from_millis(250);

impl Hall {
    pub fn new(layout: &Layout) -> Self {
        Hall(Arc::new(Mutex::new(DataHall::new(&HallConfig {
            rows: layout.rows().len(),
            racks_per_row: RACKS_PER_ROW,
            ..HallConfig::default()
        }))))
    }

    /// Runs `change` on the hall; `None` if another task panicked while holding it.
    pub fn with<R>(&self, change: impl FnOnce(&mut DataHall) -> R) -> Option<R> {
        self.0.lock().ok().map(|mut hall| change(&mut hall))
    }

    /// Runs `change` on one rack of the hall.
    pub fn with_rack<R>(&self, index: usize, change: impl FnOnce(&mut SimulatedRack) -> R) -> Option<R> {
        self.with(|hall| hall.racks_mut().get_mut(index).map(change))
            .flatten()
    }

    /// Advances the model `speed` times faster than real time until shutdown.
    pub async fn run(self, speed: f64, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(STEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let step = STEP_EVERY.mul_f64(speed);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.with(|hall| hall.step(step));
                }
                () = shutdown.recv() => return,
            }
        }
    }

    /// One host node per rack, publishing to `broker` every `interval_ms`.
    pub fn spawn_nodes(
        &self,
        layout: &Layout,
        broker: SocketAddr,
        interval_ms: u32,
    ) -> Result<Vec<NodeHandle>, IdError> {
        layout
            .racks()
            .into_iter()
            .map(|rack| {
                let mut config = HostNodeConfig::new(SITE, &rack.node)?.with_interval_ms(interval_ms);
                config.channels = demo_channels();
                Ok(spawn_node(
                    config,
                    SimRack::new(Arc::clone(&self.0), rack.index),
                    broker,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_room_has_twenty_racks_with_their_own_nodes() {
        let layout = Layout::demo();
        let racks = layout.racks();
        assert_eq!(racks.len(), 20);
        assert_eq!(racks[0].label, "a01");
        assert_eq!(racks[12].label, "b03");
        assert_eq!(layout.rack_of_node("node-b03").map(|r| r.index), Some(12));
        assert_eq!(layout.rows()[1].cooling_unit, "CRAC-2");
    }

    #[test]
    fn demo_nodes_report_three_inlet_probes() {
        let names: Vec<String> = demo_channels()
            .iter()
            .map(|c| c.channel.name.to_string())
            .collect();
        for name in [
            "inlet_top",
            "inlet_middle",
            "inlet_bottom",
            "outlet",
            "humidity",
            "psu_in",
            "fan0",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n == "inlet"));
    }
}
