//! The engine's state machines, driven with a made-up clock: every rule kind, hysteresis, `for`,
//! resolve, restarts in the middle of a pending and of a firing alert, grouping, notifications,
//! acknowledgements, silences, escalation and automated cooling.

use std::sync::Arc;

use rackwatch_protocols::{
    Ack, AckResult, AlertState, ChannelName, CommandKind, FanTarget, Label, NodeId, NodeState, Quantity,
    ReadingStatus, Severity, SiteId, Status,
};

use super::cooling::{Cooling, FanCommands, FanOutcome};
use super::delivery::{DeliveryJob, DeliveryResult, Receiver};
use super::effect::Effect;
use super::engine::{Engine, Saved, Settings};
use super::rule::{Rule, Scope};
use super::silence::Matchers;
use crate::config::{AlertsConfig, GroupBy, PowerScope, RuleConfig, RuleKind, SideConfig};
use crate::derive::Derive;
use crate::model::{Placement, Position, Sample, Series, SeriesScope};

const S: i64 = 1000;
const MIN: i64 = 60 * S;

fn site() -> SiteId {
    SiteId::new("fra1").unwrap()
}

fn position(rack: &str) -> Position {
    Position {
        room: Some(Label::new("hall-a").unwrap()),
        row: Some(Label::new("r01").unwrap()),
        rack: Some(Label::new(rack).unwrap()),
    }
}

fn series(node: &str, channel: &str, quantity: Quantity, rack: &str) -> Arc<Series> {
    Arc::new(Series {
        id: crate::model::SeriesId::next(),
        scope: SeriesScope::Probe,
        node: NodeId::new(node).unwrap(),
        channel: ChannelName::new(channel).unwrap(),
        quantity,
        placement: Placement::from_channel(channel),
        position: position(rack).into(),
        line_tags: Arc::from([]),
    })
}

fn sample(series: &Arc<Series>, value: f64, timestamp_ms: i64) -> Sample {
    Sample {
        series: Arc::clone(series),
        value: Some(value),
        status: ReadingStatus::Ok,
        timestamp_ms,
        received_ms: timestamp_ms,
    }
}

fn inlet_high(above: f64, clear: f64, hold_ms: i64) -> RuleConfig {
    let mut rule = RuleConfig::new("inlet_high", RuleKind::Threshold).unwrap();
    rule.quantity = Some(Quantity::Temperature);
    rule.side = Some(SideConfig::Inlet);
    rule.above = Some(above);
    rule.clear = Some(clear);
    rule.for_ = std::time::Duration::from_millis(hold_ms as u64);
    rule.severity = Severity::Critical;
    rule
}

fn receiver(name: &str, level: u8) -> Receiver {
    Receiver {
        name: name.into(),
        level,
        min_severity: Severity::Warning,
        max_backoff_ms: 10 * S,
        resend_interval_ms: 0,
    }
}

fn settings(rules: &[RuleConfig]) -> Settings {
    Settings {
        site: site(),
        rules: rules.iter().map(|r| Rule::compile(r, &site())).collect(),
        receivers: vec![receiver("pager", 1), receiver("manager", 2)],
        timing: super::delivery::Timing {
            repeat_interval_ms: 60 * MIN,
            escalate_after_ms: 30 * MIN,
        },
        nodes: vec![
            (NodeId::new("n1").unwrap(), position("a01")),
            (NodeId::new("n2").unwrap(), position("a02")),
        ],
        cooling: None,
    }
}

/// An engine and what it published, with a clock the test moves.
struct Harness {
    engine: Engine,
    /// The stage before the engine: the rack and row measures of what the test reads.
    derive: Derive,
    settings: Settings,
    now: i64,
    /// Every (key, state) published as an event, in order.
    events: Vec<(String, AlertState)>,
    commands: Vec<(String, u32, CommandKind)>,
    fans: Vec<FanOutcome>,
    /// Keys whose retained state was withdrawn.
    withdrawn: Vec<String>,
}

impl Harness {
    fn new(rules: &[RuleConfig]) -> Self {
        Self::with(settings(rules))
    }

    fn with(settings: Settings) -> Self {
        Harness {
            engine: Engine::new(settings.clone(), Saved::default(), 0),
            derive: Derive::new(site()),
            settings,
            now: 0,
            events: Vec::new(),
            commands: Vec::new(),
            fans: Vec::new(),
            withdrawn: Vec::new(),
        }
    }

    fn collect(&mut self) {
        for effect in self.engine.take_effects() {
            match effect {
                Effect::Publish { alert, event: true } => {
                    self.events.push((alert.key.to_string(), alert.state))
                }
                Effect::Publish { .. } => {}
                Effect::Command { node, command } => {
                    self.commands.push((node.to_string(), command.id, command.kind))
                }
                Effect::Fan(outcome) => self.fans.push(outcome),
                Effect::Withdraw { key } => self.withdrawn.push(key),
            }
        }
    }

    fn at(&mut self, now: i64) -> &mut Self {
        self.now = now;
        self.engine.tick(now);
        self.collect();
        self
    }

    fn read(&mut self, samples: &[Sample]) -> &mut Self {
        let mut samples = samples.to_vec();
        self.derive.derive(&mut samples, &mut Vec::new());
        self.engine.observe_samples(&samples, self.now);
        self.collect();
        self
    }

    fn temperature(&mut self, series: &Arc<Series>, value: f64) -> &mut Self {
        let now = self.now;
        self.read(&[sample(series, value, now)])
    }

