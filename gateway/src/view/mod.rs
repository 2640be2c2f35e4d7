//! What people and other systems see and do over HTTP: the facilities dashboard and its API, the
//! HTTP server with metrics and health, and operators' commands to nodes.

pub mod command;
pub mod dashboard;
pub mod history;
pub mod http;
