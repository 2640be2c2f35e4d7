//! Sensor drivers for rackwatch nodes and the channel abstraction the firmware samples through.
//!
//! `#![no_std]`, no heap, embedded-hal 1.0 traits, typed errors, no panics. The drivers:
//! - [`tmp105`]: TI TMP105/TMP75/TMP175 temperature sensor (resolution, continuous and one-shot);
//! - [`sht4x`]: Sensirion SHT4x temperature and humidity, CRC-8 checked, serial number, soft reset;
//! - [`adm1272`]: ADI ADM1272 PMBus hot-swap controller on the 48 V busbar (VIN, VOUT, IOUT, PIN,
//!   temperature in DIRECT format; STATUS_WORD as typed faults);
//! - [`ina226`]: TI INA226 shunt power monitor (calibration, bus voltage, current, power);
//! - [`max31785`]: Maxim MAX31785 PMBus fan controller (duty or rpm per fan, tachometer, faults).
//!
//! The abstraction ([`sensor`]): every driver is a [`Sensor`]; a node's drivers in one slice are its
//! [`SensorSet`]; a [`Channel`] (name, device index, [`Measurement`]) is configuration and
//! [`Channel::read`] gives a protocol [`rackwatch_protocols::Reading`], a failed one if the device
//! faulted. [`device`] builds the drivers from configuration. With the `std` feature, `sim` is a
//! simulated data hall whose racks are [`SensorSet`]s with the same device layout as a real node.
//!
//! Register reads are two transactions by default (pointer write with STOP, then read), because
//! some controllers, QEMU's Stellaris I2C model among them, cannot do a repeated START; see
//! [`RegisterRead`].
//!
//! # One bus, several drivers
//!
//! Drivers take the bus by value. On a node with one I2C controller, share it with
//! `embedded-hal-bus`'s `RefCellDevice` (single thread, no interrupts touching the bus):
//!
//! ```
//! use core::cell::RefCell;
//! use embedded_hal_bus::i2c::RefCellDevice;
//! # use embedded_hal_mock::eh1::{delay::NoopDelay, i2c::{Mock, Transaction}};
//! use rackwatch_hardware::{Channel, Measurement, device::DeviceConfig, tmp105::Resolution};
//! use rackwatch_hardware::{adm1272::Adm1272Config, FanControl};
//! use rackwatch_protocols::{ChannelName, FanTarget, ReadingStatus};
//!
//! # let bus = Mock::new(&[
//! #     Transaction::write(0x48, vec![0x00]),
//! #     Transaction::read(0x48, vec![0x17, 0x80]),
//! #     Transaction::write(0x10, vec![0x97]),
//! #     Transaction::read(0x10, vec![0x00, 0x00]).with_error(embedded_hal::i2c::ErrorKind::Other),
//! #     Transaction::write(0x52, vec![0x00, 0x01]),
//! #     Transaction::write(0x52, vec![0x3A]),
//! #     Transaction::read(0x52, vec![0x80]),
//! #     Transaction::write(0x52, vec![0x3B, 0xB8, 0x0B]),
//! # ]);
//! let bus = RefCell::new(bus); // the board's I2C controller
//! // The node's parts: configuration, e.g. from the board table or NodeConfig.
//! let parts = [
//!     DeviceConfig::Tmp105 { address: 0x48, resolution: Resolution::Bits12 },
//!     DeviceConfig::Adm1272 { address: 0x10, config: Adm1272Config::default(), monitor_vout_and_temperature: false },
//!     DeviceConfig::Max31785 { address: 0x52 },
//! ];
//! let mut devices = parts.map(|p| p.build(RefCellDevice::new(&bus), NoopDelay::new()));
//! let channels = [
//!     Channel::new(ChannelName::new("inlet")?, 0, Measurement::Temperature),
//!     Channel::new(ChannelName::new("busbar_power")?, 1, Measurement::Power),
//! ];
//! let readings = channels.map(|ch| ch.read(&mut devices[..]));
//! assert_eq!(readings[0].value, Some(23.5));
//! assert_eq!(readings[1].status, ReadingStatus::Fault); // the others still read
//! // A SetFan command goes to the device that has fans.
//! devices[..].set_fan(1, FanTarget::DutyPercent(30.0))?;
//! # bus.into_inner().done();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(feature = "std")]
extern crate std;

pub mod adm1272;
pub mod air;
mod bus;
pub mod device;
pub mod ina226;
pub mod max31785;
pub mod pmbus;
pub mod sensor;
pub mod sht4x;
#[cfg(feature = "std")]
pub mod sim;
pub mod tmp105;

pub use bus::RegisterRead;
pub use sensor::{Channel, FanControl, Fault, Measurement, Sample, Sensor, SensorSet};

/// A driver error, generic over the bus error `E`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error<E> {
    /// The I2C transfer failed (NACK, arbitration loss, bus error).
    #[error("I2C bus error")]
    I2C(E),
    /// A CRC did not match the data it protects (SHT4x words).
    #[error("CRC mismatch")]
    Crc,
    /// An argument outside what the part accepts (fan index, duty, calibration, mode).
    #[error("invalid input")]
    InvalidInput,
    /// The part answered with a value outside its measuring range.
    #[error("value out of range")]
    OutOfRange,
    /// The value is not available yet (e.g. current before the INA226 is calibrated).
    #[error("not ready")]
    NotReady,
}
