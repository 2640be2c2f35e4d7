//! Internal events: every counted occurrence is a typed event whose `emit` updates its metric and
//! writes its (rate-limited) log line together, so a counter and its message never drift apart.
//! Events take reason labels, not the stages' own types: every stage imports `events`, `events`
//! imports no stage.

mod alert;
mod firmware;
mod ingest;
mod metrics;
mod sink;

pub use alert::{AlertPublishFailed, FanCommandOutcome, FanCommandResult, NotificationFailed};
pub use firmware::{FirmwareUpdateFailed, failure_reason};
pub use ingest::{
    MessageRejected, MqttConnectionFailed, ReadingRejected, SequenceGap, SpoolFailed, SpoolFull,
};
pub use metrics::{AlertStateLabel, ComponentLabel, Metrics, NodeLabel, ReasonLabel, ReceiverLabel};
pub use sink::{DatabaseHalted, PointsDroppedByDatabase, WriteFailed};
