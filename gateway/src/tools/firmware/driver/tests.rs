#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use ed25519_dalek::SigningKey;
use rackwatch_firmware::config_store::RamFlash;
use rackwatch_firmware::update::{Identity, Updater};
use rackwatch_protocols::{NodeId, NodeState};

use super::*;
use crate::tools::firmware::rollout::{BatchSize, FleetNode, Selector};

const BOARD: &str = "w5500-evb-pico";
const OLD: FirmwareVersion = FirmwareVersion::new(1, 3, 0);
const NEW: FirmwareVersion = FirmwareVersion::new(1, 4, 0);

/// A node as the gateway sees it: the real update state machine over flash in memory, and what its
/// next birth will say.
struct SimNode {
    updater: Updater,
    slot: Box<RamFlash<{ 64 * 1024 }>>,
    /// Answers `unsupported` (the QEMU board).
    unsupported: bool,
    /// Its new image never confirms.
    broken: bool,
    /// Drops the answer to the n-th frame (1-based), like a lost connection.
    drop_answer: Option<usize>,
    frames: usize,
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

impl SimNode {
    fn new() -> Self {
        SimNode {
            updater: Updater::new(Identity {
                board: BOARD,
                running: OLD,
                key: key().verifying_key(),
            }),
            slot: Box::new(RamFlash::new()),
            unsupported: false,
            broken: false,
            drop_answer: None,
            frames: 0,
        }
    }
}

fn file(image_len: usize) -> UpdateFile {
    let image: Vec<u8> = (0..image_len).map(|i| (i * 13 % 256) as u8).collect();
    let bytes = crate::tools::firmware::sign(&key(), &image, BOARD, NEW, false).unwrap();
    UpdateFile {
        header: UpdateHeader::parse(&bytes).unwrap(),
        bytes,
    }
}

struct Fleet {
    driver: Driver,
    nodes: BTreeMap<String, SimNode>,
    now: u64,
    lines: Vec<String>,
    failures: Vec<(String, &'static str)>,
    finished: Option<Option<String>>,
}

impl Fleet {
    fn new(n: usize, canary: usize, batch: &str, max_failures: usize, file: UpdateFile) -> Self {
        let fleet: Vec<FleetNode> = (0..n)
            .map(|i| FleetNode {
                node: format!("n{i}"),
                row: "r01".into(),
                rack: format!("a{i:02}"),
            })
            .collect();
        let rollout = Rollout::plan(
            file.header.update_id(),
            NEW,
            &fleet,
            &Selector::parse("all").unwrap(),
            canary,
            BatchSize::parse(batch).unwrap(),
            max_failures,
        )
        .unwrap();
        Fleet {
            driver: Driver::new(rollout, file, "lab", Timing::default()),
            nodes: fleet.iter().map(|f| (f.node.clone(), SimNode::new())).collect(),
            now: 0,
            lines: Vec::new(),
            failures: Vec::new(),
            finished: None,
        }
    }

