//! Firmware updates on this board: embassy-boot-rp's two-slot layout (memory.x, README.md "Memory
//! map"), the core's update agent (`rackwatch_firmware::ota::Ota`) writing into the DFU partition, and
//! the core's `BootJournal` as its `BootControl` over embassy-boot's state partition, as
//! `rackwatch_firmware::host_update::HostOta` does for a host node with files.
//!
//! An update arrives in chunks into DFU, is checked (board, version, signature, SHA-256), marked for
//! the swap (`mark_updated`) and, on the gateway's `reboot`, swapped into ACTIVE by the bootloader
//! (../w5500-evb-pico-bootloader). The new image confirms itself (`mark_booted`) once it reached the
//! broker; if it does not in time, it resets, and the bootloader swaps the previous one back.

use core::cell::RefCell;

use embassy_boot_rp::{BlockingFirmwareState, FirmwareUpdaterConfig, State};
use embassy_embedded_hal::flash::partition::BlockingPartition;
use embassy_rp::flash::{Blocking, Flash};
use embassy_rp::peripherals::FLASH;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use rackwatch_firmware::Node;
use rackwatch_firmware::boot::BootControl as _;
use rackwatch_firmware::boot_journal::{BootJournal, JournalError, Loader, LoaderState};
use rackwatch_firmware::ota::{self, FirmwareReport, Ota, OtaConfig};
use rackwatch_firmware::update::Identity;
use rackwatch_protocols::update::{FirmwareVersion, OtaResult};
use static_cell::StaticCell;

/// The W25Q16JV on the board.
pub const FLASH_SIZE: usize = 2 * 1024 * 1024;
/// The name update files for this board are signed with (`rackwatch firmware sign --board`).
pub const BOARD: &str = "w5500-evb-pico";
/// The update journal: the 4 KiB sector before the configuration store (memory.x, UPDATE_JOURNAL).
const JOURNAL_OFFSET: u32 = 0x1F_D000;
const JOURNAL_LEN: u32 = 4096;
/// The public key update files must be signed with: `RACKWATCH_UPDATE_KEY=/path/key.pub` at build
/// time (build.rs), the `.pub` file `rackwatch firmware keygen` wrote; empty when it was not set.
const UPDATE_KEY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/update-key.bin"));

pub type BoardFlash = Flash<'static, FLASH, Blocking, FLASH_SIZE>;
pub type SharedFlash = Mutex<NoopRawMutex, RefCell<BoardFlash>>;
pub type Partition = BlockingPartition<'static, NoopRawMutex, BoardFlash>;

/// embassy-boot's state word, as the core's journal changes it.
pub struct EmbassyLoader(BlockingFirmwareState<'static, Partition>);

impl core::fmt::Debug for EmbassyLoader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("EmbassyLoader")
    }
}

impl Loader for EmbassyLoader {
    type Error = embassy_boot::FirmwareUpdaterError;

    fn mark_updated(&mut self) -> Result<(), Self::Error> {
        self.0.mark_updated()
    }

    fn mark_booted(&mut self) -> Result<(), Self::Error> {
        self.0.mark_booted()
    }
}

type Journal = BootJournal<Partition, EmbassyLoader>;

/// This board's update agent, with the DFU partition it writes into.
pub struct PicoOta {
    ota: Ota<Journal>,
    dfu: Partition,
}

/// embassy's flash partitions do not implement `Debug`.
impl core::fmt::Debug for PicoOta {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PicoOta")
            .field("report", &self.ota.report())
            .finish_non_exhaustive()
    }
}

/// Why this image takes no updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoUpdates {
    /// Built without `RACKWATCH_UPDATE_KEY`: nothing could be checked.
    NoKey,
    /// The journal sector or the bootloader's state could not be read or written.
    Flash,
}

impl NoUpdates {
    pub fn reason(self) -> &'static str {
        match self {
            NoUpdates::NoKey => "this image was built without an update key (RACKWATCH_UPDATE_KEY)",
            NoUpdates::Flash => "the update journal or the bootloader state cannot be written",
        }
    }
}

impl PicoOta {
    /// At boot: reads what the bootloader did and the journal, and takes up a download a reset cut.
    pub fn boot(
        flash: &'static SharedFlash,
        running: FirmwareVersion,
        now_ms: u64,
    ) -> Result<Self, NoUpdates> {
        let key = <[u8; 32]>::try_from(UPDATE_KEY)
            .ok()
            .and_then(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
            .ok_or(NoUpdates::NoKey)?;
        let config = FirmwareUpdaterConfig::from_linkerfile_blocking(flash, flash);
        static ALIGNED: StaticCell<[u8; 1]> = StaticCell::new();
        let aligned = ALIGNED.try_init([0]).ok_or(NoUpdates::Flash)?;
        let mut state = BlockingFirmwareState::new(config.state, aligned);
        let loaded = match state.get_state() {
            Ok(State::Swap) => LoaderState::Swapped,
            Ok(State::Revert) => LoaderState::Reverted,
            Ok(State::Boot | State::DfuDetach) | Err(_) => LoaderState::Boot,
        };
        let journal_flash = BlockingPartition::new(flash, JOURNAL_OFFSET, JOURNAL_LEN);
        let journal = BootJournal::open(journal_flash, 0, EmbassyLoader(state), loaded)
            .map_err(|_: JournalError<_, _>| NoUpdates::Flash)?;
        // DFU is one page larger than ACTIVE, for the swap; an image must fit ACTIVE, so the agent
        // sees (and `Updater` checks the image's length against) ACTIVE's size.
        let active_len = config
            .dfu
            .size()
            .saturating_sub(embassy_rp::flash::ERASE_SIZE as u32);
        let mut dfu = BlockingPartition::new(flash, config.dfu.offset(), active_len);
        let identity = Identity {
            board: BOARD,
            running,
            key,
        };
        let ota = Ota::start(identity, journal, &mut dfu, now_ms, OtaConfig::default());
        Ok(PicoOta { ota, dfu })
    }

    /// Hands the node's waiting update frame, if any, to the agent and the answer back to the node;
    /// `true` if there was one.
    pub fn serve<const RING: usize>(&mut self, node: &mut Node<RING>) -> bool {
        let Some(frame) = node.ota_frame() else {
            return false;
        };
        if self.ota.deadline_ms().is_some() {
            // On trial, DFU holds the previous image the bootloader would go back to: keep it.
            let mut answer = ota::unsupported(frame, "the running image is on trial and not confirmed yet");
            answer.result = OtaResult::Refused;
            node.answer_ota(answer);
            return true;
        }
        node.serve_update(&mut self.ota, &mut self.dfu)
    }

    /// The node reached the broker: an image on trial confirms itself and the birth says so.
    pub fn connected<const RING: usize>(&mut self, node: &mut Node<RING>) {
        node.confirm_update(&mut self.ota);
    }

    pub fn report(&self) -> FirmwareReport {
        self.ota.report()
    }

    /// The image on trial did not confirm in time: reset, and the bootloader goes back.
    pub fn must_reset(&self, now_ms: u64) -> bool {
        self.ota.must_reset(now_ms)
    }

    /// How this boot came about, for the console.
    pub fn describe(&self) -> &'static str {
        match self.ota.boot_control().state() {
            rackwatch_firmware::boot::BootState::Normal => "normal boot",
            rackwatch_firmware::boot::BootState::Trial => {
                "new image on trial: confirms on reaching the broker"
            }
            rackwatch_firmware::boot::BootState::RolledBack => "rolled back: the new image did not confirm",
        }
    }
}
