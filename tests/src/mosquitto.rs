//! A real Mosquitto broker (Debian package `mosquitto`) on a free loopback port.

use std::fmt::Write as _;
use std::path::PathBuf;

use tempfile::TempDir;

use crate::process::{Service, find_binary, free_port};

/// The largest payload the test broker accepts, as in deploy/'s Mosquitto configs.
pub const MESSAGE_SIZE_LIMIT: usize = 1024 * 1024;

/// What the broker is started with, beyond the defaults of a test broker.
#[derive(Debug, Clone, Default)]
pub struct MosquittoConfig {
    /// `password_file`: when set, anonymous clients are refused.
    pub password_file: Option<PathBuf>,
    /// `acl_file`: which client may publish and subscribe where.
    pub acl_file: Option<PathBuf>,
    /// Configuration appended as is (a listener block from `rackwatch broker-acl --tls-port`).
    pub extra: Option<String>,
}

/// A second listener, speaking TLS, beside the plain one (which the harness and test clients use): the server's certificate and key, and the CA that signed client certificates.
#[derive(Debug, Clone)]
pub struct MosquittoTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// `require_certificate true`: a client without a certificate of the CA is refused; its
    /// certificate's common name is its user name (`use_identity_as_username`).
    pub require_certificate: bool,
}

/// A running Mosquitto with persistence on, so queued QoS 1 messages of persistent sessions
/// survive a restart (mosquitto.conf(5): `persistence`, written on SIGTERM).
#[derive(Debug)]
pub struct Mosquitto {
    service: Service,
    dir: TempDir,
    tls_port: Option<u16>,
}

impl Mosquitto {
    pub fn start() -> Self {
        Self::start_with(MosquittoConfig::default())
    }

    pub fn start_with(config: MosquittoConfig) -> Self {
        Self::start_configured(&config, None)
    }

    /// A broker with a TLS listener too ([`Self::tls_url`]).
    pub fn start_with_tls(config: MosquittoConfig, tls: MosquittoTls) -> Self {
        Self::start_configured(&config, Some(&tls))
    }

    fn start_configured(config: &MosquittoConfig, tls: Option<&MosquittoTls>) -> Self {
        let program = find_binary("mosquitto", "mosquitto");
        let dir = tempfile::Builder::new()
            .prefix("rackwatch-mosquitto-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut conf = String::new();
        writeln!(conf, "listener {port} 127.0.0.1").unwrap();
        // Run as whoever runs the tests: started as root, Mosquitto would otherwise switch to the
        // `mosquitto` user, which cannot write its persistence file into our temporary folder.
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .unwrap();
        writeln!(conf, "user {}", user.name).unwrap();
        writeln!(conf, "persistence true").unwrap();
        writeln!(conf, "persistence_location {}/", dir.path().display()).unwrap();
        // The default of 1000 queued messages per offline client would drop readings during a
        // gateway restart under load; a site sizes this to its outage budget.
        writeln!(conf, "max_queued_messages 2000000").unwrap();
        writeln!(conf, "max_inflight_messages 1000").unwrap();
        // As deploy/ ships it: no message over 1 MiB reaches the gateway (which reads up to 2 MiB).
        writeln!(conf, "message_size_limit {MESSAGE_SIZE_LIMIT}").unwrap();
        match &config.password_file {
            Some(file) => writeln!(conf, "allow_anonymous false\npassword_file {}", file.display()).unwrap(),
            None => writeln!(conf, "allow_anonymous true").unwrap(),
        }
        if let Some(file) = &config.acl_file {
            writeln!(conf, "acl_file {}", file.display()).unwrap();
        }
        let tls_port = tls.map(|tls| {
            let port = free_port();
            writeln!(conf, "listener {port} 127.0.0.1").unwrap();
            writeln!(conf, "cafile {}", tls.ca_file.display()).unwrap();
            writeln!(conf, "certfile {}", tls.cert_file.display()).unwrap();
            writeln!(conf, "keyfile {}", tls.key_file.display()).unwrap();
            if tls.require_certificate {
                writeln!(conf, "require_certificate true\nuse_identity_as_username true").unwrap();
            }
            port
        });
        if let Some(extra) = &config.extra {
            conf.push_str(extra);
        }
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let args = vec!["-c".to_owned(), conf_path.display().to_string()];
        let log = dir.path().join("mosquitto.log");
        let service = Service::start("mosquitto", program, args, log, port, |_| true);
        Mosquitto {
            service,
            dir,
            tls_port,
        }
    }

    pub fn port(&self) -> u16 {
        self.service.port()
    }

    /// `mqtt://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port())
    }

    /// `mqtts://127.0.0.1:PORT` of the TLS listener, when configured.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|port| format!("mqtts://127.0.0.1:{port}"))
    }

    /// Stops the broker cleanly (it saves its persistence file).
    pub fn stop(&mut self) {
        self.service.stop();
    }

    /// Starts the broker again on the same port with the same persistence file.
    pub fn restart(&mut self) {
        self.service.restart(|_| true);
    }

    pub fn log(&self) -> String {
        self.service.read_log()
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
