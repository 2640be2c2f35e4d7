//! The MQTT 3.1.1 session: connect with the `offline` last will, subscribe to `cmd`, read and answer
//! packets, write what is queued, keep the connection alive, and on any failure close it and back off.

use rackwatch_hardware::{FanControl, SensorSet};
use rackwatch_protocols::topic::{self, NodeTopic};
use rackwatch_protocols::{Command, Status};

use crate::mqtt::{self, Connect, ConnectReturn, Packet, Publish, QoS, Will};
use crate::transport::{LinkState, Transport};

use super::{
    Backoff, Event, InFlight, MAX_IN_FLIGHT, Node, OtaInbox, Outgoing, Reboot, Session, SessionError,
};

/// Room kept free in the send buffer for PUBACKs and PINGREQs.
const CONTROL_RESERVE: usize = 16;

impl<const RING: usize> Node<RING> {
    pub(super) fn run_session<S, T>(&mut self, now_ms: u64, sensors: &mut S, transport: &mut T)
    where
        S: SensorSet + FanControl + ?Sized,
        T: Transport + ?Sized,
    {
        match self.session {
            Session::Stopped => {}
            Session::Offline { retry_at_ms } => {
                if self.shutting_down {
                    self.session = Session::Stopped;
                } else if now_ms >= retry_at_ms {
                    self.event(Event::Connecting {
                        attempt: self.attempts + 1,
                    });
                    match transport.open() {
                        Ok(()) => self.session = Session::Opening { since_ms: now_ms },
                        Err(_) => self.lose(now_ms, transport, SessionError::CannotOpen),
                    }
                }
            }
            Session::Opening { since_ms } => match transport.state() {
                LinkState::Open => {
                    self.rx.clear();
                    self.tx.clear();
                    if self.write_connect() {
                        self.session = Session::AwaitConnAck { since_ms: now_ms };
                        self.exchange(now_ms, sensors, transport);
                    } else {
                        self.lose(now_ms, transport, SessionError::ConnectTooLarge);
                    }
                }
                LinkState::Closed => self.lose(now_ms, transport, SessionError::Refused),
                LinkState::Opening => {
                    if now_ms.saturating_sub(since_ms) > u64::from(self.config.connect_timeout_ms) {
                        self.lose(now_ms, transport, SessionError::ConnectTimeout);
                    }
                }
            },
            Session::AwaitConnAck { since_ms } => {
                self.exchange(now_ms, sensors, transport);
                if matches!(self.session, Session::AwaitConnAck { .. })
                    && now_ms.saturating_sub(since_ms) > u64::from(self.config.connect_timeout_ms)
                {
                    self.lose(now_ms, transport, SessionError::NoConnAck);
                }
            }
            Session::Online { .. } => self.exchange(now_ms, sensors, transport),
        }
    }

    /// Reads and handles packets, queues what is due and writes it out, while connected.
    fn exchange<S, T>(&mut self, now_ms: u64, sensors: &mut S, transport: &mut T)
    where
        S: SensorSet + FanControl + ?Sized,
        T: Transport + ?Sized,
    {
        if transport.state() != LinkState::Open {
            return self.lose(now_ms, transport, SessionError::Closed);
        }
        if let Err(reason) = self.read_packets(now_ms, sensors, transport) {
            return self.lose(now_ms, transport, reason);
        }
        if let Session::Online {
            last_sent_ms,
            ping_sent_ms,
        } = self.session
        {
            let keep_alive_ms = u64::from(self.config.keep_alive_s) * 1000;
            if let Some(sent) = ping_sent_ms
                && now_ms.saturating_sub(sent) > keep_alive_ms
            {
                return self.lose(now_ms, transport, SessionError::NoPingResp);
            }
            if self.shutting_down && self.in_flight.is_empty() {
                self.write_goodbye();
                let _ = self.flush(transport);
                if self.tx.len == 0 {
                    transport.close();
                    self.session = Session::Stopped;
                }
                return;
            }
            self.queue_publishes(now_ms);
            if ping_sent_ms.is_none()
                && now_ms.saturating_sub(last_sent_ms) >= keep_alive_ms / 2
                && self.write(&Packet::PingReq)
            {
                self.session = Session::Online {
                    last_sent_ms: now_ms,
                    ping_sent_ms: Some(now_ms),
                };
            }
        }
        match self.flush(transport) {
            Ok(true) => {
                if let Session::Online { ping_sent_ms, .. } = self.session {
                    self.session = Session::Online {
                        last_sent_ms: now_ms,
                        ping_sent_ms,
                    };
                }
            }
            Ok(false) => {}
            Err(reason) => self.lose(now_ms, transport, reason),
        }
    }

