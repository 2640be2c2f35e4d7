//! A real InfluxDB 1.x server (Debian package `influxdb`, `influxd`): its own meta, data and WAL
//! folders in a temporary folder, HTTP and the RPC bind address on free loopback ports,
//! `auth-enabled = true` with an admin created through `/query` (InfluxDB lets the first user be
//! created without credentials). Read back with InfluxQL through `/query`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tempfile::TempDir;

use crate::fleet::{Comparison, Published, compare};
use crate::process::{Service, find_binary, free_port};
use crate::victoria::ExportedSeries;

/// The admin the harness creates; tests use it to set up databases and read back.
pub const ADMIN: (&str, &str) = ("admin", "admin-test-password");

/// What the server is started with, beyond the defaults of a test server.
#[derive(Debug, Clone, Default)]
pub struct InfluxDbConfig {
    /// `[http] max-body-size`: a write body larger than this is answered 413.
    pub max_body_size: Option<usize>,
}

/// A running InfluxDB.
#[derive(Debug)]
pub struct InfluxDb {
    service: Service,
    dir: TempDir,
    http: reqwest::Client,
}

/// One series of an InfluxQL result.
#[derive(Debug, Clone, Deserialize)]
pub struct QuerySeries {
    pub name: String,
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    pub columns: Vec<String>,
    #[serde(default)]
    pub values: Vec<Vec<serde_json::Value>>,
}

/// `GET /ping` answers 204 once the server takes queries.
fn healthy(port: u16) -> bool {
    crate::http_response(port, "/ping", &[]).is_some_and(|(status, ..)| status == 204)
}

impl InfluxDb {
    pub fn start() -> Self {
        Self::start_with(InfluxDbConfig::default())
    }

    pub fn start_with(config: InfluxDbConfig) -> Self {
        let program = find_binary("influxd", "influxdb");
        let dir = tempfile::Builder::new()
            .prefix("rackwatch-influxdb-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let mut conf = String::new();
        writeln!(conf, "reporting-disabled = true").unwrap();
        // The RPC service used by backup and restore; its default 8088 may be taken.
        writeln!(conf, "bind-address = \"127.0.0.1:{}\"", free_port()).unwrap();
        writeln!(conf, "[meta]\ndir = \"{}\"", path("meta")).unwrap();
        writeln!(
            conf,
            "[data]\ndir = \"{}\"\nwal-dir = \"{}\"\nquery-log-enabled = false",
            path("data"),
            path("wal")
        )
        .unwrap();
        writeln!(conf, "[monitor]\nstore-enabled = false").unwrap();
        writeln!(conf, "[continuous_queries]\nenabled = false").unwrap();
        writeln!(conf, "[logging]\nlevel = \"warn\"").unwrap();
        writeln!(
            conf,
            "[http]\nbind-address = \"127.0.0.1:{port}\"\nauth-enabled = true\nlog-enabled = false\nmax-row-limit = 0"
        )
        .unwrap();
        if let Some(size) = config.max_body_size {
            writeln!(conf, "max-body-size = {size}").unwrap();
        }
        let conf_path = dir.path().join("influxdb.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let args = vec![
            "run".to_owned(),
            "-config".to_owned(),
            conf_path.display().to_string(),
        ];
        let log = dir.path().join("influxd.log");
        let service = Service::start("influxd", program, args, log, port, healthy);
        let db = InfluxDb {
            service,
            dir,
            http: reqwest::Client::new(),
        };
        let created = raw_query(
            port,
            &format!(
                "CREATE USER {} WITH PASSWORD '{}' WITH ALL PRIVILEGES",
                ADMIN.0, ADMIN.1
            ),
        );
        assert!(
            created.starts_with("HTTP/1.1 200") && !created.contains("\"error\""),
            "creating the admin failed: {created}"
        );
        db
    }

    pub fn port(&self) -> u16 {
        self.service.port()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    pub fn stop(&mut self) {
        self.service.stop();
    }

    pub fn kill(&mut self) {
        self.service.kill();
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

    /// Runs InfluxQL as the admin and returns each statement's series; fails the test on an error.
    pub async fn query(&self, database: &str, query: &str) -> Vec<Vec<QuerySeries>> {
        let response: serde_json::Value = self
            .http
            .post(format!("{}/query", self.url()))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .form(&[("db", database), ("q", query), ("epoch", "ms")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let results = response["results"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: {response}"));
        results
            .iter()
            .map(|result| {
                assert!(result.get("error").is_none(), "{query}: {result}");
                serde_json::from_value(result.get("series").cloned().unwrap_or_default()).unwrap_or_default()
            })
            .collect()
    }

    /// Runs statements that return nothing (CREATE, GRANT, ...).
    pub async fn execute(&self, statements: &str) {
        self.query("", statements).await;
    }

    /// Creates a user who may write (only) to `database`, and a file holding its password; returns
    /// the `[influxdb]` keys of a gateway that writes there with the v1 API.
    pub async fn gateway_writer(&self, database: &str, user: &str) -> String {
        let password = format!("{user}-secret");
        self.execute(&format!(
            "CREATE USER \"{user}\" WITH PASSWORD '{password}'; GRANT WRITE ON \"{database}\" TO \"{user}\""
        ))
        .await;
        let file = self.password_file(user, &password);
        format!(
            "api = \"v1\"\ndatabase = \"{database}\"\nusername = \"{user}\"\npassword = {{ file = \"{}\" }}",
            file.display()
        )
    }

    /// Writes `password` into a file of the server's folder, for a gateway's `password = { file }`.
    pub fn password_file(&self, user: &str, password: &str) -> PathBuf {
        let file = self.dir.path().join(format!("{user}.password"));
        std::fs::write(&file, format!("{password}\n")).unwrap();
        file
    }

    /// The `reading` points of `site` in `database`, one entry per node and channel (the shape
    /// `fleet::compare` reads).
    pub async fn readings(&self, database: &str, site: &str) -> Vec<ExportedSeries> {
        let query = format!(
            "SELECT \"value\" FROM \"reading\" WHERE \"site\" = '{site}' AND \"quantity\" = 'temperature' GROUP BY \"node\", \"channel\""
        );
        let mut statements = self.query(database, &query).await;
        let series = statements.pop().unwrap_or_default();
        series
            .into_iter()
            .map(|s| ExportedSeries {
                metric: s.tags,
                timestamps: s.values.iter().map(|row| row[0].as_i64().unwrap()).collect(),
                values: s.values.iter().map(|row| row[1].as_f64().unwrap()).collect(),
            })
            .collect()
    }

    /// Waits until `database` holds at least as many readings of `site` as were `published` (or
    /// `timeout`), then compares them value by value (`fleet::compare`).
    pub async fn settle_and_compare(
        &self,
        database: &str,
        site: &str,
        published: &[Published],
        timeout: Duration,
    ) -> Comparison {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let series = self.readings(database, site).await;
            let stored: usize = series.iter().map(|s| s.values.len()).sum();
            if stored >= published.len() || tokio::time::Instant::now() >= deadline {
                return compare(&series, published);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// `POST /query` without credentials over a plain socket (the server is not ready for a client
/// with auth before the first user exists); returns the raw response.
fn raw_query(port: u16, query: &str) -> String {
    let body: String = reqwest::Url::parse_with_params("http://x/", &[("q", query)])
        .unwrap()
        .query()
        .unwrap()
        .to_owned();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}
