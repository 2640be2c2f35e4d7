//! Measures what one rack step of the simulated hall costs, and prints a cooling-failure trace.
//!
//! `cargo run --release -p rackwatch-hardware --features std --example hall_step_cost`
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a measurement printed for people"
)]

use std::time::{Duration, Instant};

use rackwatch_hardware::sim::{DataHall, HallConfig};

fn main() {
    let config = HallConfig {
        rows: 20,
        racks_per_row: 25,
        seed: 1,
        load_steps: true,
    };
    let mut hall = DataHall::new(&config);
    let steps = 2_000u32;
    let started = Instant::now();
    for _ in 0..steps {
        hall.step(Duration::from_secs(1));
    }
    let elapsed = started.elapsed();
    let racks = hall.racks().len();
    let per_rack_ns = elapsed.as_nanos() as f64 / f64::from(steps) / racks as f64;
    println!("{racks} racks, {steps} steps of 1 s: {elapsed:?}, {per_rack_ns:.0} ns per rack step");

    let mut hall = DataHall::new(&HallConfig {
        rows: 2,
        racks_per_row: 10,
        seed: 1,
        load_steps: false,
    });
    for _ in 0..600 {
        hall.step(Duration::from_secs(1));
    }
    hall.fail_cooling(0);
    println!("minute  supply  inlet  outlet   (row 0, rack 3; cooling fails at 0, back at 15)");
    for minute in 0..=30 {
        if minute == 15 {
            hall.restore_cooling(0);
        }
        let r = hall.rack(0, 3).unwrap();
        println!(
            "{minute:>6}  {:>6.2}  {:>5.2}  {:>6.2}",
            hall.supply_c(0).unwrap(),
            r.inlet_c(),
            r.outlet_c()
        );
        for _ in 0..60 {
            hall.step(Duration::from_secs(1));
        }
    }
}