    /// Writes as much of the send buffer as the transport takes; `true` if anything went.
    fn flush<T: Transport + ?Sized>(&mut self, transport: &mut T) -> Result<bool, SessionError> {
        let mut wrote = false;
        while self.tx.len > 0 {
            let n = transport.send(self.tx.filled()).map_err(|_| SessionError::Send)?;
            if n == 0 {
                break;
            }
            self.tx.consume(n);
            wrote = true;
        }
        Ok(wrote)
    }

    fn read_packets<S, T>(
        &mut self,
        now_ms: u64,
        sensors: &mut S,
        transport: &mut T,
    ) -> Result<(), SessionError>
    where
        S: SensorSet + FanControl + ?Sized,
        T: Transport + ?Sized,
    {
        loop {
            // Handle what is buffered first; stop while the answers would not fit.
            while self.tx.spare().len() >= CONTROL_RESERVE {
                if self.ota_inbox.is_some() {
                    // An update frame waits for the board (node/ota.rs): read nothing more meanwhile.
                    return Ok(());
                }
                let (consumed, handled) = match Packet::decode(self.rx.filled()) {
                    Ok(Some((packet, consumed))) => (consumed, Handled::from_packet(&packet)),
                    Ok(None) => break,
                    Err(mqtt::DecodeError::Malformed(_)) => return Err(SessionError::Malformed),
                    Err(mqtt::DecodeError::Unsupported) => return Err(SessionError::Unsupported),
                };
                if let Handled::Ota {
                    packet_id,
                    payload_len,
                } = handled
                {
                    self.hold_ota(OtaInbox {
                        packet_len: consumed,
                        payload_len,
                        packet_id,
                    });
                    return Ok(());
                }
                // The packet borrowed the receive buffer; what it said is copied out in `handled`.
                self.rx.consume(consumed);
                self.handle(handled, now_ms, sensors)?;
            }
            if self.rx.spare().is_empty() {
                return Err(SessionError::PacketTooLarge);
            }
            if self.tx.spare().len() < CONTROL_RESERVE {
                return Ok(());
            }
            let n = transport
                .receive(self.rx.spare())
                .map_err(|_| SessionError::Receive)?;
            if n == 0 {
                return Ok(());
            }
            self.rx.commit(n);
        }
    }

    fn handle<S>(&mut self, handled: Handled, now_ms: u64, sensors: &mut S) -> Result<(), SessionError>
    where
        S: SensorSet + FanControl + ?Sized,
    {
        match handled {
            Handled::ConnAck(ConnectReturn::Accepted) => {
                if !matches!(self.session, Session::AwaitConnAck { .. }) {
                    return Err(SessionError::UnexpectedConnAck);
                }
                self.attempts = 0;
                self.session = Session::Online {
                    last_sent_ms: now_ms,
                    ping_sent_ms: None,
                };
                // Everything unacknowledged goes again, oldest first, before newer records.
                for entry in self.in_flight.iter_mut() {
                    entry.sent = false;
                }
                self.birth_due = true;
                let id = self.packet_id();
                self.subscribe_id = Some(id);
                let filter = topic::node(&self.config.site, &self.config.node, NodeTopic::Command);
                self.write(&Packet::Subscribe {
                    packet_id: id,
                    filter: &filter,
                    qos: QoS::AtLeastOnce,
                });
                if self.firmware_report.is_some() {
                    self.subscribe_ota();
                }
                self.event(Event::Connected {
                    backlog: self.ring.len() + self.in_flight.len(),
                });
            }
            Handled::ConnAck(_) => return Err(SessionError::BrokerRefused),
            Handled::PubAck(packet_id) => self.acknowledged(packet_id),
            Handled::SubAck { packet_id, granted } => {
                if Some(packet_id) == self.subscribe_id && !granted {
                    self.event(Event::SubscribeRefused);
                }
            }
            Handled::PingResp => {
                if let Session::Online { last_sent_ms, .. } = self.session {
                    self.session = Session::Online {
                        last_sent_ms,
                        ping_sent_ms: None,
                    };
                }
            }
            Handled::Command { packet_id, command } => {
                if let Some(packet_id) = packet_id {
                    self.write(&Packet::PubAck { packet_id });
                }
                match command {
                    Some(command) => self.execute(command, now_ms, sensors),
                    None => self.event(Event::BadCommand),
                }
            }
            Handled::Ota { .. } | Handled::Ignored => {}
        }
        Ok(())
    }

