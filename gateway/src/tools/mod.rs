//! The commands beside the gateway itself: `rackwatch node` (provisioning, consoles, commands,
//! broker ACLs), `rackwatch firmware` (signing, rollouts) and `rackwatch demo`. Only the demo depends
//! on the node firmware and the simulated rack.

pub mod demo;
pub mod firmware;
pub mod node;
