//! The node's TLS link against real TLS servers: `openssl s_server` with certificates this test makes
//! with the `openssl` CLI, and a byte-level proxy in front of it to cut a record or inject an alert.
//! The node core runs as on a board: `Node::poll` over `TlsLink` over a non-blocking TCP transport.

#![cfg(feature = "host")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rackwatch_firmware::node::SessionError;
use rackwatch_firmware::tls::{self, TlsClient, TlsSettings, TlsState, Trust};
use rackwatch_firmware::{Event, LinkError, LinkState, Node, NodeConfig, Transport};
use rackwatch_hardware::{FanControl, Fault, Measurement, Sample, SensorSet};
use rackwatch_protocols::{FanTarget, LinkFailure, NodeId, SiteId};

/// The name the broker's certificate carries and the node expects.
const BROKER: &str = "broker.rackwatch.test";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 CA in `dir/{name}.pem` (and `.der`, `.key`).
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &format!("{name}.key"),
        ],
    );
    #[rustfmt::skip]
    openssl(dir, &["req", "-x509", "-new", "-key", &format!("{name}.key"), "-subj", &format!("/CN={name}"),
        "-days", "30", "-sha256", "-out", &format!("{name}.pem")]);
    #[rustfmt::skip]
    openssl(dir, &["x509", "-in", &format!("{name}.pem"), "-outform", "DER", "-out", &format!("{name}.der")]);
}

/// A P-256 server certificate for `host`, signed by CA `ca`: `dir/{name}.pem`, `dir/{name}.key`.
fn make_server(dir: &Path, name: &str, host: &str, ca: &str) {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &format!("{name}.key"),
        ],
    );
    #[rustfmt::skip]
    openssl(dir, &["req", "-new", "-key", &format!("{name}.key"), "-subj", &format!("/CN={host}"),
        "-out", &format!("{name}.csr")]);
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName=DNS:{host}\n"),
    )
    .unwrap();
    #[rustfmt::skip]
    openssl(dir, &["x509", "-req", "-in", &format!("{name}.csr"), "-CA", &format!("{ca}.pem"),
        "-CAkey", &format!("{ca}.key"), "-CAcreateserial", "-days", "30", "-sha256",
        "-extfile", &format!("{name}.ext"), "-out", &format!("{name}.pem")]);
}

/// Certificates for every case, made once per test in its own directory.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rackwatch-tls-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        make_ca(&dir, "ca");
        make_ca(&dir, "rogue-ca");
        make_server(&dir, "good", BROKER, "ca");
        make_server(&dir, "rogue", BROKER, "rogue-ca");
        make_server(&dir, "misnamed", "other.rackwatch.test", "ca");
        Certs { dir }
    }

    fn ca_der(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("ca.der")).unwrap()
    }

    /// The SHA-256 of `name`'s DER, as `rackwatch node provision --ca-pin` writes it.
    fn pin(&self, name: &str) -> [u8; 32] {
        let der = std::fs::read(self.dir.join(format!("{name}.der"))).unwrap();
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(der)).into()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `openssl s_server` on a fresh port; what it receives goes to its stdout, `reply` is written to its
/// stdin (so to the node once a client is connected).
struct SServer {
    child: Child,
    port: u16,
    output: Arc<Mutex<Vec<u8>>>,
}

impl SServer {
    fn start(certs: &Certs, cert: &str, version: &str, reply: &[u8]) -> Self {
        Self::launch(certs, cert, &[], version, reply)
    }

    /// Sends `chain` (certificate files) after its own certificate, as a broker with a pinned CA must.
    fn start_with_chain(certs: &Certs, cert: &str, chain: &str, reply: &[u8]) -> Self {
        Self::launch(certs, cert, &["-cert_chain", chain], "-tls1_3", reply)
    }

    fn launch(certs: &Certs, cert: &str, extra: &[&str], version: &str, reply: &[u8]) -> Self {
        let port = free_port();
        let mut child = Command::new("openssl")
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), version])
            .args(["-cert", &format!("{cert}.pem"), "-key", &format!("{cert}.key")])
            .args(extra)
            .current_dir(&certs.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        child.stdin.as_mut().unwrap().write_all(reply).unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&output.lock().unwrap()).contains("ACCEPT") {
            assert!(Instant::now() < deadline, "s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        SServer { child, port, output }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a proxy in front of the server does to the server's bytes.
#[derive(Clone, Copy)]
enum Tamper {
    /// Forwards this many bytes to the node, then closes: a record cut short.
    CutAfter(usize),
    /// Forwards everything, and once `inject` is set sends a fatal alert at the next record boundary.
    AlertWhenAsked,
}

/// A TCP proxy on its own port in front of `upstream`.
fn proxy(upstream: u16, tamper: Tamper, inject: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut node, _)) = listener.accept() else {
            return;
        };
        let mut server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
        let (mut node_rx, mut server_tx) = (node.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut node_rx, &mut server_tx);
        });
        server.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        tamper_with(&mut server, &mut node, tamper, &inject);
        // Clones live in the other thread: shut down, or the node never sees the close.
        let _ = node.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    });
    port
}

