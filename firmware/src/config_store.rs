//! The provisioned configuration in flash, written so that a power cut never loses it.
//!
//! Two slots of `SLOT` bytes each, behind the `embedded-storage` traits ([`NorFlash`] to write,
//! [`ReadNorFlash`] to read). A slot holds one record:
//!
//! ```text
//! magic:u32 "RWC1" | generation:u32 | len:u16 | crc:u16 | payload: len bytes (NodeConfig JSON)
//! ```
//!
//! all little-endian, the CRC-16/CCITT-FALSE (the serial frames' CRC) over generation, len and payload.
//! [`ConfigStore::save`] erases and writes the slot that does *not* hold the newest valid record, with
//! the next generation; only when that write completed does its CRC match, so a write torn midway
//! (power lost, reset) leaves a slot that [`ConfigStore::load`] skips, and the previous configuration
//! is read at the next boot. Generation numbers compare with wrapping arithmetic (RFC 1982 style), so
//! the counter never runs out.

use crc::{CRC_16_IBM_3740, Crc};
use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);
const MAGIC: [u8; 4] = *b"RWC1";
/// magic, generation, len, crc.
const HEADER_LEN: usize = 12;

/// Why the configuration could not be stored or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError<E> {
    /// The flash driver failed.
    Flash(E),
    /// The payload does not fit in a slot.
    TooLarge,
    /// The slot size is not a multiple of the flash's erase size, or two slots do not fit.
    Layout,
}

/// What [`ConfigStore::load`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// The newest complete configuration, this many bytes long.
    Config(usize),
    /// Both slots erased: the node was never provisioned.
    Empty,
    /// Something was written but neither slot holds a complete record (both failed their CRC).
    Corrupt,
}

/// A record found in a slot: which slot, its generation and its payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    slot: u32,
    generation: u32,
    len: usize,
}

/// The two-slot store on `flash`, starting at `base`, each slot `SLOT` bytes.
#[derive(Debug)]
pub struct ConfigStore<F, const SLOT: usize> {
    flash: F,
    base: u32,
}

impl<F: NorFlash, const SLOT: usize> ConfigStore<F, SLOT> {
    /// The longest payload a slot takes.
    pub const CAPACITY: usize = SLOT - HEADER_LEN;

    /// A store in `2 × SLOT` bytes of `flash` from `base`; both must be erase-aligned.
    pub fn new(flash: F, base: u32) -> Result<Self, StoreError<F::Error>> {
        let end = base as usize + 2 * SLOT;
        if !SLOT.is_multiple_of(F::ERASE_SIZE)
            || !(base as usize).is_multiple_of(F::ERASE_SIZE)
            || end > flash.capacity()
        {
            return Err(StoreError::Layout);
        }
        Ok(ConfigStore { flash, base })
    }

    /// The flash back, e.g. to inspect it in a test.
    pub fn destroy(self) -> F {
        self.flash
    }

    /// Copies the newest valid payload into `out`: [`Loaded::Config`] with its length, or why there is
    /// none ([`Loaded::Empty`] for a node never provisioned, [`Loaded::Corrupt`] when a slot holds
    /// something but no slot a complete record).
    pub fn load(&mut self, out: &mut [u8]) -> Result<Loaded, StoreError<F::Error>> {
        let Some(found) = self.newest(out)? else {
            return Ok(if self.is_blank(0)? && self.is_blank(1)? {
                Loaded::Empty
            } else {
                Loaded::Corrupt
            });
        };
        // `newest` left the last slot it checked in `out`: read the winner again.
        let payload = out.get_mut(..found.len).ok_or(StoreError::TooLarge)?;
        self.flash
            .read(self.slot_offset(found.slot) + HEADER_LEN as u32, payload)
            .map_err(StoreError::Flash)?;
        Ok(Loaded::Config(found.len))
    }

    /// Whether `slot`'s header is erased: nothing was ever written there (a torn write of a header
    /// leaves some bytes programmed, so it does not count as blank).
    fn is_blank(&mut self, slot: u32) -> Result<bool, StoreError<F::Error>> {
        let mut header = [0u8; HEADER_LEN];
        self.flash
            .read(self.slot_offset(slot), &mut header)
            .map_err(StoreError::Flash)?;
        Ok(header.iter().all(|&byte| byte == 0xFF))
    }

