//! A node's devices as configuration: [`DeviceConfig`] says which part sits at which address, and
//! [`Device`] is the driver it builds, so one `[Device]` slice holds every part of a node and is the
//! node's [`crate::SensorSet`].

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use rackwatch_protocols::FanTarget;

use crate::adm1272::{Adm1272, Adm1272Config};
use crate::ina226::{Calibration, Ina226};
use crate::max31785::Max31785;
use crate::sensor::{FanControl, Fault, Measurement, Sample, Sensor};
use crate::sht4x::{Precision, Sht4x};
use crate::tmp105::{Resolution, Tmp105};

/// One part on the bus and how to set it up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeviceConfig {
    Tmp105 {
        address: u8,
        resolution: Resolution,
    },
    Sht4x {
        address: u8,
        precision: Precision,
    },
    /// `monitor_vout_and_temperature` turns on READ_VOUT and READ_TEMPERATURE_1 at init.
    Adm1272 {
        address: u8,
        config: Adm1272Config,
        monitor_vout_and_temperature: bool,
    },
    Ina226 {
        address: u8,
        calibration: Calibration,
    },
    Max31785 {
        address: u8,
    },
}

impl DeviceConfig {
    /// The driver for this part on `i2c` (no bus traffic). `delay` serves parts that wait for a
    /// conversion (SHT4x) and is dropped by the others.
    pub fn build<I2C: I2c, D: DelayNs>(&self, i2c: I2C, delay: D) -> Device<I2C, D> {
        match *self {
            DeviceConfig::Tmp105 { address, .. } => Device::Tmp105(Tmp105::new(i2c, address)),
            DeviceConfig::Sht4x { address, precision } => {
                let mut sht = Sht4x::new(i2c, address, delay);
                sht.set_precision(precision);
                Device::Sht4x(sht)
            }
            DeviceConfig::Adm1272 { address, config, .. } => {
                Device::Adm1272(Adm1272::new(i2c, address, config))
            }
            DeviceConfig::Ina226 { address, .. } => Device::Ina226(Ina226::new(i2c, address)),
            DeviceConfig::Max31785 { address } => Device::Max31785(Max31785::new(i2c, address)),
        }
    }
}

/// Any driver of this crate, so a node's parts fit in one slice.
#[derive(Debug)]
pub enum Device<I2C, D> {
    Tmp105(Tmp105<I2C>),
    Sht4x(Sht4x<I2C, D>),
    Adm1272(Adm1272<I2C>),
    Ina226(Ina226<I2C>),
    Max31785(Max31785<I2C>),
}

impl<I2C: I2c, D: DelayNs> Device<I2C, D> {
    /// Writes the setup `config` asks for (resolution, monitoring enables, calibration). A device
    /// that fails here still samples; call again to retry.
    pub fn init(&mut self, config: &DeviceConfig) -> Result<(), Fault> {
        match (self, config) {
            // The driver starts from the continuous-mode configuration, so this one write also ends
            // a shutdown left over from before a warm reset.
            (Device::Tmp105(tmp), DeviceConfig::Tmp105 { resolution, .. }) => {
                tmp.set_resolution(*resolution)?
            }
            (
                Device::Adm1272(adm),
                DeviceConfig::Adm1272 {
                    monitor_vout_and_temperature: true,
                    ..
                },
            ) => adm.enable_vout_and_temperature()?,
            (Device::Ina226(ina), DeviceConfig::Ina226 { calibration, .. }) => ina.calibrate(*calibration)?,
            (Device::Sht4x(_) | Device::Adm1272(_) | Device::Max31785(_), _) => {}
            (Device::Tmp105(_) | Device::Ina226(_), _) => return Err(Fault::InvalidInput),
        }
        Ok(())
    }
}

impl<I2C: I2c, D: DelayNs> Sensor for Device<I2C, D> {
    fn sample(&mut self, measurement: Measurement) -> Result<Sample, Fault> {
        match self {
            Device::Tmp105(d) => d.sample(measurement),
            Device::Sht4x(d) => d.sample(measurement),
            Device::Adm1272(d) => d.sample(measurement),
            Device::Ina226(d) => d.sample(measurement),
            Device::Max31785(d) => d.sample(measurement),
        }
    }
}

impl<I2C: I2c, D: DelayNs> FanControl for Device<I2C, D> {
    fn set_fan(&mut self, fan: u8, target: FanTarget) -> Result<(), Fault> {
        match self {
            Device::Max31785(d) => d.set_fan(fan, target),
            _ => Err(Fault::Unsupported),
        }
    }
}
