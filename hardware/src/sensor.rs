//! The channel abstraction the firmware samples through.
//!
//! - A [`Sensor`] is one device (a driver, or a view of the simulated rack) that can take
//!   [`Measurement`]s. Every driver in this crate implements it.
//! - A [`SensorSet`] is a node's devices, addressed by index; a slice of sensors is one, and so is a
//!   `sim::SimulatedRack` (feature `std`), whose indices mirror a real node (`sim::probe`).
//! - A [`Channel`] is configuration: a name, a device index and a measurement. One channel is one
//!   quantity in one unit ([`Measurement::quantity`], [`Measurement::unit`]), known before sampling.
//! - [`Channel::read`] turns one sample into a protocol [`Reading`]: a value, or a failed reading with
//!   the [`ReadingStatus`] of its [`Fault`]. A failed channel never stops the others.
//! - [`FanControl`] commands fans (duty or target speed).
//!
//! Drivers take the bus by value, so several share one bus through `embedded-hal-bus`
//! (`RefCellDevice` on a single-threaded node). See the crate documentation for an example.

use embedded_hal::i2c;
use rackwatch_protocols::{ChannelName, FanTarget, Quantity, Reading, ReadingStatus, Unit};

use crate::Error;

/// What a channel measures on its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Measurement {
    /// Air or die temperature in °C (TMP105, SHT4x, ADM1272 READ_TEMPERATURE_1).
    Temperature,
    /// Relative humidity in %RH (SHT4x).
    RelativeHumidity,
    /// Dew point in °C computed from one temperature and humidity measurement (SHT4x).
    DewPoint,
    /// Input voltage of a hot-swap controller in V (ADM1272 READ_VIN).
    InputVoltage,
    /// Output voltage of a hot-swap controller in V (ADM1272 READ_VOUT).
    OutputVoltage,
    /// Bus voltage of a shunt monitor in V (INA226).
    BusVoltage,
    /// Current in A (ADM1272 READ_IOUT, INA226).
    Current,
    /// Power in W (ADM1272 READ_PIN, INA226).
    Power,
    /// Tachometer speed of fan `fan` (the MAX31785 page, 0-based) in rpm.
    FanSpeed { fan: u8 },
    /// PWM duty the controller drives fan `fan` with, in percent (MAX31785 MFR_READ_FAN_PWM).
    FanDuty { fan: u8 },
    /// Duty last commanded to fan `fan`, in percent (MAX31785 FAN_COMMAND_1 in PWM mode).
    FanDutyCommanded { fan: u8 },
}

impl Measurement {
    pub const fn quantity(self) -> Quantity {
        match self {
            Measurement::Temperature => Quantity::Temperature,
            Measurement::RelativeHumidity => Quantity::RelativeHumidity,
            Measurement::DewPoint => Quantity::DewPoint,
            Measurement::InputVoltage | Measurement::OutputVoltage | Measurement::BusVoltage => {
                Quantity::Voltage
            }
            Measurement::Current => Quantity::Current,
            Measurement::Power => Quantity::Power,
            Measurement::FanSpeed { .. } => Quantity::FanSpeed,
            Measurement::FanDuty { .. } | Measurement::FanDutyCommanded { .. } => Quantity::FanDuty,
        }
    }

    /// Every measurement is sampled in its quantity's canonical unit.
    pub const fn unit(self) -> Unit {
        self.quantity().canonical_unit()
    }

    /// A sample of this measurement with `value`.
    pub const fn sample(self, value: f32) -> Sample {
        Sample {
            quantity: self.quantity(),
            unit: self.unit(),
            value,
        }
    }
}

/// One value with what it measures and its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub quantity: Quantity,
    pub unit: Unit,
    pub value: f32,
}

