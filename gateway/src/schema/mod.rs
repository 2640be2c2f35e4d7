//! The database schema: every measurement, tag and field name the gateway writes, in one place.
//! Normalisation, the rack and row derivation, ingest's node status and the alert history all write
//! their points through these functions; gateway/README.md's "InfluxDB schema" table is checked
//! against [`MEASUREMENTS`] by a test, so the documentation cannot drift from the data.
//!
//! Tags are written in key order, as InfluxDB recommends for write performance.

use rackwatch_protocols::{Alert, AlertState, ChannelName, NodeId, Quantity, ReadingStatus};

pub mod line;
pub mod read;

use std::sync::Arc;

use crate::model::{Placement, Position, Series};
use line::Line;

/// One measurement as the README's schema table describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    pub name: &'static str,
    /// Every tag key it may carry, in the order the README lists them.
    pub tags: &'static [&'static str],
    /// Every field it may carry.
    pub fields: &'static [&'static str],
}

pub const READING: Measurement = Measurement {
    name: "reading",
    tags: &[
        "site",
        "room",
        "row",
        "rack",
        "node",
        "channel",
        "placement",
        "quantity",
    ],
    fields: &["value"],
};
pub const SENSOR_FAULT: Measurement = Measurement {
    name: "sensor_fault",
    tags: &["site", "node", "channel", "quantity", "status"],
    fields: &["count"],
};
pub const RACK: Measurement = Measurement {
    name: "rack",
    tags: &["site", "room", "row", "rack"],
    fields: &["inlet", "outlet", "delta_t", "power"],
};
pub const ROW: Measurement = Measurement {
    name: "row",
    tags: &["site", "room", "row"],
    fields: &["power"],
};
pub const NODE_STATUS: Measurement = Measurement {
    name: "node_status",
    tags: &["site", "node"],
    fields: &["online", "boot"],
};
pub const ALERT: Measurement = Measurement {
    name: "alert",
    tags: &[
        "site", "key", "rule", "severity", "state", "room", "row", "rack", "node",
    ],
    fields: &["firing", "value", "threshold", "summary"],
};

/// Every measurement the gateway writes.
pub const MEASUREMENTS: [Measurement; 6] = [READING, SENSOR_FAULT, RACK, ROW, NODE_STATUS, ALERT];

/// The tags of a reading after `quantity`, the same for every series of a node:
/// `,rack=..[,room=..][,row=..],site=..`. Kept once per node and shared by its series (see
/// [`series_reading`]): a whole prefix per series was 80 bytes of each series' memory.
pub fn reading_tags(site: &str, position: &Position) -> Arc<[u8]> {
    let mut tags = Vec::with_capacity(96);
    let mut line = Line::with_prefix(&mut tags, b"").tag("rack", position.rack_tag());
    if let Some(room) = &position.room {
        line = line.tag("room", room);
    }
    if let Some(row) = &position.row {
        line = line.tag("row", row);
    }
    let _ = line.tag("site", site);
    Arc::from(tags)
}

/// `reading,channel=..,node=..[,placement=..],quantity=..`: the tags a series does not share with
/// the other series of its node. Written per reading, so without [`line::escape_tag`]'s scan: node
/// ids and channel names are identifiers (`[A-Za-z0-9_.-]`, checked by `Ident`) and the rest are
/// constant names, none of which line protocol escapes.
fn reading_head(
    out: &mut Vec<u8>,
    node: &NodeId,
    channel: &ChannelName,
    placement: Option<Placement>,
    quantity: Quantity,
) {
    out.extend_from_slice(READING.name.as_bytes());
    out.extend_from_slice(b",channel=");
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(b",node=");
    out.extend_from_slice(node.as_bytes());
    if let Some(placement) = placement {
        out.extend_from_slice(b",placement=");
        out.extend_from_slice(placement.as_str().as_bytes());
    }
    out.extend_from_slice(b",quantity=");
    out.extend_from_slice(quantity.as_str().as_bytes());
}

/// The whole `reading,...tags` prefix of one series, as [`series_reading`] writes it.
pub fn reading_prefix(
    site: &str,
    node: &NodeId,
    channel: &ChannelName,
    placement: Option<Placement>,
    quantity: Quantity,
    position: &Position,
) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(160);
    reading_head(&mut prefix, node, channel, placement, quantity);
    prefix.extend_from_slice(&reading_tags(site, position));
    prefix
}

/// One value of a series whose prefix [`reading_prefix`] built.
pub fn reading(out: &mut Vec<u8>, prefix: &[u8], value: f64, timestamp_ms: i64) {
    Line::with_prefix(out, prefix)
        .float("value", value)
        .finish(timestamp_ms);
}

