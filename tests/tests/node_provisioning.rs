//! `rackwatch node provision`, run as the real CLI process, against the release firmware in QEMU with
//! UART0 on a pseudo-terminal: it writes a node id and location, reads them back, and the node then
//! publishes under its new id, with its new calibration, to a real Mosquitto; a frame damaged on the
//! line in either direction is dropped and the request sent again; a refused configuration leaves the
//! previous one in force. And against a pseudo-terminal where nothing answers,
//! it fails with a clear message within its timeout. A provisioned node keeps its configuration in
//! its flash (a host file on QEMU): it comes back under its provisioned id after a `reboot` command
//! and after QEMU is killed and started again, and boots on its defaults, saying why, when both
//! slots of the store are corrupt.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::process::Command;
use std::time::{Duration, Instant};

use rackwatch_protocols::frame::{FrameDecoder, FrameKind, MAX_ENCODED_LEN};
use rackwatch_protocols::topic::{self, NodeTopic};
use rackwatch_protocols::{CommandKind, ConfigOrigin, NodeId, NodeState, SiteId, Status, Telemetry};
use rackwatch_tests::qemu::{DEFAULT_MAC, Qemu, build_node_image};
use rackwatch_tests::{Mosquitto, MosquittoConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn rackwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rackwatch-e2e"))
}

/// A serial line between the CLI and the node that flips one bit in the first frame of `kind` passing
/// in each direction: a pseudo-terminal pair whose master side is relayed to and from QEMU's.
struct CorruptingLine {
    /// The path the CLI opens.
    path: std::path::PathBuf,
    _slave: std::os::fd::OwnedFd,
}

impl CorruptingLine {
    fn new(node_pty: &std::path::Path, to_node: FrameKind, to_host: FrameKind) -> Self {
        let pair = nix::pty::openpty(None, None).unwrap();
        let path = std::fs::read_link(format!("/proc/self/fd/{}", pair.slave.as_raw_fd())).unwrap();
        let node = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(node_pty)
            .unwrap();
        for fd in [pair.slave.as_fd(), pair.master.as_fd(), node.as_fd()] {
            let mut termios = nix::sys::termios::tcgetattr(fd).unwrap();
            nix::sys::termios::cfmakeraw(&mut termios);
            nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &termios).unwrap();
        }
        let host = std::fs::File::from(pair.master);
        relay(host.try_clone().unwrap(), node.try_clone().unwrap(), to_node);
        relay(node, host, to_host);
        CorruptingLine {
            path,
            _slave: pair.slave,
        }
    }
}

/// Copies `from` to `to` segment by segment (frames end with a 0 byte), flipping a bit in the middle
/// of the first good frame of `kind`.
fn relay(mut from: std::fs::File, mut to: std::fs::File, kind: FrameKind) {
    std::thread::spawn(move || {
        let mut corrupted = false;
        let mut segment = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            for &byte in &buf[..n] {
                segment.push(byte);
                if byte != 0 {
                    continue;
                }
                let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
                if !corrupted
                    && let (_, Some(Ok(frame))) = decoder.feed(&segment)
                    && frame.kind == kind
                {
                    corrupted = true;
                    let middle = segment.len() / 2;
                    segment[middle] ^= 0x10;
                    if segment[middle] == 0 {
                        segment[middle] = 0x55;
                    }
                }
                if to.write_all(&segment).is_err() {
                    return;
                }
                segment.clear();
            }
        }
    });
}

