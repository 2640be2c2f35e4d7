//! The W5500-EVB-Pico's update path on the host, with the real bootloader logic: embassy-boot's
//! `BootLoader::prepare_boot` (what ../boards/w5500-evb-pico-bootloader runs at each reset) swaps and
//! reverts flash kept in memory, and the application side is what the board's `src/ota.rs` wires: the
//! core's `Ota` writing into DFU, `BootJournal` over embassy-boot's `BlockingFirmwareState`, and the
//! bootloader's state word read at boot. Only the flash is simulated.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use ed25519_dalek::{Signer, SigningKey};
use embassy_boot::{BlockingFirmwareState, BootLoader, BootLoaderConfig, FirmwareUpdaterError, State};
use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use rackwatch_firmware::boot::{BootControl, BootState};
use rackwatch_firmware::boot_journal::{BootJournal, Loader, LoaderState};
use rackwatch_firmware::ota::{Ota, OtaConfig};
use rackwatch_firmware::update::Identity;
use rackwatch_protocols::update::{
    FirmwareVersion, HEADER_LEN, MAX_CHUNK, OtaFrame, OtaResult, Slot, UpdateHeader,
};
use sha2::{Digest, Sha256};

const PAGE: usize = 4096;
/// As the board's memory.x: ACTIVE 1000 KiB; DFU one page more, as embassy-boot's swap needs.
const ACTIVE_PAGES: usize = 250;
const BOARD: &str = "w5500-evb-pico";
const OLD: FirmwareVersion = FirmwareVersion::new(1, 3, 0);
const NEW: FirmwareVersion = FirmwareVersion::new(1, 4, 0);
const CONFIRM_WITHIN_MS: u32 = 30_000;

/// NOR flash in memory, with the RP2040's granules as embassy-rp gives them: 4 KiB erase sectors,
/// writes of any length that only clear bits.
#[derive(Debug, Clone)]
struct SimFlash(Vec<u8>);

#[derive(Debug)]
struct SimError(NorFlashErrorKind);

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        self.0
    }
}

impl SimFlash {
    fn erased(pages: usize) -> Self {
        SimFlash(vec![0xFF; pages * PAGE])
    }

    fn range(&self, offset: u32, len: usize) -> Result<core::ops::Range<usize>, SimError> {
        let start = offset as usize;
        (start + len <= self.0.len())
            .then_some(start..start + len)
            .ok_or(SimError(NorFlashErrorKind::OutOfBounds))
    }
}

impl ErrorType for SimFlash {
    type Error = SimError;
}

impl ReadNorFlash for SimFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        let range = self.range(offset, bytes.len())?;
        bytes.copy_from_slice(&self.0[range]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.0.len()
    }
}

impl NorFlash for SimFlash {
    const WRITE_SIZE: usize = 1;
    const ERASE_SIZE: usize = PAGE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        if !(from as usize).is_multiple_of(PAGE) || !(to as usize).is_multiple_of(PAGE) {
            return Err(SimError(NorFlashErrorKind::NotAligned));
        }
        let range = self.range(from, (to - from) as usize)?;
        self.0[range].fill(0xFF);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        let range = self.range(offset, bytes.len())?;
        for (cell, byte) in self.0[range].iter_mut().zip(bytes) {
            *cell &= *byte;
        }
        Ok(())
    }
}

/// embassy-boot's state word, as the board's `EmbassyLoader` (src/ota.rs) changes it.
struct Word<'a>(BlockingFirmwareState<'a, &'a mut SimFlash>);

impl Loader for Word<'_> {
    type Error = FirmwareUpdaterError;

    fn mark_updated(&mut self) -> Result<(), FirmwareUpdaterError> {
        self.0.mark_updated()
    }

    fn mark_booted(&mut self) -> Result<(), FirmwareUpdaterError> {
        self.0.mark_booted()
    }
}

type Agent<'a> = Ota<BootJournal<&'a mut SimFlash, Word<'a>>>;

