//! Normalise and enrich: from a decoded telemetry message to tagged points in canonical units.
//!
//! Per message: drop it if its `(boot, seq)` was seen (QoS 1 redelivery) and count gaps; date it
//! (the node's clock when synced and sane, else its boot anchor plus uptime); per reading: convert the
//! unit, calibrate, check plausibility, tag from the inventory and write a line. What is computed
//! from several readings (dew points, rack and row measures) is the next stage's (`derive.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rackwatch_protocols::{ChannelName, NodeId, Quantity, ReadingStatus, SiteId, Telemetry};

use crate::config::NormaliseConfig;
use crate::inventory::Inventory;
use crate::model::{Sample, SequenceMark, Series, SeriesScope};
use crate::schema;

/// Sequence numbers remembered per boot for duplicate detection (128 bytes per boot). A duplicate
/// is a message spooled but not acknowledged before a restart, which the broker redelivers first,
/// or a node's resend of a record whose PUBACK it missed (at most 4 in flight): a few messages
/// behind the newest, far inside 1,024 (2.8 hours of a node's messages at one per 10 s). A
/// redelivery older than the window is kept, and overwrites its own point (same series, same
/// timestamp). Was 4,096: 512 bytes per node, 51 bytes per series of a 10-channel node.
const SEQ_WINDOW: u32 = 1024;
/// Boots remembered per node (a node that reboots twice while its backlog is redelivered).
const BOOTS_REMEMBERED: usize = 4;

/// Why one reading of an otherwise good message was kept out of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadingRejection {
    /// The unit does not measure the reading's quantity (power in volts).
    UnitMismatch,
    /// Outside the quantity's plausible range, after conversion and calibration.
    Implausible,
    /// Status `ok` without a value, or a value that is not finite after calibration.
    MissingValue,
}

impl ReadingRejection {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReadingRejection::UnitMismatch => "unit_mismatch",
            ReadingRejection::Implausible => "implausible",
            ReadingRejection::MissingValue => "missing_value",
        }
    }
}

/// What happened to one telemetry message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Written; `gap` messages of this boot are missing before it.
    Accepted { gap: u32 },
    /// Its `(boot, seq)` was already accepted: dropped.
    Duplicate,
    /// Dated further back than `normalise.max_age`.
    Stale,
}

/// Reused buffers for one message's output.
#[derive(Debug, Default)]
pub struct Output {
    /// Line protocol for the spool.
    pub lines: Vec<u8>,
    pub samples: Vec<Sample>,
    pub rejected: Vec<(ChannelName, Quantity, ReadingRejection)>,
    pub points: usize,
}

impl Output {
    pub fn clear(&mut self) {
        self.lines.clear();
        self.samples.clear();
        self.rejected.clear();
        self.points = 0;
    }
}

#[derive(Debug)]
struct BootTrack {
    boot: u32,
    anchor_ms: i64,
    /// The highest sequence number accepted; `None` until the boot's first telemetry.
    highest: Option<u32>,
    /// Bit i set: `highest - i` was accepted.
    seen: Box<[u64; (SEQ_WINDOW / 64) as usize]>,
}

impl BootTrack {
    fn new(boot: u32, anchor_ms: i64) -> Self {
        BootTrack {
            boot,
            anchor_ms,
            highest: None,
            seen: Box::new([0u64; (SEQ_WINDOW / 64) as usize]),
        }
    }

    fn bit(&self, back: u32) -> bool {
        self.seen
            .get((back / 64) as usize)
            .is_some_and(|w| w & (1 << (back % 64)) != 0)
    }

    fn set(&mut self, back: u32) {
        if let Some(word) = self.seen.get_mut((back / 64) as usize) {
            *word |= 1 << (back % 64);
        }
    }

    /// Records `seq`; returns `None` for a duplicate, else the gap it reveals.
    fn accept(&mut self, seq: u32) -> Option<u32> {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            self.set(0);
            return Some(0);
        };
        if seq > highest {
            let advance = seq - highest;
            self.shift(advance);
            self.highest = Some(seq);
            self.set(0);
            return Some(advance - 1);
        }
        let back = highest - seq;
        if back >= SEQ_WINDOW {
            // Older than the window: cannot tell, so keep it (a retried point has the same timestamp).
            return Some(0);
        }
        if self.bit(back) {
            return None;
        }
        self.set(back);
        Some(0)
    }

    fn shift(&mut self, by: u32) {
        if by >= SEQ_WINDOW {
            self.seen.fill(0);
            return;
        }
        let words = (by / 64) as usize;
        let bits = by % 64;
        let len = self.seen.len();
        for i in (0..len).rev() {
            let from = i.checked_sub(words);
            let high = from.and_then(|f| self.seen.get(f)).copied().unwrap_or(0);
            let low = from
                .and_then(|f| f.checked_sub(1))
                .and_then(|f| self.seen.get(f))
                .copied()
                .unwrap_or(0);
            let value = if bits == 0 {
                high
            } else {
                (high << bits) | (low >> (64 - bits))
            };
            if let Some(word) = self.seen.get_mut(i) {
                *word = value;
            }
        }
    }
}

