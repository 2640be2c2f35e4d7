//! The simulated hall: steady state, determinism and the scenarios the demo and tests rely on.
#![cfg(feature = "std")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use core::time::Duration;

use rackwatch_hardware::sim::{
    DataHall, HallConfig, RATED_IT_POWER_W, SUPPLY_SETPOINT_C, SimulatedRack, probe,
};
use rackwatch_hardware::{Channel, FanControl, Fault, Measurement, SensorSet};
use rackwatch_protocols::{ChannelName, FanTarget, ReadingStatus};

const SECOND: Duration = Duration::from_secs(1);

fn steady_hall(rows: usize, racks_per_row: usize) -> DataHall {
    DataHall::new(&HallConfig {
        rows,
        racks_per_row,
        seed: 7,
        load_steps: false,
    })
}

fn run(hall: &mut DataHall, seconds: u32) {
    for _ in 0..seconds {
        hall.step(SECOND);
    }
}

fn rack(hall: &DataHall, row: usize, position: usize) -> &SimulatedRack {
    hall.rack(row, position).unwrap()
}

fn set_all_fans(hall: &mut DataHall, duty: f32) {
    let r = hall.rack_mut(0, 0).unwrap();
    for fan in 0..6 {
        r.set_fan(fan, FanTarget::DutyPercent(duty)).unwrap();
    }
}

#[test]
fn steady_state_is_inside_the_ashrae_envelope_with_a_design_delta_t_at_rated_load() {
    let mut hall = steady_hall(1, 1);
    hall.rack_mut(0, 0).unwrap().set_load_w(RATED_IT_POWER_W);
    run(&mut hall, 1200);
    let r = rack(&hall, 0, 0);
    // ASHRAE TC 9.9 recommended inlet: 18 to 27 °C.
    assert!((18.0..=27.0).contains(&r.inlet_c()), "inlet {}", r.inlet_c());
    let delta_t = r.outlet_c() - r.inlet_c();
    assert!((11.0..=13.5).contains(&delta_t), "ΔT {delta_t}");
    assert!(
        (25.0..=60.0).contains(&r.relative_humidity()),
        "RH {}",
        r.relative_humidity()
    );
}

#[test]
fn same_seed_and_steps_give_the_same_readings_and_another_seed_does_not() {
    let readings = |seed| {
        let mut hall = DataHall::new(&HallConfig {
            seed,
            ..HallConfig::default()
        });
        for _ in 0..900 {
            hall.step(Duration::from_secs(2));
        }
        hall.racks_mut()
            .iter_mut()
            .map(|r| {
                r.sample(usize::from(probe::POWER), Measurement::Power)
                    .unwrap()
                    .value
            })
            .collect::<Vec<f32>>()
    };
    assert_eq!(readings(3), readings(3));
    assert_ne!(readings(3), readings(4));
}

#[test]
fn the_demo_hall_has_two_rows_of_ten_racks_with_varied_loads() {
    let mut hall = DataHall::new(&HallConfig::default());
    assert_eq!(
        (hall.rows(), hall.racks_per_row(), hall.racks().len()),
        (2, 10, 20)
    );
    run(&mut hall, 3600);
    let loads: Vec<f32> = hall.racks().iter().map(SimulatedRack::it_power_w).collect();
    let min = loads.iter().copied().fold(f32::MAX, f32::min);
    let max = loads.iter().copied().fold(f32::MIN, f32::max);
    assert!(max - min > 500.0, "load steps spread the racks: {loads:?}");
    assert!(
        loads
            .iter()
            .all(|&w| (0.4 * RATED_IT_POWER_W..=RATED_IT_POWER_W).contains(&w))
    );
}