/// The board's flash, partitioned as memory.x does (each partition its own flash here).
struct Board {
    active: SimFlash,
    dfu: SimFlash,
    state: SimFlash,
    journal: SimFlash,
    aligned: [u8; 1],
}

impl Board {
    /// A board flashed with `image` (the .uf2: bootloader and application; the rest erased).
    fn flashed(image: &[u8]) -> Self {
        let mut active = SimFlash::erased(ACTIVE_PAGES);
        active.0[..image.len()].copy_from_slice(image);
        Board {
            active,
            dfu: SimFlash::erased(ACTIVE_PAGES + 1),
            state: SimFlash::erased(1),
            journal: SimFlash::erased(1),
            aligned: [0; 1],
        }
    }

    /// A reset: the bootloader prepares ACTIVE (swap, revert or nothing).
    fn reset(&mut self) {
        let mut page = [0u8; PAGE];
        let config = BootLoaderConfig {
            active: &mut self.active,
            dfu: &mut self.dfu,
            state: &mut self.state,
        };
        BootLoader::new(config).prepare_boot(&mut page).unwrap();
    }

    /// The application starts: it reads the bootloader's state word and the journal (src/ota.rs).
    fn boot(&mut self, running: FirmwareVersion) -> (Agent<'_>, &mut SimFlash) {
        let mut word = BlockingFirmwareState::new(&mut self.state, &mut self.aligned);
        let loaded = match word.get_state().unwrap() {
            State::Swap => LoaderState::Swapped,
            State::Revert => LoaderState::Reverted,
            State::Boot | State::DfuDetach => LoaderState::Boot,
        };
        let journal = BootJournal::open(&mut self.journal, 0, Word(word), loaded).unwrap();
        let identity = Identity {
            board: BOARD,
            running,
            key: key().verifying_key(),
        };
        let config = OtaConfig {
            confirm_within_ms: CONFIRM_WITHIN_MS,
        };
        let agent = Ota::start(identity, journal, &mut self.dfu, 0, config);
        (agent, &mut self.dfu)
    }

    fn active_image(&self, len: usize) -> &[u8] {
        &self.active.0[..len]
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn image(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i + seed) * 31 % 251) as u8).collect()
}

fn signed(image: &[u8]) -> UpdateHeader {
    let mut header = UpdateHeader {
        board: heapless::String::try_from(BOARD).unwrap(),
        version: NEW,
        allow_downgrade: false,
        image_len: image.len() as u32,
        image_sha256: Sha256::digest(image).into(),
        signature: [0; 64],
    };
    header.signature = key().sign(&header.signed_bytes()).to_bytes();
    header
}

