//! A host-build node publishes through a real Mosquitto TLS 1.3 listener written by `rackwatch
//! broker-acl --tls-port` (per-node user name and password, the generated ACL), with a certificate
//! this test makes with `openssl`, and its readings reach the database. The node's TLS settings are
//! the configuration `rackwatch node provision --tls --ca ... [--ca-pin]` builds (the host build has
//! no serial port to carry the frame; the configuration goes through its JSON as the frame's would):
//! the CA itself, or its SHA-256 pin with the broker sending its CA after its certificate. A node with
//! a wrong pin is refused, says why, and tries again. The broker's plain listener is watched: the node
//! never connects to it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use rackwatch_firmware::host::{HostNodeConfig, SimRack, spawn_node};
use rackwatch_gateway::tools::node::{ProvisionOptions, build_config};
use rackwatch_hardware::sim::{DataHall, HallConfig};
use rackwatch_protocols::{LinkFailure, NodeConfig, Secret};
use rackwatch_tests::room::within;
use rackwatch_tests::{Gateway, GatewaySettings, InfluxDb, Mosquitto, MosquittoConfig};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const DATABASE: &str = "rackwatch";
const NODE: &str = "r01-n1";
/// The name on the broker's certificate, which the node checks.
const BROKER_NAME: &str = "broker.rackwatch.test";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 CA, and the broker's certificate for [`BROKER_NAME`] signed by it: `ca.pem`, `ca.der`,
/// `server.pem`, `server.key` in `dir`, and `server-chain.pem` (the certificate, then the CA);
/// `other-ca.pem`, a CA that signed nothing.
fn make_certificates(dir: &Path) {
    #[rustfmt::skip]
    openssl(dir, &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "1", "-subj", "/CN=other-ca"]);
    #[rustfmt::skip]
    openssl(dir, &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=rackwatch-test-ca"]);
    openssl(
        dir,
        &["x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der"],
    );
    #[rustfmt::skip]
    openssl(dir, &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", &format!("/CN={BROKER_NAME}")]);
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName=DNS:{BROKER_NAME}\n"),
    )
    .unwrap();
    #[rustfmt::skip]
    openssl(dir, &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-sha256", "-extfile", "server.ext", "-out", "server.pem"]);
    let chain = [dir.join("server.pem"), dir.join("ca.pem")].map(|f| std::fs::read_to_string(f).unwrap());
    std::fs::write(dir.join("server-chain.pem"), chain.concat()).unwrap();
}

/// The configuration `rackwatch node provision` writes for `args`, as the node decodes it.
fn provisioned(args: &[&str]) -> NodeConfig {
    #[derive(Parser)]
    struct Provision {
        #[command(flatten)]
        options: ProvisionOptions,
    }
    let argv = ["provision", "--port", "(host node)"].iter().chain(args);
    let options = Provision::try_parse_from(argv).unwrap().options;
    let config = build_config(&options, None, None).unwrap();
    let mut json = [0u8; 2048];
    let len = config.encode(&mut json).unwrap();
    NodeConfig::decode(&json[..len]).unwrap()
}

/// The client source port of each connection the broker's log shows on `port`.
fn connections_on(log: &str, port: u16) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains("New connection from") && line.ends_with(&format!("on port {port}.")))
        .filter_map(|line| {
            line.split("New connection from ")
                .nth(1)?
                .split(' ')
                .next()
                .map(str::to_owned)
        })
        .collect()
}

/// Connection attempts on the TLS listener `port`. Mosquitto logs an attempt in one of two ways: a
/// handshake it cannot finish at once is logged as `New connection ... on port <port>.` (and its
/// failure later as an OpenSSL error), one that has already failed by the time the broker accepts it
/// (the client sent its hello and gave up before the broker ran) only as `Client connection from
/// <address> failed: ...`, without the port. Which one depends on scheduling, so both count; only
/// TLS handshakes fail that way, and the node is the only TLS client here.
fn tls_attempts(log: &str, port: u16) -> usize {
    let failed_at_accept = log
        .lines()
        .filter(|line| line.contains("Client connection from") && line.contains(" failed: "))
        .count();
    connections_on(log, port).len() + failed_at_accept
}

