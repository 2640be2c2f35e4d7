//! Where a reading comes from in the room: the rack, row and room of its node and the probe's place
//! on the rack. Tags of every series, and the grouping of rack and row measures.

use rackwatch_protocols::Label;
use serde::{Deserialize, Serialize};

/// The rack tag of a node that is not in the inventory: written, listed, never dropped.
pub const UNASSIGNED: &str = "unassigned";

/// A side of a rack on the floor plan: north is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FloorSide {
    North,
    South,
}

/// Where a probe sits on or in the rack. Inlet and outlet placements feed the rack's ΔT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    InletTop,
    InletMiddle,
    InletBottom,
    Inlet,
    OutletTop,
    OutletMiddle,
    OutletBottom,
    Outlet,
    /// Room air away from any rack face.
    Ambient,
    /// Busbar or PSU feed.
    Power,
    Fan,
}

/// Which side of the rack's airflow a placement is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AirSide {
    Inlet,
    Outlet,
}

impl Placement {
    const ALL: [Placement; 11] = [
        Placement::InletTop,
        Placement::InletMiddle,
        Placement::InletBottom,
        Placement::Inlet,
        Placement::OutletTop,
        Placement::OutletMiddle,
        Placement::OutletBottom,
        Placement::Outlet,
        Placement::Ambient,
        Placement::Power,
        Placement::Fan,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Placement::InletTop => "inlet_top",
            Placement::InletMiddle => "inlet_middle",
            Placement::InletBottom => "inlet_bottom",
            Placement::Inlet => "inlet",
            Placement::OutletTop => "outlet_top",
            Placement::OutletMiddle => "outlet_middle",
            Placement::OutletBottom => "outlet_bottom",
            Placement::Outlet => "outlet",
            Placement::Ambient => "ambient",
            Placement::Power => "power",
            Placement::Fan => "fan",
        }
    }

    /// A channel named like a placement (`inlet_top`) sits there unless the inventory says otherwise.
    pub fn from_channel(channel: &str) -> Option<Placement> {
        Self::ALL.into_iter().find(|p| p.as_str() == channel)
    }

    pub const fn air_side(self) -> Option<AirSide> {
        match self {
            Placement::InletTop | Placement::InletMiddle | Placement::InletBottom | Placement::Inlet => {
                Some(AirSide::Inlet)
            }
            Placement::OutletTop | Placement::OutletMiddle | Placement::OutletBottom | Placement::Outlet => {
                Some(AirSide::Outlet)
            }
            _ => None,
        }
    }
}

/// A node's position, resolved for tagging.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    pub room: Option<Label>,
    pub row: Option<Label>,
    /// `None` for a node missing from the inventory (tagged `rack="unassigned"`).
    pub rack: Option<Label>,
}

impl Position {
    pub fn rack_tag(&self) -> &str {
        self.rack.as_deref().unwrap_or(UNASSIGNED)
    }

    /// The rack's id across the site: `room.row.rack` (`-` for a level the inventory leaves out),
    /// as the dashboard's API and the history's series keys name it.
    pub fn rack_id(&self) -> String {
        rack_id(self.room.as_deref(), self.row.as_deref(), self.rack_tag())
    }
}

/// [`Position::rack_id`] from the tags of a stored point.
pub fn rack_id(room: Option<&str>, row: Option<&str>, rack: &str) -> String {
    format!("{}.{}.{rack}", room.unwrap_or("-"), row.unwrap_or("-"))
}
