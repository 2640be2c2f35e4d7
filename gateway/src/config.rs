//! The gateway's configuration: one TOML file, one serde struct tree, every key documented here.
//!
//! Validation runs once at start; each error names the key (`influxdb.batch_max_lines`) and says what
//! is wrong. Secrets (MQTT password, InfluxDB token) never sit in the file: the file names an
//! environment variable or a file that holds them, and they are never logged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rackwatch_protocols::{ChannelName, Label, NodeId, Quantity, SiteId};
use serde::Deserialize;

use crate::model::Placement;

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
    /// Where readings are written; without it they are spooled and kept until one is configured.
    #[serde(default)]
    pub influxdb: Option<InfluxConfig>,
    pub spool: SpoolConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub normalise: NormaliseConfig,
    /// Node id -> where it is mounted and what its channels are. Nodes not listed are written with
    /// `rack="unassigned"` and listed at `/api/nodes`.
    #[serde(default)]
    pub nodes: BTreeMap<NodeId, NodeInventory>,
    /// The alert engine (gateway/ALERTS.md); it runs when this section is present.
    #[serde(default)]
    pub alerts: Option<crate::alert::config::AlertsConfig>,
    /// Several gateways sharing the site, each serving one partition of its rows (gateway/CLUSTER.md).
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Set by [`Config::serve_partition`]: `mqtt.client_id` already ends in `-pN`.
    #[serde(skip)]
    partition_served: bool,
}

/// This gateway's share of a site served by several (gateway/CLUSTER.md). Every gateway of the site
/// has the same `partitions` and its own `partition`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The partition this gateway serves: an index into `partitions`.
    pub partition: usize,
    /// The inventory rows of each partition. A node in no listed row, or missing from the
    /// inventory, belongs to partition 0.
    pub partitions: Vec<Vec<Label>>,
}

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
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u64,
    /// MQTT shared-subscription group (`$share/{group}/...`) when several gateways serve one site.
    #[serde(default)]
    pub share_group: Option<String>,
    /// Messages received but not yet spooled and acknowledged; bounds memory under a burst.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
}

/// Where a secret comes from. Exactly one of the two.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "where the secret is: { env = \"VARIABLE\" } or { file = \"/path/to/file\" }, never the secret itself"
)]
pub struct SecretSource {
    /// Name of an environment variable that holds the secret.
    #[serde(default)]
    pub env: Option<String>,
    /// Path of a file whose content (trailing newline removed) is the secret.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// One serial port with rackwatch nodes behind it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    pub port: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
}

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
    #[serde(default = "default_batch_max_age_ms")]
    pub batch_max_age_ms: u64,
    #[serde(default = "default_true")]
    pub gzip: bool,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Longest wait between two retries of a failed write.
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
}

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
    /// How long a group commit waits for more messages to share its fdatasync; the broker's PUBACK
    /// waits as long. 0 commits each batch as it comes.
    #[serde(default = "default_commit_linger_ms")]
    pub commit_linger_ms: u64,
    /// The dead-letter files (current and rotated) together stay under this; it is taken out of
    /// `max_mb`, so bad messages can never fill the disk the spool needs.
    #[serde(default = "default_dead_letter_max_mb")]
    pub dead_letter_max_mb: u64,
    /// Dead letters a second per reason before only one in 100 is written (all are counted).
    #[serde(default = "default_dead_letter_rate")]
    pub dead_letter_rate: u64,
}

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
    /// How far back the facilities view's rack charts go, in minutes (one point per minute per
    /// inventory rack, kept in memory).
    #[serde(default = "default_window_minutes")]
    pub window_minutes: usize,
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
            window_minutes: default_window_minutes(),
            tls_cert_file: None,
            tls_key_file: None,
            public_url: None,
        }
    }
}

fn default_window_minutes() -> usize {
    6 * 60
}

