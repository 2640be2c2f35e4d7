//! Maxim (Analog Devices) MAX31785 six-channel PMBus fan controller.
//!
//! Datasheet: <https://www.analog.com/media/en/technical-documentation/data-sheets/MAX31785.pdf>.
//! The driver can, per fan (PMBus PAGE 0 to 5, one fan per page):
//! - drive the fan at a PWM duty (FAN_COMMAND_1 in 0.01 % steps, FAN_CONFIG_1_2 RPM bit clear) or
//!   at a closed-loop target speed (FAN_COMMAND_1 in rpm, RPM bit set);
//! - read back what was commanded, the tachometer speed (READ_FAN_SPEED_1, rpm) and the PWM the
//!   controller actually drives (MFR_READ_FAN_PWM, 0.01 %);
//! - read STATUS_FANS_1_2 as [`FanStatus`] and STATUS_WORD.
//!
//! Every fan access first writes PAGE: the page is device state another access may have changed.
//!
//! QEMU 7.2's `max31785` model differs from the part in ways that matter for tests: it never
//! updates MFR_READ_FAN_PWM (reads 0), sets READ_FAN_SPEED_1 to 3 × FAN_COMMAND_1 on a command,
//! and answers STATUS_FANS_1_2 with two bytes. Its PMBus layer keeps unread answer bytes for the
//! next read, so this driver reads STATUS_FANS_1_2 as a word and uses the low byte (a real part
//! answers 0xFF for the extra byte, which is ignored).
//!
//! ```
//! # use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
//! use rackwatch_hardware::max31785::Max31785;
//! # let i2c = Mock::new(&[
//! #     Transaction::write(0x52, vec![0x00, 0x02]),
//! #     Transaction::write(0x52, vec![0x90]),
//! #     Transaction::read(0x52, vec![0x10, 0x27]),
//! # ]);
//! let mut fans = Max31785::new(i2c, 0x52);
//! assert_eq!(fans.read_fan_speed(2)?, 10_000);
//! # fans.destroy().done();
//! # Ok::<(), rackwatch_hardware::Error<embedded_hal::i2c::ErrorKind>>(())
//! ```

use embedded_hal::i2c::I2c;
use rackwatch_protocols::FanTarget;

use crate::Error;
use crate::bus::{RegisterRead, Target};
use crate::pmbus::{Command, StatusWord};
use crate::sensor::{FanControl, Fault, Measurement, Sample, Sensor};

/// Fans are pages 0 to 5.
pub const FAN_COUNT: u8 = 6;

struct MfrCommand;

impl MfrCommand {
    const MFR_READ_FAN_PWM: u8 = 0xF3;
}

/// FAN_CONFIG_1_2 bits ("FAN_CONFIG_1_2" command description).
struct FanConfig;

impl FanConfig {
    const ENABLE: u8 = 1 << 7;
    /// 1: FAN_COMMAND_1 is a target speed in rpm; 0: a PWM duty.
    const RPM_MODE: u8 = 1 << 6;
}

/// STATUS_FANS_1_2 bits for fan 1, the only fan of each MAX31785 page.
struct FanStatusBits;

impl FanStatusBits {
    const FAULT: u8 = 1 << 7;
    const WARNING: u8 = 1 << 5;
    const SPEED_OVERRIDDEN: u8 = 1 << 3;
}

/// FAN_COMMAND_1 full scale in PWM mode: 100.00 %.
const PWM_FULL_SCALE: u16 = 10_000;
/// FAN_COMMAND_1 values from 0x8000 hand the fan to the automatic (look-up table) control.
const AUTOMATIC_FROM: u16 = 0x8000;

/// What a fan was last commanded to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FanCommand {
    /// PWM duty in percent (values above 100 % run the fan at 100 %).
    Duty(f32),
    /// Closed-loop target speed.
    Rpm(u16),
    /// Automatic control from the temperature look-up table.
    Automatic,
}

/// STATUS_FANS_1_2 of one fan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FanStatus {
    /// Speed below the fault limit (stalled or dead fan).
    pub fault: bool,
    /// Speed below the warning limit.
    pub warning: bool,
    /// The controller overrides the command (e.g. 100 % after a fault).
    pub speed_overridden: bool,
}

impl FanStatus {
    fn from_bits(bits: u8) -> Self {
        FanStatus {
            fault: bits & FanStatusBits::FAULT != 0,
            warning: bits & FanStatusBits::WARNING != 0,
            speed_overridden: bits & FanStatusBits::SPEED_OVERRIDDEN != 0,
        }
    }
}

/// MAX31785 driver.
#[derive(Debug)]
pub struct Max31785<I2C> {
    target: Target<I2C>,
}

impl<I2C: I2c> Max31785<I2C> {
    /// A MAX31785 at `address` (0x52 to 0x55 and others by the ADD pins).
    pub fn new(i2c: I2C, address: u8) -> Self {
        Max31785 {
            target: Target::new(i2c, address),
        }
    }

    /// Chooses how registers are read ([`RegisterRead`]; default two transactions).
    pub fn set_register_read(&mut self, mode: RegisterRead) {
        self.target.register_read = mode;
    }

    pub fn destroy(self) -> I2C {
        self.target.i2c
    }

