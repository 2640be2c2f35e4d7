//! The MQTT source (rumqttc): a persistent session (fixed client id, clean session off) subscribed
//! at QoS 1 to the site's telemetry, status and command acks, with manual acknowledgements.
//!
//! A PUBLISH is acknowledged only when the pipeline says its message is durably spooled (or
//! dead-lettered), so a crash before that makes the broker deliver it again (MQTT 3.1.1 §4.4).
//!
//! No single message may stop ingest: rumqttc drops the connection on a packet over its limit, and
//! the broker would deliver the same message again on every reconnect, for ever. So the client
//! reads packets up to [`MAX_PACKET`], far above the wire format's largest message, and a message
//! it can read but the pipeline cannot use is dead-lettered as `oversize` and acknowledged like any
//! other. The broker's `message_size_limit` (deploy/) must stay below [`MAX_PACKET`]; if it does not
//! and a larger message comes, the failures in a row show as `rackwatch_mqtt_connection_failures_total
//! {reason="packet_too_large"}` and the `mqtt` component of `/health/ready`.
//! Acks come back on their own channel, a commit's at a time, and this task, which owns the event
//! loop, writes them: awaiting an ack from another task while this one waits for pipeline space
//! could deadlock both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rackwatch_protocols::SiteId;
use rackwatch_protocols::topic::{self, NodeTopic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, PubAck, QoS, Request, TlsConfiguration, Transport};
use tokio::sync::mpsc;

use crate::config::{ConfigError, MqttConfig, invalid};
use crate::events::{Metrics, MqttConnectionFailed};
use crate::health::{Component, Health};
use crate::model::{AckToken, Acknowledgement, BrokerAddress, Incoming, Intake, Queued, Route, now_ms};
use crate::shutdown::Shutdown;

/// The largest MQTT packet the client reads (topic, payload and header): the Mosquitto configs in
/// deploy/ and the test broker limit payloads to 1 MiB (`message_size_limit 1048576`).
pub const MAX_PACKET: usize = 2 * 1024 * 1024;
/// The largest packet the client sends (alerts, commands: a few hundred bytes).
const MAX_OUTGOING_PACKET: usize = 64 * 1024;

/// The subscriptions of one gateway of `site`, shared when the config names a group.
pub fn subscriptions(site: &SiteId, share_group: Option<&str>) -> Vec<String> {
    [
        NodeTopic::Telemetry,
        NodeTopic::Status,
        NodeTopic::Ack,
        NodeTopic::OtaAck,
    ]
    .into_iter()
    .map(|kind| {
        let filter = topic::node_filter(Some(site), kind);
        match share_group {
            // Status and acks are small and every instance wants them all (node registry,
            // command tracking); telemetry is what is shared out.
            Some(group) if kind == NodeTopic::Telemetry => format!("$share/{group}/{filter}"),
            _ => filter.to_string(),
        }
    })
    .collect()
}

/// Builds the client options: credentials and TLS read now, so a missing secret fails at start.
pub fn options(config: &MqttConfig) -> Result<MqttOptions, ConfigError> {
    let address = BrokerAddress::parse(&config.url).map_err(|m| invalid("mqtt.url", m))?;
    let mut options = MqttOptions::new(&config.client_id, &address.host, address.port);
    options.set_clean_session(false);
    options.set_manual_acks(true);
    options.set_keep_alive(config.keep_alive);
    options.set_max_packet_size(MAX_PACKET, MAX_OUTGOING_PACKET);
    if let Some(username) = &config.username {
        let password = config
            .password
            .as_ref()
            .map(|p| p.read("mqtt.password"))
            .transpose()?
            .unwrap_or_default();
        options.set_credentials(username, password);
    }
    if address.tls {
        options.set_transport(Transport::Tls(tls_config(config)?));
    }
    Ok(options)
}

fn tls_config(config: &MqttConfig) -> Result<TlsConfiguration, ConfigError> {
    let read_pem = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &config.ca_file {
        let pem = read_pem("mqtt.ca_file", ca)?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| invalid("mqtt.ca_file", e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| invalid("mqtt.ca_file", e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(invalid(
            "mqtt.ca_file",
            "mqtts:// needs the CA that signed the broker's certificate",
        ));
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("mqtt", e.to_string()))?
        .with_root_certificates(roots);
    let client = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert), Some(key)) => {
            let cert_pem = read_pem("mqtt.client_cert_file", cert)?;
            let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("mqtt.client_cert_file", e.to_string()))?;
            let key_pem = read_pem("mqtt.client_key_file", key)?;
            let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
                .map_err(|e| invalid("mqtt.client_key_file", e.to_string()))?
                .ok_or_else(|| invalid("mqtt.client_key_file", "no private key in the file"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| invalid("mqtt.client_key_file", e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsConfiguration::Rustls(Arc::new(client)))
}

/// What the MQTT source reports to besides the pipeline.
#[derive(Debug, Clone)]
pub struct Watch {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// `host:port`, for messages.
    pub broker: String,
}

/// Why a connection failed, as a metric label.
fn failure_reason(error: &rumqttc::ConnectionError) -> &'static str {
    use rumqttc::{ConnectionError, StateError};
    match error {
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_),
        )) => "packet_too_large",
        ConnectionError::MqttState(StateError::Io(_)) | ConnectionError::Io(_) => "io",
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => "timeout",
        ConnectionError::ConnectionRefused(_) => "refused",
        ConnectionError::Tls(_) => "tls",
        _ => "protocol",
    }
}

