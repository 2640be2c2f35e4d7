//! `[nodes.<id>]`: the inventory, where each node is mounted and what its channels are.

use std::collections::BTreeMap;

use rackwatch_protocols::{ChannelName, Label, NodeId};
use serde::Deserialize;

use super::error::{ConfigError, invalid};
use crate::model::Placement;

/// Where a node is and what its channels are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInventory {
    #[serde(default)]
    pub room: Option<Label>,
    #[serde(default)]
    pub row: Option<Label>,
    #[serde(default)]
    pub rack: Option<Label>,
    /// Rack unit, counted from the bottom.
    #[serde(default)]
    pub u: Option<u8>,
    /// Channel -> placement. A channel not listed whose name is a placement (`inlet_top`) takes it.
    #[serde(default)]
    pub placement: BTreeMap<ChannelName, Placement>,
    /// Channel -> calibration, applied after unit conversion: value × gain + offset.
    #[serde(default)]
    pub calibration: BTreeMap<ChannelName, Calibration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    #[serde(default = "one")]
    pub gain: f64,
    #[serde(default)]
    pub offset: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            gain: 1.0,
            offset: 0.0,
        }
    }
}

fn one() -> f64 {
    1.0
}

impl NodeInventory {
    pub(super) fn validate(&self, node: &NodeId) -> Result<(), ConfigError> {
        for (channel, calibration) in &self.calibration {
            if !(calibration.gain.is_finite() && calibration.offset.is_finite()) || calibration.gain == 0.0 {
                return Err(invalid(
                    format!("nodes.{node}.calibration.{channel}"),
                    "gain and offset must be finite and gain non-zero",
                ));
            }
        }
        Ok(())
    }
}