/// Bounds on what the gateway accepts as data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormaliseConfig {
    /// A node timestamp further in the future than this is not trusted (the receive time is used).
    #[serde(default = "default_max_future_secs")]
    pub max_future_secs: u64,
    /// A reading older than this is rejected as stale.
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// Plausible range per quantity, in the canonical unit. Values outside are counted and kept out
    /// of the data. Quantities not listed use [`default_plausible`].
    #[serde(default)]
    pub plausible: BTreeMap<Quantity, Range>,
}

impl Default for NormaliseConfig {
    fn default() -> Self {
        NormaliseConfig {
            max_future_secs: default_max_future_secs(),
            max_age_secs: default_max_age_secs(),
            plausible: BTreeMap::new(),
        }
    }
}

impl NormaliseConfig {
    pub fn plausible(&self, quantity: Quantity) -> Range {
        self.plausible
            .get(&quantity)
            .copied()
            .unwrap_or_else(|| default_plausible(quantity))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    pub fn contains(&self, value: f64) -> bool {
        (self.min..=self.max).contains(&value)
    }
}

/// Default plausibility ranges: the measuring range of common rack sensors, wide enough for any real
/// rack and narrow enough to catch a unit mix-up or a stuck ADC (0xffff).
pub fn default_plausible(quantity: Quantity) -> Range {
    let (min, max) = match quantity {
        // TMP105/SHT4x measuring range (datasheets: -55..125 and -40..125 °C).
        Quantity::Temperature | Quantity::DewPoint => (-55.0, 125.0),
        Quantity::RelativeHumidity => (0.0, 100.0),
        // 48 V busbars and 12 V rails; ±1 kV covers any DC or mains rack feed.
        Quantity::Voltage => (-1000.0, 1000.0),
        Quantity::Current => (-2000.0, 2000.0),
        // A single rack feed tops out well below 200 kW.
        Quantity::Power => (-1000.0, 200_000.0),
        Quantity::Energy => (0.0, 1e12),
        Quantity::FanSpeed => (0.0, 50_000.0),
        Quantity::FanDuty => (0.0, 100.0),
    };
    Range { min, max }
}

/// Where a node is and what its channels are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInventory {
    #[serde(default)]
    pub room: Option<Label>,
    #[serde(default)]
    pub row: Option<Label>,
    #[serde(default)]
    pub rack: Option<Label>,
    /// Rack unit, counted from the bottom.
    #[serde(default)]
    pub u: Option<u8>,
    /// Channel -> placement. A channel not listed whose name is a placement (`inlet_top`) takes it.
    #[serde(default)]
    pub placement: BTreeMap<ChannelName, Placement>,
    /// Channel -> calibration, applied after unit conversion: value × gain + offset.
    #[serde(default)]
    pub calibration: BTreeMap<ChannelName, Calibration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    #[serde(default = "one")]
    pub gain: f64,
    #[serde(default)]
    pub offset: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            gain: 1.0,
            offset: 0.0,
        }
    }
}

fn one() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}
fn default_client_id() -> String {
    "rackwatch-gateway".to_owned()
}
fn default_keep_alive_secs() -> u64 {
    30
}
fn default_max_pending() -> usize {
    4096
}
fn default_baud() -> u32 {
    115_200
}
fn default_batch_max_lines() -> usize {
    5000
}
fn default_batch_max_age_ms() -> u64 {
    1000
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_max_backoff_secs() -> u64 {
    30
}
fn default_spool_max_mb() -> u64 {
    10 * 1024
}
fn default_commit_linger_ms() -> u64 {
    5
}
fn default_dead_letter_max_mb() -> u64 {
    64
}
fn default_dead_letter_rate() -> u64 {
    20
}
fn default_segment_mb() -> u64 {
    64
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9180))
}
fn default_max_future_secs() -> u64 {
    300
}
fn default_max_age_secs() -> u64 {
    7 * 24 * 3600
}

/// Why the configuration cannot be used. Always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

