//! Why a configuration cannot be used, and the two checks every section shares: an invalid value
//! names its key ([`invalid`]), and an HTTP endpoint is checked one way ([`check_http_url`]).

use std::path::PathBuf;

/// Why the configuration cannot be used. Always names the key or the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

/// The error for a value that parsed but cannot be used: `key` is the full dotted key
/// (`influxdb.batch_max_lines`, `alerts.rules[2].clear`), `message` says what is wrong with it.
pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The check of every URL the gateway sends HTTP requests to (the database, webhooks): `http://`
/// or `https://`, anything else is a mistake in the file, not a scheme to try.
pub fn check_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(invalid(key, "must start with http:// or https://"))
    }
}