/// Forwards the server's bytes to the node as `tamper` says, until either side ends.
fn tamper_with(server: &mut TcpStream, node: &mut TcpStream, tamper: Tamper, inject: &AtomicBool) {
    {
        let (mut forwarded, mut record_left, mut header) = (0usize, 0usize, Vec::new());
        let mut buf = [0u8; 1];
        loop {
            if let Tamper::AlertWhenAsked = tamper
                && record_left == 0
                && header.is_empty()
                && inject.load(Ordering::SeqCst)
            {
                // A fatal internal_error alert (RFC 8446 §6): level 2, description 80.
                let _ = node.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50]);
                std::thread::sleep(Duration::from_millis(500));
                return;
            }
            match server.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
                Err(_) => return,
            }
            if let Tamper::CutAfter(n) = tamper
                && forwarded == n
            {
                return;
            }
            if record_left > 0 {
                record_left -= 1;
            } else {
                header.push(buf[0]);
                if header.len() == 5 {
                    record_left = usize::from(u16::from_be_bytes([header[3], header[4]]));
                    header.clear();
                }
            }
            if node.write_all(&buf).is_err() {
                return;
            }
            forwarded += 1;
        }
    }
}

/// The core's transport over a non-blocking std `TcpStream`; `port` may change between connections.
struct StdTcp {
    port: Rc<Cell<u16>>,
    stream: Option<TcpStream>,
    opened: bool,
}

impl Transport for StdTcp {
    fn open(&mut self) -> Result<(), LinkError> {
        self.opened = true;
        self.stream = TcpStream::connect(("127.0.0.1", self.port.get())).ok();
        if let Some(stream) = &self.stream {
            stream.set_nonblocking(true).unwrap();
            stream.set_nodelay(true).unwrap();
        }
        Ok(())
    }
    fn state(&mut self) -> LinkState {
        match (&self.stream, self.opened) {
            (Some(_), _) => LinkState::Open,
            _ => LinkState::Closed,
        }
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        let stream = self.stream.as_mut().ok_or(LinkError)?;
        match stream.read(buf) {
            Ok(0) if !buf.is_empty() => Err(LinkError),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(_) => Err(LinkError),
        }
    }
    fn send(&mut self, bytes: &[u8]) -> Result<usize, LinkError> {
        let stream = self.stream.as_mut().ok_or(LinkError)?;
        match stream.write(bytes) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(_) => Err(LinkError),
        }
    }
    fn close(&mut self) {
        self.stream = None;
        self.opened = false;
    }
}

/// A rack without sensors: the tests are about the link.
struct NoSensors;

impl SensorSet for NoSensors {
    fn sample(&mut self, _device: usize, _measurement: Measurement) -> Result<Sample, Fault> {
        Err(Fault::NotReady)
    }
}

impl FanControl for NoSensors {
    fn set_fan(&mut self, _fan: u8, _target: FanTarget) -> Result<(), Fault> {
        Ok(())
    }
}

/// CONNACK, session not present, accepted (MQTT 3.1.1 §3.2).
const CONNACK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