    /// Removes the in-flight message `packet_id` acknowledges.
    pub(super) fn acknowledged(&mut self, packet_id: u16) {
        let Some(position) = self.in_flight.iter().position(|e| e.packet_id == packet_id) else {
            // The birth message, or an ack of a message already acknowledged once.
            return;
        };
        // Acks come in order in practice (§4.6); take out the one that matched and keep the rest.
        let mut kept: heapless::Deque<InFlight, MAX_IN_FLIGHT> = heapless::Deque::new();
        let mut index = 0;
        while let Some(entry) = self.in_flight.pop_front() {
            if index == position {
                if let Outgoing::Telemetry { record, .. } = &entry.message {
                    self.event(Event::Delivered { seq: record.seq });
                }
                if let Reboot::AfterAck {
                    packet_id: Some(waiting),
                    ..
                } = self.reboot
                    && waiting == packet_id
                {
                    self.reboot = Reboot::Now;
                }
            } else {
                let _ = kept.push_back(entry);
            }
            index += 1;
        }
        self.in_flight = kept;
    }
    fn write_connect(&mut self) -> bool {
        let will = Status::last_will(self.config.node.clone(), self.config.boot);
        let mut will_payload = [0u8; 128];
        let Ok(will_len) = will.encode(&mut will_payload) else {
            return false;
        };
        let will_topic = topic::node(&self.config.site, &self.config.node, NodeTopic::Status);
        let node = self.config.node.clone();
        let (user_name, password) = (self.config.user_name.clone(), self.config.password.clone());
        self.write(&Packet::Connect(Connect {
            client_id: node.as_str(),
            keep_alive_s: self.config.keep_alive_s,
            // The node keeps its own unacknowledged messages across connections and subscribes again
            // on every connect, so it needs no session state on the broker.
            clean_session: true,
            will: Some(Will {
                topic: &will_topic,
                payload: will_payload.get(..will_len).unwrap_or_default(),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            user_name: user_name.as_deref(),
            password: password.as_ref().map(|p| p.expose().as_bytes()),
        }))
    }
    /// The retained `offline` status and DISCONNECT of a clean shutdown.
    fn write_goodbye(&mut self) {
        let status = Status::last_will(self.config.node.clone(), self.config.boot);
        if self.write_status(&status, QoS::AtMostOnce) {
            self.write(&Packet::Disconnect);
        }
    }

    pub(super) fn write_status(&mut self, status: &Status, qos: QoS) -> bool {
        // A birth with every channel named: 16 names of up to 24 characters and the rest.
        let mut payload = [0u8; 640];
        let Ok(len) = status.encode(&mut payload) else {
            return false;
        };
        let topic = topic::node(&self.config.site, &self.config.node, NodeTopic::Status);
        let packet_id = (qos == QoS::AtLeastOnce).then(|| self.packet_id());
        self.write_leaving_reserve(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain: true,
            topic: &topic,
            packet_id,
            payload: payload.get(..len).unwrap_or_default(),
        }))
    }

    /// Appends a packet to the send buffer; `false` if it does not fit now.
    pub(super) fn write(&mut self, packet: &Packet<'_>) -> bool {
        match packet.encode(self.tx.spare()) {
            Ok(n) => {
                self.tx.commit(n);
                true
            }
            Err(_) => false,
        }
    }

