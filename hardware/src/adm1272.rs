//! Analog Devices ADM1272 high-voltage hot-swap controller with PMBus power monitor, as used on
//! 48 V rack busbars.
//!
//! Datasheet: <https://www.analog.com/media/en/technical-documentation/data-sheets/adm1272.pdf>.
//! The driver can:
//! - read READ_VIN, READ_VOUT, READ_IOUT, READ_PIN and READ_TEMPERATURE_1, converted with the
//!   datasheet's DIRECT-format coefficients ("PMBus Direct Format Conversion" coefficient table) for
//!   the configured voltage range (60 V or 100 V), current-sense range (15 mV or 30 mV) and sense
//!   resistor;
//! - read the ranges from PMON_CONFIG, and enable VOUT and temperature monitoring there;
//! - read STATUS_WORD as typed [`StatusFault`]s and CLEAR_FAULTS.
//!
//! The default [`Adm1272Config`] is what the part reports after power-on (PMON_CONFIG 0x3F35: 100 V
//! range, 30 mV range), with a 0.3 mΩ sense resistor, as QEMU 7.2's `adm1272` model assumes.
//!
//! ```
//! # use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
//! use rackwatch_hardware::adm1272::{Adm1272, Adm1272Config};
//! # let i2c = Mock::new(&[
//! #     Transaction::write(0x10, vec![0x88]),
//! #     Transaction::read(0x10, vec![0x91, 0x08]),
//! # ]);
//! let mut hot_swap = Adm1272::new(i2c, 0x10, Adm1272Config::default());
//! let volts = hot_swap.read_vin()?; // 0x0891 = 2193 → 2193 · 100 / 4062
//! assert!((volts - 53.99).abs() < 0.01);
//! # hot_swap.destroy().done();
//! # Ok::<(), rackwatch_hardware::Error<embedded_hal::i2c::ErrorKind>>(())
//! ```

use embedded_hal::i2c::I2c;

use crate::Error;
use crate::bus::{RegisterRead, Target};
#[cfg(doc)]
use crate::pmbus::StatusFault;
use crate::pmbus::{Command, DirectFormat, StatusWord};
use crate::sensor::{Fault, Measurement, Sample, Sensor};

/// Manufacturer-specific commands ("PMBus Command Reference").
struct MfrCommand;

impl MfrCommand {
    const PMON_CONFIG: u8 = 0xD4;
}

/// PMON_CONFIG bits ("PMON_CONFIG" register description).
struct PmonConfig;

impl PmonConfig {
    /// 0: 15 mV full-scale sense voltage, 1: 30 mV.
    const IRANGE: u16 = 1 << 0;
    const VOUT_EN: u16 = 1 << 1;
    const TEMP1_EN: u16 = 1 << 3;
    /// 0: 60 V full-scale voltage, 1: 100 V.
    const VRANGE: u16 = 1 << 5;
}

/// Full-scale range of the voltage ADC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoltageRange {
    V60,
    V100,
}

/// Full-scale range of the current-sense amplifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentSenseRange {
    Mv15,
    Mv30,
}

/// How the part is set up: its two ranges and the sense resistor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adm1272Config {
    pub voltage_range: VoltageRange,
    pub current_sense_range: CurrentSenseRange,
    /// Sense resistor in mΩ: current and power coefficients m scale with it.
    pub sense_resistor_milliohm: f32,
}

impl Default for Adm1272Config {
    /// Power-on ranges (100 V, 30 mV) and the 0.3 mΩ sense resistor of QEMU's model.
    fn default() -> Self {
        Adm1272Config {
            voltage_range: VoltageRange::V100,
            current_sense_range: CurrentSenseRange::Mv30,
            sense_resistor_milliohm: 0.3,
        }
    }
}

impl Adm1272Config {
    /// Voltage coefficients (VIN and VOUT).
    pub fn voltage_format(&self) -> DirectFormat {
        let m = match self.voltage_range {
            VoltageRange::V60 => 6770.0,
            VoltageRange::V100 => 4062.0,
        };
        DirectFormat { m, b: 0.0, r: -2 }
    }

    /// Current coefficients; m is per mΩ of sense resistance. READ_IOUT is offset by b so that it
    /// reads reverse current too.
    pub fn current_format(&self) -> DirectFormat {
        let m = match self.current_sense_range {
            CurrentSenseRange::Mv15 => 1326.0,
            CurrentSenseRange::Mv30 => 663.0,
        };
        DirectFormat {
            m: m * self.sense_resistor_milliohm,
            b: 20480.0,
            r: -1,
        }
    }

    /// Power coefficients; m is per mΩ of sense resistance.
    pub fn power_format(&self) -> DirectFormat {
        let (m, r) = match (self.voltage_range, self.current_sense_range) {
            (VoltageRange::V60, CurrentSenseRange::Mv15) => (3512.0, -2),
            (VoltageRange::V100, CurrentSenseRange::Mv15) => (21071.0, -3),
            (VoltageRange::V60, CurrentSenseRange::Mv30) => (17561.0, -3),
            (VoltageRange::V100, CurrentSenseRange::Mv30) => (10535.0, -3),
        };
        DirectFormat {
            m: m * self.sense_resistor_milliohm,
            b: 0.0,
            r,
        }
    }

    /// Temperature coefficients (independent of the ranges).
    pub const fn temperature_format(&self) -> DirectFormat {
        DirectFormat {
            m: 42.0,
            b: 31871.0,
            r: -1,
        }
    }

