//! `[http]`: the HTTP server of `/metrics`, `/health`, the API and the dashboard.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration::duration;
use super::error::{ConfigError, invalid};
use super::secret::SecretSource;

/// The HTTP server: `/metrics`, `/health` and the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Binds to loopback unless configured otherwise.
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// Bearer token the API's acting routes (acknowledge, silence) require; without it they refuse.
    #[serde(default)]
    pub token: Option<SecretSource>,
    /// How far back the facilities view's rack charts go, in whole minutes (one point per minute per
    /// inventory rack, kept in memory).
    #[serde(default = "default_window", deserialize_with = "duration")]
    pub window: Duration,
    /// How far back the trend of each rack's hottest inlet looks for the dashboard's time to the
    /// limit ("32 °C in ~7 min"): long enough that one probe's noise makes no trend, short enough
    /// to follow a cooling failure.
    #[serde(default = "default_forecast_window", deserialize_with = "duration")]
    pub forecast_window: Duration,
    /// PEM certificate chain and private key: with both, the server speaks HTTPS only.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// The address people reach the dashboard at (`https://rackwatch.fra1.example/`): alert
    /// notifications link to the rack there (Alertmanager's `generatorURL`).
    #[serde(default)]
    pub public_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            token: None,
            window: default_window(),
            forecast_window: default_forecast_window(),
            tls_cert_file: None,
            tls_key_file: None,
            public_url: None,
        }
    }
}

fn default_forecast_window() -> Duration {
    Duration::from_secs(600)
}

fn default_window() -> Duration {
    Duration::from_secs(6 * 3600)
}
const MINUTE: Duration = Duration::from_secs(60);

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9180))
}

impl HttpConfig {
    /// The chart window as its number of one-minute points.
    pub fn window_minutes(&self) -> usize {
        usize::try_from(self.window.as_secs() / 60).unwrap_or(usize::MAX)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(invalid(
                "http.tls_key_file",
                "tls_cert_file and tls_key_file go together",
            ));
        }
        if self.window < MINUTE || !self.window.as_nanos().is_multiple_of(MINUTE.as_nanos()) {
            return Err(invalid(
                "http.window",
                "must be whole minutes (one chart point per minute), at least 1m",
            ));
        }
        // A trend needs a few readings: a second is the least that holds more than one.
        if self.forecast_window < Duration::from_secs(1) {
            return Err(invalid("http.forecast_window", "at least 1s"));
        }
        if let Some(token) = &self.token {
            token.validate("http.token")?;
        }
        Ok(())
    }
}
