//! The end-to-end test harness: real servers, started by the tests themselves.
//!
//! Every server runs in its own temporary folder on a free loopback port, is waited for until it
//! answers, can be stopped and started again mid-test on the same port and data, and is killed when
//! its handle drops (also when a test panics). A missing binary fails the test with the command that
//! installs it: tests never skip silently and never use a server someone started by hand.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test support: a panic fails the test"
)]

mod alertmanager;
pub mod bench;
mod browser;
mod certs;
pub mod fleet;
mod gateway;
mod influxdb;
pub mod metrics;
mod mosquitto;
mod nginx;
mod process;
pub mod qemu;
pub mod room;
mod tmpfs;
mod victoria;

pub use alertmanager::Alertmanager;
pub use browser::Browser;
pub use certs::Certificates;
pub use gateway::{Gateway, GatewaySettings, http_get, http_response};
pub use influxdb::{ADMIN as INFLUXDB_ADMIN, InfluxDb, InfluxDbConfig, QuerySeries};
pub use mosquitto::{MESSAGE_SIZE_LIMIT, Mosquitto, MosquittoConfig, MosquittoTls};
pub use nginx::{Logged, Nginx};
pub use process::{Service, find_binary, free_port};
pub use tmpfs::Tmpfs;
pub use victoria::{ExportedSeries, VictoriaClient, VictoriaMetrics};

/// Unix time now in milliseconds.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}
