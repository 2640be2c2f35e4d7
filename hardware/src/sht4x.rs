//! Sensirion SHT4x (SHT40/41/45) relative humidity and temperature sensor.
//!
//! Datasheet: <https://sensirion.com/media/documents/33FD6951/662A593A/HT_DS_Datasheet_SHT4x.pdf>.
//! The driver can:
//! - measure temperature and relative humidity at high, medium or low repeatability, waiting the
//!   maximum measurement duration of the datasheet's "Timings" table;
//! - read the 32-bit serial number and soft-reset the sensor;
//! - derive the dew point ([`crate::air::dew_point`]).
//!
//! The SHT4x has no registers: each command is a one-byte write, the answer a later read of two
//! 16-bit words, each followed by its CRC-8 ("Checksum Calculation"). A word whose CRC does not match
//! is [`Error::Crc`], never a value. While it measures, the sensor does not acknowledge reads.
//!
//! ```
//! # use embedded_hal_mock::eh1::{delay::NoopDelay, i2c::{Mock, Transaction}};
//! use rackwatch_hardware::sht4x::{Precision, Sht4x};
//! # let i2c = Mock::new(&[
//! #     Transaction::write(0x44, vec![0xFD]),
//! #     Transaction::read(0x44, vec![0x66, 0x66, 0x93, 0x80, 0x00, 0xA2]),
//! # ]);
//! let mut sensor = Sht4x::new(i2c, 0x44, NoopDelay::new());
//! let m = sensor.measure(Precision::High)?;
//! assert!((m.temperature_c - 25.0).abs() < 0.01 && (m.relative_humidity - 56.5).abs() < 0.01);
//! # sensor.destroy().0.done();
//! # Ok::<(), rackwatch_hardware::Error<embedded_hal::i2c::ErrorKind>>(())
//! ```

use crc::{CRC_8_NRSC_5, Crc};
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

use crate::bus::Target;
use crate::sensor::{Fault, Measurement, Sample, Sensor};
use crate::{Error, air};

/// The default address of SHT40-AD1B and most variants; SHT40-BD1B answers at 0x45.
pub const DEFAULT_ADDRESS: u8 = 0x44;

/// Command codes ("Communication and Operation", command table).
struct Command;

impl Command {
    const MEASURE_HIGH_PRECISION: u8 = 0xFD;
    const MEASURE_MEDIUM_PRECISION: u8 = 0xF6;
    const MEASURE_LOWEST_PRECISION: u8 = 0xE0;
    const READ_SERIAL: u8 = 0x89;
    const SOFT_RESET: u8 = 0x94;
}

/// Polynomial 0x31, initial value 0xFF, no reflection, no final XOR ("Checksum Calculation").
const CRC8: Crc<u8> = Crc::<u8>::new(&CRC_8_NRSC_5);

/// Measurement repeatability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Repeatability 0.04 °C / 0.08 %RH, 8.3 ms.
    #[default]
    High,
    /// 4.5 ms.
    Medium,
    /// 1.6 ms.
    Low,
}

impl Precision {
    const fn command(self) -> u8 {
        match self {
            Precision::High => Command::MEASURE_HIGH_PRECISION,
            Precision::Medium => Command::MEASURE_MEDIUM_PRECISION,
            Precision::Low => Command::MEASURE_LOWEST_PRECISION,
        }
    }

    /// Maximum measurement duration in µs ("Timings" table, t_MEAS max).
    pub const fn duration_us(self) -> u32 {
        match self {
            Precision::High => 8_300,
            Precision::Medium => 4_500,
            Precision::Low => 1_600,
        }
    }
}

/// Maximum soft-reset time ("Timings" table, t_SR), also the wait before reading the serial number.
const COMMAND_DURATION_US: u32 = 1_000;

/// One temperature and humidity measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Humiture {
    pub temperature_c: f32,
    /// Cropped to 0 to 100 %RH as the datasheet recommends (the raw formula spans −6 to 119).
    pub relative_humidity: f32,
}

