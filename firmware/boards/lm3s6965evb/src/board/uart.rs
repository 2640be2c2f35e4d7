//! UART0, a PL011-compatible UART (LM3S6965 datasheet chapter 13; QEMU models it as `pl011_luminary`).
//!
//! Polled: the 16-byte FIFOs are enabled and read or written by the caller. Blocking calls wait a bounded
//! number of polls and then return [`UartError::Timeout`] instead of hanging on a stuck UART.

use core::fmt;

use super::mmio::Register;

const UART0_BASE: usize = 0x4000_C000;
/// Data: bits 7:0 data, bits 11:8 receive errors of that byte (OE, BE, PE, FE).
const DR: Register = Register::at(UART0_BASE, 0x000);
/// Flags.
const FR: Register = Register::at(UART0_BASE, 0x018);
const IBRD: Register = Register::at(UART0_BASE, 0x024);
const FBRD: Register = Register::at(UART0_BASE, 0x028);
const LCRH: Register = Register::at(UART0_BASE, 0x02C);
const CTL: Register = Register::at(UART0_BASE, 0x030);

const DR_FE: u32 = 1 << 8;
const DR_PE: u32 = 1 << 9;
const DR_BE: u32 = 1 << 10;
const DR_OE: u32 = 1 << 11;
const FR_BUSY: u32 = 1 << 3;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
/// 8 data bits, FIFOs on, 1 stop bit, no parity.
const LCRH_WLEN_8: u32 = 0b11 << 5;
const LCRH_FEN: u32 = 1 << 4;
const CTL_UARTEN: u32 = 1 << 0;
const CTL_TXE: u32 = 1 << 8;
const CTL_RXE: u32 = 1 << 9;

/// Polls of FR before a blocked transmit gives up: one byte at 115200 baud is about 1 100 SYSCLK
/// cycles, so a full FIFO drains well within this.
const TX_WAIT_POLLS: u32 = 1_000_000;

/// A receive error, or a transmitter that never drained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartError {
    /// A received byte had no valid stop bit.
    Framing,
    /// A received byte failed the parity check.
    Parity,
    /// The line was held low longer than a byte: a break.
    Break,
    /// The receive FIFO overflowed; bytes were lost.
    Overrun,
    /// The transmit FIFO stayed full.
    Timeout,
}

impl fmt::Display for UartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Framing => "framing error",
            Self::Parity => "parity error",
            Self::Break => "break",
            Self::Overrun => "receive overrun",
            Self::Timeout => "transmitter stuck",
        })
    }
}

impl core::error::Error for UartError {}

impl embedded_io::Error for UartError {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            Self::Framing | Self::Parity | Self::Break | Self::Overrun => embedded_io::ErrorKind::InvalidData,
            Self::Timeout => embedded_io::ErrorKind::TimedOut,
        }
    }
}

/// UART0, both directions. [`split`](Self::split) it to give the console and the provisioning reader
/// their own half.
#[derive(Debug)]
pub struct Uart0 {
    tx: Uart0Tx,
    rx: Uart0Rx,
}

/// The transmitting half of UART0.
#[derive(Debug)]
pub struct Uart0Tx {
    _owned: (),
}

/// The receiving half of UART0.
#[derive(Debug)]
pub struct Uart0Rx {
    _owned: (),
}

impl Uart0 {
    /// Sets up 8N1 at `baud` (datasheet 13.4, "Initialization and Configuration").
    pub(super) fn new(sysclk_hz: u32, baud: u32) -> Self {
        CTL.write(0);
        // Divisor = SYSCLK / (16 × baud), as a 16.6 fixed-point number, rounded (datasheet 13.3.2).
        let divisor_64ths = (u64::from(sysclk_hz) * 4 + u64::from(baud) / 2) / u64::from(baud.max(1));
        IBRD.write(u32::try_from(divisor_64ths >> 6).unwrap_or(0xFFFF) & 0xFFFF);
        FBRD.write(u32::try_from(divisor_64ths & 0x3F).unwrap_or(0));
        // LCRH must be written after the divisors: that write latches them.
        LCRH.write(LCRH_WLEN_8 | LCRH_FEN);
        CTL.write(CTL_UARTEN | CTL_TXE | CTL_RXE);
        Self {
            tx: Uart0Tx { _owned: () },
            rx: Uart0Rx { _owned: () },
        }
    }

