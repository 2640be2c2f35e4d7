//! The node core against a fake broker and a fake clock: connect, birth, backlog after an outage,
//! ring overflow, resends, commands and sensor faults, all without a network.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use rackwatch_firmware::mqtt::{ConnectReturn, Packet, Publish, QoS};
use rackwatch_firmware::{ChannelSetup, LinkError, LinkState, Node, NodeConfig, Transport};
use rackwatch_hardware::{Channel, FanControl, Fault, Measurement, Sample, SensorSet};
use rackwatch_protocols::{
    Ack, AckResult, ChannelName, FanTarget, NodeId, NodeState, ReadingStatus, SiteId, Status, Telemetry,
};

/// A broker in memory: answers CONNECT, SUBSCRIBE, PINGREQ and (when `auto_ack`) PUBLISH at once.
#[derive(Default)]
struct FakeBroker {
    up: bool,
    link: Option<LinkState>,
    auto_ack: bool,
    to_node: Vec<u8>,
    from_node: Vec<u8>,
    opens: usize,
    /// Every PUBLISH the node sent: topic, payload, DUP.
    published: Vec<(String, Vec<u8>, bool)>,
    unacked: Vec<u16>,
    connects: Vec<Vec<u8>>,
}

impl FakeBroker {
    fn up() -> Self {
        FakeBroker {
            up: true,
            auto_ack: true,
            ..FakeBroker::default()
        }
    }

    fn go_down(&mut self) {
        self.up = false;
        self.link = Some(LinkState::Closed);
        self.to_node.clear();
        self.from_node.clear();
        self.unacked.clear();
    }

    fn reply(&mut self, packet: Packet<'_>) {
        let mut buf = [0u8; 64];
        let n = packet.encode(&mut buf).unwrap();
        self.to_node.extend_from_slice(&buf[..n]);
    }

    fn process(&mut self) {
        while let Some((packet, used)) = Packet::decode(&self.from_node).unwrap() {
            let mut reply = None;
            match packet {
                Packet::Connect(c) => {
                    let mut buf = [0u8; 512];
                    let n = Packet::Connect(c).encode(&mut buf).unwrap();
                    self.connects.push(buf[..n].to_vec());
                    reply = Some(Packet::ConnAck {
                        session_present: false,
                        code: ConnectReturn::Accepted,
                    });
                }
                Packet::Publish(p) => {
                    self.published
                        .push((p.topic.to_owned(), p.payload.to_vec(), p.dup));
                    if let Some(packet_id) = p.packet_id {
                        if self.auto_ack {
                            reply = Some(Packet::PubAck { packet_id });
                        } else {
                            self.unacked.push(packet_id);
                        }
                    }
                }
                Packet::Subscribe { packet_id, .. } => {
                    reply = Some(Packet::SubAck {
                        packet_id,
                        granted: Some(QoS::AtLeastOnce),
                    })
                }
                Packet::PingReq => reply = Some(Packet::PingResp),
                _ => {}
            }
            self.from_node.drain(..used);
            if let Some(reply) = reply {
                self.reply(reply);
            }
        }
    }

    /// Sends a command to the node on its `cmd` topic.
    fn command(&mut self, json: &str) {
        let mut buf = [0u8; 512];
        let n = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "rackwatch/v1/lab/n1/cmd",
            packet_id: Some(900),
            payload: json.as_bytes(),
        })
        .encode(&mut buf)
        .unwrap();
        self.to_node.extend_from_slice(&buf[..n]);
    }

    fn telemetry(&self) -> Vec<(Telemetry, bool)> {
        self.published
            .iter()
            .filter(|(topic, ..)| topic.ends_with("/telemetry"))
            .map(|(_, payload, dup)| (Telemetry::decode(payload).unwrap(), *dup))
            .collect()
    }

    fn acks(&self) -> Vec<Ack> {
        self.published
            .iter()
            .filter(|(topic, ..)| topic.ends_with("/cmd/ack"))
            .map(|(_, payload, _)| Ack::decode(payload).unwrap())
            .collect()
    }
}

impl Transport for FakeBroker {
    fn open(&mut self) -> Result<(), LinkError> {
        self.opens += 1;
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
        let n = buf.len().min(self.to_node.len());
        buf[..n].copy_from_slice(&self.to_node[..n]);
        self.to_node.drain(..n);
        Ok(n)
    }
    fn send(&mut self, bytes: &[u8]) -> Result<usize, LinkError> {
        if self.state() != LinkState::Open {
            return Err(LinkError);
        }
        // Take at most 100 bytes at a time, like a small TCP window.
        let n = bytes.len().min(100);
        self.from_node.extend_from_slice(&bytes[..n]);
        self.process();
        Ok(n)
    }
    fn close(&mut self) {
        self.link = Some(LinkState::Closed);
    }
}

