//! Where each node is mounted and where each of its probes sits: the tags readings are written with.

use std::collections::HashMap;

use crate::config::{Calibration, Config, NodeInventory};
use crate::model::{FloorSide, Placement, Position};

/// The inventory of the configuration, indexed for lookups on the hot path.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    nodes: HashMap<String, NodeInventory>,
}

impl Inventory {
    pub fn from_config(config: &Config) -> Self {
        Inventory {
            nodes: config
                .nodes
                .iter()
                .map(|(id, inv)| (id.to_string(), inv.clone()))
                .collect(),
        }
    }

    pub fn contains(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    pub fn position(&self, node: &str) -> Position {
        match self.nodes.get(node) {
            Some(n) => Position {
                room: n.room.clone(),
                row: n.row.clone(),
                rack: n.rack.clone(),
            },
            None => Position {
                room: None,
                row: None,
                rack: None,
            },
        }
    }

    pub fn placement(&self, node: &str, channel: &str) -> Option<Placement> {
        self.nodes
            .get(node)
            .and_then(|n| {
                n.placement
                    .iter()
                    .find(|(c, _)| c.as_str() == channel)
                    .map(|(_, p)| *p)
            })
            .or_else(|| Placement::from_channel(channel))
    }

    pub fn calibration(&self, node: &str, channel: &str) -> Calibration {
        self.nodes
            .get(node)
            .and_then(|n| {
                n.calibration
                    .iter()
                    .find(|(c, _)| c.as_str() == channel)
                    .map(|(_, c)| *c)
            })
            .unwrap_or_default()
    }

    /// Where the inventory puts `rack` on the floor: its tile position and cold-aisle side, from the
    /// first of its nodes that gives each.
    pub fn floor_place(&self, rack: &Position) -> (Option<(u16, u16)>, Option<FloorSide>) {
        let mut nodes: Vec<(&String, &NodeInventory)> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.room == rack.room && n.row == rack.row && n.rack == rack.rack)
            .collect();
        nodes.sort_by_key(|(id, _)| *id);
        let tiles = nodes.iter().find_map(|(_, n)| n.x.zip(n.y));
        let cold_aisle = nodes.iter().find_map(|(_, n)| n.cold_aisle);
        (tiles, cold_aisle)
    }

    /// Every rack of the inventory as (room, row, rack), for the dashboard's floor plan.
    pub fn racks(&self) -> Vec<Position> {
        let mut racks: Vec<Position> = self
            .nodes
            .values()
            .filter(|n| n.rack.is_some())
            .map(|n| Position {
                room: n.room.clone(),
                row: n.row.clone(),
                rack: n.rack.clone(),
            })
            .collect();
        racks.sort_by(|a, b| (&a.room, &a.row, &a.rack).cmp(&(&b.room, &b.row, &b.rack)));
        racks.dedup();
        racks
    }
}