    /// The two halves.
    pub fn split(self) -> (Uart0Tx, Uart0Rx) {
        (self.tx, self.rx)
    }

    /// The next received byte if there is one; never blocks.
    pub fn try_read_byte(&mut self) -> Result<Option<u8>, UartError> {
        self.rx.try_read_byte()
    }
}

impl Uart0Tx {
    /// A transmitter for the panic handler, which cannot get at the one the application owns. Writing
    /// through both at once interleaves bytes but is otherwise harmless.
    pub(super) fn for_panic() -> Self {
        Self { _owned: () }
    }

    fn write_byte(&mut self, byte: u8) -> Result<(), UartError> {
        for _ in 0..TX_WAIT_POLLS {
            if FR.read() & FR_TXFF == 0 {
                DR.write(u32::from(byte));
                return Ok(());
            }
        }
        Err(UartError::Timeout)
    }
}

impl Uart0Rx {
    /// The next received byte if there is one; never blocks.
    pub fn try_read_byte(&mut self) -> Result<Option<u8>, UartError> {
        if FR.read() & FR_RXFE != 0 {
            return Ok(None);
        }
        let word = DR.read();
        if word & DR_OE != 0 {
            Err(UartError::Overrun)
        } else if word & DR_BE != 0 {
            Err(UartError::Break)
        } else if word & DR_PE != 0 {
            Err(UartError::Parity)
        } else if word & DR_FE != 0 {
            Err(UartError::Framing)
        } else {
            Ok(Some(word.to_le_bytes()[0]))
        }
    }
}

impl embedded_io::ErrorType for Uart0Tx {
    type Error = UartError;
}

impl embedded_io::ErrorType for Uart0Rx {
    type Error = UartError;
}

impl embedded_io::ErrorType for Uart0 {
    type Error = UartError;
}

impl embedded_io::Write for Uart0Tx {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        // Blocks for the first byte only, as embedded-io asks, then fills what the FIFO takes.
        let Some((&first, rest)) = buf.split_first() else {
            return Ok(0);
        };
        self.write_byte(first)?;
        let mut written = 1;
        for &byte in rest {
            if FR.read() & FR_TXFF != 0 {
                break;
            }
            DR.write(u32::from(byte));
            written += 1;
        }
        Ok(written)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        for _ in 0..TX_WAIT_POLLS {
            if FR.read() & FR_BUSY == 0 {
                return Ok(());
            }
        }
        Err(UartError::Timeout)
    }
}

impl embedded_io::WriteReady for Uart0Tx {
    fn write_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(FR.read() & FR_TXFF == 0)
    }
}

impl embedded_io::Read for Uart0Rx {
    /// Waits, unbounded, for the first byte (a console may stay silent forever), then returns what the
    /// FIFO holds.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let mut count = 0;
        for slot in buf.iter_mut() {
            let byte = loop {
                match self.try_read_byte()? {
                    Some(byte) => break Some(byte),
                    None if count == 0 => continue,
                    None => break None,
                }
            };
            let Some(byte) = byte else { break };
            *slot = byte;
            count += 1;
        }
        Ok(count)
    }
}

impl embedded_io::ReadReady for Uart0Rx {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(FR.read() & FR_RXFE == 0)
    }
}

impl embedded_io::Write for Uart0 {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.tx.write(buf)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.tx.flush()
    }
}

impl embedded_io::Read for Uart0 {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.rx.read(buf)
    }
}

impl fmt::Write for Uart0Tx {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        text.bytes()
            .try_for_each(|byte| self.write_byte(byte))
            .map_err(|_| fmt::Error)
    }
}

impl fmt::Write for Uart0 {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.tx.write_str(text)
    }
}
