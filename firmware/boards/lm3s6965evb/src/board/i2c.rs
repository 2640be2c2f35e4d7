//! I2C0 master (LM3S6965 datasheet chapter 15, "Inter-Integrated Circuit (I2C) Interface").
//!
//! Quirks of QEMU 7.2's model (`stellaris_i2c_write` in `hw/arm/stellaris.c`), which this driver is
//! written around:
//! - **No repeated START.** A START while the model already holds the bus is ignored, so the direction
//!   of the first transfer would stick. Every run of same-direction operations of a
//!   [`transaction`](embedded_hal::i2c::I2c::transaction) is therefore its own START ... STOP:
//!   `write_read(addr, &[reg], buf)` goes out as `S addr+W reg P S addr+R data P`. The rack's sensors
//!   (TMP105 pointer register, PMBus command codes) keep the register selected across a STOP, so this
//!   reads the same data; a device that needs a true repeated START cannot be used on this board.
//! - **MCR.MFE must be set** or every write to MCS is silently dropped.
//! - **A missing address shows as `ERROR | ARBLST`, not `ADRACK`**: the model reports a START nobody
//!   acknowledged as a lost arbitration. With a single master on the bus that cannot really happen, so
//!   this driver reports it as [`NoAcknowledgeSource::Address`].
//! - MCS never reads BUSY and a NACK on data is never reported (the model has a TODO there).
//!
//! Every wait for the controller is bounded and ends in [`I2cError::Timeout`].

use embedded_hal::i2c::{self, ErrorKind, NoAcknowledgeSource, Operation, SevenBitAddress};

use super::mmio::Register;

const I2C0_MASTER_BASE: usize = 0x4002_0000;
/// Master slave address: bits 7:1 address, bit 0 receive.
const MSA: Register = Register::at(I2C0_MASTER_BASE, 0x00);
/// Master control (write) / status (read).
const MCS: Register = Register::at(I2C0_MASTER_BASE, 0x04);
/// Master data.
const MDR: Register = Register::at(I2C0_MASTER_BASE, 0x08);
/// Master timer period: SCL = SYSCLK / (20 × (TPR + 1)) (datasheet 15.3.1, "I2C Clock Generation").
const MTPR: Register = Register::at(I2C0_MASTER_BASE, 0x0C);
/// Master configuration.
const MCR: Register = Register::at(I2C0_MASTER_BASE, 0x20);

/// MCS written: the commands of datasheet table 15-5.
const CMD_RUN: u32 = 1 << 0;
const CMD_START: u32 = 1 << 1;
const CMD_STOP: u32 = 1 << 2;
const CMD_ACK: u32 = 1 << 3;
/// MCS read: status.
const STATUS_BUSY: u32 = 1 << 0;
const STATUS_ERROR: u32 = 1 << 1;
const STATUS_ADRACK: u32 = 1 << 2;
const STATUS_DATACK: u32 = 1 << 3;
const STATUS_ARBLST: u32 = 1 << 4;
/// MCR: master function enable.
const MCR_MFE: u32 = 1 << 4;
/// MTPR holds 7 bits.
const MTPR_MAX: u32 = 0x7F;

/// Polls of MCS before a transfer is given up. A byte at 100 kHz takes 90 µs, about 1 100 SYSCLK
/// cycles; a poll takes a few cycles, so this allows over a hundred byte times.
const BUSY_WAIT_POLLS: u32 = 100_000;

/// Why an I2C transfer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum I2cError {
    /// Nobody acknowledged the address or a data byte.
    NoAcknowledge(NoAcknowledgeSource),
    /// The controller stayed busy beyond [`BUSY_WAIT_POLLS`] polls.
    Timeout,
    /// The address does not fit in 7 bits.
    AddressOutOfRange,
}

impl i2c::Error for I2cError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NoAcknowledge(source) => ErrorKind::NoAcknowledge(*source),
            Self::Timeout | Self::AddressOutOfRange => ErrorKind::Other,
        }
    }
}

/// The I2C0 controller as bus master.
#[derive(Debug)]
pub struct I2c0 {
    _owned: (),
}

impl I2c0 {
    pub(super) fn new(sysclk_hz: u32, scl_hz: u32) -> Self {
        // Master mode first: without MFE the model drops MCS writes.
        MCR.write(MCR_MFE);
        let period = (sysclk_hz / (20 * scl_hz.max(1))).saturating_sub(1);
        MTPR.write(period.clamp(1, MTPR_MAX));
        Self { _owned: () }
    }

