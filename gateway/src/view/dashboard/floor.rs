//! The floor plan: where each inventory rack stands, in floor tiles, and where its aisles are.
//!
//! A rack placed in the inventory (`x`, `y` on one of its nodes) stands there. The others stand in
//! their row, in rack order, one row every two tiles so that an aisle runs between neighbouring
//! rows: hot aisle / cold aisle containment, where rows face each other across the cold aisle and
//! turn their backs to each other across the hot one (ASHRAE TC 9.9, "Thermal Guidelines", ch. 2).
//! A rack's `cold_aisle` side overrides the alternation. Each rack marks the tile in front of it as
//! cold aisle and the tile behind it as hot aisle; the page draws those tiles as aisles.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::inventory::Inventory;
use crate::model::{FloorSide, Position};

/// One room's floor, as `GET /api/room` gives it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RoomFloor {
    pub room: String,
    /// Tiles east-west and north-south, one tile of margin around the racks included.
    pub width: u16,
    pub height: u16,
    pub racks: Vec<FloorRack>,
    pub aisles: Vec<AisleTile>,
}

/// A rack on the floor: tile column `x` (east), tile row `y` (south).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FloorRack {
    pub id: String,
    pub x: u16,
    pub y: u16,
    /// The side its front (inlets) faces.
    pub cold_aisle: FloorSide,
    /// `inventory` when `x`, `y` were configured, `row` when placed by its row.
    pub placed_by: &'static str,
}

/// A tile of aisle beside a rack.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AisleTile {
    pub x: u16,
    pub y: u16,
    /// `cold` (in front of racks) or `hot` (behind them).
    pub kind: &'static str,
}

/// A room's racks by row, in rack order: (id, position).
type RoomRows<'a> = BTreeMap<String, Vec<(&'a String, &'a Position)>>;

/// The floor plan of every room of the inventory, racks by id as `rack_id` names them.
pub fn floor_plan(inventory: &Inventory, racks: &[(String, Position)]) -> Vec<RoomFloor> {
    let mut rooms: BTreeMap<String, RoomRows<'_>> = BTreeMap::new();
    for (id, position) in racks {
        let room = position.room.as_ref().map_or("-".to_owned(), ToString::to_string);
        let row = position.row.as_ref().map_or("-".to_owned(), ToString::to_string);
        rooms
            .entry(room)
            .or_default()
            .entry(row)
            .or_default()
            .push((id, position));
    }
    rooms
        .into_iter()
        .map(|(room, rows)| room_floor(room, &rows, inventory))
        .collect()
}

fn room_floor(
    room: String,
    rows: &BTreeMap<String, Vec<(&String, &Position)>>,
    inventory: &Inventory,
) -> RoomFloor {
    let places: Vec<Vec<_>> = rows
        .values()
        .map(|racks| {
            racks
                .iter()
                .map(|(id, position)| ((*id).clone(), inventory.floor_place(position)))
                .collect()
        })
        .collect();
    // Racks placed by their row go south of every rack placed by the inventory.
    let first_row_y = places
        .iter()
        .flatten()
        .filter_map(|(_, (tiles, _))| tiles.map(|(_, y)| y.saturating_add(2)))
        .max()
        .unwrap_or(1);
    let mut floor_racks = Vec::new();
    for (row_index, row) in places.into_iter().enumerate() {
        // Even rows face south, odd rows north: rows 0 and 1 share a cold aisle.
        let row_faces = if row_index % 2 == 0 {
            FloorSide::South
        } else {
            FloorSide::North
        };
        let row_y = u16::try_from(row_index * 2)
            .unwrap_or(u16::MAX)
            .saturating_add(first_row_y);
        for (position_in_row, (id, (tiles, cold_aisle))) in row.into_iter().enumerate() {
            let (x, y, placed_by) = match tiles {
                Some((x, y)) => (x, y, "inventory"),
                None => (
                    u16::try_from(position_in_row + 1).unwrap_or(u16::MAX),
                    row_y,
                    "row",
                ),
            };
            floor_racks.push(FloorRack {
                id,
                x,
                y,
                cold_aisle: cold_aisle.unwrap_or(row_faces),
                placed_by,
            });
        }
    }
    let aisles = aisles(&floor_racks);
    let width = floor_racks
        .iter()
        .map(|r| r.x)
        .max()
        .unwrap_or(0)
        .saturating_add(2);
    let height = floor_racks
        .iter()
        .map(|r| r.y)
        .max()
        .unwrap_or(0)
        .saturating_add(2);
    RoomFloor {
        room,
        width,
        height,
        racks: floor_racks,
        aisles,
    }
}