    fn take_events(&mut self) -> Vec<(String, AlertState)> {
        std::mem::take(&mut self.events)
    }

    /// Simulates a restart: the saved state goes through JSON into a new engine.
    fn restart(&mut self) {
        let json = serde_json::to_string(&self.engine.saved()).unwrap();
        let saved: Saved = serde_json::from_str(&json).unwrap();
        self.engine = Engine::new(self.settings.clone(), saved, self.now);
        self.engine.resync(self.now);
        self.collect();
    }

    /// Delivers everything due with `result`; returns (receiver, key, state, repeat) per job.
    fn deliver(&mut self, result: DeliveryResult) -> Vec<(String, String, AlertState, bool)> {
        let jobs: Vec<DeliveryJob> = self.engine.due_deliveries(self.now);
        let names: Vec<String> = self.engine.receivers().iter().map(|r| r.name.clone()).collect();
        jobs.iter()
            .map(|job| {
                self.engine.delivered(job, result, self.now);
                (
                    names[job.receiver].clone(),
                    job.key.clone(),
                    job.state,
                    job.repeat,
                )
            })
            .collect()
    }

    /// Delivers until nothing is due (each receiver gets one notification per round).
    fn deliver_all(&mut self) -> Vec<(String, String, AlertState, bool)> {
        let mut all = Vec::new();
        loop {
            let round = self.deliver(DeliveryResult::Delivered);
            if round.is_empty() {
                return all;
            }
            all.extend(round);
        }
    }
}

fn ev(key: &str, state: AlertState) -> (String, AlertState) {
    (key.to_owned(), state)
}

const KEY: &str = "inlet_high.hall-a.r01.a01";

#[test]
fn threshold_waits_for_its_duration_then_fires_once() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::new(&[inlet_high(27.0, 26.5, 5 * MIN)]);
    h.at(0).temperature(&inlet, 28.0);
    assert_eq!(h.take_events(), [ev(KEY, AlertState::Pending)]);
    h.at(4 * MIN).temperature(&inlet, 28.5);
    assert!(h.take_events().is_empty());
    // Time alone ends the `for` (the tick), without waiting for the next reading.
    h.at(5 * MIN);
    assert_eq!(h.take_events(), [ev(KEY, AlertState::Firing)]);
    h.at(6 * MIN).temperature(&inlet, 29.0);
    h.at(7 * MIN).temperature(&inlet, 28.0);
    assert!(h.take_events().is_empty(), "firing is published once");
}

#[test]
fn hysteresis_keeps_a_wobbling_value_one_alert() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::new(&[inlet_high(27.0, 26.0, 0)]);
    h.at(0).temperature(&inlet, 27.2);
    assert_eq!(h.take_events(), [ev(KEY, AlertState::Firing)]);
    for (i, value) in [26.9, 27.1, 26.5, 27.3, 26.1].into_iter().enumerate() {
        h.at((i as i64 + 1) * MIN).temperature(&inlet, value);
    }
    assert!(h.take_events().is_empty(), "between 26 and 27 nothing changes");
    h.at(10 * MIN).temperature(&inlet, 25.9);
    assert_eq!(h.take_events(), [ev(KEY, AlertState::Resolved)]);
}

#[test]
fn pending_that_clears_before_its_duration_never_fires() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::new(&[inlet_high(27.0, 26.5, 5 * MIN)]);
    h.at(0).temperature(&inlet, 28.0);
    h.at(2 * MIN).temperature(&inlet, 26.8);
    h.at(3 * MIN).temperature(&inlet, 26.0);
    h.at(20 * MIN);
    assert_eq!(
        h.take_events(),
        [ev(KEY, AlertState::Pending)],
        "dropped, not published as resolved"
    );
    assert_eq!(h.withdrawn, [KEY], "its retained pending state is removed");
    assert!(
        h.deliver_all().is_empty(),
        "a pending alert is not sent to webhooks"
    );
}

#[test]
fn clear_for_delays_the_resolve_and_a_relapse_keeps_it_firing() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut rule = inlet_high(27.0, 26.5, 0);
    rule.clear_for = std::time::Duration::from_secs(300);
    let mut h = Harness::new(&[rule]);
    h.at(0).temperature(&inlet, 28.0);
    h.take_events();
    h.at(MIN).temperature(&inlet, 26.0);
    h.at(3 * MIN).temperature(&inlet, 27.5);
    h.at(4 * MIN).temperature(&inlet, 26.0);
    h.at(8 * MIN);
    assert!(h.take_events().is_empty());
    h.at(9 * MIN);
    assert_eq!(h.take_events(), [ev(KEY, AlertState::Resolved)]);
}

#[test]
fn restart_in_the_middle_of_a_pending_alert_keeps_its_start() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::new(&[inlet_high(27.0, 26.5, 5 * MIN)]);
    h.at(0).temperature(&inlet, 28.0);
    assert_eq!(h.take_events(), [ev(KEY, AlertState::Pending)]);
    h.at(3 * MIN);
    h.restart();
    assert!(h.take_events().is_empty(), "a restart publishes no event");
    // The series is new to the restarted engine; the pending member is not.
    h.at(4 * MIN).temperature(&inlet, 28.0);
    h.at(5 * MIN);
    assert_eq!(h.take_events(), [ev(KEY, AlertState::Firing)]);
}

