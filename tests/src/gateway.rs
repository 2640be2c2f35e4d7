//! The gateway under test, as a separate process: started with a configuration the test writes,
//! waited for on its `/health`, killed with SIGKILL or stopped with SIGTERM, and started again on the
//! same spool.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{Service, free_port};

/// The settings a test varies; everything else takes the gateway's defaults.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub site: String,
    pub mqtt_url: Option<String>,
    pub client_id: String,
    pub influx_url: Option<String>,
    /// The `[influxdb]` keys naming where to write (v2's `org`/`bucket` by default; v1's
    /// `api`/`database`/`username`/`password` from `InfluxDb::gateway_writer`).
    pub influx_target: String,
    /// Extra TOML appended to the file (inventory, serial ports, normalise bounds ...).
    pub extra: String,
    /// Extra keys of the `[mqtt]` table (e.g. `ca_file = "..."`).
    pub mqtt_extra: String,
    /// Extra keys of the `[http]` table (e.g. `token = { file = "..." }`).
    pub http_extra: String,
    /// Serve HTTPS with this PEM certificate and key (readiness is then a TCP connect).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `influxdb.batch_max_age`: how long a write waits for more lines.
    pub batch_max_age: Duration,
    /// Environment variables for the gateway process (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// The spool folder (default: `spool` in the gateway's folder), e.g. on a [`crate::Tmpfs`].
    pub spool_dir: Option<PathBuf>,
    /// Extra keys of the `[spool]` table (e.g. `dead_letter_max_mb = 1`).
    pub spool_extra: String,
}

impl GatewaySettings {
    pub fn new(site: &str) -> Self {
        GatewaySettings {
            site: site.to_owned(),
            mqtt_url: None,
            client_id: "rackwatch-test".to_owned(),
            influx_url: None,
            influx_target: "org = \"rackwatch\"\nbucket = \"rackwatch\"".to_owned(),
            extra: String::new(),
            mqtt_extra: String::new(),
            http_extra: String::new(),
            tls: None,
            batch_max_age: Duration::from_millis(200),
            env: Vec::new(),
            spool_dir: None,
            spool_extra: String::new(),
        }
    }
}

/// A running gateway process with its own folder (config, spool, dead letters, log).
#[derive(Debug)]
pub struct Gateway {
    service: Service,
    dir: TempDir,
    spool: PathBuf,
}

fn healthy(port: u16) -> bool {
    http_get(port, "/health").is_some_and(|body| body.starts_with("ok"))
}

/// A minimal blocking HTTP GET for the harness's own polling; returns the body of a 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let (status, _, body) = http_response(port, path, &[])?;
    (status == 200).then_some(body)
}

/// A minimal blocking HTTP GET with extra header lines (`Accept: ...`): the status, the response
/// head and the body. Reads `Content-Length` bytes (some servers keep the connection open despite
/// `Connection: close`).
pub fn http_response(port: u16, path: &str, headers: &[&str]) -> Option<(u16, String, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut received = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let header_end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        received.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&received[..header_end]).to_string();
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    match length {
        Some(length) => {
            while received.len() < header_end + length {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&chunk[..n]);
            }
        }
        None => {
            let _ = stream.read_to_end(&mut received);
        }
    }
    let body = String::from_utf8_lossy(&received[header_end..]).to_string();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head, body))
}

impl Gateway {
    /// Starts `binary run --config ...` (pass `env!("CARGO_BIN_EXE_rackwatch-e2e")`).
    pub fn start(binary: &str, settings: &GatewaySettings) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rackwatch-gateway-")
            .tempdir()
            .unwrap();
        let http_port = free_port();
        let mut toml = String::new();
        writeln!(toml, "site = \"{}\"", settings.site).unwrap();
        let spool = settings
            .spool_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("spool"));
        writeln!(
            toml,
            "[spool]\ndir = \"{}\"\n{}",
            spool.display(),
            settings.spool_extra
        )
        .unwrap();
        writeln!(
            toml,
            "[http]\nlisten = \"127.0.0.1:{http_port}\"\n{}",
            settings.http_extra
        )
        .unwrap();
        if let Some((cert, key)) = &settings.tls {
            writeln!(
                toml,
                "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
                cert.display(),
                key.display()
            )
            .unwrap();
        }
        if let Some(url) = &settings.mqtt_url {
            writeln!(
                toml,
                "[mqtt]\nurl = \"{url}\"\nclient_id = \"{}\"\n{}",
                settings.client_id, settings.mqtt_extra
            )
            .unwrap();
        }
        if let Some(url) = &settings.influx_url {
            writeln!(
                toml,
                "[influxdb]\nurl = \"{url}\"\n{}\nbatch_max_age = \"{}ms\"\nmax_backoff = \"2s\"",
                settings.influx_target,
                settings.batch_max_age.as_millis()
            )
            .unwrap();
        }
        toml.push_str(&settings.extra);
        let config = dir.path().join("rackwatch.toml");
        std::fs::write(&config, toml).unwrap();
        let args = vec![
            "run".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
        ];
        let log = dir.path().join("gateway.log");
        // Over HTTPS the harness's plain GET cannot ask /health: a listening port is enough.
        let ready: fn(u16) -> bool = if settings.tls.is_some() { |_| true } else { healthy };
        let service = Service::start_with_env(
            "rackwatch gateway",
            PathBuf::from(binary),
            args,
            settings.env.clone(),
            log,
            http_port,
            ready,
        );
        Gateway { service, dir, spool }
    }

    /// The spool folder.
    pub fn spool_dir(&self) -> &Path {
        &self.spool
    }

    /// `/health/ready`: its status code and its lines (0 and "" when it does not answer).
    pub fn readiness(&self) -> (u16, String) {
        http_response(self.http_port(), "/health/ready", &[])
            .map(|(status, _, body)| (status, body))
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for `/health/ready` to answer `status` with a body containing `text`;
    /// fails with what it last said.
    pub fn wait_for_readiness(&self, status: u16, text: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let (got, body) = self.readiness();
            if got == status && body.contains(text) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/health/ready did not become {status} with {text:?} within {timeout:?}; it says {got}:\n{body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and returns how long the gateway took to exit (SIGKILL after 10 s).
    pub fn stop_timed(&mut self) -> Duration {
        let started = std::time::Instant::now();
        self.service.stop();
        started.elapsed()
    }

    pub fn http_port(&self) -> u16 {
        self.service.port()
    }

    /// The gateway process's id while it runs (`None` after [`Gateway::kill`] or [`Gateway::stop`]).
    pub fn pid(&self) -> Option<u32> {
        self.service.pid()
    }

    /// The gateway's `/metrics`, as text.
    pub fn metrics(&self) -> String {
        http_get(self.http_port(), "/metrics").unwrap_or_default()
    }

    /// The value of one metric line (`name{labels}` exactly as exposed), or 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        crate::metrics::metric(&crate::metrics::parse_metrics(&self.metrics()), series)
    }

    pub fn kill(&mut self) {
        self.service.kill();
    }

    pub fn stop(&mut self) {
        self.service.stop();
    }

    pub fn restart(&mut self) {
        self.service.restart(healthy);
    }

    pub fn log(&self) -> String {
        self.service.read_log()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The dead-letter file's entries.
    pub fn dead_letters(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.spool.join("dead-letters.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}