fn stdout_and_stderr(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioned_node_publishes_under_its_new_id() {
    let broker = Mosquitto::start();
    let image = build_node_image();
    let (qemu, pty) = Qemu::start_with_pty(
        &image,
        &format!("broker=10.0.2.2:{} interval_ms=1000", broker.port()),
        DEFAULT_MAC,
    );
    // The TMP105 (the `inlet` channel) reads 24.000 °C; the provisioned calibration adds 1.5 °C.
    qemu.set_device_property(0, "temperature", 24_000);
    // The first SetConfig is damaged on its way to the node, the first Info on its way back.
    let line = CorruptingLine::new(&pty, FrameKind::SetConfig, FrameKind::Info);

    let mut options = MqttOptions::new("provisioning-e2e", "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client
        .subscribe("rackwatch/v1/+/+/telemetry", QoS::AtLeastOnce)
        .await
        .unwrap();

    let started = Instant::now();
    let output = rackwatch()
        .args(["node", "provision", "--port"])
        .arg(&line.path)
        .args([
            "--node", "prov-n1", "--site", "fra1", "--room", "hall-a", "--rack", "a01", "--u", "42",
        ])
        .args([
            "--interval-ms",
            "1000",
            "--broker",
            &format!("10.0.2.2:{}", broker.port()),
        ])
        .args(["--channel", "inlet:1:1.5"])
        .args(["--timeout-ms", "1000", "--attempts", "5"])
        .output()
        .unwrap();
    let (stdout, stderr) = stdout_and_stderr(&output);
    assert!(
        output.status.success(),
        "provision failed:\n{stdout}\n{stderr}\nconsole: {}",
        qemu.console()
    );
    eprintln!("provisioned in {:?}:\n{stdout}{stderr}", started.elapsed());
    assert!(
        stdout.contains("provisioned node prov-n1 at site fra1, location hall-a/a01/U42"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 channels calibrated: verified by reading back"),
        "{stdout}"
    );
    // The damaged Info failed its CRC; the damaged SetConfig was never answered: both sent again.
    assert!(
        stdout.contains("(1 corrupted frame(s) dropped, 2 request(s) sent again)"),
        "{stdout}"
    );

    // Readings taken before the new calibration arrived may come first, under either id.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.contains(&Some(25.5)) {
        let Ok(event) = tokio::time::timeout_at(deadline.into(), eventloop.poll()).await else {
            panic!("no calibrated inlet reading of 25.5 under the new id within 30 s; saw {seen:?}");
        };
        let event = event.unwrap();
        if let Event::Incoming(Packet::Publish(publish)) = event
            && publish.topic == "rackwatch/v1/fra1/prov-n1/telemetry"
        {
            let telemetry = Telemetry::decode(&publish.payload).unwrap();
            assert_eq!(telemetry.node.as_str(), "prov-n1");
            let inlet = telemetry.readings.iter().find(|r| r.channel.as_str() == "inlet");
            seen.push(inlet.and_then(|r| r.value));
        }
    }

    // A configuration the node refuses leaves the one it has: same id and location afterwards.
    let output = rackwatch()
        .args(["node", "provision", "--port"])
        .arg(&line.path)
        .args([
            "--node",
            "other",
            "--site",
            "fra1",
            "--broker",
            &format!("10.0.2.2:{}", broker.port()),
        ])
        .args(["--channel", "no-such-probe:1:0", "--timeout-ms", "1000"])
        .output()
        .unwrap();
    let (stdout, stderr) = stdout_and_stderr(&output);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stderr.contains(
            "node refused the configuration (Rejected: unknown channel); it keeps its previous configuration"
        ),
        "{stderr}"
    );
    // TLS with a CA pin (the certificate itself would not fit its 1 KiB slot with calibrations): this
    // board refuses it with its reason, and keeps the configuration it has.
    let ca_dir = tempfile::tempdir().unwrap();
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=prov-ca",
        ])
        .current_dir(ca_dir.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let output = rackwatch()
        .args(["node", "provision", "--port"])
        .arg(&line.path)
        .args([
            "--node",
            "prov-n1",
            "--site",
            "fra1",
            "--broker",
            "10.0.2.2:8883",
            "--tls",
            "--ca",
        ])
        .arg(ca_dir.path().join("ca.pem"))
        .args([
            "--ca-pin",
            "--server-name",
            "broker.fra1.example",
            "--timeout-ms",
            "1000",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = stdout_and_stderr(&output);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stderr.contains(
            "node refused the configuration (Rejected: no TLS on this board: the handshake overruns its stack); it keeps its previous configuration"
        ),
        "{stderr}"
    );
    let output = rackwatch()
        .args(["node", "list", "--port"])
        .arg(&line.path)
        .output()
        .unwrap();
    let (stdout, stderr) = stdout_and_stderr(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("node prov-n1\t"), "{stdout}");
    assert!(stdout.contains("location hall-a/a01/U42"), "{stdout}");
    drop(qemu);
}

/// The MQTT side of the reboot test: telemetry and status of every node, kept in arrival order.
struct Watch {
    client: AsyncClient,
    eventloop: rumqttc::EventLoop,
}

/// One thing a node published.
#[derive(Debug)]
enum Published {
    Telemetry(String, Box<Telemetry>),
    Status(String, Box<Status>),
}

impl Watch {
    async fn start(port: u16) -> Self {
        let mut options = MqttOptions::new("reboot-e2e", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, eventloop) = AsyncClient::new(options, 64);
        for kind in [NodeTopic::Telemetry, NodeTopic::Status] {
            client
                .subscribe(topic::node_filter(None, kind).as_str(), QoS::AtLeastOnce)
                .await
                .unwrap();
        }
        Watch { client, eventloop }
    }

    /// Waits up to `within` for a publication that `wanted` accepts; `context` names what the
    /// failure message shows (e.g. the console).
    async fn until(
        &mut self,
        what: &str,
        within: Duration,
        context: impl Fn() -> String,
        mut wanted: impl FnMut(&Published) -> bool,
    ) -> Published {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let Ok(event) = tokio::time::timeout_at(deadline.into(), self.eventloop.poll()).await else {
                panic!(
                    "{what}: not seen within {within:?}; saw {seen:#?}\nconsole:\n{}",
                    context()
                );
            };
            let Event::Incoming(Packet::Publish(publish)) = event.unwrap() else {
                continue;
            };
            let published = if publish.topic.ends_with("/status") {
                Published::Status(
                    publish.topic.clone(),
                    Box::new(Status::decode(&publish.payload).unwrap()),
                )
            } else {
                Published::Telemetry(
                    publish.topic.clone(),
                    Box::new(Telemetry::decode(&publish.payload).unwrap()),
                )
            };
            if wanted(&published) {
                return published;
            }
            if seen.len() < 20 {
                seen.push(published);
            }
        }
    }
}