/// Device 0: a thermometer at `temperature`; device 1: dead; device 2: a fan controller.
struct FakeRack {
    temperature: f32,
    duty: f32,
}

impl SensorSet for FakeRack {
    fn sample(&mut self, device: usize, measurement: Measurement) -> Result<Sample, Fault> {
        match (device, measurement) {
            (0, Measurement::Temperature) => Ok(measurement.sample(self.temperature)),
            (2, Measurement::FanDutyCommanded { fan: 0 }) => Ok(measurement.sample(self.duty)),
            (1, _) => Err(Fault::Crc),
            _ => Err(Fault::Unsupported),
        }
    }
}

impl FanControl for FakeRack {
    fn set_fan(&mut self, fan: u8, target: FanTarget) -> Result<(), Fault> {
        match (fan, target) {
            (0, FanTarget::DutyPercent(d)) if (0.0..=100.0).contains(&d) => {
                self.duty = d;
                Ok(())
            }
            (0, FanTarget::Rpm(_)) => Err(Fault::Unsupported),
            _ => Err(Fault::InvalidInput),
        }
    }
}

const INTERVAL: u64 = 1_000;

fn channels() -> Vec<ChannelSetup> {
    let ch =
        |name: &str, device, m| ChannelSetup::new(Channel::new(ChannelName::new(name).unwrap(), device, m));
    vec![
        ch("inlet", 0, Measurement::Temperature),
        ch("outlet", 1, Measurement::Temperature),
        ch("fan0", 2, Measurement::FanDutyCommanded { fan: 0 }),
    ]
}

fn node<const RING: usize>() -> Node<RING> {
    let mut config = NodeConfig::new(SiteId::new("lab").unwrap(), NodeId::new("n1").unwrap(), 77);
    config.interval_ms = u32::try_from(INTERVAL).unwrap();
    Node::new(config, &channels()).unwrap()
}

/// Polls every 10 ms of fake time from `from` to `to`.
fn run<const RING: usize>(
    node: &mut Node<RING>,
    rack: &mut FakeRack,
    broker: &mut FakeBroker,
    from: u64,
    to: u64,
) {
    let mut now = from;
    while now < to {
        let poll = node.poll(now, rack, broker);
        assert!(!poll.stopped);
        now += 10;
    }
}

fn rack() -> FakeRack {
    FakeRack {
        temperature: 22.5,
        duty: 40.0,
    }
}

fn seqs(telemetry: &[(Telemetry, bool)]) -> Vec<u32> {
    telemetry.iter().map(|(t, _)| t.seq).collect()
}

#[test]
fn connects_with_a_last_will_and_publishes_birth_then_telemetry() {
    let (mut node, mut rack, mut broker) = (node::<16>(), rack(), FakeBroker::up());
    run(&mut node, &mut rack, &mut broker, 0, 2_500);
    assert!(node.is_online());
    let Packet::Connect(connect) = Packet::decode(&broker.connects[0]).unwrap().unwrap().0 else {
        panic!("not a CONNECT")
    };
    let will = connect.will.unwrap();
    assert_eq!(will.topic, "rackwatch/v1/lab/n1/status");
    assert!(will.retain);
    assert_eq!(Status::decode(will.payload).unwrap().state, NodeState::Offline);
    let (topic, payload, _) = &broker.published[0];
    assert_eq!(topic, "rackwatch/v1/lab/n1/status");
    let birth = Status::decode(payload).unwrap();
    assert_eq!(
        (birth.state, birth.boot, birth.interval_ms),
        (NodeState::Online, 77, Some(1000))
    );
    let telemetry = broker.telemetry();
    assert_eq!(seqs(&telemetry), [0, 1, 2]);
    let first = &telemetry[0].0;
    assert_eq!(first.readings[0].value, Some(22.5));
    assert_eq!(first.uptime_ms, 0);
    assert_eq!(telemetry[2].0.uptime_ms, 2_000);
}

#[test]
fn a_failed_sensor_is_a_fault_reading_and_the_others_still_read() {
    let (mut node, mut rack, mut broker) = (node::<16>(), rack(), FakeBroker::up());
    run(&mut node, &mut rack, &mut broker, 0, 100);
    let telemetry = broker.telemetry();
    let readings = &telemetry[0].0.readings;
    assert_eq!(
        (readings[0].status, readings[0].value),
        (ReadingStatus::Ok, Some(22.5))
    );
    assert_eq!(
        (readings[1].status, readings[1].value),
        (ReadingStatus::Fault, None)
    );
    assert_eq!(
        (readings[2].status, readings[2].value),
        (ReadingStatus::Ok, Some(40.0))
    );
}