#[test]
fn cooling_failure_heats_the_row_at_a_plausible_rate_and_recovery_brings_it_back() {
    let mut hall = steady_hall(2, 10);
    run(&mut hall, 600);
    let before = rack(&hall, 0, 3).inlet_c();
    let other_row_before = rack(&hall, 1, 3).inlet_c();

    hall.fail_cooling(0);
    run(&mut hall, 300);
    let after_5_min = rack(&hall, 0, 3).inlet_c();
    let rate_k_per_min = (after_5_min - before) / 5.0;
    // Rooms of 5 to 10 kW racks heat at about 1 to 5 K/min without cooling (Schneider Electric WP 179).
    assert!((0.5..=5.0).contains(&rate_k_per_min), "{rate_k_per_min} K/min");
    assert!(hall.supply_c(0).unwrap() > SUPPLY_SETPOINT_C + 3.0);
    // The other row's cooling unit still holds its racks.
    assert!((rack(&hall, 1, 3).inlet_c() - other_row_before).abs() < 0.2);

    run(&mut hall, 300);
    let after_10_min = rack(&hall, 0, 3).inlet_c();
    assert!(after_10_min > after_5_min, "still rising: {after_10_min}");
    // The heat-up slows as the room loses heat to the building.
    assert!(after_10_min - after_5_min < after_5_min - before);

    hall.restore_cooling(0);
    run(&mut hall, 1200);
    let recovered = rack(&hall, 0, 3).inlet_c();
    assert!(
        (recovered - before).abs() < 0.5,
        "back to {recovered}, was {before}"
    );
    assert!(!hall.cooling_failed(0));
}

#[test]
fn more_fan_duty_lowers_outlet_and_slightly_lowers_inlet() {
    let mut at_design = steady_hall(1, 1);
    let mut at_full = steady_hall(1, 1);
    set_all_fans(&mut at_full, 100.0);
    run(&mut at_design, 900);
    run(&mut at_full, 900);
    let (design, full) = (rack(&at_design, 0, 0), rack(&at_full, 0, 0));
    assert!(full.airflow_m3_s() > 1.5 * design.airflow_m3_s());
    assert!(
        full.outlet_c() < design.outlet_c() - 2.0,
        "{} vs {}",
        full.outlet_c(),
        design.outlet_c()
    );
    let inlet_drop = design.inlet_c() - full.inlet_c();
    assert!((0.05..=2.0).contains(&inlet_drop), "inlet drop {inlet_drop}");
}

#[test]
fn fan_commands_read_back_through_the_channels() {
    let mut hall = steady_hall(1, 1);
    let r = hall.rack_mut(0, 0).unwrap();
    r.set_fan(2, FanTarget::DutyPercent(80.0)).unwrap();
    r.set_fan(3, FanTarget::Rpm(6000)).unwrap();
    assert_eq!(
        r.set_fan(6, FanTarget::DutyPercent(50.0)),
        Err(Fault::InvalidInput)
    );
    assert_eq!(
        r.set_fan(0, FanTarget::DutyPercent(120.0)),
        Err(Fault::InvalidInput)
    );
    run(&mut hall, 30);
    let r = hall.rack_mut(0, 0).unwrap();
    let fans = usize::from(probe::FANS);
    assert_eq!(
        r.sample(fans, Measurement::FanDuty { fan: 2 }).unwrap().value,
        80.0
    );
    assert_eq!(
        r.sample(fans, Measurement::FanDutyCommanded { fan: 3 })
            .unwrap()
            .value,
        50.0
    );
    let rpm = r.sample(fans, Measurement::FanSpeed { fan: 2 }).unwrap().value;
    assert!((rpm - 9600.0).abs() < 10.0, "{rpm}");
}

#[test]
fn a_dead_fan_spins_down_reports_a_fault_and_warms_the_outlet() {
    let mut hall = steady_hall(1, 1);
    run(&mut hall, 600);
    let outlet_before = rack(&hall, 0, 0).outlet_c();
    for fan in 0..3 {
        hall.rack_mut(0, 0).unwrap().fail_fan(fan);
    }
    run(&mut hall, 600);
    let r = hall.rack_mut(0, 0).unwrap();
    assert!(r.fan_rpm(0).unwrap() < 10.0);
    assert!(r.fan_status(0).unwrap().fault);
    assert!(!r.fan_status(4).unwrap().fault);
    let speed = r
        .sample(usize::from(probe::FANS), Measurement::FanSpeed { fan: 0 })
        .unwrap();
    assert_eq!(speed.value, 0.0);
    assert!(
        r.outlet_c() > outlet_before + 3.0,
        "{} vs {outlet_before}",
        r.outlet_c()
    );

    r.restore_fan(0);
    run(&mut hall, 30);
    assert!(!rack(&hall, 0, 0).fan_status(0).unwrap().fault);
}

