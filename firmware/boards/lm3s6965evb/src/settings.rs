//! The node's settings before it is provisioned: defaults, overridden at build time by environment
//! variables (`RACKWATCH_BROKER`, `RACKWATCH_SITE`, `RACKWATCH_NODE`, `RACKWATCH_INTERVAL_MS`), then at
//! run time by `key=value` words on QEMU's command line (`-append "broker=10.0.2.2:18830"`, read
//! through semihosting). A configuration in the store (`flash=PATH` names the file that holds it)
//! replaces them all.

use core::fmt::Write as _;

use rackwatch_protocols::{NodeId, SiteId};
use smoltcp::wire::{IpEndpoint, Ipv4Address};

/// Where QEMU's user network puts the host's loopback (README.md, "Build and run").
const DEFAULT_BROKER: IpEndpoint = IpEndpoint::new(
    smoltcp::wire::IpAddress::Ipv4(Ipv4Address::new(10, 0, 2, 2)),
    1883,
);
const DEFAULT_SITE: &str = "lab";

/// What the node needs to know before it samples and connects.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The MQTT broker's IPv4 address and port.
    pub broker: IpEndpoint,
    /// The site level of the node's topics.
    pub site: SiteId,
    /// The node's identity: topic level and MQTT client id.
    pub node: NodeId,
    /// Default sampling interval.
    pub interval_ms: u32,
}

/// A setting that was given but could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSetting(pub &'static str);

impl Settings {
    /// Defaults: broker 10.0.2.2:1883, site `lab`, node id from the MAC address
    /// (`lm3s-525400123456`), the core's default interval.
    pub fn defaults(mac: [u8; 6]) -> Self {
        let mut node: heapless::String<32> = heapless::String::new();
        let _ = node.push_str("lm3s-");
        for byte in mac {
            let _ = write!(node, "{byte:02x}");
        }
        Settings {
            broker: DEFAULT_BROKER,
            site: SiteId::new(DEFAULT_SITE).unwrap_or_else(|_| unreachable_site()),
            node: NodeId::new(&node).unwrap_or_else(|_| unreachable_site()),
            interval_ms: rackwatch_firmware::DEFAULT_INTERVAL_MS,
        }
    }

    /// Applies the build-time environment, then the words of `command_line`; the first word (the
    /// kernel's path) and words without `=` are skipped. Returns the first setting it could not use.
    pub fn apply_overrides(&mut self, command_line: &str) -> Result<(), BadSetting> {
        let build_time = [
            ("broker", option_env!("RACKWATCH_BROKER")),
            ("port", option_env!("RACKWATCH_BROKER_PORT")),
            ("site", option_env!("RACKWATCH_SITE")),
            ("node", option_env!("RACKWATCH_NODE")),
            ("interval_ms", option_env!("RACKWATCH_INTERVAL_MS")),
        ];
        let mut result = Ok(());
        for (key, value) in build_time {
            if let Some(value) = value {
                result = result.and(self.set(key, value));
            }
        }
        for word in command_line.split_ascii_whitespace().skip(1) {
            if let Some((key, value)) = word.split_once('=') {
                result = result.and(self.set(key, value));
            }
        }
        result
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), BadSetting> {
        match key {
            "broker" => {
                let (address, port) = match value.split_once(':') {
                    Some((address, port)) => (address, Some(port)),
                    None => (value, None),
                };
                let address: Ipv4Address = address.parse().map_err(|_| BadSetting("broker"))?;
                self.broker.addr = address.into();
                if let Some(port) = port {
                    self.broker.port = port.parse().map_err(|_| BadSetting("broker port"))?;
                }
            }
            "port" => self.broker.port = value.parse().map_err(|_| BadSetting("port"))?,
            "site" => self.site = SiteId::new(value).map_err(|_| BadSetting("site"))?,
            "node" => self.node = NodeId::new(value).map_err(|_| BadSetting("node"))?,
            "interval_ms" => {
                self.interval_ms = value
                    .parse()
                    .ok()
                    .filter(|ms| (100..=3_600_000).contains(ms))
                    .ok_or(BadSetting("interval_ms"))?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The host file that stands in for the configuration flash: the value of `flash=PATH` on QEMU's
/// command line (README.md, "Provisioned configuration").
pub fn flash_path(command_line: &str) -> Option<&str> {
    command_line
        .split_ascii_whitespace()
        .skip(1)
        .find_map(|word| word.strip_prefix("flash="))
}

/// The constant defaults are valid identifiers; a build that broke them would reset here.
fn unreachable_site<T>() -> T {
    crate::board::reset()
}