    /// Carries out the driver's outs, delivering frames to the nodes and their answers back.
    fn run(&mut self, mut outs: Vec<Out>) {
        while !outs.is_empty() {
            let mut next = Vec::new();
            for out in outs {
                match out {
                    Out::Frame { node, payload } => {
                        let sim = self.nodes.get_mut(&node).unwrap();
                        sim.frames += 1;
                        let answer = if sim.unsupported {
                            rackwatch_firmware::ota::unsupported(&payload, "read-only flash")
                        } else {
                            sim.updater.handle(&payload, &mut *sim.slot)
                        };
                        if sim.drop_answer == Some(sim.frames) {
                            continue;
                        }
                        let ack = OtaAck {
                            version: 1,
                            node: NodeId::new(&node).unwrap(),
                            update: answer.update,
                            offset: answer.offset,
                            result: answer.result,
                            reason: (!answer.reason.is_empty())
                                .then(|| heapless::String::try_from(answer.reason).unwrap()),
                        };
                        next.extend(self.driver.on_ack(&ack, 90, self.now));
                    }
                    Out::Command { node, payload } => {
                        assert!(String::from_utf8(payload).unwrap().contains("reboot"));
                        let sim = &self.nodes[&node];
                        let (firmware, update) = if sim.broken {
                            ("1.3.0", OtaResult::RolledBack)
                        } else {
                            ("1.4.0", OtaResult::Confirmed)
                        };
                        let mut birth = Status::last_will(NodeId::new(&node).unwrap(), 2);
                        birth.state = NodeState::Online;
                        birth.firmware = Some(heapless::String::try_from(firmware).unwrap());
                        birth.update = Some(update);
                        next.extend(self.driver.on_status(&birth, self.now));
                    }
                    Out::Line(line) => self.lines.push(line),
                    Out::Failure { node, reason } => self.failures.push((node, reason)),
                    Out::Save => {}
                    Out::Finished { paused } => self.finished = Some(paused),
                }
            }
            self.now += 10;
            outs = next;
        }
    }
}

#[test]
fn a_canary_and_batches_update_every_node_stop_and_wait() {
    let file = file(10_000);
    let mut fleet = Fleet::new(5, 1, "2", 0, file);
    let outs = fleet.driver.start(0);
    fleet.run(outs);
    assert_eq!(fleet.finished, Some(None), "{:#?}", fleet.lines);
    assert!(
        fleet
            .driver
            .rollout
            .nodes
            .values()
            .all(|p| *p == NodeProgress::Done)
    );
    let chunks = 10_000usize.div_ceil(MAX_CHUNK) as u64;
    for (node, stats) in &fleet.driver.stats {
        // The header frame, then each chunk once, each a PUBLISH on `rackwatch/v1/lab/{node}/ota`.
        let topic = 21 + node.len() as u64;
        let expected =
            (HEADER_LEN as u64 + 9 + 1 + 2 + 2 + 2 + topic) + chunks * (9 + 1 + 2 + 2 + 2 + topic) + 10_000;
        assert_eq!(stats.bytes_out, expected, "{node}");
        assert_eq!(stats.bytes_in, 90 * (1 + chunks));
    }
    let canary_done = fleet
        .lines
        .iter()
        .position(|l| l.starts_with("n0: runs"))
        .unwrap();
    let batch_start = fleet
        .lines
        .iter()
        .position(|l| l.starts_with("n1: sending"))
        .unwrap();
    assert!(
        canary_done < batch_start,
        "the canary confirms before batch 1 starts"
    );
}

#[test]
fn a_tampered_image_is_refused_and_pauses_the_rollout_naming_the_node() {
    let mut file = file(5_000);
    let last = file.bytes.len() - 1;
    file.bytes[last] ^= 1;
    let mut fleet = Fleet::new(3, 1, "2", 0, file);
    let outs = fleet.driver.start(0);
    fleet.run(outs);
    let Some(Some(reason)) = &fleet.finished else {
        panic!("not paused: {:?}", fleet.finished)
    };
    assert!(reason.contains("n0") && reason.contains("hash"), "{reason}");
    assert_eq!(fleet.failures, [("n0".to_owned(), "hash_mismatch")]);
    assert_eq!(
        fleet.nodes["n1"].frames, 0,
        "the batch after the canary never started"
    );
}

#[test]
fn a_lost_answer_is_asked_again_and_the_transfer_goes_on_where_the_node_stands() {
    let mut fleet = Fleet::new(1, 0, "1", 0, file(9_000));
    fleet.nodes.get_mut("n0").unwrap().drop_answer = Some(3);
    let outs = fleet.driver.start(0);
    fleet.run(outs);
    assert_eq!(fleet.finished, None, "waiting for the lost answer");
    let outs = fleet.driver.tick(fleet.now + 5_000);
    fleet.run(outs);
    assert_eq!(fleet.finished, Some(None), "{:#?}", fleet.lines);
    assert!(fleet.failures.is_empty());
}

#[test]
fn a_node_that_never_answers_fails_after_its_attempts() {
    let mut fleet = Fleet::new(1, 0, "1", 0, file(3_000));
    fleet.nodes.get_mut("n0").unwrap().drop_answer = Some(1);
    let outs = fleet.driver.start(0);
    fleet.run(outs);
    let mut now = 0;
    for frame in 2..=4 {
        now += 5_000;
        fleet.nodes.get_mut("n0").unwrap().drop_answer = Some(frame);
        let outs = fleet.driver.tick(now);
        fleet.run(outs);
    }
    assert_eq!(fleet.finished, None);
    let outs = fleet.driver.tick(now + 5_000);
    fleet.run(outs);
    assert_eq!(fleet.failures, [("n0".to_owned(), "timeout")]);
    assert!(matches!(fleet.finished, Some(Some(_))));
}

#[test]
fn a_rollback_is_a_failure_and_an_unsupported_board_is_not() {
    let mut fleet = Fleet::new(3, 0, "3", 1, file(3_000));
    fleet.nodes.get_mut("n1").unwrap().unsupported = true;
    fleet.nodes.get_mut("n2").unwrap().broken = true;
    let outs = fleet.driver.start(0);
    fleet.run(outs);
    assert_eq!(
        fleet.finished,
        Some(None),
        "one failure is within --max-failures 1"
    );
    assert_eq!(fleet.failures, [("n2".to_owned(), "rolled_back")]);
    assert!(matches!(
        fleet.driver.rollout.nodes["n1"],
        NodeProgress::NotUpdatable { .. }
    ));
    assert!(
        fleet
            .lines
            .iter()
            .any(|l| l == "n1: not updatable: read-only flash"),
        "{:#?}",
        fleet.lines
    );
}

#[test]
fn a_node_that_already_runs_the_version_is_sent_nothing() {
    let mut fleet = Fleet::new(2, 1, "1", 0, file(3_000));
    let mut birth = Status::last_will(NodeId::new("n0").unwrap(), 1);
    birth.state = NodeState::Online;
    birth.firmware = Some(heapless::String::try_from("1.4.0").unwrap());
    let mut outs = fleet.driver.already_running(&birth);
    outs.extend(fleet.driver.start(0));
    fleet.run(outs);
    assert_eq!(fleet.finished, Some(None), "{:#?}", fleet.lines);
    assert_eq!(fleet.nodes["n0"].frames, 0);
    assert!(fleet.nodes["n1"].frames > 0);
    assert!(fleet.lines.iter().any(|l| l == "n0: runs 1.4.0 already"));
}

#[test]
fn refusal_reasons_map_to_a_fixed_set_of_labels() {
    assert_eq!(
        failure_reason("signature does not verify with this node's update key"),
        "signature"
    );
    assert_eq!(failure_reason("image is for another board"), "wrong_board");
    assert_eq!(
        failure_reason("image hash does not match the signed header"),
        "hash_mismatch"
    );
    assert_eq!(
        failure_reason("another update is in progress"),
        "update_in_progress"
    );
    assert_eq!(failure_reason("no such update under way"), "unknown_update");
    assert_eq!(failure_reason("something new"), "other");
}
