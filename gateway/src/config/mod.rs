//! The gateway's configuration: one TOML file, one serde struct tree, every key documented in the
//! module of its section.
//!
//! - [`mqtt`]: `[mqtt]` and `[[serial]]`, the sources; [`influxdb`]: the database; [`spool`];
//!   [`http`]: the server, API and dashboard; [`normalise`]: what is accepted as data;
//!   [`nodes`]: the inventory; [`cluster`]: partitions of a site; [`alerts`] with its [`rules`] and
//!   the [`ashrae`] presets.
//! - [`error`]: the one error type, the one helper for an invalid value, the one URL check;
//!   [`duration`]: the one way a duration is written (`"5s"`, `"4h"`); [`secret`]: where a secret
//!   is read from.
//!
//! Validation runs once at start; each error names the key (`influxdb.batch_max_lines`) and says what
//! is wrong. Secrets (MQTT password, InfluxDB token) never sit in the file: the file names an
//! environment variable or a file that holds them, and they are never logged.
//!
//! This module imports no stage of the gateway, only `model` and `protocols`: the stages read it.

pub mod alerts;
pub mod ashrae;
pub mod cluster;
pub mod duration;
pub mod error;
pub mod history;
pub mod http;
pub mod influxdb;
pub mod mqtt;
pub mod nodes;
pub mod normalise;
pub mod rules;
pub mod secret;
pub mod spool;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rackwatch_protocols::{NodeId, SiteId};
use serde::Deserialize;

pub use alerts::{AlertsConfig, CoolingConfig, WebhookConfig, WebhookFormat};
pub use cluster::ClusterConfig;
pub use duration::parse_duration;
pub use error::{ConfigError, check_http_url, invalid};
pub use history::{HistoryConfig, HistoryLimits};
pub use http::HttpConfig;
pub use influxdb::{InfluxApi, InfluxConfig};
pub use mqtt::{ALERTS_CLIENT_SUFFIX, COMMANDS_CLIENT_SUFFIX, CONNECTION_SUFFIXES, MqttConfig, SerialConfig};
pub use nodes::{Calibration, NodeInventory};
pub use normalise::{NormaliseConfig, Range, default_plausible};
pub use rules::{GroupBy, PowerScope, RuleConfig, RuleKind, SideConfig};
pub use secret::SecretSource;
pub use spool::SpoolConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The site (data centre) this gateway serves: the `{site}` topic level it subscribes to.
    pub site: SiteId,
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    /// Serial-attached nodes (COBS frames, see protocols/README.md).
    #[serde(default)]
    pub serial: Vec<SerialConfig>,
    /// Where readings are written; without it the spool drains into the gateway's own history
    /// (`[history]`), or, with that off, keeps them until a database is configured.
    #[serde(default)]
    pub influxdb: Option<InfluxConfig>,
    pub spool: SpoolConfig,
    #[serde(default)]
    pub http: HttpConfig,
    /// The gateway's own history: the spool's sink when no `[influxdb]` is configured.
    #[serde(default)]
    pub history: HistoryConfig,
    #[serde(default)]
    pub normalise: NormaliseConfig,
    /// Node id -> where it is mounted and what its channels are. Nodes not listed are written with
    /// `rack="unassigned"` and listed at `/api/nodes`.
    #[serde(default)]
    pub nodes: BTreeMap<NodeId, NodeInventory>,
    /// The alert engine (gateway/ALERTS.md); it runs when this section is present.
    #[serde(default)]
    pub alerts: Option<AlertsConfig>,
    /// Several gateways sharing the site, each serving one partition of its rows (gateway/CLUSTER.md).
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Set by [`Config::serve_partition`]: `mqtt.client_id` already ends in `-pN`.
    #[serde(skip)]
    partition_served: bool,
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: in_words(&e.to_string()),
        };
        duration::refuse_renamed_keys(&text.parse().map_err(parse_error)?)?;
        let config: Config = toml::from_str(text).map_err(parse_error)?;
        config.validate()?;
        Ok(config)
    }

    /// Serves partition `partition` of `[cluster]` (`rackwatch run --partition N`), so one file can
    /// configure every gateway of a site: the MQTT client id gets `-pN` and the spool folder a `pN`
    /// subfolder, since each partition's broker session and spool are its own.
    pub fn serve_partition(&mut self, partition: usize) -> Result<(), ConfigError> {
        let Some(cluster) = self.cluster.as_mut() else {
            return Err(invalid("cluster", "--partition needs a [cluster] section"));
        };
        cluster.partition = partition;
        if let Some(mqtt) = self.mqtt.as_mut() {
            mqtt.client_id = format!("{}-p{partition}", mqtt.client_id);
        }
        self.partition_served = true;
        self.spool.dir = self.spool.dir.join(format!("p{partition}"));
        self.validate()
    }

    /// Checks every section; the error names the first key that is wrong.
    fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        self.history.validate()?;
        if let Some(alerts) = &self.alerts {
            alerts.validate()?;
        }
        if self.mqtt.is_none() && self.serial.is_empty() {
            return Err(invalid(
                "mqtt",
                "no source: configure [mqtt] or at least one [[serial]]",
            ));
        }
        if let Some(mqtt) = &self.mqtt {
            let partition_suffix = match (&self.cluster, self.partition_served) {
                (Some(cluster), false) => cluster.longest_client_suffix(),
                _ => String::new(),
            };
            mqtt.validate(&partition_suffix)?;
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
            if self.mqtt.is_none() {
                return Err(invalid("cluster", "partitions are served over [mqtt]"));
            }
        }
        if let Some(influx) = &self.influxdb {
            influx.validate()?;
        }
        self.spool.validate()?;
        self.normalise.validate()?;
        for (node, inventory) in &self.nodes {
            inventory.validate(node)?;
        }
        Ok(())
    }
}

/// A parser message in words a person writing the file understands: serde names Rust types.
fn in_words(message: &str) -> String {
    let mut message = message.to_owned();
    for (rust, words) in [
        ("expected usize", "expected a whole number (without quotes)"),
        ("expected u64", "expected a whole number (without quotes)"),
        ("expected u32", "expected a whole number (without quotes)"),
        ("expected u16", "expected a whole number (without quotes)"),
        ("expected u8", "expected a whole number (without quotes)"),
        ("expected i64", "expected a whole number (without quotes)"),
        ("expected f64", "expected a number (without quotes)"),
        ("expected a boolean", "expected true or false (without quotes)"),
        (
            "expected socket address",
            "expected an address and port like \"127.0.0.1:9180\"",
        ),
    ] {
        message = message.replace(rust, words);
    }
    // `expected struct MqttConfig`: a table was expected.
    while let Some(at) = message.find("expected struct ") {
        let name_end = message
            .get(at + 16..)
            .and_then(|rest| rest.find(|c: char| !c.is_alphanumeric()))
            .map_or(message.len(), |end| at + 16 + end);
        message.replace_range(
            at..name_end,
            "expected a table (a [section] or { key = value, ... })",
        );
    }
    message
}
