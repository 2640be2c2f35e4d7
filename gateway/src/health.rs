//! Readiness: is the site watched and is what arrives kept? One line per component, set by the
//! stage that knows (the MQTT source, ingest for the spool) or judged from what the sink already
//! exposes (the database), served at `/health/ready` (503 naming the failing component) and as
//! `rackwatch_component_up{component}`. `/health/live` only says the process answers.

use std::sync::{Arc, Mutex, PoisonError};

use crate::events::{ComponentLabel, Metrics};

/// The parts of the gateway readiness is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Connected and subscribed to the broker.
    Mqtt,
    /// The spool takes new messages: its folder is there and writable, and neither it nor the disk
    /// is full.
    Spool,
    /// Database writes succeed, or nothing waits for them.
    Database,
    /// The alert engine is running.
    Alerts,
}

impl Component {
    const ALL: [Component; 4] = [
        Component::Mqtt,
        Component::Spool,
        Component::Database,
        Component::Alerts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Mqtt => "mqtt",
            Component::Spool => "spool",
            Component::Database => "database",
            Component::Alerts => "alerts",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone)]
struct State {
    /// Not configured: not part of readiness.
    present: bool,
    up: bool,
    detail: String,
}

/// The state of every component. Cheap to update: stages call [`Health::set`] on every change.
#[derive(Debug)]
pub struct Health {
    states: Mutex<[State; 4]>,
    metrics: Arc<Metrics>,
}

/// What `/health/ready` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// One line per component: `spool: down: disk full ...`.
    pub text: String,
}

impl Health {
    /// Starts with the `present` components up, except those that must first prove it (MQTT).
    pub fn new(metrics: Arc<Metrics>, present: &[Component]) -> Arc<Self> {
        let states = Component::ALL.map(|c| State {
            present: present.contains(&c),
            up: c != Component::Mqtt,
            detail: match c {
                Component::Mqtt => "connecting".to_owned(),
                _ => "ok".to_owned(),
            },
        });
        let health = Arc::new(Health {
            states: Mutex::new(states),
            metrics,
        });
        for c in present {
            health.publish(*c, *c != Component::Mqtt);
        }
        health
    }

    /// Records that `component` is up or down, and why.
    pub fn set(&self, component: Component, status: Result<(), String>) {
        let up = status.is_ok();
        let detail = status.err().unwrap_or_else(|| "ok".to_owned());
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = states.get_mut(component.index()) {
            if state.up != up {
                if up {
                    tracing::info!(component = component.as_str(), "ready again");
                } else {
                    tracing::error!(component = component.as_str(), "not ready: {detail}");
                }
            }
            state.up = up;
            state.detail = detail;
        }
        drop(states);
        self.publish(component, up);
    }

    fn publish(&self, component: Component, up: bool) {
        self.metrics
            .component_up
            .get_or_create(&ComponentLabel {
                component: component.as_str(),
            })
            .set(i64::from(up));
    }

    pub fn is_up(&self, component: Component) -> bool {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        states.get(component.index()).is_none_or(|s| s.up)
    }

    pub fn readiness(&self) -> Readiness {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ready = true;
        let mut text = String::new();
        for (component, state) in Component::ALL.iter().zip(states.iter()) {
            if !state.present {
                continue;
            }
            ready &= state.up;
            let verdict = if state.up { "up" } else { "down" };
            text.push_str(&format!("{}: {verdict}: {}\n", component.as_str(), state.detail));
        }
        Readiness { ready, text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_component_makes_the_gateway_unready_and_names_itself() {
        let metrics = Arc::new(Metrics::new());
        let health = Health::new(Arc::clone(&metrics), &[Component::Mqtt, Component::Spool]);
        assert!(!health.readiness().ready, "MQTT must connect first");
        health.set(Component::Mqtt, Ok(()));
        assert_eq!(
            health.readiness(),
            Readiness {
                ready: true,
                text: "mqtt: up: ok\nspool: up: ok\n".into()
            }
        );
        health.set(Component::Spool, Err("disk full".into()));
        let readiness = health.readiness();
        assert!(!readiness.ready);
        assert!(readiness.text.contains("spool: down: disk full"));
        assert!(
            metrics
                .render()
                .contains("rackwatch_component_up{component=\"spool\"} 0")
        );
    }
}
