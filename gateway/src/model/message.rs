//! A message as a source received it, and how it is acknowledged once durable.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A message as a source received it, before decoding.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub route: Route,
    pub payload: Bytes,
    /// Unix milliseconds at receipt.
    pub received_ms: i64,
    /// Set for MQTT QoS 1 and serial telemetry: answered once the message is durably spooled (or
    /// dead-lettered).
    pub ack: Option<Acknowledgement>,
}

/// Where a message came from, which says what it is.
#[derive(Debug, Clone)]
pub enum Route {
    Mqtt {
        topic: String,
    },
    /// A serial frame; the node id comes from the payload.
    Serial {
        port: Arc<str>,
        kind: rackwatch_protocols::frame::FrameKind,
    },
}

impl Route {
    /// The MQTT topic, for logs and dead letters.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Route::Mqtt { topic } => Some(topic),
            Route::Serial { port, .. } => Some(port),
        }
    }
}

/// What the MQTT source needs to acknowledge one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckToken {
    pub pkid: u16,
}

/// How a durably spooled message is acknowledged to whoever sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acknowledgement {
    /// The PUBACK of an MQTT QoS 1 PUBLISH.
    Mqtt(AckToken),
    /// The `Stored` frame to write on a serial port (protocols/README.md, "Serial frames").
    Serial { port: Arc<str>, frame: Bytes },
}

/// Where ingest hands each acknowledgement once its commit is durable: PUBACKs to the MQTT source,
/// a commit's together (it writes them with one flush), `Stored` frames to the serial port whose
/// node sent the telemetry. Straight from ingest: no task in between to wake.
#[derive(Debug, Clone, Default)]
pub struct AckRoutes {
    pub mqtt: Option<mpsc::UnboundedSender<Vec<AckToken>>>,
    pub serial: HashMap<Arc<str>, mpsc::UnboundedSender<Bytes>>,
}

impl AckRoutes {
    /// A source that is gone (shutdown) is answered by its peer resending: nothing to do then.
    pub fn send(&self, acks: &mut Vec<Acknowledgement>) {
        let mut tokens = Vec::with_capacity(acks.len());
        for ack in acks.drain(..) {
            match ack {
                Acknowledgement::Mqtt(token) => tokens.push(token),
                Acknowledgement::Serial { port, frame } => {
                    if let Some(port) = self.serial.get(&port) {
                        let _ = port.send(frame);
                    }
                }
            }
        }
        if let Some(mqtt) = self.mqtt.as_ref().filter(|_| !tokens.is_empty()) {
            let _ = mqtt.send(tokens);
        }
    }
}
