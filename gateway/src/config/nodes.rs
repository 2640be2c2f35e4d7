//! `[nodes.<id>]`: the inventory, where each node is mounted and what its channels are.

use std::collections::BTreeMap;

use rackwatch_protocols::{ChannelName, Label, NodeId};
use serde::Deserialize;

use super::error::{ConfigError, invalid};
use crate::model::{FloorSide, Placement};

/// The largest `x` or `y` of a rack on the floor plan.
pub const MAX_FLOOR_TILES: u16 = 1000;

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
    /// Where the rack stands on the floor plan, in floor tiles from the room's north-west corner
    /// (east, south). Without them the plan places the rack by its row and its place in the row.
    #[serde(default)]
    pub x: Option<u16>,
    #[serde(default)]
    pub y: Option<u16>,
    /// Which side of the rack the cold aisle is on (its front). Without it, rows alternate so that
    /// they face each other across the aisles, hot aisle / cold aisle containment's usual layout.
    #[serde(default)]
    pub cold_aisle: Option<FloorSide>,
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
        // A thousand 600 mm tiles is a 600 m hall; beyond it is a typo.
        for (key, tiles) in [("x", self.x), ("y", self.y)] {
            if tiles.is_some_and(|t| t > MAX_FLOOR_TILES) {
                return Err(invalid(
                    format!("nodes.{node}.{key}"),
                    format!("floor tiles from the room's corner, at most {MAX_FLOOR_TILES}"),
                ));
            }
        }
        if self.x.is_some() != self.y.is_some() {
            return Err(invalid(
                format!("nodes.{node}.x"),
                "give both `x` and `y`, or neither",
            ));
        }
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