#[derive(Debug, Default)]
struct NodeTrack {
    boots: VecDeque<BootTrack>,
    /// The node's series in the order its messages first listed them: a node lists its channels in
    /// the same order every time, so reading `i` of a message is found at `i` with one comparison
    /// (no hash per reading, 8 bytes per series instead of a map slot holding a key copy).
    series: Vec<Arc<Series>>,
}

impl NodeTrack {
    /// The series of reading `hint` of a message from `node`, made the first time it is seen.
    fn series(
        &mut self,
        site: &SiteId,
        inventory: &Inventory,
        node: &NodeId,
        hint: usize,
        channel: &ChannelName,
        quantity: Quantity,
    ) -> Arc<Series> {
        let is = |s: &&Arc<Series>| s.quantity == quantity && s.channel == *channel;
        if let Some(series) = self
            .series
            .get(hint)
            .filter(is)
            .or_else(|| self.series.iter().find(is))
        {
            return Arc::clone(series);
        }
        // One copy of the node's position and of its tags for all of its series.
        let (position, line_tags) = match self.series.first() {
            Some(s) => (Arc::clone(&s.position), Arc::clone(&s.line_tags)),
            None => {
                let position = inventory.position(node);
                let tags = schema::reading_tags(site, &position);
                (Arc::new(position), tags)
            }
        };
        let placement = inventory.placement(node, channel);
        let series = Arc::new(Series {
            id: crate::model::SeriesId::next(),
            scope: SeriesScope::Probe,
            node: node.clone(),
            channel: channel.clone(),
            quantity,
            placement,
            position,
            line_tags,
        });
        self.series.push(Arc::clone(&series));
        series
    }

    fn boot_mut(&mut self, boot: u32) -> Option<&mut BootTrack> {
        self.boots.iter_mut().find(|b| b.boot == boot)
    }

    fn add_boot(&mut self, track: BootTrack) {
        if self.boots.len() == BOOTS_REMEMBERED {
            self.boots.pop_front();
        }
        self.boots.push_back(track);
    }
}

/// The normalise/enrich stage. Owns per-node sequence state and each node's series.
#[derive(Debug)]
pub struct Normaliser {
    site: SiteId,
    inventory: Inventory,
    config: NormaliseConfig,
    /// Seeded fast hashing (ahash, a random key per process: no HashDoS by chosen node ids), one
    /// lookup per message.
    nodes: HashMap<NodeId, NodeTrack, ahash::RandomState>,
}

impl Normaliser {
    pub fn new(site: SiteId, inventory: Inventory, config: NormaliseConfig) -> Self {
        Normaliser {
            site,
            inventory,
            config,
            nodes: HashMap::default(),
        }
    }

    /// Restores sequence state from a spooled record (at start, before any new message).
    pub fn restore(&mut self, node: &str, mark: SequenceMark) {
        // A record's node was a valid id when it was spooled.
        let Ok(node) = NodeId::new(node) else { return };
        let track = self.nodes.entry(node).or_default();
        match track.boot_mut(mark.boot) {
            Some(boot) => {
                boot.anchor_ms = boot.anchor_ms.min(mark.anchor_ms);
                let _ = boot.accept(mark.seq);
            }
            None => {
                let mut boot = BootTrack::new(mark.boot, mark.anchor_ms);
                let _ = boot.accept(mark.seq);
                track.add_boot(boot);
            }
        }
    }

    /// Improves a boot's anchor from a status message (sent right after connecting, so its
    /// `received - uptime` is the best estimate of when the node booted).
    pub fn observe_uptime(&mut self, node: &str, boot: u32, uptime_ms: u64, received_ms: i64) {
        let anchor = received_ms.saturating_sub(i64::try_from(uptime_ms).unwrap_or(i64::MAX));
        let Ok(node) = NodeId::new(node) else { return };
        let track = self.nodes.entry(node).or_default();
        if let Some(b) = track.boot_mut(boot) {
            b.anchor_ms = b.anchor_ms.min(anchor);
        } else {
            // Not yet seen in telemetry: remember the anchor; the first telemetry starts the window.
            track.add_boot(BootTrack::new(boot, anchor));
        }
    }

