//! The demo's MQTT broker: rumqttd embedded in this process, or an external broker given by URL.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::model::BrokerAddress;

/// Where the demo's nodes, gateway and narrator connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// For the gateway's configuration: `mqtt://host:port`.
    pub url: String,
    /// For the nodes, which speak plain TCP to an address.
    pub addr: SocketAddr,
}

/// Why the broker cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("--broker {url}: {message}")]
    External { url: String, message: String },
    #[error("embedded MQTT broker on {addr}: {message}")]
    Embedded { addr: SocketAddr, message: String },
}

/// How long the embedded broker may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// An MQTT broker somebody else runs.
#[derive(Debug)]
pub struct External;

impl External {
    /// Resolves `mqtt://host:port` (plain TCP only: the simulated nodes do not speak TLS).
    pub async fn resolve(url: &str) -> Result<Endpoint, BrokerError> {
        let fail = |message: String| BrokerError::External {
            url: url.to_owned(),
            message,
        };
        let address = BrokerAddress::parse(url).map_err(fail)?;
        if address.tls {
            return Err(fail(
                "the simulated nodes speak plain MQTT: use mqtt://".to_owned(),
            ));
        }
        let addr = tokio::net::lookup_host((address.host.as_str(), address.port))
            .await
            .map_err(|e| fail(e.to_string()))?
            .next()
            .ok_or_else(|| fail("the host name has no address".to_owned()))?;
        Ok(Endpoint {
            url: url.to_owned(),
            addr,
        })
    }
}

/// Starts rumqttd (MQTT 3.1.1) on 127.0.0.1:`port`, or a free port, and waits until it accepts
/// connections. It runs on its own threads until the process ends.
pub async fn start_embedded(port: Option<u16>) -> Result<Endpoint, BrokerError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port.unwrap_or(0)));
    let fail = |addr: SocketAddr, message: String| BrokerError::Embedded { addr, message };
    // rumqttd binds by itself and does not report the port it got, so a free one is chosen here.
    let addr = match port {
        Some(_) => addr,
        None => std::net::TcpListener::bind(addr)
            .and_then(|listener| listener.local_addr())
            .map_err(|e| fail(addr, e.to_string()))?,
    };
    let mut broker = Broker::new(config(addr));
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|e| fail(addr, e.to_string()))?;
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(fail(addr, e.to_string())),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    Ok(Endpoint {
        url: format!("mqtt://{addr}"),
        addr,
    })
}

/// The broker's configuration, built in code: one MQTT 3.1.1 listener, no authentication (it
/// listens on loopback only), limits sized for a room of nodes and a gateway.
fn config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: 20_480,
        // The gateway acknowledges QoS 1 only after its spool fsync: enough in flight to keep
        // every node's readings moving meanwhile.
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "demo-v4".to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            max_segment_size: 10 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: rumqttd::Strategy::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Config::default()
    }
}
