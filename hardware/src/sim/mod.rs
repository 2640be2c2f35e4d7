//! A simulated data hall: rows of racks cooled by one cooling unit (CRAH) per row, for the
//! gateway's demo, load tests and tests. Feature `std`.
//!
//! Each [`SimulatedRack`] is a [`crate::SensorSet`] with the device layout of a real node
//! ([`probe`]), and a [`crate::FanControl`], so the firmware's sampling code and the gateway's demo
//! read it exactly like hardware. It also has plain accessors (`inlet_c()`, `input_power_w()`...).
//!
//! The model, per time step (explicit `dt`, no wall clock; deterministic for a seed):
//! - **Supply air** of a row relaxes to the cooling unit's setpoint. When the unit fails
//!   ([`DataHall::fail_cooling`]), the row's air and equipment heat up with the row's IT load and
//!   lose heat to the rest of the building: C·dT/dt = Q_row − UA·(T − T_building).
//! - **Inlet** = (1 − r)·supply + r·outlet + a fixed per-rack offset (position in the row): `r`, the
//!   fraction of hot exhaust recirculated to the front, grows when the rack moves less air.
//! - **Outlet** = inlet + ΔT with ΔT = P / (ρ·c_p·V̇): IT power over airflow.
//! - **Airflow** is proportional to fan speed (fan affinity law); fans follow their duty command
//!   with a lag, a dead fan spins down ([`SimulatedRack::fail_fan`]).
//! - **Humidity**: the supply air's dew point is set by the room (it drifts slowly); the relative
//!   humidity at the inlet follows from it ([`crate::air`]).
//! - **Power**: IT load with measurement noise and random load steps (jobs starting and ending),
//!   plus fan power (cube of speed); a tripped hot-swap ([`SimulatedRack::trip_psu`]) drops the
//!   rack's load to zero and flags STATUS_WORD.
//!
//! Temperatures, flows and powers are first-order lags integrated with explicit Euler steps of at
//! most [`MAX_SUBSTEP_S`]; one rack step costs tens of nanoseconds.

mod rack;
mod rng;

use core::time::Duration;
use std::vec::Vec;

pub use rack::{FAN_COUNT, SimulatedRack, probe};
use rng::SplitMix64;

/// Density of air at 20 °C and sea level, kg/m³ (ASHRAE Handbook—Fundamentals, ch. 1).
pub const AIR_DENSITY_KG_M3: f32 = 1.2;
/// Specific heat of air at constant pressure, J/(kg·K) (ASHRAE Handbook—Fundamentals, ch. 1).
pub const AIR_SPECIFIC_HEAT_J_KG_K: f32 = 1005.0;
/// Cooling unit supply-air setpoint, °C: CRAH supply air is typically 18 to 22 °C, inside the
/// ASHRAE TC 9.9 recommended inlet envelope of 18 to 27 °C (Thermal Guidelines for Data Processing
/// Environments, 5th ed.).
pub const SUPPLY_SETPOINT_C: f32 = 20.0;
/// Dew point of the room air, °C: inside the ASHRAE recommended range (−9 to 15 °C dew point).
pub const ROOM_DEW_POINT_C: f32 = 9.0;
/// Rated IT load of a rack, W: typical air-cooled racks draw 5 to 10 kW (Uptime Institute annual
/// surveys put the average near 8 kW).
pub const RATED_IT_POWER_W: f32 = 8_000.0;
/// Air temperature rise across the IT equipment at rated load and design airflow, K: servers are
/// designed for 10 to 15 K (ASHRAE TC 9.9); 12 K fixes the design airflow.
pub const DESIGN_DELTA_T_K: f32 = 12.0;
/// Busbar voltage, V: a 48 V-class rack busbar (OCP Open Rack) regulated at 54 V.
pub const BUSBAR_VOLTAGE_V: f32 = 54.0;
/// Temperature of the building around a row whose cooling has failed, °C.
pub const BUILDING_TEMPERATURE_C: f32 = 24.0;
/// Heat capacity of the air and equipment around one rack, J/K. With [`RATED_IT_POWER_W`] it gives
/// an initial rise of about 2 K/min after a cooling failure, within the 1 to 5 K/min that Schneider
/// Electric White Paper 179 ("Data Center Temperature Rise During a Cooling System Outage") reports
/// for rooms of 5 to 10 kW racks.
pub const ZONE_HEAT_CAPACITY_PER_RACK_J_K: f32 = 250_000.0;
/// Heat a failed row loses to the building per rack, W/K: at rated load its air settles about
/// 25 K above the building, where servers would shut down.
pub const ZONE_LOSS_PER_RACK_W_K: f32 = RATED_IT_POWER_W / 25.0;
/// Time constant of the cooling unit's supply-air control loop, s.
pub const SUPPLY_TIME_CONSTANT_S: f32 = 120.0;
/// Longest explicit integration step, s; longer steps are split.
pub const MAX_SUBSTEP_S: f32 = 2.0;

/// The hall to build.
#[derive(Debug, Clone, PartialEq)]
pub struct HallConfig {
    pub rows: usize,
    pub racks_per_row: usize,
    /// Same seed, same commands, same steps: same readings.
    pub seed: u64,
    /// Random load steps (mean interval 10 min); off for steady-state tests.
    pub load_steps: bool,
}

impl Default for HallConfig {
    /// The gateway demo: 2 rows of 10 racks.
    fn default() -> Self {
        HallConfig {
            rows: 2,
            racks_per_row: 10,
            seed: 1,
            load_steps: true,
        }
    }
}

