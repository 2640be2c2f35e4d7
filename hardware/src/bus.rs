//! Register access on an I2C/SMBus target, shared by every driver.
//!
//! A "read register" on these parts is the SMBus *Read Byte/Word* protocol: write the register pointer
//! (or PMBus command code), then read the data. SMBus joins both halves with a repeated START; the
//! parts here also accept a STOP in between, because the pointer they latch survives the STOP (TMP105
//! and INA226 datasheets, "Pointer Register"; PMBus parts keep the last command code until the next).
//! Some controllers cannot issue a repeated START, among them the Stellaris I2C model of QEMU 7.2 that
//! the firmware's emulator tests run on, so the default here is two transactions.

use embedded_hal::i2c::I2c;

use crate::Error;

/// How a register is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegisterRead {
    /// `write(address, [register])` with a STOP, then a separate `read(address, buffer)`.
    ///
    /// Works on every controller, including those without repeated START (QEMU's Stellaris model).
    /// On a bus shared with another controller, a second master could move the pointer in between;
    /// rack nodes have a single master.
    #[default]
    WriteThenRead,
    /// One `write_read` transaction with a repeated START, as the SMBus specification draws it.
    RepeatedStart,
}

/// One target on the bus: the bus, the 7-bit address and the way registers are read.
#[derive(Debug)]
pub(crate) struct Target<I2C> {
    pub(crate) i2c: I2C,
    pub(crate) address: u8,
    pub(crate) register_read: RegisterRead,
}

impl<I2C: I2c> Target<I2C> {
    pub(crate) fn new(i2c: I2C, address: u8) -> Self {
        Target {
            i2c,
            address,
            register_read: RegisterRead::default(),
        }
    }

    /// Reads `buffer.len()` bytes starting at `register`.
    pub(crate) fn read_register(&mut self, register: u8, buffer: &mut [u8]) -> Result<(), Error<I2C::Error>> {
        match self.register_read {
            RegisterRead::WriteThenRead => {
                self.i2c.write(self.address, &[register]).map_err(Error::I2C)?;
                self.i2c.read(self.address, buffer).map_err(Error::I2C)
            }
            RegisterRead::RepeatedStart => self
                .i2c
                .write_read(self.address, &[register], buffer)
                .map_err(Error::I2C),
        }
    }

    /// Writes `bytes` (register pointer or command first) in one transaction.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), Error<I2C::Error>> {
        self.i2c.write(self.address, bytes).map_err(Error::I2C)
    }

    /// Reads without writing a pointer first (Sensirion parts, which have no registers).
    pub(crate) fn read(&mut self, buffer: &mut [u8]) -> Result<(), Error<I2C::Error>> {
        self.i2c.read(self.address, buffer).map_err(Error::I2C)
    }

    pub(crate) fn read_u8(&mut self, register: u8) -> Result<u8, Error<I2C::Error>> {
        let mut buffer = [0u8; 1];
        self.read_register(register, &mut buffer)?;
        Ok(buffer[0])
    }

    /// A big-endian word (TI register maps).
    pub(crate) fn read_u16_be(&mut self, register: u8) -> Result<u16, Error<I2C::Error>> {
        let mut buffer = [0u8; 2];
        self.read_register(register, &mut buffer)?;
        Ok(u16::from_be_bytes(buffer))
    }

    /// A little-endian word (SMBus/PMBus Read Word, low byte first).
    pub(crate) fn read_u16_le(&mut self, register: u8) -> Result<u16, Error<I2C::Error>> {
        let mut buffer = [0u8; 2];
        self.read_register(register, &mut buffer)?;
        Ok(u16::from_le_bytes(buffer))
    }

    pub(crate) fn write_u8(&mut self, register: u8, value: u8) -> Result<(), Error<I2C::Error>> {
        self.write(&[register, value])
    }

    pub(crate) fn write_u16_be(&mut self, register: u8, value: u16) -> Result<(), Error<I2C::Error>> {
        let [high, low] = value.to_be_bytes();
        self.write(&[register, high, low])
    }

    pub(crate) fn write_u16_le(&mut self, register: u8, value: u16) -> Result<(), Error<I2C::Error>> {
        let [low, high] = value.to_le_bytes();
        self.write(&[register, low, high])
    }
}
