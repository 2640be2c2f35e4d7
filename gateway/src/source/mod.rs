//! Sources: where messages enter the gateway. Each hands [`crate::model::Incoming`] to the pipeline
//! through one bounded channel, so a slow spool slows the sources instead of growing memory.

pub mod lookout;
pub mod mqtt;
pub mod mqtt_session;
pub mod serial;
pub mod serial_nodes;
