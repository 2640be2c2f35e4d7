//! Boot control: what the update agent ([`crate::ota`]) asks of the bootloader, as a trait.
//!
//! An A/B layout runs from one slot and receives an update into the other. When an image arrived
//! whole and verified, the node marks the other slot for a *trial* boot; at the next reset the
//! bootloader starts it, and the new firmware must [`BootControl::confirm`] itself (after it reached
//! the broker) before the reset after that, or the bootloader goes back to the previous slot. That is
//! embassy-boot's contract (`FirmwareUpdater::mark_updated`, `mark_booted`; its swap is undone when
//! the new image does not mark itself booted), so the Pico board implements this trait over
//! embassy-boot, the host over a file ([`crate::host_update`]), and tests over a [`BootRecord`] in memory.
//!
//! The trait also keeps the update in progress (header and confirmed offset), so a reboot in the middle
//! of a download resumes it, and the last update's result, which the birth message reports.

use rackwatch_protocols::update::{FirmwareVersion, HEADER_LEN, OtaResult, Slot, UpdateHeader};

/// How the running image came to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootState {
    /// A confirmed image, as usual.
    Normal,
    /// A new image on trial: it must confirm itself before the next reset or it is rolled back.
    Trial,
    /// The image that runs again because the new one did not confirm.
    RolledBack,
}

/// The bootloader and the little state it keeps across resets.
pub trait BootControl {
    type Error: core::fmt::Debug;

    /// The slot the running image was started from.
    fn running(&self) -> Slot;
    fn state(&self) -> BootState;
    /// Marks the other slot, which holds the verified image of `header`, for a trial boot at the
    /// next reset.
    fn mark_trial(&mut self, header: &UpdateHeader) -> Result<(), Self::Error>;
    /// Keeps the running image: ends its trial.
    fn confirm(&mut self) -> Result<(), Self::Error>;
    /// Keeps the update in progress and its confirmed offset across a reset (`None`: none).
    fn keep_progress(&mut self, progress: Option<(&UpdateHeader, u32)>) -> Result<(), Self::Error>;
    fn kept_progress(&self) -> Option<(UpdateHeader, u32)>;
    /// Keeps how the last update ended, for the birth message.
    fn keep_result(&mut self, result: OtaResult) -> Result<(), Self::Error>;
    fn last_result(&self) -> Option<OtaResult>;
}

/// The bootloader's state and rules, without storage: what embassy-boot keeps in its state
/// partition, plus the progress and result of [`BootControl`]. [`BootRecord::reset`] is what the
/// bootloader does at a reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootRecord {
    pub active: Slot,
    pub state: BootState,
    /// The version each slot holds (A, B), where known: on a real board the image itself knows.
    pub versions: [Option<FirmwareVersion>; 2],
    /// The other slot is marked for a trial boot at the next reset.
    pub marked: bool,
    pub progress: Option<([u8; HEADER_LEN], u32)>,
    pub last: Option<OtaResult>,
}

impl BootRecord {
    /// A node that runs `version` from slot A and has never been updated.
    pub fn new(version: FirmwareVersion) -> Self {
        BootRecord {
            active: Slot::A,
            state: BootState::Normal,
            versions: [Some(version), None],
            marked: false,
            progress: None,
            last: None,
        }
    }

    /// A reset: a marked slot starts on trial; an image still on trial (it never confirmed) gives way
    /// to the previous one, which reports `rolled_back`.
    pub fn reset(&mut self) -> BootState {
        self.state = if self.marked {
            self.marked = false;
            self.active = self.active.other();
            BootState::Trial
        } else if self.state == BootState::Trial {
            self.active = self.active.other();
            self.last = Some(OtaResult::RolledBack);
            BootState::RolledBack
        } else {
            BootState::Normal
        };
        self.state
    }

    /// The version the running slot holds.
    pub fn running_version(&self) -> Option<FirmwareVersion> {
        self.version_in(self.active)
    }

    pub fn version_in(&self, slot: Slot) -> Option<FirmwareVersion> {
        let [a, b] = self.versions;
        match slot {
            Slot::A => a,
            Slot::B => b,
        }
    }

    pub fn set_version(&mut self, slot: Slot, version: Option<FirmwareVersion>) {
        let [a, b] = &mut self.versions;
        *match slot {
            Slot::A => a,
            Slot::B => b,
        } = version;
    }
}

/// A [`BootRecord`] in memory is a boot control that forgets everything at power-off: for tests, and
/// the host's file-backed control wraps one.
impl BootControl for BootRecord {
    type Error = core::convert::Infallible;

    fn running(&self) -> Slot {
        self.active
    }

    fn state(&self) -> BootState {
        self.state
    }

    fn mark_trial(&mut self, header: &UpdateHeader) -> Result<(), Self::Error> {
        self.marked = true;
        self.set_version(self.active.other(), Some(header.version));
        Ok(())
    }

    fn confirm(&mut self) -> Result<(), Self::Error> {
        if self.state == BootState::Trial {
            self.state = BootState::Normal;
            self.last = Some(OtaResult::Confirmed);
        }
        Ok(())
    }

    fn keep_progress(&mut self, progress: Option<(&UpdateHeader, u32)>) -> Result<(), Self::Error> {
        self.progress = progress.map(|(header, next)| {
            let mut bytes = [0u8; HEADER_LEN];
            header.emit(&mut bytes);
            (bytes, next)
        });
        Ok(())
    }

    fn kept_progress(&self) -> Option<(UpdateHeader, u32)> {
        let (bytes, next) = self.progress.as_ref()?;
        UpdateHeader::parse(bytes).ok().map(|header| (header, *next))
    }

    fn keep_result(&mut self, result: OtaResult) -> Result<(), Self::Error> {
        self.last = Some(result);
        Ok(())
    }

    fn last_result(&self) -> Option<OtaResult> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> UpdateHeader {
        UpdateHeader {
            board: heapless::String::try_from("host").unwrap_or_default(),
            version: FirmwareVersion::new(1, 4, 0),
            allow_downgrade: false,
            image_len: 1,
            image_sha256: [0; 32],
            signature: [0; 64],
        }
    }

    #[test]
    fn a_marked_slot_boots_on_trial_once_and_stays_only_if_confirmed() {
        let mut record = BootRecord::new(FirmwareVersion::new(1, 3, 0));
        assert_eq!(record.reset(), BootState::Normal);
        record.mark_trial(&header()).unwrap_or_default();
        assert_eq!(record.reset(), BootState::Trial);
        assert_eq!(record.running_version(), Some(FirmwareVersion::new(1, 4, 0)));
        let mut unconfirmed = record.clone();
        record.confirm().unwrap_or_default();
        assert_eq!(record.last, Some(OtaResult::Confirmed));
        assert_eq!((record.reset(), record.active), (BootState::Normal, Slot::B));
        assert_eq!(
            (unconfirmed.reset(), unconfirmed.active, unconfirmed.last),
            (BootState::RolledBack, Slot::A, Some(OtaResult::RolledBack))
        );
        assert_eq!(unconfirmed.reset(), BootState::Normal, "the rollback is final");
    }
}