/// SHT4x driver. It owns a delay to wait out measurements.
#[derive(Debug)]
pub struct Sht4x<I2C, D> {
    target: Target<I2C>,
    delay: D,
    precision: Precision,
}

impl<I2C: I2c, D: DelayNs> Sht4x<I2C, D> {
    pub fn new(i2c: I2C, address: u8, delay: D) -> Self {
        Sht4x {
            target: Target::new(i2c, address),
            delay,
            precision: Precision::default(),
        }
    }

    /// Gives the bus and the delay back.
    pub fn destroy(self) -> (I2C, D) {
        (self.target.i2c, self.delay)
    }

    /// The precision [`Sensor::sample`] measures with.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    /// Measures temperature and humidity and checks both CRCs.
    pub fn measure(&mut self, precision: Precision) -> Result<Humiture, Error<I2C::Error>> {
        let [t_ticks, rh_ticks] = self.command(precision.command(), precision.duration_us())?;
        Ok(Humiture {
            temperature_c: ticks_to_celsius(t_ticks),
            relative_humidity: ticks_to_relative_humidity(rh_ticks),
        })
    }

    /// The sensor's unique 32-bit serial number.
    pub fn serial_number(&mut self) -> Result<u32, Error<I2C::Error>> {
        let [high, low] = self.command(Command::READ_SERIAL, COMMAND_DURATION_US)?;
        Ok(u32::from(high) << 16 | u32::from(low))
    }

    /// Resets the sensor to its power-on state and waits until it accepts commands again.
    pub fn soft_reset(&mut self) -> Result<(), Error<I2C::Error>> {
        self.target.write(&[Command::SOFT_RESET])?;
        self.delay.delay_us(COMMAND_DURATION_US);
        Ok(())
    }

    /// Sends `command`, waits `wait_us` and reads the two CRC-checked words of the answer.
    fn command(&mut self, command: u8, wait_us: u32) -> Result<[u16; 2], Error<I2C::Error>> {
        self.target.write(&[command])?;
        self.delay.delay_us(wait_us);
        let mut answer = [0u8; 6];
        self.target.read(&mut answer)?;
        let [a0, a1, a_crc, b0, b1, b_crc] = answer;
        Ok([checked_word([a0, a1], a_crc)?, checked_word([b0, b1], b_crc)?])
    }
}

/// The word, if its CRC matches.
fn checked_word<E>(word: [u8; 2], crc: u8) -> Result<u16, Error<E>> {
    if CRC8.checksum(&word) == crc {
        Ok(u16::from_be_bytes(word))
    } else {
        Err(Error::Crc)
    }
}

/// T = −45 + 175 · S_T / (2^16 − 1) ("Conversion of Signal Output").
pub fn ticks_to_celsius(ticks: u16) -> f32 {
    -45.0 + 175.0 * f32::from(ticks) / 65535.0
}

/// RH = −6 + 125 · S_RH / (2^16 − 1), cropped to 0 to 100 %RH ("Conversion of Signal Output").
pub fn ticks_to_relative_humidity(ticks: u16) -> f32 {
    (-6.0 + 125.0 * f32::from(ticks) / 65535.0).clamp(0.0, 100.0)
}

impl<I2C: I2c, D: DelayNs> Sensor for Sht4x<I2C, D> {
    /// Each sample is a fresh measurement (8.3 ms at high precision).
    fn sample(&mut self, measurement: Measurement) -> Result<Sample, Fault> {
        let value = match measurement {
            Measurement::Temperature => self.measure(self.precision)?.temperature_c,
            Measurement::RelativeHumidity => self.measure(self.precision)?.relative_humidity,
            Measurement::DewPoint => {
                let m = self.measure(self.precision)?;
                air::dew_point(m.temperature_c, m.relative_humidity).ok_or(Fault::OutOfRange)?
            }
            _ => return Err(Fault::Unsupported),
        };
        Ok(measurement.sample(value))
    }
}
