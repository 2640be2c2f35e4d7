//! The sensor node: a sans-IO state machine that the board (or the host) drives with
//! [`Node::poll`]`(now_ms, sensors, transport)`.
//!
//! One poll does, in the order data flows:
//! 1. **sample** the channels that are due ([`crate::sampling`]) into a [`Record`] with the next
//!    sequence number and the uptime, and push it into the store-and-forward [`Ring`];
//! 2. run the **MQTT 3.1.1 session** ([`crate::mqtt`]) over the [`Transport`]: open the connection,
//!    CONNECT with the `offline` status as last will, publish the retained `online` birth message,
//!    SUBSCRIBE to `cmd`; move records from the ring into a bounded in-flight queue and PUBLISH them at
//!    QoS 1, oldest first, each removed only when its PUBACK arrives; PINGREQ when idle;
//! 3. answer **commands** with an ack.
//!
//! When the connection is lost, records stay in the ring and unacknowledged ones in the in-flight
//! queue; after the reconnect (exponential back-off with jitter) the in-flight ones are sent again
//! (DUP set) before anything newer, so the broker sees every sequence number in order. The gateway
//! drops a repeated `(boot, seq)`, which QoS 1 allows after a lost PUBACK.

use core::fmt;

use rackwatch_hardware::{FanControl, Fault, SensorSet};
use rackwatch_protocols::topic::{self, NodeTopic};
use rackwatch_protocols::{
    Ack, AckResult, ChannelName, Command, CommandKind, MAX_MESSAGE_LEN, NodeId, NodeState, Reading, SiteId,
    Status, Telemetry,
};

use crate::mqtt::{self, Connect, ConnectReturn, Packet, Publish, QoS, Will};
use crate::sampling::{ChannelSetup, Sampler, TooManyChannels, round_to};
use crate::store::{DEFAULT_RING_CAPACITY, Record, Ring};
use crate::transport::{LinkState, Transport};

/// The node's sampling interval unless configured or commanded otherwise (protocols/README.md's
/// example node samples every 10 s).
pub const DEFAULT_INTERVAL_MS: u32 = 10_000;
/// QoS 1 messages published and not yet acknowledged, at most.
pub const MAX_IN_FLIGHT: usize = 8;
/// Acks waiting for room in the in-flight queue, at most.
const MAX_PENDING_ACKS: usize = 4;
/// The largest packet sent or received: a whole message plus topic and headers.
const PACKET_CAPACITY: usize = MAX_MESSAGE_LEN + 256;
/// Room kept free in the send buffer for PUBACKs and PINGREQs.
const CONTROL_RESERVE: usize = 16;
/// How long a reboot waits for the PUBACK of its ack before it goes ahead anyway.
const REBOOT_ACK_TIMEOUT_MS: u64 = 5_000;
/// Poll again this soon while bytes or work are waiting.
const BUSY_POLL_MS: u64 = 5;

/// Reconnect back-off: `min_ms`, doubling per failed attempt, up to `max_ms`, plus up to a quarter
/// of jitter so a hall of nodes does not reconnect in lockstep after a broker restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min_ms: u32,
    pub max_ms: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min_ms: 500,
            max_ms: 8_000,
        }
    }
}

/// What a node is and how it talks.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub site: SiteId,
    pub node: NodeId,
    /// Random per boot (protocols: `boot`).
    pub boot: u32,
    /// Default sampling interval.
    pub interval_ms: u32,
    /// Firmware version for the birth message.
    pub firmware: heapless::String<24>,
    /// Hardware serial number for the birth message.
    pub serial: Option<heapless::String<24>>,
    /// MQTT keep alive (§3.1.2.10).
    pub keep_alive_s: u16,
    pub reconnect: Backoff,
    /// A connection that is not up (TCP and CONNACK) within this is given up and retried.
    pub connect_timeout_ms: u32,
    /// MQTT user name and password (§3.1.3.4, §3.1.3.5), from the provisioned configuration.
    pub user_name: Option<heapless::String<32>>,
    pub password: Option<rackwatch_protocols::Secret>,
    /// Where the configuration in force came from, for the birth message; `None` on a board or host
    /// without a configuration store.
    pub config_origin: Option<rackwatch_protocols::ConfigOrigin>,
}

