//! Notification scheduling: what each webhook receiver should be told about an incident, and when
//! (the first notification, people's repeats, escalation, the re-sends an Alertmanager needs), one
//! delivery in flight per receiver, and the back-off after a failed one.
//!
//! Two kinds of receivers, two meanings of "again":
//! - **People** (`format = "json"`, a pager bridge): a firing incident nobody acknowledged is sent again
//!   every `repeat_interval`; an acknowledgement or a silence stops that.
//! - **An Alertmanager** (`format = "alertmanager"`): it ends an alert by itself once its `endsAt`
//!   passes (`resolve_timeout` after the last post when none is given), and clients are expected to
//!   re-send active alerts every 30 s to 3 min (Prometheus' alerting docs, "Sending alerts"). So every
//!   firing incident it was told of is sent again every `resend_interval`, acknowledged or silenced or
//!   not, with `endsAt` [`ENDS_AT_RESENDS`] intervals ahead; and once after every gateway start, since
//!   the gateway cannot know how long it was down. People's repeats are its own business (its
//!   `repeat_interval`, its silences).

use rackwatch_protocols::{Alert, AlertState, Severity};

use super::incidents::Incidents;
use super::index::RuleIndex;
use super::state::{Delivered, Incident};

/// A webhook receiver as the engine sees it.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    /// 1: at once; 2: after `escalate_after` without an acknowledgement.
    pub level: u8,
    pub min_severity: Severity,
    pub max_backoff_ms: i64,
    /// An Alertmanager: firing incidents are sent again this often (0: a receiver for people).
    pub resend_interval_ms: i64,
}

/// One notification to send to one receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryJob {
    pub receiver: usize,
    pub key: String,
    pub state: AlertState,
    pub episode: u64,
    /// A reminder of a firing incident already sent.
    pub repeat: bool,
    pub alert: Alert,
    pub acknowledged: bool,
    pub firing_since_ms: i64,
    pub level: u8,
    /// When the alert ends, for receivers that want to know (Alertmanager's `endsAt`).
    pub ends_at_ms: Option<i64>,
    /// The longer text for a person (a row incident names its racks).
    pub description: String,
}

/// How a delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// The receiver refused it for good (HTTP 4xx other than 408 and 429): not sent again.
    Refused,
    /// Try again later.
    Failed,
}

/// The notification schedule: per receiver, at most one delivery in flight (so it gets an
/// incident's transitions in order) and, after a failure, when to try again.
#[derive(Debug, Clone)]
pub struct Notifier {
    receivers: Vec<Receiver>,
    timing: Timing,
    in_flight: Vec<bool>,
    /// (not before, failures in a row)
    retry: Vec<(i64, u32)>,
}

impl Notifier {
    pub fn new(receivers: Vec<Receiver>, timing: Timing) -> Notifier {
        Notifier {
            in_flight: vec![false; receivers.len()],
            retry: vec![(i64::MIN, 0); receivers.len()],
            receivers,
            timing,
        }
    }

    pub fn receivers(&self) -> &[Receiver] {
        &self.receivers
    }

    /// After a start: forgets what receivers no longer configured were told, and has every
    /// Alertmanager sent its firing incidents again.
    pub fn restore(&self, incidents: &mut Incidents) {
        for incident in incidents.iter_mut() {
            incident
                .delivered
                .retain(|name, _| self.receivers.iter().any(|r| r.name == *name));
        }
        resend_after_start(incidents.iter_mut(), &self.receivers);
    }

    /// Whether any receiver is still owed a notification about `incident`.
    pub fn owes(&self, incident: &Incident, held: bool, now_ms: i64) -> bool {
        self.receivers
            .iter()
            .any(|r| desired(incident, r, held, self.timing, now_ms).is_some())
    }

    /// The notifications due now, at most one per receiver; `held` says which incidents are held
    /// back from people (silenced, or folded into their row's).
    pub fn due(
        &mut self,
        incidents: &Incidents,
        rules: &RuleIndex,
        held: impl Fn(&Incident) -> bool,
        now_ms: i64,
    ) -> Vec<DeliveryJob> {
        let mut jobs = Vec::new();
        for (index, receiver) in self.receivers.iter().enumerate() {
            let busy = self.in_flight.get(index).copied().unwrap_or(true);
            let retry_at = self.retry.get(index).map_or(i64::MAX, |r| r.0);
            if busy || now_ms < retry_at {
                continue;
            }
            let due = incidents.iter().find_map(|incident| {
                let (state, episode, repeat) =
                    desired(incident, receiver, held(incident), self.timing, now_ms)?;
                let mut alert = Incidents::alert(rules, incident);
                alert.state = state;
                Some(DeliveryJob {
                    receiver: index,
                    key: incident.key.clone(),
                    state,
                    episode,
                    repeat,
                    alert,
                    acknowledged: incident.acknowledged.is_some(),
                    firing_since_ms: incident.firing_since_ms.unwrap_or(incident.since_ms),
                    level: receiver.level,
                    ends_at_ms: ends_at_ms(state, incident.since_ms, receiver, now_ms),
                    description: rules.named(&incident.rule).map_or_else(
                        || incident.summary.clone(),
                        |rule| super::words::description(rule, incident),
                    ),
                })
            });
            if let Some(job) = due {
                if let Some(flag) = self.in_flight.get_mut(index) {
                    *flag = true;
                }
                jobs.push(job);
            }
        }
        jobs
    }

