//! Firmware updates on the node: the receiving side of protocols' `update` module, sans-IO.
//!
//! The gateway sends an update as [`OtaFrame`]s (header, then image chunks with their offsets). The
//! [`Updater`] checks the header before it writes a byte (board, size, version, and the Ed25519
//! signature against the public key built into this firmware), writes each chunk into the inactive
//! slot (any [`NorFlash`]: a partition of the RP2040's flash, a file on the host), hashes what it
//! wrote, and declares the update [`OtaResult::Verified`] only when the whole image arrived and its
//! SHA-256 matches the signed header. Marking the slot for boot, the trial boot and the rollback are
//! the bootloader's (embassy-boot on the real board); this module never touches the running image.
//!
//! Every answer carries the next offset the node expects, so a transfer cut by a reconnect resumes
//! where it stopped, and after a reboot [`Updater::resume`] re-hashes what the slot already holds.
//! A chunk out of order, past the image's end, for another update, or arriving while no update is
//! under way is refused with its reason, and the slot is never marked.

use ed25519_dalek::{Signature, VerifyingKey};
use embedded_storage::nor_flash::NorFlash;
use rackwatch_protocols::update::{FirmwareVersion, HEADER_LEN, OtaFrame, OtaResult, UpdateHeader};
use sha2::{Digest, Sha256};

/// Longest write granule this module pads a final chunk to (RP2040 flash pages are 256 bytes).
const MAX_WRITE_SIZE: usize = 256;

/// What the node answers to one frame (sent as an `OtaAck`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The update the answer is about; 0 when none.
    pub update: u32,
    /// The next image offset the node expects.
    pub offset: u32,
    pub result: OtaResult,
    /// Why a frame was refused; empty otherwise.
    pub reason: &'static str,
}

/// This node: the board it is, the version it runs, and the key updates must be signed with.
#[derive(Debug, Clone)]
pub struct Identity {
    pub board: &'static str,
    pub running: FirmwareVersion,
    pub key: VerifyingKey,
}

#[derive(Debug, Clone)]
enum State {
    Idle,
    Receiving {
        header: UpdateHeader,
        next: u32,
        hasher: Sha256,
    },
    Verified {
        header: UpdateHeader,
    },
}

/// The update state machine of one node.
#[derive(Debug, Clone)]
pub struct Updater {
    identity: Identity,
    state: State,
}

impl Updater {
    pub fn new(identity: Identity) -> Self {
        Updater {
            identity,
            state: State::Idle,
        }
    }

    /// After a reboot: takes up the update whose header and confirmed offset the board kept
    /// (see [`Self::progress`]), re-hashing the `next` bytes the slot already holds. An update that
    /// no longer checks out (another key, another board) is dropped and the node starts idle.
    pub fn resume<F: NorFlash>(identity: Identity, header: UpdateHeader, next: u32, slot: &mut F) -> Self {
        let mut updater = Updater::new(identity);
        if updater.check_header(&header).is_err() || next > header.image_len {
            return updater;
        }
        let mut hasher = Sha256::new();
        let mut buf = [0u8; 256];
        let mut at = 0u32;
        while at < next {
            let len = (next - at).min(buf.len() as u32) as usize;
            let Some(part) = buf.get_mut(..len) else {
                return updater;
            };
            if slot.read(at, part).is_err() {
                return updater;
            }
            hasher.update(&*part);
            at += len as u32;
        }
        updater.state = State::Receiving { header, next, hasher };
        updater
    }

    /// The update under way and the offset confirmed so far, for the board to keep across a reboot.
    pub fn progress(&self) -> Option<(&UpdateHeader, u32)> {
        match &self.state {
            State::Receiving { header, next, .. } => Some((header, *next)),
            _ => None,
        }
    }

    /// The update that arrived whole and checked out: the board marks its slot for the next boot.
    pub fn verified(&self) -> Option<&UpdateHeader> {
        match &self.state {
            State::Verified { header } => Some(header),
            _ => None,
        }
    }

    /// Takes one frame from `rackwatch/v1/{site}/{node}/ota` and writes what it carries into `slot`.
    pub fn handle<F: NorFlash>(&mut self, frame: &[u8], slot: &mut F) -> Answer {
        let frame = match OtaFrame::parse(frame) {
            Ok(frame) => frame,
            Err(_) => return self.refuse(0, "malformed update frame"),
        };
        match frame {
            OtaFrame::Header { update, header } => self.begin(update, header, slot),
            OtaFrame::Chunk { update, offset, data } => self.chunk(update, offset, data, slot),
            OtaFrame::Abort { update } => {
                if self.current() == Some(update) {
                    self.state = State::Idle;
                }
                Answer {
                    update,
                    offset: 0,
                    result: OtaResult::Accepted,
                    reason: "",
                }
            }
        }
    }

    fn current(&self) -> Option<u32> {
        match &self.state {
            State::Idle => None,
            State::Receiving { header, .. } | State::Verified { header } => Some(header.update_id()),
        }
    }

    fn next_offset(&self) -> u32 {
        match &self.state {
            State::Receiving { next, .. } => *next,
            State::Verified { header } => header.image_len,
            State::Idle => 0,
        }
    }

