//! TI TMP105 digital temperature sensor (same register map: TMP75, TMP175, TMP275).
//!
//! Datasheet: <https://www.ti.com/lit/ds/symlink/tmp105.pdf> (SBOS281). The driver can:
//! - read the temperature in °C ("Temperature Register", 12-bit two's complement, left-justified);
//! - set the converter resolution, 9 to 12 bits ("Converter Resolution (R1/R0)");
//! - run continuously or shut down, and take a one-shot measurement while shut down
//!   ("Shutdown Mode (SD)", "One-Shot (OS)").
//!
//! TMP102 is not covered: its configuration register is 16 bits wide and its temperature register
//! has a 13-bit extended mode.
//!
//! ```
//! # use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
//! use rackwatch_hardware::tmp105::{Resolution, Tmp105};
//! # let i2c = Mock::new(&[
//! #     Transaction::write(0x48, vec![0x01, 0x60]),
//! #     Transaction::write(0x48, vec![0x00]),
//! #     Transaction::read(0x48, vec![0x19, 0x00]),
//! # ]);
//! let mut sensor = Tmp105::new(i2c, 0x48);
//! sensor.set_resolution(Resolution::Bits12)?;
//! assert_eq!(sensor.read_temperature()?, 25.0);
//! # sensor.destroy().done();
//! # Ok::<(), rackwatch_hardware::Error<embedded_hal::i2c::ErrorKind>>(())
//! ```

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

use crate::Error;
use crate::bus::{RegisterRead, Target};
use crate::sensor::{Fault, Measurement, Sample, Sensor};

/// Register pointers ("Pointer Register" table).
struct Register;

impl Register {
    const TEMPERATURE: u8 = 0x00;
    const CONFIGURATION: u8 = 0x01;
}

/// Bits of the configuration register ("Configuration Register" table); 0x00 after power-on.
struct BitFlags;

impl BitFlags {
    const SHUTDOWN: u8 = 0b0000_0001;
    const RESOLUTION: u8 = 0b0110_0000;
    const ONE_SHOT: u8 = 0b1000_0000;
}

/// The specified operating range ("Absolute Maximum Ratings"/"Electrical Characteristics"):
/// a reading outside it is an out-of-range reading, not a temperature.
const RANGE_C: core::ops::RangeInclusive<f32> = -55.0..=125.0;

/// Converter resolution. More bits take longer to convert ("Electrical Characteristics",
/// conversion time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolution {
    /// 0.5 °C, 27.5 ms typical (power-on default).
    #[default]
    Bits9,
    /// 0.25 °C, 55 ms typical.
    Bits10,
    /// 0.125 °C, 110 ms typical.
    Bits11,
    /// 0.0625 °C, 220 ms typical.
    Bits12,
}

impl Resolution {
    const fn bits(self) -> u8 {
        match self {
            Resolution::Bits9 => 0b00,
            Resolution::Bits10 => 0b01,
            Resolution::Bits11 => 0b10,
            Resolution::Bits12 => 0b11,
        }
    }

    /// The maximum conversion time in milliseconds: the wait after a one-shot trigger.
    pub const fn conversion_time_ms(self) -> u32 {
        match self {
            Resolution::Bits9 => 38,
            Resolution::Bits10 => 75,
            Resolution::Bits11 => 150,
            Resolution::Bits12 => 300,
        }
    }
}

/// TMP105 driver.
#[derive(Debug)]
pub struct Tmp105<I2C> {
    target: Target<I2C>,
    /// What the driver last wrote to the configuration register.
    config: u8,
}

impl<I2C: I2c> Tmp105<I2C> {
    /// A TMP105 at `address` (0x48 or 0x49 by the A0 pin; TMP75 0x48 to 0x4F). The driver assumes
    /// the power-on configuration (continuous, 9 bits) until it writes one.
    pub fn new(i2c: I2C, address: u8) -> Self {
        Tmp105 {
            target: Target::new(i2c, address),
            config: 0,
        }
    }

