//! The alert engine without any I/O: observations and the time go in, [`Effect`]s (MQTT publishes,
//! fan commands) and [`DeliveryJob`]s (webhook notifications) come out, and [`Saved`] is what must
//! survive a restart. The runner (`runner.rs`) does the I/O; tests drive this with a made-up clock.
//!
//! `Engine` only connects its parts, in the order a reading flows through them: rule evaluation
//! (`evaluate.rs`, on the rules of `index.rs`) gives levels, the incident lifecycle
//! (`incidents.rs`) turns them into transitions, the notification schedule (`delivery.rs`) says who
//! is told when, and cooling (`cooling.rs`) follows the firing racks. The API's requests go to
//! `api.rs`.

use rackwatch_protocols::{Ack, NodeId, SiteId, Status};
use serde::{Deserialize, Serialize};

use super::api::{self, ApiError, Silences};
use super::cooling::{Cooling, FanCommands};
use super::delivery::{DeliveryJob, DeliveryResult, Notifier, Receiver, Timing};
use super::effect::Effect;
use super::evaluate::{Evaluation, Evaluator};
use super::incidents::Incidents;
use super::index::RuleIndex;
use super::rule::{Level, Rule, Scope};
use super::silence::{Matchers, Silence};
use super::state::Incident;
use crate::model::{Position, Sample};

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub incidents: Vec<Incident>,
    #[serde(default)]
    pub silences: Vec<Silence>,
    #[serde(default)]
    pub next_silence_id: u64,
    #[serde(default)]
    pub boosted_racks: Vec<Scope>,
    #[serde(default)]
    pub fan_commands: FanCommands,
}

/// Everything the engine is built from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub site: SiteId,
    pub rules: Vec<Rule>,
    pub receivers: Vec<Receiver>,
    /// People's repeats and escalation.
    pub timing: Timing,
    /// Every node of the inventory with its position (silent-node rules watch them from the start).
    pub nodes: Vec<(NodeId, Position)>,
    pub cooling: Option<Cooling>,
}

/// The alert engine.
#[derive(Debug)]
pub struct Engine {
    rules: RuleIndex,
    evaluator: Evaluator,
    incidents: Incidents,
    notifier: Notifier,
    silences: Silences,
    cooling: Option<Cooling>,
    /// The names of the rules that drive cooling.
    cooling_rules: Vec<String>,
    effects: Vec<Effect>,
    evaluations: Vec<Evaluation>,
    changed: bool,
}

impl Engine {
    /// An engine with the state of a previous run.
    pub fn new(settings: Settings, saved: Saved, now_ms: i64) -> Engine {
        let rules = RuleIndex::new(settings.rules);
        let mut cooling = settings.cooling;
        let cooling_rules = cooling.as_ref().map(|c| c.rule_names(&rules)).unwrap_or_default();
        if let Some(cooling) = &mut cooling {
            cooling.restore(saved.boosted_racks, saved.fan_commands);
        }
        let notifier = Notifier::new(settings.receivers, settings.timing);
        let mut incidents = Incidents::restore(saved.incidents, &rules);
        notifier.restore(&mut incidents);
        Engine {
            evaluator: Evaluator::new(&rules, &settings.nodes, now_ms),
            rules,
            incidents,
            notifier,
            silences: Silences {
                list: saved.silences,
                last_id: saved.next_silence_id,
            },
            cooling,
            cooling_rules,
            effects: Vec::new(),
            evaluations: Vec::new(),
            changed: false,
        }
    }

    /// Publishes every incident's state again (retained only: no events) and sends again every
    /// fan command that was awaiting an answer. For a start, and after the broker connection is back.
    pub fn resync(&mut self, now_ms: i64) {
        for incident in self.incidents.iter() {
            self.effects.push(Effect::Publish {
                alert: Box::new(Incidents::alert(&self.rules, incident)),
                event: false,
            });
        }
        if let Some(cooling) = &mut self.cooling {
            let commands = cooling.commands.resend_all(now_ms);
            self.effects.extend(commands.into_iter().map(Effect::command));
        }
    }

