//! Normalised readings and what ingest passes on to the stages after it.

use std::sync::Arc;

use rackwatch_protocols::{ChannelName, NodeId, Quantity, ReadingStatus};

use super::place::{Placement, Position};

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