/// The broker with a TLS listener from `rackwatch broker-acl` serving `certfile`, and its ports.
struct Broker {
    mosquitto: Mosquitto,
    tls_port: u16,
    acl: std::path::PathBuf,
}

fn start_broker(dir: &Path, certfile: &str) -> Broker {
    let inventory = dir.join("inventory.toml");
    std::fs::write(
        &inventory,
        format!("site = \"lab\"\n[[node]]\nserial = \"S1\"\nnode = \"{NODE}\"\n"),
    )
    .unwrap();
    let acl = dir.join("broker");
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(GATEWAY)
        .args(["broker-acl", "--inventory"])
        .arg(&inventory)
        .arg("--out")
        .arg(&acl)
        .args(["--tls-port", &tls_port.to_string(), "--tls-cert"])
        .arg(dir.join(certfile))
        .arg("--tls-key")
        .arg(dir.join("server.key"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listener = std::fs::read_to_string(acl.join("conf.d/tls_listener.conf")).unwrap();
    assert!(listener.contains("tls_version tlsv1.3"), "{listener}");
    let mosquitto = Mosquitto::start_with(MosquittoConfig {
        password_file: Some(acl.join("password_file")),
        acl_file: Some(acl.join("acl_file")),
        extra: Some(listener),
    });
    Broker {
        mosquitto,
        tls_port,
        acl,
    }
}

/// A host node with the TLS settings `rackwatch node provision --tls` gives for `trust` (`--ca FILE`,
/// maybe `--ca-pin`), and its credentials from `broker-acl`.
fn node_config(dir: &Path, broker: &Broker, trust: &[&str]) -> HostNodeConfig {
    let address = format!("127.0.0.1:{}", broker.tls_port);
    let mut args = vec!["--node", NODE, "--site", "lab", "--broker", &address, "--tls"];
    args.extend(["--server-name", BROKER_NAME]);
    let files: Vec<String> = trust
        .iter()
        .map(|arg| match arg.strip_prefix("file:") {
            Some(name) => dir.join(name).display().to_string(),
            None => (*arg).to_owned(),
        })
        .collect();
    args.extend(files.iter().map(String::as_str));
    let provisioned = provisioned(&args);
    assert!(provisioned.broker.tls);
    let mut config = HostNodeConfig::new("lab", NODE)
        .unwrap()
        .with_interval_ms(500)
        .with_provisioned_tls(&provisioned.broker)
        .expect("a TLS configuration with a CA or pin");
    let secret = std::fs::read_to_string(broker.acl.join("secrets").join(NODE)).unwrap();
    config.node.user_name = heapless::String::try_from(NODE).ok();
    config.node.password = Secret::new(&secret);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_provisioned_with_the_ca_publishes_over_tls_1_3_and_never_touches_the_plain_port() {
    publishes_over_tls("server.pem", &["--ca", "file:ca.pem"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_provisioned_with_the_ca_pin_publishes_when_the_broker_sends_its_ca() {
    publishes_over_tls("server-chain.pem", &["--ca", "file:ca.pem", "--ca-pin"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_wrong_pin_is_refused_says_why_and_never_touches_the_plain_port() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let broker = start_broker(dir.path(), "server-chain.pem");
    let hall = Arc::new(Mutex::new(DataHall::new(&HallConfig {
        rows: 1,
        racks_per_row: 1,
        ..HallConfig::default()
    })));
    let config = node_config(dir.path(), &broker, &["--ca", "file:other-ca.pem", "--ca-pin"]);
    // The harness's readiness check connects to the plain port before the node runs; its line may
    // reach the log late, so wait for it (a little) before taking what is there as the baseline.
    let plain_so_far = || connections_on(&broker.mosquitto.log(), broker.mosquitto.port());
    within(Duration::from_secs(3), || async { !plain_so_far().is_empty() }).await;
    let before = plain_so_far();
    let node = spawn_node(
        config,
        SimRack::new(hall, 0),
        format!("127.0.0.1:{}", broker.tls_port).parse().unwrap(),
    );
    // Refused, and tried again after the back-off: two connections on the TLS port.
    let refused = within(Duration::from_secs(20), || async {
        node.status().link_failure() == Some(LinkFailure::PinMismatch)
            && tls_attempts(&broker.mosquitto.log(), broker.tls_port) >= 2
    })
    .await;
    let log = broker.mosquitto.log();
    assert!(
        refused.is_some(),
        "refused for the pin, twice: {:?}\n{log}",
        node.status().link_failure()
    );
    assert_eq!(node.status().delivered(), 0);
    assert!(!node.status().is_online());
    // No gateway runs: any later connection on the plain port would be the node's.
    assert_eq!(
        connections_on(&log, broker.mosquitto.port()),
        before,
        "a connection on the plain port while the node ran:\n{log}"
    );
    assert!(
        !log.contains(&format!(" as {NODE} ")),
        "the node logged in:\n{log}"
    );
    node.stop().await;
}

async fn publishes_over_tls(certfile: &str, trust: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let broker_handle = start_broker(dir.path(), certfile);
    let tls_port = broker_handle.tls_port;
    let acl = &broker_handle.acl;
    let broker = &broker_handle.mosquitto;
    let db = InfluxDb::start();
    db.execute(&format!("CREATE DATABASE \"{DATABASE}\"")).await;
    let gateway_password = acl.join("secrets/rackwatch-gateway");
    let mut settings = GatewaySettings::new("lab");
    settings.mqtt_url = Some(broker.url());
    settings.mqtt_extra = format!(
        "username = \"rackwatch-gateway\"\npassword = {{ file = \"{}\" }}",
        gateway_password.display()
    );
    settings.influx_url = Some(db.url());
    settings.influx_target = db.gateway_writer(DATABASE, "gateway").await;
    let gateway = Gateway::start(GATEWAY, &settings);

    let hall = Arc::new(Mutex::new(DataHall::new(&HallConfig {
        rows: 1,
        racks_per_row: 1,
        ..HallConfig::default()
    })));
    let config = node_config(dir.path(), &broker_handle, trust);
    let node = spawn_node(
        config,
        SimRack::new(hall, 0),
        format!("127.0.0.1:{tls_port}").parse().unwrap(),
    );

    let readings = within(Duration::from_secs(30), || async {
        let rows = db
            .query(
                DATABASE,
                &format!("SELECT count(\"value\") FROM \"reading\" WHERE \"node\" = '{NODE}'"),
            )
            .await;
        rows[0].first().is_some_and(|s| s.values[0][1].as_i64() > Some(5))
    })
    .await;
    assert!(
        readings.is_some(),
        "the node's readings reach the database over TLS:\n{}\n{}",
        broker.log(),
        gateway.log()
    );
    assert!(node.status().delivered() > 0);

    let log = broker.log();
    let node_source = log
        .lines()
        .find(|line| line.contains("New client connected from") && line.contains(&format!(" as {NODE} ")))
        .and_then(|line| line.split("New client connected from ").nth(1)?.split(' ').next())
        .unwrap_or_else(|| panic!("the node's connection is in the broker log:\n{log}"))
        .to_owned();
    assert!(
        connections_on(&log, tls_port).contains(&node_source),
        "the node came in on the TLS port:\n{log}"
    );
    let plain = connections_on(&log, broker.port());
    assert!(
        !plain.is_empty(),
        "the gateway's connection on the plain port is logged:\n{log}"
    );
    assert!(
        !plain.contains(&node_source),
        "the node connected to the plain port:\n{log}"
    );
    node.stop().await;
}
