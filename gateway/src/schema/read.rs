//! The schema read back: the history series a spooled line feeds.
//!
//! The spool holds line protocol that [`super`] wrote; when the gateway's own history is the spool's
//! sink, each line is read back here into the history series it belongs to. Only what this module's
//! parent writes is understood, so the parser is small: a measurement, `key=value` tags with
//! backslash escapes, float fields, a millisecond timestamp. Lines of other measurements (faults,
//! node status, alerts) feed no history series and are skipped.
//!
//! Series keys (compact, as the history store wants them):
//!
//! | line | keys |
//! |---|---|
//! | `reading` (room `hall-a`, row `r01`, rack `a03`, node `r01-n1`, channel `t0`, quantity `temperature`) | `rack/hall-a.r01.a03/temperature` |
//! | `rack` (room `hall-a`, row `r01`, rack `a03`) | `rack/hall-a.r01.a03/inlet`, `…/outlet`, `…/delta_t`, `…/power` (those present) |
//! | `row` (room `hall-a`, row `r01`) | `row/hall-a.r01/power` |
//!
//! A rack is named by its site-wide id ([`rack_id`]: `room.row.rack`), as the dashboard's API
//! names it. `rack/…/temperature` gathers every temperature probe of the rack into one bucket (its min,
//! mean and max over the minute); the rack's inlet and outlet come from the `rack` line.
//!
//! A probe's own series is not kept: the history holds what the charts read (racks and rows), and a
//! probe's readings are in the database. Kept per probe, 10,000 nodes of 10 channels made 100,000
//! history series: ~35 MiB of minute buckets held in memory between flushes, and ~5 GiB of minutes a
//! day against the history's disk bound (512 MiB by default), which would have cut every rack's
//! minute history to a few hours. Per rack it is a few series (its measures and one pool per
//! quantity).

use super::{RACK, READING, ROW};
use crate::model::{Sample, SeriesScope, rack_id};

/// One sample for the history store, its key built by [`history_samples`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPoint {
    pub key: String,
    pub ts_ms: i64,
    pub value: f64,
}

/// Why a line fed no history series although its measurement should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("line has no timestamp")]
    NoTimestamp,
    #[error("line has no field set")]
    NoFields,
    #[error("line lacks the tag its series is keyed by")]
    MissingTag,
    #[error("line is not UTF-8")]
    NotUtf8,
}

/// Appends the history samples of one line (without its `\n`) to `out`; a line of a measurement no
/// history series is kept for adds nothing.
pub fn history_samples(line: &[u8], out: &mut Vec<HistoryPoint>) -> Result<(), ReadError> {
    let line = std::str::from_utf8(line).map_err(|_| ReadError::NotUtf8)?;
    let (series, rest) = split_unescaped(line, b' ').ok_or(ReadError::NoFields)?;
    let mut parts = split_all(series, b',');
    let measurement = parts.next().unwrap_or_default();
    if ![READING.name, RACK.name, ROW.name].contains(&measurement) {
        return Ok(());
    }
    let (fields, timestamp) = split_unescaped(rest, b' ').ok_or(ReadError::NoTimestamp)?;
    let ts_ms: i64 = timestamp.trim().parse().map_err(|_| ReadError::NoTimestamp)?;
    let mut tags = Tags::default();
    for tag in parts {
        if let Some((key, value)) = split_unescaped(tag, b'=') {
            tags.set(key, value);
        }
    }
    let floats = split_all(fields, b',').filter_map(|field| {
        let (key, value) = split_unescaped(field, b'=')?;
        // Integer fields (`1i`) are counts and flags, never history.
        value.parse::<f64>().ok().map(|value| (key, value))
    });
    if measurement == READING.name {
        let Some((_, value)) = floats.into_iter().find(|(key, _)| *key == "value") else {
            return Err(ReadError::NoFields);
        };
        let Some(quantity) = &tags.quantity else {
            return Err(ReadError::MissingTag);
        };
        if let Some(rack) = &tags.rack {
            let rack = rack_id(tags.room.as_deref(), tags.row.as_deref(), rack);
            out.push(point(rack_key(&rack, quantity), ts_ms, value));
        }
    } else if measurement == RACK.name {
        let rack = tags.rack.as_deref().ok_or(ReadError::MissingTag)?;
        let rack = rack_id(tags.room.as_deref(), tags.row.as_deref(), rack);
        for (key, value) in floats {
            out.push(point(rack_key(&rack, key), ts_ms, value));
        }
    } else {
        let row = tags.row.as_deref().ok_or(ReadError::MissingTag)?;
        for (key, value) in floats {
            out.push(point(row_key(tags.room.as_deref(), row, key), ts_ms, value));
        }
    }
    Ok(())
}

/// The history samples of one normalised or derived sample: the same series keys as the line it
/// was written as (for the history beside a database, fed from ingest's observations). A sample
/// without a value (a fault, an aggregate that lost its last member) feeds nothing.
pub fn sample_history(sample: &Sample, out: &mut Vec<HistoryPoint>) {
    let mut key = String::new();
    sample_keys(sample, &mut key, |key, ts_ms, value| {
        out.push(point(key.to_owned(), ts_ms, value));
    });
}

