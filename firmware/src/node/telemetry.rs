//! What the node publishes: telemetry of stored records and acks through the in-flight queue, and the
//! retained `online` birth message.

use rackwatch_protocols::topic::{self, NodeTopic};
use rackwatch_protocols::{Ack, ChannelName, MAX_MESSAGE_LEN, NodeState, Reading, Status, Telemetry};

use crate::mqtt::{Packet, Publish, QoS};
use crate::sampling::round_to;
use crate::store::Record;

use super::{InFlight, Node, Outgoing, Reboot};

impl<const RING: usize> Node<RING> {
    /// Fills the in-flight queue (acks first, then records oldest first) and writes what is unsent.
    pub(super) fn queue_publishes(&mut self, _now_ms: u64) {
        if self.birth_due && self.write_birth(_now_ms) {
            self.birth_due = false;
        }
        while !self.in_flight.is_full() {
            let message = if let Some(answer) = self.ota_answers.pop_front() {
                Outgoing::OtaAck(answer)
            } else if let Some(ack) = self.pending_acks.pop_front() {
                Outgoing::Ack(ack)
            } else if let Some(record) = self.ring.pop_oldest() {
                let dropped = self.ring.take_dropped();
                Outgoing::Telemetry { record, dropped }
            } else {
                break;
            };
            let packet_id = self.packet_id();
            if let (
                Outgoing::Ack(_),
                Reboot::AfterAck {
                    packet_id: waiting, ..
                },
            ) = (&message, &mut self.reboot)
                && waiting.is_none()
            {
                *waiting = Some(packet_id);
            }
            let _ = self.in_flight.push_back(InFlight {
                packet_id,
                message,
                sent_before: false,
                sent: false,
            });
        }
        let mut payload = [0u8; MAX_MESSAGE_LEN];
        for index in 0..self.in_flight.len() {
            let Some(entry) = self.in_flight.iter().nth(index) else {
                break;
            };
            if entry.sent {
                continue;
            }
            let Some(len) = self.encode_payload(&entry.message, &mut payload) else {
                // Cannot be encoded (cannot happen for finite values): drop it rather than block the queue.
                let id = entry.packet_id;
                self.acknowledged(id);
                break;
            };
            let topic_kind = match entry.message {
                Outgoing::Telemetry { .. } => NodeTopic::Telemetry,
                Outgoing::Ack(_) => NodeTopic::Ack,
                Outgoing::OtaAck(_) => NodeTopic::OtaAck,
            };
            let topic = topic::node(&self.config.site, &self.config.node, topic_kind);
            let packet = Packet::Publish(Publish {
                dup: entry.sent_before,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: &topic,
                packet_id: Some(entry.packet_id),
                payload: payload.get(..len).unwrap_or_default(),
            });
            if !self.write_leaving_reserve(&packet) {
                break;
            }
            if let Some(entry) = self.in_flight.iter_mut().nth(index) {
                entry.sent = true;
                entry.sent_before = true;
            }
        }
    }

    fn encode_payload(&self, message: &Outgoing, out: &mut [u8]) -> Option<usize> {
        match message {
            Outgoing::Telemetry { record, dropped } => self.telemetry(record, *dropped).encode(out).ok(),
            Outgoing::Ack(ack) => {
                let mut message = Ack::new(ack.id, self.config.node.clone(), ack.result);
                message.detail = ack.detail.and_then(|d| heapless::String::try_from(d).ok());
                message.encode(out).ok()
            }
            Outgoing::OtaAck(answer) => self.ota_ack(answer).encode(out).ok(),
        }
    }

    /// The newest sampling round as telemetry, as it is (or will be) published.
    pub fn last_telemetry(&self) -> Option<Telemetry> {
        let record = self.last_sampled.as_ref()?;
        Some(self.telemetry(record, 0))
    }

    /// The telemetry message of a record.
    pub(super) fn telemetry(&self, record: &Record, dropped: u32) -> Telemetry {
        let mut readings = heapless::Vec::new();
        for stored in &record.readings {
            let Some(setup) = self.sampler.setup(stored.channel) else {
                continue;
            };
            let measurement = setup.channel.measurement;
            let reading = if stored.status == rackwatch_protocols::ReadingStatus::Ok {
                Reading::ok(
                    setup.channel.name.clone(),
                    measurement.quantity(),
                    round_to(stored.value, setup.decimals),
                    measurement.unit(),
                )
            } else {
                Reading::failed(
                    setup.channel.name.clone(),
                    measurement.quantity(),
                    measurement.unit(),
                    stored.status,
                )
            };
            // Cannot fail: a record has at most MAX_CHANNELS (< MAX_READINGS) readings.
            let _ = readings.push(reading);
        }
        Telemetry {
            version: rackwatch_protocols::VERSION,
            node: self.config.node.clone(),
            boot: self.config.boot,
            seq: record.seq,
            timestamp_ms: None,
            uptime_ms: record.uptime_ms,
            dropped,
            readings,
        }
    }
    /// The retained `online` status (the birth message). QoS 1, but not kept across connections:
    /// every connection publishes a fresh one.
    fn write_birth(&mut self, now_ms: u64) -> bool {
        let status = Status {
            version: rackwatch_protocols::VERSION,
            node: self.config.node.clone(),
            state: NodeState::Online,
            boot: self.config.boot,
            firmware: Some(self.config.firmware.clone()),
            serial: self.config.serial.clone(),
            uptime_ms: Some(now_ms),
            interval_ms: Some(self.sampler.default_interval_ms()),
            config: self.config.config_origin,
            channels: self.channel_names(),
            slot: self.firmware_report.and_then(|r| r.slot),
            update: self.firmware_report.and_then(|r| r.last),
            link: self.link_failure,
        };
        let written = self.write_status(&status, QoS::AtLeastOnce);
        if written {
            self.link_failure = None;
        }
        written
    }

    /// The names of the channels sampled, each once, in channel order (for the birth message).
    fn channel_names(&self) -> heapless::Vec<ChannelName, { rackwatch_protocols::MAX_READINGS }> {
        let mut names: heapless::Vec<ChannelName, { rackwatch_protocols::MAX_READINGS }> =
            heapless::Vec::new();
        for setup in (0..=u8::MAX).map_while(|index| self.sampler.setup(index)) {
            if !names.contains(&setup.channel.name) {
                // More distinct names than a status takes: the birth lists the first ones.
                let _ = names.push(setup.channel.name.clone());
            }
        }
        names
    }
}
