//! One simulated rack: its air, its load, its fans and its hot-swap controller.

use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
use rackwatch_protocols::FanTarget;

use super::rng::SplitMix64;
use super::{
    AIR_DENSITY_KG_M3, AIR_SPECIFIC_HEAT_J_KG_K, BUSBAR_VOLTAGE_V, DESIGN_DELTA_T_K, RATED_IT_POWER_W, lag,
};
use crate::air;
use crate::max31785::FanStatus;
use crate::pmbus::{StatusFault, StatusWord};
use crate::sensor::{FanControl, Fault, Measurement, Sample, SensorSet};

/// Device indices of a simulated rack's [`SensorSet`], laid out like a real node's board table so
/// the same channel configuration samples either.
pub mod probe {
    /// TMP105 at the front door: [`crate::Measurement::Temperature`] of the inlet air.
    pub const INLET: u8 = 0;
    /// TMP105 at the rear door: [`crate::Measurement::Temperature`] of the exhaust air.
    pub const OUTLET: u8 = 1;
    /// SHT4x at the inlet: temperature, relative humidity and dew point.
    pub const HUMIDITY: u8 = 2;
    /// ADM1272 on the busbar feed: input/output voltage, current, power and its own temperature.
    pub const POWER: u8 = 3;
    /// MAX31785: speed, duty and commanded duty of fans 0 to 5.
    pub const FANS: u8 = 4;
    /// How many devices a simulated rack has.
    pub const COUNT: u8 = 5;
}

/// Fans per rack: the six channels of one MAX31785.
pub const FAN_COUNT: usize = 6;
/// Full speed of a rack fan, rpm (typical 80 mm high-static-pressure server fans).
const FAN_MAX_RPM: f32 = 12_000.0;
/// The duty at which the fans move the design airflow, %.
const DESIGN_DUTY_PERCENT: f32 = 60.0;
/// Fans reach a new speed within seconds.
const FAN_TIME_CONSTANT_S: f32 = 3.0;
/// Electrical power of one fan at full speed, W; it falls with the cube of speed (fan affinity laws).
const FAN_MAX_POWER_W: f32 = 40.0;
/// Airflow that moves the rated load at the design ΔT, m³/s (about 0.55 m³/s, 1170 CFM).
const DESIGN_AIRFLOW_M3_S: f32 =
    RATED_IT_POWER_W / (AIR_DENSITY_KG_M3 * AIR_SPECIFIC_HEAT_J_KG_K * DESIGN_DELTA_T_K);
/// Convection and leakage keep some air moving with every fan stopped.
const MIN_AIRFLOW_FRACTION: f32 = 0.05;
/// Servers throttle or shut down before their exhaust is more than this above their inlet, K.
const MAX_DELTA_T_K: f32 = 40.0;
/// Share of exhaust air drawn back into the inlet at design airflow: hot/cold aisles without
/// containment recirculate 5 to 15 % (Return/Supply Heat Index studies).
const BASE_RECIRCULATION: f32 = 0.08;
const MAX_RECIRCULATION: f32 = 0.35;
/// Inlet air mixes within tens of seconds; outlet lags behind the servers' thermal mass.
const INLET_TIME_CONSTANT_S: f32 = 30.0;
const OUTLET_TIME_CONSTANT_S: f32 = 60.0;
/// Power supplies follow a load change within seconds.
const LOAD_TIME_CONSTANT_S: f32 = 5.0;
/// Mean time between load steps (jobs starting and finishing), s.
const LOAD_STEP_MEAN_INTERVAL_S: f32 = 600.0;
/// Load steps land between these fractions of the rated load.
const LOAD_FRACTION_RANGE: (f32, f32) = (0.45, 0.95);
const INITIAL_LOAD_FRACTION: f32 = 0.7;
/// Resistance of the hot-swap FET and sense resistor, Ω: VOUT sits this × current below VIN.
const HOT_SWAP_RESISTANCE_OHM: f32 = 0.0008;
/// The TMP105's resolution at 12 bits, °C.
const TMP105_LSB_C: f32 = 0.0625;

/// Sensor noise, ± amplitude.
const TEMPERATURE_NOISE_C: f32 = 0.1;
const HUMIDITY_NOISE_RH: f32 = 0.8;
const POWER_NOISE_FRACTION: f32 = 0.01;
const VOLTAGE_NOISE_V: f32 = 0.05;

#[derive(Debug, Clone, Copy)]
struct Fan {
    duty_percent: f32,
    rpm: f32,
    dead: bool,
}