#[test]
fn restart_in_the_middle_of_a_firing_alert_neither_repeats_nor_loses_it() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::new(&[inlet_high(27.0, 26.5, 0)]);
    h.at(0).temperature(&inlet, 28.0);
    assert_eq!(h.deliver_all().len(), 1, "pager told of the firing");
    h.take_events();
    h.at(MIN);
    h.restart();
    h.at(2 * MIN).temperature(&inlet, 28.0);
    assert!(h.take_events().is_empty());
    assert!(
        h.deliver_all().is_empty(),
        "no second firing notification after the restart"
    );
    h.at(3 * MIN).temperature(&inlet, 26.0);
    assert_eq!(h.take_events(), [ev(KEY, AlertState::Resolved)]);
    assert_eq!(
        h.deliver_all(),
        [("pager".into(), KEY.into(), AlertState::Resolved, false)]
    );
    assert_eq!(h.engine.incidents().count(), 0, "a told resolve is forgotten");
}

#[test]
fn one_failed_cooling_unit_is_one_incident_for_the_row() {
    let mut rule = inlet_high(27.0, 26.5, 0);
    rule.group_by = GroupBy::Row;
    let mut h = Harness::new(&[rule]);
    let racks: Vec<Arc<Series>> = (1..=40)
        .map(|i| {
            series(
                &format!("n{i}"),
                "inlet_top",
                Quantity::Temperature,
                &format!("a{i:02}"),
            )
        })
        .collect();
    let hot: Vec<Sample> = racks.iter().map(|s| sample(s, 30.0, 0)).collect();
    h.at(0).read(&hot);
    let row_key = "inlet_high.hall-a.r01";
    assert_eq!(h.take_events(), [ev(row_key, AlertState::Firing)]);
    assert_eq!(h.engine.incidents().next().unwrap().members.len(), 40);
    assert_eq!(h.deliver_all().len(), 1, "one notification for forty racks");
    // Racks recover one by one: the incident resolves with the last.
    for (i, s) in racks.iter().enumerate() {
        h.at(MIN + i as i64 * S).temperature(s, 24.0);
    }
    assert_eq!(h.take_events(), [ev(row_key, AlertState::Resolved)]);
}

#[test]
fn rate_of_change_fires_on_a_fast_climb_within_the_window() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut rule = RuleConfig::new("rate_15m", RuleKind::Rate).unwrap();
    rule.quantity = Some(Quantity::Temperature);
    rule.max_change = Some(5.0);
    rule.window = Some(std::time::Duration::from_secs(900));
    let mut h = Harness::new(&[rule]);
    let key = "rate_15m.hall-a.r01.a01";
    // 4 °C over 20 minutes is slow enough.
    for minute in 0..=20 {
        h.at(minute * MIN).temperature(&inlet, 20.0 + minute as f64 * 0.2);
    }
    assert!(h.take_events().is_empty());
    // Then 6 °C in 10 minutes.
    for minute in 1..=10 {
        h.at((20 + minute) * MIN)
            .temperature(&inlet, 24.0 + minute as f64 * 0.6);
    }
    assert_eq!(h.take_events(), [ev(key, AlertState::Firing)]);
    // Steady for 15 minutes: the swing leaves the window.
    for minute in 1..=16 {
        h.at((30 + minute) * MIN).temperature(&inlet, 30.0);
    }
    assert_eq!(h.take_events(), [ev(key, AlertState::Resolved)]);
}

fn inlet_forecast(within_min: u64) -> RuleConfig {
    let mut rule = RuleConfig::new("inlet_forecast", RuleKind::Forecast).unwrap();
    rule.above = Some(32.0);
    rule.within = Some(std::time::Duration::from_secs(within_min * 60));
    rule
}

#[test]
fn forecast_warns_of_a_rising_inlet_before_the_threshold_fires() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    // Outlets run hot by design: a forecast rule without a side does not watch them.
    let outlet = series("n1", "outlet", Quantity::Temperature, "a01");
    let mut h = Harness::new(&[inlet_high(32.0, 31.0, 0), inlet_forecast(15)]);
    let (forecast, threshold) = ("inlet_forecast.hall-a.r01.a01", "inlet_high.hall-a.r01.a01");
    // Ten minutes flat at 22 °C, outlet at 34 °C: no trend, no warning.
    for step in 0..=60 {
        h.at(step * 10 * S)
            .temperature(&inlet, 22.0)
            .temperature(&outlet, 34.0);
    }
    assert!(h.take_events().is_empty());
    // Cooling fails: the inlet climbs 0.5 °C a minute, a reading every 10 s.
    let start = 10 * MIN;
    let mut fired = Vec::new();
    for step in 1..=300 {
        let now = start + step * 10 * S;
        let value = 22.0 + 0.5 * (now - start) as f64 / MIN as f64;
        h.at(now).temperature(&inlet, value);
        for (key, state) in h.take_events() {
            fired.push((key, state, now, value));
        }
    }
    let when = |key: &str| {
        fired
            .iter()
            .find(|(k, state, _, _)| k == key && *state == AlertState::Firing)
            .map(|(_, _, now, value)| (*now, *value))
    };
    let (warned_at, warned_value) = when(forecast).expect("no forecast warning");
    let (hot_at, hot_value) = when(threshold).expect("no threshold alert");
    // 32 °C is 15 minutes away once the climb passes 24.5 °C (5 min into it); the 10-minute window
    // still holds flat readings then, so the median slope lags by a minute or two (measured: the
    // warning at 25.4 °C, 13 min 20 s before the threshold rule, which waits for 32 °C).
    assert!(warned_value < 26.0 && hot_value > 32.0, "{fired:?}");
    assert!(hot_at - warned_at >= 12 * MIN, "{fired:?}");
    // Cooling back: the inlet drops to 23 °C and stays; once the trend no longer rises toward
    // 32 °C, the warning resolves.
    let end = start + 300 * 10 * S;
    for step in 1..=90 {
        h.at(end + step * 10 * S).temperature(&inlet, 23.0);
    }
    assert!(
        h.take_events().contains(&ev(forecast, AlertState::Resolved)),
        "the warning stays after the trend turned"
    );
}

