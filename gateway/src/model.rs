//! Types that more than one stage uses. Stages depend on these, never on each other's internals.

use std::sync::Arc;

use bytes::Bytes;
use rackwatch_protocols::{ChannelName, NodeId, Quantity, ReadingStatus};

use crate::inventory::{Placement, Position};

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
    /// A transition of this gateway's own alert engine (the payload is its Alert JSON), spooled like
    /// readings so the database keeps the alert history for Grafana annotations.
    Alert,
}

impl Route {
    /// The MQTT topic, for logs and dead letters.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Route::Mqtt { topic } => Some(topic),
            Route::Serial { port, .. } => Some(port),
            Route::Alert => Some("alerts"),
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

/// One series: a node's channel measuring one quantity, with everything needed to tag it.
#[derive(Debug)]
pub struct Series {
    pub node: NodeId,
    pub channel: ChannelName,
    pub quantity: Quantity,
    pub placement: Option<Placement>,
    /// Shared by every series of the node.
    pub position: Arc<Position>,
    /// `reading,channel=..,node=..,...` up to the field set: built once per series.
    pub line_prefix: Vec<u8>,
}

/// A normalised reading, as the alert engine and the dashboard see it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub series: Arc<Series>,
    /// In the quantity's canonical unit; `None` when the sensor reported a fault.
    pub value: Option<f64>,
    pub status: ReadingStatus,
    pub timestamp_ms: i64,
    /// Unix ms when the message carrying it reached the gateway (for alert latency).
    pub received_ms: i64,
}

/// Unix time now in milliseconds.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// What ingest tells later stages (alert engine, dashboard) once it is durable, in arrival order.
#[derive(Debug, Clone)]
pub enum Observation {
    /// The normalised readings of one commit.
    Samples(Arc<[Sample]>),
    /// A node's birth or last will (boxed: a birth lists up to 16 channel names).
    Status {
        status: Box<rackwatch_protocols::Status>,
        received_ms: i64,
    },
    /// A node's answer to a command.
    Ack {
        ack: rackwatch_protocols::Ack,
        received_ms: i64,
    },
}