/// What the probes read in the last step (true values plus sensor noise).
#[derive(Debug, Clone, Copy, Default)]
struct Probes {
    inlet_c: f32,
    outlet_c: f32,
    humidity_temperature_c: f32,
    relative_humidity: f32,
    input_voltage_v: f32,
    output_voltage_v: f32,
    current_a: f32,
    power_w: f32,
    hot_swap_c: f32,
}

/// A simulated rack. Build it through [`super::DataHall`].
#[derive(Debug, Clone)]
pub struct SimulatedRack {
    row: usize,
    rng: SplitMix64,
    load_steps: bool,
    /// Inlet offset of this rack's position in the row (end-of-row racks recirculate more), K.
    position_offset_c: f32,
    inlet_c: f32,
    outlet_c: f32,
    dew_point_c: f32,
    load_target_w: f32,
    it_power_w: f32,
    next_load_step_s: f32,
    fans: [Fan; FAN_COUNT],
    airflow_m3_s: f32,
    psu_tripped: bool,
    /// Bit `n` set: device `n` does not answer.
    failed_probes: u8,
    probes: Probes,
}

impl SimulatedRack {
    pub(super) fn new(row: usize, seed: u64, load_steps: bool, supply_c: f32, dew_point_c: f32) -> Self {
        let mut rng = SplitMix64::new(seed);
        let position_offset_c = rng.uniform(0.0, 1.0);
        let next_load_step_s = rng.exponential(LOAD_STEP_MEAN_INTERVAL_S);
        let load = INITIAL_LOAD_FRACTION * RATED_IT_POWER_W;
        let fan = Fan {
            duty_percent: DESIGN_DUTY_PERCENT,
            rpm: DESIGN_DUTY_PERCENT / 100.0 * FAN_MAX_RPM,
            dead: false,
        };
        let mut rack = SimulatedRack {
            row,
            rng,
            load_steps,
            position_offset_c,
            inlet_c: supply_c,
            outlet_c: supply_c,
            dew_point_c,
            load_target_w: load,
            it_power_w: load,
            next_load_step_s,
            fans: [fan; FAN_COUNT],
            airflow_m3_s: DESIGN_AIRFLOW_M3_S,
            psu_tripped: false,
            failed_probes: 0,
            probes: Probes::default(),
        };
        // Start in steady state: inlet = supply + (r·ΔT + offset) / (1 − r).
        let delta_t = rack.delta_t_k();
        let r = rack.recirculation();
        rack.inlet_c = supply_c + (r * delta_t + position_offset_c) / (1.0 - r);
        rack.outlet_c = rack.inlet_c + delta_t;
        rack.measure();
        rack
    }

    pub(super) fn step(&mut self, h: f32, supply_c: f32, dew_point_c: f32) {
        self.dew_point_c = dew_point_c;
        if self.load_steps {
            self.next_load_step_s -= h;
            if self.next_load_step_s <= 0.0 {
                let (low, high) = LOAD_FRACTION_RANGE;
                self.load_target_w = self.rng.uniform(low, high) * RATED_IT_POWER_W;
                self.next_load_step_s = self.rng.exponential(LOAD_STEP_MEAN_INTERVAL_S);
            }
        }
        let load_target = if self.psu_tripped { 0.0 } else { self.load_target_w };
        self.it_power_w += (load_target - self.it_power_w) * lag(h, LOAD_TIME_CONSTANT_S);

        for fan in &mut self.fans {
            let target = if fan.dead {
                0.0
            } else {
                fan.duty_percent / 100.0 * FAN_MAX_RPM
            };
            fan.rpm += (target - fan.rpm) * lag(h, FAN_TIME_CONSTANT_S);
        }
        let rpm_sum: f32 = self.fans.iter().map(|f| f.rpm).sum();
        #[allow(clippy::cast_precision_loss, reason = "six fans")]
        let design_rpm_sum = FAN_COUNT as f32 * DESIGN_DUTY_PERCENT / 100.0 * FAN_MAX_RPM;
        self.airflow_m3_s = DESIGN_AIRFLOW_M3_S * (rpm_sum / design_rpm_sum).max(MIN_AIRFLOW_FRACTION);

        let r = self.recirculation();
        let inlet_target = (1.0 - r) * supply_c + r * self.outlet_c + self.position_offset_c;
        self.inlet_c += (inlet_target - self.inlet_c) * lag(h, INLET_TIME_CONSTANT_S);
        let outlet_target = self.inlet_c + self.delta_t_k();
        self.outlet_c += (outlet_target - self.outlet_c) * lag(h, OUTLET_TIME_CONSTANT_S);
        self.measure();
    }

