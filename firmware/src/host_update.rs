//! Firmware updates on the host (feature `std`): a node's two slots as files and its bootloader state
//! as a small text file, so a host node installs, trial-boots, confirms and rolls back through the
//! same [`crate::ota::Ota`] agent and [`crate::update::Updater`] as a board, and keeps all of it
//! across a restart of its process.
//!
//! A node's folder holds `slot-a.bin`, `slot-b.bin` and `boot.state`. [`FileBoot::open`] is the
//! bootloader: it reads the state, applies [`BootRecord::reset`] (start a marked slot on trial, roll an
//! unconfirmed one back) and writes the state again before the node's first poll.

use std::format;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::string::{String, ToString};

use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use rackwatch_protocols::update::{FirmwareVersion, HEADER_LEN, OtaResult, Slot, UpdateHeader};

use crate::boot::{BootControl, BootRecord, BootState};
use crate::node::Node;
use crate::ota::{FirmwareReport, Ota, OtaConfig};
use crate::update::Identity;

/// The capacity of a host slot: as the W5500-EVB-Pico's application slot (ACTIVE, 1000 KiB: its
/// memory.x).
pub const HOST_SLOT_LEN: usize = 1000 * 1024;

/// A slot of flash kept in a file; reads beyond the file's end are erased flash.
/// Write and erase granules are the RP2040's (256-byte pages, 4 KiB sectors).
#[derive(Debug)]
pub struct FileFlash {
    file: fs::File,
    capacity: usize,
}

/// A file operation failed, or an access was out of bounds or unaligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFlashError(NorFlashErrorKind);

impl NorFlashError for FileFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        self.0
    }
}

impl FileFlash {
    pub fn open(path: &Path, capacity: usize) -> std::io::Result<Self> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(FileFlash { file, capacity })
    }

    fn check(&self, offset: u32, len: usize) -> Result<u64, FileFlashError> {
        let end = (offset as usize).checked_add(len);
        if end.is_none_or(|end| end > self.capacity) {
            return Err(FileFlashError(NorFlashErrorKind::OutOfBounds));
        }
        Ok(u64::from(offset))
    }

    fn io<T>(result: std::io::Result<T>) -> Result<T, FileFlashError> {
        result.map_err(|_| FileFlashError(NorFlashErrorKind::Other))
    }
}

impl ErrorType for FileFlash {
    type Error = FileFlashError;
}

