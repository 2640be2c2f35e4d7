//! `rackwatch node ...` and `rackwatch broker-acl`: finding, provisioning and watching sensor nodes on
//! serial lines (protocols/README.md, "Serial frames"), and the broker access each node gets.
//!
//! - [`link`]: request and answer over the line, CRC-checked and retried;
//! - [`inventory`]: serial number -> node id, location and credentials (TOML or CSV);
//! - [`broker_acl`]: Mosquitto password and ACL files from the inventory;
//! - [`command`]: commands to a node through the running gateway (over MQTT), waiting for its ack.

pub mod broker_acl;
pub mod command;
pub mod inventory;
pub mod link;
pub mod trust;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use rackwatch_protocols::frame::FrameKind;
use rackwatch_protocols::{Ack, AckResult, BrokerConfig, Location, NodeConfig, Secret, Status};
use tokio_serial::SerialPortBuilderExt as _;

use self::inventory::{Inventory, NodeEntry};
use self::link::{FrameLink, LinkError, Received};

/// `rackwatch node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// The serial ports that answer as rackwatch nodes, with node id, firmware and location.
    List {
        /// Ports to try besides the ones the system lists (e.g. a pseudo-terminal).
        #[arg(long)]
        port: Vec<String>,
        #[command(flatten)]
        line: LineOptions,
    },
    /// Write a node's identity and configuration over serial, then read it back to verify.
    Provision(Box<ProvisionOptions>),
    /// Show a node's log lines and readings as they come.
    Console {
        #[arg(long)]
        port: String,
        #[command(flatten)]
        line: LineOptions,
    },
    /// Command a node through the running gateway and print its ack.
    Command(Box<command::CommandOptions>),
}

/// How the serial line is driven.
#[derive(Debug, Clone, Args)]
pub struct LineOptions {
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// How long to wait for each answer, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub timeout_ms: u64,
    /// How often a request is sent before giving up.
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
}

/// `rackwatch node provision`
#[derive(Debug, Clone, Args)]
pub struct ProvisionOptions {
    /// Serial port of a node; repeat for several (with `--inventory`, each is matched by serial number).
    #[arg(long, required = true)]
    pub port: Vec<String>,
    /// Inventory (TOML or CSV): serial number -> node id, location, credentials.
    #[arg(long)]
    pub inventory: Option<PathBuf>,
    /// Node id (without an inventory).
    #[arg(long)]
    pub node: Option<String>,
    #[arg(long)]
    pub site: Option<String>,
    #[arg(long)]
    pub room: Option<String>,
    #[arg(long)]
    pub row: Option<String>,
    #[arg(long)]
    pub rack: Option<String>,
    /// Rack unit, from the bottom.
    #[arg(long)]
    pub u: Option<u8>,
    /// Default sampling interval of the node.
    #[arg(long)]
    pub interval_ms: Option<u32>,
    /// MQTT broker as HOST:PORT, as the node reaches it.
    #[arg(long)]
    pub broker: Option<String>,
    /// Speak TLS 1.3 to the broker; needs `--ca` (or an inventory broker with TLS and `--ca`).
    #[arg(long)]
    pub tls: bool,
    /// The broker's CA certificate (PEM or DER), written into the node's configuration.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Write the SHA-256 pin of `--ca`'s DER instead of the certificate (nodes whose configuration
    /// store is too small for a certificate, e.g. the QEMU board's 1 KiB slot).
    #[arg(long, requires = "ca")]
    pub ca_pin: bool,
    /// The name the broker's certificate carries, when `--broker`'s host is an address or another name.
    #[arg(long)]
    pub server_name: Option<String>,
    /// MQTT user name (default: the node id when a password is given).
    #[arg(long)]
    pub username: Option<String>,
    /// Environment variable holding the node's MQTT password (never on the command line).
    #[arg(long)]
    pub password_env: Option<String>,
    /// File holding the node's MQTT password.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Channel calibration as CHANNEL:GAIN:OFFSET; repeat per channel.
    #[arg(long = "channel")]
    pub channels: Vec<String>,
    #[command(flatten)]
    pub line: LineOptions,
}

