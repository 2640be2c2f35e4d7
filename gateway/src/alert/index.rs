//! The compiled rules, indexed: by name (an incident names its rule) and by what they watch (a
//! probe's series, a rack's or a row's derived measure, a node), so that no step of the engine
//! scans the list of rules to find one.

use std::collections::HashMap;

use super::rule::Rule;
use crate::config::{PowerScope, RuleKind};
use crate::model::Measure;

/// What a rule is evaluated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// Every reading of a probe's series.
    Series,
    /// A rack's derived measure.
    Rack(Measure),
    /// A row's derived measure.
    Row(Measure),
    /// A node falling silent.
    Silent,
    /// A node's last will.
    Offline,
    /// Nothing: a power rule without a scope (validation refuses it).
    Nothing,
}

impl Watched {
    fn of(rule: &Rule) -> Watched {
        match (rule.kind, rule.power_scope) {
            (RuleKind::DeltaT, _) => Watched::Rack(Measure::DeltaT),
            (RuleKind::Power, Some(PowerScope::Rack)) => Watched::Rack(Measure::Power),
            (RuleKind::Power, Some(PowerScope::Row)) => Watched::Row(Measure::Power),
            (RuleKind::Power, None) => Watched::Nothing,
            (RuleKind::SilentNode, _) => Watched::Silent,
            (RuleKind::NodeOffline, _) => Watched::Offline,
            (
                RuleKind::Threshold
                | RuleKind::Rate
                | RuleKind::Stale
                | RuleKind::SensorFault
                | RuleKind::DewPoint
                | RuleKind::Forecast,
                _,
            ) => Watched::Series,
        }
    }
}

/// The rules, in configuration order (a rule's index is its identity), with their indexes.
#[derive(Debug, Clone, Default)]
pub struct RuleIndex {
    rules: Vec<Rule>,
    by_name: HashMap<String, usize>,
    /// Per [`Watched`]: the indexes of its rules, in configuration order.
    by_watched: Vec<(Watched, Vec<usize>)>,
}

impl RuleIndex {
    pub fn new(rules: Vec<Rule>) -> RuleIndex {
        let mut index = RuleIndex {
            by_name: HashMap::with_capacity(rules.len()),
            by_watched: Vec::new(),
            rules: Vec::new(),
        };
        for (i, rule) in rules.iter().enumerate() {
            // The first of two rules with one name wins, as the linear search it replaces did.
            index.by_name.entry(rule.name.to_string()).or_insert(i);
            let watched = Watched::of(rule);
            match index.by_watched.iter_mut().find(|(w, _)| *w == watched) {
                Some((_, list)) => list.push(i),
                None => index.by_watched.push((watched, vec![i])),
            }
        }
        index.rules = rules;
        index
    }

    pub fn get(&self, rule: usize) -> Option<&Rule> {
        self.rules.get(rule)
    }

    /// The rule an incident names.
    pub fn named(&self, name: &str) -> Option<&Rule> {
        self.rules.get(*self.by_name.get(name)?)
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The rules evaluated on `watched`, with their indexes.
    pub fn watching(&self, watched: Watched) -> impl Iterator<Item = (usize, &Rule)> {
        self.by_watched
            .iter()
            .filter(move |(w, _)| *w == watched)
            .flat_map(|(_, list)| list.iter())
            .filter_map(|&i| Some((i, self.rules.get(i)?)))
    }
}

#[cfg(test)]
mod tests {
    use rackwatch_protocols::SiteId;

    use super::*;
    use crate::config::RuleConfig;

    fn rule(name: &str, kind: RuleKind, scope: Option<PowerScope>) -> Rule {
        let mut config = RuleConfig::new(name, kind).unwrap();
        config.scope = scope;
        config.budget_kw = Some(10.0);
        config.above = Some(1.0);
        Rule::compile(&config, &SiteId::new("fra1").unwrap())
    }

    #[test]
    fn rules_are_found_by_name_and_by_what_they_watch() {
        let index = RuleIndex::new(vec![
            rule("hot", RuleKind::Threshold, None),
            rule("rack_kw", RuleKind::Power, Some(PowerScope::Rack)),
            rule("row_kw", RuleKind::Power, Some(PowerScope::Row)),
            rule("dt", RuleKind::DeltaT, None),
        ]);
        assert_eq!(index.position("row_kw"), Some(2));
        assert_eq!(index.named("dt").map(|r| r.kind), Some(RuleKind::DeltaT));
        assert!(index.named("cold").is_none());
        let of = |w| index.watching(w).map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(of(Watched::Series), [0]);
        assert_eq!(of(Watched::Rack(Measure::Power)), [1]);
        assert_eq!(of(Watched::Row(Measure::Power)), [2]);
        assert_eq!(of(Watched::Rack(Measure::DeltaT)), [3]);
        assert_eq!(of(Watched::Silent), Vec::<usize>::new());
    }
}
