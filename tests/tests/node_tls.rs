//! A host-build node publishes through a real Mosquitto TLS 1.3 listener written by `rackwatch
//! broker-acl --tls-port` (per-node user name and password, the generated ACL), with a certificate
//! this test makes with `openssl`, and its readings reach the database. The broker's plain listener is
//! watched: the node never connects to it.

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

use rackwatch_firmware::host::{HostNodeConfig, SimRack, spawn_node};
use rackwatch_hardware::sim::{DataHall, HallConfig};
use rackwatch_protocols::Secret;
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

/// A P-256 CA, and the broker's certificate for [`BROKER_NAME`] signed by it: `ca.der`,
/// `server.pem`, `server.key` in `dir`.
fn make_certificates(dir: &Path) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_publishes_over_tls_1_3_and_never_touches_the_plain_port() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        format!("site = \"lab\"\n[[node]]\nserial = \"S1\"\nnode = \"{NODE}\"\n"),
    )
    .unwrap();
    let acl = dir.path().join("broker");
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
        .arg(dir.path().join("server.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("server.key"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listener = std::fs::read_to_string(acl.join("conf.d/tls_listener.conf")).unwrap();
    assert!(listener.contains("tls_version tlsv1.3"), "{listener}");
    let secret = |name: &str| std::fs::read_to_string(acl.join("secrets").join(name)).unwrap();

    let broker = Mosquitto::start_with(MosquittoConfig {
        password_file: Some(acl.join("password_file")),
        acl_file: Some(acl.join("acl_file")),
        extra: Some(listener),
    });
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
    let ca_der = std::fs::read(dir.path().join("ca.der")).unwrap();
    let mut config = HostNodeConfig::new("lab", NODE)
        .unwrap()
        .with_interval_ms(500)
        .with_tls(BROKER_NAME, ca_der);
    config.node.user_name = heapless::String::try_from(NODE).ok();
    config.node.password = Secret::new(&secret(NODE));
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
