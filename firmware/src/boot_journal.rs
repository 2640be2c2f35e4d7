//! A [`BootControl`] for a board whose bootloader swaps images in place (embassy-boot): the
//! application always runs from ACTIVE and receives an update into DFU, and the bootloader keeps one
//! state word (swap marked, booted, reverted). What [`BootControl`] asks beyond that (which image
//! runs, as slot A or B; the download in progress and its confirmed offset; the last update's result)
//! lives in a journal of one erase sector of the board's flash.
//!
//! The bootloader's part is a [`Loader`]: the board implements it over embassy-boot's
//! `BlockingFirmwareState`; tests over a few flags. The journal's rules and its flash layout are here,
//! so they are tested on the host.
//!
//! Layout of the sector: a record at offset 0 (magic, the slot ACTIVE holds, whether an update is
//! marked, the last result, the download's header and offset, a checksum), then progress entries,
//! each the download's next offset and its complement, appended as chunks arrive. Appending only
//! clears bits, so a chunk costs no erase; the sector is erased and the record rewritten when the
//! update, the slots or the result change, or when the entries fill it. A torn entry fails its
//! complement and is skipped; a torn record fails its checksum and the journal starts over (no
//! download to resume, slot A): the bootloader's own state, which decides what boots, is not in it.

use embedded_storage::nor_flash::NorFlash;
use rackwatch_protocols::update::{HEADER_LEN, OtaResult, Slot, UpdateHeader};

use crate::boot::{BootControl, BootState};

/// What the bootloader said at this boot (embassy-boot's `State`, read through its state partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoaderState {
    /// Nothing happened: ACTIVE runs as it was (embassy-boot `Boot`, `DfuDetach`).
    Boot,
    /// ACTIVE and DFU were swapped: the new image runs on trial (`Swap`, until `mark_booted`).
    Swapped,
    /// The image on trial reset without confirming; the previous one was swapped back (`Revert`).
    Reverted,
}

/// The bootloader's state word, as the application may change it.
pub trait Loader {
    type Error: core::fmt::Debug;
    /// Swap DFU into ACTIVE at the next reset (embassy-boot `mark_updated`).
    fn mark_updated(&mut self) -> Result<(), Self::Error>;
    /// Keep ACTIVE: no revert at the next reset (embassy-boot `mark_booted`).
    fn mark_booted(&mut self) -> Result<(), Self::Error>;
}

/// The journal's or the bootloader's flash failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalError<F, L> {
    Flash(F),
    Loader(L),
}

const MAGIC: [u8; 4] = *b"RKBJ";
/// magic; slot, marked, last, has progress; next offset; 4 reserved; header; checksum.
const RECORD_LEN: usize = 16 + HEADER_LEN + 4;
/// Erased NOR flash.
const ERASED: u8 = 0xFF;
/// The largest write granules this journal pads its record and entries to (256: the RP2040's page).
const MAX_RECORD_SPAN: usize = 512;
const MAX_ENTRY_SPAN: usize = 256;

/// What the journal holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    /// The slot the image in ACTIVE counts as.
    active: Slot,
    /// An update was marked for the swap and has not booted yet.
    marked: bool,
    last: Option<OtaResult>,
    progress: Option<([u8; HEADER_LEN], u32)>,
}

impl Record {
    const FRESH: Record = Record {
        active: Slot::A,
        marked: false,
        last: None,
        progress: None,
    };

    fn emit(&self) -> [u8; RECORD_LEN] {
        let next = self.progress.as_ref().map_or(0, |(_, next)| *next);
        let [n0, n1, n2, n3] = next.to_le_bytes();
        let [m0, m1, m2, m3] = MAGIC;
        let head = [
            m0,
            m1,
            m2,
            m3,
            u8::from(self.active == Slot::B),
            u8::from(self.marked),
            self.last.map_or(0, result_code),
            u8::from(self.progress.is_some()),
            n0,
            n1,
            n2,
            n3,
            0,
            0,
            0,
            0,
        ];
        let header = self
            .progress
            .as_ref()
            .map_or([0; HEADER_LEN], |(bytes, _)| *bytes);
        let mut out = [0u8; RECORD_LEN];
        let (body, sum) = out.split_at_mut(RECORD_LEN - 4);
        for (cell, byte) in body.iter_mut().zip(head.iter().chain(&header)) {
            *cell = *byte;
        }
        sum.copy_from_slice(&fnv1a(body).to_le_bytes());
        out
    }

