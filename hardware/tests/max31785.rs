#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use common::{NACK, bus, register_read, script};
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use rackwatch_hardware::max31785::{FanCommand, FanStatus, Max31785};
use rackwatch_hardware::{Error, FanControl, Fault, Measurement, Sensor};
use rackwatch_protocols::FanTarget;

const ADDRESS: u8 = 0x52;
const PAGE: u8 = 0x00;
const FAN_CONFIG_1_2: u8 = 0x3A;
const FAN_COMMAND_1: u8 = 0x3B;
const STATUS_FANS_1_2: u8 = 0x81;
const READ_FAN_SPEED_1: u8 = 0x90;
const MFR_READ_FAN_PWM: u8 = 0xF3;
/// FAN_CONFIG_1_2 after reset in QEMU's model: enabled, PWM mode, 1 pulse per revolution.
const ENABLED_PWM: u8 = 0x80;

fn new_max31785(transactions: &[Transaction]) -> Max31785<Mock> {
    Max31785::new(bus(transactions), ADDRESS)
}

fn page(fan: u8) -> Transaction {
    Transaction::write(ADDRESS, vec![PAGE, fan])
}

#[test]
fn duty_command_selects_the_page_keeps_pwm_mode_and_writes_hundredths_of_a_percent() {
    let i2c = script([
        &[page(2)],
        &register_read(ADDRESS, FAN_CONFIG_1_2, &[ENABLED_PWM]),
        &[Transaction::write(ADDRESS, vec![FAN_COMMAND_1, 0xC6, 0x11])], // 4550 = 45.50 %
    ]);
    let mut fans = new_max31785(&i2c);
    fans.set_fan_duty(2, 45.5).unwrap();
    fans.destroy().done();
}

#[test]
fn rpm_command_sets_the_rpm_mode_bit_first() {
    let i2c = script([
        &[page(0)],
        &register_read(ADDRESS, FAN_CONFIG_1_2, &[ENABLED_PWM]),
        &[
            Transaction::write(ADDRESS, vec![FAN_CONFIG_1_2, 0xC0]),
            Transaction::write(ADDRESS, vec![FAN_COMMAND_1, 0x28, 0x23]), // 9000 rpm
        ],
    ]);
    let mut fans = new_max31785(&i2c);
    fans.set_fan(0, FanTarget::Rpm(9000)).unwrap();
    fans.destroy().done();
}

#[test]
fn duty_after_rpm_clears_the_mode_bit_and_keeps_the_pulse_setting() {
    let i2c = script([
        &[page(5)],
        &register_read(ADDRESS, FAN_CONFIG_1_2, &[0xE0]), // RPM mode, 3 pulses per revolution
        &[
            Transaction::write(ADDRESS, vec![FAN_CONFIG_1_2, 0xA0]),
            Transaction::write(ADDRESS, vec![FAN_COMMAND_1, 0x10, 0x27]), // 100 %
        ],
    ]);
    let mut fans = new_max31785(&i2c);
    fans.set_fan(5, FanTarget::DutyPercent(100.0)).unwrap();
    fans.destroy().done();
}

#[test]
fn reads_back_the_command_in_each_mode() {
    let i2c = script([
        &[page(1)],
        &register_read(ADDRESS, FAN_CONFIG_1_2, &[ENABLED_PWM]),
        &register_read(ADDRESS, FAN_COMMAND_1, &[0xB8, 0x0B]),
        &[page(1)],
        &register_read(ADDRESS, FAN_CONFIG_1_2, &[0xC0]),
        &register_read(ADDRESS, FAN_COMMAND_1, &[0x28, 0x23]),
        &[page(1)],
        &register_read(ADDRESS, FAN_CONFIG_1_2, &[ENABLED_PWM]),
        &register_read(ADDRESS, FAN_COMMAND_1, &[0xFF, 0x7F]), // QEMU's reset value
        &[page(1)],
        &register_read(ADDRESS, FAN_CONFIG_1_2, &[ENABLED_PWM]),
        &register_read(ADDRESS, FAN_COMMAND_1, &[0x00, 0x80]),
    ]);
    let mut fans = new_max31785(&i2c);
    assert_eq!(fans.read_fan_command(1).unwrap(), FanCommand::Duty(30.0));
    assert_eq!(fans.read_fan_command(1).unwrap(), FanCommand::Rpm(9000));
    assert_eq!(fans.read_fan_command(1).unwrap(), FanCommand::Duty(100.0));
    assert_eq!(fans.read_fan_command(1).unwrap(), FanCommand::Automatic);
    fans.destroy().done();
}