fn inlet(telemetry: &Telemetry) -> Option<f64> {
    telemetry
        .readings
        .iter()
        .find(|r| r.channel.as_str() == "inlet")
        .and_then(|r| r.value)
}

/// The birth message of a boot other than `old_boots`, on `topic`; returns its boot.
fn new_birth<'a>(
    topic: &'a str,
    old_boots: &'a [u32],
    origin: ConfigOrigin,
) -> impl FnMut(&Published) -> bool + 'a {
    move |published| {
        matches!(published, Published::Status(t, status)
            if t == topic && status.state == NodeState::Online
                && !old_boots.contains(&status.boot) && status.config == Some(origin))
    }
}

/// Calibrated telemetry (inlet 24.0 °C + 1.5) of a boot other than `old_boots` on `topic`.
fn calibrated_telemetry<'a>(topic: &'a str, old_boots: &'a [u32]) -> impl FnMut(&Published) -> bool + 'a {
    move |published| {
        matches!(published, Published::Telemetry(t, telemetry)
            if t == topic && !old_boots.contains(&telemetry.boot) && inlet(telemetry) == Some(25.5))
    }
}

fn boot_of(published: &Published) -> u32 {
    match published {
        Published::Telemetry(_, telemetry) => telemetry.boot,
        Published::Status(_, status) => status.boot,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioning_survives_a_reboot_and_a_restart_and_a_corrupt_store_boots_on_defaults() {
    let broker = Mosquitto::start();
    let image = build_node_image();
    let flash_dir = tempfile::tempdir().unwrap();
    let flash = flash_dir.path().join("node-flash.bin");
    let append = format!(
        "broker=10.0.2.2:{} interval_ms=1000 flash={}",
        broker.port(),
        flash.display()
    );
    let mut watch = Watch::start(broker.port()).await;
    let (site, node) = (SiteId::new("fra1").unwrap(), NodeId::new("prov-r1").unwrap());
    let telemetry_topic = topic::node(&site, &node, NodeTopic::Telemetry).to_string();
    let status_topic = topic::node(&site, &node, NodeTopic::Status).to_string();

    // 1. Provision a node that boots on an empty flash file.
    let (qemu, pty) = Qemu::start_with_pty(&image, &append, DEFAULT_MAC);
    qemu.set_device_property(0, "temperature", 24_000);
    let output = rackwatch()
        .args(["node", "provision", "--port"])
        .arg(&pty)
        .args(["--node", "prov-r1", "--site", "fra1", "--interval-ms", "1000"])
        .args(["--broker", &format!("10.0.2.2:{}", broker.port())])
        .args(["--channel", "inlet:1:1.5", "--timeout-ms", "1000"])
        .output()
        .unwrap();
    let (stdout, stderr) = stdout_and_stderr(&output);
    assert!(output.status.success(), "provision failed:\n{stdout}\n{stderr}");
    let first = watch
        .until(
            "calibrated telemetry after provisioning",
            Duration::from_secs(30),
            String::new,
            calibrated_telemetry(&telemetry_topic, &[]),
        )
        .await;
    let mut boots = vec![boot_of(&first)];

    // 2. `reboot` over MQTT: the node resets and comes back on its stored configuration.
    let reboot = rackwatch_protocols::Command {
        id: 31,
        kind: CommandKind::Reboot,
    };
    let mut payload = [0u8; 128];
    let len = reboot.encode(&mut payload).unwrap();
    watch
        .client
        .publish(
            topic::node(&site, &node, NodeTopic::Command).as_str(),
            QoS::AtLeastOnce,
            false,
            payload[..len].to_vec(),
        )
        .await
        .unwrap();
    let birth = watch
        .until(
            "birth message after the reboot",
            Duration::from_secs(30),
            String::new,
            new_birth(&status_topic, &boots, ConfigOrigin::Provisioned),
        )
        .await;
    boots.push(boot_of(&birth));
    // The birth message names the channels the board samples, each once.
    let Published::Status(_, status) = &birth else {
        unreachable!("new_birth accepts only a status")
    };
    let names: Vec<&str> = status.channels.iter().map(|c| c.as_str()).collect();
    assert_eq!(names, ["inlet", "psu_in", "fan0"], "{status:?}");
    watch
        .until(
            "calibrated telemetry after the reboot",
            Duration::from_secs(30),
            String::new,
            calibrated_telemetry(&telemetry_topic, &boots[..1]),
        )
        .await;
    drop(qemu);

    // 3. A new QEMU on the same flash file: the same identity and calibration.
    let qemu = Qemu::start(&image, &append);
    qemu.set_device_property(0, "temperature", 24_000);
    let birth = watch
        .until(
            "birth message after the restart",
            Duration::from_secs(30),
            || qemu.console(),
            new_birth(&status_topic, &boots, ConfigOrigin::Provisioned),
        )
        .await;
    boots.push(boot_of(&birth));
    watch
        .until(
            "calibrated telemetry after the restart",
            Duration::from_secs(30),
            || qemu.console(),
            calibrated_telemetry(&telemetry_topic, &boots[..2]),
        )
        .await;
    assert!(
        qemu.console()
            .contains("rackwatch node prov-r1 on lm3s6965evb, site fra1")
            && qemu
                .console()
                .contains("configuration: provisioned configuration"),
        "{}",
        qemu.console()
    );
    drop(qemu);

    // 4. Both slots corrupted (a bit of each record's payload flipped): the node boots on its
    //    command-line defaults, and its console and birth message say why.
    let mut bytes = std::fs::read(&flash).unwrap();
    for slot_payload in [12, 1024 + 12] {
        bytes[slot_payload] ^= 0x01;
    }
    std::fs::write(&flash, &bytes).unwrap();
    let qemu = Qemu::start(&image, &append);
    let default_id = NodeId::new("lm3s-525400123456").unwrap();
    let lab = SiteId::new("lab").unwrap();
    let default_status = topic::node(&lab, &default_id, NodeTopic::Status).to_string();
    watch
        .until(
            "birth message on defaults",
            Duration::from_secs(30),
            || format!("earlier boots {boots:?}\n{}", qemu.console()),
            new_birth(&default_status, &boots, ConfigOrigin::DefaultsStoreCorrupt),
        )
        .await;
    assert!(
        qemu.console()
            .contains("configuration: defaults: both configuration slots failed their CRC"),
        "{}",
        qemu.console()
    );
    drop(qemu);
}

#[test]
fn a_port_where_nothing_answers_fails_clearly_within_its_timeout() {
    let pty = nix::pty::openpty(None, None).unwrap();
    let path = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
    ))
    .unwrap();
    let started = Instant::now();
    let output = rackwatch()
        .args(["node", "provision", "--port"])
        .arg(&path)
        .args([
            "--node",
            "n1",
            "--site",
            "lab",
            "--broker",
            "10.0.2.2:1883",
            "--timeout-ms",
            "500",
            "--attempts",
            "2",
        ])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("no answer to Hello after 2 attempts"), "{stderr}");
    assert!(stderr.contains("previous configuration is unchanged"), "{stderr}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    drop(pty);
}