impl ReadNorFlash for FileFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let at = self.check(offset, bytes.len())?;
        bytes.fill(0xFF);
        Self::io(self.file.seek(SeekFrom::Start(at)))?;
        let mut filled = 0;
        while let Some(rest) = bytes.get_mut(filled..).filter(|r| !r.is_empty()) {
            let n = Self::io(self.file.read(rest))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

impl NorFlash for FileFlash {
    const WRITE_SIZE: usize = 256;
    const ERASE_SIZE: usize = 4096;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let aligned = |x: u32| (x as usize).is_multiple_of(Self::ERASE_SIZE);
        if !aligned(from) || !aligned(to) || to < from {
            return Err(FileFlashError(NorFlashErrorKind::NotAligned));
        }
        let at = self.check(from, (to - from) as usize)?;
        Self::io(self.file.seek(SeekFrom::Start(at)))?;
        let erased = [0xFFu8; Self::ERASE_SIZE];
        for _ in 0..(to - from) as usize / Self::ERASE_SIZE {
            Self::io(self.file.write_all(&erased))?;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if !(offset as usize).is_multiple_of(Self::WRITE_SIZE)
            || !bytes.len().is_multiple_of(Self::WRITE_SIZE)
        {
            return Err(FileFlashError(NorFlashErrorKind::NotAligned));
        }
        let at = self.check(offset, bytes.len())?;
        // NOR flash only clears bits: what is written lands ANDed with what is there.
        let mut current = std::vec![0u8; bytes.len()];
        self.read(offset, &mut current)?;
        for (cell, byte) in current.iter_mut().zip(bytes) {
            *cell &= *byte;
        }
        Self::io(self.file.seek(SeekFrom::Start(at)))?;
        Self::io(self.file.write_all(&current))
    }
}

/// The bootloader state of a host node, kept in `boot.state`.
#[derive(Debug)]
pub struct FileBoot {
    path: PathBuf,
    record: BootRecord,
}

impl FileBoot {
    /// Boots: reads `dir/boot.state` (a node that has none runs `factory` from slot A), applies the
    /// bootloader's reset rules and writes the state back.
    pub fn open(dir: &Path, factory: FirmwareVersion) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join("boot.state");
        let mut record = match fs::read_to_string(&path) {
            Ok(text) => parse_record(&text).unwrap_or_else(|| BootRecord::new(factory)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BootRecord::new(factory),
            Err(e) => return Err(e),
        };
        record.reset();
        let boot = FileBoot { path, record };
        boot.save()?;
        Ok(boot)
    }

    /// The slot file an update goes into: the one not running.
    pub fn inactive_slot(&self) -> PathBuf {
        self.slot_path(self.record.active.other())
    }

    pub fn slot_path(&self, slot: Slot) -> PathBuf {
        let name = match slot {
            Slot::A => "slot-a.bin",
            Slot::B => "slot-b.bin",
        };
        self.path.with_file_name(name)
    }

    pub fn record(&self) -> &BootRecord {
        &self.record
    }

    fn save(&self) -> std::io::Result<()> {
        let temporary = self.path.with_extension("state.new");
        fs::write(&temporary, format_record(&self.record))?;
        fs::rename(&temporary, &self.path)
    }

    fn saved(&self) -> Result<(), FileBootError> {
        self.save().map_err(|_| FileBootError)
    }
}

/// `boot.state` could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileBootError;

impl BootControl for FileBoot {
    type Error = FileBootError;

    fn running(&self) -> Slot {
        self.record.active
    }

    fn state(&self) -> BootState {
        self.record.state
    }

    fn mark_trial(&mut self, header: &UpdateHeader) -> Result<(), Self::Error> {
        let _ = self.record.mark_trial(header);
        self.saved()
    }

    fn confirm(&mut self) -> Result<(), Self::Error> {
        let _ = self.record.confirm();
        self.saved()
    }

    fn keep_progress(&mut self, progress: Option<(&UpdateHeader, u32)>) -> Result<(), Self::Error> {
        let _ = self.record.keep_progress(progress);
        self.saved()
    }

    fn kept_progress(&self) -> Option<(UpdateHeader, u32)> {
        self.record.kept_progress()
    }

    fn keep_result(&mut self, result: OtaResult) -> Result<(), Self::Error> {
        let _ = self.record.keep_result(result);
        self.saved()
    }

    fn last_result(&self) -> Option<OtaResult> {
        self.record.last_result()
    }
}

fn slot_name(slot: Slot) -> &'static str {
    match slot {
        Slot::A => "a",
        Slot::B => "b",
    }
}

fn result_name(result: OtaResult) -> &'static str {
    match result {
        OtaResult::Accepted => "accepted",
        OtaResult::Refused => "refused",
        OtaResult::Unsupported => "unsupported",
        OtaResult::Verified => "verified",
        OtaResult::Confirmed => "confirmed",
        OtaResult::RolledBack => "rolled_back",
    }
}

/// One `key value` per line.
fn format_record(record: &BootRecord) -> String {
    let mut text = format!(
        "active {}\nstate {}\nmarked {}\n",
        slot_name(record.active),
        match record.state {
            BootState::Normal => "normal",
            BootState::Trial => "trial",
            BootState::RolledBack => "rolled_back",
        },
        u8::from(record.marked)
    );
    for (slot, version) in [Slot::A, Slot::B].into_iter().zip(record.versions) {
        if let Some(version) = version {
            text.push_str(&format!("version-{} {version}\n", slot_name(slot)));
        }
    }
    if let Some(last) = record.last {
        text.push_str(&format!("last {}\n", result_name(last)));
    }
    if let Some((header, next)) = &record.progress {
        let hex: String = header.iter().map(|b| format!("{b:02x}")).collect();
        text.push_str(&format!("progress {next} {hex}\n"));
    }
    text
}