    fn parse(bytes: &[u8; RECORD_LEN]) -> Option<Record> {
        let (body, sum) = bytes.split_at(RECORD_LEN - 4);
        if body.get(..4) != Some(&MAGIC[..]) || u32::from_le_bytes(sum.try_into().ok()?) != fnv1a(body) {
            return None;
        }
        let byte = |i: usize| body.get(i).copied().unwrap_or(0);
        let next = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?);
        let progress = match byte(7) {
            0 => None,
            _ => Some((body.get(16..16 + HEADER_LEN)?.try_into().ok()?, next)),
        };
        Some(Record {
            active: if byte(4) == 1 { Slot::B } else { Slot::A },
            marked: byte(5) == 1,
            last: result_from_code(byte(6)),
            progress,
        })
    }
}

fn result_code(result: OtaResult) -> u8 {
    match result {
        OtaResult::Accepted => 1,
        OtaResult::Refused => 2,
        OtaResult::Unsupported => 3,
        OtaResult::Verified => 4,
        OtaResult::Confirmed => 5,
        OtaResult::RolledBack => 6,
    }
}

fn result_from_code(code: u8) -> Option<OtaResult> {
    [
        OtaResult::Accepted,
        OtaResult::Refused,
        OtaResult::Unsupported,
        OtaResult::Verified,
        OtaResult::Confirmed,
        OtaResult::RolledBack,
    ]
    .into_iter()
    .find(|result| result_code(*result) == code)
}

/// FNV-1a, 32 bits: enough to tell a torn or erased record from a written one.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// `len` rounded up to a whole number of `granule`s.
const fn round_up(len: usize, granule: usize) -> usize {
    len.div_ceil(granule) * granule
}

/// The bootloader and the journal sector at `base` in `flash`: the [`BootControl`] of an
/// embassy-boot board.
#[derive(Debug)]
pub struct BootJournal<F, L> {
    flash: F,
    base: u32,
    loader: L,
    record: Record,
    state: BootState,
    /// Where the next progress entry goes, from the start of the sector.
    append_at: usize,
}

impl<F: NorFlash, L: Loader> BootJournal<F, L> {
    /// Bytes of the record in the sector, in whole write granules.
    const RECORD_SPAN: usize = round_up(RECORD_LEN, F::WRITE_SIZE);
    /// Bytes of one progress entry (offset and complement), in whole write granules.
    const ENTRY_SPAN: usize = round_up(8, F::WRITE_SIZE);

    /// At boot, with what the bootloader did (`loaded`): reads the journal sector at `base` (one
    /// `F::ERASE_SIZE` sector) and settles it. A trial boot runs the other slot; a revert records
    /// `rolled_back` and tells the bootloader to keep the image it went back to.
    pub fn open(
        flash: F,
        base: u32,
        loader: L,
        loaded: LoaderState,
    ) -> Result<Self, JournalError<F::Error, L::Error>> {
        const {
            assert!(Self::RECORD_SPAN <= MAX_RECORD_SPAN && Self::ENTRY_SPAN <= MAX_ENTRY_SPAN);
            assert!(Self::RECORD_SPAN + Self::ENTRY_SPAN <= F::ERASE_SIZE);
        }
        let mut journal = BootJournal {
            flash,
            base,
            loader,
            record: Record::FRESH,
            state: BootState::Normal,
            append_at: Self::RECORD_SPAN,
        };
        journal.read()?;
        journal.state = match loaded {
            LoaderState::Swapped => BootState::Trial,
            LoaderState::Reverted => {
                if journal.record.marked {
                    journal.record.marked = false;
                    journal.record.last = Some(OtaResult::RolledBack);
                    journal.rewrite()?;
                }
                journal.loader.mark_booted().map_err(JournalError::Loader)?;
                BootState::RolledBack
            }
            LoaderState::Boot => {
                if journal.record.marked {
                    // Marked in the journal, but the bootloader never swapped: the mark did not
                    // reach its state word. Nothing is on trial.
                    journal.record.marked = false;
                    journal.rewrite()?;
                }
                BootState::Normal
            }
        };
        Ok(journal)
    }