#[test]
fn backlog_after_an_outage_arrives_oldest_first_with_original_seq_and_uptime() {
    let (mut node, mut rack, mut broker) = (node::<64>(), rack(), FakeBroker::up());
    // Down after the PUBACK of seq 5 arrived (a lost PUBACK means a resend: the next test).
    run(&mut node, &mut rack, &mut broker, 0, 5_050);
    broker.go_down();
    run(&mut node, &mut rack, &mut broker, 5_050, 35_000);
    assert!(!node.is_online());
    assert_eq!(node.backlog(), 29, "sampled at 6 s to 34 s");
    broker.up = true;
    run(&mut node, &mut rack, &mut broker, 35_000, 50_000);
    assert!(node.is_online());
    let telemetry = broker.telemetry();
    assert_eq!(
        seqs(&telemetry),
        (0..=49).collect::<Vec<u32>>(),
        "contiguous, none twice"
    );
    for (t, _) in &telemetry {
        assert_eq!(
            t.uptime_ms,
            u64::from(t.seq) * INTERVAL,
            "sampled at its own time"
        );
        assert_eq!(t.dropped, 0);
    }
    assert_eq!(node.backlog(), 0);
}

#[test]
fn a_full_ring_drops_the_oldest_and_reports_how_many() {
    let (mut node, mut rack, mut broker) = (node::<4>(), rack(), FakeBroker::up());
    broker.up = false;
    run(&mut node, &mut rack, &mut broker, 0, 9_995);
    assert_eq!(node.backlog(), 4);
    broker.up = true;
    run(&mut node, &mut rack, &mut broker, 9_995, 20_000);
    // The back-off kept it offline until 15.5 s or so: it sampled 16 rounds and kept the last 4.
    let telemetry = broker.telemetry();
    let first = &telemetry[0].0;
    assert!(first.seq >= 10, "first seq {}", first.seq);
    assert_eq!(
        first.dropped, first.seq,
        "every earlier round was dropped and counted"
    );
    let expected: Vec<u32> = (first.seq..first.seq + 4).collect();
    assert_eq!(seqs(&telemetry)[..4], expected[..]);
    assert!(telemetry[1..].iter().all(|(t, _)| t.dropped == 0));
}

#[test]
fn unacknowledged_messages_are_sent_again_after_a_reconnect_with_dup_set() {
    let (mut node, mut rack, mut broker) = (node::<16>(), rack(), FakeBroker::up());
    broker.auto_ack = false;
    run(&mut node, &mut rack, &mut broker, 0, 2_500);
    assert_eq!(seqs(&broker.telemetry()), [0, 1, 2]);
    assert_eq!(node.in_flight(), 3);
    broker.go_down();
    run(&mut node, &mut rack, &mut broker, 2_500, 4_000);
    broker.up = true;
    broker.auto_ack = true;
    run(&mut node, &mut rack, &mut broker, 4_000, 8_000);
    let telemetry = broker.telemetry();
    let resent: Vec<(u32, bool)> = telemetry[3..6].iter().map(|(t, dup)| (t.seq, *dup)).collect();
    assert_eq!(resent, [(0, true), (1, true), (2, true)]);
    assert_eq!(seqs(&telemetry)[6..], (3..=7).collect::<Vec<u32>>());
    assert_eq!(node.in_flight(), 0);
}

#[test]
fn the_in_flight_queue_is_bounded() {
    let (mut node, mut rack, mut broker) = (node::<64>(), rack(), FakeBroker::up());
    broker.auto_ack = false;
    run(&mut node, &mut rack, &mut broker, 0, 20_000);
    assert_eq!(node.in_flight(), rackwatch_firmware::MAX_IN_FLIGHT);
    assert_eq!(broker.telemetry().len(), rackwatch_firmware::MAX_IN_FLIGHT);
    assert_eq!(node.backlog(), 20 - rackwatch_firmware::MAX_IN_FLIGHT);
}

#[test]
fn reconnect_attempts_back_off_exponentially() {
    let (mut node, mut rack, mut broker) = (node::<16>(), rack(), FakeBroker::up());
    broker.up = false;
    run(&mut node, &mut rack, &mut broker, 0, 20_000);
    // 0, 0.5, 1.5, 3.5, 7.5, 15.5 s (plus at most a quarter of jitter): six attempts in 20 s.
    assert!((5..=6).contains(&broker.opens), "{} attempts", broker.opens);
    broker.up = true;
    run(&mut node, &mut rack, &mut broker, 20_000, 30_000);
    assert!(node.is_online());
}