#[test]
fn stale_sensor_fires_when_a_series_goes_quiet_and_resolves_on_its_next_reading() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut rule = RuleConfig::new("stale", RuleKind::Stale).unwrap();
    rule.after = Some(std::time::Duration::from_secs(120));
    let mut h = Harness::new(&[rule]);
    let key = "stale.hall-a.r01.a01";
    h.at(0).temperature(&inlet, 22.0);
    h.at(2 * MIN);
    assert!(h.take_events().is_empty());
    h.at(2 * MIN + S);
    assert_eq!(h.take_events(), [ev(key, AlertState::Firing)]);
    h.at(3 * MIN).temperature(&inlet, 22.0);
    assert_eq!(h.take_events(), [ev(key, AlertState::Resolved)]);
}

#[test]
fn silent_node_covers_inventory_nodes_that_never_reported() {
    let mut rule = RuleConfig::new("silent", RuleKind::SilentNode).unwrap();
    rule.after = Some(std::time::Duration::from_secs(300));
    rule.group_by = GroupBy::None;
    let mut h = Harness::new(&[rule]);
    let n1 = series("n1", "inlet_top", Quantity::Temperature, "a01");
    h.at(4 * MIN).temperature(&n1, 22.0);
    h.at(5 * MIN + S);
    // n2 never said anything; n1 did a minute ago.
    assert_eq!(
        h.take_events(),
        [ev("silent.hall-a.r01.a02.n2", AlertState::Firing)]
    );
}

#[test]
fn node_offline_follows_the_last_will_and_ignores_an_older_boots_will() {
    let mut rule = RuleConfig::new("offline", RuleKind::NodeOffline).unwrap();
    rule.for_ = std::time::Duration::from_secs(60);
    let mut h = Harness::new(&[rule]);
    let key = "offline.hall-a.r01.a01";
    let status = |state, boot| Status {
        state,
        ..Status::last_will(NodeId::new("n1").unwrap(), boot)
    };
    h.at(0);
    h.engine.observe_status(&status(NodeState::Online, 2), 0);
    h.engine.observe_status(&status(NodeState::Offline, 1), 0);
    h.at(10 * MIN);
    assert!(
        h.take_events().is_empty(),
        "the will of boot 1 says nothing about boot 2"
    );
    h.engine.observe_status(&status(NodeState::Offline, 2), 10 * MIN);
    h.at(10 * MIN + 30 * S);
    assert_eq!(h.take_events(), [ev(key, AlertState::Pending)]);
    h.at(11 * MIN);
    assert_eq!(h.take_events(), [ev(key, AlertState::Firing)]);
    h.engine.observe_status(&status(NodeState::Online, 3), 12 * MIN);
    h.collect();
    assert_eq!(h.take_events(), [ev(key, AlertState::Resolved)]);
}

#[test]
fn dew_point_close_to_the_air_temperature_is_a_condensation_risk() {
    let mut rule = RuleConfig::new("condensation", RuleKind::DewPoint).unwrap();
    rule.margin = Some(2.0);
    rule.clear = Some(3.0);
    let mut h = Harness::new(&[rule]);
    let t = series("n1", "ambient", Quantity::Temperature, "a01");
    let dp = series("n1", "ambient", Quantity::DewPoint, "a01");
    let key = "condensation.hall-a.r01.a01";
    h.at(0).read(&[sample(&t, 22.0, 0), sample(&dp, 12.0, 0)]);
    assert!(h.take_events().is_empty());
    h.at(MIN).read(&[sample(&t, 18.0, MIN), sample(&dp, 16.5, MIN)]);
    assert_eq!(h.take_events(), [ev(key, AlertState::Firing)]);
    h.at(2 * MIN)
        .read(&[sample(&t, 19.0, 2 * MIN), sample(&dp, 16.5, 2 * MIN)]);
    assert!(h.take_events().is_empty(), "2.5 °C is inside the hysteresis");
    h.at(3 * MIN)
        .read(&[sample(&t, 20.0, 3 * MIN), sample(&dp, 16.5, 3 * MIN)]);
    assert_eq!(h.take_events(), [ev(key, AlertState::Resolved)]);
}

