//! The gateway over TLS (`mqtts://`) to a Mosquitto TLS listener, with certificates the test makes:
//! the broker's certificate checked against `ca_file`, and, where the broker requires one, the
//! gateway's own client certificate (`client_cert_file`, `client_key_file`).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::time::Duration;

use rackwatch_tests::fleet::{self, Load};
use rackwatch_tests::room::within;
use rackwatch_tests::{
    Certificates, Gateway, GatewaySettings, InfluxDb, Mosquitto, MosquittoConfig, MosquittoTls,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const DATABASE: &str = "rackwatch";

fn load(site: &str) -> Load {
    Load {
        site: site.to_owned(),
        nodes: 4,
        readings_per_message: 5,
        rounds: 20,
        interval: Duration::from_millis(50),
        unsynced_nodes: 0,
        client_id: format!("fleet-{site}"),
    }
}

fn broker(certs: &Certificates, require_certificate: bool) -> Mosquitto {
    let (cert_file, key_file) = certs.server();
    Mosquitto::start_with_tls(
        MosquittoConfig::default(),
        MosquittoTls {
            ca_file: certs.ca(),
            cert_file,
            key_file,
            require_certificate,
        },
    )
}

/// A gateway on the broker's TLS listener with `tls_keys` in `[mqtt]`.
fn gateway(
    site: &str,
    client_id: &str,
    broker: &Mosquitto,
    db: &InfluxDb,
    target: &str,
    tls_keys: String,
) -> Gateway {
    let mut settings = GatewaySettings::new(site);
    settings.mqtt_url = Some(broker.tls_url().unwrap());
    settings.client_id = client_id.to_owned();
    settings.mqtt_extra = tls_keys;
    settings.influx_url = Some(db.url());
    settings.influx_target = target.to_owned();
    Gateway::start(GATEWAY, &settings)
}

/// Waits until the broker has the gateway's TLS session (the gateway's first session subscribes
/// after its handshake: what is published before is not for it).
async fn connected(broker: &Mosquitto, client_id: &str) {
    let session = within(Duration::from_secs(10), || async {
        broker.log().contains(&format!(" as {client_id} "))
    })
    .await;
    assert!(
        session.is_some(),
        "{client_id} connected over TLS:\n{}",
        broker.log()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn assert_all_stored(db: &InfluxDb, site: &str, ledger: &fleet::Ledger) {
    let published = ledger.snapshot();
    let comparison = db
        .settle_and_compare(DATABASE, site, &published, Duration::from_secs(30))
        .await;
    assert!(comparison.is_exact(), "{comparison:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_reads_a_tls_broker_whose_certificate_it_checks_with_ca_file() {
    let certs = Certificates::make("rackwatch-gateway");
    let broker = broker(&certs, false);
    let db = InfluxDb::start();
    db.execute(&format!("CREATE DATABASE \"{DATABASE}\"")).await;
    let target = db.gateway_writer(DATABASE, "gateway").await;
    let ca = format!("ca_file = \"{}\"", certs.ca().display());
    let gateway = gateway("tlsca", "gw-ca", &broker, &db, &target, ca);
    connected(&broker, "gw-ca").await;
    let (ledger, publisher) = fleet::start(broker.port(), load("tlsca"));
    publisher.await.unwrap();
    assert_all_stored(&db, "tlsca", &ledger).await;
    assert!(gateway.metric("rackwatch_messages_received_total") >= 80.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_requiring_a_client_certificate_takes_the_gateways_and_refuses_none() {
    let certs = Certificates::make("rackwatch-gateway");
    let broker = broker(&certs, true);
    let db = InfluxDb::start();
    db.execute(&format!("CREATE DATABASE \"{DATABASE}\"")).await;
    let target = db.gateway_writer(DATABASE, "gateway").await;
    let (cert, key) = certs.client();
    let with_certificate = format!(
        "ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
        certs.ca().display(),
        cert.display(),
        key.display()
    );
    let gateway_with = gateway("tlscert", "gw-cert", &broker, &db, &target, with_certificate);
    let ca_only = format!("ca_file = \"{}\"", certs.ca().display());
    let gateway_without = gateway("tlscert", "gw-nocert", &broker, &db, &target, ca_only);
    connected(&broker, "gw-cert").await;
    let (ledger, publisher) = fleet::start(broker.port(), load("tlscert"));
    publisher.await.unwrap();
    assert_all_stored(&db, "tlscert", &ledger).await;
    assert!(gateway_with.metric("rackwatch_messages_received_total") >= 80.0);
    // The gateway without a certificate never got a session.
    let refused = within(Duration::from_secs(5), || async {
        gateway_without.metric("rackwatch_messages_received_total") == 0.0
    })
    .await;
    assert!(refused.is_some());
    assert_eq!(gateway_without.metric("rackwatch_messages_received_total"), 0.0);
    // Mosquitto names the session's user: the certificate's common name.
    let log = broker.log();
    assert!(
        log.contains("as gw-cert") && log.contains("u'rackwatch-gateway'"),
        "{log}"
    );
    assert!(!log.contains("as gw-nocert"), "{log}");
}