impl NodeConfig {
    /// Defaults for everything but identity.
    pub fn new(site: SiteId, node: NodeId, boot: u32) -> Self {
        let mut firmware = heapless::String::new();
        let _ = firmware.push_str(env!("CARGO_PKG_VERSION"));
        NodeConfig {
            site,
            node,
            boot,
            interval_ms: DEFAULT_INTERVAL_MS,
            firmware,
            serial: None,
            keep_alive_s: 15,
            reconnect: Backoff::default(),
            connect_timeout_ms: 5_000,
            user_name: None,
            password: None,
            config_origin: None,
        }
    }
}

/// Something worth a log line, drained with [`Node::next_event`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// A sampling round was stored; `faults` of its `readings` failed.
    Sampled {
        seq: u32,
        readings: u8,
        faults: u8,
    },
    /// The ring was full: this many of the oldest records were dropped.
    Dropped {
        records: u32,
    },
    Connecting {
        attempt: u32,
    },
    /// CONNACK accepted: the session is up and `backlog` records wait to be sent.
    Connected {
        backlog: usize,
    },
    /// The connection was lost or given up; the next attempt is in `retry_in_ms`.
    Disconnected {
        reason: &'static str,
        retry_in_ms: u64,
    },
    /// The broker acknowledged telemetry `seq`.
    Delivered {
        seq: u32,
    },
    /// A command was carried out (or not) and its ack queued.
    Command {
        id: u32,
        action: &'static str,
        result: AckResult,
    },
    /// A message on `cmd` that is not a command; it cannot be acked without an id.
    BadCommand,
    /// The broker refused the `cmd` subscription.
    SubscribeRefused,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::Sampled {
                seq,
                readings,
                faults,
            } => {
                write!(f, "sampled seq {seq}: {readings} readings, {faults} faulted")
            }
            Event::Dropped { records } => write!(f, "store full: dropped {records} oldest records"),
            Event::Connecting { attempt } => write!(f, "mqtt: connecting (attempt {attempt})"),
            Event::Connected { backlog } => write!(f, "mqtt: connected, {backlog} records to send"),
            Event::Disconnected { reason, retry_in_ms } => {
                write!(f, "mqtt: disconnected ({reason}), retry in {retry_in_ms} ms")
            }
            Event::Delivered { seq } => write!(f, "mqtt: telemetry seq {seq} acknowledged"),
            Event::Command { id, action, result } => {
                write!(f, "command {id} {action}: {}", ack_result_str(result))
            }
            Event::BadCommand => write!(f, "command: not a valid command, ignored"),
            Event::SubscribeRefused => write!(f, "mqtt: broker refused the cmd subscription"),
        }
    }
}

fn ack_result_str(result: AckResult) -> &'static str {
    match result {
        AckResult::Ok => "ok",
        AckResult::Rejected => "rejected",
        AckResult::Unsupported => "unsupported",
        AckResult::Failed => "failed",
    }
}

/// What the caller should do after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    /// Poll again by then at the latest (also as soon as bytes arrive).
    pub wake_at_ms: u64,
    /// A `reboot` command was acknowledged: reset the node now.
    pub reboot: bool,
    /// [`Node::shut_down`] has finished: `offline` was published and the connection closed.
    pub stopped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    Offline {
        retry_at_ms: u64,
    },
    Opening {
        since_ms: u64,
    },
    AwaitConnAck {
        since_ms: u64,
    },
    Online {
        last_sent_ms: u64,
        ping_sent_ms: Option<u64>,
    },
    Stopped,
}

#[derive(Debug, Clone, PartialEq)]
struct PendingAck {
    id: u32,
    result: AckResult,
    detail: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
enum Outgoing {
    Telemetry { record: Record, dropped: u32 },
    Ack(PendingAck),
}

#[derive(Debug, Clone, PartialEq)]
struct InFlight {
    packet_id: u16,
    message: Outgoing,
    /// Written to the connection at least once (a resend sets DUP).
    sent_before: bool,
    /// Written on the current connection.
    sent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reboot {
    No,
    /// Waiting for the PUBACK of the ack, or the deadline.
    AfterAck {
        packet_id: Option<u16>,
        deadline_ms: u64,
    },
    Now,
}

/// A fixed buffer of bytes with a fill level.
#[derive(Debug, Clone)]
struct Buffer {
    bytes: [u8; PACKET_CAPACITY],
    len: usize,
}

impl Buffer {
    const fn new() -> Self {
        Buffer {
            bytes: [0; PACKET_CAPACITY],
            len: 0,
        }
    }

