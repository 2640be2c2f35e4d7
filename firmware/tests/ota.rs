//! Firmware updates through the whole node: frames arrive as MQTT PUBLISHes on `.../ota`, the board
//! feeds them to its update agent, answers go out on `.../ota/ack`, and the boot control trial-boots,
//! confirms or rolls back. A fake broker and a fake clock; a gateway played by the test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use ed25519_dalek::{Signer, SigningKey};
use embedded_storage::nor_flash::ReadNorFlash;
use proptest::prelude::*;
use rackwatch_firmware::boot::{BootRecord, BootState};
use rackwatch_firmware::config_store::RamFlash;
use rackwatch_firmware::mqtt::{ConnectReturn, Packet, Publish, QoS};
use rackwatch_firmware::ota::{Ota, OtaConfig};
use rackwatch_firmware::update::Identity;
use rackwatch_firmware::{LinkError, LinkState, Node, NodeConfig, Transport};
use rackwatch_hardware::{FanControl, Fault, Measurement, Sample, SensorSet};
use rackwatch_protocols::update::{
    FirmwareVersion, HEADER_LEN, MAX_CHUNK, OtaAck, OtaFrame, OtaResult, Slot, UpdateHeader,
};
use rackwatch_protocols::{FanTarget, NodeId, NodeState, SiteId, Status};
use sha2::{Digest, Sha256};

const SLOT_LEN: usize = 64 * 1024;
const BOARD: &str = "w5500-evb-pico";
const OLD: FirmwareVersion = FirmwareVersion::new(1, 3, 0);
const NEW: FirmwareVersion = FirmwareVersion::new(1, 4, 0);
const CONFIRM_WITHIN_MS: u32 = 30_000;
const OTA_TOPIC: &str = "rackwatch/v1/lab/n1/ota";

/// A broker in memory that answers CONNECT, SUBSCRIBE, PINGREQ and PUBLISH at once and lets the test
/// publish to the node.
#[derive(Default)]
struct FakeBroker {
    up: bool,
    link: Option<LinkState>,
    to_node: Vec<u8>,
    from_node: Vec<u8>,
    published: Vec<(String, Vec<u8>)>,
    subscriptions: Vec<String>,
    /// PUBACKs the node sent for what the test published.
    pubacks: Vec<u16>,
    next_id: u16,
}

impl FakeBroker {
    fn up() -> Self {
        FakeBroker {
            up: true,
            next_id: 100,
            ..FakeBroker::default()
        }
    }

    fn go_down(&mut self) {
        self.up = false;
        self.link = Some(LinkState::Closed);
        self.to_node.clear();
        self.from_node.clear();
    }

    fn push(&mut self, packet: Packet<'_>) {
        let mut buf = vec![0u8; 4096];
        let n = packet.encode(&mut buf).unwrap();
        self.to_node.extend_from_slice(&buf[..n]);
    }

    fn process(&mut self) {
        while let Some((packet, used)) = Packet::decode(&self.from_node).unwrap() {
            let reply = match packet {
                Packet::Connect(_) => Some(Packet::ConnAck {
                    session_present: false,
                    code: ConnectReturn::Accepted,
                }),
                Packet::Publish(p) => {
                    self.published.push((p.topic.to_owned(), p.payload.to_vec()));
                    p.packet_id.map(|packet_id| Packet::PubAck { packet_id })
                }
                Packet::Subscribe {
                    packet_id, filter, ..
                } => {
                    self.subscriptions.push(filter.to_owned());
                    Some(Packet::SubAck {
                        packet_id,
                        granted: Some(QoS::AtLeastOnce),
                    })
                }
                Packet::PubAck { packet_id } => {
                    self.pubacks.push(packet_id);
                    None
                }
                Packet::PingReq => Some(Packet::PingResp),
                _ => None,
            };
            self.from_node.drain(..used);
            if let Some(reply) = reply {
                self.push(reply);
            }
        }
    }