/// A row provisioned in one run from a CSV inventory, each node with its own broker credentials from
/// `rackwatch broker-acl`, publishing through a Mosquitto that enforces the generated ACL.
#[tokio::test(flavor = "multi_thread")]
async fn one_run_provisions_a_row_from_an_inventory_file() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("row-r01.csv");
    std::fs::write(
        &inventory,
        "serial,node,room,row,rack,u,password_file\n\
         LM3S6965-000002,r01-n2,hall-a,r01,a02,40,secrets/r01-n2\n\
         LM3S6965-000001,r01-n1,hall-a,r01,a01,41,secrets/r01-n1\n",
    )
    .unwrap();
    let acl = dir.path().join("broker");
    let output = rackwatch()
        .args(["broker-acl", "--site", "fra1", "--inventory"])
        .arg(&inventory)
        .arg("--out")
        .arg(&acl)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let secret = |path: std::path::PathBuf| std::fs::read_to_string(path).unwrap();
    let secrets = [
        secret(dir.path().join("secrets/r01-n1")),
        secret(dir.path().join("secrets/r01-n2")),
        secret(acl.join("secrets/rackwatch-gateway")),
    ];
    let broker = Mosquitto::start_with(MosquittoConfig {
        password_file: Some(acl.join("password_file")),
        acl_file: Some(acl.join("acl_file")),
        ..MosquittoConfig::default()
    });

    let image = build_node_image();
    let append = format!("broker=10.0.2.2:{} interval_ms=1000", broker.port());
    // Two nodes whose serial numbers come from their Ethernet addresses.
    let (first, first_pty) = Qemu::start_with_pty(&image, &append, "52:54:00:00:00:01");
    let (second, second_pty) = Qemu::start_with_pty(&image, &append, "52:54:00:00:00:02");

    let mut options = MqttOptions::new("inventory-e2e", "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    options.set_credentials("rackwatch-gateway", secrets[2].clone());
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client
        .subscribe("rackwatch/v1/+/+/telemetry", QoS::AtLeastOnce)
        .await
        .unwrap();

    let output = rackwatch()
        .args(["node", "provision", "--inventory"])
        .arg(&inventory)
        .arg("--port")
        .arg(&first_pty)
        .arg("--port")
        .arg(&second_pty)
        .args([
            "--site",
            "fra1",
            "--broker",
            &format!("10.0.2.2:{}", broker.port()),
            "--interval-ms",
            "1000",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = stdout_and_stderr(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("[1/2]") && stderr.contains("[2/2]"), "{stderr}");
    for line in [
        "provisioned node r01-n1 at site fra1, location hall-a/r01/a01/U41, broker 10.0.2.2:",
        "provisioned node r01-n2 at site fra1, location hall-a/r01/a02/U40, broker 10.0.2.2:",
        "user r01-n1 password ***",
        "user r01-n2 password ***",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from\n{stdout}");
    }
    for secret in &secrets {
        assert!(
            !stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()),
            "a secret was printed"
        );
    }

    // Each node got through the broker's authentication and ACL under its own id.
    let mut missing = vec![
        "rackwatch/v1/fra1/r01-n1/telemetry",
        "rackwatch/v1/fra1/r01-n2/telemetry",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !missing.is_empty() {
        let Ok(event) = tokio::time::timeout_at(deadline.into(), eventloop.poll()).await else {
            panic!("no telemetry within 30 s on {missing:?}");
        };
        if let Event::Incoming(Packet::Publish(publish)) = event.unwrap() {
            missing.retain(|topic| *topic != publish.topic);
        }
    }

    // `node list` asks both ports at once and shows each node as provisioned.
    let output = rackwatch()
        .args(["node", "list", "--port"])
        .arg(&first_pty)
        .arg("--port")
        .arg(&second_pty)
        .output()
        .unwrap();
    let (stdout, stderr) = stdout_and_stderr(&output);
    assert!(output.status.success(), "{stderr}");
    for line in [
        "node r01-n1\tfirmware 0.1.0\tserial LM3S6965-000001\tlocation hall-a/r01/a01/U41",
        "node r01-n2\tfirmware 0.1.0\tserial LM3S6965-000002\tlocation hall-a/r01/a02/U40",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from\n{stdout}");
    }
    drop((first, second));
}

#[test]
fn console_shows_log_lines_and_readings() {
    let image = build_node_image();
    let (qemu, pty) = Qemu::start_with_pty(&image, "broker=10.0.2.2:1 interval_ms=500", DEFAULT_MAC);
    qemu.set_device_property(0, "temperature", 31_250);
    let mut console = rackwatch()
        .args(["node", "console", "--port"])
        .arg(&pty)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(console.stdout.take().unwrap());
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stdout).map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut log, mut readings) = (None, None);
    let mut all = Vec::new();
    while log.is_none() || readings.is_none() {
        let Ok(line) = seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            panic!(
                "console showed no log line and reading within 20 s:\n{}",
                all.join("\n")
            );
        };
        if line.starts_with("log  sampled seq") {
            log = Some(line.clone());
        }
        if line.starts_with("seq ") && line.contains("inlet 31.25 C") {
            readings = Some(line.clone());
        }
        all.push(line);
    }
    let _ = console.kill();
    let _ = console.wait();
    drop(qemu);
}
