//! The node's update state machine against every stream the gateway (or an attacker) can send:
//! a whole update, interruptions and resumes, and each bad input refused with the firmware kept.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use rackwatch_firmware::config_store::RamFlash;
use rackwatch_firmware::update::{Answer, Identity, Updater};
use rackwatch_protocols::update::{
    FirmwareVersion, HEADER_LEN, MAX_CHUNK, OtaFrame, OtaResult, UpdateHeader,
};
use sha2::{Digest, Sha256};

const SLOT: usize = 64 * 1024;
const BOARD: &str = "w5500-evb-pico";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn identity() -> Identity {
    Identity {
        board: BOARD,
        running: FirmwareVersion::new(1, 3, 0),
        key: key().verifying_key(),
    }
}

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// A signed update file's header for `image`, as `rackwatch firmware sign` makes it.
fn signed(
    image: &[u8],
    board: &str,
    version: FirmwareVersion,
    allow_downgrade: bool,
    key: &SigningKey,
) -> UpdateHeader {
    let mut header = UpdateHeader {
        board: heapless::String::try_from(board).unwrap(),
        version,
        allow_downgrade,
        image_len: image.len() as u32,
        image_sha256: Sha256::digest(image).into(),
        signature: [0; 64],
    };
    header.signature = key.sign(&header.signed_bytes()).to_bytes();
    header
}

fn header_frame(header: &UpdateHeader) -> Vec<u8> {
    let mut bytes = [0u8; HEADER_LEN];
    header.emit(&mut bytes);
    frame(OtaFrame::Header {
        update: header.update_id(),
        header: &bytes,
    })
}

