//! `[influxdb]`: the database the sink writes to, through the InfluxDB v1 or v2 write API.

use std::time::Duration;

use serde::Deserialize;

use super::duration::duration;
use super::error::{ConfigError, check_http_url, invalid};
use super::secret::SecretSource;

/// Which write API the database speaks (gateway/README.md, "Databases").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InfluxApi {
    /// `POST /write?db=&rp=`: InfluxDB 1.x, InfluxDB 2.x through a DBRP mapping, InfluxDB 3,
    /// VictoriaMetrics, QuestDB.
    V1,
    /// `POST /api/v2/write?org=&bucket=`: InfluxDB 2.x, 3, Cloud, VictoriaMetrics.
    #[default]
    V2,
}

impl InfluxApi {
    const fn as_str(self) -> &'static str {
        match self {
            InfluxApi::V1 => "v1",
            InfluxApi::V2 => "v2",
        }
    }
}

/// The database the sink writes to, through the InfluxDB v1 or v2 write API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    #[serde(default)]
    pub api: InfluxApi,
    /// v2: organisation and bucket.
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    /// v2: API token (`Authorization: Token ...`).
    #[serde(default)]
    pub token: Option<SecretSource>,
    /// v1: database and, optionally, retention policy (the database's default otherwise).
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// v1: user and password (HTTP Basic). Against InfluxDB 2.x's v1 API the password is a token.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// A write is sent when it has this many lines ...
    #[serde(default = "default_batch_max_lines")]
    pub batch_max_lines: usize,
    /// ... or when its oldest line has waited this long.
    #[serde(default = "default_batch_max_age", deserialize_with = "duration")]
    pub batch_max_age: Duration,
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// How long one write may take before it counts as failed and is retried.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Longest wait between two retries of a failed write.
    #[serde(default = "default_max_backoff", deserialize_with = "duration")]
    pub max_backoff: Duration,
}

fn default_true() -> bool {
    true
}
fn default_batch_max_lines() -> usize {
    5000
}
fn default_batch_max_age() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl InfluxConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check_http_url("influxdb.url", &self.url)?;
        if !(1..=100_000).contains(&self.batch_max_lines) {
            return Err(invalid("influxdb.batch_max_lines", "must be 1 to 100000"));
        }
        if self.timeout.is_zero() {
            return Err(invalid("influxdb.timeout", "must be more than 0s"));
        }
        self.validate_api()
    }

    /// Each API takes its own keys: a key of the other one is a mistake worth naming.
    fn validate_api(&self) -> Result<(), ConfigError> {
        // (key, given) pairs: keys this API needs, keys of the other API.
        type Keys<'a> = &'a [(&'a str, bool)];
        let (needed, foreign): (Keys, Keys) = match self.api {
            InfluxApi::V1 => (
                &[("database", self.database.is_some())],
                &[
                    ("org", self.org.is_some()),
                    ("bucket", self.bucket.is_some()),
                    ("token", self.token.is_some()),
                ],
            ),
            InfluxApi::V2 => (
                &[("org", self.org.is_some()), ("bucket", self.bucket.is_some())],
                &[
                    ("database", self.database.is_some()),
                    ("retention_policy", self.retention_policy.is_some()),
                    ("username", self.username.is_some()),
                    ("password", self.password.is_some()),
                ],
            ),
        };
        let api = self.api.as_str();
        if let Some((key, _)) = needed.iter().find(|(_, given)| !given) {
            return Err(invalid(
                format!("influxdb.{key}"),
                format!("required with api = \"{api}\""),
            ));
        }
        if let Some((key, _)) = foreign.iter().find(|(_, given)| *given) {
            return Err(invalid(
                format!("influxdb.{key}"),
                format!("not a key of api = \"{api}\" (see gateway/README.md, \"Databases\")"),
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(invalid("influxdb.password", "username and password go together"));
        }
        if let Some(secret) = &self.token {
            secret.validate("influxdb.token")?;
        }
        if let Some(secret) = &self.password {
            secret.validate("influxdb.password")?;
        }
        Ok(())
    }
}
