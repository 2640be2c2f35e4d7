//! Derive: what is computed from several readings, once, right after normalisation, from the
//! probes' normalised samples. Per channel that reports both temperature and humidity in one
//! message: its dew point, a series of the probe's own. Per rack: the mean inlet and the mean
//! outlet temperature, their difference (ΔT) and the total power of its feeds; per row: the total
//! power of its racks. Each change is written through [`schema::rack`] and [`schema::row`] and
//! handed on as rack- and row-scope samples ([`SeriesScope::Rack`], [`SeriesScope::Row`]), which
//! the alert engine and the dashboard read instead of computing their own.
//!
//! A member counts while its latest reading is good and at most [`MEMBER_MAX_AGE_MS`] old. A probe
//! that reports a fault leaves its aggregates at once; an aggregate with no live member is not
//! written (no point, no value), rather than written from stale values: its series then gets one
//! sample without a value, so that the dashboard stops showing the last one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rackwatch_protocols::{ChannelName, NodeId, Quantity, ReadingStatus, SiteId};

use crate::model::{AirSide, DERIVED_NODE, Measure, Position, Sample, Series, SeriesScope};
use crate::schema::{self, RackMeasures};

/// A member's reading older than this no longer counts towards its rack's and row's measures.
pub const MEMBER_MAX_AGE_MS: i64 = 5 * 60 * 1000;

/// What a probe contributes to its rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Inlet,
    Outlet,
    Power,
}

impl Role {
    /// Temperatures on either air side, and every power reading, of a probe on a rack.
    fn of(series: &Series) -> Option<Role> {
        if series.scope != SeriesScope::Probe || series.position.rack.is_none() {
            return None;
        }
        match (series.quantity, series.placement.and_then(|p| p.air_side())) {
            (Quantity::Temperature, Some(AirSide::Inlet)) => Some(Role::Inlet),
            (Quantity::Temperature, Some(AirSide::Outlet)) => Some(Role::Outlet),
            (Quantity::Power, _) => Some(Role::Power),
            _ => None,
        }
    }
}

/// The latest good reading of each member of one aggregate, by (node, channel).
#[derive(Debug, Clone, Default)]
struct Members(HashMap<(NodeId, ChannelName), (f64, i64)>);

impl Members {
    /// Takes a member's reading (`None`: a fault, and the member leaves); whether anything changed.
    fn update(&mut self, series: &Series, value: Option<f64>, timestamp_ms: i64) -> bool {
        let key = (series.node.clone(), series.channel.clone());
        match value {
            Some(value) => {
                self.0.insert(key, (value, timestamp_ms));
                true
            }
            None => self.0.remove(&key).is_some(),
        }
    }

    fn live(&self, now_ms: i64) -> impl Iterator<Item = f64> + '_ {
        self.0
            .values()
            .filter(move |(_, t)| now_ms.saturating_sub(*t) <= MEMBER_MAX_AGE_MS)
            .map(|(v, _)| *v)
    }

    fn mean(&self, now_ms: i64) -> Option<f64> {
        let (sum, n) = self.live(now_ms).fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
        (n > 0).then(|| sum / f64::from(n))
    }

    fn total(&self, now_ms: i64) -> Option<f64> {
        let mut values = self.live(now_ms).peekable();
        values.peek()?;
        Some(values.sum())
    }
}

/// One rack's members.
#[derive(Debug, Clone, Default)]
struct Rack {
    inlet: Members,
    outlet: Members,
    /// Watts.
    power: Members,
}

impl Rack {
    fn members(&mut self, role: Role) -> &mut Members {
        match role {
            Role::Inlet => &mut self.inlet,
            Role::Outlet => &mut self.outlet,
            Role::Power => &mut self.power,
        }
    }

    fn measures(&self, now_ms: i64) -> RackMeasures {
        let inlet = self.inlet.mean(now_ms);
        let outlet = self.outlet.mean(now_ms);
        RackMeasures {
            inlet,
            outlet,
            delta_t: inlet.zip(outlet).map(|(i, o)| o - i),
            power: self.power.total(now_ms),
        }
    }
}

/// What changed in one rack during one call.
#[derive(Debug, Clone)]
struct Touched {
    position: Arc<Position>,
    air: bool,
    power: bool,
    timestamp_ms: i64,
    received_ms: i64,
}

