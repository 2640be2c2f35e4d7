//! The lookout: while the spool refuses messages (full, its disk full, its folder gone), ingest
//! stops acknowledging and stops reading, so the broker keeps every message for the database. But
//! the site must stay watched: without readings the alert engine would raise `silent_node` for every
//! node and miss a rack running hot. So for as long as the spool refuses, a second MQTT session
//! (clean, QoS 0: nothing to acknowledge, no in-flight window to fill) subscribes to the site's
//! telemetry and status and hands what it reads to the alert engine and the dashboard only. Its own
//! normaliser keeps the ingest's sequence state untouched, so every message the broker kept is
//! still spooled once ingest resumes (the engine then sees some readings twice, which changes
//! nothing).

use std::sync::Arc;
use std::time::Duration;

use rackwatch_protocols::SiteId;
use rackwatch_protocols::topic::{self, NodeTopic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::cluster::Partition;
use crate::decode::{Decoded, decode};
use crate::derive::Derive;
use crate::health::{Component, Health};
use crate::ingest::Observers;
use crate::model::{Observation, Route, now_ms};
use crate::normalise::{Normaliser, Output, Verdict};
use crate::shutdown::Shutdown;

/// How often the lookout asks whether the spool refuses.
const POLL: Duration = Duration::from_millis(250);

/// Everything the lookout needs.
#[derive(Debug)]
pub struct Lookout {
    /// The ingest session's options; the lookout's id and session are derived from them.
    pub options: MqttOptions,
    pub site: SiteId,
    pub normaliser: Normaliser,
    /// Its own rack and row measures, from what the lookout reads.
    pub derive: Derive,
    pub partition: Option<Partition>,
    pub observers: Observers,
    pub health: Arc<Health>,
    pub shutdown: Shutdown,
}

/// The lookout's client id: `look-` and the end of the ingest's (where a partition's `-pN` is),
/// within the 23 characters MQTT 3.1.1 §3.1.3.1 guarantees.
fn lookout_id(ingest_id: &str) -> String {
    let chars: Vec<char> = ingest_id.chars().collect();
    let tail: String = chars.iter().skip(chars.len().saturating_sub(18)).collect();
    format!("look-{tail}")
}

impl Lookout {
    /// Watches over QoS 0 whenever the spool refuses, until shutdown.
    pub async fn run(mut self) {
        let mut options = self.options.clone();
        options.set_client_id(lookout_id(&options.client_id()));
        options.set_clean_session(true);
        options.set_manual_acks(false);
        loop {
            while self.health.is_up(Component::Spool) {
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    () = self.shutdown.recv() => return,
                }
            }
            tracing::warn!(
                "the spool refuses messages: alerts and the dashboard follow the site over a QoS 0 lookout session meanwhile"
            );
            if !self.watch(options.clone()).await {
                return;
            }
            tracing::info!("the spool takes messages again: lookout session closed");
        }
    }

    /// One lookout session, until the spool takes messages again (true) or shutdown (false).
    async fn watch(&mut self, options: MqttOptions) -> bool {
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let filters = [NodeTopic::Telemetry, NodeTopic::Status]
            .map(|kind| topic::node_filter(Some(&self.site), kind).to_string());
        let mut out = Output::default();
        let mut poll = tokio::time::interval(POLL);
        let keep_going = loop {
            tokio::select! {
                () = self.shutdown.recv() => break false,
                _ = poll.tick() => {
                    if self.health.is_up(Component::Spool) {
                        break true;
                    }
                }
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for filter in &filters {
                            let _ = client.try_subscribe(filter, QoS::AtMostOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let route = Route::Mqtt { topic: publish.topic };
                        self.observe(&route, &publish.payload, &mut out);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("lookout MQTT session: {e}");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = self.shutdown.recv() => break false,
                        }
                    }
                }
            }
        };
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
        keep_going
    }

    /// Normalises one message for the alert engine and the dashboard; nothing is stored.
    fn observe(&mut self, route: &Route, payload: &[u8], out: &mut Output) {
        if self.partition.as_ref().is_some_and(|p| !p.owns_route(route)) {
            return;
        }
        let received_ms = now_ms();
        let observation = match decode(self.site.as_str(), route, payload) {
            Ok(Decoded::Telemetry(telemetry)) => {
                out.clear();
                let (verdict, _) = self.normaliser.telemetry(&telemetry, received_ms, out);
                if !matches!(verdict, Verdict::Accepted { .. }) || out.samples.is_empty() {
                    return;
                }
                // Nothing is stored: the derived points are dropped with the readings' lines.
                self.derive.derive(&mut out.samples, &mut out.lines);
                Observation::Samples(Arc::from(std::mem::take(&mut out.samples)))
            }
            Ok(Decoded::Status(status)) => Observation::Status {
                status: Box::new(status),
                received_ms,
            },
            // Rejects are ingest's to count and dead-letter, once the spool takes them.
            _ => return,
        };
        // As in ingest: never wait on a slow consumer. The lookout runs only while the spool
        // refuses, so it hands everything over at once.
        self.observers.send(observation);
        self.observers.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_partition_has_its_own_lookout_id_within_23_characters() {
        assert_eq!(lookout_id("rackwatch-gateway"), "look-rackwatch-gateway");
        let p0 = lookout_id("rackwatch-gateway-p0");
        let p1 = lookout_id("rackwatch-gateway-p1");
        assert_ne!(p0, p1);
        assert!(p0.len() <= 23 && p1.len() <= 23, "{p0}");
    }
}
