//! What each webhook receiver should be told about an incident, and when: the first notification,
//! people's repeats, escalation, and the re-sends an Alertmanager needs.
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

use rackwatch_protocols::AlertState;

use super::engine::Receiver;
use super::state::Incident;

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