/// How the source reads: gathered, and never far ahead of ingest.
#[derive(Debug, Clone)]
pub struct Pace {
    /// `mqtt.read_interval`: after a read that emptied the connection, the next waits this long, so
    /// that the messages arriving meanwhile are read, spooled (one fdatasync) and acknowledged (one
    /// write) together. At 1,000 messages a second that is one wake-up of each thread per 20 ms
    /// instead of one per message.
    pub read_interval: Duration,
    /// `mqtt.max_queue_delay`: the source does not read while the oldest message ingest has not
    /// taken waited this long (see [`Intake`]).
    pub max_queue_delay: Duration,
    pub intake: Arc<Intake>,
}

/// The most messages one burst hands to ingest before the source looks at the queue again.
const MAX_BURST: usize = 64;

/// The connection's state besides rumqttc's own.
struct Connection {
    client: AsyncClient,
    subscriptions: Vec<String>,
    watch: Watch,
    failures: u32,
    /// Subscriptions not yet confirmed by a SUBACK since the last CONNACK.
    unconfirmed: usize,
}

/// Runs the MQTT source until shutdown: forwards every PUBLISH to `incoming` and sends the acks
/// that arrive on `acks`.
pub async fn run(
    options: MqttOptions,
    subscriptions: Vec<String>,
    incoming: mpsc::Sender<Incoming>,
    mut acks: mpsc::UnboundedReceiver<Vec<AckToken>>,
    watch: Watch,
    pace: Pace,
    mut shutdown: Shutdown,
) {
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let network_timeout = Duration::from_secs(eventloop.network_options.connection_timeout());
    let mut connection = Connection {
        client,
        subscriptions,
        watch,
        failures: 0,
        unconfirmed: 0,
    };
    let mut burst = Vec::with_capacity(MAX_BURST);
    let mut queued = Queued::default();
    let mut tokens = Vec::new();
    let mut next_read = Instant::now();
    'run: loop {
        while let Ok(batch) = acks.try_recv() {
            tokens.extend(batch);
        }
        if !tokens.is_empty() {
            send_acks(&mut eventloop, &mut tokens, network_timeout).await;
        }
        let now = Instant::now();
        let behind = queued.oldest_wait(&pace.intake, now) >= pace.max_queue_delay;
        let resting = !behind && now < next_read;
        let first = tokio::select! {
            biased;
            () = shutdown.recv() => break,
            // While resting, acks wait for the next read (at most `read_interval`): one wake-up
            // for both.
            Some(batch) = acks.recv(), if !resting => {
                tokens.extend(batch);
                continue;
            }
            () = pace.intake.taken(), if behind => continue,
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(next_read)), if resting => continue,
            event = eventloop.poll(), if !behind && !resting => event,
        };
        // One burst: the event that woke the source and every one the connection already holds.
        let started = Instant::now();
        let mut event = first;
        let mut emptied = false;
        let retry = loop {
            if let Some(wait) = connection.on_event(event, &mut burst) {
                break Some(wait);
            }
            if burst.len() >= MAX_BURST {
                break None;
            }
            match eventloop.poll().now_or_never() {
                Some(next) => event = next,
                None => {
                    emptied = true;
                    break None;
                }
            }
        };
        if !burst.is_empty() {
            if emptied {
                next_read = started + pace.read_interval;
            }
            for message in burst.drain(..) {
                queued.handed(Instant::now());
                let message = match incoming.try_send(message) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Closed(_)) => break 'run,
                    Err(mpsc::error::TrySendError::Full(message)) => message,
                };
                // The queue is full: TCP back-pressure slows the broker meanwhile.
                tokio::select! {
                    sent = incoming.send(message) => if sent.is_err() { break 'run },
                    () = shutdown.recv() => break 'run,
                }
            }
        }
        if let Some(wait) = retry {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.recv() => break,
            }
        }
    }
    // Send what acks we have (the pipeline commits before acking), then leave cleanly.
    while let Ok(batch) = acks.try_recv() {
        tokens.extend(batch);
    }
    send_acks(&mut eventloop, &mut tokens, network_timeout).await;
    crate::source::mqtt_session::disconnect(&connection.client, &mut eventloop).await;
}