/// The derive stage: the members of every rack it has seen, and the derived series it hands on.
#[derive(Debug)]
pub struct Derive {
    site: SiteId,
    racks: HashMap<Position, Rack>,
    /// One series per rack or row measure, kept so that later stages can key them by identity.
    series: HashMap<(SeriesScope, Position), Arc<Series>>,
    /// Each channel's dew-point series, made from its temperature series.
    dew_points: HashMap<(NodeId, ChannelName), Arc<Series>>,
    /// The derived series whose latest sample had a value.
    live: HashSet<(SeriesScope, Position)>,
}

impl Derive {
    pub fn new(site: SiteId) -> Self {
        Derive {
            site,
            racks: HashMap::new(),
            series: HashMap::new(),
            dew_points: HashMap::new(),
            live: HashSet::new(),
        }
    }

    /// Takes the normalised samples of one message, appends the rack and row samples they change
    /// to `samples` and their points to `lines`; returns how many points it wrote.
    pub fn derive(&mut self, samples: &mut Vec<Sample>, lines: &mut Vec<u8>) -> usize {
        let mut points = self.dew_points(samples, lines);
        let mut touched: Vec<Touched> = Vec::new();
        for sample in samples.iter() {
            let series = &sample.series;
            let Some(role) = Role::of(series) else { continue };
            let rack = self.racks.entry(Position::clone(&series.position)).or_default();
            if !rack
                .members(role)
                .update(series, sample.value, sample.timestamp_ms)
            {
                continue;
            }
            let touch = match touched.iter_mut().find(|t| t.position == series.position) {
                Some(touch) => touch,
                None => {
                    touched.push(Touched {
                        position: Arc::clone(&series.position),
                        air: false,
                        power: false,
                        timestamp_ms: sample.timestamp_ms,
                        received_ms: sample.received_ms,
                    });
                    let Some(touch) = touched.last_mut() else { continue };
                    touch
                }
            };
            touch.air |= role != Role::Power;
            touch.power |= role == Role::Power;
            touch.timestamp_ms = touch.timestamp_ms.max(sample.timestamp_ms);
            touch.received_ms = touch.received_ms.max(sample.received_ms);
        }
        for touch in &touched {
            points += self.rack(touch, samples, lines);
        }
        points
    }

    /// The dew point of every channel with both temperature and humidity among `samples`.
    fn dew_points(&mut self, samples: &mut Vec<Sample>, lines: &mut Vec<u8>) -> usize {
        let pairs: Vec<(Arc<Series>, f64, f64, i64, i64)> = samples
            .iter()
            .filter(|s| s.series.scope == SeriesScope::Probe)
            .filter(|s| s.series.quantity == Quantity::RelativeHumidity)
            .filter_map(|rh| {
                let temperature = samples.iter().find(|s| {
                    s.series.quantity == Quantity::Temperature
                        && s.series.channel == rh.series.channel
                        && s.series.node == rh.series.node
                })?;
                Some((
                    Arc::clone(&temperature.series),
                    temperature.value?,
                    rh.value?,
                    rh.timestamp_ms,
                    rh.received_ms,
                ))
            })
            .collect();
        let mut points = 0;
        for (temperature_series, temperature, humidity, timestamp_ms, received_ms) in pairs {
            let Some(dew_point) = dew_point(temperature, humidity) else {
                continue;
            };
            let series = self.dew_point_series(&temperature_series);
            schema::series_reading(lines, &series, dew_point, timestamp_ms);
            points += 1;
            samples.push(Sample {
                series,
                value: Some(dew_point),
                status: ReadingStatus::Ok,
                timestamp_ms,
                received_ms,
            });
        }
        points
    }

    /// The dew-point series of a channel: tagged as its temperature series is.
    fn dew_point_series(&mut self, temperature: &Series) -> Arc<Series> {
        let key = (temperature.node.clone(), temperature.channel.clone());
        let series = self.dew_points.entry(key).or_insert_with(|| {
            Arc::new(Series {
                id: crate::model::SeriesId::next(),
                scope: SeriesScope::Probe,
                node: temperature.node.clone(),
                channel: temperature.channel.clone(),
                quantity: Quantity::DewPoint,
                placement: temperature.placement,
                position: Arc::clone(&temperature.position),
                line_tags: Arc::clone(&temperature.line_tags),
            })
        });
        Arc::clone(series)
    }