    /// Stores `payload` as the new configuration. `scratch` must hold a whole slot; it is where the
    /// record is assembled so it can be written in one `write` of a write-size multiple.
    pub fn save(&mut self, payload: &[u8], scratch: &mut [u8; SLOT]) -> Result<(), StoreError<F::Error>> {
        if payload.len() > Self::CAPACITY {
            return Err(StoreError::TooLarge);
        }
        let newest = self.newest(&mut scratch[..])?;
        let (slot, generation) = match newest {
            Some(found) => (1 - found.slot, found.generation.wrapping_add(1)),
            None => (0, 1),
        };
        let len = u16::try_from(payload.len()).map_err(|_| StoreError::TooLarge)?;
        let mut digest = CRC16.digest();
        digest.update(&generation.to_le_bytes());
        digest.update(&len.to_le_bytes());
        digest.update(payload);
        let crc = digest.finalize();

        scratch.fill(0xFF);
        let record_len = HEADER_LEN + payload.len();
        let (header, body) = scratch.split_at_mut(HEADER_LEN);
        header.copy_from_slice(&record_header(generation, len, crc));
        body.get_mut(..payload.len())
            .ok_or(StoreError::TooLarge)?
            .copy_from_slice(payload);
        // Round up to the flash's write size; the padding stays 0xFF (erased).
        let write_len = record_len.div_ceil(F::WRITE_SIZE) * F::WRITE_SIZE;
        let record = scratch.get(..write_len.min(SLOT)).ok_or(StoreError::TooLarge)?;

        let offset = self.slot_offset(slot);
        self.flash
            .erase(offset, offset + SLOT as u32)
            .map_err(StoreError::Flash)?;
        self.flash.write(offset, record).map_err(StoreError::Flash)
    }

    fn slot_offset(&self, slot: u32) -> u32 {
        self.base + slot * SLOT as u32
    }

    /// The slot with the newest complete record; `buffer` is scratch space for checking payloads.
    fn newest(&mut self, buffer: &mut [u8]) -> Result<Option<Found>, StoreError<F::Error>> {
        let mut newest: Option<Found> = None;
        for slot in 0..2 {
            let Some(found) = self.check(slot, buffer)? else {
                continue;
            };
            newest = match newest {
                // Newer when the forward distance is under half the counter's range.
                Some(other) if found.generation.wrapping_sub(other.generation) as i32 <= 0 => Some(other),
                _ => Some(found),
            };
        }
        Ok(newest)
    }

    /// The record in `slot` if it is complete (magic and CRC match).
    fn check(&mut self, slot: u32, buffer: &mut [u8]) -> Result<Option<Found>, StoreError<F::Error>> {
        let offset = self.slot_offset(slot);
        let mut header = [0u8; HEADER_LEN];
        self.flash.read(offset, &mut header).map_err(StoreError::Flash)?;
        let [m0, m1, m2, m3, g0, g1, g2, g3, l0, l1, c0, c1] = header;
        if [m0, m1, m2, m3] != MAGIC {
            return Ok(None);
        }
        let generation = u32::from_le_bytes([g0, g1, g2, g3]);
        let len = usize::from(u16::from_le_bytes([l0, l1]));
        let crc = u16::from_le_bytes([c0, c1]);
        if len > Self::CAPACITY {
            return Ok(None);
        }
        let Some(payload) = buffer.get_mut(..len) else {
            return Ok(None);
        };
        self.flash
            .read(offset + HEADER_LEN as u32, payload)
            .map_err(StoreError::Flash)?;
        let mut digest = CRC16.digest();
        digest.update(&generation.to_le_bytes());
        digest.update(&[l0, l1]);
        digest.update(payload);
        Ok((digest.finalize() == crc).then_some(Found {
            slot,
            generation,
            len,
        }))
    }
}