#[test]
fn set_fan_is_acked_and_the_next_telemetry_shows_the_new_duty() {
    let (mut node, mut rack, mut broker) = (node::<16>(), rack(), FakeBroker::up());
    run(&mut node, &mut rack, &mut broker, 0, 1_500);
    broker.command(r#"{"v":1,"id":18,"action":"set_fan","fan":0,"duty_pct":80.0}"#);
    run(&mut node, &mut rack, &mut broker, 1_500, 1_600);
    assert_eq!(rack.duty, 80.0);
    let acks = broker.acks();
    assert_eq!((acks[0].id, acks[0].result), (18, AckResult::Ok));
    // What follows the ack on the wire is a telemetry sampled after the command.
    let ack_at = broker
        .published
        .iter()
        .position(|(t, ..)| t.ends_with("/cmd/ack"))
        .unwrap();
    let (_, payload, _) = &broker.published[ack_at + 1];
    let next = Telemetry::decode(payload).unwrap();
    assert_eq!(next.readings[2].value, Some(80.0));
    assert!(
        next.uptime_ms < 2_000,
        "sampled at once, not at the next interval"
    );
}

#[test]
fn commands_that_cannot_be_carried_out_are_acked_with_the_reason() {
    let (mut node, mut rack, mut broker) = (node::<16>(), rack(), FakeBroker::up());
    run(&mut node, &mut rack, &mut broker, 0, 500);
    broker.command(r#"{"v":1,"id":1,"action":"set_fan","fan":5,"duty_pct":10}"#);
    broker.command(r#"{"v":1,"id":2,"action":"set_fan","fan":0,"rpm":9000}"#);
    broker.command(r#"{"v":1,"id":3,"action":"identify","seconds":60}"#);
    broker.command(r#"{"v":1,"action":"nonsense"}"#);
    run(&mut node, &mut rack, &mut broker, 500, 700);
    let results: Vec<(u32, AckResult)> = broker.acks().iter().map(|a| (a.id, a.result)).collect();
    assert_eq!(
        results,
        [
            (1, AckResult::Rejected),
            (2, AckResult::Unsupported),
            (3, AckResult::Ok)
        ]
    );
    assert!(node.identifying(30_000));
    assert!(!node.identifying(61_000));
}

#[test]
fn set_interval_changes_the_cadence() {
    let (mut node, mut rack, mut broker) = (node::<16>(), rack(), FakeBroker::up());
    run(&mut node, &mut rack, &mut broker, 0, 500);
    broker.command(r#"{"v":1,"id":5,"action":"set_interval","interval_ms":250}"#);
    run(&mut node, &mut rack, &mut broker, 500, 2_005);
    assert_eq!(node.interval_ms(), 250);
    let uptimes: Vec<u64> = broker.telemetry().iter().map(|(t, _)| t.uptime_ms).collect();
    assert_eq!(uptimes, [0, 750, 1000, 1250, 1500, 1750, 2000]);
}

#[test]
fn reboot_is_requested_once_its_ack_is_delivered() {
    let (mut node, mut rack, mut broker) = (node::<16>(), rack(), FakeBroker::up());
    run(&mut node, &mut rack, &mut broker, 0, 500);
    broker.command(r#"{"v":1,"id":21,"action":"reboot"}"#);
    let mut rebooted_at = None;
    for now in (500..2_000).step_by(10) {
        if node.poll(now, &mut rack, &mut broker).reboot {
            rebooted_at = Some(now);
            break;
        }
    }
    assert!(rebooted_at.is_some());
    assert_eq!(broker.acks()[0].result, AckResult::Ok);
}

#[test]
fn shut_down_publishes_offline_and_disconnects() {
    let (mut node, mut rack, mut broker) = (node::<16>(), rack(), FakeBroker::up());
    run(&mut node, &mut rack, &mut broker, 0, 500);
    node.shut_down();
    let stopped = (500..1_000)
        .step_by(10)
        .any(|now| node.poll(now, &mut rack, &mut broker).stopped);
    assert!(stopped);
    let (topic, payload, _) = broker.published.last().unwrap();
    assert!(topic.ends_with("/status"));
    assert_eq!(Status::decode(payload).unwrap().state, NodeState::Offline);
    assert_eq!(broker.state(), LinkState::Closed);
}