    /// Records how a delivery went: true when it is settled (delivered or refused for good), and
    /// the incident then remembers what its receiver was told.
    pub fn delivered(
        &mut self,
        job: &DeliveryJob,
        result: DeliveryResult,
        incidents: &mut Incidents,
        now_ms: i64,
    ) -> bool {
        if let Some(flag) = self.in_flight.get_mut(job.receiver) {
            *flag = false;
        }
        let Some(receiver) = self.receivers.get(job.receiver) else {
            return false;
        };
        let Some(retry) = self.retry.get_mut(job.receiver) else {
            return false;
        };
        if result == DeliveryResult::Failed {
            retry.1 = retry.1.saturating_add(1);
            retry.0 = now_ms.saturating_add(backoff_ms(retry.1, receiver.max_backoff_ms));
            return false;
        }
        *retry = (i64::MIN, 0);
        if let Some(incident) = incidents.get_mut(&job.key) {
            incident.delivered.insert(
                receiver.name.clone(),
                Delivered {
                    state: job.state,
                    episode: job.episode,
                    at_ms: now_ms,
                },
            );
        }
        true
    }
}

/// How many re-send intervals ahead a firing alert's `endsAt` lies: three re-sends may be lost
/// before Alertmanager ends the alert on its own.
pub const ENDS_AT_RESENDS: i64 = 4;

/// Intervals that decide when a receiver is told.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub repeat_interval_ms: i64,
    pub escalate_after_ms: i64,
}

/// What `receiver` should be told about `incident` now, if anything: the state, the episode, and
/// whether it is a repeat (or re-send) of a firing already told.
pub fn desired(
    incident: &Incident,
    receiver: &Receiver,
    silenced: bool,
    timing: Timing,
    now_ms: i64,
) -> Option<(AlertState, u64, bool)> {
    if incident.severity < receiver.min_severity {
        return None;
    }
    let told = incident.delivered.get(&receiver.name);
    let told_firing = told.filter(|d| d.state == AlertState::Firing);
    if incident.state != AlertState::Firing {
        // A resolve goes to whoever was told of the firing, silenced or acknowledged or not.
        if let Some(d) = told_firing {
            return Some((AlertState::Resolved, d.episode, false));
        }
        // A firing that resolved before a level-1 receiver could be told (it was down) is still
        // told, then its resolve: an incident nobody heard of is a lost notification.
        let owed = receiver.level < 2
            && incident.episode > 0
            && !silenced
            && told.is_none_or(|d| d.episode < incident.episode);
        return owed.then_some((AlertState::Firing, incident.episode, false));
    }
    match told_firing {
        // An Alertmanager told of this firing: keep it open, whatever people did about it.
        Some(d) if d.episode == incident.episode && receiver.resend_interval_ms > 0 => {
            let due = now_ms.saturating_sub(d.at_ms) >= receiver.resend_interval_ms;
            due.then_some((AlertState::Firing, incident.episode, true))
        }
        Some(d) if d.episode == incident.episode => {
            let interval = timing.repeat_interval_ms;
            let repeat = interval > 0
                && incident.acknowledged.is_none()
                && !silenced
                && now_ms.saturating_sub(d.at_ms) >= interval;
            repeat.then_some((AlertState::Firing, incident.episode, true))
        }
        // The firing of an earlier episode was never followed by its resolve.
        Some(d) => Some((AlertState::Resolved, d.episode, false)),
        None => {
            let firing_for = now_ms.saturating_sub(incident.firing_since_ms.unwrap_or(now_ms));
            let escalated = receiver.level < 2
                || (incident.acknowledged.is_none() && firing_for >= timing.escalate_after_ms);
            (!silenced && escalated).then_some((AlertState::Firing, incident.episode, false))
        }
    }
}

/// When a notification tells Alertmanager the alert ends (`endsAt`): for a resolve, when it
/// resolved; for a firing sent to a receiver that gets re-sends, [`ENDS_AT_RESENDS`] intervals from
/// now; otherwise never (Alertmanager then applies its `resolve_timeout`).
pub fn ends_at_ms(state: AlertState, resolved_ms: i64, receiver: &Receiver, now_ms: i64) -> Option<i64> {
    match state {
        AlertState::Resolved => Some(resolved_ms),
        _ if receiver.resend_interval_ms > 0 => {
            Some(now_ms.saturating_add(receiver.resend_interval_ms.saturating_mul(ENDS_AT_RESENDS)))
        }
        _ => None,
    }
}

/// After a start: every firing incident an Alertmanager was told of is due for a re-send at once.
pub fn resend_after_start<'a>(incidents: impl Iterator<Item = &'a mut Incident>, receivers: &[Receiver]) {
    for incident in incidents {
        for receiver in receivers.iter().filter(|r| r.resend_interval_ms > 0) {
            if let Some(told) = incident.delivered.get_mut(&receiver.name) {
                told.at_ms = i64::MIN;
            }
        }
    }
}

/// How long to wait before trying a receiver again after `failures` failed deliveries in a row:
/// doubling from one second, at most `max_backoff_ms`.
pub fn backoff_ms(failures: u32, max_backoff_ms: i64) -> i64 {
    500i64
        .saturating_mul(1 << failures.min(16))
        .min(max_backoff_ms.max(1))
}