fn record_header(generation: u32, len: u16, crc: u16) -> [u8; HEADER_LEN] {
    let [g0, g1, g2, g3] = generation.to_le_bytes();
    let [l0, l1] = len.to_le_bytes();
    let [c0, c1] = crc.to_le_bytes();
    let [m0, m1, m2, m3] = MAGIC;
    [m0, m1, m2, m3, g0, g1, g2, g3, l0, l1, c0, c1]
}

/// Flash emulated in RAM, for tests and for a board started without persistent flash (the QEMU board
/// without `flash=PATH`: its configuration does not survive a reset). Erased bytes are 0xFF and a write can
/// only clear bits, as on NOR flash.
#[derive(Debug)]
pub struct RamFlash<const N: usize> {
    bytes: [u8; N],
}

impl<const N: usize> RamFlash<N> {
    /// All erased.
    pub const fn new() -> Self {
        RamFlash { bytes: [0xFF; N] }
    }
}

impl<const N: usize> Default for RamFlash<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// An access outside the emulated flash or not aligned to its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamFlashError;

impl embedded_storage::nor_flash::NorFlashError for RamFlashError {
    fn kind(&self) -> embedded_storage::nor_flash::NorFlashErrorKind {
        embedded_storage::nor_flash::NorFlashErrorKind::OutOfBounds
    }
}

impl<const N: usize> embedded_storage::nor_flash::ErrorType for RamFlash<N> {
    type Error = RamFlashError;
}

impl<const N: usize> ReadNorFlash for RamFlash<N> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let start = offset as usize;
        let source = self.bytes.get(start..start + bytes.len()).ok_or(RamFlashError)?;
        bytes.copy_from_slice(source);
        Ok(())
    }

    fn capacity(&self) -> usize {
        N
    }
}

