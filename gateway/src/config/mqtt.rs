//! `[mqtt]`: the broker the gateway subscribes to, and `[[serial]]`: nodes on a serial port. These
//! are the gateway's two sources; at least one is configured.

use std::path::PathBuf;
use std::time::Duration;

use rackwatch_protocols::Label;
use serde::Deserialize;

use super::duration::duration;
use super::error::{ConfigError, invalid};
use super::secret::SecretSource;
use crate::model::BrokerAddress;

/// What the gateway's own MQTT connections add to `mqtt.client_id`: the alert engine's (`-a`) and
/// the node commands' (`-c`). Short, so the default id with a partition suffix stays within 23.
pub const CONNECTION_SUFFIXES: [&str; 2] = [ALERTS_CLIENT_SUFFIX, COMMANDS_CLIENT_SUFFIX];
pub const ALERTS_CLIENT_SUFFIX: &str = "-a";
pub const COMMANDS_CLIENT_SUFFIX: &str = "-c";

/// MQTT 3.1.1 §3.1.3.1: a server must accept client ids of 1 to 23 characters.
const MAX_CLIENT_ID: usize = 23;

/// MQTT 3.1.1 §3.1.2.10: the keep alive is a 16-bit number of seconds. Below 5 s a slow link
/// would drop the session for nothing.
const KEEP_ALIVE: std::ops::RangeInclusive<Duration> = Duration::from_secs(5)..=Duration::from_secs(65_535);

/// The MQTT broker the gateway subscribes to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    pub url: String,
    /// Fixed, so the broker keeps this gateway's persistent session (and its queued QoS 1 messages)
    /// across restarts of either side.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// PEM file of the CA that signed the broker's certificate (default: the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that authenticate clients by certificate.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// How long the connection may be idle before either side pings (MQTT 3.1.1 §3.1.2.10); the
    /// broker drops the session after one and a half times this without a packet.
    #[serde(default = "default_keep_alive", deserialize_with = "duration")]
    pub keep_alive: Duration,
    /// MQTT shared-subscription group (`$share/{group}/...`) when several gateways serve one site.
    #[serde(default)]
    pub share_group: Option<String>,
    /// Messages received but not yet spooled and acknowledged; bounds memory under a burst.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// After a read that emptied the connection, the next waits this long: the messages that
    /// arrive meanwhile are read, spooled with one fdatasync and acknowledged with one write. It
    /// adds at most this much between publish and stored; `0s` reads each message as it comes.
    #[serde(default = "default_read_interval", deserialize_with = "duration")]
    pub read_interval: Duration,
    /// The gateway stops reading while a message it has read waits this long for ingest; the broker
    /// keeps the rest. Bounds how long a reading waits before the alert engine sees it.
    #[serde(default = "default_max_queue_delay", deserialize_with = "duration")]
    pub max_queue_delay: Duration,
}

/// One serial port with rackwatch nodes behind it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    pub port: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
}

fn default_client_id() -> String {
    "rackwatch-gateway".to_owned()
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_max_pending() -> usize {
    4096
}
fn default_read_interval() -> Duration {
    Duration::from_millis(20)
}
fn default_max_queue_delay() -> Duration {
    Duration::from_millis(2)
}
fn default_baud() -> u32 {
    115_200
}

impl MqttConfig {
    /// `partition_suffix` is what `[cluster]` adds to the client id (`-p3`), if anything.
    pub(super) fn validate(&self, partition_suffix: &str) -> Result<(), ConfigError> {
        BrokerAddress::parse(&self.url).map_err(|m| invalid("mqtt.url", m))?;
        self.check_client_ids(partition_suffix)?;
        if !KEEP_ALIVE.contains(&self.keep_alive) {
            return Err(invalid("mqtt.keep_alive", "must be 5s to 65535s"));
        }
        if self.read_interval > Duration::from_secs(1) {
            return Err(invalid("mqtt.read_interval", "must be 0s to 1s"));
        }
        if self.max_queue_delay.is_zero() || self.max_queue_delay > Duration::from_secs(10) {
            return Err(invalid("mqtt.max_queue_delay", "must be 1ms to 10s"));
        }
        if self.max_pending == 0 {
            return Err(invalid("mqtt.max_pending", "must be at least 1"));
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err(invalid(
                "mqtt.client_key_file",
                "client_cert_file and client_key_file go together",
            ));
        }
        if let Some(secret) = &self.password {
            secret.validate("mqtt.password")?;
        }
        if let Some(group) = &self.share_group {
            Label::new(group).map_err(|e| invalid("mqtt.share_group", format!("{e}")))?;
        }
        Ok(())
    }

    /// MQTT 3.1.1 §3.1.3.1: a server must accept client ids of 1 to 23 characters and may refuse
    /// longer ones. The gateway's connections add suffixes to `mqtt.client_id` (`-pN` per partition,
    /// [`CONNECTION_SUFFIXES`] for its own connections): the longest result must fit too.
    fn check_client_ids(&self, partition_suffix: &str) -> Result<(), ConfigError> {
        let client_id = &self.client_id;
        let suffix = CONNECTION_SUFFIXES
            .iter()
            .max_by_key(|s| s.len())
            .copied()
            .unwrap_or_default();
        let longest = format!("{client_id}{partition_suffix}{suffix}");
        if client_id.is_empty() || longest.len() > MAX_CLIENT_ID {
            let room = MAX_CLIENT_ID.saturating_sub(partition_suffix.len() + suffix.len());
            return Err(invalid(
                "mqtt.client_id",
                format!(
                    "must be 1 to {room} characters: the gateway connects as `{longest}` too ({} characters), and MQTT 3.1.1 servers need accept only 23",
                    longest.len()
                ),
            ));
        }
        Ok(())
    }
}