    /// Drives `fan` at `percent` PWM duty (0 to 100, 0.01 % steps).
    pub fn set_fan_duty(&mut self, fan: u8, percent: f32) -> Result<(), Error<I2C::Error>> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(Error::InvalidInput);
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "0 to 10000"
        )]
        let command = libm::roundf(percent * 100.0) as u16;
        self.command_fan(fan, false, command)
    }

    /// Drives `fan` at a closed-loop target of `rpm` (up to 32767).
    pub fn set_fan_rpm(&mut self, fan: u8, rpm: u16) -> Result<(), Error<I2C::Error>> {
        if rpm >= AUTOMATIC_FROM {
            return Err(Error::InvalidInput);
        }
        self.command_fan(fan, true, rpm)
    }

    /// What `fan` was last commanded to do.
    pub fn read_fan_command(&mut self, fan: u8) -> Result<FanCommand, Error<I2C::Error>> {
        self.select_fan(fan)?;
        let config = self.target.read_u8(Command::FAN_CONFIG_1_2)?;
        let command = self.target.read_u16_le(Command::FAN_COMMAND_1)?;
        Ok(if command >= AUTOMATIC_FROM {
            FanCommand::Automatic
        } else if config & FanConfig::RPM_MODE != 0 {
            FanCommand::Rpm(command)
        } else {
            FanCommand::Duty(f32::from(command.min(PWM_FULL_SCALE)) / 100.0)
        })
    }

    /// Tachometer speed of `fan` in rpm.
    pub fn read_fan_speed(&mut self, fan: u8) -> Result<u16, Error<I2C::Error>> {
        self.select_fan(fan)?;
        self.target.read_u16_le(Command::READ_FAN_SPEED_1)
    }

    /// PWM duty the controller drives `fan` with, in percent.
    pub fn read_fan_pwm(&mut self, fan: u8) -> Result<f32, Error<I2C::Error>> {
        self.select_fan(fan)?;
        let raw = self.target.read_u16_le(MfrCommand::MFR_READ_FAN_PWM)?;
        Ok(f32::from(raw) / 100.0)
    }

    /// STATUS_FANS_1_2 of `fan` (read as a word, see the module documentation).
    pub fn read_fan_status(&mut self, fan: u8) -> Result<FanStatus, Error<I2C::Error>> {
        self.select_fan(fan)?;
        let [bits, _] = self.target.read_u16_le(Command::STATUS_FANS_1_2)?.to_le_bytes();
        Ok(FanStatus::from_bits(bits))
    }

    /// STATUS_WORD of `fan`'s page.
    pub fn read_status(&mut self, fan: u8) -> Result<StatusWord, Error<I2C::Error>> {
        self.select_fan(fan)?;
        Ok(StatusWord(self.target.read_u16_le(Command::STATUS_WORD)?))
    }

    /// Clears the latched status bits of every page.
    pub fn clear_faults(&mut self) -> Result<(), Error<I2C::Error>> {
        self.target.write(&[Command::CLEAR_FAULTS])
    }

    fn select_fan(&mut self, fan: u8) -> Result<(), Error<I2C::Error>> {
        if fan >= FAN_COUNT {
            return Err(Error::InvalidInput);
        }
        self.target.write_u8(Command::PAGE, fan)
    }

    /// Sets the mode bit (keeping enable and pulses per revolution), then the command.
    fn command_fan(&mut self, fan: u8, rpm_mode: bool, command: u16) -> Result<(), Error<I2C::Error>> {
        self.select_fan(fan)?;
        let config = self.target.read_u8(Command::FAN_CONFIG_1_2)?;
        let mode = if rpm_mode { FanConfig::RPM_MODE } else { 0 };
        let wanted = (config & !FanConfig::RPM_MODE) | FanConfig::ENABLE | mode;
        if wanted != config {
            self.target.write_u8(Command::FAN_CONFIG_1_2, wanted)?;
        }
        self.target.write_u16_le(Command::FAN_COMMAND_1, command)
    }
}

impl<I2C: I2c> Sensor for Max31785<I2C> {
    fn sample(&mut self, measurement: Measurement) -> Result<Sample, Fault> {
        let value = match measurement {
            Measurement::FanSpeed { fan } => f32::from(self.read_fan_speed(fan)?),
            Measurement::FanDuty { fan } => self.read_fan_pwm(fan)?,
            Measurement::FanDutyCommanded { fan } => match self.read_fan_command(fan)? {
                FanCommand::Duty(percent) => percent,
                // No duty was commanded: the fan runs on a speed target or the look-up table.
                FanCommand::Rpm(_) | FanCommand::Automatic => return Err(Fault::NotReady),
            },
            _ => return Err(Fault::Unsupported),
        };
        Ok(measurement.sample(value))
    }
}

impl<I2C: I2c> FanControl for Max31785<I2C> {
    fn set_fan(&mut self, fan: u8, target: FanTarget) -> Result<(), Fault> {
        match target {
            FanTarget::DutyPercent(percent) => self.set_fan_duty(fan, percent)?,
            FanTarget::Rpm(rpm) => self.set_fan_rpm(fan, rpm)?,
        }
        Ok(())
    }
}