fn frame(frame: OtaFrame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = frame.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn header_frame(header: &UpdateHeader) -> Vec<u8> {
    let mut bytes = [0u8; HEADER_LEN];
    header.emit(&mut bytes);
    frame(OtaFrame::Header {
        update: header.update_id(),
        header: &bytes,
    })
}

/// Sends the header (again, after a reset: the node names the offset it has) and the chunks from
/// there; stops after `max_chunks` chunks or at the first answer that is not `accepted`.
fn send(
    agent: &mut Agent<'_>,
    dfu: &mut SimFlash,
    header: &UpdateHeader,
    image: &[u8],
    max_chunks: usize,
) -> OtaResult {
    let answer = agent.handle(&header_frame(header), dfu);
    assert_eq!(answer.result, OtaResult::Accepted, "{}", answer.reason);
    let mut offset = answer.offset as usize;
    for _ in 0..max_chunks {
        let data = &image[offset..(offset + MAX_CHUNK).min(image.len())];
        let chunk = frame(OtaFrame::Chunk {
            update: header.update_id(),
            offset: offset as u32,
            data,
        });
        let answer = agent.handle(&chunk, dfu);
        if answer.result != OtaResult::Accepted {
            return answer.result;
        }
        offset = answer.offset as usize;
    }
    OtaResult::Accepted
}

#[test]
fn an_update_is_swapped_in_on_trial_and_kept_once_it_confirms() {
    let (old, new) = (image(165_000, 0), image(232_000, 5));
    let header = signed(&new);
    let mut board = Board::flashed(&old);
    board.reset();
    let (mut agent, dfu) = board.boot(OLD);
    assert_eq!(agent.boot_control().state(), BootState::Normal);
    // Cut by a reset after 10 chunks: the journal resumes the download where it stopped.
    assert_eq!(send(&mut agent, dfu, &header, &new, 10), OtaResult::Accepted);
    board.reset();
    assert_eq!(
        board.active_image(old.len()),
        &old[..],
        "nothing marked: nothing swapped"
    );
    let (mut agent, dfu) = board.boot(OLD);
    assert_eq!(
        agent.boot_control().kept_progress().map(|(_, next)| next),
        Some(10 * MAX_CHUNK as u32)
    );
    assert_eq!(
        send(&mut agent, dfu, &header, &new, usize::MAX),
        OtaResult::Verified
    );

    // The gateway's reboot: the bootloader swaps, and the new image runs on trial from slot B.
    board.reset();
    assert_eq!(board.active_image(new.len()), &new[..]);
    let (mut agent, _) = board.boot(NEW);
    assert_eq!(agent.boot_control().state(), BootState::Trial);
    assert_eq!(agent.report().slot, Some(Slot::B));
    assert_eq!(agent.deadline_ms(), Some(u64::from(CONFIRM_WITHIN_MS)));
    assert!(agent.connected(), "reaching the broker confirms it");
    assert_eq!(agent.report().last, Some(OtaResult::Confirmed));

    // Kept across the next resets.
    for _ in 0..2 {
        board.reset();
        assert_eq!(board.active_image(new.len()), &new[..]);
        let (agent, _) = board.boot(NEW);
        assert_eq!(agent.boot_control().state(), BootState::Normal);
        assert_eq!(agent.report().slot, Some(Slot::B));
        assert_eq!(agent.report().last, Some(OtaResult::Confirmed));
    }
}

#[test]
fn an_update_that_does_not_confirm_is_reverted_at_the_next_reset() {
    let (old, new) = (image(165_000, 0), image(232_000, 5));
    let header = signed(&new);
    let mut board = Board::flashed(&old);
    board.reset();
    let (mut agent, dfu) = board.boot(OLD);
    assert_eq!(
        send(&mut agent, dfu, &header, &new, usize::MAX),
        OtaResult::Verified
    );
    board.reset();
    let (agent, _) = board.boot(NEW);
    assert_eq!(agent.boot_control().state(), BootState::Trial);
    assert!(
        agent.must_reset(u64::from(CONFIRM_WITHIN_MS)),
        "never reached the broker"
    );

    // The bootloader swaps the previous image back; it reports the rollback from slot A.
    board.reset();
    assert_eq!(board.active_image(old.len()), &old[..]);
    let (agent, _) = board.boot(OLD);
    assert_eq!(agent.boot_control().state(), BootState::RolledBack);
    assert_eq!(agent.report().slot, Some(Slot::A));
    assert_eq!(agent.report().last, Some(OtaResult::RolledBack));
    assert_eq!(agent.deadline_ms(), None);

    // The next reset is a plain boot of the same image, and another update can go in.
    board.reset();
    assert_eq!(board.active_image(old.len()), &old[..]);
    let (mut agent, dfu) = board.boot(OLD);
    assert_eq!(agent.boot_control().state(), BootState::Normal);
    assert_eq!(agent.report().last, Some(OtaResult::RolledBack));
    assert_eq!(
        send(&mut agent, dfu, &header, &new, usize::MAX),
        OtaResult::Verified
    );
    board.reset();
    assert_eq!(board.active_image(new.len()), &new[..]);
}
