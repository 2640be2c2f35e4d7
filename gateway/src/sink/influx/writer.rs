//! One write request to the database, through the InfluxDB v1 (`/write`) or v2 (`/api/v2/write`)
//! API, with millisecond timestamps and a gzip body.
//!
//! Written on reqwest rather than through the influxdb2 crate: its raw line-protocol write sends no
//! `Content-Encoding: gzip`, it speaks no v1 API, and its error type drops the response headers, so
//! a 429/503 `Retry-After` could not be honoured.

use std::io::Write as _;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use rand::Rng;

use super::answer::{Answer, classify};
use crate::config::{ConfigError, InfluxApi, InfluxConfig, invalid};
use crate::secret::Secret;

/// How the writer proves who it is. Never printed: the secrets are [`Secret`]s and `Debug` shows
/// the scheme only.
#[derive(Clone)]
enum Credentials {
    None,
    /// v2: `Authorization: Token ...`.
    Token(Secret),
    /// v1: HTTP Basic (InfluxDB 1.x accepts it beside `u=`/`p=`, which would put the password in
    /// the URL and so in proxies' logs).
    Basic {
        username: String,
        password: Secret,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token(_) => f.write_str("Token(..)"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ..)"),
        }
    }
}

/// A client of one database's write endpoint.
#[derive(Debug, Clone)]
pub struct InfluxWriter {
    http: reqwest::Client,
    url: reqwest::Url,
    credentials: Credentials,
    gzip: bool,
    max_backoff: Duration,
}

impl InfluxWriter {
    pub fn new(config: &InfluxConfig) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| invalid("influxdb", e.to_string()))?;
        let base = config.url.trim_end_matches('/');
        let (path, query, credentials) = match config.api {
            InfluxApi::V2 => {
                let token = config
                    .token
                    .as_ref()
                    .map(|t| t.read("influxdb.token").map(Secret::new))
                    .transpose()?;
                let pairs = [
                    ("org", config.org.as_deref()),
                    ("bucket", config.bucket.as_deref()),
                ];
                (
                    "/api/v2/write",
                    pairs,
                    token.map_or(Credentials::None, Credentials::Token),
                )
            }
            InfluxApi::V1 => {
                let credentials = match (&config.username, &config.password) {
                    (Some(username), Some(password)) => Credentials::Basic {
                        username: username.clone(),
                        password: Secret::new(password.read("influxdb.password")?),
                    },
                    _ => Credentials::None,
                };
                let pairs = [
                    ("db", config.database.as_deref()),
                    ("rp", config.retention_policy.as_deref()),
                ];
                ("/write", pairs, credentials)
            }
        };
        let mut url = reqwest::Url::parse(&format!("{base}{path}"))
            .map_err(|e| invalid("influxdb.url", e.to_string()))?;
        url.query_pairs_mut()
            .extend_pairs(query.iter().filter_map(|(k, v)| Some((k, (*v)?))))
            .append_pair("precision", "ms");
        Ok(InfluxWriter {
            http,
            url,
            credentials,
            gzip: config.gzip,
            max_backoff: config.max_backoff,
        })
    }

    /// One attempt to write `body` (line protocol, ms precision).
    pub async fn write(&self, body: &[u8]) -> Answer {
        let mut request = self
            .http
            .post(self.url.clone())
            .header("Content-Type", "text/plain; charset=utf-8");
        request = match &self.credentials {
            Credentials::None => request,
            Credentials::Token(token) => request.header("Authorization", format!("Token {}", token.expose())),
            Credentials::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
        };
        request = if self.gzip {
            match off_the_workers(|| gzip(body)) {
                Ok(compressed) => request.header("Content-Encoding", "gzip").body(compressed),
                Err(e) => {
                    return Answer::Retry {
                        reason: "gzip",
                        detail: e.to_string(),
                        retry_after: None,
                    };
                }
            }
        } else {
            request.body(body.to_vec())
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return Answer::Retry {
                    reason: if e.is_timeout() { "timeout" } else { "connection" },
                    detail: e.to_string(),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = if status.is_success() {
            String::new()
        } else {
            response.text().await.unwrap_or_default()
        };
        classify(status, &headers, &body)
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

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

/// Runs `work` (milliseconds of CPU: gzip of a 5,000-line batch) so that it holds up no other task:
/// on a multi-threaded runtime the tasks waiting on this worker (the alert engine, the MQTT source)
/// move to another thread meanwhile.
fn off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSource;

    fn config(api: InfluxApi) -> InfluxConfig {
        let text = match api {
            InfluxApi::V1 => {
                "url = \"http://db:8086/\"\napi = \"v1\"\ndatabase = \"racks\"\nretention_policy = \"one year\""
            }
            InfluxApi::V2 => "url = \"http://db:8086\"\norg = \"facilities\"\nbucket = \"racks\"",
        };
        toml::from_str(text).unwrap()
    }

    #[test]
    fn each_api_has_its_endpoint() {
        let v1 = InfluxWriter::new(&config(InfluxApi::V1)).unwrap();
        assert_eq!(
            v1.url.as_str(),
            "http://db:8086/write?db=racks&rp=one+year&precision=ms"
        );
        let v2 = InfluxWriter::new(&config(InfluxApi::V2)).unwrap();
        assert_eq!(
            v2.url.as_str(),
            "http://db:8086/api/v2/write?org=facilities&bucket=racks&precision=ms"
        );
    }

    #[test]
    fn debug_never_shows_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("password");
        std::fs::write(&secret, "hunter2-secret\n").unwrap();
        let mut config = config(InfluxApi::V1);
        config.username = Some("gateway".into());
        config.password = Some(SecretSource {
            env: None,
            file: Some(secret),
        });
        let writer = InfluxWriter::new(&config).unwrap();
        let shown = format!("{writer:?}");
        assert!(shown.contains("Basic(gateway, ..)"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