#[test]
fn a_tripped_psu_drops_the_load_flags_status_and_recovers_on_reset() {
    let mut hall = steady_hall(1, 1);
    run(&mut hall, 300);
    hall.rack_mut(0, 0).unwrap().trip_psu();
    run(&mut hall, 60);
    let r = hall.rack_mut(0, 0).unwrap();
    let power = usize::from(probe::POWER);
    assert_eq!(r.sample(power, Measurement::Power).unwrap().value, 0.0);
    assert_eq!(r.sample(power, Measurement::OutputVoltage).unwrap().value, 0.0);
    assert!(r.sample(power, Measurement::InputVoltage).unwrap().value > 53.0);
    let status = r.hot_swap_status();
    assert!(status.contains(rackwatch_hardware::pmbus::StatusFault::Off));
    assert!(status.contains(rackwatch_hardware::pmbus::StatusFault::PowerNotGood));
    run(&mut hall, 600);
    // With no IT load only the fans heat the air.
    let r = rack(&hall, 0, 0);
    assert!(r.outlet_c() - r.inlet_c() < 0.5);

    hall.rack_mut(0, 0).unwrap().reset_psu();
    run(&mut hall, 60);
    let r = hall.rack_mut(0, 0).unwrap();
    assert!(r.hot_swap_status().is_clear());
    let watts = r
        .sample(usize::from(probe::POWER), Measurement::Power)
        .unwrap()
        .value;
    assert!(
        (watts - 0.7 * RATED_IT_POWER_W).abs() < 0.03 * RATED_IT_POWER_W,
        "{watts}"
    );
}

#[test]
fn the_same_channel_table_reads_the_simulated_rack_and_a_dead_probe_fails_alone() {
    let mut hall = steady_hall(1, 1);
    run(&mut hall, 60);
    let ch = |name: &str, device, m| Channel::new(ChannelName::new(name).unwrap(), device, m);
    let channels = [
        ch("inlet", probe::INLET, Measurement::Temperature),
        ch("outlet", probe::OUTLET, Measurement::Temperature),
        ch("inlet_rh", probe::HUMIDITY, Measurement::RelativeHumidity),
        ch("dew_point", probe::HUMIDITY, Measurement::DewPoint),
        ch("busbar_v", probe::POWER, Measurement::InputVoltage),
        ch("busbar_a", probe::POWER, Measurement::Current),
        ch("fan0", probe::FANS, Measurement::FanSpeed { fan: 0 }),
        ch("wrong", probe::INLET, Measurement::Power),
    ];
    let r = hall.rack_mut(0, 0).unwrap();
    r.fail_probe(probe::INLET);
    let readings = channels.clone().map(|c| c.read(r));
    assert_eq!(readings[0].status, ReadingStatus::Fault);
    for reading in &readings[1..7] {
        assert_eq!(reading.status, ReadingStatus::Ok, "{reading:?}");
    }
    assert_eq!(readings[7].status, ReadingStatus::Fault);
    let dew_point = readings[3].value.unwrap();
    assert!((7.0..=11.0).contains(&dew_point), "{dew_point}");
    // TMP105 readings come in 1/16 °C steps.
    let outlet = readings[1].value.unwrap();
    assert_eq!(outlet * 16.0, (outlet * 16.0).round());

    r.restore_probe(probe::INLET);
    assert_eq!(channels[0].read(r).status, ReadingStatus::Ok);
}

#[test]
fn one_long_step_lands_close_to_many_short_ones() {
    let mut short = steady_hall(1, 2);
    let mut long = steady_hall(1, 2);
    short.fail_cooling(0);
    long.fail_cooling(0);
    run(&mut short, 120);
    long.step(Duration::from_secs(120));
    let (a, b) = (rack(&short, 0, 1).inlet_c(), rack(&long, 0, 1).inlet_c());
    assert!((a - b).abs() < 0.3, "{a} vs {b}");
    assert_eq!(short.elapsed(), long.elapsed());
}