/// Why a channel has no value this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The bus transfer failed: no acknowledge (sensor absent, busy or dead), arbitration loss, overrun.
    #[error("I2C bus error: {0:?}")]
    Bus(i2c::ErrorKind),
    /// The sensor answered, but a checksum did not match: the value is unknown, not wrong.
    #[error("checksum mismatch")]
    Crc,
    /// The sensor answered with a value outside its measuring range.
    #[error("value outside the sensor's measuring range")]
    OutOfRange,
    /// The sensor has no result yet (conversion under way, or the quantity is disabled).
    #[error("sensor not ready")]
    NotReady,
    /// This device does not measure that: a configuration error.
    #[error("the device cannot take this measurement")]
    Unsupported,
    /// An argument is outside what the device accepts (fan index, duty, calibration).
    #[error("argument out of range")]
    InvalidInput,
}

impl Fault {
    /// The status a reading of a channel with this fault carries on the wire.
    pub const fn status(self) -> ReadingStatus {
        match self {
            Fault::Bus(_) | Fault::Crc | Fault::Unsupported | Fault::InvalidInput => ReadingStatus::Fault,
            Fault::OutOfRange => ReadingStatus::OutOfRange,
            Fault::NotReady => ReadingStatus::NotReady,
        }
    }
}

impl<E: i2c::Error> From<Error<E>> for Fault {
    fn from(error: Error<E>) -> Self {
        match error {
            Error::I2C(e) => Fault::Bus(e.kind()),
            Error::Crc => Fault::Crc,
            Error::InvalidInput => Fault::InvalidInput,
            Error::OutOfRange => Fault::OutOfRange,
            Error::NotReady => Fault::NotReady,
        }
    }
}

/// One device that takes measurements.
pub trait Sensor {
    /// Takes one measurement now. [`Fault::Unsupported`] when the device does not measure that.
    fn sample(&mut self, measurement: Measurement) -> Result<Sample, Fault>;
}

impl<S: Sensor + ?Sized> Sensor for &mut S {
    fn sample(&mut self, measurement: Measurement) -> Result<Sample, Fault> {
        (**self).sample(measurement)
    }
}

/// A node's devices, addressed by the index a [`Channel`] names.
pub trait SensorSet {
    /// Samples `measurement` on device `device`; an index without a device is [`Fault::Unsupported`].
    fn sample(&mut self, device: usize, measurement: Measurement) -> Result<Sample, Fault>;
}

impl<S: Sensor> SensorSet for [S] {
    fn sample(&mut self, device: usize, measurement: Measurement) -> Result<Sample, Fault> {
        self.get_mut(device)
            .ok_or(Fault::Unsupported)?
            .sample(measurement)
    }
}

/// Fan commands (the `SetFan` command of the protocol).
pub trait FanControl {
    /// Drives fan `fan` at a PWM duty (0 to 100 %) or a closed-loop target speed.
    fn set_fan(&mut self, fan: u8, target: FanTarget) -> Result<(), Fault>;
}

/// A slice of devices routes a fan command to the first device that controls fans.
impl<S: FanControl> FanControl for [S] {
    fn set_fan(&mut self, fan: u8, target: FanTarget) -> Result<(), Fault> {
        for device in self.iter_mut() {
            match device.set_fan(fan, target) {
                Err(Fault::Unsupported) => continue,
                other => return other,
            }
        }
        Err(Fault::Unsupported)
    }
}

/// One configured channel: a name, the index of its device in the node's [`SensorSet`] and what it
/// measures there. A node's set of channels is data (from its `NodeConfig` or a board table).
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub name: ChannelName,
    pub device: u8,
    pub measurement: Measurement,
}

impl Channel {
    pub fn new(name: ChannelName, device: u8, measurement: Measurement) -> Self {
        Channel {
            name,
            device,
            measurement,
        }
    }

    /// Samples this channel: a good reading, or a failed one whose status says why.
    pub fn read<S: SensorSet + ?Sized>(&self, sensors: &mut S) -> Reading {
        let quantity = self.measurement.quantity();
        let unit = self.measurement.unit();
        match sensors.sample(usize::from(self.device), self.measurement) {
            Ok(sample) if sample.value.is_finite() => Reading::ok(
                self.name.clone(),
                sample.quantity,
                f64::from(sample.value),
                sample.unit,
            ),
            Ok(_) => Reading::failed(self.name.clone(), quantity, unit, ReadingStatus::Fault),
            Err(fault) => Reading::failed(self.name.clone(), quantity, unit, fault.status()),
        }
    }
}