    /// Chooses how registers are read ([`RegisterRead`]; default two transactions).
    pub fn set_register_read(&mut self, mode: RegisterRead) {
        self.target.register_read = mode;
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I2C {
        self.target.i2c
    }

    /// Temperature of the last conversion in °C.
    pub fn read_temperature(&mut self) -> Result<f32, Error<I2C::Error>> {
        let raw = self.target.read_u16_be(Register::TEMPERATURE)?;
        Ok(raw_to_celsius(raw))
    }

    /// Sets the resolution (keeps the other configuration bits).
    pub fn set_resolution(&mut self, resolution: Resolution) -> Result<(), Error<I2C::Error>> {
        let config = (self.config & !BitFlags::RESOLUTION) | (resolution.bits() << 5);
        self.write_config(config)
    }

    /// Converts continuously (the power-on mode); [`Self::read_temperature`] returns the latest.
    pub fn enable_continuous(&mut self) -> Result<(), Error<I2C::Error>> {
        self.write_config(self.config & !BitFlags::SHUTDOWN)
    }

    /// Stops converting (about 0.1 µA); start single conversions with [`Self::trigger_one_shot`].
    pub fn shutdown(&mut self) -> Result<(), Error<I2C::Error>> {
        self.write_config(self.config | BitFlags::SHUTDOWN)
    }

    /// Starts one conversion. Only valid in shutdown mode ("One-Shot (OS)"), otherwise
    /// [`Error::InvalidInput`]. The result is ready after [`Resolution::conversion_time_ms`].
    pub fn trigger_one_shot(&mut self) -> Result<(), Error<I2C::Error>> {
        if self.config & BitFlags::SHUTDOWN == 0 {
            return Err(Error::InvalidInput);
        }
        // OS is not stored: the device clears it when the conversion ends.
        self.target
            .write_u8(Register::CONFIGURATION, self.config | BitFlags::ONE_SHOT)
    }

    /// Shuts down if needed, triggers one conversion, waits for it and reads it.
    pub fn measure_one_shot<D: DelayNs>(&mut self, delay: &mut D) -> Result<f32, Error<I2C::Error>> {
        if self.config & BitFlags::SHUTDOWN == 0 {
            self.shutdown()?;
        }
        self.trigger_one_shot()?;
        delay.delay_ms(self.resolution().conversion_time_ms());
        self.read_temperature()
    }

    /// The resolution the driver configured.
    pub fn resolution(&self) -> Resolution {
        match (self.config & BitFlags::RESOLUTION) >> 5 {
            0b00 => Resolution::Bits9,
            0b01 => Resolution::Bits10,
            0b10 => Resolution::Bits11,
            _ => Resolution::Bits12,
        }
    }

    /// Reads the configuration register from the device and adopts it.
    pub fn read_config(&mut self) -> Result<u8, Error<I2C::Error>> {
        let config = self.target.read_u8(Register::CONFIGURATION)?;
        self.config = config & !BitFlags::ONE_SHOT;
        Ok(config)
    }

    fn write_config(&mut self, config: u8) -> Result<(), Error<I2C::Error>> {
        self.target.write_u8(Register::CONFIGURATION, config)?;
        self.config = config;
        Ok(())
    }
}

/// The temperature register holds 12 significant bits, two's complement, left-justified: one LSB of
/// the 16-bit word is 1/256 °C, and bits below the configured resolution read 0.
pub fn raw_to_celsius(raw: u16) -> f32 {
    f32::from(raw.cast_signed()) / 256.0
}

impl<I2C: I2c> Sensor for Tmp105<I2C> {
    fn sample(&mut self, measurement: Measurement) -> Result<Sample, Fault> {
        match measurement {
            Measurement::Temperature => {
                let celsius = self.read_temperature()?;
                if !RANGE_C.contains(&celsius) {
                    return Err(Fault::OutOfRange);
                }
                Ok(measurement.sample(celsius))
            }
            _ => Err(Fault::Unsupported),
        }
    }
}