    /// Takes the effects produced so far.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Whether anything the state file holds changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    pub fn saved(&self) -> Saved {
        Saved {
            incidents: self.incidents.iter().cloned().collect(),
            silences: self.silences.list.clone(),
            next_silence_id: self.silences.last_id,
            boosted_racks: self
                .cooling
                .as_ref()
                .map(|c| c.boosted.iter().cloned().collect())
                .unwrap_or_default(),
            fan_commands: self
                .cooling
                .as_ref()
                .map(|c| c.commands.clone())
                .unwrap_or_default(),
        }
    }

    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.iter()
    }

    pub fn silences(&self) -> &[Silence] {
        &self.silences.list
    }

    pub fn is_silenced(&self, incident: &Incident, now_ms: i64) -> bool {
        self.silences.covers(incident, now_ms)
    }

    pub fn receivers(&self) -> &[Receiver] {
        self.notifier.receivers()
    }

    /// Takes the readings of one ingest commit.
    pub fn observe_samples(&mut self, samples: &[Sample], now_ms: i64) {
        self.evaluator
            .samples(&self.rules, samples, now_ms, &mut self.evaluations);
        self.apply_evaluations(now_ms);
    }

    /// Takes a node's birth or last will.
    pub fn observe_status(&mut self, status: &Status, now_ms: i64) {
        let Some(level) = self
            .evaluator
            .status(&self.rules, status, now_ms, &mut self.evaluations)
        else {
            return;
        };
        self.apply_evaluations(now_ms);
        if self.evaluator.is_away(&status.node) {
            for key in self.incidents.hold_back(&self.rules, &status.node) {
                self.changed = true;
                self.settle(&key, None, now_ms);
            }
        } else if level == Level::Clear {
            self.evaluator.back(&status.node, now_ms);
        }
    }

    /// Takes a node's answer to a command.
    pub fn observe_ack(&mut self, ack: &Ack) {
        if let Some(outcome) = self.cooling.as_mut().and_then(|c| c.commands.ack(ack)) {
            self.effects.push(Effect::Fan(outcome));
            self.changed = true;
        }
    }

    /// Lets time pass: `for` and `clear_for` end, series go stale, nodes silent, commands time out.
    pub fn tick(&mut self, now_ms: i64) {
        self.evaluator.elapsed(&self.rules, now_ms, &mut self.evaluations);
        self.apply_evaluations(now_ms);
        for key in self.incidents.keys() {
            if let Some(last_value) = self.incidents.step(&self.rules, &key, now_ms) {
                self.changed = true;
                self.settle(&key, last_value, now_ms);
            }
        }
        if let Some(cooling) = &mut self.cooling {
            let (resend, outcomes) = cooling.expire(now_ms);
            self.changed |= !resend.is_empty() || !outcomes.is_empty();
            self.effects.extend(resend.into_iter().map(Effect::command));
            self.effects.extend(outcomes.into_iter().map(Effect::Fan));
        }
    }

    fn apply_evaluations(&mut self, now_ms: i64) {
        let evaluations = std::mem::take(&mut self.evaluations);
        for (watch, level, value) in &evaluations {
            let Some(rule) = self.rules.get(watch.rule) else {
                continue;
            };
            if super::inhibit::held_back_while_offline(rule.kind)
                && watch
                    .scope
                    .node
                    .as_ref()
                    .is_some_and(|n| self.evaluator.is_away(n))
            {
                continue;
            }
            if self.incidents.apply(rule, watch, *level, *value, now_ms) {
                self.changed = true;
                self.settle(&watch.key, *value, now_ms);
            }
        }
        self.evaluations = evaluations;
        self.evaluations.clear();
    }

    /// Publishes the incident's transition, if its members add up to one, and acts on it.
    fn settle(&mut self, key: &str, last_value: Option<f64>, now_ms: i64) {
        let Some(changed) = self
            .incidents
            .settle(&self.rules, key, last_value, now_ms, &mut self.effects)
        else {
            return;
        };
        for key in changed {
            self.forget_if_finished(&key, now_ms);
        }
        if let Some(cooling) = &mut self.cooling {
            let names: Vec<&str> = self.cooling_rules.iter().map(String::as_str).collect();
            let commands = cooling.reconcile(&names, self.incidents.iter(), now_ms);
            self.effects.extend(commands.into_iter().map(Effect::command));
        }
    }

    /// Held back from people: silenced, or folded into its row's incident.
    fn held(&self, incident: &Incident, now_ms: i64) -> bool {
        self.silences.covers(incident, now_ms) || self.incidents.folded(&self.rules, incident)
    }

    /// Drops a resolved incident once no receiver is owed anything about it.
    fn forget_if_finished(&mut self, key: &str, now_ms: i64) {
        let Some(incident) = self.incidents.get(key) else {
            return;
        };
        if incident.state == rackwatch_protocols::AlertState::Resolved
            && !self.notifier.owes(incident, self.held(incident, now_ms), now_ms)
        {
            self.incidents.remove(key);
        }
    }

    /// The notifications due now: at most one per receiver at a time, so each receiver gets an
    /// incident's transitions in order.
    pub fn due_deliveries(&mut self, now_ms: i64) -> Vec<DeliveryJob> {
        let (incidents, rules, silences) = (&self.incidents, &self.rules, &self.silences);
        let held = |i: &Incident| silences.covers(i, now_ms) || incidents.folded(rules, i);
        self.notifier.due(incidents, rules, held, now_ms)
    }

    /// Records how a delivery went.
    pub fn delivered(&mut self, job: &DeliveryJob, result: DeliveryResult, now_ms: i64) {
        if self.notifier.delivered(job, result, &mut self.incidents, now_ms) {
            self.forget_if_finished(&job.key, now_ms);
            self.changed = true;
        }
    }

    /// `POST /api/alerts/{key}/ack`: stops repeats and escalation of this firing.
    pub fn acknowledge(
        &mut self,
        key: &str,
        by: String,
        comment: String,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        api::acknowledge(&mut self.incidents, key, by, comment, now_ms)?;
        self.changed = true;
        Ok(())
    }

    /// `POST /api/silences`.
    pub fn silence(
        &mut self,
        matchers: Matchers,
        starts_ms: i64,
        ends_ms: i64,
        created_by: String,
        comment: String,
    ) -> Result<u64, ApiError> {
        let id = self
            .silences
            .add(matchers, starts_ms, ends_ms, created_by, comment)?;
        self.changed = true;
        Ok(id)
    }

    /// `DELETE /api/silences/{id}`.
    pub fn unsilence(&mut self, id: u64) -> Result<(), ApiError> {
        self.silences.remove(id)?;
        self.changed = true;
        Ok(())
    }

    /// Forgets silences that ended.
    pub fn expire_silences(&mut self, now_ms: i64) {
        self.changed |= self.silences.expire(now_ms);
    }
}