/// A node over TLS to `port`; runs until `done` says so about an event (or panics after 20 s), and
/// returns every event and the time from the first `Connecting` to the first `Connected`.
fn run_node(
    trust: Trust<'_>,
    port: Rc<Cell<u16>>,
    mut step: impl FnMut(&Event) -> bool,
) -> (Vec<Event>, Option<Duration>) {
    let mut config = NodeConfig::new(SiteId::new("lab").unwrap(), NodeId::new("n1").unwrap(), 7);
    config.reconnect.min_ms = 100;
    config.reconnect.max_ms = 400;
    let mut node: Node<16> = Node::new(config, &[]).unwrap();
    let mut state = Box::new(TlsState::new());
    let (pipe, buffers) = state.parts();
    let settings = TlsSettings {
        server_name: BROKER,
        trust,
    };
    let mut engine = Box::pin(tls::engine(pipe, buffers, settings, rand_core::OsRng));
    let mut client = TlsClient::new(pipe, engine.as_mut());
    let mut tcp = StdTcp {
        port,
        stream: None,
        opened: false,
    };
    let (started, deadline) = (Instant::now(), Instant::now() + Duration::from_secs(20));
    let (mut events, mut connecting, mut handshake) = (Vec::new(), None, None);
    loop {
        let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap();
        node.poll(now_ms, &mut NoSensors, &mut client.over(&mut tcp));
        while let Some(event) = node.next_event() {
            eprintln!("node: {event}");
            match event {
                Event::Connecting { .. } => connecting = Some(Instant::now()),
                Event::Connected { .. } if handshake.is_none() => {
                    handshake = connecting.map(|c| c.elapsed());
                }
                _ => {}
            }
            let done = step(&event);
            events.push(event);
            if done {
                return (events, handshake);
            }
        }
        assert!(Instant::now() < deadline, "no outcome in 20 s: {events:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs a node trusting `ca.der` against `port` until its first disconnect, and returns why.
fn first_disconnect(certs: &Certs, port: u16) -> SessionError {
    let (events, _) = run_node(Trust::Ca(&certs.ca_der()), Rc::new(Cell::new(port)), |e| {
        matches!(e, Event::Disconnected { .. })
    });
    match events.last() {
        Some(Event::Disconnected { reason, .. }) => *reason,
        other => panic!("{other:?}"),
    }
}

/// Runs a node trusting `trust` against `port`, through a [`watch`], until it has been refused twice
/// (so it tried again after a refusal); returns why, after checking both refusals give the same reason
/// and that every connection the node opened began with a TLS ClientHello: no plain MQTT, no fallback.
fn refusals(trust: Trust<'_>, port: u16) -> SessionError {
    let (watched, openings) = watch(port);
    let mut refused = 0;
    let (events, _) = run_node(trust, Rc::new(Cell::new(watched)), |e| {
        refused += usize::from(matches!(e, Event::Disconnected { .. }));
        refused == 2
    });
    let reasons: Vec<SessionError> = events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnected { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{events:?}");
    assert_eq!(reasons[0], reasons[1], "{events:?}");
    let openings = openings.lock().unwrap().clone();
    assert!(
        openings.len() >= 2,
        "the node connected again after the refusal: {openings:?}"
    );
    for opening in &openings {
        // A handshake record (22) whose first message is a ClientHello (1); MQTT CONNECT starts with 0x10.
        assert!(
            opening.len() == 6 && opening[0] == 0x16 && opening[5] == 0x01,
            "a connection began without a ClientHello: {openings:?}"
        );
    }
    reasons[0]
}

/// A forwarding proxy in front of `upstream` that keeps the first 6 bytes the node sent on each
/// connection (a connection that sends fewer is kept with what it sent).
fn watch(upstream: u16) -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let openings = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&openings);
    std::thread::spawn(move || {
        for node in listener.incoming() {
            let Ok(mut node) = node else { return };
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                return;
            };
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut first = Vec::new();
                let mut byte = [0u8; 1];
                while first.len() < 6 && matches!(node.read(&mut byte), Ok(1)) {
                    first.push(byte[0]);
                }
                seen.lock().unwrap().push(first.clone());
                if server.write_all(&first).is_err() {
                    return;
                }
                let (mut node_rx, mut server_tx) = (node.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut node_rx, &mut server_tx);
                    let _ = server_tx.shutdown(Shutdown::Both);
                });
                let _ = std::io::copy(&mut server, &mut node);
                let _ = node.shutdown(Shutdown::Both);
            });
        }
    });
    (port, openings)
}