#[test]
fn rack_delta_t_uses_the_means_of_both_sides() {
    let mut rule = RuleConfig::new("delta_t", RuleKind::DeltaT).unwrap();
    rule.above = Some(15.0);
    rule.clear = Some(12.0);
    let mut h = Harness::new(&[rule]);
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let outlet_a = series("n1", "outlet_top", Quantity::Temperature, "a01");
    let outlet_b = series("n1", "outlet_bottom", Quantity::Temperature, "a01");
    let key = "delta_t.hall-a.r01.a01";
    h.at(0).read(&[
        sample(&inlet, 22.0, 0),
        sample(&outlet_a, 36.0, 0),
        sample(&outlet_b, 40.0, 0),
    ]);
    assert_eq!(h.take_events(), [ev(key, AlertState::Firing)]);
    assert_eq!(h.engine.incidents().next().unwrap().value, Some(16.0));
    h.at(MIN).read(&[sample(&outlet_b, 34.0, MIN)]);
    assert!(h.take_events().is_empty(), "ΔT 13 is inside the hysteresis");
    h.at(2 * MIN).read(&[sample(&outlet_a, 33.0, 2 * MIN)]);
    assert_eq!(h.take_events(), [ev(key, AlertState::Resolved)]);
}

#[test]
fn a_faulted_probe_leaves_the_rack_delta_t_at_once() {
    let mut rule = RuleConfig::new("delta_t", RuleKind::DeltaT).unwrap();
    rule.above = Some(15.0);
    rule.clear = Some(12.0);
    let mut h = Harness::new(&[rule]);
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let outlet_a = series("n1", "outlet_top", Quantity::Temperature, "a01");
    let outlet_b = series("n1", "outlet_bottom", Quantity::Temperature, "a01");
    let key = "delta_t.hall-a.r01.a01";
    h.at(0).read(&[
        sample(&inlet, 22.0, 0),
        sample(&outlet_a, 33.0, 0),
        sample(&outlet_b, 43.0, 0),
    ]);
    assert_eq!(h.take_events(), [ev(key, AlertState::Firing)]);
    assert_eq!(h.engine.incidents().next().unwrap().value, Some(16.0));
    // The hot outlet probe fails a minute later: ΔT is 33 - 22 = 11 from the probes left, not 16
    // from its last good value for the next five minutes.
    let fault = Sample {
        value: None,
        status: ReadingStatus::Fault,
        ..sample(&outlet_b, 0.0, MIN)
    };
    h.at(MIN).read(&[fault]);
    assert_eq!(h.take_events(), [ev(key, AlertState::Resolved)]);
}

#[test]
fn rack_and_row_power_against_their_budgets() {
    let mut rack = RuleConfig::new("rack_power", RuleKind::Power).unwrap();
    rack.scope = Some(PowerScope::Rack);
    rack.budget_kw = Some(10.0);
    rack.above_percent = Some(80.0);
    rack.clear_percent = Some(70.0);
    let mut row = RuleConfig::new("row_power", RuleKind::Power).unwrap();
    row.scope = Some(PowerScope::Row);
    row.budget_kw = Some(15.0);
    let mut h = Harness::new(&[rack, row]);
    let a01 = series("n1", "power", Quantity::Power, "a01");
    let a02 = series("n2", "power", Quantity::Power, "a02");
    h.at(0)
        .read(&[sample(&a01, 7_000.0, 0), sample(&a02, 7_000.0, 0)]);
    assert!(
        h.take_events().is_empty(),
        "7 kW is under 80 % of 10 kW; 14 kW under 15 kW"
    );
    h.at(MIN).read(&[sample(&a01, 8_500.0, MIN)]);
    assert_eq!(
        h.take_events(),
        [
            ev("rack_power.hall-a.r01.a01", AlertState::Firing),
            ev("row_power.hall-a.r01", AlertState::Firing),
        ]
    );
    h.at(2 * MIN).read(&[sample(&a01, 7_500.0, 2 * MIN)]);
    assert_eq!(
        h.take_events(),
        [ev("row_power.hall-a.r01", AlertState::Resolved)],
        "75 % is inside the rack's hysteresis; the row (no hysteresis) is back under 15 kW"
    );
    h.at(3 * MIN).read(&[sample(&a01, 6_500.0, 3 * MIN)]);
    assert_eq!(
        h.take_events(),
        [ev("rack_power.hall-a.r01.a01", AlertState::Resolved)]
    );
}

#[test]
fn sensor_fault_fires_on_a_fault_status_and_resolves_on_a_good_reading() {
    let mut rule = RuleConfig::new("fault", RuleKind::SensorFault).unwrap();
    rule.group_by = GroupBy::None;
    let mut h = Harness::new(&[rule]);
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let key = "fault.hall-a.r01.a01.n1.inlet_top";
    let fault = Sample {
        value: None,
        status: ReadingStatus::Fault,
        ..sample(&inlet, 0.0, 0)
    };
    h.at(0).read(&[fault]);
    assert_eq!(h.take_events(), [ev(key, AlertState::Firing)]);
    h.at(MIN).temperature(&inlet, 22.0);
    assert_eq!(h.take_events(), [ev(key, AlertState::Resolved)]);
}

#[test]
fn selectors_keep_a_rule_to_its_racks_and_placements() {
    let mut rule = inlet_high(27.0, 26.5, 0);
    rule.rack = vec![Label::new("a02").unwrap()];
    let mut other_site = inlet_high(27.0, 26.5, 0);
    other_site.name = Label::new("elsewhere").unwrap();
    other_site.site = vec!["ams2".into()];
    let mut h = Harness::new(&[rule, other_site]);
    h.at(0)
        .temperature(&series("n1", "inlet_top", Quantity::Temperature, "a01"), 30.0)
        .temperature(&series("n2", "outlet_top", Quantity::Temperature, "a02"), 30.0);
    assert!(h.take_events().is_empty());
    h.temperature(&series("n2", "inlet", Quantity::Temperature, "a02"), 30.0);
    assert_eq!(h.take_events().len(), 1, "a02 inlet fires (no `for`: no pending)");
}