/// The tile in front of each rack is cold aisle, the tile behind it hot aisle; a tile that is both
/// (racks placed back to front) is drawn cold, where the inlets are.
fn aisles(racks: &[FloorRack]) -> Vec<AisleTile> {
    let occupied: std::collections::BTreeSet<(u16, u16)> = racks.iter().map(|r| (r.x, r.y)).collect();
    let mut tiles: BTreeMap<(u16, u16), &'static str> = BTreeMap::new();
    for rack in racks {
        let (front, back) = match rack.cold_aisle {
            FloorSide::North => (rack.y.checked_sub(1), rack.y.checked_add(1)),
            FloorSide::South => (rack.y.checked_add(1), rack.y.checked_sub(1)),
        };
        for (y, kind) in [(front, "cold"), (back, "hot")] {
            let Some(y) = y else { continue };
            if occupied.contains(&(rack.x, y)) {
                continue;
            }
            let tile = tiles.entry((rack.x, y)).or_insert(kind);
            if kind == "cold" {
                *tile = "cold";
            }
        }
    }
    tiles
        .into_iter()
        .map(|((x, y), kind)| AisleTile { x, y, kind })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn plan(nodes: &str) -> Vec<RoomFloor> {
        let text = format!(
            "site = \"fra1\"\n[mqtt]\nurl = \"mqtt://127.0.0.1\"\n[spool]\ndir = \"/tmp/x\"\n{nodes}"
        );
        let inventory = Inventory::from_config(&Config::parse(&text).unwrap());
        let racks: Vec<(String, Position)> =
            inventory.racks().into_iter().map(|p| (p.rack_id(), p)).collect();
        floor_plan(&inventory, &racks)
    }

    fn node(id: &str, row: &str, rack: &str, extra: &str) -> String {
        format!("[nodes.{id}]\nroom = \"hall\"\nrow = \"{row}\"\nrack = \"{rack}\"\n{extra}\n")
    }

    fn at(floor: &RoomFloor, rack: &str) -> (u16, u16, FloorSide) {
        let r = floor.racks.iter().find(|r| r.id.ends_with(rack)).unwrap();
        (r.x, r.y, r.cold_aisle)
    }

    fn aisle(floor: &RoomFloor, x: u16, y: u16) -> Option<&'static str> {
        floor.aisles.iter().find(|a| (a.x, a.y) == (x, y)).map(|a| a.kind)
    }

    #[test]
    fn rows_without_positions_face_each_other_across_a_cold_aisle() {
        let nodes = [
            node("n1", "r01", "a01", ""),
            node("n2", "r01", "a02", ""),
            node("n3", "r02", "b01", ""),
            node("n4", "r03", "c01", ""),
        ]
        .concat();
        let floor = &plan(&nodes)[0];
        assert_eq!(at(floor, "a01"), (1, 1, FloorSide::South));
        assert_eq!(at(floor, "a02"), (2, 1, FloorSide::South));
        assert_eq!(at(floor, "b01"), (1, 3, FloorSide::North));
        assert_eq!(at(floor, "c01"), (1, 5, FloorSide::South));
        // Behind row 1, between rows 1 and 2, between rows 2 and 3.
        assert_eq!(aisle(floor, 1, 0), Some("hot"));
        assert_eq!(aisle(floor, 1, 2), Some("cold"));
        assert_eq!(aisle(floor, 1, 4), Some("hot"));
        assert_eq!((floor.width, floor.height), (4, 7));
    }

    #[test]
    fn inventory_positions_and_cold_aisle_side_are_kept() {
        let nodes = [
            node("n1", "r01", "a01", "x = 4\ny = 2\ncold_aisle = \"north\""),
            node("n2", "r01", "a02", ""),
        ]
        .concat();
        let floor = &plan(&nodes)[0];
        assert_eq!(at(floor, "a01"), (4, 2, FloorSide::North));
        assert_eq!(floor.racks[0].placed_by, "inventory");
        assert_eq!(aisle(floor, 4, 1), Some("cold"));
        assert_eq!(aisle(floor, 4, 3), Some("hot"));
        // Placed by its row, south of the placed rack.
        assert_eq!(at(floor, "a02").1, 4);
    }

    #[test]
    fn a_floor_position_beyond_the_hall_or_half_given_is_a_config_error() {
        let text = |extra: &str| {
            format!(
                "site = \"fra1\"\n[mqtt]\nurl = \"mqtt://127.0.0.1\"\n[spool]\ndir = \"/tmp/x\"\n{}",
                node("n1", "r01", "a01", extra)
            )
        };
        let error = Config::parse(&text("x = 1001\ny = 1")).unwrap_err().to_string();
        assert!(error.contains("nodes.n1.x"), "{error}");
        let error = Config::parse(&text("y = 3")).unwrap_err().to_string();
        assert!(error.contains("nodes.n1.x"), "{error}");
        assert!(Config::parse(&text("cold_aisle = \"east\"")).is_err());
    }
}