    fn filled(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    fn spare(&mut self) -> &mut [u8] {
        self.bytes.get_mut(self.len..).unwrap_or_default()
    }

    fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(PACKET_CAPACITY);
    }

    /// Drops the first `n` bytes.
    fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.bytes.copy_within(n..self.len, 0);
        self.len -= n;
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// The sensor node. `RING` is the store-and-forward capacity in records.
pub struct Node<const RING: usize = DEFAULT_RING_CAPACITY> {
    config: NodeConfig,
    sampler: Sampler,
    ring: Ring<RING>,
    /// The newest sampling round, for a local console; the ring's copy may already be in flight.
    last_sampled: Option<Record>,
    next_seq: u32,
    in_flight: heapless::Deque<InFlight, MAX_IN_FLIGHT>,
    pending_acks: heapless::Deque<PendingAck, MAX_PENDING_ACKS>,
    session: Session,
    /// Failed attempts since the last accepted CONNACK.
    attempts: u32,
    next_packet_id: u16,
    subscribe_id: Option<u16>,
    birth_due: bool,
    rx: Buffer,
    tx: Buffer,
    events: heapless::Deque<Event, 16>,
    identify_until_ms: u64,
    reboot: Reboot,
    shutting_down: bool,
}

impl<const RING: usize> fmt::Debug for Node<RING> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("node", &self.config.node)
            .field("session", &self.session)
            .field("next_seq", &self.next_seq)
            .field("ring", &self.ring.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl<const RING: usize> Node<RING> {
    /// A node that samples `channels` (indices into them become the records' channel numbers).
    pub fn new(config: NodeConfig, channels: &[ChannelSetup]) -> Result<Self, TooManyChannels> {
        Ok(Node {
            sampler: Sampler::new(channels, config.interval_ms)?,
            config,
            ring: Ring::default(),
            last_sampled: None,
            next_seq: 0,
            in_flight: heapless::Deque::new(),
            pending_acks: heapless::Deque::new(),
            session: Session::Offline { retry_at_ms: 0 },
            attempts: 0,
            next_packet_id: 1,
            subscribe_id: None,
            birth_due: false,
            rx: Buffer::new(),
            tx: Buffer::new(),
            events: heapless::Deque::new(),
            identify_until_ms: 0,
            reboot: Reboot::No,
            shutting_down: false,
        })
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The sampling interval that channels without their own follow.
    pub fn interval_ms(&self) -> u32 {
        self.sampler.default_interval_ms()
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// Records waiting in the ring (not counting the in-flight ones).
    pub fn backlog(&self) -> usize {
        self.ring.len()
    }

    /// Messages published and not yet acknowledged (or waiting to be sent again).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the MQTT session is up.
    pub fn is_online(&self) -> bool {
        matches!(self.session, Session::Online { .. })
    }

    /// Whether an `identify` command asks the node to show itself (blink an LED) at `now_ms`.
    pub fn identifying(&self, now_ms: u64) -> bool {
        now_ms < self.identify_until_ms
    }

    /// The oldest event not yet taken.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether this node can take a provisioned configuration: every channel it calibrates exists.
    pub fn accepts(&self, provisioned: &rackwatch_protocols::NodeConfig) -> Result<(), &'static str> {
        self.sampler
            .check(&provisioned.channels)
            .map_err(|_| "unknown channel")
    }

    /// Takes a provisioned identity, interval, credentials and channel calibration. The session starts again at once with
    /// a CONNECT under the new client id (the old id's last will marks it offline); records not yet
    /// acknowledged are published again under the new id. The board switches the broker address.
    pub fn apply_provisioned<T: Transport + ?Sized>(
        &mut self,
        provisioned: &rackwatch_protocols::NodeConfig,
        now_ms: u64,
        transport: &mut T,
    ) {
        // Checked before the configuration was stored (`accepts`); an unknown channel changes nothing.
        let _ = self.adopt_provisioned(provisioned, now_ms);
        self.config.config_origin = Some(rackwatch_protocols::ConfigOrigin::Provisioned);
        self.lose(now_ms, transport, "provisioned");
        self.attempts = 0;
        self.session = Session::Offline { retry_at_ms: now_ms };
    }

    /// Takes a provisioned configuration without touching the session: for the configuration loaded
    /// at boot, before the first poll. Identity, interval and credentials are always taken; the
    /// channel calibration only when every channel it names exists (else `unknown channel`, and the
    /// board's own calibration stays).
    pub fn adopt_provisioned(
        &mut self,
        provisioned: &rackwatch_protocols::NodeConfig,
        now_ms: u64,
    ) -> Result<(), &'static str> {
        self.config.site = provisioned.site.clone();
        self.config.node = provisioned.node.clone();
        self.config.interval_ms = provisioned.interval_ms;
        self.config.user_name = provisioned.broker.username.clone();
        self.config.password = provisioned.broker.password.clone();
        self.sampler.set_default_interval(provisioned.interval_ms, now_ms);
        self.sampler
            .configure(&provisioned.channels, now_ms)
            .map_err(|_| "unknown channel")
    }

    /// Starts a clean shutdown: publish `offline`, DISCONNECT, close. Polls report `stopped` when done.
    pub fn shut_down(&mut self) {
        self.shutting_down = true;
    }

    /// Samples what is due, runs the session and handles commands. Call it in the board's main loop,
    /// at the latest at [`Poll::wake_at_ms`] and whenever bytes arrive.
    pub fn poll<S, T>(&mut self, now_ms: u64, sensors: &mut S, transport: &mut T) -> Poll
    where
        S: SensorSet + FanControl + ?Sized,
        T: Transport + ?Sized,
    {
        if !self.shutting_down {
            self.sample(now_ms, sensors);
        }
        self.run_session(now_ms, sensors, transport);
        if let Reboot::AfterAck { deadline_ms, .. } = self.reboot
            && now_ms >= deadline_ms
        {
            self.reboot = Reboot::Now;
        }
        Poll {
            wake_at_ms: self.wake_at(now_ms),
            reboot: self.reboot == Reboot::Now,
            stopped: self.session == Session::Stopped,
        }
    }

    fn sample<S: SensorSet + ?Sized>(&mut self, now_ms: u64, sensors: &mut S) {
        let Some(readings) = self.sampler.sample_due(now_ms, sensors) else {
            return;
        };
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let faults = readings
            .iter()
            .filter(|r| r.status != rackwatch_protocols::ReadingStatus::Ok)
            .count();
        self.event(Event::Sampled {
            seq,
            readings: u8::try_from(readings.len()).unwrap_or(u8::MAX),
            faults: u8::try_from(faults).unwrap_or(u8::MAX),
        });
        let before = self.ring.len();
        let record = Record {
            seq,
            uptime_ms: now_ms,
            readings,
        };
        self.last_sampled = Some(record.clone());
        self.ring.push(record);
        if self.ring.len() == before {
            self.event(Event::Dropped { records: 1 });
        }
    }

    fn run_session<S, T>(&mut self, now_ms: u64, sensors: &mut S, transport: &mut T)
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
                        Err(_) => self.lose(now_ms, transport, "cannot open a connection"),
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
                        self.lose(now_ms, transport, "CONNECT does not fit");
                    }
                }
                LinkState::Closed => self.lose(now_ms, transport, "connection refused"),
                LinkState::Opening => {
                    if now_ms.saturating_sub(since_ms) > u64::from(self.config.connect_timeout_ms) {
                        self.lose(now_ms, transport, "connect timed out");
                    }
                }
            },
            Session::AwaitConnAck { since_ms } => {
                self.exchange(now_ms, sensors, transport);
                if matches!(self.session, Session::AwaitConnAck { .. })
                    && now_ms.saturating_sub(since_ms) > u64::from(self.config.connect_timeout_ms)
                {
                    self.lose(now_ms, transport, "no CONNACK");
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
            return self.lose(now_ms, transport, "connection closed");
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
                return self.lose(now_ms, transport, "no PINGRESP");
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
    fn flush<T: Transport + ?Sized>(&mut self, transport: &mut T) -> Result<bool, &'static str> {
        let mut wrote = false;
        while self.tx.len > 0 {
            let n = transport.send(self.tx.filled()).map_err(|_| "send failed")?;
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
    ) -> Result<(), &'static str>
    where
        S: SensorSet + FanControl + ?Sized,
        T: Transport + ?Sized,
    {
        loop {
            // Handle what is buffered first; stop while the answers would not fit.
            while self.tx.spare().len() >= CONTROL_RESERVE {
                let (consumed, handled) = match Packet::decode(self.rx.filled()) {
                    Ok(Some((packet, consumed))) => (consumed, Handled::from_packet(&packet)),
                    Ok(None) => break,
                    Err(mqtt::DecodeError::Malformed(_)) => return Err("malformed packet from the broker"),
                    Err(mqtt::DecodeError::Unsupported) => return Err("unsupported packet from the broker"),
                };
                // The packet borrowed the receive buffer; what it said is copied out in `handled`.
                self.rx.consume(consumed);
                self.handle(handled, now_ms, sensors)?;
            }
            if self.rx.spare().is_empty() {
                return Err("packet larger than the receive buffer");
            }
            if self.tx.spare().len() < CONTROL_RESERVE {
                return Ok(());
            }
            let n = transport.receive(self.rx.spare()).map_err(|_| "receive failed")?;
            if n == 0 {
                return Ok(());
            }
            self.rx.commit(n);
        }
    }

    fn handle<S>(&mut self, handled: Handled, now_ms: u64, sensors: &mut S) -> Result<(), &'static str>
    where
        S: SensorSet + FanControl + ?Sized,
    {
        match handled {
            Handled::ConnAck(ConnectReturn::Accepted) => {
                if !matches!(self.session, Session::AwaitConnAck { .. }) {
                    return Err("unexpected CONNACK");
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
                self.event(Event::Connected {
                    backlog: self.ring.len() + self.in_flight.len(),
                });
            }
            Handled::ConnAck(_) => return Err("broker refused the connection"),
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
            Handled::Ignored => {}
        }
        Ok(())
    }

    /// Removes the in-flight message `packet_id` acknowledges.
    fn acknowledged(&mut self, packet_id: u16) {
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

    fn execute<S>(&mut self, command: Command, now_ms: u64, sensors: &mut S)
    where
        S: SensorSet + FanControl + ?Sized,
    {
        let (action, result, detail) = match command.kind {
            CommandKind::SetInterval { interval_ms } => {
                if INTERVAL_BOUNDS_MS.contains(&interval_ms) {
                    self.sampler.set_default_interval(interval_ms, now_ms);
                    ("set_interval", AckResult::Ok, None)
                } else {
                    ("set_interval", AckResult::Rejected, Some("interval out of range"))
                }
            }
            CommandKind::SetFan { fan, target } => match sensors.set_fan(fan, target) {
                Ok(()) => {
                    // The ack promises the effect shows in the next telemetry.
                    self.sampler.sample_all_now(now_ms);
                    ("set_fan", AckResult::Ok, None)
                }
                Err(Fault::Unsupported) => ("set_fan", AckResult::Unsupported, Some("no fan controller")),
                Err(Fault::InvalidInput) => ("set_fan", AckResult::Rejected, Some("no such fan or value")),
                Err(_) => (
                    "set_fan",
                    AckResult::Failed,
                    Some("fan controller did not answer"),
                ),
            },
            CommandKind::Identify { seconds } => {
                self.identify_until_ms = now_ms + u64::from(seconds) * 1000;
                ("identify", AckResult::Ok, None)
            }
            CommandKind::Reboot => {
                self.reboot = Reboot::AfterAck {
                    packet_id: None,
                    deadline_ms: now_ms + REBOOT_ACK_TIMEOUT_MS,
                };
                ("reboot", AckResult::Ok, None)
            }
            CommandKind::Provision(_) => (
                "provision",
                AckResult::Unsupported,
                Some("provisioning is over the serial link"),
            ),
        };
        self.event(Event::Command {
            id: command.id,
            action,
            result,
        });
        let ack = PendingAck {
            id: command.id,
            result,
            detail,
        };
        if self.pending_acks.push_back(ack).is_err() {
            // Four unanswered commands already: the sender times out and asks again.
        }
    }

    /// Fills the in-flight queue (acks first, then records oldest first) and writes what is unsent.
    fn queue_publishes(&mut self, _now_ms: u64) {
        if self.birth_due && self.write_birth(_now_ms) {
            self.birth_due = false;
        }
        while !self.in_flight.is_full() {
            let message = if let Some(ack) = self.pending_acks.pop_front() {
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
        }
    }

    /// The newest sampling round as telemetry, as it is (or will be) published.
    pub fn last_telemetry(&self) -> Option<Telemetry> {
        let record = self.last_sampled.as_ref()?;
        Some(self.telemetry(record, 0))
    }

    /// The telemetry message of a record.
    fn telemetry(&self, record: &Record, dropped: u32) -> Telemetry {
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
        };
        self.write_status(&status, QoS::AtLeastOnce)
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

    /// The retained `offline` status and DISCONNECT of a clean shutdown.
    fn write_goodbye(&mut self) {
        let status = Status::last_will(self.config.node.clone(), self.config.boot);
        if self.write_status(&status, QoS::AtMostOnce) {
            self.write(&Packet::Disconnect);
        }
    }

    fn write_status(&mut self, status: &Status, qos: QoS) -> bool {
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
    fn write(&mut self, packet: &Packet<'_>) -> bool {
        match packet.encode(self.tx.spare()) {
            Ok(n) => {
                self.tx.commit(n);
                true
            }
            Err(_) => false,
        }
    }

    /// Like [`Self::write`], but keeps room for control packets (PUBACK, PINGREQ).
    fn write_leaving_reserve(&mut self, packet: &Packet<'_>) -> bool {
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
    fn packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.in_flight.iter().any(|e| e.packet_id == id) {
                return id;
            }
        }
    }

    /// Closes the connection and schedules the next attempt.
    fn lose<T: Transport + ?Sized>(&mut self, now_ms: u64, transport: &mut T, reason: &'static str) {
        transport.close();
        self.rx.clear();
        self.tx.clear();
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

    fn wake_at(&self, now_ms: u64) -> u64 {
        let next_sample = if self.shutting_down {
            u64::MAX
        } else {
            self.sampler.next_due_ms()
        };
        let session = match self.session {
            Session::Stopped => u64::MAX,
            Session::Offline { retry_at_ms } => retry_at_ms,
            Session::Opening { .. } | Session::AwaitConnAck { .. } => now_ms + BUSY_POLL_MS,
            Session::Online {
                last_sent_ms,
                ping_sent_ms,
            } => {
                let keep_alive_ms = u64::from(self.config.keep_alive_s) * 1000;
                let busy = self.tx.len > 0
                    || self.birth_due
                    || self.in_flight.iter().any(|e| !e.sent)
                    || (!self.in_flight.is_full()
                        && (!self.ring.is_empty() || !self.pending_acks.is_empty()));
                if busy || self.shutting_down {
                    now_ms + BUSY_POLL_MS
                } else {
                    match ping_sent_ms {
                        Some(sent) => sent + keep_alive_ms + 1,
                        None => last_sent_ms + keep_alive_ms / 2,
                    }
                }
            }
        };
        let reboot = match self.reboot {
            Reboot::AfterAck { deadline_ms, .. } => deadline_ms,
            Reboot::Now => now_ms,
            Reboot::No => u64::MAX,
        };
        next_sample.min(session).min(reboot).max(now_ms)
    }

    fn event(&mut self, event: Event) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(event);
    }
}

/// Intervals a node accepts (protocols/README.md, "Commands": 100 ms to 1 h). The decoder checks
/// them too; the node does not rely on every sender using that decoder.
const INTERVAL_BOUNDS_MS: core::ops::RangeInclusive<u32> = 100..=3_600_000;

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
