//! A serial-attached node on a real pseudo-terminal feeding the gateway's `[[serial]]` source: the
//! node (the firmware's `serial_uplink` on the host) keeps every round until the gateway answers
//! `Stored`, which the gateway sends only after its spool commit. The gateway is SIGKILLed twice
//! mid-stream, and every reading is in the database once; a corrupted frame is counted and
//! dead-lettered. A fan boost of the automated cooling reaches the node as a `Command` frame, and its
//! `Result` frame comes back as the command's acknowledgement.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use rackwatch_firmware::serial_uplink::{Received, SerialUplink};
use rackwatch_protocols::frame::{self, FrameKind, MAX_ENCODED_LEN};
use rackwatch_protocols::{
    Ack, AckResult, ChannelName, Command, CommandKind, FanTarget, NodeId, Quantity, Reading, Telemetry, Unit,
};
use rackwatch_tests::fleet::Published;
use rackwatch_tests::room::{INLET_HOT_RULE, within};
use rackwatch_tests::{Gateway, GatewaySettings, InfluxDb};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const DATABASE: &str = "rackwatch";
const SITE: &str = "serial";
const NODE: &str = "s-node";
const ROUNDS: u32 = 120;
const CHANNELS: usize = 4;

/// A pseudo-terminal in raw mode: the node's end (master) and the path the gateway opens. The
/// slave stays open here, so the line survives the gateway's deaths.
struct Line {
    master: OwnedFd,
    slave_path: String,
    _slave: OwnedFd,
}

fn pty() -> Line {
    let pty = openpty(None, None).unwrap();
    let mut termios = tcgetattr(&pty.slave).unwrap();
    cfmakeraw(&mut termios);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &termios).unwrap();
    let slave_path = nix::unistd::ttyname(&pty.slave).unwrap().display().to_string();
    Line {
        master: pty.master,
        slave_path,
        _slave: pty.slave,
    }
}

fn value_of(seq: u32, channel: usize) -> f64 {
    20.0 + f64::from((seq * 3 + channel as u32 * 7) % 320) / 16.0
}

/// What the node sends and how it answers commands.
struct NodeRun {
    rounds: u32,
    /// Channel names, and the value of a channel in a round.
    channels: Vec<&'static str>,
    value: fn(u32, usize) -> f64,
    /// Keep running this long after the last round was stored (to answer commands).
    linger: Duration,
}

/// What the node saw.
struct NodeReport {
    published: Vec<Published>,
    unacknowledged: usize,
    commands: Vec<Command>,
}