    /// Issues one MCS command and waits for it, turning an error status into [`I2cError`].
    fn command(&mut self, command: u32) -> Result<(), I2cError> {
        MCS.write(command);
        let status = wait_while_busy()?;
        if status & STATUS_ERROR == 0 {
            return Ok(());
        }
        let error = if status & (STATUS_ADRACK | STATUS_ARBLST) != 0 {
            I2cError::NoAcknowledge(NoAcknowledgeSource::Address)
        } else if status & STATUS_DATACK != 0 {
            I2cError::NoAcknowledge(NoAcknowledgeSource::Data)
        } else {
            I2cError::NoAcknowledge(NoAcknowledgeSource::Unknown)
        };
        // After an error the master still holds the bus unless arbitration was lost: release it with a
        // STOP (datasheet figure 15-10, "Master Single SEND").
        if status & STATUS_ARBLST == 0 && command & CMD_STOP == 0 {
            MCS.write(CMD_STOP);
            let _ = wait_while_busy();
        }
        Err(error)
    }

    /// One START ... STOP write of all `bytes`; a pure address probe when there are none.
    fn write_segment<'b>(
        &mut self,
        address: u8,
        bytes: impl Iterator<Item = &'b u8>,
    ) -> Result<(), I2cError> {
        MSA.write(u32::from(address) << 1);
        let mut bytes = bytes.peekable();
        if bytes.peek().is_none() {
            return self.command(CMD_START | CMD_STOP);
        }
        let mut command = CMD_START | CMD_RUN;
        while let Some(&byte) = bytes.next() {
            MDR.write(u32::from(byte));
            if bytes.peek().is_none() {
                command |= CMD_STOP;
            }
            self.command(command)?;
            command = CMD_RUN;
        }
        Ok(())
    }

    /// One START ... STOP read filling all `slots`; ACK on every byte but the last (I2C-bus
    /// specification UM10204, 3.1.6: the master NACKs the final byte).
    fn read_segment<'b>(
        &mut self,
        address: u8,
        slots: impl Iterator<Item = &'b mut u8>,
    ) -> Result<(), I2cError> {
        MSA.write(u32::from(address) << 1 | 1);
        let mut slots = slots.peekable();
        if slots.peek().is_none() {
            return self.command(CMD_START | CMD_STOP);
        }
        let mut command = CMD_START | CMD_RUN;
        while let Some(slot) = slots.next() {
            command |= if slots.peek().is_none() { CMD_STOP } else { CMD_ACK };
            self.command(command)?;
            // Only bits 7:0 of MDR hold data.
            *slot = MDR.read().to_le_bytes()[0];
            command = CMD_RUN;
        }
        Ok(())
    }
}

fn wait_while_busy() -> Result<u32, I2cError> {
    for _ in 0..BUSY_WAIT_POLLS {
        let status = MCS.read();
        if status & STATUS_BUSY == 0 {
            return Ok(status);
        }
    }
    Err(I2cError::Timeout)
}

impl i2c::ErrorType for I2c0 {
    type Error = I2cError;
}

impl i2c::I2c<SevenBitAddress> for I2c0 {
    /// Runs `operations` as one START ... STOP per run of same-direction operations (see the module
    /// docs: QEMU's controller has no repeated START). Adjacent operations of one direction are one
    /// transfer, as embedded-hal requires.
    fn transaction(&mut self, address: u8, operations: &mut [Operation<'_>]) -> Result<(), Self::Error> {
        if address > 0x7F {
            return Err(I2cError::AddressOutOfRange);
        }
        let mut rest = operations;
        while let Some(first) = rest.first() {
            let reading = matches!(first, Operation::Read(_));
            let run = rest
                .iter()
                .take_while(|op| matches!(op, Operation::Read(_)) == reading)
                .count();
            let (segment, tail) = core::mem::take(&mut rest).split_at_mut(run);
            if reading {
                let slots = segment.iter_mut().flat_map(|op| match op {
                    Operation::Read(buffer) => buffer.iter_mut(),
                    Operation::Write(_) => [].iter_mut(),
                });
                self.read_segment(address, slots)?;
            } else {
                let bytes = segment.iter().flat_map(|op| match op {
                    Operation::Write(bytes) => bytes.iter(),
                    Operation::Read(_) => [].iter(),
                });
                self.write_segment(address, bytes)?;
            }
            rest = tail;
        }
        Ok(())
    }
}
