//! Sources: where messages enter the gateway. Each hands [`crate::model::Incoming`] to the pipeline
//! through one bounded channel, so a slow spool slows the sources instead of growing memory.

pub mod mqtt;
pub mod serial;
