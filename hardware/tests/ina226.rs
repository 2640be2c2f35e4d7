#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use common::{NACK, bus, register_read, script};
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use rackwatch_hardware::ina226::{Averaging, Calibration, CalibrationError, Ina226, MANUFACTURER_ID};
use rackwatch_hardware::{Error, Fault, Measurement, Sensor};

const ADDRESS: u8 = 0x40;
const CONFIGURATION: u8 = 0x00;
const SHUNT_VOLTAGE: u8 = 0x01;
const BUS_VOLTAGE: u8 = 0x02;
const POWER: u8 = 0x03;
const CURRENT: u8 = 0x04;
const CALIBRATION: u8 = 0x05;

fn new_ina226(transactions: &[Transaction]) -> Ina226<Mock> {
    Ina226::new(bus(transactions), ADDRESS)
}

/// The datasheet's Table 1: 2 mΩ shunt, Current_LSB rounded up to 1 mA, CAL = 2560 (0x0A00).
fn datasheet_calibration() -> Calibration {
    Calibration::with_current_lsb(0.002, 0.001).unwrap()
}

fn calibrate_write() -> Transaction {
    Transaction::write(ADDRESS, vec![CALIBRATION, 0x0A, 0x00])
}

#[test]
fn calibration_of_the_datasheet_example_is_2560() {
    let cal = datasheet_calibration();
    assert_eq!(cal.register, 2560);
    assert_eq!(cal.current_lsb_a, 0.001);
}

#[test]
fn calibration_for_a_maximum_current_uses_the_finest_lsb() {
    // 10 A: Current_LSB = 10 / 2^15 = 305.2 µA; CAL = trunc(0.00512 / (305.2 µA · 2 mΩ)) = 8388.
    let cal = Calibration::for_max_current(0.002, 10.0).unwrap();
    assert_eq!(cal.register, 8388);
    assert!((cal.current_lsb_a - 305.175_8e-6).abs() < 1e-9);
}

#[test]
fn impossible_calibrations_are_refused() {
    assert_eq!(
        Calibration::for_max_current(0.0, 10.0),
        Err(CalibrationError::NotPositive)
    );
    assert_eq!(
        Calibration::for_max_current(0.002, -1.0),
        Err(CalibrationError::NotPositive)
    );
    // A 0.1 mΩ shunt for 10 mA full scale would need CAL ≈ 1.7·10^8.
    assert_eq!(
        Calibration::for_max_current(0.0001, 0.01),
        Err(CalibrationError::OutOfRange)
    );
}

#[test]
fn reads_the_datasheet_configure_measure_calculate_example() {
    // INA226 datasheet (SBOS547), Table 1 "Configure/Measure/Calculate Example": 10 A load at 12 V
    // through 2 mΩ, CAL = 0A00h. Shunt 1F40h = 20 mV, bus 2570h = 11.98 V, current 2710h = 10 A,
    // power 12B8h = 4792 × 25 mW = 119.8 W.
    let i2c = script([
        &[calibrate_write()],
        &register_read(ADDRESS, SHUNT_VOLTAGE, &[0x1F, 0x40]),
        &register_read(ADDRESS, BUS_VOLTAGE, &[0x25, 0x70]),
        &register_read(ADDRESS, CURRENT, &[0x27, 0x10]),
        &register_read(ADDRESS, POWER, &[0x12, 0xB8]),
    ]);
    let mut ina = new_ina226(&i2c);
    ina.calibrate(datasheet_calibration()).unwrap();
    assert!((ina.read_shunt_voltage().unwrap() - 0.020).abs() < 1e-7);
    assert!((ina.read_bus_voltage().unwrap() - 11.98).abs() < 1e-4);
    assert!((ina.read_current().unwrap() - 10.0).abs() < 1e-5);
    assert!((ina.read_power().unwrap() - 119.8).abs() < 1e-3);
    ina.destroy().done();
}

#[test]
fn reverse_current_is_negative() {
    let i2c = script([
        &[calibrate_write()],
        &register_read(ADDRESS, CURRENT, &[0xFF, 0x9C]),
    ]);
    let mut ina = new_ina226(&i2c);
    ina.calibrate(datasheet_calibration()).unwrap();
    assert!((ina.read_current().unwrap() + 0.1).abs() < 1e-6);
    ina.destroy().done();
}

#[test]
fn current_and_power_before_calibration_are_not_ready_without_bus_traffic() {
    let mut ina = new_ina226(&[]);
    assert_eq!(ina.read_current(), Err(Error::NotReady));
    assert_eq!(ina.sample(Measurement::Power), Err(Fault::NotReady));
    ina.destroy().done();
}

#[test]
fn failed_calibration_write_leaves_the_driver_uncalibrated() {
    let mut ina = new_ina226(&[calibrate_write().with_error(NACK)]);
    assert_eq!(ina.calibrate(datasheet_calibration()), Err(Error::I2C(NACK)));
    assert_eq!(ina.read_current(), Err(Error::NotReady));
    ina.destroy().done();
}

#[test]
fn averaging_1_writes_the_power_on_configuration() {
    // 0x4127 is the configuration register's reset value: 1 sample, 1.1 ms, continuous.
    let mut ina = new_ina226(&[
        Transaction::write(ADDRESS, vec![CONFIGURATION, 0x41, 0x27]),
        Transaction::write(ADDRESS, vec![CONFIGURATION, 0x45, 0x27]),
    ]);
    ina.set_averaging(Averaging::_1).unwrap();
    ina.set_averaging(Averaging::_16).unwrap();
    ina.destroy().done();
}

#[test]
fn reads_manufacturer_and_die_ids() {
    let i2c = script([
        &register_read(ADDRESS, 0xFE, &[0x54, 0x49]),
        &register_read(ADDRESS, 0xFF, &[0x22, 0x60]),
    ]);
    let mut ina = new_ina226(&i2c);
    assert_eq!(ina.read_ids().unwrap(), (MANUFACTURER_ID, 0x2260));
    ina.destroy().done();
}

#[test]
fn nack_on_a_bus_voltage_read_is_a_fault_sample() {
    let mut ina = new_ina226(&[
        Transaction::write(ADDRESS, vec![BUS_VOLTAGE]),
        Transaction::read(ADDRESS, vec![0, 0]).with_error(NACK),
    ]);
    assert_eq!(ina.sample(Measurement::BusVoltage), Err(Fault::Bus(NACK)));
    ina.destroy().done();
}
