//! A message as a source received it, and how it is acknowledged once durable.

use std::sync::Arc;

use bytes::Bytes;

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