    /// Air temperature rise across the rack for its heat and airflow.
    fn delta_t_k(&self) -> f32 {
        let mass_flow_heat = AIR_DENSITY_KG_M3 * AIR_SPECIFIC_HEAT_J_KG_K * self.airflow_m3_s;
        (self.heat_w() / mass_flow_heat).min(MAX_DELTA_T_K)
    }

    /// A rack moving less air than its design leaves more of its exhaust to curl back to the front.
    fn recirculation(&self) -> f32 {
        (BASE_RECIRCULATION * libm::sqrtf(DESIGN_AIRFLOW_M3_S / self.airflow_m3_s)).min(MAX_RECIRCULATION)
    }

    /// Takes this step's sensor readings.
    fn measure(&mut self) {
        let quantize = |c: f32| libm::roundf(c / TMP105_LSB_C) * TMP105_LSB_C;
        let inlet = self.inlet_c + self.rng.noise(TEMPERATURE_NOISE_C);
        let outlet = self.outlet_c + self.rng.noise(TEMPERATURE_NOISE_C);
        let humidity_temperature = self.inlet_c + self.rng.noise(TEMPERATURE_NOISE_C);
        let humidity = self.relative_humidity() + self.rng.noise(HUMIDITY_NOISE_RH);
        let input_voltage = BUSBAR_VOLTAGE_V + self.rng.noise(VOLTAGE_NOISE_V);
        let power = (self.input_power_w() * (1.0 + self.rng.noise(POWER_NOISE_FRACTION))).max(0.0);
        self.probes = Probes {
            inlet_c: quantize(inlet),
            outlet_c: quantize(outlet),
            humidity_temperature_c: humidity_temperature,
            relative_humidity: humidity.clamp(0.0, 100.0),
            input_voltage_v: input_voltage,
            output_voltage_v: if self.psu_tripped {
                0.0
            } else {
                input_voltage - self.current_a() * HOT_SWAP_RESISTANCE_OHM
            },
            current_a: power / input_voltage,
            power_w: power,
            hot_swap_c: self.inlet_c + 5.0 + 20.0 * self.it_power_w / RATED_IT_POWER_W,
        };
    }

    /// The row this rack stands in.
    pub fn row(&self) -> usize {
        self.row
    }

    /// Heat the rack puts into the air: IT load plus fan motors, W.
    pub fn heat_w(&self) -> f32 {
        self.it_power_w + self.fan_power_w()
    }

    /// Inlet air temperature (model value, no sensor noise), °C.
    pub fn inlet_c(&self) -> f32 {
        self.inlet_c
    }

    /// Exhaust air temperature, °C.
    pub fn outlet_c(&self) -> f32 {
        self.outlet_c
    }

    /// Relative humidity at the inlet, %RH.
    pub fn relative_humidity(&self) -> f32 {
        air::relative_humidity(self.inlet_c, self.dew_point_c)
    }

    pub fn dew_point_c(&self) -> f32 {
        self.dew_point_c
    }

    /// IT load, W.
    pub fn it_power_w(&self) -> f32 {
        self.it_power_w
    }

    /// Power through the hot-swap controller (the IT load; fans are fed separately), W.
    pub fn input_power_w(&self) -> f32 {
        if self.psu_tripped { 0.0 } else { self.it_power_w }
    }

    /// Busbar current, A.
    pub fn current_a(&self) -> f32 {
        self.input_power_w() / BUSBAR_VOLTAGE_V
    }

    /// Electrical power of the fans, W.
    pub fn fan_power_w(&self) -> f32 {
        self.fans
            .iter()
            .map(|f| {
                let speed = f.rpm / FAN_MAX_RPM;
                FAN_MAX_POWER_W * speed * speed * speed
            })
            .sum()
    }

    /// Air moved through the rack, m³/s.
    pub fn airflow_m3_s(&self) -> f32 {
        self.airflow_m3_s
    }

    pub fn fan_rpm(&self, fan: usize) -> Option<f32> {
        self.fans.get(fan).map(|f| f.rpm)
    }

    /// Commanded duty of `fan`, %.
    pub fn fan_duty(&self, fan: usize) -> Option<f32> {
        self.fans.get(fan).map(|f| f.duty_percent)
    }

    /// A fan turning at less than half its commanded speed is in fault, as a MAX31785 with its fault
    /// limit at half speed would report.
    pub fn fan_status(&self, fan: usize) -> Option<FanStatus> {
        self.fans.get(fan).map(|f| FanStatus {
            fault: f.rpm < 0.5 * f.duty_percent / 100.0 * FAN_MAX_RPM,
            warning: f.dead,
            speed_overridden: false,
        })
    }

