//! What the facilities view shows, kept current from the gateway's observations: the latest value of
//! every probe of every inventory rack, the rack measures `derive.rs` computed (mean outlet, ΔT,
//! power), a minute-by-minute window of each rack's conditions for the charts, the trend of each
//! rack's hottest inlet toward the allowable limit, and the node registry (online, last seen,
//! firmware, gaps).
//!
//! Memory is bounded by the inventory: only racks listed in the configuration get a window (a load of
//! thousands of unassigned nodes keeps only their registry entries).

use std::collections::{BTreeMap, VecDeque};

use rackwatch_protocols::{NodeState, Status};
use serde::Serialize;

use super::time_to_limit::{InletLimit, InletTrend, TimeToLimit};
use crate::inventory::Inventory;
use crate::model::{AirSide, Measure, Placement, Position};
use crate::model::{Observation, Sample, SeriesScope};

/// Values older than this no longer count as the rack's current condition.
const STALE_MS: i64 = 5 * 60 * 1000;

/// One rack's identity, as the API names it: `{room}.{row}.{rack}` with `-` for an unknown part.
pub fn rack_id(position: &Position) -> String {
    position.rack_id()
}

/// A probe's latest value.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeValue {
    pub node: String,
    pub channel: String,
    pub quantity: &'static str,
    pub placement: Option<&'static str>,
    /// `None` when the sensor reports a fault.
    pub value: Option<f64>,
    pub status: &'static str,
    pub timestamp_ms: i64,
}

/// The conditions of one rack now, in canonical units.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RackConditions {
    /// The hottest inlet probe (what ASHRAE's envelope is about).
    pub inlet_max: Option<f64>,
    pub inlet_top: Option<f64>,
    pub inlet_middle: Option<f64>,
    pub inlet_bottom: Option<f64>,
    pub outlet: Option<f64>,
    pub delta_t: Option<f64>,
    pub humidity: Option<f64>,
    pub dew_point: Option<f64>,
    /// Total power of the rack's feeds, W.
    pub power: Option<f64>,
    pub fan_duty: Option<f64>,
    pub fan_speed: Option<f64>,
}

/// One minute of a rack's conditions, for the charts.
#[derive(Debug, Clone, Serialize)]
pub struct Minute {
    pub minute_ms: i64,
    #[serde(flatten)]
    pub conditions: RackConditions,
}

#[derive(Debug, Default)]
struct Rack {
    position: Option<Position>,
    probes: BTreeMap<(String, String, &'static str), ProbeValue>,
    /// The latest derived measures of the rack: (value, timestamp).
    measures: BTreeMap<Measure, (f64, i64)>,
    history: VecDeque<Minute>,
    inlet_trend: InletTrend,
}

impl Rack {
    fn conditions(&self, now_ms: i64) -> RackConditions {
        conditions(self.probes.values(), &self.measures, now_ms)
    }

    /// Keeps the rack's conditions at `now` as its minute's point in the window.
    fn record(&mut self, now: i64, window_minutes: usize, limit: &InletLimit) {
        let conditions = self.conditions(now);
        if let Some(inlet) = conditions.inlet_max {
            self.inlet_trend.observe(now, inlet, limit);
        }
        let minute_ms = now - now.rem_euclid(60_000);
        match self.history.back_mut() {
            Some(last) if last.minute_ms == minute_ms => last.conditions = conditions,
            Some(last) if last.minute_ms > minute_ms => {}
            _ => {
                self.history.push_back(Minute {
                    minute_ms,
                    conditions,
                });
                while self.history.len() > window_minutes {
                    self.history.pop_front();
                }
            }
        }
    }
}

/// A node as the registry knows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeEntry {
    pub node: String,
    pub rack: String,
    pub online: Option<bool>,
    pub firmware: Option<String>,
    /// The firmware slot it runs from (`a`, `b`), on a node with A/B slots.
    pub slot: Option<rackwatch_protocols::Slot>,
    /// How its last firmware update ended (`confirmed`, `rolled_back`, `refused`, `unsupported`).
    pub ota: Option<rackwatch_protocols::OtaResult>,
    pub boot: Option<u32>,
    pub last_seen_ms: Option<i64>,
    pub readings: u64,
    pub faults: u64,
    pub in_inventory: bool,
}