    /// A refusal that leaves the state as it is and tells where the node stands.
    fn refuse(&self, update: u32, reason: &'static str) -> Answer {
        Answer {
            update,
            offset: self.next_offset(),
            result: OtaResult::Refused,
            reason,
        }
    }

    /// Board, version and signature: everything the node can check before it writes a byte.
    fn check_header(&self, header: &UpdateHeader) -> Result<(), &'static str> {
        if header.board.as_str() != self.identity.board {
            return Err("image is for another board");
        }
        if header.version <= self.identity.running && !header.allow_downgrade {
            return Err("not newer than the running firmware (downgrade not allowed)");
        }
        let signature = Signature::from_bytes(&header.signature);
        self.identity
            .key
            .verify_strict(&header.signed_bytes(), &signature)
            .map_err(|_| "signature does not verify with this node's update key")
    }

    fn begin<F: NorFlash>(&mut self, update: u32, bytes: &[u8], slot: &mut F) -> Answer {
        if let Some(current) = self.current() {
            if current == update {
                // The same update again: a gateway resuming after a reconnect or its own restart.
                let result = match self.state {
                    State::Verified { .. } => OtaResult::Verified,
                    _ => OtaResult::Accepted,
                };
                return Answer {
                    update,
                    offset: self.next_offset(),
                    result,
                    reason: "",
                };
            }
            return self.refuse(update, "another update is in progress");
        }
        let Some(header_bytes) = bytes.get(..HEADER_LEN) else {
            return self.refuse(update, "update header truncated");
        };
        let header = match UpdateHeader::parse(header_bytes) {
            Ok(header) => header,
            Err(_) => return self.refuse(update, "not an update header"),
        };
        if header.update_id() != update {
            return self.refuse(update, "update id does not match its header");
        }
        if header.image_len as usize > slot.capacity() {
            return self.refuse(update, "image is larger than the update slot");
        }
        if F::WRITE_SIZE > MAX_WRITE_SIZE {
            return self.refuse(update, "this flash's write size is not supported");
        }
        if let Err(reason) = self.check_header(&header) {
            return self.refuse(update, reason);
        }
        self.state = State::Receiving {
            header,
            next: 0,
            hasher: Sha256::new(),
        };
        Answer {
            update,
            offset: 0,
            result: OtaResult::Accepted,
            reason: "",
        }
    }

    fn chunk<F: NorFlash>(&mut self, update: u32, offset: u32, data: &[u8], slot: &mut F) -> Answer {
        if self.current() != Some(update) {
            return self.refuse(update, "no such update under way");
        }
        let State::Receiving { header, next, hasher } = &mut self.state else {
            // Verified already: a late duplicate of the last chunk.
            return Answer {
                update,
                offset: self.next_offset(),
                result: OtaResult::Verified,
                reason: "",
            };
        };
        if offset != *next {
            return self.refuse(update, "chunk out of order");
        }
        let end = offset.saturating_add(data.len() as u32);
        if end > header.image_len {
            return self.refuse(update, "chunk goes past the image's end");
        }
        // A chunk that does not end at the image's end must keep the next offset write-aligned.
        if end < header.image_len && !(data.len()).is_multiple_of(F::WRITE_SIZE) {
            return self.refuse(update, "chunk length is not a multiple of the flash write size");
        }
        if write_chunk(slot, offset, data).is_err() {
            return self.refuse(update, "flash write failed");
        }
        hasher.update(data);
        *next = end;
        if end < header.image_len {
            return Answer {
                update,
                offset: end,
                result: OtaResult::Accepted,
                reason: "",
            };
        }
        let digest: [u8; 32] = hasher.clone().finalize().into();
        if digest != header.image_sha256 {
            self.state = State::Idle;
            return Answer {
                update,
                offset: 0,
                result: OtaResult::Refused,
                reason: "image hash does not match the signed header",
            };
        }
        let header = header.clone();
        self.state = State::Verified { header };
        Answer {
            update,
            offset: end,
            result: OtaResult::Verified,
            reason: "",
        }
    }
}

/// Erases each erase block the chunk is the first to enter, then writes it, padding the image's
/// last, unaligned bytes with 0xFF (the erased value) up to the write size.
fn write_chunk<F: NorFlash>(slot: &mut F, offset: u32, data: &[u8]) -> Result<(), F::Error> {
    let erase = F::ERASE_SIZE as u32;
    let end = offset + data.len() as u32;
    let mut block = offset.div_ceil(erase) * erase;
    while block < end {
        slot.erase(block, block + erase)?;
        block += erase;
    }
    let aligned = data.len() - data.len() % F::WRITE_SIZE;
    let (body, tail) = data.split_at(aligned);
    if !body.is_empty() {
        slot.write(offset, body)?;
    }
    if !tail.is_empty() {
        let mut padded = [0xFFu8; MAX_WRITE_SIZE];
        if let Some(start) = padded.get_mut(..tail.len()) {
            start.copy_from_slice(tail);
        }
        if let Some(granule) = padded.get(..F::WRITE_SIZE) {
            slot.write(offset + aligned as u32, granule)?;
        }
    }
    Ok(())
}
