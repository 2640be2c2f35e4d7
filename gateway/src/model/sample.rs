//! Normalised readings and what ingest passes on to the stages after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rackwatch_protocols::{ChannelName, NodeId, Quantity, ReadingStatus};

use super::place::{Placement, Position};

/// What a rack or row measure is: the means of each air side, their difference, the total power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    /// Mean of the rack's inlet temperatures, °C.
    Inlet,
    /// Mean of the rack's outlet temperatures, °C.
    Outlet,
    /// Outlet mean minus inlet mean, K.
    DeltaT,
    /// Total of the power feeds, W.
    Power,
}

impl Measure {
    /// The field name in the `rack` and `row` measurements.
    pub const fn as_str(self) -> &'static str {
        match self {
            Measure::Inlet => "inlet",
            Measure::Outlet => "outlet",
            Measure::DeltaT => "delta_t",
            Measure::Power => "power",
        }
    }
}

/// What a series measures: one probe, or a measure of a rack or a row derived from its probes
/// (`derive.rs` makes those, once, for every later stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesScope {
    Probe,
    Rack(Measure),
    Row(Measure),
}

/// The node name of a derived series: it belongs to a rack or a row, not to one node.
pub const DERIVED_NODE: &str = "derived";

/// A series' number, unique in the process and dense from 0: a later stage keeps a fact about
/// every series in a bit table indexed by it (the alert engine: "no rule watches this one")
/// instead of a map entry per series. Taken when a stage makes a [`Series`], never reused (4·10⁹
/// series per process before it would wrap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesId(u32);

impl SeriesId {
    /// A number no series of this process has.
    pub fn next() -> SeriesId {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        SeriesId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// One series: a node's channel measuring one quantity, or a rack's or row's derived measure, with
/// everything needed to tag it.
#[derive(Debug)]
pub struct Series {
    pub id: SeriesId,
    pub scope: SeriesScope,
    /// [`DERIVED_NODE`] for a derived series.
    pub node: NodeId,
    pub channel: ChannelName,
    pub quantity: Quantity,
    pub placement: Option<Placement>,
    /// Shared by every series of the node (a row's series: `rack` is `None`).
    pub position: Arc<Position>,
    /// The node's tags after `quantity` (`,rack=..,site=..`), built once per node and shared by its
    /// series; the series' own tags come from its fields (`schema::series_reading`). Empty for a
    /// rack's or row's series: its point is written whole.
    pub line_tags: Arc<[u8]>,
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