    /// The hot-swap controller's STATUS_WORD: a tripped PSU reads OFF, overcurrent, power not good.
    pub fn hot_swap_status(&self) -> StatusWord {
        if self.psu_tripped {
            StatusWord::default()
                .with(StatusFault::IoutPout)
                .with(StatusFault::PowerNotGood)
                .with(StatusFault::Off)
                .with(StatusFault::IoutOvercurrent)
        } else {
            StatusWord::default()
        }
    }

    pub fn psu_tripped(&self) -> bool {
        self.psu_tripped
    }

    /// Sets the IT load target in W (reached within seconds) and stops random load steps.
    pub fn set_load_w(&mut self, watts: f32) {
        self.load_target_w = watts.max(0.0);
        self.load_steps = false;
    }

    /// Scenario: `fan` stops (bearing seized, cable pulled); it spins down within seconds.
    pub fn fail_fan(&mut self, fan: usize) {
        if let Some(f) = self.fans.get_mut(fan) {
            f.dead = true;
        }
    }

    pub fn restore_fan(&mut self, fan: usize) {
        if let Some(f) = self.fans.get_mut(fan) {
            f.dead = false;
        }
    }

    /// Scenario: the hot-swap controller trips on overcurrent and cuts the rack's load.
    pub fn trip_psu(&mut self) {
        self.psu_tripped = true;
    }

    /// Power cycles the hot-swap controller: the load comes back and STATUS_WORD clears.
    pub fn reset_psu(&mut self) {
        self.psu_tripped = false;
    }

    /// Scenario: device `device` ([`probe`]) stops answering on the bus (NACK).
    pub fn fail_probe(&mut self, device: u8) {
        self.failed_probes |= 1u8.checked_shl(u32::from(device)).unwrap_or(0);
    }

    pub fn restore_probe(&mut self, device: u8) {
        self.failed_probes &= !1u8.checked_shl(u32::from(device)).unwrap_or(0);
    }

    fn fan(&self, fan: u8) -> Result<&Fan, Fault> {
        self.fans.get(usize::from(fan)).ok_or(Fault::InvalidInput)
    }
}

impl SensorSet for SimulatedRack {
    fn sample(&mut self, device: usize, measurement: Measurement) -> Result<Sample, Fault> {
        let answers = u8::try_from(device)
            .ok()
            .and_then(|d| 1u8.checked_shl(u32::from(d)))
            .is_some_and(|bit| self.failed_probes & bit == 0);
        if !answers {
            return Err(Fault::Bus(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)));
        }
        let p = &self.probes;
        let value = match (u8::try_from(device).unwrap_or(u8::MAX), measurement) {
            (probe::INLET, Measurement::Temperature) => p.inlet_c,
            (probe::OUTLET, Measurement::Temperature) => p.outlet_c,
            (probe::HUMIDITY, Measurement::Temperature) => p.humidity_temperature_c,
            (probe::HUMIDITY, Measurement::RelativeHumidity) => p.relative_humidity,
            (probe::HUMIDITY, Measurement::DewPoint) => {
                air::dew_point(p.humidity_temperature_c, p.relative_humidity).ok_or(Fault::OutOfRange)?
            }
            (probe::POWER, Measurement::InputVoltage) => p.input_voltage_v,
            (probe::POWER, Measurement::OutputVoltage) => p.output_voltage_v,
            (probe::POWER, Measurement::Current) => p.current_a,
            (probe::POWER, Measurement::Power) => p.power_w,
            (probe::POWER, Measurement::Temperature) => p.hot_swap_c,
            (probe::FANS, Measurement::FanSpeed { fan }) => libm::roundf(self.fan(fan)?.rpm),
            (probe::FANS, Measurement::FanDuty { fan } | Measurement::FanDutyCommanded { fan }) => {
                self.fan(fan)?.duty_percent
            }
            _ => return Err(Fault::Unsupported),
        };
        Ok(measurement.sample(value))
    }
}

impl FanControl for SimulatedRack {
    /// A speed target is reached exactly (an ideal closed loop), capped at full speed.
    fn set_fan(&mut self, fan: u8, target: FanTarget) -> Result<(), Fault> {
        let duty = match target {
            FanTarget::DutyPercent(percent) if (0.0..=100.0).contains(&percent) => percent,
            FanTarget::DutyPercent(_) => return Err(Fault::InvalidInput),
            FanTarget::Rpm(rpm) => (f32::from(rpm) / FAN_MAX_RPM * 100.0).min(100.0),
        };
        let fan = self.fans.get_mut(usize::from(fan)).ok_or(Fault::InvalidInput)?;
        fan.duty_percent = duty;
        Ok(())
    }
}