    /// Writes one touched rack's point and samples, and its row's when its power changed.
    fn rack(&mut self, touch: &Touched, samples: &mut Vec<Sample>, lines: &mut Vec<u8>) -> usize {
        let Some(rack) = self.racks.get(&touch.position) else {
            return 0;
        };
        let now = touch.timestamp_ms;
        let measures = rack.measures(now);
        let mut points = 0;
        if schema::rack(lines, &self.site, &touch.position, &measures, now) {
            points += 1;
        }
        let mut derived = Vec::new();
        if touch.air {
            derived.push((Measure::Inlet, measures.inlet));
            derived.push((Measure::Outlet, measures.outlet));
            derived.push((Measure::DeltaT, measures.delta_t));
        }
        if touch.power {
            derived.push((Measure::Power, measures.power));
        }
        for (measure, value) in derived {
            self.push(SeriesScope::Rack(measure), &touch.position, value, touch, samples);
        }
        if touch.power {
            let row = Position {
                rack: None,
                ..Position::clone(&touch.position)
            };
            let total = self
                .racks
                .iter()
                .filter(|(p, _)| p.room == row.room && p.row == row.row)
                .filter_map(|(_, r)| r.power.total(now))
                .reduce(|a, b| a + b);
            if let Some(total) = total {
                schema::row(lines, &self.site, &row, total, now);
                points += 1;
            }
            self.push(SeriesScope::Row(Measure::Power), &row, total, touch, samples);
        }
        points
    }

    /// One derived sample; without a value only when the series had one before.
    fn push(
        &mut self,
        scope: SeriesScope,
        position: &Position,
        value: Option<f64>,
        touch: &Touched,
        samples: &mut Vec<Sample>,
    ) {
        let key = (scope, position.clone());
        let was_live = if value.is_some() {
            !self.live.insert(key)
        } else {
            self.live.remove(&key)
        };
        if value.is_none() && !was_live {
            return;
        }
        let Some(series) = self.series(scope, position) else {
            return;
        };
        samples.push(Sample {
            series,
            value,
            status: if value.is_some() {
                ReadingStatus::Ok
            } else {
                ReadingStatus::Fault
            },
            timestamp_ms: touch.timestamp_ms,
            received_ms: touch.received_ms,
        });
    }

    /// The series of one rack or row measure, made the first time it is written.
    fn series(&mut self, scope: SeriesScope, position: &Position) -> Option<Arc<Series>> {
        let key = (scope, position.clone());
        if let Some(series) = self.series.get(&key) {
            return Some(Arc::clone(series));
        }
        let measure = match scope {
            SeriesScope::Rack(measure) | SeriesScope::Row(measure) => measure,
            SeriesScope::Probe => return None,
        };
        let series = Arc::new(Series {
            id: crate::model::SeriesId::next(),
            scope,
            node: NodeId::new(DERIVED_NODE).ok()?,
            channel: ChannelName::new(measure.as_str()).ok()?,
            quantity: match measure {
                Measure::Power => Quantity::Power,
                Measure::Inlet | Measure::Outlet | Measure::DeltaT => Quantity::Temperature,
            },
            placement: None,
            position: Arc::new(position.clone()),
            line_tags: Arc::from([]),
        });
        self.series.insert(key, Arc::clone(&series));
        Some(series)
    }
}

/// Dew point in °C by the Magnus formula with Sonntag's (1990) constants over water, a = 17.62,
/// b = 243.12 °C, within 0.35 K for -45..60 °C. `None` outside that range or for RH ≤ 0.
pub fn dew_point(temperature_c: f64, relative_humidity: f64) -> Option<f64> {
    const A: f64 = 17.62;
    const B: f64 = 243.12;
    if !(-45.0..=60.0).contains(&temperature_c)
        || relative_humidity <= 0.0
        || relative_humidity > 100.0
        || relative_humidity.is_nan()
    {
        return None;
    }
    let gamma = (relative_humidity / 100.0).ln() + A * temperature_c / (B + temperature_c);
    Some(B * gamma / (A - gamma))
}

#[cfg(test)]
mod tests {
    use rackwatch_protocols::{Reading, Telemetry, Unit};

    use super::*;
    use crate::config::Config;
    use crate::inventory::Inventory;
    use crate::normalise::{Normaliser, Output};

    const CONFIG: &str = r#"
        site = "fra1"
        [mqtt]
        url = "mqtt://127.0.0.1:1883"
        [spool]
        dir = "/tmp/x"
        [nodes.r01-n1]
        room = "hall-a"
        row = "r01"
        rack = "a01"
        placement = { t_in = "inlet_top", t_out = "outlet" }
        calibration = { t_in = { offset = -0.5 } }
        [nodes.r01-n2]
        room = "hall-a"
        row = "r01"
        rack = "a02"
    "#;

    /// Normalisation followed by derivation, as ingest runs them.
    struct Stages {
        normaliser: Normaliser,
        derive: Derive,
    }

