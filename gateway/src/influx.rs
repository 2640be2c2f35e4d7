//! The sink: drains the spool into a server of the InfluxDB v2 write API (`POST /api/v2/write`).
//!
//! Written on reqwest rather than through the influxdb2 crate: its raw line-protocol write sends no
//! `Content-Encoding: gzip` (gzip only applies to its `DataPoint` stream, at maximum compression),
//! and its error type drops the response headers, so a 429/503 `Retry-After` could not be honoured.
//! The API is the same: InfluxDB 2.x/3.x/Cloud, and VictoriaMetrics, accept these requests.
//!
//! Retry policy: connection errors, timeouts, 429 and 5xx are retried forever with exponential
//! backoff (100 ms doubling, capped at `influxdb.max_backoff_secs`) and full jitter, or after the
//! server's `Retry-After`; the batch stays in the spool meanwhile. A 4xx other than 429 means the
//! server will never take these points (400: bad line protocol; 401/403: bad token): 400 batches go
//! to the dead-letter file with the server's message, 401/403/404 are retried so a fixed token or a
//! created bucket resumes writing without losing anything.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use rand::Rng;
use reqwest::StatusCode;
use tokio::sync::Notify;

use crate::config::{ConfigError, InfluxConfig};
use crate::deadletter::DeadLetters;
use crate::events::{Metrics, WriteFailed};
use crate::model::now_ms;
use crate::shutdown::Shutdown;
use crate::spool::{Batch, SpoolReader};

/// Why a write did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{detail}")]
    Retry {
        reason: &'static str,
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("server refused the points ({status}): {detail}")]
    Refused { status: StatusCode, detail: String },
}

/// A client of one bucket's write endpoint.
#[derive(Debug, Clone)]
pub struct InfluxWriter {
    http: reqwest::Client,
    url: String,
    token: Option<crate::secret::Secret>,
    gzip: bool,
    max_backoff: Duration,
}

impl InfluxWriter {
    pub fn new(config: &InfluxConfig) -> Result<Self, ConfigError> {
        let token = config
            .token
            .as_ref()
            .map(|t| t.read("influxdb.token").map(crate::secret::Secret::new))
            .transpose()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs))
            .build()
            .map_err(|e| ConfigError::Invalid {
                key: "influxdb".into(),
                message: e.to_string(),
            })?;
        let base = config.url.trim_end_matches('/');
        let query = serde_urlencoded_pairs(&[
            ("org", &config.org),
            ("bucket", &config.bucket),
            ("precision", "ms"),
        ]);
        Ok(InfluxWriter {
            http,
            url: format!("{base}/api/v2/write?{query}"),
            token,
            gzip: config.gzip,
            max_backoff: Duration::from_secs(config.max_backoff_secs),
        })
    }

    /// One attempt to write `body` (line protocol, ms precision).
    pub async fn write(&self, body: &[u8]) -> Result<(), WriteError> {
        let mut request = self
            .http
            .post(&self.url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Token {}", token.expose()));
        }
        request = if self.gzip {
            let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
            let compressed = encoder
                .write_all(body)
                .and_then(|()| encoder.finish())
                .map_err(|e| WriteError::Retry {
                    reason: "gzip",
                    detail: e.to_string(),
                    retry_after: None,
                })?;
            request.header("Content-Encoding", "gzip").body(compressed)
        } else {
            request.body(body.to_vec())
        };
        let response = request.send().await.map_err(|e| WriteError::Retry {
            reason: if e.is_timeout() { "timeout" } else { "connection" },
            detail: e.to_string(),
            retry_after: None,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(300)));
        let detail = response.text().await.unwrap_or_default();
        let detail = detail.chars().take(500).collect::<String>();
        match status {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNPROCESSABLE_ENTITY => {
                Err(WriteError::Refused { status, detail })
            }
            StatusCode::TOO_MANY_REQUESTS => Err(WriteError::Retry {
                reason: "throttled",
                detail,
                retry_after,
            }),
            s if s.is_server_error() => Err(WriteError::Retry {
                reason: "server_error",
                detail,
                retry_after,
            }),
            _ => Err(WriteError::Retry {
                reason: "unauthorized",
                detail: format!("{status}: {detail}"),
                retry_after: None,
            }),
        }
    }

    /// The wait before retry number `attempt` (0-based): exponential with full jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = Duration::from_millis(100)
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_backoff);
        let jittered = rand::rng().random_range(ceiling.as_millis() / 2..=ceiling.as_millis().max(1));
        Duration::from_millis(u64::try_from(jittered).unwrap_or(u64::MAX))
    }
}

