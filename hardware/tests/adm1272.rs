#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use common::{NACK, bus, register_read, script};
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use rackwatch_hardware::adm1272::{Adm1272, Adm1272Config, CurrentSenseRange, VoltageRange};
use rackwatch_hardware::pmbus::StatusFault;
use rackwatch_hardware::{Error, Fault, Measurement, RegisterRead, Sensor};

const ADDRESS: u8 = 0x10;
const READ_VIN: u8 = 0x88;
const READ_VOUT: u8 = 0x8B;
const READ_IOUT: u8 = 0x8C;
const READ_TEMPERATURE_1: u8 = 0x8D;
const READ_PIN: u8 = 0x97;
const STATUS_WORD: u8 = 0x79;
const PMON_CONFIG: u8 = 0xD4;

fn new_adm1272(transactions: &[Transaction]) -> Adm1272<Mock> {
    Adm1272::new(bus(transactions), ADDRESS, Adm1272Config::default())
}

fn config(voltage_range: VoltageRange, current_sense_range: CurrentSenseRange) -> Adm1272Config {
    Adm1272Config {
        voltage_range,
        current_sense_range,
        sense_resistor_milliohm: 0.3,
    }
}

fn assert_close(actual: f32, expected: f32, tolerance: f32) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{actual} is not {expected} ± {tolerance}"
    );
}

#[test]
fn reads_the_power_on_values_of_qemus_model() {
    // QEMU 7.2 hw/sensor/adm1272.c encodes 12 V, 25 A and 300 W with the 100 V / 30 mV
    // coefficients and a 300 µΩ shunt (truncating m·R_sense to 198 for current): raw 487, 2543, 948.
    let i2c = script([
        &register_read(ADDRESS, READ_VIN, &487u16.to_le_bytes()),
        &register_read(ADDRESS, READ_VOUT, &487u16.to_le_bytes()),
        &register_read(ADDRESS, READ_IOUT, &2543u16.to_le_bytes()),
        &register_read(ADDRESS, READ_PIN, &948u16.to_le_bytes()),
    ]);
    let mut adm = new_adm1272(&i2c);
    assert_close(adm.read_vin().unwrap(), 12.0, 0.025);
    assert_close(adm.read_vout().unwrap(), 12.0, 0.025);
    // Exact coefficients give 24.89 A where QEMU's truncated ones meant 25 A.
    assert_close(adm.read_iout().unwrap(), 25.0, 0.15);
    assert_close(adm.read_pin().unwrap(), 300.0, 0.5);
    adm.destroy().done();
}

#[test]
fn coefficients_follow_the_datasheet_table_for_each_range() {
    // Y = (m·X + b)·10^R with the ADM1272 coefficient table; m for current and power per mΩ.
    let cases = [
        (
            VoltageRange::V60,
            CurrentSenseRange::Mv15,
            6770.0,
            1326.0,
            35120.0,
        ),
        (
            VoltageRange::V100,
            CurrentSenseRange::Mv15,
            4062.0,
            1326.0,
            21071.0,
        ),
        (VoltageRange::V60, CurrentSenseRange::Mv30, 6770.0, 663.0, 17561.0),
        (
            VoltageRange::V100,
            CurrentSenseRange::Mv30,
            4062.0,
            663.0,
            10535.0,
        ),
    ];
    for (vr, ir, m_v, m_i, m_p_milli) in cases {
        let c = config(vr, ir);
        let v = c.voltage_format();
        assert_eq!((v.m, v.b, v.r), (m_v, 0.0, -2));
        let i = c.current_format();
        assert_close(i.m, m_i * 0.3, 1e-3);
        assert_eq!((i.b, i.r), (20480.0, -1));
        // The table gives 3512 at R = −2 for 60 V / 15 mV: the same scale as 35120 at R = −3.
        let p = c.power_format();
        assert_close(p.m * 10f32.powi(i32::from(p.r) + 3), m_p_milli * 0.3, 0.01);
    }
}

#[test]
fn worked_example_54_v_50_a_on_the_60_v_15_mv_ranges() {
    // 54 V: Y = 6770·54/100 = 3655.8 → 3656. 50 A through 0.3 mΩ: Y = (1326·0.3·50 + 20480)/10
    // = 4037. 1000 W: Y = 3512·0.3·1000/100 = 10536.
    let i2c = script([
        &register_read(ADDRESS, READ_VIN, &3656u16.to_le_bytes()),
        &register_read(ADDRESS, READ_IOUT, &4037u16.to_le_bytes()),
        &register_read(ADDRESS, READ_PIN, &10536u16.to_le_bytes()),
    ]);
    let mut adm = Adm1272::new(
        bus(&i2c),
        ADDRESS,
        config(VoltageRange::V60, CurrentSenseRange::Mv15),
    );
    assert_close(adm.read_vin().unwrap(), 54.0, 0.01);
    assert_close(adm.read_iout().unwrap(), 50.0, 0.03);
    assert_close(adm.read_pin().unwrap(), 1000.0, 1.0);
    adm.destroy().done();
}