    impl Stages {
        fn new() -> Self {
            let config = Config::parse(CONFIG).unwrap();
            Stages {
                normaliser: Normaliser::new(
                    config.site.clone(),
                    Inventory::from_config(&config),
                    config.normalise.clone(),
                ),
                derive: Derive::new(config.site.clone()),
            }
        }

        fn run(&mut self, t: &Telemetry) -> (String, Output) {
            let mut out = Output::default();
            self.normaliser
                .telemetry(t, 1_795_000_000_000 + i64::from(t.seq) * 1000 + 5, &mut out);
            out.points += self.derive.derive(&mut out.samples, &mut out.lines);
            (String::from_utf8(out.lines.clone()).unwrap(), out)
        }
    }

    fn ch(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    fn telemetry(node: &str, seq: u32, readings: &[Reading]) -> Telemetry {
        Telemetry {
            version: 1,
            node: NodeId::new(node).unwrap(),
            boot: 7,
            seq,
            timestamp_ms: Some(1_795_000_000_000 + u64::from(seq) * 1000),
            uptime_ms: 60_000 + u64::from(seq) * 1000,
            dropped: 0,
            readings: heapless::Vec::from_slice(readings).unwrap(),
        }
    }

    fn fault(channel: &str, quantity: Quantity, unit: Unit) -> Reading {
        Reading::failed(ch(channel), quantity, unit, ReadingStatus::Fault)
    }

    /// The derived samples of one output: (scope, value).
    fn derived(out: &Output) -> Vec<(SeriesScope, Option<f64>)> {
        out.samples
            .iter()
            .filter(|s| s.series.scope != SeriesScope::Probe)
            .map(|s| (s.series.scope, s.value))
            .collect()
    }

    #[test]
    fn rack_delta_t_and_row_power_are_derived() {
        let mut n = Stages::new();
        let t = telemetry(
            "r01-n1",
            0,
            &[
                Reading::ok(ch("t_in"), Quantity::Temperature, 22.5, Unit::Celsius),
                Reading::ok(ch("t_out"), Quantity::Temperature, 35.0, Unit::Celsius),
                Reading::ok(ch("psu"), Quantity::Power, 4.0, Unit::Kilowatt),
            ],
        );
        let (lines, _) = n.run(&t);
        assert!(lines.contains("rack,rack=a01,room=hall-a,row=r01,site=fra1 inlet=22.0,outlet=35.0,delta_t=13.0,power=4000.0 "), "{lines}");
        let t2 = telemetry(
            "r01-n2",
            0,
            &[Reading::ok(ch("psu"), Quantity::Power, 3000.0, Unit::Watt)],
        );
        let (lines, _) = n.run(&t2);
        assert!(
            lines.contains("row,room=hall-a,row=r01,site=fra1 power=7000.0 "),
            "{lines}"
        );
    }

    #[test]
    fn rack_delta_t_needs_both_sides_and_ignores_old_values() {
        let key = |channel: &str| Series {
            id: crate::model::SeriesId::next(),
            scope: SeriesScope::Probe,
            node: NodeId::new("n1").unwrap(),
            channel: ch(channel),
            quantity: Quantity::Temperature,
            placement: None,
            position: Arc::new(Position {
                room: None,
                row: None,
                rack: None,
            }),
            line_tags: Arc::from([]),
        };
        let mut rack = Rack::default();
        rack.inlet.update(&key("1"), Some(22.0), 0);
        assert_eq!(rack.measures(0).delta_t, None);
        rack.outlet.update(&key("2"), Some(34.0), 0);
        rack.outlet.update(&key("3"), Some(36.0), 0);
        assert_eq!(rack.measures(1000).delta_t, Some(13.0));
        assert_eq!(rack.measures(MEMBER_MAX_AGE_MS + 1).delta_t, None);
        rack.power.update(&key("4"), Some(3500.0), 0);
        rack.power.update(&key("5"), Some(1500.0), 0);
        assert_eq!(rack.measures(0).power.map(|w| w / 1000.0), Some(5.0));
    }

    #[test]
    fn a_faulted_probe_leaves_the_rack_and_row_measures_at_once() {
        let mut n = Stages::new();
        n.run(&telemetry(
            "r01-n1",
            0,
            &[
                Reading::ok(ch("t_in"), Quantity::Temperature, 22.5, Unit::Celsius),
                Reading::ok(ch("outlet_top"), Quantity::Temperature, 34.0, Unit::Celsius),
                Reading::ok(ch("outlet_bottom"), Quantity::Temperature, 38.0, Unit::Celsius),
                Reading::ok(ch("psu"), Quantity::Power, 4000.0, Unit::Watt),
            ],
        ));
        n.run(&telemetry(
            "r01-n2",
            0,
            &[Reading::ok(ch("psu"), Quantity::Power, 3000.0, Unit::Watt)],
        ));

        // One outlet probe and the power meter of a01 fail, a second later: ΔT is 34 - 22 at once
        // (not 36 - 22 from the last good values), a01 has no power and the row only a02's.
        let (lines, out) = n.run(&telemetry(
            "r01-n1",
            1,
            &[
                fault("outlet_bottom", Quantity::Temperature, Unit::Celsius),
                fault("psu", Quantity::Power, Unit::Watt),
            ],
        ));
        assert!(
            lines.contains("rack,rack=a01,room=hall-a,row=r01,site=fra1 inlet=22.0,outlet=34.0,delta_t=12.0 1795000001000\n"),
            "{lines}"
        );
        assert!(
            lines.contains("row,room=hall-a,row=r01,site=fra1 power=3000.0 1795000001000\n"),
            "{lines}"
        );
        assert_eq!(
            derived(&out),
            [
                (SeriesScope::Rack(Measure::Inlet), Some(22.0)),
                (SeriesScope::Rack(Measure::Outlet), Some(34.0)),
                (SeriesScope::Rack(Measure::DeltaT), Some(12.0)),
                (SeriesScope::Rack(Measure::Power), None),
                (SeriesScope::Row(Measure::Power), Some(3000.0)),
            ]
        );

        // Its last temperature probes fail too: a01 has no live member, so nothing is written, and
        // its measures say so once.
        let (lines, out) = n.run(&telemetry(
            "r01-n1",
            2,
            &[
                fault("t_in", Quantity::Temperature, Unit::Celsius),
                fault("outlet_top", Quantity::Temperature, Unit::Celsius),
            ],
        ));
        assert!(!lines.contains("rack,"), "{lines}");
        assert_eq!(
            derived(&out),
            [
                (SeriesScope::Rack(Measure::Inlet), None),
                (SeriesScope::Rack(Measure::Outlet), None),
                (SeriesScope::Rack(Measure::DeltaT), None),
            ]
        );
        assert_eq!(out.points, 2, "the two sensor_fault points only");

        // And a02's meter: the row has no live member left.
        let (lines, out) = n.run(&telemetry(
            "r01-n2",
            1,
            &[fault("psu", Quantity::Power, Unit::Watt)],
        ));
        assert!(!lines.contains("row,"), "{lines}");
        assert!(!lines.contains("rack,"), "{lines}");
        assert_eq!(
            derived(&out),
            [
                (SeriesScope::Rack(Measure::Power), None),
                (SeriesScope::Row(Measure::Power), None),
            ]
        );
    }

    #[test]
    fn a_rack_with_only_power_feeds_has_power_samples_only() {
        let mut n = Stages::new();
        let (_, out) = n.run(&telemetry(
            "r01-n2",
            0,
            &[Reading::ok(ch("psu"), Quantity::Power, 3000.0, Unit::Watt)],
        ));
        assert_eq!(
            derived(&out),
            [
                (SeriesScope::Rack(Measure::Power), Some(3000.0)),
                (SeriesScope::Row(Measure::Power), Some(3000.0)),
            ]
        );
        let rack = out
            .samples
            .iter()
            .find(|s| s.series.scope == SeriesScope::Rack(Measure::Power))
            .unwrap();
        assert_eq!(rack.series.node.as_str(), DERIVED_NODE);
        assert_eq!(rack.series.position.rack.as_deref(), Some("a02"));
    }

    #[test]
    fn dew_point_matches_a_psychrometric_table() {
        // 25 °C at 60 %RH has a dew point of 16.7 °C (ASHRAE psychrometric chart).
        assert!((dew_point(25.0, 60.0).unwrap() - 16.7).abs() < 0.1);
        assert_eq!(dew_point(25.0, 0.0), None);
    }

    #[test]
    fn humidity_and_temperature_on_one_channel_give_a_dew_point() {
        let mut n = Stages::new();
        let t = telemetry(
            "r01-n1",
            0,
            &[
                Reading::ok(ch("ambient"), Quantity::Temperature, 25.0, Unit::Celsius),
                Reading::ok(ch("ambient"), Quantity::RelativeHumidity, 60.0, Unit::PercentRh),
            ],
        );
        let (lines, _) = n.run(&t);
        assert!(lines.contains("quantity=dew_point"), "{lines}");
    }
}
