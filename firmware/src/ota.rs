//! The node's update agent: the [`Updater`] that receives an image, the [`BootControl`] that boots it
//! on trial, and the deadline by which a new image must confirm itself. Sans-IO like the node: the
//! board hands it the frames the node took off `.../ota` ([`crate::Node::ota_frame`]), the inactive
//! slot's flash, and the time; it answers with what goes back on `.../ota/ack`.
//!
//! The life of an update, as the gateway drives it:
//! 1. frames arrive and are written into the inactive slot; after each, the confirmed offset is kept
//!    through [`BootControl::keep_progress`], so a reboot mid-download resumes ([`Ota::start`]);
//! 2. the last chunk makes the image `verified`: the slot is marked for a trial boot;
//! 3. the gateway sends `reboot`; the bootloader starts the new image on trial;
//! 4. the new image reaches the broker ([`Ota::connected`]) and confirms itself, and its birth says
//!    `confirmed`. If it does not within [`OtaConfig::confirm_within_ms`], [`Ota::must_reset`] tells
//!    the board to reset; the bootloader goes back to the previous image, whose birth says `rolled_back`.
//!
//! Whatever is refused (a bad header, a hash mismatch) leaves the running image and its slot alone.

use embedded_storage::nor_flash::NorFlash;
use rackwatch_protocols::update::{FRAME_HEAD_LEN, OtaResult, Slot};

use crate::boot::{BootControl, BootState};
use crate::update::{Answer, Identity, Updater};

/// How long a new image has to reach the broker and confirm itself unless configured otherwise.
pub const DEFAULT_CONFIRM_WITHIN_MS: u32 = 120_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtaConfig {
    /// A trial boot that has not confirmed by then is reset, and the bootloader rolls it back.
    pub confirm_within_ms: u32,
}

impl Default for OtaConfig {
    fn default() -> Self {
        OtaConfig {
            confirm_within_ms: DEFAULT_CONFIRM_WITHIN_MS,
        }
    }
}

/// What the birth message says about updates: the running slot and the last update's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareReport {
    pub slot: Option<Slot>,
    pub last: Option<OtaResult>,
}

/// The update agent of a node with A/B slots.
#[derive(Debug)]
pub struct Ota<B: BootControl> {
    updater: Updater,
    boot: B,
    /// Set while a trial boot has yet to confirm.
    confirm_by_ms: Option<u64>,
}

impl<B: BootControl> Ota<B> {
    /// At boot (time `now_ms`): takes up a download the boot control kept, and starts the confirm
    /// deadline if this is a trial boot.
    pub fn start<F: NorFlash>(
        identity: Identity,
        boot: B,
        slot: &mut F,
        now_ms: u64,
        config: OtaConfig,
    ) -> Self {
        let updater = match boot.kept_progress() {
            Some((header, next)) => Updater::resume(identity, header, next, slot),
            None => Updater::new(identity),
        };
        let confirm_by_ms =
            (boot.state() == BootState::Trial).then(|| now_ms + u64::from(config.confirm_within_ms));
        Ota {
            updater,
            boot,
            confirm_by_ms,
        }
    }

    /// Takes one frame from `.../ota`, writing what it carries into `slot` (the inactive slot).
    pub fn handle<F: NorFlash>(&mut self, frame: &[u8], slot: &mut F) -> Answer {
        let answer = self.updater.handle(frame, slot);
        let kept = match answer.result {
            OtaResult::Verified => match self.updater.verified() {
                Some(header) => self
                    .boot
                    .mark_trial(header)
                    .and_then(|()| self.boot.keep_progress(None)),
                None => Ok(()),
            },
            OtaResult::Accepted => self.boot.keep_progress(self.updater.progress()),
            OtaResult::Refused if self.updater.progress().is_none() && self.updater.verified().is_none() => {
                // The whole update was turned down (or none is under way): nothing to resume.
                self.boot
                    .keep_progress(None)
                    .and_then(|()| self.boot.keep_result(OtaResult::Refused))
            }
            _ => Ok(()),
        };
        if kept.is_err() {
            return Answer {
                update: answer.update,
                offset: 0,
                result: OtaResult::Refused,
                reason: "could not record the update in the boot state",
            };
        }
        answer
    }

    /// The node reached the broker: a trial boot confirms itself. `true` when that changed the
    /// [`FirmwareReport`] (publish the birth again).
    pub fn connected(&mut self) -> bool {
        if self.confirm_by_ms.is_none() {
            return false;
        }
        if self.boot.confirm().is_err() {
            // The bootloader will roll back at the next reset; the deadline stays.
            return false;
        }
        self.confirm_by_ms = None;
        true
    }

    /// The trial boot did not confirm in time: the board resets, and the bootloader rolls back.
    pub fn must_reset(&self, now_ms: u64) -> bool {
        self.confirm_by_ms.is_some_and(|by| now_ms >= by)
    }

    /// When [`Self::must_reset`] turns true, if it can.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.confirm_by_ms
    }

    pub fn report(&self) -> FirmwareReport {
        FirmwareReport {
            slot: Some(self.boot.running()),
            last: self.boot.last_result(),
        }
    }

    pub fn boot_control(&self) -> &B {
        &self.boot
    }
}

/// The answer of a board that cannot install updates (e.g. the QEMU board, whose flash QEMU keeps
/// read-only): every frame gets `unsupported` and `reason`.
pub fn unsupported(frame: &[u8], reason: &'static str) -> Answer {
    let update = frame
        .get(1..FRAME_HEAD_LEN.min(5))
        .and_then(|id| <[u8; 4]>::try_from(id).ok())
        .map_or(0, u32::from_le_bytes);
    Answer {
        update,
        offset: 0,
        result: OtaResult::Unsupported,
        reason,
    }
}