/// The facilities view's state.
#[derive(Debug)]
pub struct RoomState {
    inventory: Inventory,
    racks: BTreeMap<String, Rack>,
    nodes: BTreeMap<String, NodeEntry>,
    window_minutes: usize,
    inlet_limit: InletLimit,
    /// Bumped on every change, so live clients can skip unchanged snapshots.
    pub version: u64,
}

impl RoomState {
    pub fn new(inventory: Inventory, window_minutes: usize, inlet_limit: InletLimit) -> Self {
        let mut racks = BTreeMap::new();
        for position in inventory.racks() {
            racks.insert(
                rack_id(&position),
                Rack {
                    position: Some(position),
                    ..Rack::default()
                },
            );
        }
        RoomState {
            inventory,
            racks,
            nodes: BTreeMap::new(),
            window_minutes,
            inlet_limit,
            version: 0,
        }
    }

    pub fn observe(&mut self, observation: &Observation) {
        self.version += 1;
        match observation {
            Observation::Samples(samples) => {
                for sample in samples.iter() {
                    self.sample(sample);
                }
            }
            Observation::Status { status, received_ms } => self.status(status, *received_ms),
            Observation::Ack { .. } => {}
        }
    }

    fn node_entry(&mut self, node: &str) -> &mut NodeEntry {
        let inventory = &self.inventory;
        self.nodes.entry(node.to_owned()).or_insert_with(|| NodeEntry {
            node: node.to_owned(),
            rack: rack_id(&inventory.position(node)),
            online: None,
            firmware: None,
            slot: None,
            ota: None,
            boot: None,
            last_seen_ms: None,
            readings: 0,
            faults: 0,
            in_inventory: inventory.contains(node),
        })
    }

    fn status(&mut self, status: &Status, received_ms: i64) {
        let entry = self.node_entry(&status.node);
        // A late last will of an earlier boot does not mark a node that came back as offline.
        if status.state == NodeState::Offline
            && entry.boot.is_some_and(|b| b != status.boot)
            && entry.online == Some(true)
        {
            return;
        }
        entry.online = Some(status.state == NodeState::Online);
        entry.boot = Some(status.boot);
        if let Some(fw) = &status.firmware {
            entry.firmware = Some(fw.to_string());
        }
        if status.state == NodeState::Online {
            // Birth only: a last will carries neither, and says nothing about them.
            entry.slot = status.slot;
            entry.ota = status.update;
        }
        entry.last_seen_ms = Some(entry.last_seen_ms.map_or(received_ms, |t| t.max(received_ms)));
    }

    fn sample(&mut self, sample: &Sample) {
        let series = &sample.series;
        match series.scope {
            SeriesScope::Probe => {}
            SeriesScope::Rack(measure) => return self.measure(sample, measure),
            // The floor plan draws racks; rows are the database's and the alert engine's.
            SeriesScope::Row(_) => return,
        }
        let entry = self.node_entry(&series.node);
        entry.readings += 1;
        if sample.value.is_none() {
            entry.faults += 1;
        }
        entry.last_seen_ms = Some(
            entry
                .last_seen_ms
                .map_or(sample.timestamp_ms, |t| t.max(sample.timestamp_ms)),
        );
        if entry.online.is_none() {
            entry.online = Some(true);
        }
        if series.position.rack.is_none() {
            return;
        }
        let id = rack_id(&series.position);
        // Only inventory racks are shown (and kept in memory).
        let Some(rack) = self.racks.get_mut(&id) else {
            return;
        };
        let probe = ProbeValue {
            node: series.node.to_string(),
            channel: series.channel.to_string(),
            quantity: series.quantity.as_str(),
            placement: series.placement.map(Placement::as_str),
            value: sample.value,
            status: sample.status.as_str(),
            timestamp_ms: sample.timestamp_ms,
        };
        rack.probes
            .insert((probe.node.clone(), probe.channel.clone(), probe.quantity), probe);
        rack.record(sample.timestamp_ms, self.window_minutes, &self.inlet_limit);
    }

