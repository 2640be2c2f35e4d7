//! The rackwatch gateway. Read [`pipeline`] first: it connects the stages in the order data flows.
//!
//! `source` (MQTT, serial) -> `decode` -> `normalise` (with `inventory`) -> `spool` -> `influx`,
//! with `ingest` running decode/normalise/spool on one thread, and `events` counting and logging
//! everything that is rejected.

pub mod alert;
pub mod cli;
pub mod cluster;
pub mod command;
pub mod config;
pub mod dashboard;
pub mod deadletter;
pub mod decode;
pub mod demo;
pub mod events;
pub mod firmware_cli;
pub mod firmware_rollout;
pub mod forecast;
pub mod health;
pub mod history;
pub mod http;
pub mod influx;
pub mod ingest;
pub mod inventory;
pub mod line_protocol;
pub mod lookout;
pub mod model;
pub mod mqtt_session;
pub mod node_cli;
pub mod normalise;
pub mod pipeline;
pub mod schema;
pub mod secret;
pub mod serial_nodes;
pub mod shutdown;
pub mod source;
pub mod spool;
