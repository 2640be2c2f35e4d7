//! The address of an MQTT broker, as the config and the command-line tools write it.

/// A broker address from `mqtt://host:port` or `mqtts://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerAddress {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest, default_port) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest, 8883)
        } else if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest, 1883)
        } else {
            return Err(format!("`{url}` must start with mqtt:// or mqtts://"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse()
                    .map_err(|_| format!("`{port}` is not a port number"))?,
            ),
            None => (rest, default_port),
        };
        if host.is_empty() {
            return Err("the host is missing".to_owned());
        }
        Ok(BrokerAddress {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}