/// `rackwatch broker-acl`
#[derive(Debug, Clone, Args)]
pub struct BrokerAclOptions {
    #[arg(long)]
    pub inventory: PathBuf,
    /// The nodes' site, when the inventory does not name it (a CSV inventory never does).
    #[arg(long)]
    pub site: Option<String>,
    /// Folder for `password_file`, `acl_file` and generated secrets (`secrets/`).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "rackwatch-gateway")]
    pub gateway_user: String,
    /// Environment variable holding the gateway's MQTT password; generated when not given.
    #[arg(long)]
    pub gateway_password_env: Option<String>,
    /// Also write `conf.d/tls_listener.conf`: a TLS 1.3 listener on this port for the nodes.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_port: Option<u16>,
    /// The broker's certificate file (PEM, its own certificate only) for the TLS listener.
    #[arg(long, requires = "tls_port")]
    pub tls_cert: Option<PathBuf>,
    /// The broker's private key file (PEM) for the TLS listener.
    #[arg(long, requires = "tls_port")]
    pub tls_key: Option<PathBuf>,
}

/// Runs `rackwatch node ...`.
pub fn main(command: NodeCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let result = match command {
            NodeCommand::List { port, line } => list(port, &line).await,
            NodeCommand::Provision(options) => provision_all(&options).await,
            NodeCommand::Console { port, line } => console(&port, &line).await,
            NodeCommand::Command(options) => command::run(&options).await.map(|line| say(&line)),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs `rackwatch broker-acl`.
pub fn broker_acl_main(options: BrokerAclOptions) -> ExitCode {
    let request = broker_acl::AclRequest {
        inventory: options.inventory,
        site: options.site,
        out: options.out,
        gateway_user: options.gateway_user,
        gateway_password_env: options.gateway_password_env,
        tls: match (options.tls_port, options.tls_cert, options.tls_key) {
            (Some(port), Some(cert_file), Some(key_file)) => Some(broker_acl::TlsListener {
                port,
                cert_file,
                key_file,
            }),
            _ => None,
        },
    };
    match broker_acl::write(&request) {
        Ok(files) => {
            eprintln!(
                "wrote {} and {}",
                files.password_file.display(),
                files.acl_file.display()
            );
            if let Some(file) = &files.tls_listener {
                eprintln!(
                    "wrote {} (mosquitto.conf: `include_dir` its folder)",
                    file.display()
                );
            }
            for file in files.generated {
                eprintln!("generated a secret in {} (mode 0600)", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type SerialLink = FrameLink<tokio_serial::SerialStream>;

fn open(port: &str, line: &LineOptions) -> Result<SerialLink, String> {
    let stream = tokio_serial::new(port, line.baud)
        .open_native_async()
        .map_err(|e| format!("{port}: cannot open: {e}"))?;
    Ok(FrameLink::new(
        stream,
        Duration::from_millis(line.timeout_ms),
        line.attempts,
    ))
}

/// Hello -> Info.
async fn hello(link: &mut SerialLink, port: &str) -> Result<Status, String> {
    let body = link
        .request(FrameKind::Hello, b"", FrameKind::Info)
        .await
        .map_err(|e| format!("{port}: {e}"))?;
    Status::decode(&body).map_err(|e| format!("{port}: bad Info frame: {e}"))
}

/// GetConfig -> Config.
async fn read_config(link: &mut SerialLink, port: &str) -> Result<NodeConfig, String> {
    let body = link
        .request(FrameKind::GetConfig, b"", FrameKind::Config)
        .await
        .map_err(|e| format!("{port}: {e}"))?;
    NodeConfig::decode(&body).map_err(|e| format!("{port}: bad Config frame: {e}"))
}

async fn list(extra: Vec<String>, line: &LineOptions) -> Result<(), String> {
    let mut ports: Vec<String> = tokio_serial::available_ports()
        .map(|ports| ports.into_iter().map(|p| p.port_name).collect())
        .unwrap_or_default();
    ports.extend(extra);
    ports.sort();
    ports.dedup();
    eprintln!("asking {} serial port(s) at once", ports.len());
    // All ports at once: a row of nodes answers in one timeout, not one timeout per port.
    let answers = futures_util::future::join_all(ports.iter().map(|port| identify(port, line))).await;
    let found: Vec<String> = answers.into_iter().flatten().collect();
    for line in &found {
        say(line);
    }
    if found.is_empty() {
        say("no rackwatch node answered");
    }
    Ok(())
}

/// One `node list` line for the node on `port`, or `None` when nothing answers as a node.
async fn identify(port: &str, line: &LineOptions) -> Option<String> {
    let mut link = open(port, line).ok()?;
    let info = hello(&mut link, port).await.ok()?;
    let location = match read_config(&mut link, port).await {
        Ok(config) => show_location(&config.location),
        Err(_) => "?".to_owned(),
    };
    Some(format!(
        "{port}\tnode {}\tfirmware {}\tserial {}\tlocation {location}",
        info.node,
        info.firmware.as_deref().unwrap_or("?"),
        info.serial.as_deref().unwrap_or("?"),
    ))
}

async fn provision_all(options: &ProvisionOptions) -> Result<(), String> {
    let inventory = options
        .inventory
        .as_deref()
        .map(Inventory::load)
        .transpose()
        .map_err(|e| e.to_string())?;
    let total = options.port.len();
    let mut failed = 0;
    for (index, port) in options.port.iter().enumerate() {
        eprintln!("[{}/{total}] {port}: provisioning", index + 1);
        if let Err(e) = provision(port, options, inventory.as_ref()).await {
            eprintln!("[{}/{total}] {e}", index + 1);
            failed += 1;
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!(
            "{n} of {total} nodes not provisioned; their previous configuration is unchanged"
        )),
    }
}

async fn provision(
    port: &str,
    options: &ProvisionOptions,
    inventory: Option<&Inventory>,
) -> Result<(), String> {
    let mut link = open(port, &options.line)?;
    let info = hello(&mut link, port).await?;
    let serial = info.serial.as_deref().unwrap_or("");
    eprintln!(
        "{port}: node {} (serial {serial}, firmware {})",
        info.node,
        info.firmware.as_deref().unwrap_or("?")
    );
    let entry = match inventory {
        Some(inventory) => Some(
            inventory
                .by_serial(serial)
                .ok_or_else(|| format!("{port}: serial {serial:?} is not in the inventory"))?
                .clone(),
        ),
        None => None,
    };
    let config = build_config(options, inventory, entry.as_ref()).map_err(|e| format!("{port}: {e}"))?;
    let mut body = vec![0u8; rackwatch_protocols::MAX_MESSAGE_LEN];
    let len = config
        .encode(&mut body)
        .map_err(|e| format!("{port}: cannot encode the configuration: {e}"))?;
    let answer = link
        .request(
            FrameKind::SetConfig,
            body.get(..len).unwrap_or_default(),
            FrameKind::Result,
        )
        .await
        .map_err(|e| match e {
            LinkError::NoAnswer { .. } => format!("{port}: {e}; the node keeps its previous configuration"),
            e => format!("{port}: {e}"),
        })?;
    let ack = Ack::decode(&answer).map_err(|e| format!("{port}: bad Result frame: {e}"))?;
    if ack.result != AckResult::Ok {
        return Err(format!(
            "{port}: node refused the configuration ({:?}: {}); it keeps its previous configuration",
            ack.result,
            ack.detail.as_deref().unwrap_or("no reason given")
        ));
    }
    let read_back = read_config(&mut link, port).await?;
    let mut expected = config.clone();
    expected.broker.password = None;
    if read_back != expected {
        return Err(format!(
            "{port}: read back differs from what was written: {read_back:?}"
        ));
    }
    say(&format!(
        "{port}: provisioned node {} at site {}, location {}, broker {}:{}{} user {} password {}, every {} ms, {} channels calibrated: verified by reading back ({})",
        read_back.node,
        read_back.site,
        show_location(&read_back.location),
        read_back.broker.host,
        read_back.broker.port,
        if read_back.broker.tls { " (TLS)" } else { "" },
        read_back.broker.username.as_deref().unwrap_or("-"),
        if config.broker.password.is_some() {
            "***"
        } else {
            "-"
        },
        read_back.interval_ms,
        read_back.channels.len(),
        link.health(),
    ));
    Ok(())
}

/// The configuration to write: command-line options over the inventory's entry and defaults. Public
/// for a node reached another way than a serial port (the host-build node in tests takes it as is).
pub fn build_config(
    options: &ProvisionOptions,
    inventory: Option<&Inventory>,
    entry: Option<&NodeEntry>,
) -> Result<NodeConfig, String> {
    let node = options
        .node
        .clone()
        .or_else(|| entry.map(|e| e.node.clone()))
        .ok_or("a node id is required (--node or an inventory entry)")?;
    let site = options
        .site
        .clone()
        .or_else(|| inventory.and_then(|i| i.site.clone()))
        .ok_or("a site is required (--site or `site` in the inventory)")?;
    let (host, port, tls) = match (&options.broker, inventory.and_then(|i| i.broker.as_ref())) {
        (Some(address), _) => {
            let (host, port) = address.rsplit_once(':').ok_or("--broker must be HOST:PORT")?;
            let port: u16 = port
                .parse()
                .map_err(|_| format!("--broker port {port:?} is not a port"))?;
            (host.to_owned(), port, options.tls)
        }
        (None, Some(broker)) => (broker.host.clone(), broker.port, broker.tls || options.tls),
        (None, None) => return Err("a broker is required (--broker or `broker` in the inventory)".into()),
    };
    let (ca, ca_pin) = match (tls, &options.ca) {
        (true, Some(path)) => match trust::read_trust(path, options.ca_pin)? {
            trust::Trust::Ca(ca) => (Some(*ca), None),
            trust::Trust::Pin(pin) => (None, Some(pin)),
        },
        (true, None) => return Err("--tls needs --ca: the broker's CA certificate".into()),
        (false, Some(_)) => return Err("--ca without --tls".into()),
        (false, None) => (None, None),
    };
    let server_name = match (tls, &options.server_name) {
        (true, Some(name)) => Some(name.as_str().try_into().map_err(|_| "--server-name too long")?),
        (false, Some(_)) => return Err("--server-name without --tls".into()),
        (_, None) => None,
    };
    let password = match (&options.password_env, &options.password_file) {
        (Some(var), _) => {
            Some(std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?)
        }
        (None, Some(file)) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| format!("password file {}: {e}", file.display()))?
                .trim_end()
                .to_owned(),
        ),
        (None, None) => entry.map(NodeEntry::password).transpose()?.flatten(),
    };
    let username = options
        .username
        .clone()
        .or_else(|| password.as_ref().map(|_| node.clone()));
    let label = |value: Option<String>, key: &str| {
        value
            .map(|v| {
                v.as_str()
                    .try_into()
                    .map_err(|_| format!("{key} {v:?} is not a valid label"))
            })
            .transpose()
    };
    let location = Location {
        room: label(
            options
                .room
                .clone()
                .or_else(|| entry.and_then(|e| e.room.clone())),
            "room",
        )?,
        row: label(
            options.row.clone().or_else(|| entry.and_then(|e| e.row.clone())),
            "row",
        )?,
        rack: label(
            options
                .rack
                .clone()
                .or_else(|| entry.and_then(|e| e.rack.clone())),
            "rack",
        )?,
        unit: options.u.or_else(|| entry.and_then(|e| e.u)),
    };
    let mut channels = heapless::Vec::new();
    for spec in &options.channels {
        let parts: Vec<&str> = spec.split(':').collect();
        let [name, gain, offset] = parts.as_slice() else {
            return Err(format!("--channel {spec:?} is not CHANNEL:GAIN:OFFSET"));
        };
        let channel = rackwatch_protocols::ChannelConfig {
            channel: rackwatch_protocols::ChannelName::new(name)
                .map_err(|e| format!("channel {name:?}: {e}"))?,
            placement: None,
            gain: gain
                .parse()
                .map_err(|_| format!("--channel {spec:?}: gain is not a number"))?,
            offset: offset
                .parse()
                .map_err(|_| format!("--channel {spec:?}: offset is not a number"))?,
            interval_ms: None,
        };
        channels.push(channel).map_err(|_| "too many channels")?;
    }
    Ok(NodeConfig {
        version: rackwatch_protocols::VERSION,
        node: rackwatch_protocols::NodeId::new(&node).map_err(|e| format!("node id {node:?}: {e}"))?,
        site: rackwatch_protocols::SiteId::new(&site).map_err(|e| format!("site {site:?}: {e}"))?,
        location,
        interval_ms: options
            .interval_ms
            .or_else(|| inventory.and_then(|i| i.interval_ms))
            .unwrap_or(10_000),
        broker: BrokerConfig {
            host: host.as_str().try_into().map_err(|_| "broker host too long")?,
            port,
            tls,
            server_name,
            ca,
            ca_pin,
            username: username
                .map(|u| u.as_str().try_into().map_err(|_| "user name too long"))
                .transpose()?,
            password: password
                .map(|p| Secret::new(&p).ok_or("password longer than 64 bytes"))
                .transpose()?,
        },
        channels,
    })
}

async fn console(port: &str, line: &LineOptions) -> Result<(), String> {
    let mut link = open(port, line)?;
    // A Hello tells the node a host is attached: it sends its log lines as Log frames from then on.
    let info = hello(&mut link, port).await?;
    say(&format!(
        "{port}: node {} (firmware {}), Ctrl-C to stop",
        info.node,
        info.firmware.as_deref().unwrap_or("?")
    ));
    loop {
        tokio::select! {
            received = link.receive() => match received.map_err(|e| format!("{port}: {e}"))? {
                Received::Frame { kind: FrameKind::Log, body, .. } => say(&format!("log  {}", String::from_utf8_lossy(&body))),
                Received::Frame { kind: FrameKind::Telemetry, body, .. } => say(&show_readings(&body)),
                Received::Frame { kind: FrameKind::Status, body, .. } => say(&format!("status {}", String::from_utf8_lossy(&body))),
                Received::Frame { .. } => {}
                Received::Text(text) => say(&format!("text {text}")),
                Received::Bad(error) => eprintln!("dropped a frame: {error}"),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// A `Telemetry` frame as one line: `seq 12: inlet 24.000 °C, fan1 4800 RPM, psu FAULT (crc)`.
fn show_readings(body: &[u8]) -> String {
    let telemetry = match rackwatch_protocols::Telemetry::decode(body) {
        Ok(telemetry) => telemetry,
        Err(e) => return format!("data (undecodable: {e}) {}", String::from_utf8_lossy(body)),
    };
    let readings: Vec<String> = telemetry
        .readings
        .iter()
        .map(|r| match r.value {
            Some(value) => format!("{} {value} {}", r.channel, r.unit.symbol()),
            None => format!("{} FAULT ({:?})", r.channel, r.status),
        })
        .collect();
    format!("seq {}: {}", telemetry.seq, readings.join(", "))
}

fn show_location(location: &Location) -> String {
    let parts: Vec<String> = [&location.room, &location.row, &location.rack]
        .into_iter()
        .flatten()
        .map(|l| l.to_string())
        .chain(location.unit.map(|u| format!("U{u}")))
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join("/")
    }
}

/// One line of the command's result on standard output (progress and errors go to standard error).
#[allow(clippy::print_stdout, reason = "the command's output")]
fn say(line: &str) {
    println!("{line}");
}