fn frame(frame: OtaFrame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = frame.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn chunk(header: &UpdateHeader, image: &[u8], offset: usize, len: usize) -> Vec<u8> {
    frame(OtaFrame::Chunk {
        update: header.update_id(),
        offset: offset as u32,
        data: &image[offset..(offset + len).min(image.len())],
    })
}

/// Sends the image from `from` in `MAX_CHUNK` pieces, following the node's answers; returns the last.
fn send_from(
    updater: &mut Updater,
    slot: &mut RamFlash<SLOT>,
    header: &UpdateHeader,
    image: &[u8],
    from: usize,
) -> Answer {
    let mut offset = from;
    loop {
        let answer = updater.handle(&chunk(header, image, offset, MAX_CHUNK), slot);
        if answer.result != OtaResult::Accepted {
            return answer;
        }
        offset = answer.offset as usize;
    }
}

fn slot() -> Box<RamFlash<SLOT>> {
    Box::new(RamFlash::new())
}

fn read_slot(slot: &mut RamFlash<SLOT>, len: usize) -> Vec<u8> {
    use embedded_storage::nor_flash::ReadNorFlash;
    let mut out = vec![0u8; len];
    slot.read(0, &mut out).unwrap();
    out
}

#[test]
fn a_whole_update_is_verified_and_lands_in_the_slot() {
    let image = image(20_000 + 3); // an unaligned last chunk
    let header = signed(&image, BOARD, FirmwareVersion::new(1, 4, 0), false, &key());
    let mut slot = slot();
    let mut updater = Updater::new(identity());
    let start = updater.handle(&header_frame(&header), &mut *slot);
    assert_eq!((start.result, start.offset), (OtaResult::Accepted, 0));
    let last = send_from(&mut updater, &mut slot, &header, &image, 0);
    assert_eq!(last.result, OtaResult::Verified, "{last:?}");
    assert_eq!(last.offset as usize, image.len());
    assert_eq!(updater.verified(), Some(&header));
    assert_eq!(read_slot(&mut slot, image.len()), image);
}

#[test]
fn a_transfer_resumes_after_a_reconnect_at_the_offset_the_node_names() {
    let image = image(10_000);
    let header = signed(&image, BOARD, FirmwareVersion::new(1, 4, 0), false, &key());
    let mut slot = slot();
    let mut updater = Updater::new(identity());
    updater.handle(&header_frame(&header), &mut *slot);
    updater.handle(&chunk(&header, &image, 0, MAX_CHUNK), &mut *slot);
    updater.handle(&chunk(&header, &image, MAX_CHUNK, MAX_CHUNK), &mut *slot);
    // The gateway reconnects and starts over with the header: the node says where it stands.
    let again = updater.handle(&header_frame(&header), &mut *slot);
    assert_eq!(
        (again.result, again.offset),
        (OtaResult::Accepted, 2 * MAX_CHUNK as u32)
    );
    let last = send_from(&mut updater, &mut slot, &header, &image, again.offset as usize);
    assert_eq!(last.result, OtaResult::Verified);
    assert_eq!(read_slot(&mut slot, image.len()), image);
}

#[test]
fn a_transfer_resumes_after_a_reboot_from_the_kept_progress() {
    let image = image(12_345);
    let header = signed(&image, BOARD, FirmwareVersion::new(2, 0, 0), false, &key());
    let mut slot = slot();
    let mut updater = Updater::new(identity());
    updater.handle(&header_frame(&header), &mut *slot);
    send_n(&mut updater, &mut slot, &header, &image, 3);
    let (kept, next) = updater.progress().map(|(h, n)| (h.clone(), n)).unwrap();
    assert_eq!(next, 3 * MAX_CHUNK as u32);
    drop(updater); // the reboot: only the slot and the kept progress survive
    let mut updater = Updater::resume(identity(), kept, next, &mut *slot);
    let again = updater.handle(&header_frame(&header), &mut *slot);
    assert_eq!(again.offset, next);
    let last = send_from(&mut updater, &mut slot, &header, &image, next as usize);
    assert_eq!(
        last.result,
        OtaResult::Verified,
        "the re-hashed prefix and the rest make the signed hash"
    );
}

fn send_n(
    updater: &mut Updater,
    slot: &mut RamFlash<SLOT>,
    header: &UpdateHeader,
    image: &[u8],
    chunks: usize,
) {
    for i in 0..chunks {
        let answer = updater.handle(&chunk(header, image, i * MAX_CHUNK, MAX_CHUNK), slot);
        assert_eq!(answer.result, OtaResult::Accepted);
    }
}

fn refused(answer: Answer, reason: &str) {
    assert_eq!(answer.result, OtaResult::Refused, "{answer:?}");
    assert!(
        answer.reason.contains(reason),
        "{:?} should say {reason:?}",
        answer.reason
    );
}

#[test]
fn a_wrong_signature_is_refused_before_a_byte_is_written() {
    let image = image(5_000);
    let other_key = SigningKey::from_bytes(&[9u8; 32]);
    let header = signed(&image, BOARD, FirmwareVersion::new(1, 4, 0), false, &other_key);
    let mut slot = slot();
    let mut updater = Updater::new(identity());
    refused(updater.handle(&header_frame(&header), &mut *slot), "signature");
    assert!(
        read_slot(&mut slot, 64).iter().all(|b| *b == 0xFF),
        "slot untouched"
    );
    refused(
        updater.handle(&chunk(&header, &image, 0, MAX_CHUNK), &mut *slot),
        "no such update",
    );
}

#[test]
fn a_tampered_header_fails_its_signature() {
    let image = image(5_000);
    let mut header = signed(&image, BOARD, FirmwareVersion::new(1, 4, 0), false, &key());
    header.version = FirmwareVersion::new(9, 0, 0);
    refused(
        Updater::new(identity()).handle(&header_frame(&header), &mut *slot()),
        "signature",
    );
}

#[test]
fn an_image_for_another_board_is_refused() {
    let image = image(5_000);
    let header = signed(
        &image,
        "lm3s6965evb",
        FirmwareVersion::new(1, 4, 0),
        false,
        &key(),
    );
    refused(
        Updater::new(identity()).handle(&header_frame(&header), &mut *slot()),
        "another board",
    );
}

#[test]
fn a_downgrade_is_refused_unless_the_update_allows_it() {
    let image = image(5_000);
    let old = signed(&image, BOARD, FirmwareVersion::new(1, 2, 9), false, &key());
    refused(
        Updater::new(identity()).handle(&header_frame(&old), &mut *slot()),
        "downgrade",
    );
    let same = signed(&image, BOARD, FirmwareVersion::new(1, 3, 0), false, &key());
    refused(
        Updater::new(identity()).handle(&header_frame(&same), &mut *slot()),
        "not newer",
    );
    let allowed = signed(&image, BOARD, FirmwareVersion::new(1, 2, 9), true, &key());
    let answer = Updater::new(identity()).handle(&header_frame(&allowed), &mut *slot());
    assert_eq!(answer.result, OtaResult::Accepted);
}

#[test]
fn an_image_larger_than_the_slot_is_refused() {
    let image = image(SLOT + 1);
    let header = signed(&image, BOARD, FirmwareVersion::new(1, 4, 0), false, &key());
    refused(
        Updater::new(identity()).handle(&header_frame(&header), &mut *slot()),
        "larger than",
    );
}

#[test]
fn reordered_and_overlong_chunks_are_refused_and_the_stream_goes_on_from_the_named_offset() {
    let image = image(9_000);
    let header = signed(&image, BOARD, FirmwareVersion::new(1, 4, 0), false, &key());
    let mut slot = slot();
    let mut updater = Updater::new(identity());
    updater.handle(&header_frame(&header), &mut *slot);
    let skipped = updater.handle(&chunk(&header, &image, MAX_CHUNK, MAX_CHUNK), &mut *slot);
    refused(skipped, "out of order");
    assert_eq!(skipped.offset, 0, "the node names where to go on");
    send_n(&mut updater, &mut slot, &header, &image, 1);
    let repeated = updater.handle(&chunk(&header, &image, 0, MAX_CHUNK), &mut *slot);
    refused(repeated, "out of order");
    assert_eq!(repeated.offset, MAX_CHUNK as u32);
    // 9,000 bytes are four full chunks and 808 bytes: a fifth full chunk would pass the end.
    send_n_from(&mut updater, &mut slot, &header, &image, 1, 3);
    let over = frame(OtaFrame::Chunk {
        update: header.update_id(),
        offset: 4 * MAX_CHUNK as u32,
        data: &[0u8; MAX_CHUNK][..],
    });
    refused(updater.handle(&over, &mut *slot), "past the image");
    let last = send_from(&mut updater, &mut slot, &header, &image, 4 * MAX_CHUNK);
    assert_eq!(last.result, OtaResult::Verified);
}

fn send_n_from(
    updater: &mut Updater,
    slot: &mut RamFlash<SLOT>,
    header: &UpdateHeader,
    image: &[u8],
    first: usize,
    count: usize,
) {
    for i in first..first + count {
        let answer = updater.handle(&chunk(header, image, i * MAX_CHUNK, MAX_CHUNK), slot);
        assert_eq!(answer.result, OtaResult::Accepted, "chunk {i}: {answer:?}");
    }
}

#[test]
fn a_hash_mismatch_is_refused_at_the_end_and_the_slot_is_not_marked() {
    let image = image(6_000);
    let header = signed(&image, BOARD, FirmwareVersion::new(1, 4, 0), false, &key());
    let mut corrupted = image.clone();
    corrupted[4_321] ^= 0x40;
    let mut slot = slot();
    let mut updater = Updater::new(identity());
    updater.handle(&header_frame(&header), &mut *slot);
    let last = send_from(&mut updater, &mut slot, &header, &corrupted, 0);
    refused(last, "hash");
    assert_eq!(updater.verified(), None);
    assert_eq!(
        updater.progress(),
        None,
        "the update is dropped; a new one may start"
    );
}

#[test]
fn a_second_update_while_one_is_in_progress_is_refused_until_the_first_is_aborted() {
    let first_image = image(6_000);
    let first = signed(&first_image, BOARD, FirmwareVersion::new(1, 4, 0), false, &key());
    let second = signed(&image(7_000), BOARD, FirmwareVersion::new(1, 5, 0), false, &key());
    let mut slot = slot();
    let mut updater = Updater::new(identity());
    updater.handle(&header_frame(&first), &mut *slot);
    refused(
        updater.handle(&header_frame(&second), &mut *slot),
        "another update",
    );
    updater.handle(
        &frame(OtaFrame::Abort {
            update: first.update_id(),
        }),
        &mut *slot,
    );
    assert_eq!(
        updater.handle(&header_frame(&second), &mut *slot).result,
        OtaResult::Accepted
    );
}

#[test]
fn garbage_frames_are_refused_without_changing_the_update() {
    let image = image(6_000);
    let header = signed(&image, BOARD, FirmwareVersion::new(1, 4, 0), false, &key());
    let mut slot = slot();
    let mut updater = Updater::new(identity());
    updater.handle(&header_frame(&header), &mut *slot);
    send_n(&mut updater, &mut slot, &header, &image, 1);
    refused(updater.handle(&[2, 1], &mut *slot), "malformed");
    refused(updater.handle(&[42; 20], &mut *slot), "malformed");
    assert_eq!(updater.progress().map(|(_, n)| n), Some(MAX_CHUNK as u32));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Interrupted at any chunk, resumed after a reconnect or a reboot: the image that lands is
    /// the signed one, byte for byte.
    #[test]
    fn an_update_interrupted_anywhere_completes_after_resume(len in 1usize..30_000, cut in 0usize..16, reboot in any::<bool>()) {
        let image = image(len);
        let header = signed(&image, BOARD, FirmwareVersion::new(1, 4, 0), false, &key());
        let mut slot = slot();
        let mut updater = Updater::new(identity());
        updater.handle(&header_frame(&header), &mut *slot);
        let chunks = len.div_ceil(MAX_CHUNK);
        let cut = cut % chunks;
        for i in 0..cut {
            updater.handle(&chunk(&header, &image, i * MAX_CHUNK, MAX_CHUNK), &mut *slot);
        }
        if reboot {
            let (kept, next) = updater.progress().map(|(h, n)| (h.clone(), n)).unwrap();
            updater = Updater::resume(identity(), kept, next, &mut *slot);
        }
        let again = updater.handle(&header_frame(&header), &mut *slot);
        prop_assert_eq!(again.offset as usize, cut * MAX_CHUNK);
        let last = send_from(&mut updater, &mut slot, &header, &image, again.offset as usize);
        prop_assert_eq!(last.result, OtaResult::Verified);
        prop_assert_eq!(read_slot(&mut slot, len), image);
    }
}
