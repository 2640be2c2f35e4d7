//! The flash that holds the node's configuration store: on QEMU, a file on the host reached through
//! semihosting ([`HostFlash`]), so a reset, a `reboot` command or a killed and restarted QEMU all find
//! the configuration that was provisioned. QEMU's lm3s6965evb models the internal flash as ROM that
//! the guest cannot program, so a host file stands in for it.
//!
//! [`HostFlash`] behaves like the LM3S6965's own flash (datasheet 8.2.2, "Flash Memory
//! Programming"): 1 KiB erase pages, 4-byte word writes, and a write that can only clear bits (the
//! new bytes are ANDed into what is there), so a write torn by a reset or a kill leaves what NOR
//! flash would leave.
//!
//! Without `flash=PATH` on QEMU's command line (or when the file cannot be opened) there is no flash
//! ([`BoardFlash::Absent`]): the node boots on its settings, says so on its console, and refuses to be
//! provisioned rather than accept a configuration it would forget at the next reset.

use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};

use super::semihosting::{HostFile, HostFileError};

/// The LM3S6965's flash page (erase unit).
const PAGE: usize = 1024;
/// Its write unit: one 32-bit word.
const WORD: usize = 4;
/// Bytes moved per semihosting call while erasing or merging a write.
const CHUNK: usize = 64;

/// A flash area of `CAPACITY` bytes kept in a host file.
#[derive(Debug)]
pub struct HostFlash<const CAPACITY: usize> {
    file: HostFile,
}

/// Why the host file could not be used as flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError {
    /// Outside the area, or not aligned to a word (write) or page (erase).
    OutOfBounds,
    /// The host refused a file operation.
    Host,
    /// The board has no flash (no `flash=PATH`).
    Absent,
}

impl From<HostFileError> for FlashError {
    fn from(_: HostFileError) -> Self {
        FlashError::Host
    }
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            FlashError::Host | FlashError::Absent => NorFlashErrorKind::Other,
        }
    }
}

impl<const CAPACITY: usize> HostFlash<CAPACITY> {
    /// Opens `path`; a new or short file is extended with erased (0xFF) bytes up to `CAPACITY`.
    pub fn open(path: &str) -> Result<Self, FlashError> {
        let (file, _created) = HostFile::open_or_create(path)?;
        let mut flash = HostFlash { file };
        let len = flash.file.len()?;
        if len < CAPACITY {
            flash.fill_erased(len, CAPACITY)?;
        }
        Ok(flash)
    }

    fn fill_erased(&mut self, from: usize, to: usize) -> Result<(), FlashError> {
        let erased = [0xFFu8; CHUNK];
        let mut offset = from;
        while offset < to {
            let len = (to - offset).min(CHUNK);
            self.file
                .write_at(offset, erased.get(..len).ok_or(FlashError::OutOfBounds)?)?;
            offset += len;
        }
        Ok(())
    }

    fn check(offset: usize, len: usize, align: usize) -> Result<(), FlashError> {
        let in_bounds = offset.checked_add(len).is_some_and(|end| end <= CAPACITY);
        if in_bounds && offset.is_multiple_of(align) && len.is_multiple_of(align) {
            Ok(())
        } else {
            Err(FlashError::OutOfBounds)
        }
    }
}

impl<const CAPACITY: usize> ErrorType for HostFlash<CAPACITY> {
    type Error = FlashError;
}

impl<const CAPACITY: usize> ReadNorFlash for HostFlash<CAPACITY> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        Self::check(offset as usize, bytes.len(), 1)?;
        Ok(self.file.read_at(offset as usize, bytes, 0xFF)?)
    }

    fn capacity(&self) -> usize {
        CAPACITY
    }
}

impl<const CAPACITY: usize> NorFlash for HostFlash<CAPACITY> {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = PAGE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        let (from, to) = (from as usize, to as usize);
        Self::check(from, to.checked_sub(from).ok_or(FlashError::OutOfBounds)?, PAGE)?;
        self.fill_erased(from, to)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        Self::check(offset as usize, bytes.len(), WORD)?;
        let mut at = offset as usize;
        for piece in bytes.chunks(CHUNK) {
            let mut merged = [0u8; CHUNK];
            let merged = merged.get_mut(..piece.len()).ok_or(FlashError::OutOfBounds)?;
            self.file.read_at(at, merged, 0xFF)?;
            for (cell, byte) in merged.iter_mut().zip(piece) {
                *cell &= *byte;
            }
            self.file.write_at(at, merged)?;
            at += piece.len();
        }
        Ok(())
    }
}

/// The configuration store's flash on this board: the host file, or none when QEMU was started
/// without `flash=PATH` (it reads as erased and takes no writes).
#[derive(Debug)]
pub enum BoardFlash<const CAPACITY: usize> {
    /// Survives resets and restarts of QEMU.
    Host(HostFlash<CAPACITY>),
    /// No flash: nothing stored, nothing can be.
    Absent,
}

impl<const CAPACITY: usize> ErrorType for BoardFlash<CAPACITY> {
    type Error = FlashError;
}

impl<const CAPACITY: usize> ReadNorFlash for BoardFlash<CAPACITY> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        match self {
            BoardFlash::Host(flash) => flash.read(offset, bytes),
            BoardFlash::Absent => {
                bytes.fill(0xFF);
                Ok(())
            }
        }
    }

    fn capacity(&self) -> usize {
        CAPACITY
    }
}

impl<const CAPACITY: usize> NorFlash for BoardFlash<CAPACITY> {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = PAGE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        match self {
            BoardFlash::Host(flash) => flash.erase(from, to),
            BoardFlash::Absent => Err(FlashError::Absent),
        }
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        match self {
            BoardFlash::Host(flash) => flash.write(offset, bytes),
            BoardFlash::Absent => Err(FlashError::Absent),
        }
    }
}