#[test]
fn unacknowledged_firing_repeats_and_escalates_acknowledged_stops_but_resolve_is_sent() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::new(&[inlet_high(27.0, 26.5, 0)]);
    h.at(0).temperature(&inlet, 28.0);
    assert_eq!(
        h.deliver_all(),
        [("pager".into(), KEY.into(), AlertState::Firing, false)]
    );
    h.at(29 * MIN);
    assert!(h.deliver_all().is_empty());
    h.at(30 * MIN);
    assert_eq!(
        h.deliver_all(),
        [("manager".into(), KEY.into(), AlertState::Firing, false)],
        "level 2 after 30 minutes without an acknowledgement"
    );
    h.at(60 * MIN);
    assert_eq!(
        h.deliver_all(),
        [("pager".into(), KEY.into(), AlertState::Firing, true)]
    );
    h.engine
        .acknowledge(KEY, "ops".into(), "on it".into(), 61 * MIN)
        .unwrap();
    h.at(200 * MIN);
    assert!(h.deliver_all().is_empty(), "acknowledged: no more repeats");
    h.temperature(&inlet, 25.0);
    let mut resolved = h.deliver_all();
    resolved.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        resolved,
        [
            ("manager".into(), KEY.into(), AlertState::Resolved, false),
            ("pager".into(), KEY.into(), AlertState::Resolved, false)
        ]
    );
}

#[test]
fn acknowledged_before_the_escalation_delay_never_reaches_level_two() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::new(&[inlet_high(27.0, 26.5, 0)]);
    h.at(0).temperature(&inlet, 28.0);
    h.deliver_all();
    h.engine
        .acknowledge(KEY, "ops".into(), String::new(), 5 * MIN)
        .unwrap();
    h.at(45 * MIN);
    assert!(h.deliver_all().is_empty());
    h.temperature(&inlet, 20.0);
    assert_eq!(
        h.deliver_all(),
        [("pager".into(), KEY.into(), AlertState::Resolved, false)]
    );
}

#[test]
fn failed_delivery_is_retried_after_a_back_off_and_sent_once() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::new(&[inlet_high(27.0, 26.5, 0)]);
    h.at(0).temperature(&inlet, 28.0);
    assert_eq!(h.deliver(DeliveryResult::Failed).len(), 1);
    assert!(
        h.deliver(DeliveryResult::Delivered).is_empty(),
        "waiting out the back-off"
    );
    h.at(S);
    assert_eq!(h.deliver(DeliveryResult::Delivered).len(), 1);
    h.at(2 * S);
    assert!(h.deliver_all().is_empty());
}

#[test]
fn silence_holds_back_notifications_but_not_the_mqtt_state() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::new(&[inlet_high(27.0, 26.5, 0)]);
    let matchers = Matchers {
        rack: Some("a01".into()),
        ..Matchers::default()
    };
    h.engine
        .silence(matchers, 0, 10 * MIN, "ops".into(), "maintenance".into())
        .unwrap();
    h.at(0).temperature(&inlet, 28.0);
    assert_eq!(h.take_events().len(), 1, "the firing is still published");
    assert!(h.deliver_all().is_empty());
    h.at(10 * MIN);
    h.engine.expire_silences(10 * MIN);
    assert_eq!(
        h.deliver_all().len(),
        1,
        "still firing when the silence ends: now it is sent"
    );
}

fn cooling_settings() -> Settings {
    let mut settings = settings(&[inlet_high(27.0, 26.5, 0)]);
    let mut nodes_by_rack = std::collections::HashMap::new();
    nodes_by_rack.insert(
        Scope::of_position(&position("a01")),
        vec![NodeId::new("n1").unwrap()],
    );
    settings.cooling = Some(Cooling {
        rules: vec![0],
        boost_duty: 100.0,
        normal_duty: 40.0,
        fans: vec![0, 1],
        ack_timeout_ms: 5 * S,
        retries: 1,
        nodes_by_rack,
        boosted: Default::default(),
        commands: FanCommands::default(),
    });
    settings
}

fn duty(kind: &CommandKind) -> f32 {
    match kind {
        CommandKind::SetFan {
            target: FanTarget::DutyPercent(d),
            ..
        } => *d,
        other => panic!("not a duty: {other:?}"),
    }
}

#[test]
fn hot_rack_gets_its_fans_boosted_until_the_alert_resolves() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::with(cooling_settings());
    h.at(0).temperature(&inlet, 30.0);
    let boosts = std::mem::take(&mut h.commands);
    assert_eq!(boosts.len(), 2, "both fans of n1");
    assert!(
        boosts
            .iter()
            .all(|(node, _, kind)| node == "n1" && duty(kind) == 100.0)
    );
    for (_, id, _) in &boosts {
        h.engine
            .observe_ack(&Ack::new(*id, NodeId::new("n1").unwrap(), AckResult::Ok));
    }
    h.collect();
    assert_eq!(h.fans.len(), 2);
    h.at(10 * S);
    assert!(h.commands.is_empty(), "acknowledged commands are not sent again");
    h.temperature(&inlet, 25.0);
    let normal = std::mem::take(&mut h.commands);
    assert_eq!(normal.len(), 2);
    assert!(normal.iter().all(|(_, _, kind)| duty(kind) == 40.0));
}

