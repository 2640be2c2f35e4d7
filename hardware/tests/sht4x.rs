#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use common::{NACK, bus};
use embedded_hal_mock::eh1::delay::{CheckedDelay, NoopDelay, Transaction as Delay};
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use rackwatch_hardware::sht4x::{Precision, Sht4x, ticks_to_celsius, ticks_to_relative_humidity};
use rackwatch_hardware::{Error, Fault, Measurement, Sensor};

const ADDRESS: u8 = 0x44;

fn new_sht4x(transactions: &[Transaction]) -> Sht4x<Mock, NoopDelay> {
    Sht4x::new(bus(transactions), ADDRESS, NoopDelay::new())
}

fn done(sht: Sht4x<Mock, NoopDelay>) {
    sht.destroy().0.done();
}

/// Checks that both the bus and the delay saw everything they expected.
fn done_with_delay(sht: Sht4x<Mock, CheckedDelay>) {
    let (mut i2c, mut delay) = sht.destroy();
    i2c.done();
    delay.done();
}

/// A measurement answer: temperature word, its CRC, humidity word, its CRC.
fn measure(command: u8, answer: [u8; 6]) -> [Transaction; 2] {
    [
        Transaction::write(ADDRESS, vec![command]),
        Transaction::read(ADDRESS, answer.to_vec()),
    ]
}

#[test]
fn datasheet_crc_example_0xbeef_is_0x92() {
    // SHT4x datasheet, "Checksum Calculation": CRC(0xBEEF) = 0x92. Used here as a temperature word.
    let mut sht = new_sht4x(&measure(0xFD, [0xBE, 0xEF, 0x92, 0x80, 0x00, 0xA2]));
    let m = sht.measure(Precision::High).unwrap();
    assert!((m.temperature_c - (-45.0 + 175.0 * 48879.0 / 65535.0)).abs() < 1e-4);
    done(sht);
}

#[test]
fn converts_ticks_with_the_datasheet_formulas() {
    assert_eq!(ticks_to_celsius(0), -45.0);
    assert_eq!(ticks_to_celsius(0xFFFF), 130.0);
    assert!((ticks_to_celsius(0x6666) - 25.0).abs() < 1e-4);
    assert!((ticks_to_relative_humidity(0x8000) - 56.5).abs() < 0.01);
    // The formula spans −6 to 119 %RH; readings are cropped to what humidity can be.
    assert_eq!(ticks_to_relative_humidity(0), 0.0);
    assert_eq!(ticks_to_relative_humidity(0xFFFF), 100.0);
}

#[test]
fn each_precision_sends_its_command_and_waits_its_maximum_duration() {
    for (precision, command, wait_us) in [
        (Precision::High, 0xFD, 8_300),
        (Precision::Medium, 0xF6, 4_500),
        (Precision::Low, 0xE0, 1_600),
    ] {
        let i2c = bus(&measure(command, [0x66, 0x66, 0x93, 0x80, 0x00, 0xA2]));
        let delay = CheckedDelay::new(&[Delay::delay_us(wait_us)]);
        let mut sht = Sht4x::new(i2c, ADDRESS, delay);
        let m = sht.measure(precision).unwrap();
        assert!((m.temperature_c - 25.0).abs() < 1e-4);
        assert!((m.relative_humidity - 56.5).abs() < 0.01);
        done_with_delay(sht);
    }
}

#[test]
fn crc_mismatch_on_the_temperature_word_is_an_error_not_a_value() {
    let mut sht = new_sht4x(&measure(0xFD, [0x66, 0x66, 0x94, 0x80, 0x00, 0xA2]));
    assert_eq!(sht.measure(Precision::High), Err(Error::Crc));
    done(sht);
}

#[test]
fn crc_mismatch_on_the_humidity_word_is_an_error_and_a_fault_sample() {
    let mut sht = new_sht4x(&measure(0xFD, [0x66, 0x66, 0x93, 0x80, 0x01, 0xA2]));
    assert_eq!(sht.sample(Measurement::RelativeHumidity), Err(Fault::Crc));
    done(sht);
}

#[test]
fn nack_while_measuring_is_a_bus_error() {
    let mut sht = new_sht4x(&[
        Transaction::write(ADDRESS, vec![0xFD]),
        Transaction::read(ADDRESS, vec![0; 6]).with_error(NACK),
    ]);
    assert_eq!(sht.measure(Precision::High), Err(Error::I2C(NACK)));
    done(sht);
}

#[test]
fn nack_of_the_command_is_a_bus_error() {
    let mut sht = new_sht4x(&[Transaction::write(ADDRESS, vec![0xFD]).with_error(NACK)]);
    assert_eq!(sht.sample(Measurement::Temperature), Err(Fault::Bus(NACK)));
    done(sht);
}

#[test]
fn reads_the_serial_number_from_two_checked_words() {
    let mut sht = new_sht4x(&[
        Transaction::write(ADDRESS, vec![0x89]),
        Transaction::read(ADDRESS, vec![0xBE, 0xEF, 0x92, 0x66, 0x66, 0x93]),
    ]);
    assert_eq!(sht.serial_number().unwrap(), 0xBEEF_6666);
    done(sht);
}

#[test]
fn serial_number_with_a_bad_crc_is_an_error() {
    let mut sht = new_sht4x(&[
        Transaction::write(ADDRESS, vec![0x89]),
        Transaction::read(ADDRESS, vec![0xBE, 0xEF, 0x92, 0x66, 0x66, 0x00]),
    ]);
    assert_eq!(sht.serial_number(), Err(Error::Crc));
    done(sht);
}

#[test]
fn soft_reset_sends_0x94_and_waits_a_millisecond() {
    let i2c = bus(&[Transaction::write(ADDRESS, vec![0x94])]);
    let delay = CheckedDelay::new(&[Delay::delay_us(1_000)]);
    let mut sht = Sht4x::new(i2c, ADDRESS, delay);
    sht.soft_reset().unwrap();
    done_with_delay(sht);
}

#[test]
fn dew_point_sample_combines_one_measurement() {
    // 25 °C and 56.5 %RH: dew point 15.75 °C (Magnus, Sonntag coefficients).
    let mut sht = new_sht4x(&measure(0xFD, [0x66, 0x66, 0x93, 0x80, 0x00, 0xA2]));
    let sample = sht.sample(Measurement::DewPoint).unwrap();
    assert!((sample.value - 15.75).abs() < 0.05, "{}", sample.value);
    done(sht);
}

#[test]
fn dew_point_of_bone_dry_air_is_out_of_range() {
    // Humidity word 0x0000 (CRC 0x81) reads 0 %RH after cropping.
    let mut sht = new_sht4x(&measure(0xFD, [0x66, 0x66, 0x93, 0x00, 0x00, 0x81]));
    assert_eq!(sht.sample(Measurement::DewPoint), Err(Fault::OutOfRange));
    done(sht);
}

#[test]
fn sample_of_power_is_unsupported() {
    let mut sht = new_sht4x(&[]);
    assert_eq!(sht.sample(Measurement::Power), Err(Fault::Unsupported));
    done(sht);
}
