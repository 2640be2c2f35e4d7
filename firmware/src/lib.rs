//! The rackwatch sensor-node application core: `#![no_std]`, no heap, sans-IO.
//!
//! A node reads its sensors through the `hardware` crate's channel abstraction and talks MQTT through a
//! byte-stream [`Transport`]; it never touches a register, a socket or a clock itself. The board (or the
//! host) owns those and drives the core with [`Node::poll`]`(now_ms, &mut sensors, &mut transport)`.
//! The same core therefore runs on the QEMU board over smoltcp (`boards/lm3s6965evb`), on the host over
//! tokio TCP (feature `host`, [`host`]), and in unit tests over a fake transport and a fake clock.
//!
//! The stages, in the order data flows through them:
//! - [`sampling`]: per-channel schedule, calibration (gain, offset), median or moving-average filter;
//! - [`store`]: the store-and-forward ring of sampled records (oldest dropped and counted when full);
//! - [`node`]: the MQTT session, publishing records oldest first at QoS 1, and commands;
//! - [`mqtt`]: the MQTT 3.1.1 packet codec the session speaks;
//! - [`transport`]: the byte stream the session runs over; `tls` (feature `tls`) encrypts it;
//! - [`provisioning`] and [`config_store`]: serial provisioning frames and the two-slot configuration store;
//! - [`serial_uplink`]: telemetry of a serial-attached node, kept until the gateway stored it;
//! - [`update`]: signed firmware updates received into the inactive slot; [`ota`] runs them with the
//!   [`boot`] control (trial boot, confirm, rollback), [`host_update`] gives the host a file-backed slot.
#![no_std]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[cfg(any(feature = "std", test))]
extern crate std;

pub mod boot;
pub mod boot_journal;
pub mod config_store;
#[cfg(feature = "host")]
pub mod host;
#[cfg(feature = "std")]
pub mod host_update;
pub mod mqtt;
pub mod node;
pub mod ota;
pub mod provisioning;
pub mod sampling;
pub mod serial_uplink;
pub mod store;
#[cfg(feature = "tls")]
pub mod tls;
pub mod transport;
pub mod update;

pub use node::{Backoff, DEFAULT_INTERVAL_MS, Event, MAX_IN_FLIGHT, Node, NodeConfig, Poll};
pub use sampling::{Calibration, ChannelSetup, Filter, MAX_CHANNELS};
pub use store::{DEFAULT_RING_CAPACITY, Record, Ring};
pub use transport::{LinkError, LinkState, Transport};