/// One value of a probe series: its own tags from its fields, then its node's shared tags.
pub fn series_reading(out: &mut Vec<u8>, series: &Series, value: f64, timestamp_ms: i64) {
    reading_head(
        out,
        &series.node,
        &series.channel,
        series.placement,
        series.quantity,
    );
    reading(out, &series.line_tags, value, timestamp_ms);
}

/// A reading the node marked failed: counted, never written as a value.
pub fn sensor_fault(
    out: &mut Vec<u8>,
    site: &str,
    node: &str,
    channel: &str,
    quantity: Quantity,
    status: ReadingStatus,
    timestamp_ms: i64,
) {
    Line::new(out, SENSOR_FAULT.name)
        .tag("channel", channel)
        .tag("node", node)
        .tag("quantity", quantity.as_str())
        .tag("site", site)
        .tag("status", status.as_str())
        .int("count", 1)
        .finish(timestamp_ms);
}

/// A rack's measures at one time; a field is left out when nothing live feeds it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RackMeasures {
    pub inlet: Option<f64>,
    pub outlet: Option<f64>,
    pub delta_t: Option<f64>,
    pub power: Option<f64>,
}

/// One point of the `rack` measurement; nothing when every field is unknown.
pub fn rack(
    out: &mut Vec<u8>,
    site: &str,
    position: &Position,
    measures: &RackMeasures,
    timestamp_ms: i64,
) -> bool {
    let Some(rack) = &position.rack else { return false };
    let fields = [
        ("inlet", measures.inlet),
        ("outlet", measures.outlet),
        ("delta_t", measures.delta_t),
        ("power", measures.power),
    ];
    if fields.iter().all(|(_, value)| value.is_none()) {
        return false;
    }
    let mut line = Line::new(out, RACK.name).tag("rack", rack);
    if let Some(room) = &position.room {
        line = line.tag("room", room);
    }
    if let Some(row) = &position.row {
        line = line.tag("row", row);
    }
    line = line.tag("site", site);
    for (key, value) in fields {
        if let Some(value) = value {
            line = line.float(key, value);
        }
    }
    line.finish(timestamp_ms);
    true
}

/// One point of the `row` measurement: the row's total power.
pub fn row(out: &mut Vec<u8>, site: &str, position: &Position, power: f64, timestamp_ms: i64) {
    let mut line = Line::new(out, ROW.name);
    if let Some(room) = &position.room {
        line = line.tag("room", room);
    }
    if let Some(row) = &position.row {
        line = line.tag("row", row);
    }
    line.tag("site", site).float("power", power).finish(timestamp_ms);
}

/// A node's birth or last will.
pub fn node_status(out: &mut Vec<u8>, site: &str, node: &str, online: bool, boot: u32, timestamp_ms: i64) {
    Line::new(out, NODE_STATUS.name)
        .tag("node", node)
        .tag("site", site)
        .int("online", i64::from(online))
        .int("boot", i64::from(boot))
        .finish(timestamp_ms);
}

