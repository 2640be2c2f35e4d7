//! What goes wrong in the demo's room, and when it is repaired. The scenario only touches the
//! simulated hardware; the nodes, gateway, alerts and fan commands react as they would for real.

use std::time::Duration;

use super::narrator::say;
use super::room::{Hall, Layout};
use crate::shutdown::Shutdown;

/// A failure the demo can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Nothing fails: the room runs normally.
    None,
    /// The cooling unit of the second row stops; its racks' inlets heat up.
    CracFailure,
    /// Four of the six fans of rack b03 stop; the rack recirculates its own exhaust.
    FanFailure,
    /// The power feed of rack a05 trips; the rack goes dark.
    PsuTrip,
}

/// Which row and rack each scenario breaks (indices into the demo [`Layout`]).
const FAILED_ROW: usize = 1;
const FAN_FAILURE_RACK: usize = 12;
const FAILED_FANS: [usize; 4] = [0, 1, 2, 3];
const PSU_TRIP_RACK: usize = 4;

/// A scenario with its timing, and what it acts on.
#[derive(Debug)]
pub struct Plan {
    pub scenario: Scenario,
    /// After the room is up, real time.
    pub start: Duration,
    /// How long the failure lasts, real time.
    pub duration: Duration,
    pub hall: Hall,
    pub room: Layout,
    pub shutdown: Shutdown,
}

/// Plays the scenario: waits, breaks, waits, repairs. Ends early on shutdown.
pub async fn play(mut plan: Plan) {
    if plan.scenario == Scenario::None {
        say("Scenario: none. The room runs normally.");
        return;
    }
    let what = match plan.scenario {
        Scenario::CracFailure => {
            let row = plan.room.rows().get(FAILED_ROW).map(|row| row.label.clone());
            format!("the cooling unit of row {} fails", row.unwrap_or_default())
        }
        Scenario::FanFailure => format!("fans of rack {} stop", rack_label(&plan.room, FAN_FAILURE_RACK)),
        Scenario::PsuTrip => format!(
            "the power feed of rack {} trips",
            rack_label(&plan.room, PSU_TRIP_RACK)
        ),
        Scenario::None => String::new(),
    };
    say(&format!(
        "Scenario: {what} in {} s, for {} s.",
        plan.start.as_secs(),
        plan.duration.as_secs()
    ));
    for (wait, step) in [(plan.start, Step::Break), (plan.duration, Step::Repair)] {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = plan.shutdown.recv() => return,
        }
        apply(&plan, step);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Break,
    Repair,
}

fn rack_label(room: &Layout, index: usize) -> String {
    room.racks()
        .into_iter()
        .find(|rack| rack.index == index)
        .map_or_else(|| format!("#{index}"), |rack| rack.label.clone())
}

fn apply(plan: &Plan, step: Step) {
    let hall = &plan.hall;
    let rack_label = |index: usize| rack_label(&plan.room, index);
    match (plan.scenario, step) {
        (Scenario::None, _) => {}
        (Scenario::CracFailure, Step::Break) => {
            hall.with(|hall| hall.fail_cooling(FAILED_ROW));
            if let Some(row) = plan.room.rows().get(FAILED_ROW) {
                say(&format!(
                    "Row {}: cooling unit {} failed — inlet temperatures rising",
                    row.label, row.cooling_unit
                ));
            }
        }
        (Scenario::CracFailure, Step::Repair) => {
            hall.with(|hall| hall.restore_cooling(FAILED_ROW));
            if let Some(row) = plan.room.rows().get(FAILED_ROW) {
                say(&format!(
                    "Cooling restored: {} of row {} runs again, supply air returning to 20 °C",
                    row.cooling_unit, row.label
                ));
            }
        }
        (Scenario::FanFailure, Step::Break) => {
            hall.with_rack(FAN_FAILURE_RACK, |rack| {
                FAILED_FANS.iter().for_each(|&f| rack.fail_fan(f))
            });
            say(&format!(
                "Rack {}: {} of its 6 fans stopped — it recirculates its own hot exhaust",
                rack_label(FAN_FAILURE_RACK),
                FAILED_FANS.len()
            ));
        }
        (Scenario::FanFailure, Step::Repair) => {
            hall.with_rack(FAN_FAILURE_RACK, |rack| {
                FAILED_FANS.iter().for_each(|&f| rack.restore_fan(f))
            });
            say(&format!(
                "Rack {}: fans replaced and running",
                rack_label(FAN_FAILURE_RACK)
            ));
        }
        (Scenario::PsuTrip, Step::Break) => {
            hall.with_rack(PSU_TRIP_RACK, |rack| rack.trip_psu());
            say(&format!(
                "Rack {}: power feed tripped — the rack's equipment is off",
                rack_label(PSU_TRIP_RACK)
            ));
        }
        (Scenario::PsuTrip, Step::Repair) => {
            hall.with_rack(PSU_TRIP_RACK, |rack| rack.reset_psu());
            say(&format!(
                "Rack {}: power feed reset, equipment back on",
                rack_label(PSU_TRIP_RACK)
            ));
        }
    }
}