#[test]
fn a_certificate_from_another_ca_is_refused_and_its_reason_reaches_the_next_birth() {
    let certs = Certs::make("rogue");
    let rogue = SServer::start(&certs, "rogue", "-tls1_3", &[]);
    let good = SServer::start(&certs, "good", "-tls1_3", &CONNACK);
    let port = Rc::new(Cell::new(rogue.port));
    let switch = Rc::clone(&port);
    let (events, handshake) = run_node(Trust::Ca(&certs.ca_der()), port, |event| match event {
        Event::Disconnected { .. } => {
            switch.set(good.port);
            false
        }
        Event::Connected { .. } => true,
        _ => false,
    });
    assert!(
        events.contains(&Event::Disconnected {
            reason: SessionError::Link(LinkFailure::UnknownCa),
            retry_in_ms: match events.iter().find(|e| matches!(e, Event::Disconnected { .. })) {
                Some(Event::Disconnected { retry_in_ms, .. }) => *retry_in_ms,
                _ => 0,
            },
        }),
        "{events:?}"
    );
    eprintln!("handshake with the good server: {handshake:?}");
    // The birth goes out after CONNACK; s_server prints what it decrypted.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !good.received().contains(r#""link":"unknown_ca""#) {
        assert!(
            Instant::now() < deadline,
            "birth without the reason: {}",
            good.received()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_certificate_for_another_host_is_refused() {
    let certs = Certs::make("misnamed");
    let server = SServer::start(&certs, "misnamed", "-tls1_3", &[]);
    assert_eq!(
        refusals(Trust::Ca(&certs.ca_der()), server.port),
        SessionError::Link(LinkFailure::WrongHostName)
    );
}

#[test]
fn a_tls_1_2_only_server_is_refused() {
    let certs = Certs::make("tls12");
    let server = SServer::start(&certs, "good", "-tls1_2", &[]);
    assert_eq!(
        refusals(Trust::Ca(&certs.ca_der()), server.port),
        SessionError::Link(LinkFailure::ProtocolVersion)
    );
}

#[test]
fn a_record_cut_short_is_a_truncated_record() {
    let certs = Certs::make("truncated");
    let server = SServer::start(&certs, "good", "-tls1_3", &[]);
    // 30 bytes: the ServerHello record's header and part of its body.
    let port = proxy(
        server.port,
        Tamper::CutAfter(30),
        Arc::new(AtomicBool::new(false)),
    );
    assert_eq!(
        first_disconnect(&certs, port),
        SessionError::Link(LinkFailure::TruncatedRecord)
    );
}

#[test]
fn an_alert_mid_session_ends_the_session_with_its_reason() {
    let certs = Certs::make("alert");
    let server = SServer::start(&certs, "good", "-tls1_3", &CONNACK);
    let inject = Arc::new(AtomicBool::new(false));
    let port = proxy(server.port, Tamper::AlertWhenAsked, Arc::clone(&inject));
    let (events, _) = run_node(Trust::Ca(&certs.ca_der()), Rc::new(Cell::new(port)), |event| {
        if let Event::Connected { .. } = event {
            inject.store(true, Ordering::SeqCst);
        }
        matches!(event, Event::Disconnected { .. })
    });
    assert!(
        events.iter().any(|e| matches!(e, Event::Connected { .. })),
        "{events:?}"
    );
    assert!(
        matches!(
            events.last(),
            Some(Event::Disconnected {
                reason: SessionError::Link(LinkFailure::Alert),
                ..
            })
        ),
        "{events:?}"
    );
}

#[test]
fn a_pinned_ca_sent_by_the_broker_is_the_trust_anchor() {
    let certs = Certs::make("pinned");
    let server = SServer::start_with_chain(&certs, "good", "ca.pem", &CONNACK);
    let (events, handshake) = run_node(
        Trust::Pin(certs.pin("ca")),
        Rc::new(Cell::new(server.port)),
        |event| matches!(event, Event::Connected { .. } | Event::Disconnected { .. }),
    );
    assert!(
        matches!(events.last(), Some(Event::Connected { .. })),
        "{events:?}"
    );
    eprintln!("handshake with a pinned CA: {handshake:?}");
}

#[test]
fn a_wrong_pin_or_a_broker_that_sends_no_ca_is_a_pin_mismatch() {
    let certs = Certs::make("wrong-pin");
    let server = SServer::start_with_chain(&certs, "good", "ca.pem", &[]);
    assert_eq!(
        refusals(Trust::Pin(certs.pin("rogue-ca")), server.port),
        SessionError::Link(LinkFailure::PinMismatch)
    );
    let alone = SServer::start(&certs, "good", "-tls1_3", &[]);
    assert_eq!(
        refusals(Trust::Pin(certs.pin("ca")), alone.port),
        SessionError::Link(LinkFailure::PinMismatch)
    );
    assert_eq!(
        LinkFailure::PinMismatch.describe(),
        "tls: broker's CA does not match the provisioned pin"
    );
}

#[test]
fn the_pinned_ca_must_have_signed_the_server_certificate() {
    let certs = Certs::make("pinned-rogue");
    // The right CA in the chain, but the server certificate is the rogue CA's.
    let server = SServer::start_with_chain(&certs, "rogue", "ca.pem", &[]);
    assert_eq!(
        refusals(Trust::Pin(certs.pin("ca")), server.port),
        SessionError::Link(LinkFailure::UnknownCa)
    );
    let misnamed = SServer::start_with_chain(&certs, "misnamed", "ca.pem", &[]);
    assert_eq!(
        refusals(Trust::Pin(certs.pin("ca")), misnamed.port),
        SessionError::Link(LinkFailure::WrongHostName)
    );
}