    /// Publishes an update frame to the node at QoS 1, as the gateway does.
    fn send_ota(&mut self, frame: &[u8]) {
        self.next_id += 1;
        let packet_id = self.next_id;
        self.push(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: OTA_TOPIC,
            packet_id: Some(packet_id),
            payload: frame,
        }));
    }

    fn command(&mut self, json: &str) {
        self.push(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "rackwatch/v1/lab/n1/cmd",
            packet_id: Some(900),
            payload: json.as_bytes(),
        }));
    }

    fn ota_acks(&self) -> Vec<OtaAck> {
        self.published
            .iter()
            .filter(|(topic, _)| topic.ends_with("/ota/ack"))
            .map(|(_, payload)| OtaAck::decode(payload).unwrap())
            .collect()
    }

    fn births(&self) -> Vec<Status> {
        self.published
            .iter()
            .filter(|(topic, _)| topic.ends_with("/status"))
            .map(|(_, payload)| Status::decode(payload).unwrap())
            .filter(|s| s.state == NodeState::Online)
            .collect()
    }
}

impl Transport for FakeBroker {
    fn open(&mut self) -> Result<(), LinkError> {
        self.to_node.clear();
        self.from_node.clear();
        self.link = Some(if self.up {
            LinkState::Open
        } else {
            LinkState::Closed
        });
        Ok(())
    }
    fn state(&mut self) -> LinkState {
        self.link.unwrap_or(LinkState::Closed)
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        if self.state() != LinkState::Open {
            return Err(LinkError);
        }
        // At most 700 bytes at a time: a chunk's PUBLISH arrives over several reads.
        let n = buf.len().min(self.to_node.len()).min(700);
        buf[..n].copy_from_slice(&self.to_node[..n]);
        self.to_node.drain(..n);
        Ok(n)
    }
    fn send(&mut self, bytes: &[u8]) -> Result<usize, LinkError> {
        if self.state() != LinkState::Open {
            return Err(LinkError);
        }
        self.from_node.extend_from_slice(bytes);
        self.process();
        Ok(bytes.len())
    }
    fn close(&mut self) {
        self.link = Some(LinkState::Closed);
    }
}

/// No sensors: the update is what is under test.
struct NoSensors;

impl SensorSet for NoSensors {
    fn sample(&mut self, _device: usize, _measurement: Measurement) -> Result<Sample, Fault> {
        Err(Fault::Unsupported)
    }
}