fn serde_urlencoded_pairs(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").unwrap_or_else(|_| unreachable_url());
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

#[allow(clippy::panic, reason = "a constant URL that always parses")]
fn unreachable_url() -> reqwest::Url {
    panic!("constant URL does not parse")
}

/// The sink task: everything it needs to drain the spool into the database.
#[derive(Debug)]
pub struct Drain {
    pub reader: SpoolReader,
    pub writer: InfluxWriter,
    pub config: InfluxConfig,
    /// Signalled by ingest after every commit.
    pub committed: Arc<Notify>,
    pub dead_letters: Arc<Mutex<DeadLetters>>,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
    /// How long to keep draining after shutdown.
    pub grace: Duration,
}

/// Drains the spool into the database until shutdown, then for at most `grace` more.
pub async fn drain(task: Drain) {
    let Drain {
        mut reader,
        writer,
        config,
        committed,
        dead_letters,
        metrics,
        mut shutdown,
        grace,
    } = task;
    let max_age = Duration::from_millis(config.batch_max_age_ms);
    let mut batch = Batch::default();
    let mut deadline: Option<Instant> = None;
    loop {
        batch.body.clear();
        batch.lines = 0;
        batch.end = None;
        if let Err(e) = reader.read(&mut batch, config.batch_max_lines) {
            tracing::error!("spool read failed: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        metrics
            .spool_pending_bytes
            .set(i64::try_from(reader.pending_bytes()).unwrap_or(i64::MAX));
        if batch.lines == 0 {
            if let Some(end) = batch.end {
                let _ = reader.advance(end);
            }
            if shutdown.is_shutdown() {
                return;
            }
            tokio::select! {
                () = committed.notified() => {}
                () = shutdown.recv() => { deadline = Some(Instant::now() + grace); }
            }
            continue;
        }
        // Age batching: a small batch waits up to `batch_max_age` for more lines.
        let started = Instant::now();
        while batch.lines < config.batch_max_lines && !shutdown.is_shutdown() {
            let Some(left) = max_age.checked_sub(started.elapsed()) else {
                break;
            };
            tokio::select! {
                () = committed.notified() => {}
                () = tokio::time::sleep(left) => break,
                () = shutdown.recv() => { deadline = Some(Instant::now() + grace); break }
            }
            if let Err(e) = reader.read(&mut batch, config.batch_max_lines) {
                tracing::error!("spool read failed: {e}");
                break;
            }
        }

        let mut attempt = 0;
        loop {
            let t0 = Instant::now();
            match writer.write(&batch.body).await {
                Ok(()) => {
                    metrics.write_seconds.observe(t0.elapsed().as_secs_f64());
                    metrics.points_written.inc_by(batch.lines as u64);
                    break;
                }
                Err(WriteError::Refused { status, detail }) => {
                    let detail = format!("{status}: {detail}");
                    WriteFailed {
                        reason: "refused",
                        detail: &detail,
                        retry_in: None,
                    }
                    .emit(&metrics);
                    let mut letters = dead_letters
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let _ = letters.record(now_ms(), "write_refused", None, None, &detail, &batch.body);
                    let _ = letters.sync();
                    break;
                }
                Err(WriteError::Retry {
                    reason,
                    detail,
                    retry_after,
                }) => {
                    let wait = retry_after.unwrap_or_else(|| writer.backoff(attempt));
                    attempt += 1;
                    WriteFailed {
                        reason,
                        detail: &detail,
                        retry_in: Some(wait),
                    }
                    .emit(&metrics);
                    if shutdown.is_shutdown() && deadline.is_none_or(|d| Instant::now() + wait > d) {
                        tracing::warn!(
                            "shutting down with the spool not drained; it is written after the restart"
                        );
                        return;
                    }
                    if shutdown.is_shutdown() {
                        tokio::time::sleep(wait).await;
                    } else {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = shutdown.recv() => { deadline = Some(Instant::now() + grace); }
                        }
                    }
                }
            }
        }
        if let Some(end) = batch.end
            && let Err(e) = reader.advance(end)
        {
            tracing::error!("spool cursor could not be saved: {e}");
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            tracing::warn!("shutdown grace over with the spool not drained; it is written after the restart");
            return;
        }
    }
}