fn parse_record(text: &str) -> Option<BootRecord> {
    let mut record = BootRecord::new(FirmwareVersion::new(0, 0, 0));
    record.versions = [None, None];
    let slot = |s: &str| match s {
        "a" => Some(Slot::A),
        "b" => Some(Slot::B),
        _ => None,
    };
    for line in text.lines() {
        let (key, value) = line.split_once(' ')?;
        match key {
            "active" => record.active = slot(value)?,
            "state" => {
                record.state = match value {
                    "normal" => BootState::Normal,
                    "trial" => BootState::Trial,
                    "rolled_back" => BootState::RolledBack,
                    _ => return None,
                }
            }
            "marked" => record.marked = value == "1",
            "version-a" => record.set_version(Slot::A, Some(FirmwareVersion::parse(value)?)),
            "version-b" => record.set_version(Slot::B, Some(FirmwareVersion::parse(value)?)),
            "last" => {
                record.last = [
                    OtaResult::Accepted,
                    OtaResult::Refused,
                    OtaResult::Unsupported,
                    OtaResult::Verified,
                    OtaResult::Confirmed,
                    OtaResult::RolledBack,
                ]
                .into_iter()
                .find(|r| result_name(*r) == value);
            }
            "progress" => {
                let (next, hex) = value.split_once(' ')?;
                let mut header = [0u8; HEADER_LEN];
                if hex.len() != 2 * HEADER_LEN {
                    return None;
                }
                for (i, byte) in header.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                record.progress = Some((header, next.parse().ok()?));
            }
            _ => {}
        }
    }
    Some(record)
}

impl FileBoot {
    /// The version the running slot holds, as text for the birth message.
    pub fn running_version(&self) -> Option<String> {
        self.record.running_version().map(|v| v.to_string())
    }
}

/// The board a host node says it is: update files for it are signed with `--board host`.
pub const HOST_BOARD: &str = "host";

/// How a host node takes updates: where its slots live and the key updates must be signed with.
#[derive(Debug, Clone)]
pub struct HostUpdates {
    /// The node's own folder (slots and `boot.state`).
    pub dir: PathBuf,
    pub key: ed25519_dalek::VerifyingKey,
    pub ota: OtaConfig,
}

/// A host node's update agent with its inactive slot open: one per boot.
#[derive(Debug)]
pub struct HostOta {
    ota: Ota<FileBoot>,
    slot: FileFlash,
}

impl HostOta {
    /// Boots the node's bootloader: returns the agent and the version the running slot holds
    /// (`factory` on a node never updated).
    pub fn boot(
        updates: &HostUpdates,
        factory: FirmwareVersion,
        now_ms: u64,
    ) -> std::io::Result<(Self, FirmwareVersion)> {
        let boot = FileBoot::open(&updates.dir, factory)?;
        let running = boot.record().running_version().unwrap_or(factory);
        let mut slot = FileFlash::open(&boot.inactive_slot(), HOST_SLOT_LEN)?;
        let identity = Identity {
            board: HOST_BOARD,
            running,
            key: updates.key,
        };
        let ota = Ota::start(identity, boot, &mut slot, now_ms, updates.ota);
        Ok((HostOta { ota, slot }, running))
    }

    /// Hands the node's waiting update frame, if any, to the agent and the answer back to the node;
    /// `true` if there was one.
    pub fn serve<const RING: usize>(&mut self, node: &mut Node<RING>) -> bool {
        node.serve_update(&mut self.ota, &mut self.slot)
    }

    /// The node reached the broker: a trial image confirms itself and the birth says so.
    pub fn connected<const RING: usize>(&mut self, node: &mut Node<RING>) {
        node.confirm_update(&mut self.ota);
    }

    pub fn report(&self) -> FirmwareReport {
        self.ota.report()
    }

    /// See [`Ota::must_reset`].
    pub fn must_reset(&self, now_ms: u64) -> bool {
        self.ota.must_reset(now_ms)
    }

    pub fn deadline_ms(&self) -> Option<u64> {
        self.ota.deadline_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_reads_back_what_was_written() {
        let mut record = BootRecord::new(FirmwareVersion::new(1, 3, 0));
        record.set_version(Slot::B, Some(FirmwareVersion::new(1, 4, 0)));
        record.active = Slot::B;
        record.state = BootState::Trial;
        record.last = Some(OtaResult::RolledBack);
        record.progress = Some((core::array::from_fn(|i| i as u8), 8192));
        assert_eq!(parse_record(&format_record(&record)), Some(record.clone()));
        record.progress = None;
        record.last = None;
        record.marked = true;
        assert_eq!(parse_record(&format_record(&record)), Some(record));
    }

    #[test]
    fn a_damaged_state_file_is_not_taken_for_a_state() {
        assert_eq!(parse_record("active c\n"), None);
        assert_eq!(parse_record("progress 12 abcd\n"), None);
        assert_eq!(parse_record("version-a 1.x\n"), None);
    }
}
