//! The alert engine's own MQTT connection (client id = the gateway's + `-a`): alert state
//! retained on `rackwatch/v1/{site}/alerts/{key}`, transitions on `.../alerts/events`, and fan
//! commands on `rackwatch/v1/{site}/{node}/cmd`. Separate from the ingest connection so publishing
//! never waits behind ingest's manual acknowledgements.

use bytes::Bytes;
use rackwatch_protocols::topic::{self, NodeTopic};
use rackwatch_protocols::{Alert, Command, NodeId, SiteId};
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use crate::config::{ConfigError, MqttConfig};
use crate::shutdown::Shutdown;

/// Publishes for the engine without ever waiting: a full queue is an error the caller counts.
#[derive(Debug, Clone)]
pub struct AlertPublisher {
    client: AsyncClient,
    site: SiteId,
}

/// Why a message was not queued.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("encode: {0}")]
    Encode(rackwatch_protocols::EncodeError),
    #[error("MQTT client queue: {0}")]
    Queue(#[from] rumqttc::ClientError),
}

/// The alert connection's options: the ingest connection's broker, credentials and TLS, its own id,
/// a clean session (nothing to resume: the engine republishes its state on every connect).
pub fn options(config: &MqttConfig) -> Result<MqttOptions, ConfigError> {
    let mut options = crate::source::mqtt::options(config)?;
    options.set_client_id(format!(
        "{}{}",
        config.client_id,
        crate::config::ALERTS_CLIENT_SUFFIX
    ));
    options.set_clean_session(true);
    options.set_manual_acks(false);
    Ok(options)
}

impl AlertPublisher {
    /// Starts the connection; `connected` gets a message on every (re)connect, so the engine can
    /// publish its retained state again. The returned task runs until shutdown.
    pub fn start(
        options: MqttOptions,
        site: SiteId,
        connected: mpsc::UnboundedSender<()>,
        shutdown: Shutdown,
    ) -> (AlertPublisher, tokio::task::JoinHandle<()>) {
        let (client, eventloop) = AsyncClient::new(options, 4096);
        let task = tokio::spawn(crate::source::mqtt_session::drive(
            "alert",
            client.clone(),
            eventloop,
            shutdown,
            move |packet| {
                if matches!(packet, Packet::ConnAck(_)) {
                    let _ = connected.send(());
                }
            },
        ));
        (AlertPublisher { client, site }, task)
    }

    /// The alert's state (`payload`, its JSON), retained, and (when `event`) the transition on the
    /// events topic.
    pub fn alert(&self, alert: &Alert, payload: &Bytes, event: bool) -> Result<(), PublishError> {
        let state_topic = topic::alert(&self.site, &alert.key);
        self.client
            .try_publish(state_topic.as_str(), QoS::AtLeastOnce, true, payload.clone())?;
        if event {
            let events = topic::alert_events(&self.site);
            self.client
                .try_publish(events.as_str(), QoS::AtLeastOnce, false, payload.clone())?;
        }
        Ok(())
    }

    /// Removes the alert's retained state (an empty retained message: MQTT 3.1.1 §3.3.1.3).
    pub fn withdraw(&self, key: &str) -> Result<(), PublishError> {
        let state_topic = topic::alert(&self.site, key);
        self.client
            .try_publish(state_topic.as_str(), QoS::AtLeastOnce, true, Vec::new())?;
        Ok(())
    }

    /// A command to one node.
    pub fn command(&self, node: &NodeId, command: &Command) -> Result<(), PublishError> {
        let mut buf = vec![0u8; rackwatch_protocols::MAX_MESSAGE_LEN];
        let n = command.encode(&mut buf).map_err(PublishError::Encode)?;
        buf.truncate(n);
        let topic = topic::node(&self.site, node, NodeTopic::Command);
        self.client
            .try_publish(topic.as_str(), QoS::AtLeastOnce, false, buf)?;
        Ok(())
    }
}
