//! TI INA226 current, bus-voltage and power monitor with a shunt resistor.
//!
//! Datasheet: <https://www.ti.com/lit/ds/symlink/ina226.pdf> (SBOS547). The driver can:
//! - program the calibration register from the shunt resistance and the maximum expected current
//!   ("Programming the INA226", equations 1 and 2);
//! - read bus voltage (1.25 mV/LSB), shunt voltage (2.5 µV/LSB), current (Current_LSB) and power
//!   (25 × Current_LSB), equations 3 and 4;
//! - set averaging (continuous shunt and bus conversions at 1.1 ms each) and read the IDs.
//!
//! The calibration register reads 0 after power-on, so current and power read 0 until it is
//! programmed: the driver answers [`Error::NotReady`] for them until [`Ina226::calibrate`].
//!
//! ```
//! # use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
//! use rackwatch_hardware::ina226::{Calibration, Ina226};
//! # let i2c = Mock::new(&[
//! #     Transaction::write(0x40, vec![0x05, 0x0A, 0x00]),
//! #     Transaction::write(0x40, vec![0x04]),
//! #     Transaction::read(0x40, vec![0x27, 0x10]),
//! # ]);
//! let mut monitor = Ina226::new(i2c, 0x40);
//! // Datasheet Table 1: 2 mΩ shunt, Current_LSB rounded up to 1 mA: CAL = 0.00512 / (1 mA · 2 mΩ)
//! // = 2560, and a current register of 2710h reads 10 A.
//! monitor.calibrate(Calibration::with_current_lsb(0.002, 0.001)?)?;
//! assert!((monitor.read_current()? - 10.0).abs() < 1e-5);
//! # monitor.destroy().done();
//! # Ok::<(), rackwatch_hardware::Error<embedded_hal::i2c::ErrorKind>>(())
//! ```

use embedded_hal::i2c::I2c;

use crate::Error;
use crate::bus::{RegisterRead, Target};
use crate::sensor::{Fault, Measurement, Sample, Sensor};

struct Register;

impl Register {
    const CONFIGURATION: u8 = 0x00;
    const SHUNT_VOLTAGE: u8 = 0x01;
    const BUS_VOLTAGE: u8 = 0x02;
    const POWER: u8 = 0x03;
    const CURRENT: u8 = 0x04;
    const CALIBRATION: u8 = 0x05;
    const MANUFACTURER_ID: u8 = 0xFE;
    const DIE_ID: u8 = 0xFF;
}

/// Configuration register fields ("Configuration Register" table).
struct ConfigBits;

impl ConfigBits {
    /// Bit 14 is reserved and reads 1.
    const RESERVED: u16 = 0x4000;
    /// VBUSCT = VSHCT = 100 (1.1 ms), the power-on conversion times.
    const CONVERSION_1_1_MS: u16 = 0b100 << 6 | 0b100 << 3;
    /// MODE = 111: shunt and bus, continuous.
    const CONTINUOUS_SHUNT_AND_BUS: u16 = 0b111;
}

const BUS_VOLTAGE_LSB_V: f32 = 1.25e-3;
const SHUNT_VOLTAGE_LSB_V: f32 = 2.5e-6;
/// The fixed scaling constant of equation 1.
const CALIBRATION_SCALE: f32 = 0.00512;
/// Power_LSB = 25 × Current_LSB (equation 4).
const POWER_LSB_PER_CURRENT_LSB: f32 = 25.0;

/// Texas Instruments' ID in the manufacturer ID register ("TI" in ASCII).
pub const MANUFACTURER_ID: u16 = 0x5449;

/// Samples averaged per conversion result (AVG field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Averaging {
    #[default]
    _1,
    _4,
    _16,
    _64,
    _128,
    _256,
    _512,
    _1024,
}

impl Averaging {
    const fn bits(self) -> u16 {
        (match self {
            Averaging::_1 => 0,
            Averaging::_4 => 1,
            Averaging::_16 => 2,
            Averaging::_64 => 3,
            Averaging::_128 => 4,
            Averaging::_256 => 5,
            Averaging::_512 => 6,
            Averaging::_1024 => 7,
        }) << 9
    }
}

/// A calibration register value with the current LSB it gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Amperes per LSB of the current register.
    pub current_lsb_a: f32,
    /// The CAL register value.
    pub register: u16,
}

impl Calibration {
    /// The finest calibration for currents up to `max_current_a`: Current_LSB = max / 2^15
    /// (equation 2), CAL = 0.00512 / (Current_LSB · R_shunt) (equation 1).
    pub fn for_max_current(shunt_ohm: f32, max_current_a: f32) -> Result<Self, CalibrationError> {
        Self::with_current_lsb(shunt_ohm, max_current_a / 32768.0)
    }