impl FanControl for NoSensors {
    fn set_fan(&mut self, _fan: u8, _target: FanTarget) -> Result<(), Fault> {
        Err(Fault::Unsupported)
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// A signed update file, as `rackwatch firmware sign` writes it.
fn update_file(
    image: &[u8],
    board: &str,
    version: FirmwareVersion,
    key: &SigningKey,
) -> (UpdateHeader, Vec<u8>) {
    let mut header = UpdateHeader {
        board: heapless::String::try_from(board).unwrap(),
        version,
        allow_downgrade: false,
        image_len: image.len() as u32,
        image_sha256: Sha256::digest(image).into(),
        signature: [0; 64],
    };
    header.signature = key.sign(&header.signed_bytes()).to_bytes();
    let mut bytes = [0u8; HEADER_LEN];
    header.emit(&mut bytes);
    (header, bytes.to_vec())
}

fn frame(frame: OtaFrame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = frame.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn header_frame(header: &UpdateHeader, bytes: &[u8]) -> Vec<u8> {
    frame(OtaFrame::Header {
        update: header.update_id(),
        header: bytes,
    })
}

fn chunk(header: &UpdateHeader, image: &[u8], offset: usize) -> Vec<u8> {
    frame(OtaFrame::Chunk {
        update: header.update_id(),
        offset: offset as u32,
        data: &image[offset..(offset + MAX_CHUNK).min(image.len())],
    })
}

/// A board: the node, its update agent over a persistent [`BootRecord`], its two slots, a clock.
struct Board {
    node: Node<16>,
    ota: Ota<BootRecord>,
    slots: [Box<RamFlash<SLOT_LEN>>; 2],
    broker: FakeBroker,
    now: u64,
}

fn inactive(slots: &mut [Box<RamFlash<SLOT_LEN>>; 2], running: Slot) -> &mut RamFlash<SLOT_LEN> {
    match running {
        Slot::A => &mut slots[1],
        Slot::B => &mut slots[0],
    }
}

impl Board {
    /// A node never updated, running `OLD` from slot A.
    fn new() -> Self {
        Self::boot(
            BootRecord::new(OLD),
            [Box::new(RamFlash::new()), Box::new(RamFlash::new())],
            FakeBroker::up(),
        )
    }

    /// Power-on with what survives a reset: the boot record and the flash. The bootloader runs first.
    fn boot(mut record: BootRecord, mut slots: [Box<RamFlash<SLOT_LEN>>; 2], broker: FakeBroker) -> Self {
        record.reset();
        let running = record.running_version().unwrap();
        let identity = Identity {
            board: BOARD,
            running,
            key: key().verifying_key(),
        };
        let active = record.active;
        let ota = Ota::start(
            identity,
            record,
            inactive(&mut slots, active),
            0,
            OtaConfig {
                confirm_within_ms: CONFIRM_WITHIN_MS,
            },
        );
        let mut config = NodeConfig::new(SiteId::new("lab").unwrap(), NodeId::new("n1").unwrap(), 77);
        config.firmware = heapless::String::try_from(running.to_string().as_str()).unwrap();
        let mut node = Node::new(config, &[]).unwrap();
        node.accept_updates(ota.report());
        Board {
            node,
            ota,
            slots,
            broker,
            now: 0,
        }
    }

    /// A reset: what the RAM held is gone; the boot record, the slots and the broker remain.
    fn reset(self) -> Self {
        let Board {
            ota, slots, broker, ..
        } = self;
        Self::boot(ota.boot_control().clone(), slots, broker)
    }

    /// Runs the board's main loop for `ms` of fake time; `true` if the node asked for a reset.
    fn run(&mut self, ms: u64) -> bool {
        let until = self.now + ms;
        while self.now < until {
            let poll = self.node.poll(self.now, &mut NoSensors, &mut self.broker);
            while let Some(event) = self.node.next_event() {
                if matches!(event, rackwatch_firmware::Event::Connected { .. }) && self.ota.connected() {
                    self.node.accept_updates(self.ota.report());
                }
            }
            if let Some(frame) = self.node.ota_frame() {
                let running = self.ota.boot_control().active;
                let answer = self.ota.handle(frame, inactive(&mut self.slots, running));
                self.node.answer_ota(answer);
            }
            if poll.reboot || self.ota.must_reset(self.now) {
                return true;
            }
            self.now += 5;
        }
        false
    }

    /// Publishes `frame` and returns the node's answer to it.
    fn send(&mut self, frame: &[u8]) -> OtaAck {
        let before = self.broker.ota_acks().len();
        self.broker.send_ota(frame);
        self.run(50);
        let acks = self.broker.ota_acks();
        assert_eq!(acks.len(), before + 1, "one answer per frame");
        acks.last().unwrap().clone()
    }

    /// The gateway's loop: from `ack`'s offset, chunk after chunk, until the node stops accepting.
    fn send_rest(&mut self, header: &UpdateHeader, image: &[u8], mut ack: OtaAck) -> OtaAck {
        while ack.result == OtaResult::Accepted {
            ack = self.send(&chunk(header, image, ack.offset as usize));
        }
        ack
    }

    fn record(&self) -> &BootRecord {
        self.ota.boot_control()
    }

    fn slot(&mut self, slot: Slot, len: usize) -> Vec<u8> {
        let flash = match slot {
            Slot::A => &mut self.slots[0],
            Slot::B => &mut self.slots[1],
        };
        let mut out = vec![0u8; len];
        flash.read(0, &mut out).unwrap();
        out
    }
}

fn online(ms: u64) -> Board {
    let mut board = Board::new();
    board.run(ms);
    assert!(board.node.is_online());
    board
}

#[test]
fn a_full_update_installs_trial_boots_and_confirms_the_new_image() {
    let mut board = online(100);
    assert!(board.broker.subscriptions.iter().any(|s| s == OTA_TOPIC));
    let birth = board.broker.births().pop().unwrap();
    assert_eq!(
        (birth.firmware.as_deref(), birth.slot, birth.update),
        (Some("1.3.0"), Some(Slot::A), None)
    );
    let image = image(10_000);
    let (header, bytes) = update_file(&image, BOARD, NEW, &key());
    let first = board.send(&header_frame(&header, &bytes));
    assert_eq!(
        (first.result, first.offset, first.update),
        (OtaResult::Accepted, 0, header.update_id())
    );
    let last = board.send_rest(&header, &image, first);
    assert_eq!((last.result, last.offset), (OtaResult::Verified, 10_000));
    assert_eq!(board.broker.ota_acks().len(), 1 + 10_000usize.div_ceil(MAX_CHUNK));
    assert!(board.record().marked, "the new slot is marked for a trial boot");
    assert_eq!(board.slot(Slot::B, image.len()), image);
    assert!(
        board.broker.pubacks.len() >= board.broker.ota_acks().len(),
        "every frame's PUBLISH is acknowledged"
    );

    board.broker.command(r#"{"v":1,"id":5,"action":"reboot"}"#);
    assert!(board.run(10_000), "the reboot command resets the node");
    let mut board = board.reset();
    assert_eq!(board.record().state, BootState::Trial);
    board.run(1_000);
    let birth = board.broker.births().pop().unwrap();
    assert_eq!(
        (birth.firmware.as_deref(), birth.slot, birth.update),
        (Some("1.4.0"), Some(Slot::B), Some(OtaResult::Confirmed))
    );
    assert!(
        !board.run(u64::from(CONFIRM_WITHIN_MS) + 1_000),
        "a confirmed image is not reset"
    );
    let board = board.reset();
    assert_eq!(
        (board.record().active, board.record().state),
        (Slot::B, BootState::Normal),
        "the confirmed image stays after the next reset"
    );
}

/// Sends the header and `chunks` chunks; returns the offset the node confirmed.
fn send_part(board: &mut Board, header: &UpdateHeader, bytes: &[u8], image: &[u8], chunks: usize) -> u32 {
    let mut ack = board.send(&header_frame(header, bytes));
    for _ in 0..chunks {
        ack = board.send(&chunk(header, image, ack.offset as usize));
        assert_eq!(ack.result, OtaResult::Accepted);
    }
    ack.offset
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn a_download_cut_at_any_chunk_resumes_after_a_reconnect(cut in 0usize..9) {
        let mut board = online(100);
        let image = image(20_000);
        let (header, bytes) = update_file(&image, BOARD, NEW, &key());
        let confirmed = send_part(&mut board, &header, &bytes, &image, cut);
        board.broker.go_down();
        board.run(2_000);
        prop_assert!(!board.node.is_online());
        board.broker.up = true;
        board.run(10_000);
        prop_assert!(board.node.is_online());
        let resumed = board.send(&header_frame(&header, &bytes));
        prop_assert_eq!((resumed.result, resumed.offset), (OtaResult::Accepted, confirmed));
        let last = board.send_rest(&header, &image, resumed);
        prop_assert_eq!(last.result, OtaResult::Verified);
        prop_assert_eq!(board.slot(Slot::B, image.len()), image);
    }

    #[test]
    fn a_download_cut_at_any_chunk_resumes_after_a_reboot(cut in 0usize..9) {
        let mut board = online(100);
        let image = image(20_000);
        let (header, bytes) = update_file(&image, BOARD, NEW, &key());
        let confirmed = send_part(&mut board, &header, &bytes, &image, cut);
        let mut board = board.reset();
        prop_assert_eq!(board.record().state, BootState::Normal);
        board.run(1_000);
        let resumed = board.send(&header_frame(&header, &bytes));
        prop_assert_eq!((resumed.result, resumed.offset), (OtaResult::Accepted, confirmed));
        let last = board.send_rest(&header, &image, resumed);
        prop_assert_eq!(last.result, OtaResult::Verified);
        prop_assert_eq!(board.slot(Slot::B, image.len()), image);
    }
}

/// The node refused with `reason`, kept its image and slot, and goes on publishing.
fn refused_and_running(board: &mut Board, ack: &OtaAck, reason: &str) {
    assert_eq!(ack.result, OtaResult::Refused, "{ack:?}");
    assert!(
        ack.reason.as_deref().unwrap_or_default().contains(reason),
        "{:?} does not say {reason:?}",
        ack.reason
    );
    assert!(!board.record().marked, "nothing is marked for boot");
    assert_eq!(board.record().active, Slot::A);
    board.node.accept_updates(board.ota.report());
    board.run(100);
    assert!(board.node.is_online());
    let birth = board.broker.births().pop().unwrap();
    assert_eq!(
        (birth.firmware.as_deref(), birth.slot),
        (Some("1.3.0"), Some(Slot::A)),
        "still the old image"
    );
}

#[test]
fn a_wrong_signature_is_refused() {
    let mut board = online(100);
    let image = image(5_000);
    let (header, bytes) = update_file(&image, BOARD, NEW, &SigningKey::from_bytes(&[8; 32]));
    let ack = board.send(&header_frame(&header, &bytes));
    refused_and_running(&mut board, &ack, "signature");
    assert_eq!(ack.offset, 0);
}

#[test]
fn an_image_for_another_board_is_refused() {
    let mut board = online(100);
    let image = image(5_000);
    let (header, bytes) = update_file(&image, "lm3s6965evb", NEW, &key());
    let ack = board.send(&header_frame(&header, &bytes));
    refused_and_running(&mut board, &ack, "another board");
}

#[test]
fn reordered_and_truncated_chunks_are_refused_at_the_offset_the_node_expects() {
    let mut board = online(100);
    let image = image(10_000);
    let (header, bytes) = update_file(&image, BOARD, NEW, &key());
    board.send(&header_frame(&header, &bytes));
    let skipped = board.send(&chunk(&header, &image, MAX_CHUNK));
    assert_eq!(skipped.offset, 0);
    refused_and_running(&mut board, &skipped, "out of order");
    let truncated = frame(OtaFrame::Chunk {
        update: header.update_id(),
        offset: 0,
        data: &image[..99],
    });
    let short = board.send(&truncated);
    assert_eq!(short.offset, 0);
    refused_and_running(&mut board, &short, "multiple of the flash write size");
    // The stream goes on from where the node stands and still completes.
    let ack = board.send(&chunk(&header, &image, 0));
    let last = board.send_rest(&header, &image, ack);
    assert_eq!(last.result, OtaResult::Verified);
}

#[test]
fn a_hash_mismatch_is_refused_at_the_end() {
    let mut board = online(100);
    let image = image(5_000);
    let (header, bytes) = update_file(&image, BOARD, NEW, &key());
    let mut tampered = image.clone();
    tampered[4_999] ^= 0x55;
    let ack = board.send(&header_frame(&header, &bytes));
    let last = board.send_rest(&header, &tampered, ack);
    refused_and_running(&mut board, &last, "hash");
    assert_eq!(board.record().last, Some(OtaResult::Refused));
    assert_eq!(board.record().progress, None, "nothing left to resume");
}

#[test]
fn a_chunk_for_an_unknown_update_is_refused() {
    let mut board = online(100);
    let image = image(5_000);
    let (header, _) = update_file(&image, BOARD, NEW, &key());
    let ack = board.send(&chunk(&header, &image, 0));
    refused_and_running(&mut board, &ack, "no such update");
}

#[test]
fn an_update_while_another_is_in_progress_is_refused_and_the_first_goes_on() {
    let mut board = online(100);
    let image = image(5_000);
    let (header, bytes) = update_file(&image, BOARD, NEW, &key());
    let first = board.send(&header_frame(&header, &bytes));
    let other_image: Vec<u8> = (0..6_000).map(|i| (i % 7) as u8).collect();
    let (other, other_bytes) = update_file(&other_image, BOARD, FirmwareVersion::new(1, 5, 0), &key());
    let ack = board.send(&header_frame(&other, &other_bytes));
    refused_and_running(&mut board, &ack, "another update is in progress");
    let last = board.send_rest(&header, &image, first);
    assert_eq!(last.result, OtaResult::Verified);
}

#[test]
fn a_new_image_that_does_not_confirm_in_time_is_rolled_back() {
    let mut board = online(100);
    let image = image(5_000);
    let (header, bytes) = update_file(&image, BOARD, NEW, &key());
    let ack = board.send(&header_frame(&header, &bytes));
    assert_eq!(board.send_rest(&header, &image, ack).result, OtaResult::Verified);
    // The new image boots on trial but never reaches the broker.
    board.broker.go_down();
    let mut board = board.reset();
    assert_eq!(
        (board.record().state, board.record().active),
        (BootState::Trial, Slot::B)
    );
    assert!(
        !board.run(u64::from(CONFIRM_WITHIN_MS) - 100),
        "not before the deadline"
    );
    assert!(board.run(1_000), "reset at the deadline");
    board.broker.up = true;
    let mut board = board.reset();
    assert_eq!(
        (board.record().state, board.record().active),
        (BootState::RolledBack, Slot::A)
    );
    board.run(1_000);
    let birth = board.broker.births().pop().unwrap();
    assert_eq!(
        (birth.firmware.as_deref(), birth.slot, birth.update),
        (Some("1.3.0"), Some(Slot::A), Some(OtaResult::RolledBack))
    );
}

#[test]
fn a_board_that_cannot_update_answers_unsupported_with_its_reason() {
    let mut board = online(100);
    let image = image(5_000);
    let (header, bytes) = update_file(&image, BOARD, NEW, &key());
    board.broker.send_ota(&header_frame(&header, &bytes));
    let mut answered = false;
    for _ in 0..20 {
        board.node.poll(board.now, &mut NoSensors, &mut board.broker);
        if let Some(frame) = board.node.ota_frame() {
            let answer = rackwatch_firmware::ota::unsupported(frame, "QEMU keeps the flash read-only");
            board.node.answer_ota(answer);
            answered = true;
        }
        board.now += 5;
    }
    assert!(answered);
    let ack = board.broker.ota_acks().pop().unwrap();
    assert_eq!(
        (ack.result, ack.update, ack.reason.as_deref()),
        (
            OtaResult::Unsupported,
            header.update_id(),
            Some("QEMU keeps the flash read-only")
        )
    );
}

#[test]
fn telemetry_and_commands_go_on_during_a_download() {
    let mut board = online(100);
    let image = image(20_000);
    let (header, bytes) = update_file(&image, BOARD, NEW, &key());
    let mut ack = board.send(&header_frame(&header, &bytes));
    board
        .broker
        .command(r#"{"v":1,"id":6,"action":"identify","seconds":5}"#);
    ack = board.send(&chunk(&header, &image, ack.offset as usize));
    assert_eq!(ack.result, OtaResult::Accepted);
    assert!(board.node.identifying(board.now));
    let last = board.send_rest(&header, &image, ack);
    assert_eq!(last.result, OtaResult::Verified);
}

#[cfg(feature = "std")]
mod on_files {
    use super::*;
    use rackwatch_firmware::boot::BootControl;
    use rackwatch_firmware::host_update::{FileBoot, FileFlash, HOST_SLOT_LEN};

    #[test]
    fn the_file_bootloader_keeps_progress_trial_and_rollback_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let image = image(9_000);
        let (header, bytes) = update_file(&image, BOARD, NEW, &key());
        let identity = || Identity {
            board: BOARD,
            running: OLD,
            key: key().verifying_key(),
        };
        let config = OtaConfig {
            confirm_within_ms: 1_000,
        };
        {
            let boot = FileBoot::open(dir.path(), OLD).unwrap();
            assert_eq!((boot.running(), boot.state()), (Slot::A, BootState::Normal));
            let mut slot = FileFlash::open(&boot.inactive_slot(), HOST_SLOT_LEN).unwrap();
            let mut ota = Ota::start(identity(), boot, &mut slot, 0, config);
            ota.handle(&header_frame(&header, &bytes), &mut slot);
            let ack = ota.handle(&chunk(&header, &image, 0), &mut slot);
            assert_eq!(ack.offset, MAX_CHUNK as u32);
        }
        // The process restarts: the download resumes where the state file says.
        let boot = FileBoot::open(dir.path(), OLD).unwrap();
        let mut slot = FileFlash::open(&boot.inactive_slot(), HOST_SLOT_LEN).unwrap();
        let mut ota = Ota::start(identity(), boot, &mut slot, 0, config);
        let mut ack = ota.handle(&header_frame(&header, &bytes), &mut slot);
        assert_eq!(ack.offset, MAX_CHUNK as u32);
        while ack.result == OtaResult::Accepted {
            ack = ota.handle(&chunk(&header, &image, ack.offset as usize), &mut slot);
        }
        assert_eq!(ack.result, OtaResult::Verified);
        drop(ota);
        let mut written = vec![0u8; image.len()];
        FileFlash::open(&dir.path().join("slot-b.bin"), HOST_SLOT_LEN)
            .unwrap()
            .read(0, &mut written)
            .unwrap();
        assert_eq!(written, image);

        let boot = FileBoot::open(dir.path(), OLD).unwrap();
        assert_eq!((boot.running(), boot.state()), (Slot::B, BootState::Trial));
        assert_eq!(boot.record().running_version(), Some(NEW));
        // It never confirms: the next start rolls back.
        let boot = FileBoot::open(dir.path(), OLD).unwrap();
        assert_eq!((boot.running(), boot.state()), (Slot::A, BootState::RolledBack));
        assert_eq!(boot.last_result(), Some(OtaResult::RolledBack));
        assert_eq!(boot.record().running_version(), Some(OLD));
    }
}
