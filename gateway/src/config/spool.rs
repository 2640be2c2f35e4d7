//! `[spool]`: the on-disk spool between ingest and the database.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration::duration;
use super::error::{ConfigError, invalid};

/// The on-disk spool between ingest and the database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// When the spool holds this much, the gateway stops acknowledging new messages, so the broker
    /// keeps them, until the writer has drained some. Nothing accepted is ever dropped.
    #[serde(default = "default_spool_max_mb")]
    pub max_mb: u64,
    #[serde(default = "default_segment_mb")]
    pub segment_mb: u64,
    /// How long a group commit with serial messages waits for more to share its fdatasync (MQTT
    /// messages come gathered by `mqtt.read_interval`). `0s` commits each batch as it comes.
    #[serde(default = "default_commit_linger", deserialize_with = "duration")]
    pub commit_linger: Duration,
    /// The dead-letter files (current and rotated) together stay under this; it is taken out of
    /// `max_mb`, so bad messages can never fill the disk the spool needs.
    #[serde(default = "default_dead_letter_max_mb")]
    pub dead_letter_max_mb: u64,
    /// Dead letters a second per reason before only one in 100 is written (all are counted).
    #[serde(default = "default_dead_letter_rate")]
    pub dead_letter_rate: u64,
}

fn default_spool_max_mb() -> u64 {
    10 * 1024
}
fn default_segment_mb() -> u64 {
    64
}
fn default_commit_linger() -> Duration {
    Duration::from_millis(5)
}
fn default_dead_letter_max_mb() -> u64 {
    64
}
fn default_dead_letter_rate() -> u64 {
    20
}

impl SpoolConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.commit_linger > Duration::from_secs(1) {
            // The broker waits as long for its PUBACK: beyond a second, nodes would time out.
            return Err(invalid("spool.commit_linger", "must be 0s to 1s"));
        }
        if self.segment_mb == 0 || self.max_mb < self.segment_mb * 2 + self.dead_letter_max_mb {
            return Err(invalid(
                "spool.max_mb",
                format!(
                    "must be at least twice spool.segment_mb plus spool.dead_letter_max_mb ({} MB here), and segment_mb at least 1",
                    self.segment_mb * 2 + self.dead_letter_max_mb
                ),
            ));
        }
        if self.dead_letter_max_mb == 0 {
            return Err(invalid("spool.dead_letter_max_mb", "must be at least 1"));
        }
        Ok(())
    }
}
