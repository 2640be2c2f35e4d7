//! Where ingest's observations go: the alert engine and the dashboard at once, the history gathered.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::events::Metrics;
use crate::model::Observation;

/// One consumer's queue of observations.
pub type ObservationSender = mpsc::Sender<Observation>;

/// How often a consumer that does not need every chunk at once (the history) is handed what
/// gathered: one wake-up of its task per this, not one per commit.
const GATHER: Duration = Duration::from_millis(250);

/// Where observations go: each consumer (the alert engine, the dashboard, the history) has its
/// own bounded queue, so a slow one never delays another, and none ever blocks ingest. The alert
/// engine and the dashboard see each chunk as it is processed; the history gets its observations
/// gathered, every [`GATHER`].
#[derive(Debug, Clone)]
pub struct Observers {
    urgent: Vec<ObservationSender>,
    gathered: Vec<ObservationSender>,
    pending: Vec<Observation>,
    since: std::time::Instant,
    metrics: Arc<Metrics>,
}

impl Observers {
    pub fn new(
        urgent: Vec<ObservationSender>,
        gathered: Vec<ObservationSender>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Observers {
            urgent,
            gathered,
            pending: Vec::new(),
            since: std::time::Instant::now(),
            metrics,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.gathered.is_empty()
    }

    /// Offers one observation to every consumer. A full queue misses it (counted): the database
    /// still has everything, and the consumer catches up with the next.
    pub fn send(&mut self, observation: Observation) {
        for consumer in &self.urgent {
            offer(consumer, observation.clone(), &self.metrics);
        }
        if !self.gathered.is_empty() {
            self.pending.push(observation);
            if self.since.elapsed() >= GATHER {
                self.flush();
            }
        }
    }

    /// Hands the gathered observations over now.
    pub fn flush(&mut self) {
        self.since = std::time::Instant::now();
        for observation in self.pending.drain(..) {
            for consumer in &self.gathered {
                offer(consumer, observation.clone(), &self.metrics);
            }
        }
    }
}

fn offer(consumer: &ObservationSender, observation: Observation, metrics: &Metrics) {
    if consumer.try_send(observation).is_err() {
        metrics.observations_dropped.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_consumers_get_each_observation_at_once_gathered_ones_on_flush() {
        let (alert_tx, mut alert_rx) = mpsc::channel(8);
        let (history_tx, mut history_rx) = mpsc::channel(8);
        let metrics = Arc::new(Metrics::new());
        let mut observers = Observers::new(vec![alert_tx], vec![history_tx], Arc::clone(&metrics));
        for _ in 0..3 {
            observers.send(Observation::Samples(Arc::from(Vec::new())));
        }
        assert_eq!(alert_rx.len(), 3);
        assert!(
            history_rx.is_empty(),
            "gathered until GATHER has passed or a flush"
        );
        observers.flush();
        assert_eq!(history_rx.len(), 3);
        assert!(history_rx.try_recv().is_ok() && alert_rx.try_recv().is_ok());
        assert_eq!(metrics.observations_dropped.get(), 0);
    }
}
