use core::convert::Infallible;

use embedded_storage::nor_flash::ReadNorFlash;
use rackwatch_protocols::update::FirmwareVersion;

use super::*;
use crate::config_store::RamFlash;

/// The bootloader's state word, as flags.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Word {
    updated: bool,
    booted: bool,
}

impl Loader for &mut Word {
    type Error = Infallible;

    fn mark_updated(&mut self) -> Result<(), Infallible> {
        self.updated = true;
        Ok(())
    }

    fn mark_booted(&mut self) -> Result<(), Infallible> {
        self.booted = true;
        Ok(())
    }
}

/// Two sectors of 256 bytes (RamFlash: 4-byte writes); the journal in the second.
type Flash = RamFlash<512>;
const BASE: u32 = 256;

fn header(minor: u16) -> UpdateHeader {
    UpdateHeader {
        board: heapless::String::try_from("w5500-evb-pico").unwrap(),
        version: FirmwareVersion::new(1, minor, 0),
        allow_downgrade: false,
        image_len: 200_000,
        image_sha256: [7; 32],
        signature: [9; 64],
    }
}

fn open<'a>(
    flash: &'a mut Flash,
    word: &'a mut Word,
    loaded: LoaderState,
) -> BootJournal<&'a mut Flash, &'a mut Word> {
    BootJournal::open(flash, BASE, word, loaded).unwrap()
}

#[test]
fn a_blank_journal_runs_slot_a_with_nothing_kept() {
    let (mut flash, mut word) = (Flash::new(), Word::default());
    let journal = open(&mut flash, &mut word, LoaderState::Boot);
    assert_eq!((journal.state(), journal.running()), (BootState::Normal, Slot::A));
    assert_eq!(journal.kept_progress(), None);
    assert_eq!(journal.last_result(), None);
}

#[test]
fn the_confirmed_offset_survives_a_reset_past_a_full_sector() {
    let (mut flash, mut word) = (Flash::new(), Word::default());
    let mut journal = open(&mut flash, &mut word, LoaderState::Boot);
    // 256-byte sector, 168-byte record, 8-byte entries: 11 fit, so 40 chunks rewrite it thrice.
    for chunk in 1..=40u32 {
        journal.keep_progress(Some((&header(4), chunk * 1024))).unwrap();
        let reopened = BootJournal::open(&mut journal.flash, BASE, &mut Word::default(), LoaderState::Boot)
            .unwrap()
            .kept_progress();
        assert_eq!(reopened, Some((header(4), chunk * 1024)), "after chunk {chunk}");
    }
    let mut journal = open(&mut flash, &mut word, LoaderState::Boot);
    assert_eq!(journal.kept_progress(), Some((header(4), 40 * 1024)));
    // Another update starts over; none under way clears it.
    journal.keep_progress(Some((&header(5), 512))).unwrap();
    assert_eq!(journal.kept_progress(), Some((header(5), 512)));
    journal.keep_progress(None).unwrap();
    assert_eq!(
        open(&mut flash, &mut word, LoaderState::Boot).kept_progress(),
        None
    );
}

#[test]
fn a_verified_update_boots_on_trial_and_confirms_into_slot_b() {
    let (mut flash, mut word) = (Flash::new(), Word::default());
    let mut journal = open(&mut flash, &mut word, LoaderState::Boot);
    journal.keep_progress(Some((&header(4), 4096))).unwrap();
    journal.mark_trial(&header(4)).unwrap();
    journal.keep_progress(None).unwrap();
    assert!(word.updated, "the bootloader is told to swap");

    // The bootloader swapped: the new image runs on trial from slot B.
    let mut journal = open(&mut flash, &mut word, LoaderState::Swapped);
    assert_eq!((journal.state(), journal.running()), (BootState::Trial, Slot::B));
    assert_eq!(journal.kept_progress(), None);
    journal.confirm().unwrap();
    assert_eq!((journal.state(), journal.running()), (BootState::Normal, Slot::B));
    assert!(word.booted, "the bootloader is told to keep it");

    let journal = open(&mut flash, &mut word, LoaderState::Boot);
    assert_eq!((journal.state(), journal.running()), (BootState::Normal, Slot::B));
    assert_eq!(journal.last_result(), Some(OtaResult::Confirmed));
}

#[test]
fn an_unconfirmed_trial_is_reverted_and_reported_once() {
    let (mut flash, mut word) = (Flash::new(), Word::default());
    open(&mut flash, &mut word, LoaderState::Boot)
        .mark_trial(&header(4))
        .unwrap();
    let journal = open(&mut flash, &mut word, LoaderState::Swapped);
    assert_eq!(journal.running(), Slot::B);
    // Reset without confirming: the bootloader swapped back.
    let journal = open(&mut flash, &mut word, LoaderState::Reverted);
    assert_eq!(
        (journal.state(), journal.running()),
        (BootState::RolledBack, Slot::A)
    );
    assert_eq!(journal.last_result(), Some(OtaResult::RolledBack));
    assert!(
        word.booted,
        "the previous image is kept, so the next reset is a plain boot"
    );
    let journal = open(&mut flash, &mut word, LoaderState::Boot);
    assert_eq!((journal.state(), journal.running()), (BootState::Normal, Slot::A));
    assert_eq!(journal.last_result(), Some(OtaResult::RolledBack));
}

#[test]
fn a_mark_that_never_reached_the_bootloader_leaves_nothing_on_trial() {
    let (mut flash, mut word) = (Flash::new(), Word::default());
    open(&mut flash, &mut word, LoaderState::Boot)
        .mark_trial(&header(4))
        .unwrap();
    let journal = open(&mut flash, &mut word, LoaderState::Boot);
    assert_eq!((journal.state(), journal.running()), (BootState::Normal, Slot::A));
    // And a revert seen later is not taken for this update's.
    let journal = open(&mut flash, &mut word, LoaderState::Reverted);
    assert_eq!(journal.last_result(), None);
}

#[test]
fn a_torn_entry_is_skipped_and_a_torn_record_starts_over() {
    let (mut flash, mut word) = (Flash::new(), Word::default());
    let mut journal = open(&mut flash, &mut word, LoaderState::Boot);
    journal.keep_progress(Some((&header(4), 1024))).unwrap();
    journal.keep_progress(Some((&header(4), 2048))).unwrap();
    // A third entry cut short by a power loss: its offset written, its complement not.
    let entry = BASE + 168 + 2 * 8;
    flash.write(entry, &3072u32.to_le_bytes()).unwrap();
    let mut journal = open(&mut flash, &mut word, LoaderState::Boot);
    assert_eq!(journal.kept_progress(), Some((header(4), 2048)));
    // The next entry goes after the torn one.
    journal.keep_progress(Some((&header(4), 3072))).unwrap();
    assert_eq!(
        open(&mut flash, &mut word, LoaderState::Boot).kept_progress(),
        Some((header(4), 3072))
    );

    // A record whose bytes no longer add up: the last of the header's signature bytes cleared.
    let signature_end = BASE + 16 + HEADER_LEN as u32 - 4;
    let mut before = [0u8; 4];
    flash.read(signature_end, &mut before).unwrap();
    assert_eq!(before, [9; 4]);
    flash.write(signature_end, &[0; 4]).unwrap();
    let mut journal = open(&mut flash, &mut word, LoaderState::Boot);
    assert_eq!(journal.kept_progress(), None);
    journal.keep_result(OtaResult::Refused).unwrap();
    assert_eq!(
        open(&mut flash, &mut word, LoaderState::Boot).last_result(),
        Some(OtaResult::Refused)
    );
}
