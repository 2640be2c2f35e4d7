//! `[history]`: the gateway's own history (gateway/src/sink/history): where it lives, how long
//! each resolution is kept and how large its file may grow. Without `[influxdb]` it is the spool's
//! sink, so the spool drains; `enabled = false` keeps everything in the spool instead, until a
//! database is configured.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::duration::duration;
use super::error::{ConfigError, invalid};

/// The smallest bound accepted: below it redb's own page and region overhead would not fit.
pub const MIN_MAX_MB: u64 = 1;

/// The `[history]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// On by default; off, a gateway without `[influxdb]` keeps its readings in the spool.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Where the store's file lives; by default `history/` in the spool's folder.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_minute_retention", deserialize_with = "duration")]
    pub minute_retention: Duration,
    #[serde(default = "default_hour_retention", deserialize_with = "duration")]
    pub hour_retention: Duration,
    #[serde(default = "default_max_mb")]
    pub max_mb: u64,
}

fn enabled() -> bool {
    true
}

impl Default for HistoryConfig {
    fn default() -> Self {
        let limits = HistoryLimits::default();
        HistoryConfig {
            enabled: true,
            dir: None,
            minute_retention: limits.minute_retention,
            hour_retention: limits.hour_retention,
            max_mb: limits.max_mb,
        }
    }
}

impl HistoryConfig {
    /// The store's folder: `dir`, or `history/` in the spool's folder (the spool reads only its
    /// `*.seg` files there).
    pub fn dir(&self, spool_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| spool_dir.join("history"))
    }

    pub fn limits(&self) -> HistoryLimits {
        HistoryLimits {
            minute_retention: self.minute_retention,
            hour_retention: self.hour_retention,
            max_mb: self.max_mb,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_mb < MIN_MAX_MB {
            return Err(invalid(
                "history.max_mb",
                format!("must be at least {MIN_MAX_MB}"),
            ));
        }
        if self.hour_retention < self.minute_retention {
            return Err(invalid(
                "history.hour_retention",
                "must be at least minute_retention: hours carry the long charts",
            ));
        }
        Ok(())
    }
}

/// `[history]` limits: how long each resolution is kept and how large the file may grow.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryLimits {
    /// How long 1-minute buckets are kept (`"30d"`).
    #[serde(default = "default_minute_retention", deserialize_with = "duration")]
    pub minute_retention: Duration,
    /// How long 1-hour buckets are kept (`"395d"`, 13 months).
    #[serde(default = "default_hour_retention", deserialize_with = "duration")]
    pub hour_retention: Duration,
    /// The bound on the file, in MiB (at least 1).
    #[serde(default = "default_max_mb")]
    pub max_mb: u64,
}

fn default_minute_retention() -> Duration {
    Duration::from_secs(30 * 86_400)
}

fn default_hour_retention() -> Duration {
    Duration::from_secs(395 * 86_400)
}

fn default_max_mb() -> u64 {
    512
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            minute_retention: default_minute_retention(),
            hour_retention: default_hour_retention(),
            max_mb: default_max_mb(),
        }
    }
}

impl HistoryLimits {
    pub fn max_bytes(&self) -> u64 {
        self.max_mb.saturating_mul(1024 * 1024)
    }
}