impl Connection {
    /// Handles one event of the connection: a PUBLISH joins `burst`. Returns how long to wait
    /// before trying again when the connection failed.
    fn on_event(
        &mut self,
        event: Result<Event, rumqttc::ConnectionError>,
        burst: &mut Vec<Incoming>,
    ) -> Option<Duration> {
        let watch = &self.watch;
        match event {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let ack = (publish.qos != QoS::AtMostOnce).then_some(AckToken { pkid: publish.pkid });
                burst.push(Incoming {
                    route: Route::Mqtt { topic: publish.topic },
                    payload: publish.payload,
                    received_ms: now_ms(),
                    ack: ack.map(Acknowledgement::Mqtt),
                });
            }
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                self.failures = 0;
                tracing::info!(broker = %watch.broker, session_present = connack.session_present, "connected to the MQTT broker");
                // Subscribing again on every connect is harmless and covers a broker that lost
                // the session.
                self.unconfirmed = self.subscriptions.len();
                for filter in &self.subscriptions {
                    if let Err(e) = self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                        tracing::error!("subscribe to {filter} failed: {e}");
                    }
                }
                watch.health.set(
                    Component::Mqtt,
                    Err(format!("connected to {}, subscribing", watch.broker)),
                );
            }
            Ok(Event::Incoming(Packet::SubAck(suback))) => {
                let refused = suback
                    .return_codes
                    .iter()
                    .any(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure));
                self.unconfirmed = self.unconfirmed.saturating_sub(1);
                if refused {
                    watch.health.set(
                        Component::Mqtt,
                        Err(format!("{} refused a subscription (ACL?)", watch.broker)),
                    );
                } else if self.unconfirmed == 0 {
                    watch.health.set(Component::Mqtt, Ok(()));
                }
            }
            Ok(_) => {}
            Err(e) => {
                self.failures += 1;
                let failures = self.failures;
                let wait = Duration::from_millis(200)
                    .saturating_mul(1 << failures.min(7))
                    .min(Duration::from_secs(15));
                let reason = failure_reason(&e);
                let detail = match reason {
                    "packet_too_large" => format!(
                        "{e}: the broker sends a message over {MAX_PACKET} bytes; set its message_size_limit below that"
                    ),
                    _ => e.to_string(),
                };
                MqttConnectionFailed {
                    reason,
                    broker: &watch.broker,
                    detail: &detail,
                    in_a_row: failures,
                    retry_in: wait,
                }
                .emit(&watch.metrics);
                watch.health.set(
                    Component::Mqtt,
                    Err(format!(
                        "{}: {detail} ({failures} failures in a row)",
                        watch.broker
                    )),
                );
                return Some(wait);
            }
        }
        None
    }
}

/// Writes the PUBACKs of one or more commits in one go: rumqttc's `ack` sends each as a request of
/// its own, one socket write per message (1,000 writes a second at a steady 1,000 messages a
/// second), so the source writes them through the connection itself, then flushes once.
/// Without a connection they are dropped: the broker delivers those messages again after the
/// reconnect, ingest finds them duplicates and acknowledges them then.
async fn send_acks(eventloop: &mut rumqttc::EventLoop, tokens: &mut Vec<AckToken>, timeout: Duration) {
    let Some(network) = eventloop.network.as_mut() else {
        tokens.clear();
        return;
    };
    let mut written = Ok(());
    for token in tokens.drain(..) {
        if written.is_err() {
            continue;
        }
        written = match eventloop
            .state
            .handle_outgoing_packet(Request::PubAck(PubAck::new(token.pkid)))
        {
            Ok(Some(packet)) => network.write(packet).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
    }
    // A failing connection is reported by the next poll, which reconnects.
    match written {
        Ok(()) => match tokio::time::timeout(timeout, network.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("PUBACKs not written: {e}"),
            Err(_) => tracing::debug!("PUBACKs not written: the broker took none for {timeout:?}"),
        },
        Err(e) => tracing::debug!("PUBACKs not written: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            BrokerAddress::parse("mqtts://broker.example:8884").unwrap(),
            BrokerAddress {
                host: "broker.example".into(),
                port: 8884,
                tls: true
            }
        );
        assert_eq!(BrokerAddress::parse("mqtt://10.0.0.1").unwrap().port, 1883);
        assert!(BrokerAddress::parse("tcp://x").is_err());
        assert!(BrokerAddress::parse("mqtt://x:port").is_err());
    }

    #[test]
    fn shared_group_applies_to_telemetry_only() {
        let site = SiteId::new("fra1").unwrap();
        assert_eq!(
            subscriptions(&site, Some("gw")),
            vec![
                "$share/gw/rackwatch/v1/fra1/+/telemetry",
                "rackwatch/v1/fra1/+/status",
                "rackwatch/v1/fra1/+/cmd/ack",
                "rackwatch/v1/fra1/+/ota/ack"
            ]
        );
    }
}
