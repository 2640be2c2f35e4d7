//! A real Prometheus Alertmanager (Debian package `prometheus-alertmanager`, 0.25) on a free loopback
//! port, alone (`--cluster.listen-address=` empty: no gossip), with its configuration and storage in
//! a temporary folder. Read back through its API v2: `/api/v2/alerts` (the alerts it holds open: an
//! alert whose `endsAt` has passed is not listed) and `/api/v2/alerts/groups`.

use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::gateway::http_get;
use crate::process::{Service, find_binary, free_port};

/// A running Alertmanager.
#[derive(Debug)]
pub struct Alertmanager {
    service: Service,
    dir: TempDir,
}

fn ready(port: u16) -> bool {
    http_get(port, "/-/ready").is_some()
}

impl Alertmanager {
    /// Starts one that ends an alert posted without `endsAt` after `resolve_timeout`, groups by
    /// site, alert name and row, and notifies nobody (the tests read its API).
    pub fn start(resolve_timeout: Duration) -> Self {
        let program = find_binary("prometheus-alertmanager", "prometheus-alertmanager");
        let dir = tempfile::Builder::new()
            .prefix("rackwatch-alertmanager-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  resolve_timeout: {}s\nroute:\n  receiver: nobody\n  group_by: [site, alertname, row]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: nobody\n",
                resolve_timeout.as_secs().max(1)
            ),
        )
        .unwrap();
        let port = free_port();
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".to_owned(),
            "--log.level=debug".to_owned(),
        ];
        let log = dir.path().join("alertmanager.log");
        let service = Service::start("alertmanager", program, args, log, port, ready);
        Alertmanager { service, dir }
    }

    pub fn port(&self) -> u16 {
        self.service.port()
    }

    /// `http://127.0.0.1:PORT/api/v2/alerts`, where clients post alerts.
    pub fn alerts_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v2/alerts", self.port())
    }

    /// The alerts it holds open (`GET /api/v2/alerts`).
    pub fn alerts(&self) -> Vec<Value> {
        self.get("/api/v2/alerts")
    }

    /// The open alerts with label `name` = `value`.
    pub fn alerts_where(&self, name: &str, value: &str) -> Vec<Value> {
        self.alerts()
            .into_iter()
            .filter(|a| a["labels"][name] == value)
            .collect()
    }

    /// Its alert groups (`GET /api/v2/alerts/groups`).
    pub fn groups(&self) -> Vec<Value> {
        self.get("/api/v2/alerts/groups")
    }

    fn get(&self, path: &str) -> Vec<Value> {
        let body = http_get(self.port(), path)
            .unwrap_or_else(|| panic!("alertmanager did not answer {path}; its log:\n{}", self.log()));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    pub fn log(&self) -> String {
        self.service.read_log()
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
