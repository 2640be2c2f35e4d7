#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use common::{NACK, bus, register_read, script};
use embedded_hal_mock::eh1::delay::{CheckedDelay, Transaction as Delay};
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use rackwatch_hardware::tmp105::{Resolution, Tmp105};
use rackwatch_hardware::{Error, Fault, Measurement, RegisterRead, Sensor};

const ADDRESS: u8 = 0x48;
const TEMPERATURE: u8 = 0x00;
const CONFIGURATION: u8 = 0x01;

fn new_tmp105(transactions: &[Transaction]) -> Tmp105<Mock> {
    Tmp105::new(bus(transactions), ADDRESS)
}

/// Reads one temperature register value through the driver.
fn temperature_of(register: [u8; 2]) -> f32 {
    let mut tmp = new_tmp105(&register_read(ADDRESS, TEMPERATURE, &register));
    let celsius = tmp.read_temperature().unwrap();
    tmp.destroy().done();
    celsius
}

#[test]
fn converts_the_datasheet_temperature_data_format_table() {
    // TMP105 datasheet, "Temperature Data Format" (12-bit values shown left-justified on the bus).
    assert_eq!(temperature_of([0x7D, 0x00]), 125.0);
    assert_eq!(temperature_of([0x19, 0x00]), 25.0);
    assert_eq!(temperature_of([0x00, 0x40]), 0.25);
    assert_eq!(temperature_of([0x00, 0x10]), 0.0625);
    assert_eq!(temperature_of([0x00, 0x00]), 0.0);
    assert_eq!(temperature_of([0xFF, 0xC0]), -0.25);
    assert_eq!(temperature_of([0xE7, 0x00]), -25.0);
    assert_eq!(temperature_of([0xC9, 0x00]), -55.0);
}

#[test]
fn reads_registers_with_one_repeated_start_transaction_when_asked() {
    let mut tmp = new_tmp105(&[Transaction::write_read(
        ADDRESS,
        vec![TEMPERATURE],
        vec![0x19, 0x80],
    )]);
    tmp.set_register_read(RegisterRead::RepeatedStart);
    assert_eq!(tmp.read_temperature().unwrap(), 25.5);
    tmp.destroy().done();
}

#[test]
fn sets_resolution_bits_r1_r0() {
    let mut tmp = new_tmp105(&[
        Transaction::write(ADDRESS, vec![CONFIGURATION, 0b0110_0000]),
        Transaction::write(ADDRESS, vec![CONFIGURATION, 0b0010_0000]),
    ]);
    tmp.set_resolution(Resolution::Bits12).unwrap();
    assert_eq!(tmp.resolution(), Resolution::Bits12);
    tmp.set_resolution(Resolution::Bits10).unwrap();
    tmp.destroy().done();
}

#[test]
fn shutdown_keeps_the_resolution_and_continuous_clears_sd() {
    let mut tmp = new_tmp105(&[
        Transaction::write(ADDRESS, vec![CONFIGURATION, 0b0100_0000]),
        Transaction::write(ADDRESS, vec![CONFIGURATION, 0b0100_0001]),
        Transaction::write(ADDRESS, vec![CONFIGURATION, 0b0100_0000]),
    ]);
    tmp.set_resolution(Resolution::Bits11).unwrap();
    tmp.shutdown().unwrap();
    tmp.enable_continuous().unwrap();
    tmp.destroy().done();
}

#[test]
fn one_shot_shuts_down_triggers_waits_the_conversion_time_and_reads() {
    let i2c = script([
        &[
            Transaction::write(ADDRESS, vec![CONFIGURATION, 0b0000_0001]),
            Transaction::write(ADDRESS, vec![CONFIGURATION, 0b1000_0001]),
        ],
        &register_read(ADDRESS, TEMPERATURE, &[0x1A, 0x80]),
    ]);
    let mut tmp = new_tmp105(&i2c);
    // 9 bits: 37.5 ms maximum conversion time, rounded up.
    let mut delay = CheckedDelay::new(&[Delay::delay_ms(38)]);
    assert_eq!(tmp.measure_one_shot(&mut delay).unwrap(), 26.5);
    delay.done();
    tmp.destroy().done();
}

#[test]
fn one_shot_in_continuous_mode_is_refused_without_bus_traffic() {
    let mut tmp = new_tmp105(&[]);
    assert_eq!(tmp.trigger_one_shot(), Err(Error::InvalidInput));
    tmp.destroy().done();
}

#[test]
fn read_config_adopts_the_device_state() {
    let mut tmp = new_tmp105(&register_read(ADDRESS, CONFIGURATION, &[0b0110_0001]));
    assert_eq!(tmp.read_config().unwrap(), 0x61);
    assert_eq!(tmp.resolution(), Resolution::Bits12);
    tmp.destroy().done();
}

#[test]
fn nack_on_the_pointer_write_is_a_bus_error() {
    let mut tmp = new_tmp105(&[Transaction::write(ADDRESS, vec![TEMPERATURE]).with_error(NACK)]);
    assert_eq!(tmp.read_temperature(), Err(Error::I2C(NACK)));
    tmp.destroy().done();
}

#[test]
fn nack_on_the_read_is_a_bus_error_and_a_fault_sample() {
    let mut tmp = new_tmp105(&[
        Transaction::write(ADDRESS, vec![TEMPERATURE]),
        Transaction::read(ADDRESS, vec![0, 0]).with_error(NACK),
    ]);
    assert_eq!(tmp.sample(Measurement::Temperature), Err(Fault::Bus(NACK)));
    tmp.destroy().done();
}

#[test]
fn sample_outside_the_specified_range_is_out_of_range() {
    let mut tmp = new_tmp105(&register_read(ADDRESS, TEMPERATURE, &[0x7F, 0x00]));
    assert_eq!(tmp.sample(Measurement::Temperature), Err(Fault::OutOfRange));
    tmp.destroy().done();
}

#[test]
fn sample_of_another_quantity_is_unsupported_without_bus_traffic() {
    let mut tmp = new_tmp105(&[]);
    assert_eq!(tmp.sample(Measurement::RelativeHumidity), Err(Fault::Unsupported));
    tmp.destroy().done();
}