/// What [`sample_history`] collects, handed to `emit` one series at a time with its key built in
/// `key` (a buffer the caller keeps): no allocation per sample on the feed's hot path.
pub fn sample_keys(sample: &Sample, key: &mut String, mut emit: impl FnMut(&str, i64, f64)) {
    let Some(value) = sample.value.filter(|v| v.is_finite()) else {
        return;
    };
    let series = &sample.series;
    let position = &series.position;
    let ts_ms = sample.timestamp_ms;
    let room = position.room.as_deref();
    let row = position.row.as_deref();
    match series.scope {
        SeriesScope::Probe => {
            push_rack_key(key, room, row, position.rack_tag(), series.quantity.as_str());
            emit(key, ts_ms, value);
        }
        SeriesScope::Rack(measure) => {
            push_rack_key(key, room, row, position.rack_tag(), measure.as_str());
            emit(key, ts_ms, value);
        }
        SeriesScope::Row(measure) => {
            if let Some(row) = row {
                push_row_key(key, room, row, measure.as_str());
                emit(key, ts_ms, value);
            }
        }
    }
}

/// A rack's measure (`inlet`, `delta_t`, ...) or the pool of one quantity over its probes.
pub fn rack_key(rack_id: &str, name: &str) -> String {
    let mut key = String::with_capacity(6 + rack_id.len() + name.len());
    for part in ["rack/", rack_id, "/", name] {
        key.push_str(part);
    }
    key
}

fn row_key(room: Option<&str>, row: &str, name: &str) -> String {
    let mut key = String::new();
    push_row_key(&mut key, room, row, name);
    key
}

/// `key` becomes [`rack_key`] of the rack's [`rack_id`], built in place.
fn push_rack_key(key: &mut String, room: Option<&str>, row: Option<&str>, rack: &str, name: &str) {
    key.clear();
    let (room, row) = (room.unwrap_or("-"), row.unwrap_or("-"));
    for part in ["rack/", room, ".", row, ".", rack, "/", name] {
        key.push_str(part);
    }
}

/// `key` becomes `row/<room>.<row>/<name>`.
fn push_row_key(key: &mut String, room: Option<&str>, row: &str, name: &str) {
    key.clear();
    for part in ["row/", room.unwrap_or("-"), ".", row, "/", name] {
        key.push_str(part);
    }
}

fn point(key: String, ts_ms: i64, value: f64) -> HistoryPoint {
    HistoryPoint { key, ts_ms, value }
}

/// The tags a history key is made of; the rest are not needed here.
#[derive(Debug, Default)]
struct Tags {
    rack: Option<String>,
    row: Option<String>,
    room: Option<String>,
    quantity: Option<String>,
}

impl Tags {
    fn set(&mut self, key: &str, value: &str) {
        let slot = match key {
            "rack" => &mut self.rack,
            "row" => &mut self.row,
            "room" => &mut self.room,
            "quantity" => &mut self.quantity,
            _ => return,
        };
        *slot = Some(unescape(value));
    }
}

/// Splits at the first `separator` not preceded by a backslash.
fn split_unescaped(text: &str, separator: u8) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == separator {
            return Some((&text[..i], &text[i + 1..]));
        }
    }
    None
}