    /// Calibration for a chosen (usually rounded-up) Current_LSB.
    pub fn with_current_lsb(shunt_ohm: f32, current_lsb_a: f32) -> Result<Self, CalibrationError> {
        if !(shunt_ohm > 0.0 && current_lsb_a > 0.0) {
            return Err(CalibrationError::NotPositive);
        }
        // Equation 1 truncates; the nudge keeps f32 rounding (2559.9998) from costing an exact 2560.
        let cal = libm::truncf(CALIBRATION_SCALE / (current_lsb_a * shunt_ohm) * (1.0 + 1e-6));
        // CAL is 15 bits (bit 15 reserved); 0 would disable current and power.
        if !(1.0..=32767.0).contains(&cal) {
            return Err(CalibrationError::OutOfRange);
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked range above"
        )]
        let register = cal as u16;
        Ok(Calibration {
            current_lsb_a,
            register,
        })
    }
}

/// Why a shunt and current LSB give no calibration register value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CalibrationError {
    #[error("shunt resistance and current LSB must be positive")]
    NotPositive,
    /// CAL would not fit its 15 bits, or be 0: pick a larger shunt or a smaller maximum current.
    #[error("calibration value outside 1 to 32767")]
    OutOfRange,
}

impl<E> From<CalibrationError> for Error<E> {
    fn from(_: CalibrationError) -> Self {
        Error::InvalidInput
    }
}

/// INA226 driver.
#[derive(Debug)]
pub struct Ina226<I2C> {
    target: Target<I2C>,
    current_lsb_a: Option<f32>,
}

impl<I2C: I2c> Ina226<I2C> {
    /// An INA226 at `address` (0x40 to 0x4F by A1/A0).
    pub fn new(i2c: I2C, address: u8) -> Self {
        Ina226 {
            target: Target::new(i2c, address),
            current_lsb_a: None,
        }
    }

    /// Chooses how registers are read ([`RegisterRead`]; default two transactions).
    pub fn set_register_read(&mut self, mode: RegisterRead) {
        self.target.register_read = mode;
    }

    pub fn destroy(self) -> I2C {
        self.target.i2c
    }

    /// Writes the calibration register; current and power read from then on.
    pub fn calibrate(&mut self, calibration: Calibration) -> Result<(), Error<I2C::Error>> {
        self.target
            .write_u16_be(Register::CALIBRATION, calibration.register)?;
        self.current_lsb_a = Some(calibration.current_lsb_a);
        Ok(())
    }

    /// Continuous shunt and bus conversions, 1.1 ms each, averaged over `averaging` samples.
    pub fn set_averaging(&mut self, averaging: Averaging) -> Result<(), Error<I2C::Error>> {
        let config = ConfigBits::RESERVED
            | averaging.bits()
            | ConfigBits::CONVERSION_1_1_MS
            | ConfigBits::CONTINUOUS_SHUNT_AND_BUS;
        self.target.write_u16_be(Register::CONFIGURATION, config)
    }

    /// Bus voltage in V (always positive, 1.25 mV/LSB).
    pub fn read_bus_voltage(&mut self) -> Result<f32, Error<I2C::Error>> {
        let raw = self.target.read_u16_be(Register::BUS_VOLTAGE)?;
        Ok(f32::from(raw) * BUS_VOLTAGE_LSB_V)
    }

    /// Shunt voltage in V (signed, 2.5 µV/LSB).
    pub fn read_shunt_voltage(&mut self) -> Result<f32, Error<I2C::Error>> {
        let raw = self.target.read_u16_be(Register::SHUNT_VOLTAGE)?;
        Ok(f32::from(raw.cast_signed()) * SHUNT_VOLTAGE_LSB_V)
    }

    /// Current in A (signed).
    pub fn read_current(&mut self) -> Result<f32, Error<I2C::Error>> {
        let lsb = self.current_lsb_a.ok_or(Error::NotReady)?;
        let raw = self.target.read_u16_be(Register::CURRENT)?;
        Ok(f32::from(raw.cast_signed()) * lsb)
    }

    /// Power in W.
    pub fn read_power(&mut self) -> Result<f32, Error<I2C::Error>> {
        let lsb = self.current_lsb_a.ok_or(Error::NotReady)?;
        let raw = self.target.read_u16_be(Register::POWER)?;
        Ok(f32::from(raw) * POWER_LSB_PER_CURRENT_LSB * lsb)
    }

    /// Manufacturer ID ([`MANUFACTURER_ID`]) and die ID (0x2260 for INA226 revision 0).
    pub fn read_ids(&mut self) -> Result<(u16, u16), Error<I2C::Error>> {
        let manufacturer = self.target.read_u16_be(Register::MANUFACTURER_ID)?;
        let die = self.target.read_u16_be(Register::DIE_ID)?;
        Ok((manufacturer, die))
    }
}

impl<I2C: I2c> Sensor for Ina226<I2C> {
    fn sample(&mut self, measurement: Measurement) -> Result<Sample, Fault> {
        let value = match measurement {
            Measurement::BusVoltage => self.read_bus_voltage()?,
            Measurement::Current => self.read_current()?,
            Measurement::Power => self.read_power()?,
            _ => return Err(Fault::Unsupported),
        };
        Ok(measurement.sample(value))
    }
}