impl<const N: usize> NorFlash for RamFlash<N> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 256;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if !(from as usize).is_multiple_of(Self::ERASE_SIZE)
            || !(to as usize).is_multiple_of(Self::ERASE_SIZE)
        {
            return Err(RamFlashError);
        }
        self.bytes
            .get_mut(from as usize..to as usize)
            .ok_or(RamFlashError)?
            .fill(0xFF);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if !(offset as usize).is_multiple_of(Self::WRITE_SIZE)
            || !bytes.len().is_multiple_of(Self::WRITE_SIZE)
        {
            return Err(RamFlashError);
        }
        let start = offset as usize;
        let target = self
            .bytes
            .get_mut(start..start + bytes.len())
            .ok_or(RamFlashError)?;
        for (cell, byte) in target.iter_mut().zip(bytes) {
            *cell &= *byte;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: usize = 512;
    type Store = ConfigStore<TornFlash, SLOT>;

    /// RAM flash whose writes stop after `budget` bytes, as if the power failed mid-write.
    #[derive(Debug)]
    struct TornFlash {
        flash: RamFlash<2048>,
        budget: usize,
    }

    impl embedded_storage::nor_flash::ErrorType for TornFlash {
        type Error = RamFlashError;
    }

    impl ReadNorFlash for TornFlash {
        const READ_SIZE: usize = 1;
        fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
            self.flash.read(offset, bytes)
        }
        fn capacity(&self) -> usize {
            self.flash.capacity()
        }
    }

    impl NorFlash for TornFlash {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = 256;
        fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
            self.flash.erase(from, to)
        }
        fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
            let allowed = self.budget.min(bytes.len()) / 4 * 4;
            self.budget -= allowed;
            self.flash.write(offset, &bytes[..allowed])?;
            if allowed < bytes.len() {
                Err(RamFlashError)
            } else {
                Ok(())
            }
        }
    }

    fn store() -> Store {
        ConfigStore::new(
            TornFlash {
                flash: RamFlash::new(),
                budget: usize::MAX,
            },
            1024,
        )
        .unwrap()
    }

    fn loaded(store: &mut Store) -> Option<std::vec::Vec<u8>> {
        let mut out = [0u8; SLOT];
        match store.load(&mut out).unwrap() {
            Loaded::Config(n) => Some(out[..n].to_vec()),
            Loaded::Empty | Loaded::Corrupt => None,
        }
    }

    #[test]
    fn an_empty_flash_has_no_configuration() {
        assert_eq!(store().load(&mut [0u8; SLOT]), Ok(Loaded::Empty));
    }

    #[test]
    fn both_slots_failing_their_crc_is_told_apart_from_an_empty_store() {
        let mut store = store();
        let mut scratch = [0u8; SLOT];
        store.save(b"{\"node\":\"a\"}", &mut scratch).unwrap();
        store.save(b"{\"node\":\"b\"}", &mut scratch).unwrap();
        let mut flash = store.destroy();
        // One payload byte of each slot flipped, as a bad sector or a stray write would.
        for slot in [0u32, 1] {
            let offset = 1024 + slot * SLOT as u32 + HEADER_LEN as u32;
            flash.flash.bytes[offset as usize] ^= 0x20;
        }
        let mut store = ConfigStore::new(flash, 1024).unwrap();
        assert_eq!(store.load(&mut [0u8; SLOT]), Ok(Loaded::Corrupt));
        // The next save still works, into either slot.
        store.save(b"{\"node\":\"c\"}", &mut scratch).unwrap();
        assert_eq!(loaded(&mut store).as_deref(), Some(&b"{\"node\":\"c\"}"[..]));
    }

    #[test]
    fn the_last_saved_configuration_is_loaded() {
        let mut store = store();
        let mut scratch = [0u8; SLOT];
        for payload in [&b"{\"node\":\"a\"}"[..], b"{\"node\":\"b\"}", b"{\"node\":\"c\"}"] {
            store.save(payload, &mut scratch).unwrap();
            assert_eq!(loaded(&mut store).as_deref(), Some(payload));
        }
    }

    #[test]
    fn a_write_torn_midway_keeps_the_previous_configuration() {
        let mut store = store();
        let mut scratch = [0u8; SLOT];
        store.save(b"{\"node\":\"old\"}", &mut scratch).unwrap();
        store
            .save(b"{\"node\":\"older-than-new\"}", &mut scratch)
            .unwrap();
        for cut in [0, 4, 8, 12, 20] {
            let mut flash = store.destroy();
            flash.budget = cut;
            store = ConfigStore::new(flash, 1024).unwrap();
            let new = b"{\"node\":\"new\",\"site\":\"fra1\"}";
            assert!(store.save(new, &mut scratch).is_err(), "cut at {cut}");
            assert_eq!(
                loaded(&mut store).as_deref(),
                Some(&b"{\"node\":\"older-than-new\"}"[..]),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn generation_wraps_around() {
        let mut store = store();
        let mut scratch = [0u8; SLOT];
        // Slot 0 holds generation u32::MAX, slot 1 generation 0 (written after it): 0 is newer.
        let write = |store: &mut Store, slot: u32, generation: u32, payload: &[u8]| {
            let mut digest = CRC16.digest();
            digest.update(&generation.to_le_bytes());
            digest.update(&(payload.len() as u16).to_le_bytes());
            digest.update(payload);
            let mut record = [0xFFu8; 32];
            record[..12].copy_from_slice(&record_header(
                generation,
                payload.len() as u16,
                digest.finalize(),
            ));
            record[12..12 + payload.len()].copy_from_slice(payload);
            let offset = 1024 + slot * SLOT as u32;
            store.flash.erase(offset, offset + SLOT as u32).unwrap();
            store.flash.write(offset, &record).unwrap();
        };
        write(&mut store, 0, u32::MAX, b"old");
        write(&mut store, 1, 0, b"new");
        assert_eq!(loaded(&mut store).as_deref(), Some(&b"new"[..]));
        store.save(b"newer", &mut scratch).unwrap();
        assert_eq!(loaded(&mut store).as_deref(), Some(&b"newer"[..]));
    }

    #[test]
    fn a_payload_over_the_slot_is_refused() {
        let mut store = store();
        let mut scratch = [0u8; SLOT];
        assert_eq!(store.save(&[b'x'; SLOT], &mut scratch), Err(StoreError::TooLarge));
    }
}
