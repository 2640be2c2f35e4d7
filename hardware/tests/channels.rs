//! The channel abstraction over real drivers on one shared bus.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use core::cell::RefCell;

use common::{NACK, bus, register_read, script};
use embedded_hal_bus::i2c::RefCellDevice;
use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_hal_mock::eh1::i2c::Transaction;
use rackwatch_hardware::adm1272::Adm1272Config;
use rackwatch_hardware::device::DeviceConfig;
use rackwatch_hardware::ina226::Calibration;
use rackwatch_hardware::sht4x::Precision;
use rackwatch_hardware::tmp105::Resolution;
use rackwatch_hardware::{Channel, FanControl, Fault, Measurement, SensorSet};
use rackwatch_protocols::{ChannelName, FanTarget, Quantity, ReadingStatus, Unit};

fn channel(name: &str, device: u8, measurement: Measurement) -> Channel {
    Channel::new(ChannelName::new(name).unwrap(), device, measurement)
}

fn node_parts() -> [DeviceConfig; 4] {
    [
        DeviceConfig::Tmp105 {
            address: 0x48,
            resolution: Resolution::Bits12,
        },
        DeviceConfig::Sht4x {
            address: 0x44,
            precision: Precision::Low,
        },
        DeviceConfig::Adm1272 {
            address: 0x10,
            config: Adm1272Config::default(),
            monitor_vout_and_temperature: true,
        },
        DeviceConfig::Ina226 {
            address: 0x40,
            calibration: Calibration::with_current_lsb(0.002, 0.001).unwrap(),
        },
    ]
}

#[test]
fn every_measurement_has_one_quantity_in_its_canonical_unit() {
    let cases = [
        (Measurement::Temperature, Quantity::Temperature, Unit::Celsius),
        (
            Measurement::RelativeHumidity,
            Quantity::RelativeHumidity,
            Unit::PercentRh,
        ),
        (Measurement::DewPoint, Quantity::DewPoint, Unit::Celsius),
        (Measurement::InputVoltage, Quantity::Voltage, Unit::Volt),
        (Measurement::OutputVoltage, Quantity::Voltage, Unit::Volt),
        (Measurement::BusVoltage, Quantity::Voltage, Unit::Volt),
        (Measurement::Current, Quantity::Current, Unit::Ampere),
        (Measurement::Power, Quantity::Power, Unit::Watt),
        (Measurement::FanSpeed { fan: 0 }, Quantity::FanSpeed, Unit::Rpm),
        (Measurement::FanDuty { fan: 0 }, Quantity::FanDuty, Unit::Percent),
        (
            Measurement::FanDutyCommanded { fan: 0 },
            Quantity::FanDuty,
            Unit::Percent,
        ),
    ];
    for (m, q, u) in cases {
        assert_eq!((m.quantity(), m.unit()), (q, u), "{m:?}");
    }
}

#[test]
fn init_writes_each_parts_setup_on_the_shared_bus() {
    let i2c = script([
        &[Transaction::write(0x48, vec![0x01, 0x60])],
        &register_read(0x10, 0xD4, &[0x35, 0x3F]),
        &[
            Transaction::write(0x10, vec![0xD4, 0x3F, 0x3F]),
            Transaction::write(0x40, vec![0x05, 0x0A, 0x00]),
        ],
    ]);
    let shared = RefCell::new(bus(&i2c));
    let parts = node_parts();
    let mut devices = parts.map(|p| p.build(RefCellDevice::new(&shared), NoopDelay::new()));
    for (device, config) in devices.iter_mut().zip(&parts) {
        device.init(config).unwrap();
    }
    shared.into_inner().done();
}

#[test]
fn a_failed_channel_gives_a_failed_reading_and_the_others_still_read() {
    let i2c = script([
        // inlet: 24.25 °C
        &register_read(0x48, 0x00, &[0x18, 0x40]),
        // humidity: the SHT4x answers with a corrupted CRC
        &[
            Transaction::write(0x44, vec![0xE0]),
            Transaction::read(0x44, vec![0x66, 0x66, 0x93, 0x80, 0x00, 0x00]),
        ],
        // busbar power: the ADM1272 does not answer
        &[Transaction::write(0x10, vec![0x97]).with_error(NACK)],
        // busbar temperature: QEMU's unset register, out of range
        &register_read(0x10, 0x8D, &[0, 0]),
        // bus voltage: 12 V
        &register_read(0x40, 0x02, &9600u16.to_be_bytes()),
    ]);
    let shared = RefCell::new(bus(&i2c));
    let mut devices = node_parts().map(|p| p.build(RefCellDevice::new(&shared), NoopDelay::new()));
    let channels = [
        channel("inlet", 0, Measurement::Temperature),
        channel("inlet_rh", 1, Measurement::RelativeHumidity),
        channel("busbar_power", 2, Measurement::Power),
        channel("hot_swap_temp", 2, Measurement::Temperature),
        channel("monitor_bus", 3, Measurement::BusVoltage),
        channel("nowhere", 7, Measurement::Temperature),
    ];
    let readings = channels.map(|c| c.read(&mut devices[..]));

    assert_eq!(readings[0].value, Some(24.25));
    assert_eq!(
        (readings[0].quantity, readings[0].unit),
        (Quantity::Temperature, Unit::Celsius)
    );
    assert_eq!(
        (readings[1].value, readings[1].status),
        (None, ReadingStatus::Fault)
    );
    assert_eq!(readings[1].quantity, Quantity::RelativeHumidity);
    assert_eq!(
        (readings[2].value, readings[2].status),
        (None, ReadingStatus::Fault)
    );
    assert_eq!(readings[3].status, ReadingStatus::OutOfRange);
    assert_eq!(readings[4].value, Some(12.0));
    assert_eq!(readings[4].status, ReadingStatus::Ok);
    assert_eq!(readings[5].status, ReadingStatus::Fault);
    assert_eq!(readings[5].channel.as_str(), "nowhere");
    shared.into_inner().done();
}

#[test]
fn a_fan_command_reaches_the_fan_controller_among_other_parts() {
    let i2c = script([
        &[Transaction::write(0x52, vec![0x00, 0x04])],
        &register_read(0x52, 0x3A, &[0x80]),
        &[Transaction::write(0x52, vec![0x3B, 0xD0, 0x07])],
    ]);
    let shared = RefCell::new(bus(&i2c));
    let parts = [
        DeviceConfig::Tmp105 {
            address: 0x48,
            resolution: Resolution::Bits9,
        },
        DeviceConfig::Max31785 { address: 0x52 },
    ];
    let mut devices = parts.map(|p| p.build(RefCellDevice::new(&shared), NoopDelay::new()));
    devices[..].set_fan(4, FanTarget::DutyPercent(20.0)).unwrap();
    // Without a fan controller the command is unsupported, not silently dropped.
    assert_eq!(
        devices[..1].set_fan(4, FanTarget::DutyPercent(20.0)),
        Err(Fault::Unsupported)
    );
    shared.into_inner().done();
}

#[test]
fn a_device_index_past_the_node_is_unsupported() {
    let shared = RefCell::new(bus(&[]));
    let mut devices =
        [DeviceConfig::Max31785 { address: 0x52 }.build(RefCellDevice::new(&shared), NoopDelay::new())];
    assert_eq!(
        devices[..].sample(1, Measurement::FanSpeed { fan: 0 }),
        Err(Fault::Unsupported)
    );
    shared.into_inner().done();
}