#[test]
fn unacknowledged_fan_command_is_retried_then_given_up() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut settings = cooling_settings();
    if let Some(c) = settings.cooling.as_mut() {
        c.fans = vec![0];
    }
    let mut h = Harness::with(settings);
    h.at(0).temperature(&inlet, 30.0);
    let first = std::mem::take(&mut h.commands);
    h.at(5 * S);
    let retry = std::mem::take(&mut h.commands);
    assert_eq!(retry.len(), 1);
    assert_ne!(retry[0].1, first[0].1, "a retry has a new id");
    h.at(10 * S);
    assert!(h.commands.is_empty());
    assert!(matches!(&h.fans[..], [FanOutcome::Unanswered(_)]));
}

#[test]
fn fans_boosted_before_a_restart_return_to_normal_after_it() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::with(cooling_settings());
    h.at(0).temperature(&inlet, 30.0);
    for (_, id, _) in std::mem::take(&mut h.commands) {
        h.engine
            .observe_ack(&Ack::new(id, NodeId::new("n1").unwrap(), AckResult::Ok));
    }
    h.restart();
    assert!(h.commands.is_empty(), "nothing was awaiting an answer");
    h.at(MIN).temperature(&inlet, 24.0);
    assert_eq!(h.commands.len(), 2);
    assert!(h.commands.iter().all(|(_, _, kind)| duty(kind) == 40.0));
}

#[test]
fn ashrae_preset_alone_alerts_on_a_hot_inlet() {
    let config: AlertsConfig = toml::from_str("presets = [\"ashrae-a1\"]").unwrap();
    let rules = config.all_rules();
    let mut h = Harness::new(&rules);
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    h.at(0).temperature(&inlet, 33.0);
    h.at(MIN).temperature(&inlet, 33.0);
    let events = h.take_events();
    assert!(
        events.contains(&ev("ashrae_a1_inlet_high.hall-a.r01", AlertState::Firing)),
        "{events:?}"
    );
    assert!(
        events.contains(&ev("ashrae_inlet_high.hall-a.r01", AlertState::Pending)),
        "{events:?}"
    );
}

#[test]
fn firing_that_resolved_while_the_receiver_was_down_is_still_told_then_resolved() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::new(&[inlet_high(27.0, 26.5, 0)]);
    h.at(0).temperature(&inlet, 28.0);
    assert_eq!(h.deliver(DeliveryResult::Failed).len(), 1);
    h.at(S).temperature(&inlet, 25.0);
    h.at(10 * S);
    assert_eq!(
        h.deliver_all(),
        [
            ("pager".into(), KEY.into(), AlertState::Firing, false),
            ("pager".into(), KEY.into(), AlertState::Resolved, false)
        ],
        "level 2 was never due: it hears nothing"
    );
    assert_eq!(h.engine.incidents().count(), 0);
}

/// Settings with one Alertmanager receiver (re-sends every minute) beside the pager.
fn with_alertmanager(rules: &[RuleConfig]) -> Settings {
    let mut settings = settings(rules);
    settings.receivers = vec![
        receiver("pager", 1),
        Receiver {
            resend_interval_ms: MIN,
            ..receiver("am", 1)
        },
    ];
    settings
}

#[test]
fn alertmanager_gets_resends_with_ends_at_ahead_even_when_acknowledged_or_silenced() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::with(with_alertmanager(&[inlet_high(27.0, 26.5, 0)]));
    h.at(0).temperature(&inlet, 28.0);
    let first = h.engine.due_deliveries(0);
    let am = first.iter().find(|j| j.receiver == 1).unwrap();
    assert_eq!(
        am.ends_at_ms,
        Some(4 * MIN),
        "endsAt four re-send intervals ahead"
    );
    assert_eq!(first.iter().find(|j| j.receiver == 0).unwrap().ends_at_ms, None);
    for job in &first {
        h.engine.delivered(job, DeliveryResult::Delivered, 0);
    }
    h.engine
        .acknowledge(KEY, "ops".into(), String::new(), 10 * S)
        .unwrap();
    h.engine
        .silence(
            Matchers {
                rack: Some("a01".into()),
                ..Matchers::default()
            },
            10 * S,
            300 * MIN,
            "ops".into(),
            String::new(),
        )
        .unwrap();
    h.at(59 * S);
    assert!(h.deliver_all().is_empty(), "not yet a minute");
    for minute in 1..=3 {
        h.at(minute * MIN);
        assert_eq!(
            h.deliver_all(),
            [("am".into(), KEY.into(), AlertState::Firing, true)],
            "minute {minute}: acknowledged and silenced, still re-sent to Alertmanager, not to the pager"
        );
    }
    h.at(3 * MIN + 10 * S).temperature(&inlet, 22.0);
    let resolves = h.engine.due_deliveries(h.now);
    assert_eq!(resolves.len(), 2);
    assert!(
        resolves
            .iter()
            .all(|j| j.state == AlertState::Resolved && j.ends_at_ms == Some(3 * MIN + 10 * S)),
        "the resolve carries endsAt = when it resolved: {resolves:?}"
    );
}

#[test]
fn after_a_restart_firing_alerts_are_resent_to_alertmanager_at_once() {
    let inlet = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let mut h = Harness::with(with_alertmanager(&[inlet_high(27.0, 26.5, 0)]));
    h.at(0).temperature(&inlet, 28.0);
    assert_eq!(h.deliver_all().len(), 2);
    h.at(10 * S);
    h.restart();
    assert_eq!(
        h.deliver_all(),
        [("am".into(), KEY.into(), AlertState::Firing, true)],
        "the gateway cannot know how long it was down: Alertmanager hears again at once"
    );
    h.at(30 * S);
    assert!(h.deliver_all().is_empty());
}