    /// Normalises one message into `out`. Returns what happened and, when accepted, the sequence
    /// mark to spool with it.
    pub fn telemetry(
        &mut self,
        t: &Telemetry,
        received_ms: i64,
        out: &mut Output,
    ) -> (Verdict, Option<SequenceMark>) {
        let uptime = i64::try_from(t.uptime_ms).unwrap_or(i64::MAX);
        let observed_anchor = received_ms.saturating_sub(uptime);
        let track = self.nodes.entry(t.node.clone()).or_default();
        let (gap, anchor_ms) = match track.boot_mut(t.boot) {
            Some(boot) => {
                let Some(gap) = boot.accept(t.seq) else {
                    return (Verdict::Duplicate, None);
                };
                boot.anchor_ms = boot.anchor_ms.min(observed_anchor);
                (gap, boot.anchor_ms)
            }
            None => {
                let mut boot = BootTrack::new(t.boot, observed_anchor);
                let _ = boot.accept(t.seq);
                track.add_boot(boot);
                (0, observed_anchor)
            }
        };
        let mark = SequenceMark {
            boot: t.boot,
            seq: t.seq,
            anchor_ms,
        };

        let max_future = i64::try_from(self.config.max_future.as_millis()).unwrap_or(i64::MAX);
        let max_age = i64::try_from(self.config.max_age.as_millis()).unwrap_or(i64::MAX);
        let node_clock = t.timestamp_ms.and_then(|ts| i64::try_from(ts).ok());
        if node_clock.is_some_and(|ts| ts < received_ms.saturating_sub(max_age)) {
            // A synced node says this is old: it is, whatever its uptime suggests (gateway/README.md,
            // `stale`). Marked seen, so a redelivery is the same stale message.
            return (Verdict::Stale, Some(mark));
        }
        let timestamp_ms = match node_clock {
            Some(ts)
                if ts <= received_ms.saturating_add(max_future)
                    && ts >= received_ms.saturating_sub(max_age) =>
            {
                ts
            }
            _ => anchor_ms.saturating_add(uptime),
        };
        if timestamp_ms < received_ms.saturating_sub(max_age) {
            // Mark it seen anyway: a redelivery is the same stale message.
            return (Verdict::Stale, Some(mark));
        }

        self.readings(t, timestamp_ms, received_ms, out);
        (Verdict::Accepted { gap }, Some(mark))
    }