/// One alert transition, dated when the alert entered its state, so a replay writes the same
/// point again (Grafana annotations read these).
pub fn alert(out: &mut Vec<u8>, site: &str, alert: &Alert) {
    let mut line = Line::new(out, ALERT.name)
        .tag("key", &alert.key)
        .tag("rule", &alert.rule)
        .tag("severity", alert.severity.as_str())
        .tag("site", site)
        .tag("state", alert.state.as_str());
    for (key, value) in [
        ("room", alert.room.as_deref()),
        ("row", alert.row.as_deref()),
        ("rack", alert.rack.as_deref()),
        ("node", alert.node.as_deref()),
    ] {
        if let Some(value) = value {
            line = line.tag(key, value);
        }
    }
    line = line.int("firing", i64::from(alert.state == AlertState::Firing));
    for (key, value) in [("value", alert.value), ("threshold", alert.threshold)] {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            line = line.float(key, value);
        }
    }
    line.string("summary", &alert.summary)
        .finish(i64::try_from(alert.since_ms).unwrap_or(i64::MAX));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rackwatch_protocols::Label;

    use super::*;

    #[test]
    fn a_series_reading_is_its_whole_prefix_and_its_value() {
        let position = Position {
            room: Some(Label::new("hall-a").unwrap()),
            row: None,
            rack: Some(Label::new("a01").unwrap()),
        };
        let series = Series {
            id: crate::model::SeriesId::next(),
            scope: crate::model::SeriesScope::Probe,
            node: NodeId::new("r01-n1").unwrap(),
            channel: ChannelName::new("t_in").unwrap(),
            quantity: Quantity::Temperature,
            placement: Some(Placement::InletTop),
            line_tags: reading_tags("fra1", &position),
            position: Arc::new(position),
        };
        let mut shared = Vec::new();
        series_reading(&mut shared, &series, 24.5, 7);
        assert_eq!(
            String::from_utf8(shared).unwrap(),
            "reading,channel=t_in,node=r01-n1,placement=inlet_top,quantity=temperature,rack=a01,room=hall-a,site=fra1 value=24.5 7\n"
        );
    }

    /// The backquoted names of one cell of the README's table, leaving out what parentheses say
    /// about them (`rack` (`unassigned` for ...) gives `rack`).
    fn names(cell: &str) -> BTreeSet<String> {
        let mut outside = String::new();
        let mut depth = 0usize;
        for c in cell.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ if depth == 0 => outside.push(c),
                _ => {}
            }
        }
        outside
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|name| name.trim_end_matches("=1i").to_owned())
            .collect()
    }

    #[test]
    fn the_readme_schema_table_lists_exactly_what_the_gateway_writes() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("## InfluxDB schema")
            .nth(1)
            .expect("gateway/README.md has an \"InfluxDB schema\" section");
        let rows: Vec<Vec<&str>> = table
            .lines()
            .skip_while(|line| !line.starts_with("| measurement"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| line.trim_matches('|').split(" | ").map(str::trim).collect())
            .collect();
        let documented: Vec<String> = rows
            .iter()
            .map(|row| row[0].trim_matches('`').to_owned())
            .collect();
        let written: Vec<&str> = MEASUREMENTS.iter().map(|m| m.name).collect();
        assert_eq!(documented, written, "measurements in the README's table");
        for (row, measurement) in rows.iter().zip(MEASUREMENTS) {
            let tags: BTreeSet<String> = measurement.tags.iter().map(|t| (*t).to_owned()).collect();
            let fields: BTreeSet<String> = measurement.fields.iter().map(|f| (*f).to_owned()).collect();
            assert_eq!(
                names(row[1]),
                tags,
                "tags of `{}` in the README",
                measurement.name
            );
            assert_eq!(
                names(row[2]),
                fields,
                "fields of `{}` in the README",
                measurement.name
            );
        }
    }

    #[test]
    fn every_point_uses_only_its_measurements_documented_names() {
        let position = Position {
            room: Some(Label::new("hall-a").unwrap()),
            row: Some(Label::new("r01").unwrap()),
            rack: Some(Label::new("a01").unwrap()),
        };
        let mut out = Vec::new();
        let prefix = reading_prefix(
            "fra1",
            &NodeId::new("r01-n1").unwrap(),
            &ChannelName::new("t_in").unwrap(),
            Some(Placement::InletTop),
            Quantity::Temperature,
            &position,
        );
        reading(&mut out, &prefix, 24.5, 1);
        sensor_fault(
            &mut out,
            "fra1",
            "r01-n1",
            "t_in",
            Quantity::Temperature,
            ReadingStatus::Fault,
            2,
        );
        let measures = RackMeasures {
            inlet: Some(20.0),
            outlet: Some(30.0),
            delta_t: Some(10.0),
            power: Some(500.0),
        };
        assert!(rack(&mut out, "fra1", &position, &measures, 3));
        assert!(!rack(&mut out, "fra1", &position, &RackMeasures::default(), 3));
        row(&mut out, "fra1", &position, 500.0, 4);
        node_status(&mut out, "fra1", "r01-n1", true, 7, 5);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "reading,channel=t_in,node=r01-n1,placement=inlet_top,quantity=temperature,rack=a01,room=hall-a,row=r01,site=fra1 value=24.5 1\n\
             sensor_fault,channel=t_in,node=r01-n1,quantity=temperature,site=fra1,status=fault count=1i 2\n\
             rack,rack=a01,room=hall-a,row=r01,site=fra1 inlet=20.0,outlet=30.0,delta_t=10.0,power=500.0 3\n\
             row,room=hall-a,row=r01,site=fra1 power=500.0 4\n\
             node_status,node=r01-n1,site=fra1 online=1i,boot=7i 5\n"
        );
        for line in text.lines() {
            let (head, rest) = line.split_once(' ').unwrap();
            let mut parts = head.split(',');
            let name = parts.next().unwrap();
            let measurement = MEASUREMENTS.iter().find(|m| m.name == name).unwrap();
            for tag in parts {
                let key = tag.split_once('=').unwrap().0;
                assert!(measurement.tags.contains(&key), "{name} tag {key}");
            }
            let fields = rest.rsplit_once(' ').unwrap().0;
            for field in fields.split(',') {
                let key = field.split_once('=').unwrap().0;
                assert!(measurement.fields.contains(&key), "{name} field {key}");
            }
        }
    }
}