#[test]
fn temperature_uses_its_own_coefficients() {
    // 25 °C: Y = (42·25 + 31871)/10 = 3292.1 → 3292.
    let mut adm = new_adm1272(&register_read(
        ADDRESS,
        READ_TEMPERATURE_1,
        &3292u16.to_le_bytes(),
    ));
    assert_close(adm.read_temperature().unwrap(), 25.0, 0.03);
    adm.destroy().done();
}

#[test]
fn qemus_unset_temperature_register_samples_out_of_range() {
    // QEMU's model leaves READ_TEMPERATURE_1 at 0, which decodes to −759 °C.
    let mut adm = new_adm1272(&register_read(ADDRESS, READ_TEMPERATURE_1, &[0, 0]));
    assert_eq!(adm.sample(Measurement::Temperature), Err(Fault::OutOfRange));
    adm.destroy().done();
}

#[test]
fn status_word_is_read_little_endian_as_typed_faults() {
    let mut adm = new_adm1272(&register_read(ADDRESS, STATUS_WORD, &[0x50, 0x48]));
    let status = adm.read_status().unwrap();
    let faults: Vec<StatusFault> = status.faults().collect();
    assert_eq!(
        faults,
        [
            StatusFault::IoutPout,
            StatusFault::PowerNotGood,
            StatusFault::Off,
            StatusFault::IoutOvercurrent
        ]
    );
    adm.destroy().done();
}

#[test]
fn clear_faults_is_a_send_byte() {
    let mut adm = new_adm1272(&[Transaction::write(ADDRESS, vec![0x03])]);
    adm.clear_faults().unwrap();
    adm.destroy().done();
}

#[test]
fn sync_ranges_reads_vrange_and_irange_from_pmon_config() {
    let i2c = script([
        &register_read(ADDRESS, PMON_CONFIG, &[0x35, 0x3F]),
        &register_read(ADDRESS, PMON_CONFIG, &[0x14, 0x3F]),
    ]);
    let mut adm = new_adm1272(&i2c);
    let c = adm.sync_ranges().unwrap();
    assert_eq!(
        (c.voltage_range, c.current_sense_range),
        (VoltageRange::V100, CurrentSenseRange::Mv30)
    );
    let c = adm.sync_ranges().unwrap();
    assert_eq!(
        (c.voltage_range, c.current_sense_range),
        (VoltageRange::V60, CurrentSenseRange::Mv15)
    );
    assert_eq!(c.sense_resistor_milliohm, 0.3);
    adm.destroy().done();
}

#[test]
fn enabling_vout_and_temperature_sets_pmon_config_bits_1_and_3() {
    let i2c = script([
        &register_read(ADDRESS, PMON_CONFIG, &[0x35, 0x3F]),
        &[Transaction::write(ADDRESS, vec![PMON_CONFIG, 0x3F, 0x3F])],
    ]);
    let mut adm = new_adm1272(&i2c);
    adm.enable_vout_and_temperature().unwrap();
    adm.destroy().done();
}

#[test]
fn nack_is_a_bus_error_and_a_fault_sample() {
    let mut adm = new_adm1272(&[
        Transaction::write(ADDRESS, vec![READ_VIN]).with_error(NACK),
        Transaction::write(ADDRESS, vec![READ_PIN]),
        Transaction::read(ADDRESS, vec![0, 0]).with_error(NACK),
    ]);
    assert_eq!(adm.read_vin(), Err(Error::I2C(NACK)));
    assert_eq!(adm.sample(Measurement::Power), Err(Fault::Bus(NACK)));
    adm.destroy().done();
}

#[test]
fn repeated_start_mode_reads_in_one_transaction() {
    let mut adm = new_adm1272(&[Transaction::write_read(ADDRESS, vec![READ_VIN], vec![0x91, 0x08])]);
    adm.set_register_read(RegisterRead::RepeatedStart);
    assert_close(adm.read_vin().unwrap(), 53.99, 0.01);
    adm.destroy().done();
}

#[test]
fn samples_are_tagged_with_quantity_and_unit() {
    let mut adm = new_adm1272(&register_read(ADDRESS, READ_IOUT, &2048u16.to_le_bytes()));
    let sample = adm.sample(Measurement::Current).unwrap();
    assert_eq!(sample.quantity, rackwatch_protocols::Quantity::Current);
    assert_eq!(sample.unit, rackwatch_protocols::Unit::Ampere);
    assert_close(sample.value, 0.0, 1e-3); // raw 2048 is the zero-current offset
    adm.destroy().done();
}