    /// One of a rack's derived measures.
    fn measure(&mut self, sample: &Sample, measure: Measure) {
        let Some(rack) = self.racks.get_mut(&rack_id(&sample.series.position)) else {
            return;
        };
        match sample.value {
            Some(value) => rack.measures.insert(measure, (value, sample.timestamp_ms)),
            None => rack.measures.remove(&measure),
        };
        rack.record(sample.timestamp_ms, self.window_minutes, &self.inlet_limit);
    }

    /// Every inventory rack with its conditions now.
    pub fn racks(&self, now_ms: i64) -> Vec<RackView> {
        self.racks
            .iter()
            .map(|(id, rack)| RackView::of(id, rack, now_ms, &self.inlet_limit))
            .collect()
    }

    pub fn rack(&self, id: &str, now_ms: i64) -> Option<RackDetail> {
        let rack = self.racks.get(id)?;
        Some(RackDetail {
            rack: RackView::of(id, rack, now_ms, &self.inlet_limit),
            probes: rack.probes.values().cloned().collect(),
            history: rack.history.iter().cloned().collect(),
        })
    }

    pub fn nodes(&self) -> Vec<NodeEntry> {
        self.nodes.values().cloned().collect()
    }

    /// Racks grouped as the floor plan draws them: room -> row -> racks in order.
    pub fn layout(&self) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        let mut layout: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (id, rack) in &self.racks {
            let Some(position) = &rack.position else { continue };
            let room = position.room.as_ref().map_or("-".to_owned(), ToString::to_string);
            let row = position.row.as_ref().map_or("-".to_owned(), ToString::to_string);
            layout
                .entry(room)
                .or_default()
                .entry(row)
                .or_default()
                .push(id.clone());
        }
        layout
    }
}

/// A rack as the floor plan shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RackView {
    pub id: String,
    pub room: Option<String>,
    pub row: Option<String>,
    pub rack: String,
    #[serde(flatten)]
    pub conditions: RackConditions,
    pub last_update_ms: Option<i64>,
    /// When the hottest inlet, rising, reaches the allowable limit; `null` when it is not rising.
    pub time_to_limit: Option<TimeToLimit>,
}

impl RackView {
    fn of(id: &str, rack: &Rack, now_ms: i64, inlet_limit: &InletLimit) -> Self {
        let position = rack.position.clone().unwrap_or(Position {
            room: None,
            row: None,
            rack: None,
        });
        RackView {
            id: id.to_owned(),
            room: position.room.as_ref().map(ToString::to_string),
            row: position.row.as_ref().map(ToString::to_string),
            rack: position.rack_tag().to_owned(),
            conditions: rack.conditions(now_ms),
            last_update_ms: rack.probes.values().map(|p| p.timestamp_ms).max(),
            time_to_limit: rack.inlet_trend.time_to_limit(now_ms, inlet_limit),
        }
    }
}