#[test]
fn an_offline_node_holds_back_its_stale_silent_and_fault_alerts() {
    let mut offline = RuleConfig::new("offline", RuleKind::NodeOffline).unwrap();
    offline.group_by = GroupBy::None;
    let mut silent = RuleConfig::new("silent", RuleKind::SilentNode).unwrap();
    silent.after = Some(std::time::Duration::from_secs(60));
    silent.group_by = GroupBy::None;
    let mut stale = RuleConfig::new("stale", RuleKind::Stale).unwrap();
    stale.after = Some(std::time::Duration::from_secs(90));
    stale.group_by = GroupBy::None;
    let mut h = Harness::new(&[offline, silent, stale]);
    let n1 = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let n2 = series("n2", "inlet_top", Quantity::Temperature, "a02");
    let status = |state, node: &str| Status {
        state,
        ..Status::last_will(NodeId::new(node).unwrap(), 1)
    };
    h.at(0).temperature(&n1, 22.0).temperature(&n2, 22.0);
    h.engine.observe_status(&status(NodeState::Online, "n1"), 0);
    // n1 goes quiet; its silence fires before its will arrives.
    h.at(61 * S);
    let mut events = h.take_events();
    events.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        events,
        [
            ev("silent.hall-a.r01.a01.n1", AlertState::Firing),
            ev("silent.hall-a.r01.a02.n2", AlertState::Firing)
        ]
    );
    h.engine.observe_status(&status(NodeState::Offline, "n1"), 62 * S);
    h.collect();
    assert_eq!(
        h.take_events(),
        [
            ev("offline.hall-a.r01.a01.n1", AlertState::Firing),
            ev("silent.hall-a.r01.a01.n1", AlertState::Resolved)
        ],
        "one alert for n1: it is offline"
    );
    let held = h.engine.saved();
    let resolve = held
        .incidents
        .iter()
        .find(|i| i.key == "silent.hall-a.r01.a01.n1")
        .expect("its resolve is still owed to the pager");
    assert!(resolve.summary.contains("node is offline"), "{}", resolve.summary);
    h.at(10 * MIN);
    let events = h.take_events();
    assert!(
        events.iter().all(|(key, _)| !key.contains(".n1")),
        "nothing more about n1 while it is offline: {events:?}"
    );
    assert!(events.contains(&ev("stale.hall-a.r01.a02.n2.inlet_top", AlertState::Firing)));
    // Back: the offline alert resolves, and its silence counts from its return.
    h.engine
        .observe_status(&status(NodeState::Online, "n1"), 10 * MIN);
    h.collect();
    assert_eq!(
        h.take_events(),
        [ev("offline.hall-a.r01.a01.n1", AlertState::Resolved)]
    );
    h.at(10 * MIN + 30 * S).temperature(&n1, 22.0);
    h.at(10 * MIN + 50 * S);
    assert!(h.take_events().is_empty());
}

#[test]
fn racks_of_a_row_firing_together_fold_into_one_row_incident() {
    let a01 = series("n1", "inlet_top", Quantity::Temperature, "a01");
    let a02 = series("n2", "inlet_top", Quantity::Temperature, "a02");
    let row = "inlet_high.hall-a.r01";
    let mut h = Harness::new(&[inlet_high(27.0, 26.5, 0)]);
    h.at(0).temperature(&a01, 28.0);
    assert_eq!(
        h.deliver_all(),
        [("pager".into(), KEY.into(), AlertState::Firing, false)],
        "one hot rack is a rack's alert"
    );
    h.at(MIN).temperature(&a02, 29.0);
    assert_eq!(
        h.take_events(),
        [
            ev(KEY, AlertState::Firing),
            ev("inlet_high.hall-a.r01.a02", AlertState::Firing),
            ev(row, AlertState::Firing)
        ]
    );
    assert_eq!(
        h.deliver_all(),
        [("pager".into(), row.into(), AlertState::Firing, false)],
        "the second rack is told as the row's incident, not on its own"
    );
    let jobs = {
        h.at(2 * MIN).temperature(&a02, 29.5);
        h.engine.incidents().find(|i| i.key == row).cloned().unwrap()
    };
    let rule = Rule::compile(&inlet_high(27.0, 26.5, 0), &site());
    let description = super::words::description(&rule, &jobs);
    // The racks' values as of the row incident's last change (its members follow the racks' steps).
    assert!(
        description.ends_with("Racks: a01 (28.0 °C), a02 (29.0 °C)."),
        "{description}"
    );
    // a02 cools: the row incident resolves; a02 was never told, so nothing about it is sent.
    h.at(3 * MIN).temperature(&a02, 22.0);
    assert_eq!(
        h.take_events(),
        [
            ev("inlet_high.hall-a.r01.a02", AlertState::Resolved),
            ev(row, AlertState::Resolved)
        ]
    );
    assert_eq!(
        h.deliver_all(),
        [("pager".into(), row.into(), AlertState::Resolved, false)]
    );
    h.at(4 * MIN).temperature(&a01, 22.0);
    assert_eq!(
        h.deliver_all(),
        [("pager".into(), KEY.into(), AlertState::Resolved, false)]
    );
    assert_eq!(h.engine.incidents().count(), 0, "nothing left open");
}