    /// Like [`Self::write`], but keeps room for control packets (PUBACK, PINGREQ).
    pub(super) fn write_leaving_reserve(&mut self, packet: &Packet<'_>) -> bool {
        let spare = self.tx.spare().len().saturating_sub(CONTROL_RESERVE);
        let at = self.tx.len;
        match self
            .tx
            .bytes
            .get_mut(at..at + spare)
            .map(|out| packet.encode(out))
        {
            Some(Ok(n)) => {
                self.tx.commit(n);
                true
            }
            _ => false,
        }
    }

    /// A packet id not used by an in-flight message (§2.3.1: non-zero).
    pub(super) fn packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.in_flight.iter().any(|e| e.packet_id == id) {
                return id;
            }
        }
    }

    /// Closes the connection and schedules the next attempt.
    pub(super) fn lose<T: Transport + ?Sized>(
        &mut self,
        now_ms: u64,
        transport: &mut T,
        reason: SessionError,
    ) {
        // The link's own reason (a refused certificate, say) is the root cause of whatever the
        // session saw, and the next birth message reports it.
        let reason = match transport.failure() {
            Some(failure) => {
                self.link_failure = Some(failure);
                SessionError::Link(failure)
            }
            None => reason,
        };
        transport.close();
        self.rx.clear();
        self.tx.clear();
        self.ota_inbox = None;
        for entry in self.in_flight.iter_mut() {
            entry.sent = false;
        }
        self.subscribe_id = None;
        self.birth_due = false;
        if self.shutting_down {
            self.session = Session::Stopped;
            return;
        }
        let delay = self.backoff_ms();
        self.attempts = self.attempts.saturating_add(1);
        self.session = Session::Offline {
            retry_at_ms: now_ms + delay,
        };
        self.event(Event::Disconnected {
            reason,
            retry_in_ms: delay,
        });
    }

    fn backoff_ms(&self) -> u64 {
        let Backoff { min_ms, max_ms } = self.config.reconnect;
        let base = u64::from(min_ms)
            .saturating_mul(1u64 << self.attempts.min(16))
            .min(u64::from(max_ms));
        // Jitter from the boot id and the attempt: distinct per node, no RNG needed.
        let mix =
            u64::from(self.config.boot ^ self.attempts.wrapping_mul(0x9E37_79B9)).wrapping_mul(0x2545_F491);
        base + mix % (base / 4 + 1)
    }
}

/// What a received packet asks of the node, copied out of the receive buffer.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "no heap to box the command into; one lives briefly on the stack"
)]
enum Handled {
    ConnAck(ConnectReturn),
    PubAck(u16),
    SubAck {
        packet_id: u16,
        granted: bool,
    },
    PingResp,
    /// A PUBLISH on `cmd` (any other topic is ignored); `None` if its payload is not a command.
    Command {
        packet_id: Option<u16>,
        command: Option<Command>,
    },
    /// A PUBLISH on `ota`: its payload is the packet's last `payload_len` bytes, left in place.
    Ota {
        packet_id: Option<u16>,
        payload_len: usize,
    },
    Ignored,
}

impl Handled {
    fn from_packet(packet: &Packet<'_>) -> Self {
        match *packet {
            Packet::ConnAck { code, .. } => Handled::ConnAck(code),
            Packet::PubAck { packet_id } => Handled::PubAck(packet_id),
            Packet::SubAck { packet_id, granted } => Handled::SubAck {
                packet_id,
                granted: granted.is_some(),
            },
            Packet::PingResp => Handled::PingResp,
            Packet::Publish(ref p) if topic::parse(p.topic).is_ok_and(|t| t.kind == NodeTopic::Ota) => {
                Handled::Ota {
                    packet_id: p.packet_id,
                    payload_len: p.payload.len(),
                }
            }
            Packet::Publish(ref p) => Handled::Command {
                packet_id: p.packet_id,
                command: topic::parse(p.topic)
                    .ok()
                    .filter(|t| t.kind == NodeTopic::Command)
                    .and_then(|_| Command::decode(p.payload).ok()),
            },
            _ => Handled::Ignored,
        }
    }
}