#[test]
fn reads_tachometer_speed_and_actual_pwm() {
    let i2c = script([
        &[page(3)],
        &register_read(ADDRESS, READ_FAN_SPEED_1, &[0xFF, 0x7F]), // QEMU's reset value, 32767 rpm
        &[page(3)],
        &register_read(ADDRESS, MFR_READ_FAN_PWM, &[0x94, 0x11]), // 4500 = 45 %
    ]);
    let mut fans = new_max31785(&i2c);
    let speed = fans.sample(Measurement::FanSpeed { fan: 3 }).unwrap();
    assert_eq!(speed.value, 32767.0);
    assert_eq!(speed.unit, rackwatch_protocols::Unit::Rpm);
    assert_eq!(fans.read_fan_pwm(3).unwrap(), 45.0);
    fans.destroy().done();
}

#[test]
fn fan_status_reads_a_word_and_decodes_the_low_byte() {
    let i2c = script([
        &[page(0)],
        &register_read(ADDRESS, STATUS_FANS_1_2, &[0x80, 0x00]),
        &[page(4)],
        &register_read(ADDRESS, STATUS_FANS_1_2, &[0x28, 0xFF]), // a real part pads with 0xFF
    ]);
    let mut fans = new_max31785(&i2c);
    assert_eq!(
        fans.read_fan_status(0).unwrap(),
        FanStatus {
            fault: true,
            warning: false,
            speed_overridden: false
        }
    );
    assert_eq!(
        fans.read_fan_status(4).unwrap(),
        FanStatus {
            fault: false,
            warning: true,
            speed_overridden: true
        }
    );
    fans.destroy().done();
}

#[test]
fn commanded_duty_sample_is_not_ready_when_the_fan_runs_on_rpm() {
    let i2c = script([
        &[page(0)],
        &register_read(ADDRESS, FAN_CONFIG_1_2, &[0xC0]),
        &register_read(ADDRESS, FAN_COMMAND_1, &[0x28, 0x23]),
    ]);
    let mut fans = new_max31785(&i2c);
    assert_eq!(
        fans.sample(Measurement::FanDutyCommanded { fan: 0 }),
        Err(Fault::NotReady)
    );
    fans.destroy().done();
}

#[test]
fn arguments_outside_the_part_are_refused_without_bus_traffic() {
    let mut fans = new_max31785(&[]);
    assert_eq!(fans.set_fan_duty(6, 50.0), Err(Error::InvalidInput));
    assert_eq!(fans.set_fan_duty(0, 100.5), Err(Error::InvalidInput));
    assert_eq!(fans.set_fan_duty(0, f32::NAN), Err(Error::InvalidInput));
    assert_eq!(fans.set_fan_rpm(0, 0x8000), Err(Error::InvalidInput));
    assert_eq!(
        fans.sample(Measurement::FanSpeed { fan: 9 }),
        Err(Fault::InvalidInput)
    );
    assert_eq!(fans.sample(Measurement::Temperature), Err(Fault::Unsupported));
    fans.destroy().done();
}

#[test]
fn nack_on_the_page_write_is_a_bus_error() {
    let mut fans = new_max31785(&[page(1).with_error(NACK)]);
    assert_eq!(
        fans.set_fan(1, FanTarget::DutyPercent(50.0)),
        Err(Fault::Bus(NACK))
    );
    fans.destroy().done();
}

#[test]
fn nack_on_the_speed_read_is_a_bus_error() {
    let mut fans = new_max31785(&[
        page(2),
        Transaction::write(ADDRESS, vec![READ_FAN_SPEED_1]),
        Transaction::read(ADDRESS, vec![0, 0]).with_error(NACK),
    ]);
    assert_eq!(fans.read_fan_speed(2), Err(Error::I2C(NACK)));
    fans.destroy().done();
}