    /// This configuration with the ranges PMON_CONFIG selects.
    pub fn with_pmon_config(self, pmon_config: u16) -> Self {
        Adm1272Config {
            voltage_range: if pmon_config & PmonConfig::VRANGE != 0 {
                VoltageRange::V100
            } else {
                VoltageRange::V60
            },
            current_sense_range: if pmon_config & PmonConfig::IRANGE != 0 {
                CurrentSenseRange::Mv30
            } else {
                CurrentSenseRange::Mv15
            },
            ..self
        }
    }
}

/// Plausible die temperatures: the part is specified from −40 °C to +125 °C junction temperature.
/// A value outside this is an out-of-range reading (QEMU's model reads raw 0, i.e. −759 °C).
const DIE_RANGE_C: core::ops::RangeInclusive<f32> = -40.0..=150.0;

/// ADM1272 driver.
#[derive(Debug)]
pub struct Adm1272<I2C> {
    target: Target<I2C>,
    config: Adm1272Config,
}

impl<I2C: I2c> Adm1272<I2C> {
    /// An ADM1272 at `address` (0x10 to 0x1F by the ADR pin), set up as `config`.
    pub fn new(i2c: I2C, address: u8, config: Adm1272Config) -> Self {
        Adm1272 {
            target: Target::new(i2c, address),
            config,
        }
    }

    /// Chooses how registers are read ([`RegisterRead`]; default two transactions).
    pub fn set_register_read(&mut self, mode: RegisterRead) {
        self.target.register_read = mode;
    }

    pub fn destroy(self) -> I2C {
        self.target.i2c
    }

    pub fn config(&self) -> Adm1272Config {
        self.config
    }

    /// Input voltage in V.
    pub fn read_vin(&mut self) -> Result<f32, Error<I2C::Error>> {
        self.read_direct(Command::READ_VIN, self.config.voltage_format())
    }

    /// Output voltage in V (after the hot-swap FET; monitored only with VOUT_EN).
    pub fn read_vout(&mut self) -> Result<f32, Error<I2C::Error>> {
        self.read_direct(Command::READ_VOUT, self.config.voltage_format())
    }

    /// Load current in A.
    pub fn read_iout(&mut self) -> Result<f32, Error<I2C::Error>> {
        self.read_direct(Command::READ_IOUT, self.config.current_format())
    }

    /// Input power in W.
    pub fn read_pin(&mut self) -> Result<f32, Error<I2C::Error>> {
        self.read_direct(Command::READ_PIN, self.config.power_format())
    }

    /// Temperature of the external sensing transistor in °C (monitored only with TEMP1_EN).
    pub fn read_temperature(&mut self) -> Result<f32, Error<I2C::Error>> {
        self.read_direct(Command::READ_TEMPERATURE_1, self.config.temperature_format())
    }

    /// STATUS_WORD.
    pub fn read_status(&mut self) -> Result<StatusWord, Error<I2C::Error>> {
        Ok(StatusWord(self.target.read_u16_le(Command::STATUS_WORD)?))
    }

    /// Clears latched status bits; conditions still present set them again.
    pub fn clear_faults(&mut self) -> Result<(), Error<I2C::Error>> {
        self.target.write(&[Command::CLEAR_FAULTS])
    }

    /// PMON_CONFIG.
    pub fn read_pmon_config(&mut self) -> Result<u16, Error<I2C::Error>> {
        self.target.read_u16_le(MfrCommand::PMON_CONFIG)
    }

    /// Reads PMON_CONFIG and adopts the ranges it selects (the sense resistor stays).
    pub fn sync_ranges(&mut self) -> Result<Adm1272Config, Error<I2C::Error>> {
        let pmon_config = self.read_pmon_config()?;
        self.config = self.config.with_pmon_config(pmon_config);
        Ok(self.config)
    }

    /// Turns on VOUT and temperature monitoring (off after power-on) and adopts the ranges.
    pub fn enable_vout_and_temperature(&mut self) -> Result<(), Error<I2C::Error>> {
        let pmon_config = self.read_pmon_config()? | PmonConfig::VOUT_EN | PmonConfig::TEMP1_EN;
        self.target.write_u16_le(MfrCommand::PMON_CONFIG, pmon_config)?;
        self.config = self.config.with_pmon_config(pmon_config);
        Ok(())
    }

    /// READ_* values are 12-bit unsigned in a word.
    fn read_direct(&mut self, command: u8, format: DirectFormat) -> Result<f32, Error<I2C::Error>> {
        let raw = self.target.read_u16_le(command)?;
        Ok(format.decode(i32::from(raw)))
    }
}

impl<I2C: I2c> Sensor for Adm1272<I2C> {
    fn sample(&mut self, measurement: Measurement) -> Result<Sample, Fault> {
        let value = match measurement {
            Measurement::InputVoltage => self.read_vin()?,
            Measurement::OutputVoltage => self.read_vout()?,
            Measurement::Current => self.read_iout()?,
            Measurement::Power => self.read_pin()?,
            Measurement::Temperature => {
                let celsius = self.read_temperature()?;
                if !DIE_RANGE_C.contains(&celsius) {
                    return Err(Fault::OutOfRange);
                }
                celsius
            }
            _ => return Err(Fault::Unsupported),
        };
        Ok(measurement.sample(value))
    }
}