/// A rack with its probes and recent history.
#[derive(Debug, Clone, Serialize)]
pub struct RackDetail {
    #[serde(flatten)]
    pub rack: RackView,
    pub probes: Vec<ProbeValue>,
    pub history: Vec<Minute>,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Folds a rack's fresh probe values and derived measures into its conditions.
fn conditions<'a>(
    probes: impl Iterator<Item = &'a ProbeValue>,
    measures: &BTreeMap<Measure, (f64, i64)>,
    now_ms: i64,
) -> RackConditions {
    let mut inlet = Vec::new();
    let (mut top, mut middle, mut bottom) = (Vec::new(), Vec::new(), Vec::new());
    let (mut humidity, mut dew, mut duty, mut speed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for probe in probes.filter(|p| now_ms - p.timestamp_ms <= STALE_MS) {
        let Some(value) = probe.value else { continue };
        let placement = probe.placement.and_then(Placement::from_channel);
        match (probe.quantity, placement) {
            ("temperature", Some(p)) if p.air_side() == Some(AirSide::Inlet) => {
                inlet.push(value);
                match p {
                    Placement::InletTop => top.push(value),
                    Placement::InletMiddle => middle.push(value),
                    Placement::InletBottom => bottom.push(value),
                    _ => {}
                }
            }
            ("relative_humidity", _) => humidity.push(value),
            ("dew_point", _) => dew.push(value),
            ("fan_duty", _) => duty.push(value),
            ("fan_speed", _) => speed.push(value),
            _ => {}
        }
    }
    let measure = |m: Measure| {
        measures
            .get(&m)
            .filter(|(_, t)| now_ms - t <= STALE_MS)
            .map(|(v, _)| *v)
    };
    RackConditions {
        inlet_max: inlet.iter().copied().reduce(f64::max),
        inlet_top: mean(&top),
        inlet_middle: mean(&middle),
        inlet_bottom: mean(&bottom),
        outlet: measure(Measure::Outlet),
        delta_t: measure(Measure::DeltaT),
        humidity: mean(&humidity),
        dew_point: mean(&dew),
        power: measure(Measure::Power),
        fan_duty: mean(&duty),
        fan_speed: mean(&speed),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rackwatch_protocols::{ChannelName, NodeId, Quantity, ReadingStatus};

    use super::*;
    use crate::config::Config;
    use crate::model::{Series, SeriesScope};

    const CONFIG: &str = r#"
        site = "fra1"
        [mqtt]
        url = "mqtt://127.0.0.1"
        [spool]
        dir = "/tmp/x"
        [nodes.n1]
        room = "hall-a"
        row = "r01"
        rack = "a01"
        [nodes.n2]
        room = "hall-a"
        row = "r01"
        rack = "a02"
    "#;

    fn sample(node: &str, channel: &str, quantity: Quantity, value: Option<f64>, ts: i64) -> Sample {
        let config = Config::parse(CONFIG).unwrap();
        let inventory = Inventory::from_config(&config);
        Sample {
            series: Arc::new(Series {
                id: crate::model::SeriesId::next(),
                scope: SeriesScope::Probe,
                node: NodeId::new(node).unwrap(),
                channel: ChannelName::new(channel).unwrap(),
                quantity,
                placement: inventory.placement(node, channel),
                position: inventory.position(node).into(),
                line_tags: Arc::from([]),
            }),
            value,
            status: if value.is_some() {
                ReadingStatus::Ok
            } else {
                ReadingStatus::Fault
            },
            timestamp_ms: ts,
            received_ms: ts,
        }
    }

    fn state() -> RoomState {
        RoomState::new(
            Inventory::from_config(&Config::parse(CONFIG).unwrap()),
            60,
            InletLimit::default(),
        )
    }

    #[test]
    fn every_inventory_rack_is_listed_before_any_reading() {
        let state = state();
        let ids: Vec<String> = state.racks(0).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, vec!["hall-a.r01.a01", "hall-a.r01.a02"]);
        assert_eq!(state.layout()["hall-a"]["r01"].len(), 2);
    }

    #[test]
    fn rack_conditions_fold_probes_by_placement() {
        let mut state = state();
        let mut samples = vec![
            sample("n1", "inlet_top", Quantity::Temperature, Some(24.0), 1_000),
            sample("n1", "inlet_bottom", Quantity::Temperature, Some(20.0), 1_000),
            sample("n1", "outlet", Quantity::Temperature, Some(34.0), 1_000),
            sample("n1", "psu", Quantity::Power, Some(4000.0), 1_000),
            sample("n1", "inlet_middle", Quantity::Temperature, None, 1_000),
        ];
        // The rack measures come from the stage before, as in the gateway.
        let site = Config::parse(CONFIG).unwrap().site;
        crate::derive::Derive::new(site).derive(&mut samples, &mut Vec::new());
        state.observe(&Observation::Samples(Arc::from(samples)));
        let rack = state.rack("hall-a.r01.a01", 2_000).unwrap();
        assert_eq!(rack.rack.conditions.inlet_max, Some(24.0));
        assert_eq!(rack.rack.conditions.inlet_middle, None);
        assert_eq!(rack.rack.conditions.delta_t, Some(12.0));
        assert_eq!(rack.rack.conditions.power, Some(4000.0));
        assert_eq!(rack.history.len(), 1);
        assert_eq!(state.nodes()[0].faults, 1);
    }

    /// Rack a01's top inlet every 10 s for ten minutes, `value_at(minutes ago)`, ending at `now`.
    fn inlet_for_ten_minutes(now: i64, value_at: impl Fn(f64) -> f64) -> RoomState {
        let mut state = state();
        for i in 0..=60 {
            let ts = now - 600_000 + i * 10_000;
            let value = value_at((now - ts) as f64 / 60_000.0);
            let s = sample("n1", "inlet_top", Quantity::Temperature, Some(value), ts);
            state.observe(&Observation::Samples(Arc::from(vec![s])));
        }
        state
    }

    fn time_to_limit(state: &RoomState, now: i64) -> Option<TimeToLimit> {
        state.racks(now)[0].time_to_limit.clone()
    }

    #[test]
    fn a_rising_hottest_inlet_shows_the_time_to_the_limit_on_its_rack() {
        let now = 1_767_225_600_000;
        // 0.5 °C/min, 28.5 °C now: 32 °C in 7 minutes.
        let rising = inlet_for_ten_minutes(now, |ago| 28.5 - 0.5 * ago);
        let eta = time_to_limit(&rising, now).unwrap();
        assert_eq!((eta.seconds, eta.limit_c), (420, 32.0), "{eta:?}");
        // The other rack has no readings, so no trend.
        assert_eq!(rising.racks(now)[1].time_to_limit, None);
        let json = serde_json::to_value(&rising.racks(now)[0]).unwrap();
        assert_eq!(json["time_to_limit"]["seconds"], 420);
    }

    #[test]
    fn a_flat_or_falling_hottest_inlet_shows_no_time_to_the_limit() {
        let now = 1_767_225_600_000;
        assert_eq!(time_to_limit(&inlet_for_ten_minutes(now, |_| 25.0), now), None);
        let falling = inlet_for_ten_minutes(now, |ago| 25.0 + 0.3 * ago);
        assert_eq!(time_to_limit(&falling, now), None);
        let json = serde_json::to_value(&falling.racks(now)[0]).unwrap();
        assert!(json["time_to_limit"].is_null(), "{json}");
    }

    #[test]
    fn window_keeps_one_point_per_minute_and_is_bounded() {
        let mut state = RoomState::new(
            Inventory::from_config(&Config::parse(CONFIG).unwrap()),
            3,
            InletLimit::default(),
        );
        for minute in 0..10 {
            for second in [0, 30] {
                let ts = minute * 60_000 + second * 1000;
                let s = sample("n2", "inlet_top", Quantity::Temperature, Some(minute as f64), ts);
                state.observe(&Observation::Samples(Arc::from(vec![s])));
            }
        }
        let history = state.rack("hall-a.r01.a02", 600_000).unwrap().history;
        assert_eq!(
            history
                .iter()
                .map(|m| m.conditions.inlet_max.unwrap())
                .collect::<Vec<_>>(),
            vec![7.0, 8.0, 9.0]
        );
    }

    #[test]
    fn a_birth_gives_the_nodes_firmware_slot_and_last_update_and_its_will_keeps_them() {
        let mut state = state();
        let mut birth = Status::last_will(NodeId::new("n1").unwrap(), 4);
        birth.state = NodeState::Online;
        birth.firmware = Some(heapless::String::try_from("1.4.0").unwrap());
        birth.slot = Some(rackwatch_protocols::Slot::B);
        birth.update = Some(rackwatch_protocols::OtaResult::Confirmed);
        state.observe(&Observation::Status {
            status: Box::new(birth),
            received_ms: 1,
        });
        state.observe(&Observation::Status {
            status: Box::new(Status::last_will(NodeId::new("n1").unwrap(), 4)),
            received_ms: 2,
        });
        let node = &state.nodes()[0];
        assert_eq!(
            (node.firmware.as_deref(), node.slot, node.ota, node.online),
            (
                Some("1.4.0"),
                Some(rackwatch_protocols::Slot::B),
                Some(rackwatch_protocols::OtaResult::Confirmed),
                Some(false)
            )
        );
    }

    #[test]
    fn unassigned_nodes_are_registered_but_not_drawn() {
        let mut state = state();
        let s = sample("stray", "inlet_top", Quantity::Temperature, Some(22.0), 1);
        state.observe(&Observation::Samples(Arc::from(vec![s])));
        assert_eq!(state.racks(1).len(), 2);
        let nodes = state.nodes();
        assert_eq!(
            (
                nodes[0].node.as_str(),
                nodes[0].rack.as_str(),
                nodes[0].in_inventory
            ),
            ("stray", "-.-.unassigned", false)
        );
    }
}
