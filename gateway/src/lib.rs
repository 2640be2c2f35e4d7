//! The rackwatch gateway. Read [`pipeline`] first: it connects the stages in the order data flows.
//!
//! ```text
//! source (MQTT, serial) -> decode -> normalise -> derive -> spool -> sink (InfluxDB, VictoriaMetrics)
//!                                                   \-> alert (rules, incidents, notifications, cooling)
//!                                                   \-> view (dashboard, HTTP API)
//! ```
//!
//! `ingest` runs decode, normalise, derive (the rack and row measures) and the spool write on one
//! thread and fans what it observed out to the alert engine and the view. Below every stage: `model` (the shared vocabulary), `schema`
//! (every point written to the database), `config`, `events` (counted and logged occurrences).
//! `tools` are the other commands (`rackwatch node`, `firmware`, `demo`).

pub mod alert;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod decode;
pub mod derive;
pub mod events;
pub mod forecast;
pub mod health;
pub mod ingest;
pub mod inventory;
pub mod model;
pub mod normalise;
pub mod pipeline;
pub mod schema;
pub mod secret;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod spool;
pub mod tools;
pub mod view;