/// Every part between unescaped `separator`s.
fn split_all(text: &str, separator: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match split_unescaped(current, separator) {
            Some((part, tail)) => {
                rest = Some(tail);
                Some(part)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

fn unescape(value: &str) -> String {
    if !value.contains('\\') {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rackwatch_protocols::{Alert, AlertState, Label, Quantity, ReadingStatus, Severity};

    use super::*;
    use crate::model::{Placement, Position};
    use crate::schema::{self, RackMeasures};

    fn position() -> Position {
        Position {
            room: Some(Label::new("hall-1").unwrap()),
            row: Some(Label::new("r01").unwrap()),
            rack: Some(Label::new("a03").unwrap()),
        }
    }

    fn read(body: &[u8]) -> Vec<HistoryPoint> {
        let mut out = Vec::new();
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            history_samples(line, &mut out).expect("a line the schema wrote reads back");
        }
        out
    }

    #[test]
    fn a_reading_feeds_its_rack_quantity_not_a_series_of_its_own() {
        let prefix = schema::reading_prefix(
            "dc1",
            &rackwatch_protocols::NodeId::new("r01-n1").unwrap(),
            &rackwatch_protocols::ChannelName::new("t0").unwrap(),
            Some(Placement::InletTop),
            Quantity::Temperature,
            &position(),
        );
        let mut body = Vec::new();
        schema::reading(&mut body, &prefix, 24.0625, 1_700_000_000_123);
        assert_eq!(
            read(&body),
            vec![point(
                "rack/hall-1.r01.a03/temperature".into(),
                1_700_000_000_123,
                24.0625
            )]
        );
    }

    #[test]
    fn a_rack_line_feeds_only_the_measures_it_carries() {
        let mut body = Vec::new();
        let measures = RackMeasures {
            inlet: Some(22.5),
            delta_t: None,
            outlet: None,
            power: Some(4200.0),
        };
        assert!(schema::rack(&mut body, "dc1", &position(), &measures, 5_000));
        schema::row(&mut body, "dc1", &position(), 12_345.5, 6_000);
        assert_eq!(
            read(&body),
            vec![
                point("rack/hall-1.r01.a03/inlet".into(), 5_000, 22.5),
                point("rack/hall-1.r01.a03/power".into(), 5_000, 4200.0),
                point("row/hall-1.r01/power".into(), 6_000, 12_345.5),
            ]
        );
    }

    #[test]
    fn faults_node_status_and_alerts_feed_no_series() {
        let mut body = Vec::new();
        schema::sensor_fault(
            &mut body,
            "dc1",
            "r01-n1",
            "t0",
            Quantity::Temperature,
            ReadingStatus::Fault,
            1,
        );
        schema::node_status(&mut body, "dc1", "r01-n1", true, 3, 2);
        let alert = Alert {
            version: 1,
            key: "inlet_hot.r01.a03".try_into().unwrap(),
            rule: Label::new("inlet_hot").unwrap(),
            severity: Severity::Critical,
            state: AlertState::Firing,
            room: None,
            row: Some(Label::new("r01").unwrap()),
            rack: Some(Label::new("a03").unwrap()),
            node: None,
            channel: None,
            value: Some(33.1),
            threshold: Some(32.0),
            since_ms: 3,
            summary: "inlet too hot, see \"row r01\", value=33".try_into().unwrap(),
        };
        schema::alert(&mut body, "dc1", &alert);
        assert_eq!(read(&body), vec![]);
    }

    #[test]
    fn escaped_tag_values_come_back_whole() {
        let mut out = Vec::new();
        history_samples(br"rack,rack=a\ 03,site=dc1 inlet=20 7", &mut out).unwrap();
        assert_eq!(out, vec![point("rack/-.-.a 03/inlet".into(), 7, 20.0)]);
    }

    #[test]
    fn a_damaged_line_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        assert_eq!(
            history_samples(b"rack,rack=a03 inlet=20", &mut out),
            Err(ReadError::NoTimestamp)
        );
        assert_eq!(
            history_samples(b"reading,node=n1 value=20 7", &mut out),
            Err(ReadError::MissingTag)
        );
        assert_eq!(history_samples(b"rack", &mut out), Err(ReadError::NoFields));
        assert_eq!(history_samples(b"\xff\xfe", &mut out), Err(ReadError::NotUtf8));
        assert!(out.is_empty());
    }

    fn sample(scope: SeriesScope, quantity: Quantity, value: f64) -> Sample {
        use rackwatch_protocols::{ChannelName, NodeId};
        let node = if scope == SeriesScope::Probe {
            "r01-n1"
        } else {
            crate::model::DERIVED_NODE
        };
        Sample {
            series: std::sync::Arc::new(crate::model::Series {
                id: crate::model::SeriesId::next(),
                scope,
                node: NodeId::new(node).unwrap(),
                channel: ChannelName::new("t0").unwrap(),
                quantity,
                placement: None,
                position: std::sync::Arc::new(position()),
                line_tags: std::sync::Arc::from([]),
            }),
            value: Some(value),
            status: ReadingStatus::Ok,
            timestamp_ms: 9_000,
            received_ms: 9_000,
        }
    }

    #[test]
    fn a_sample_feeds_the_same_series_as_the_line_it_is_written_as() {
        use crate::model::Measure;
        // A probe reading: its rack's pool of the quantity.
        let prefix = schema::reading_prefix(
            "dc1",
            &rackwatch_protocols::NodeId::new("r01-n1").unwrap(),
            &rackwatch_protocols::ChannelName::new("t0").unwrap(),
            None,
            Quantity::RelativeHumidity,
            &position(),
        );
        let mut line = Vec::new();
        schema::reading(&mut line, &prefix, 41.5, 9_000);
        let mut from_sample = Vec::new();
        sample_history(
            &sample(SeriesScope::Probe, Quantity::RelativeHumidity, 41.5),
            &mut from_sample,
        );
        assert_eq!(from_sample, read(&line));
        // A rack measure and a row measure, as derive writes them.
        let mut line = Vec::new();
        let measures = RackMeasures {
            delta_t: Some(11.5),
            ..RackMeasures::default()
        };
        schema::rack(&mut line, "dc1", &position(), &measures, 9_000);
        schema::row(&mut line, "dc1", &position(), 8_000.0, 9_000);
        let mut from_samples = Vec::new();
        sample_history(
            &sample(SeriesScope::Rack(Measure::DeltaT), Quantity::Temperature, 11.5),
            &mut from_samples,
        );
        sample_history(
            &sample(SeriesScope::Row(Measure::Power), Quantity::Power, 8_000.0),
            &mut from_samples,
        );
        assert_eq!(from_samples, read(&line));
        // A sample without a value feeds nothing.
        let mut none = Vec::new();
        let mut faulted = sample(SeriesScope::Probe, Quantity::Temperature, 1.0);
        faulted.value = None;
        sample_history(&faulted, &mut none);
        assert!(none.is_empty());
    }
}