    fn read(&mut self) -> Result<(), JournalError<F::Error, L::Error>> {
        let mut record = [0u8; RECORD_LEN];
        self.flash
            .read(self.base, &mut record)
            .map_err(JournalError::Flash)?;
        let Some(found) = Record::parse(&record) else {
            // Never written, or torn: start over at the next write.
            self.record = Record::FRESH;
            self.append_at = F::ERASE_SIZE;
            return Ok(());
        };
        self.record = found;
        self.append_at = Self::RECORD_SPAN;
        while self.append_at + Self::ENTRY_SPAN <= F::ERASE_SIZE {
            let mut entry = [0u8; 8];
            self.flash
                .read(self.base + self.append_at as u32, &mut entry)
                .map_err(JournalError::Flash)?;
            if entry == [ERASED; 8] {
                break;
            }
            let (next, check) = entry.split_at(4);
            let next = u32::from_le_bytes(next.try_into().unwrap_or_default());
            let check = u32::from_le_bytes(check.try_into().unwrap_or_default());
            if let Some((_, kept)) = self.record.progress.as_mut().filter(|_| check == !next) {
                *kept = next;
            }
            self.append_at += Self::ENTRY_SPAN;
        }
        Ok(())
    }

    /// Erases the sector and writes the record.
    fn rewrite(&mut self) -> Result<(), JournalError<F::Error, L::Error>> {
        let end = self.base + F::ERASE_SIZE as u32;
        self.flash.erase(self.base, end).map_err(JournalError::Flash)?;
        let mut span = [ERASED; MAX_RECORD_SPAN];
        let record = self.record.emit();
        let out = span.get_mut(..Self::RECORD_SPAN).unwrap_or_default();
        if let Some(head) = out.get_mut(..RECORD_LEN) {
            head.copy_from_slice(&record);
        }
        self.flash.write(self.base, out).map_err(JournalError::Flash)?;
        self.append_at = Self::RECORD_SPAN;
        Ok(())
    }

    /// Appends a progress entry, or rewrites the record when the sector is full.
    fn append(&mut self, next: u32) -> Result<(), JournalError<F::Error, L::Error>> {
        if self.append_at + Self::ENTRY_SPAN > F::ERASE_SIZE {
            return self.rewrite();
        }
        let mut span = [ERASED; MAX_ENTRY_SPAN];
        let out = span.get_mut(..Self::ENTRY_SPAN).unwrap_or_default();
        let ([a, b, c, d], [e, f, g, h]) = (next.to_le_bytes(), (!next).to_le_bytes());
        let entry = [a, b, c, d, e, f, g, h];
        if let Some(head) = out.get_mut(..8) {
            head.copy_from_slice(&entry);
        }
        self.flash
            .write(self.base + self.append_at as u32, out)
            .map_err(JournalError::Flash)?;
        self.append_at += Self::ENTRY_SPAN;
        Ok(())
    }
}

impl<F: NorFlash, L: Loader> BootControl for BootJournal<F, L> {
    type Error = JournalError<F::Error, L::Error>;

    fn running(&self) -> Slot {
        match self.state {
            BootState::Trial => self.record.active.other(),
            BootState::Normal | BootState::RolledBack => self.record.active,
        }
    }

    fn state(&self) -> BootState {
        self.state
    }

    fn mark_trial(&mut self, _header: &UpdateHeader) -> Result<(), Self::Error> {
        self.record.marked = true;
        self.record.progress = None;
        self.rewrite()?;
        self.loader.mark_updated().map_err(JournalError::Loader)
    }

    fn confirm(&mut self) -> Result<(), Self::Error> {
        if self.state != BootState::Trial {
            return Ok(());
        }
        self.loader.mark_booted().map_err(JournalError::Loader)?;
        self.record.active = self.record.active.other();
        self.record.marked = false;
        self.record.last = Some(OtaResult::Confirmed);
        self.state = BootState::Normal;
        self.rewrite()
    }

    fn keep_progress(&mut self, progress: Option<(&UpdateHeader, u32)>) -> Result<(), Self::Error> {
        match progress {
            None if self.record.progress.is_none() => Ok(()),
            None => {
                self.record.progress = None;
                self.rewrite()
            }
            Some((header, next)) => {
                let mut bytes = [0u8; HEADER_LEN];
                header.emit(&mut bytes);
                match &mut self.record.progress {
                    Some((kept, offset)) if *kept == bytes => {
                        *offset = next;
                        self.append(next)
                    }
                    _ => {
                        self.record.progress = Some((bytes, next));
                        self.rewrite()
                    }
                }
            }
        }
    }

    fn kept_progress(&self) -> Option<(UpdateHeader, u32)> {
        let (bytes, next) = self.record.progress.as_ref()?;
        UpdateHeader::parse(bytes).ok().map(|header| (header, *next))
    }

    fn keep_result(&mut self, result: OtaResult) -> Result<(), Self::Error> {
        if self.record.last == Some(result) {
            return Ok(());
        }
        self.record.last = Some(result);
        self.rewrite()
    }

    fn last_result(&self) -> Option<OtaResult> {
        self.record.last
    }
}

#[cfg(test)]
mod tests;