/// One row's cooling.
#[derive(Debug, Clone)]
struct Row {
    supply_c: f32,
    cooling_failed: bool,
    /// Heat the row's racks put into the air in the last step, W.
    heat_w: f32,
    dew_point_c: f32,
    racks: usize,
}

/// The simulated hall: rows, their cooling units and their racks.
#[derive(Debug, Clone)]
pub struct DataHall {
    rows: Vec<Row>,
    /// Row-major: rack `i` is in row `i / racks_per_row`.
    racks: Vec<SimulatedRack>,
    racks_per_row: usize,
    rng: SplitMix64,
    elapsed: Duration,
}

impl DataHall {
    /// A hall in steady state: supply at setpoint, every rack at its initial load.
    pub fn new(config: &HallConfig) -> Self {
        let mut rng = SplitMix64::new(config.seed);
        let racks_per_row = config.racks_per_row.max(1);
        let rows: Vec<Row> = (0..config.rows)
            .map(|_| Row {
                supply_c: SUPPLY_SETPOINT_C,
                cooling_failed: false,
                heat_w: 0.0,
                dew_point_c: ROOM_DEW_POINT_C,
                racks: racks_per_row,
            })
            .collect();
        let racks = (0..rows.len() * racks_per_row)
            .map(|index| {
                SimulatedRack::new(
                    index / racks_per_row,
                    rng.next_u64(),
                    config.load_steps,
                    SUPPLY_SETPOINT_C,
                    ROOM_DEW_POINT_C,
                )
            })
            .collect();
        let mut hall = DataHall {
            rows,
            racks,
            racks_per_row,
            rng,
            elapsed: Duration::ZERO,
        };
        hall.sum_row_heat();
        hall
    }

    /// Advances the model by `dt`.
    pub fn step(&mut self, dt: Duration) {
        let total = dt.as_secs_f32();
        // At least one substep; the count is small and positive.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "small positive"
        )]
        let substeps = libm::ceilf(total / MAX_SUBSTEP_S).max(1.0) as u32;
        #[allow(clippy::cast_precision_loss, reason = "small count")]
        let h = total / substeps as f32;
        for _ in 0..substeps {
            self.substep(h);
        }
        self.elapsed += dt;
    }

    fn substep(&mut self, h: f32) {
        for row in &mut self.rows {
            #[allow(clippy::cast_precision_loss, reason = "rack counts are small")]
            let racks = row.racks as f32;
            if row.cooling_failed {
                let capacity = ZONE_HEAT_CAPACITY_PER_RACK_J_K * racks;
                let loss = ZONE_LOSS_PER_RACK_W_K * racks * (row.supply_c - BUILDING_TEMPERATURE_C);
                row.supply_c += (row.heat_w - loss) / capacity * h;
            } else {
                row.supply_c += (SUPPLY_SETPOINT_C - row.supply_c) * lag(h, SUPPLY_TIME_CONSTANT_S);
            }
            // The room's moisture drifts slowly, bounded around its setpoint.
            row.dew_point_c = (row.dew_point_c + self.rng.noise(0.02 * h))
                .clamp(ROOM_DEW_POINT_C - 1.5, ROOM_DEW_POINT_C + 1.5);
        }
        for rack in &mut self.racks {
            if let Some(row) = self.rows.get(rack.row()) {
                rack.step(h, row.supply_c, row.dew_point_c);
            }
        }
        self.sum_row_heat();
    }

    fn sum_row_heat(&mut self) {
        for row in &mut self.rows {
            row.heat_w = 0.0;
        }
        for rack in &self.racks {
            if let Some(row) = self.rows.get_mut(rack.row()) {
                row.heat_w += rack.heat_w();
            }
        }
    }

    /// Time simulated so far.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    pub fn racks_per_row(&self) -> usize {
        self.racks_per_row
    }

    /// Every rack, row by row.
    pub fn racks(&self) -> &[SimulatedRack] {
        &self.racks
    }

    pub fn racks_mut(&mut self) -> &mut [SimulatedRack] {
        &mut self.racks
    }

    /// The rack at `position` (0-based) in `row`.
    pub fn rack(&self, row: usize, position: usize) -> Option<&SimulatedRack> {
        self.rack_index(row, position).and_then(|i| self.racks.get(i))
    }

    pub fn rack_mut(&mut self, row: usize, position: usize) -> Option<&mut SimulatedRack> {
        self.rack_index(row, position).and_then(|i| self.racks.get_mut(i))
    }

    fn rack_index(&self, row: usize, position: usize) -> Option<usize> {
        (row < self.rows.len() && position < self.racks_per_row)
            .then_some(row * self.racks_per_row + position)
    }

    /// Supply air temperature of `row`'s cooling unit, °C.
    pub fn supply_c(&self, row: usize) -> Option<f32> {
        self.rows.get(row).map(|r| r.supply_c)
    }

    /// Scenario: `row`'s cooling unit stops (compressor trip, chilled-water valve failure).
    pub fn fail_cooling(&mut self, row: usize) {
        if let Some(r) = self.rows.get_mut(row) {
            r.cooling_failed = true;
        }
    }

    /// Scenario: `row`'s cooling unit runs again and pulls the supply air back to setpoint.
    pub fn restore_cooling(&mut self, row: usize) {
        if let Some(r) = self.rows.get_mut(row) {
            r.cooling_failed = false;
        }
    }

    pub fn cooling_failed(&self, row: usize) -> bool {
        self.rows.get(row).is_some_and(|r| r.cooling_failed)
    }
}

/// The fraction of the way a first-order lag with time constant `tau` moves in `h` seconds
/// (explicit Euler, capped at 1 so a long step settles instead of overshooting).
pub(crate) fn lag(h: f32, tau: f32) -> f32 {
    (h / tau).min(1.0)
}