/// The node: a round every 50 ms through the serial uplink, until every round is stored (and the
/// linger passed) or a minute passed. A command is answered `ok` with a `Result` frame.
fn run_node(master: File, run: NodeRun) -> NodeReport {
    let mut writer = master.try_clone().unwrap();
    let (received_tx, received_rx) = mpsc::channel::<Vec<u8>>();
    let mut reader = master;
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || received_tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let node = NodeId::new(NODE).unwrap();
    let mut uplink = SerialUplink::<256>::new(1000);
    let started = Instant::now();
    let boot = 0x5E41;
    let mut report = NodeReport {
        published: Vec::new(),
        unacknowledged: 0,
        commands: Vec::new(),
    };
    let mut next_round = Instant::now();
    let mut all_stored_at: Option<Instant> = None;
    let mut seq = 0u32;
    let (mut body, mut out) = ([0u8; 2048], [0u8; MAX_ENCODED_LEN + 1]);
    while started.elapsed() < Duration::from_secs(60) {
        let now_ms = started.elapsed().as_millis() as u64;
        if seq < run.rounds && Instant::now() >= next_round {
            next_round += Duration::from_millis(50);
            let timestamp_ms = rackwatch_tests::now_ms();
            let mut readings = heapless::Vec::new();
            for (channel, name) in run.channels.iter().enumerate() {
                let value = (run.value)(seq, channel);
                readings
                    .push(Reading::ok(
                        ChannelName::new(name).unwrap(),
                        Quantity::Temperature,
                        value,
                        Unit::Celsius,
                    ))
                    .unwrap();
                report.published.push(Published {
                    node: NODE.to_owned(),
                    channel: (*name).to_owned(),
                    seq,
                    timestamp_ms: Some(timestamp_ms),
                    value,
                });
            }
            uplink.push(Telemetry {
                version: 1,
                node: node.clone(),
                boot,
                seq,
                timestamp_ms: Some(timestamp_ms as u64),
                uptime_ms: now_ms,
                dropped: 0,
                readings,
            });
            seq += 1;
        }
        let mut answers = Vec::new();
        while let Ok(bytes) = received_rx.try_recv() {
            uplink.feed(&bytes, |received| {
                if let Received::Command(tag, command) = received {
                    answers.push((tag, command.id));
                    report.commands.push(command);
                }
            });
        }
        for (tag, id) in answers {
            let mut json = [0u8; 256];
            let n = Ack::new(id, node.clone(), AckResult::Ok)
                .encode(&mut json)
                .unwrap();
            let m = frame::encode(FrameKind::Result, tag, &json[..n], &mut out[1..]).unwrap();
            out[0] = 0;
            writer.write_all(&out[..=m]).unwrap();
        }
        while let Some(frame) = uplink.poll_frame(now_ms, &mut body, &mut out) {
            writer.write_all(frame).unwrap();
        }
        if seq == run.rounds && uplink.pending() == 0 {
            let at = *all_stored_at.get_or_insert_with(Instant::now);
            if at.elapsed() >= run.linger {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    report.unacknowledged = uplink.pending();
    report
}

/// A gateway writing to `db`, reading the node on `line`, with `extra` configuration.
async fn gateway(db: &InfluxDb, line: &Line, extra: &str) -> Gateway {
    db.execute(&format!("CREATE DATABASE \"{DATABASE}\"")).await;
    let mut settings = GatewaySettings::new(SITE);
    settings.influx_url = Some(db.url());
    settings.influx_target = db.gateway_writer(DATABASE, "gateway").await;
    settings.extra = format!("[[serial]]\nport = \"{}\"\n{extra}", line.slave_path);
    Gateway::start(GATEWAY, &settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_node_survives_gateway_kills_and_every_reading_is_stored_once() {
    let db = InfluxDb::start();
    let line = pty();
    let mut gateway = gateway(&db, &line, "").await;
    let master = File::from(line.master.try_clone().unwrap());
    let run = NodeRun {
        rounds: ROUNDS,
        channels: vec!["t0", "t1", "t2", "t3"],
        value: value_of,
        linger: Duration::ZERO,
    };
    let node = std::thread::spawn(move || run_node(master, run));
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        gateway.kill();
        tokio::time::sleep(Duration::from_millis(800)).await;
        gateway.restart();
    }
    let NodeReport {
        published,
        unacknowledged,
        ..
    } = tokio::task::spawn_blocking(move || node.join().unwrap())
        .await
        .unwrap();
    assert_eq!(published.len(), ROUNDS as usize * CHANNELS);
    assert_eq!(
        unacknowledged,
        0,
        "the gateway stored every round:\n{}",
        gateway.log()
    );
    assert_eq!(
        gateway.log().matches("serial port open").count(),
        3,
        "the gateway opened the line at each of its three starts"
    );

    let comparison = db
        .settle_and_compare(DATABASE, SITE, &published, Duration::from_secs(30))
        .await;
    assert!(comparison.is_exact(), "{comparison:?}\n{}", gateway.log());

    // A frame the line corrupted: counted, dead-lettered with its bytes, nothing else changes.
    let mut body = [0u8; 64];
    let n = rackwatch_protocols::Status::last_will(NodeId::new(NODE).unwrap(), 1)
        .encode(&mut body)
        .unwrap();
    let mut bad = [0u8; 256];
    let m = frame::encode(FrameKind::Status, 0, &body[..n], &mut bad).unwrap();
    bad[5] ^= 0x20;
    File::from(line.master.try_clone().unwrap())
        .write_all(&bad[..m])
        .unwrap();
    let counted = within(Duration::from_secs(10), || async {
        gateway.metric("rackwatch_messages_rejected_total{reason=\"bad_frame\"}") == 1.0
    })
    .await;
    assert!(counted.is_some(), "{}", gateway.metrics());
    let letters = within(Duration::from_secs(10), || async {
        gateway.dead_letters().iter().any(|l| l["reason"] == "bad_frame")
    })
    .await;
    assert!(letters.is_some(), "{:?}", gateway.dead_letters());
    let letter = gateway
        .dead_letters()
        .into_iter()
        .find(|l| l["reason"] == "bad_frame")
        .unwrap();
    assert_eq!(letter["topic"], line.slave_path.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_boost_reaches_a_serial_node_and_its_answer_comes_back() {
    let db = InfluxDb::start();
    let line = pty();
    let cooling = format!(
        "[nodes.{NODE}]\nroom = \"hall-a\"\nrow = \"r01\"\nrack = \"a01\"\n{INLET_HOT_RULE}\
         [alerts.cooling]\nrules = [\"inlet_hot\"]\nfans = [0]\nboost_duty_percent = 100.0\nack_timeout = \"3s\"\n"
    );
    let gateway = gateway(&db, &line, &cooling).await;
    let master = File::from(line.master.try_clone().unwrap());
    // A hot inlet: 36 °C, above the rule's 32 °C.
    let run = NodeRun {
        rounds: 60,
        channels: vec!["inlet_top", "outlet"],
        value: |_, channel| if channel == 0 { 36.0 } else { 45.0 },
        linger: Duration::from_secs(3),
    };
    let node = std::thread::spawn(move || run_node(master, run));
    let report = tokio::task::spawn_blocking(move || node.join().unwrap())
        .await
        .unwrap();
    assert_eq!(report.unacknowledged, 0);
    let boosts: Vec<&Command> = report
        .commands
        .iter()
        .filter(|c| {
            matches!(c.kind, CommandKind::SetFan { fan: 0, target: FanTarget::DutyPercent(duty) } if duty == 100.0)
        })
        .collect();
    assert_eq!(
        boosts.len(),
        1,
        "one boost, acknowledged at once: {:?}\n{}",
        report.commands,
        gateway.log()
    );
    let acked = within(Duration::from_secs(5), || async {
        gateway.metric("rackwatch_alert_fan_commands_total{reason=\"acked\"}") >= 1.0
    })
    .await;
    assert!(
        acked.is_some(),
        "the node's Result frame acknowledged the command:\n{}",
        gateway.metrics()
    );
}
