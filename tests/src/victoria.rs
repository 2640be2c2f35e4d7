//! A real VictoriaMetrics (Debian package `victoria-metrics`): a server of the InfluxDB v2 write API
//! (`/api/v2/write`) whose stored values the tests read back through `/api/v1/export`.

use std::time::Duration;

use serde::Deserialize;
use tempfile::TempDir;

use crate::process::{Service, find_binary, free_port};

/// A running VictoriaMetrics with its own data folder.
#[derive(Debug)]
pub struct VictoriaMetrics {
    service: Service,
    dir: TempDir,
    client: VictoriaClient,
}

/// What reads a VictoriaMetrics back (and writes test lines to it): a cheap clone that tasks can
/// own, apart from the server process.
#[derive(Debug, Clone)]
pub struct VictoriaClient {
    url: String,
    http: reqwest::Client,
}

/// One series as `/api/v1/export` gives it: the metric name is `{measurement}_{field}`, the labels
/// are the line protocol's tags.
#[derive(Debug, Clone, Deserialize)]
pub struct ExportedSeries {
    pub metric: std::collections::BTreeMap<String, String>,
    pub values: Vec<f64>,
    pub timestamps: Vec<i64>,
}

impl ExportedSeries {
    pub fn name(&self) -> &str {
        self.metric.get("__name__").map_or("", String::as_str)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.metric.get(key).map(String::as_str)
    }
}

/// `GET /health` answers `OK` once the server can take writes.
fn healthy(port: u16) -> bool {
    crate::http_response(port, "/health", &[]).is_some_and(|(status, ..)| status == 200)
}

impl VictoriaMetrics {
    pub fn start() -> Self {
        let program = find_binary("victoria-metrics", "victoria-metrics");
        let dir = tempfile::Builder::new()
            .prefix("rackwatch-victoria-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let args = vec![
            format!("-storageDataPath={}", dir.path().join("data").display()),
            format!("-httpListenAddr=127.0.0.1:{port}"),
            // InfluxDB keeps one point per series and timestamp; this makes VictoriaMetrics do the
            // same, so a retried write of the same point is stored once and a point stored twice
            // under different timestamps shows up as two.
            "-dedup.minScrapeInterval=1ms".to_owned(),
            // Return points up to now, not up to now - 30 s.
            "-search.latencyOffset=0s".to_owned(),
            "-retentionPeriod=100y".to_owned(),
        ];
        let log = dir.path().join("victoria-metrics.log");
        let service = Service::start("victoria-metrics", program, args, log, port, healthy);
        let client = VictoriaClient {
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        VictoriaMetrics { service, dir, client }
    }

    pub fn port(&self) -> u16 {
        self.service.port()
    }

    /// The base URL a client of the InfluxDB v2 API is pointed at.
    pub fn url(&self) -> String {
        self.client.url.clone()
    }

    /// A client of this server that can outlive a borrow of it (a task's own).
    pub fn client(&self) -> VictoriaClient {
        self.client.clone()
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

    pub fn is_running(&self) -> bool {
        self.service.is_running()
    }

    pub fn log(&self) -> String {
        self.service.read_log()
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes line protocol through the InfluxDB v2 write API, millisecond precision.
    pub async fn write_lines(&self, lines: &str) -> reqwest::Result<reqwest::StatusCode> {
        let url = format!(
            "{}/api/v2/write?org=rackwatch&bucket=rackwatch&precision=ms",
            self.url()
        );
        Ok(self
            .client
            .http
            .post(url)
            .body(lines.to_owned())
            .send()
            .await?
            .status())
    }

    /// Polls [`Self::export`] every 200 ms until `done` holds for its result or `timeout` passes,
    /// and returns the last result. VictoriaMetrics makes accepted points searchable about a second
    /// after the write returns, so a test that expects data waits for it through this.
    pub async fn export_until(
        &self,
        selector: &str,
        timeout: Duration,
        done: impl Fn(&[ExportedSeries]) -> bool,
    ) -> Vec<ExportedSeries> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let series = self.export(selector).await;
            if done(&series) || tokio::time::Instant::now() >= deadline {
                return series;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every series matching the series selector `selector` (e.g. `{__name__="reading_value"}`)
    /// as stored now.
    pub async fn export(&self, selector: &str) -> Vec<ExportedSeries> {
        let response = self
            .client
            .export(selector, 0, true)
            .await
            .expect("export from VictoriaMetrics");
        let mut series = Vec::new();
        VictoriaClient::for_each_series(response, |s| series.push(s)).await;
        series
    }
}

impl VictoriaClient {
    /// The value of a PromQL query whose result is one number (`sum(...)`): 0 when it matches no
    /// series, `None` when the query failed (the database is down).
    pub async fn query_scalar(&self, query: &str) -> Option<f64> {
        let response = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query), ("nocache", "1")])
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = response.json().await.ok()?;
        let result = body["data"]["result"].as_array()?;
        match result.first() {
            None => Some(0.0),
            Some(first) => first["value"][1].as_str()?.parse().ok(),
        }
    }

    /// `/api/v1/export` of the series matching `selector` from `start_ms` on, as a response to
    /// read in chunks ([`Self::for_each_series`]); `flush` first makes every accepted point
    /// searchable. `None` when the database did not answer 2xx.
    pub async fn export(&self, selector: &str, start_ms: i64, flush: bool) -> Option<reqwest::Response> {
        if flush {
            self.http
                .get(format!("{}/internal/force_flush", self.url))
                .send()
                .await
                .ok()?
                .error_for_status()
                .ok()?;
        }
        let start = format!("{:.3}", start_ms as f64 / 1000.0);
        self.http
            .post(format!("{}/api/v1/export", self.url))
            .form(&[("match[]", selector), ("start", start.as_str())])
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()
    }

    /// Feeds every series line of an export to `each`, reading the response in chunks so a large
    /// export is never held whole.
    pub async fn for_each_series(mut response: reqwest::Response, mut each: impl FnMut(ExportedSeries)) {
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await.expect("export body") {
            pending.extend_from_slice(&chunk);
            let mut consumed = 0;
            while let Some(end) = pending[consumed..].iter().position(|b| *b == b'\n') {
                let line = &pending[consumed..consumed + end];
                if !line.is_empty() {
                    each(serde_json::from_slice(line).expect("an export line"));
                }
                consumed += end + 1;
            }
            pending.drain(..consumed);
        }
        if !pending.is_empty() {
            each(serde_json::from_slice(&pending).expect("an export line"));
        }
    }
}