/// What the gateway's own MQTT connections add to `mqtt.client_id`: the alert engine's (`-a`) and
/// the node commands' (`-c`). Short, so the default id with a partition suffix stays within 23.
pub const CONNECTION_SUFFIXES: [&str; 2] = [ALERTS_CLIENT_SUFFIX, COMMANDS_CLIENT_SUFFIX];
pub const ALERTS_CLIENT_SUFFIX: &str = "-a";
pub const COMMANDS_CLIENT_SUFFIX: &str = "-c";

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

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
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
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: in_words(&e.to_string()),
        })?;
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

    fn validate(&self) -> Result<(), ConfigError> {
        if self.http.tls_cert_file.is_some() != self.http.tls_key_file.is_some() {
            return Err(invalid(
                "http.tls_key_file",
                "tls_cert_file and tls_key_file go together",
            ));
        }
        if let Some(token) = &self.http.token {
            token.validate("http.token")?;
        }
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
            crate::model::BrokerAddress::parse(&mqtt.url).map_err(|m| invalid("mqtt.url", m))?;
            self.check_client_ids(&mqtt.client_id)?;
            if mqtt.max_pending == 0 {
                return Err(invalid("mqtt.max_pending", "must be at least 1"));
            }
            if mqtt.client_cert_file.is_some() != mqtt.client_key_file.is_some() {
                return Err(invalid(
                    "mqtt.client_key_file",
                    "client_cert_file and client_key_file go together",
                ));
            }
            if let Some(secret) = &mqtt.password {
                secret.validate("mqtt.password")?;
            }
            if let Some(group) = &mqtt.share_group {
                Label::new(group).map_err(|e| invalid("mqtt.share_group", format!("{e}")))?;
            }
        }
        if self.spool.commit_linger_ms > 1000 {
            // The broker waits as long for its PUBACK: beyond a second, nodes would time out.
            return Err(invalid("spool.commit_linger_ms", "must be 0 to 1000"));
        }
        if let Some(cluster) = &self.cluster {
            if cluster.partition >= cluster.partitions.len() {
                return Err(invalid(
                    "cluster.partition",
                    format!(
                        "{} is not one of the {} partitions (counted from 0)",
                        cluster.partition,
                        cluster.partitions.len()
                    ),
                ));
            }
            let mut rows = std::collections::HashSet::new();
            if let Some(row) = cluster.partitions.iter().flatten().find(|row| !rows.insert(*row)) {
                return Err(invalid(
                    "cluster.partitions",
                    format!("row {row} is in two partitions"),
                ));
            }
            if self.mqtt.is_none() {
                return Err(invalid("cluster", "partitions are served over [mqtt]"));
            }
        }
        if let Some(influx) = &self.influxdb {
            if !(influx.url.starts_with("http://") || influx.url.starts_with("https://")) {
                return Err(invalid("influxdb.url", "must start with http:// or https://"));
            }
            if !(1..=100_000).contains(&influx.batch_max_lines) {
                return Err(invalid("influxdb.batch_max_lines", "must be 1 to 100000"));
            }
            if influx.timeout_secs == 0 {
                return Err(invalid("influxdb.timeout_secs", "must be at least 1"));
            }
            influx.validate_api()?;
        }
        if self.spool.segment_mb == 0
            || self.spool.max_mb < self.spool.segment_mb * 2 + self.spool.dead_letter_max_mb
        {
            return Err(invalid(
                "spool.max_mb",
                format!(
                    "must be at least twice spool.segment_mb plus spool.dead_letter_max_mb ({} MB here), and segment_mb at least 1",
                    self.spool.segment_mb * 2 + self.spool.dead_letter_max_mb
                ),
            ));
        }
        if self.spool.dead_letter_max_mb == 0 {
            return Err(invalid("spool.dead_letter_max_mb", "must be at least 1"));
        }
        for (quantity, range) in &self.normalise.plausible {
            if !(range.min.is_finite() && range.max.is_finite() && range.min < range.max) {
                return Err(invalid(
                    format!("normalise.plausible.{}", quantity.as_str()),
                    "min and max must be finite with min < max",
                ));
            }
        }
        for (node, inventory) in &self.nodes {
            for (channel, calibration) in &inventory.calibration {
                if !(calibration.gain.is_finite() && calibration.offset.is_finite())
                    || calibration.gain == 0.0
                {
                    return Err(invalid(
                        format!("nodes.{node}.calibration.{channel}"),
                        "gain and offset must be finite and gain non-zero",
                    ));
                }
            }
        }
        Ok(())
    }

    /// MQTT 3.1.1 §3.1.3.1: a server must accept client ids of 1 to 23 characters and may refuse
    /// longer ones. The gateway's connections add suffixes to `mqtt.client_id` (`-pN` per partition,
    /// [`CONNECTION_SUFFIXES`] for its own connections): the longest result must fit too.
    fn check_client_ids(&self, client_id: &str) -> Result<(), ConfigError> {
        let partition = match (&self.cluster, self.partition_served) {
            (Some(cluster), false) => format!("-p{}", cluster.partitions.len().saturating_sub(1)),
            _ => String::new(),
        };
        let suffix = CONNECTION_SUFFIXES
            .iter()
            .max_by_key(|s| s.len())
            .copied()
            .unwrap_or_default();
        let longest = format!("{client_id}{partition}{suffix}");
        if client_id.is_empty() || longest.len() > 23 {
            let room = 23usize.saturating_sub(partition.len() + suffix.len());
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

    pub fn batch_max_age(&self) -> Duration {
        Duration::from_millis(self.influxdb.as_ref().map_or(1000, |i| i.batch_max_age_ms))
    }
}

impl InfluxConfig {
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
        let api = match self.api {
            InfluxApi::V1 => "v1",
            InfluxApi::V2 => "v2",
        };
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

impl SecretSource {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        match (&self.env, &self.file) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(invalid(key, "give exactly one of `env` and `file`")),
        }
    }

    /// Reads the secret. The error names the key but never shows the secret.
    pub fn read(&self, key: &str) -> Result<String, ConfigError> {
        match (&self.env, &self.file) {
            (Some(var), None) => {
                std::env::var(var).map_err(|_| invalid(key, format!("environment variable {var} is not set")))
            }
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display()))),
            _ => Err(invalid(key, "give exactly one of `env` and `file`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        site = "fra1"
        [mqtt]
        url = "mqtt://127.0.0.1:1883"
        [spool]
        dir = "/tmp/spool"
    "#;

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.mqtt.unwrap().client_id, "rackwatch-gateway");
        assert_eq!(config.http.listen, "127.0.0.1:9180".parse().unwrap());
        assert_eq!(
            config.normalise.plausible(Quantity::RelativeHumidity),
            Range { min: 0.0, max: 100.0 }
        );
    }

    #[test]
    fn errors_name_the_key() {
        let bad_url = MINIMAL.replace("mqtt://127.0.0.1:1883", "http://x");
        assert!(
            error_of(&bad_url).starts_with("mqtt.url:"),
            "{}",
            error_of(&bad_url)
        );
        let bad_batch =
            format!("{MINIMAL}\n[influxdb]\nurl=\"http://db\"\norg=\"o\"\nbucket=\"b\"\nbatch_max_lines=0");
        assert!(error_of(&bad_batch).starts_with("influxdb.batch_max_lines:"));
        let both = MINIMAL.replace("[spool]", "password = { env = \"A\", file = \"/b\" }\n[spool]");
        assert!(error_of(&both).starts_with("mqtt.password:"));
        let calibration = format!("{MINIMAL}\n[nodes.n1.calibration.inlet_top]\ngain = 0.0");
        assert_eq!(
            error_of(&calibration),
            "nodes.n1.calibration.inlet_top: gain and offset must be finite and gain non-zero"
        );
    }

    #[test]
    fn each_write_api_takes_its_own_keys() {
        let v1 = format!(
            "{MINIMAL}\n[influxdb]\nurl=\"http://db\"\napi=\"v1\"\ndatabase=\"racks\"\nusername=\"gw\"\npassword={{ env = \"P\" }}"
        );
        let influx = Config::parse(&v1).unwrap().influxdb.unwrap();
        assert_eq!(
            (influx.api, influx.database.as_deref()),
            (InfluxApi::V1, Some("racks"))
        );
        assert_eq!(
            error_of(&v1.replace("database=\"racks\"", "")),
            "influxdb.database: required with api = \"v1\""
        );
        assert!(
            error_of(&format!("{v1}\nbucket=\"b\""))
                .starts_with("influxdb.bucket: not a key of api = \"v1\"")
        );
        assert_eq!(
            error_of(&v1.replace("username=\"gw\"", "")),
            "influxdb.password: username and password go together"
        );
        let v2 = format!("{MINIMAL}\n[influxdb]\nurl=\"http://db\"\norg=\"o\"\ndatabase=\"racks\"");
        assert_eq!(error_of(&v2), "influxdb.bucket: required with api = \"v2\"");
    }

    #[test]
    fn client_ids_with_every_suffix_stay_within_23_characters() {
        let with_id = |id: &str| MINIMAL.replace("[spool]", &format!("client_id = \"{id}\"\n[spool]"));
        assert!(Config::parse(&with_id("abcdefghijklmnopqrstu")).is_ok());
        assert_eq!(
            error_of(&with_id("abcdefghijklmnopqrstuv")),
            "mqtt.client_id: must be 1 to 21 characters: the gateway connects as `abcdefghijklmnopqrstuv-c` too (24 characters), and MQTT 3.1.1 servers need accept only 23"
        );
        let cluster = "[cluster]\npartition = 0\npartitions = [[\"r01\"], [\"r02\"]]\n";
        let config = format!("{}\n{cluster}", with_id("abcdefghijklmnopqrs"));
        assert!(
            error_of(&config).contains("`abcdefghijklmnopqrs-p1-c`"),
            "{}",
            error_of(&config)
        );
        let mut served = Config::parse(&format!("{MINIMAL}\n{cluster}")).unwrap();
        served.serve_partition(1).unwrap();
        assert_eq!(served.mqtt.unwrap().client_id, "rackwatch-gateway-p1");
    }

    #[test]
    fn unknown_keys_and_bad_identifiers_are_refused() {
        assert!(error_of(&format!("{MINIMAL}\nsurprise = 1")).contains("surprise"));
        assert!(error_of(&MINIMAL.replace("fra1", "fra 1")).contains("identifier"));
    }

    #[test]
    fn parse_errors_speak_of_the_file_not_of_rust_types() {
        let number = MINIMAL.replace("[spool]", "max_pending = \"many\"\n[spool]");
        let error = error_of(&number);
        assert!(error.contains("expected a whole number"), "{error}");
        assert!(!error.contains("usize"), "{error}");
        let secret = MINIMAL.replace("[spool]", "password = \"hunter2\"\n[spool]");
        let error = error_of(&secret);
        assert!(error.contains("{ env = \"VARIABLE\" }"), "{error}");
        assert!(!error.contains("SecretSource"), "{error}");
        let table = format!("normalise = 5\n{MINIMAL}");
        let error = error_of(&table);
        assert!(error.contains("expected a table"), "{error}");
    }

    #[test]
    fn secret_from_missing_env_names_the_key_not_the_value() {
        let source = SecretSource {
            env: Some("RACKWATCH_TEST_UNSET_VARIABLE".into()),
            file: None,
        };
        let error = source.read("influxdb.token").unwrap_err().to_string();
        assert_eq!(
            error,
            "influxdb.token: environment variable RACKWATCH_TEST_UNSET_VARIABLE is not set"
        );
    }
}