    fn readings(&mut self, t: &Telemetry, timestamp_ms: i64, received_ms: i64, out: &mut Output) {
        let Normaliser {
            site,
            inventory,
            config,
            nodes,
        } = self;
        let track = nodes.entry(t.node.clone()).or_default();
        for (hint, reading) in t.readings.iter().enumerate() {
            let series = track.series(site, inventory, &t.node, hint, &reading.channel, reading.quantity);
            if reading.status != ReadingStatus::Ok {
                schema::sensor_fault(
                    &mut out.lines,
                    site,
                    &t.node,
                    &reading.channel,
                    reading.quantity,
                    reading.status,
                    timestamp_ms,
                );
                out.points += 1;
                out.samples.push(Sample {
                    series,
                    value: None,
                    status: reading.status,
                    timestamp_ms,
                    received_ms,
                });
                continue;
            }
            let Some(raw) = reading.value else {
                out.rejected.push((
                    reading.channel.clone(),
                    reading.quantity,
                    ReadingRejection::MissingValue,
                ));
                continue;
            };
            let Some(canonical) = reading.unit.to_canonical(reading.quantity, raw) else {
                out.rejected.push((
                    reading.channel.clone(),
                    reading.quantity,
                    ReadingRejection::UnitMismatch,
                ));
                continue;
            };
            let calibration = inventory.calibration(&t.node, &reading.channel);
            let value = canonical * calibration.gain + calibration.offset;
            if !value.is_finite() {
                out.rejected.push((
                    reading.channel.clone(),
                    reading.quantity,
                    ReadingRejection::MissingValue,
                ));
                continue;
            }
            if !config.plausible(reading.quantity).contains(value) {
                out.rejected.push((
                    reading.channel.clone(),
                    reading.quantity,
                    ReadingRejection::Implausible,
                ));
                continue;
            }
            schema::series_reading(&mut out.lines, &series, value, timestamp_ms);
            out.points += 1;
            out.samples.push(Sample {
                series,
                value: Some(value),
                status: ReadingStatus::Ok,
                timestamp_ms,
                received_ms,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use rackwatch_protocols::{NodeId, Reading, Unit};

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

    fn normaliser() -> Normaliser {
        let config = Config::parse(CONFIG).unwrap();
        Normaliser::new(
            config.site.clone(),
            Inventory::from_config(&config),
            config.normalise.clone(),
        )
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

    fn run(n: &mut Normaliser, t: &Telemetry) -> (Verdict, String, Output) {
        let mut out = Output::default();
        let (verdict, _) = n.telemetry(t, 1_795_000_000_000 + i64::from(t.seq) * 1000 + 5, &mut out);
        (verdict, String::from_utf8(out.lines.clone()).unwrap(), out)
    }

    #[test]
    fn tags_from_inventory_converts_and_calibrates() {
        let mut n = normaliser();
        let t = telemetry(
            "r01-n1",
            0,
            &[Reading::ok(
                ch("t_in"),
                Quantity::Temperature,
                77.0,
                Unit::Fahrenheit,
            )],
        );
        let (verdict, lines, out) = run(&mut n, &t);
        assert_eq!(verdict, Verdict::Accepted { gap: 0 });
        // 77 °F = 25 °C, calibrated by -0.5.
        assert!(lines.starts_with(
            "reading,channel=t_in,node=r01-n1,placement=inlet_top,quantity=temperature,rack=a01,room=hall-a,row=r01,site=fra1 value=24.5 1795000000000\n"
        ), "{lines}");
        assert_eq!(out.samples[0].value, Some(24.5));
    }

    #[test]
    fn a_reading_dated_thirty_days_ago_by_a_synced_node_is_stale_not_now() {
        let mut n = normaliser();
        let mut t = telemetry(
            "r01-n1",
            0,
            &[Reading::ok(
                ch("t_in"),
                Quantity::Temperature,
                20.0,
                Unit::Celsius,
            )],
        );
        t.timestamp_ms = Some(1_795_000_000_000 - 30 * 24 * 3600 * 1000);
        let (verdict, lines, _) = run(&mut n, &t);
        assert_eq!(verdict, Verdict::Stale);
        assert_eq!(lines, "", "nothing stored, not even re-dated");
    }

    #[test]
    fn unknown_node_is_written_as_unassigned() {
        let mut n = normaliser();
        let t = telemetry(
            "stray",
            0,
            &[Reading::ok(
                ch("inlet_top"),
                Quantity::Temperature,
                20.0,
                Unit::Celsius,
            )],
        );
        let (_, lines, _) = run(&mut n, &t);
        assert_eq!(
            lines,
            "reading,channel=inlet_top,node=stray,placement=inlet_top,quantity=temperature,rack=unassigned,site=fra1 value=20.0 1795000000000\n"
        );
    }

    #[test]
    fn duplicates_are_dropped_and_gaps_counted() {
        let mut n = normaliser();
        let r = [Reading::ok(ch("x"), Quantity::Voltage, 48.0, Unit::Volt)];
        assert_eq!(
            run(&mut n, &telemetry("r01-n1", 0, &r)).0,
            Verdict::Accepted { gap: 0 }
        );
        assert_eq!(run(&mut n, &telemetry("r01-n1", 0, &r)).0, Verdict::Duplicate);
        assert_eq!(
            run(&mut n, &telemetry("r01-n1", 4, &r)).0,
            Verdict::Accepted { gap: 3 }
        );
        // A late message fills part of the gap once, then is a duplicate.
        assert_eq!(
            run(&mut n, &telemetry("r01-n1", 2, &r)).0,
            Verdict::Accepted { gap: 0 }
        );
        assert_eq!(run(&mut n, &telemetry("r01-n1", 2, &r)).0, Verdict::Duplicate);
        assert_eq!(run(&mut n, &telemetry("r01-n1", 4, &r)).0, Verdict::Duplicate);
    }

    #[test]
    fn window_survives_a_long_jump() {
        let mut track = BootTrack::new(1, 0);
        assert_eq!(track.accept(10), Some(0));
        assert_eq!(track.accept(10 + SEQ_WINDOW + 5), Some(SEQ_WINDOW + 4));
        assert_eq!(track.accept(10 + SEQ_WINDOW + 5), None);
        assert_eq!(track.accept(100 + 64), Some(0));
        assert_eq!(track.accept(100 + 64), None);
    }

    #[test]
    fn restored_marks_make_redeliveries_duplicates() {
        let mut n = normaliser();
        n.restore(
            "r01-n1",
            SequenceMark {
                boot: 7,
                seq: 3,
                anchor_ms: 1_000,
            },
        );
        let r = [Reading::ok(ch("x"), Quantity::Voltage, 48.0, Unit::Volt)];
        assert_eq!(run(&mut n, &telemetry("r01-n1", 3, &r)).0, Verdict::Duplicate);
        assert_eq!(
            run(&mut n, &telemetry("r01-n1", 4, &r)).0,
            Verdict::Accepted { gap: 0 }
        );
    }

    #[test]
    fn unsynced_node_is_dated_from_its_boot_anchor() {
        let mut n = normaliser();
        let mut t = telemetry(
            "r01-n1",
            0,
            &[Reading::ok(ch("x"), Quantity::Voltage, 48.0, Unit::Volt)],
        );
        t.timestamp_ms = None;
        t.uptime_ms = 10_000;
        // The status, sent on connect at uptime 600 s, fixes the anchor at received - 600 s.
        n.observe_uptime("r01-n1", 7, 600_000, 2_000_600_000);
        let mut out = Output::default();
        let (verdict, mark) = n.telemetry(&t, 2_000_600_050, &mut out);
        assert_eq!(verdict, Verdict::Accepted { gap: 0 });
        assert_eq!(mark.unwrap().anchor_ms, 2_000_000_000);
        assert!(String::from_utf8(out.lines).unwrap().ends_with(" 2000010000\n"));
    }

    #[test]
    fn a_status_before_the_first_telemetry_reveals_no_gap() {
        let mut n = normaliser();
        n.observe_uptime("r01-n1", 7, 5_000, 1_795_000_000_000);
        let t = telemetry(
            "r01-n1",
            1041,
            &[Reading::ok(ch("x"), Quantity::Voltage, 48.0, Unit::Volt)],
        );
        assert_eq!(run(&mut n, &t).0, Verdict::Accepted { gap: 0 });
    }

    #[test]
    fn node_clock_in_the_future_is_not_trusted() {
        let mut n = normaliser();
        let mut t = telemetry(
            "r01-n1",
            0,
            &[Reading::ok(ch("x"), Quantity::Voltage, 48.0, Unit::Volt)],
        );
        t.timestamp_ms = Some(9_999_999_999_999);
        t.uptime_ms = 1_000;
        let mut out = Output::default();
        n.telemetry(&t, 2_000_000_000_000, &mut out);
        assert!(
            String::from_utf8(out.lines)
                .unwrap()
                .ends_with(" 2000000000000\n")
        );
    }

    #[test]
    fn implausible_and_unit_mismatch_are_rejected_alone() {
        let mut n = normaliser();
        let t = telemetry(
            "r01-n1",
            0,
            &[
                Reading::ok(ch("rh"), Quantity::RelativeHumidity, 140.0, Unit::PercentRh),
                Reading::ok(ch("p"), Quantity::Power, 5.0, Unit::Volt),
                Reading::ok(ch("v"), Quantity::Voltage, 53.5, Unit::Volt),
            ],
        );
        let (_, lines, out) = run(&mut n, &t);
        assert_eq!(
            out.rejected,
            vec![
                (
                    ch("rh"),
                    Quantity::RelativeHumidity,
                    ReadingRejection::Implausible
                ),
                (ch("p"), Quantity::Power, ReadingRejection::UnitMismatch)
            ]
        );
        assert_eq!(lines.lines().count(), 1);
        assert!(lines.contains("value=53.5"));
    }

    #[test]
    fn sensor_fault_is_written_as_a_fault_not_a_value() {
        let mut n = normaliser();
        let t = telemetry(
            "r01-n1",
            0,
            &[Reading::failed(
                ch("t_in"),
                Quantity::Temperature,
                Unit::Celsius,
                ReadingStatus::Fault,
            )],
        );
        let (_, lines, out) = run(&mut n, &t);
        assert_eq!(
            lines,
            "sensor_fault,channel=t_in,node=r01-n1,quantity=temperature,site=fra1,status=fault count=1i 1795000000000\n"
        );
        assert_eq!(out.samples[0].value, None);
    }
}
