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
//!
//! The work is split by job: `session` runs the connection and the packets in and out, `commands`
//! carries out what arrives on `cmd` (and provisioned configurations), `telemetry` turns records into
//! the messages published; `event` and `error` ([`SessionError`]) are what they report, `buffer` the
//! send and receive bytes. This file holds the node's state and its public face; the job modules add
//! behaviour to [`Node`] and import from here (and `error`), never from each other, so the module
//! graph has no circle (tests/layout.sh).

mod buffer;
mod commands;
mod error;
mod event;
mod ota;
mod session;
mod telemetry;

use core::fmt;

use rackwatch_hardware::{FanControl, SensorSet};
use rackwatch_protocols::{AckResult, NodeId, SiteId};

use crate::sampling::{ChannelSetup, Sampler, TooManyChannels};
use crate::store::{DEFAULT_RING_CAPACITY, Record, Ring};
use crate::transport::Transport;

use buffer::Buffer;
pub use error::SessionError;
pub use event::Event;

/// The node's sampling interval unless configured or commanded otherwise (protocols/README.md's
/// example node samples every 10 s).
pub const DEFAULT_INTERVAL_MS: u32 = 10_000;
/// QoS 1 messages published and not yet acknowledged, at most.
pub const MAX_IN_FLIGHT: usize = 8;
/// Acks waiting for room in the in-flight queue, at most.
const MAX_PENDING_ACKS: usize = 4;
/// Update answers waiting for room in the in-flight queue, at most.
const MAX_OTA_ANSWERS: usize = 2;
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
    OtaAck(crate::update::Answer),
}

/// An update frame's PUBLISH held at the front of the receive buffer until the board answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OtaInbox {
    packet_len: usize,
    payload_len: usize,
    packet_id: Option<u16>,
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
    /// `Some` on a board that takes updates: subscribed to `ota`, reported in the birth.
    firmware_report: Option<crate::ota::FirmwareReport>,
    ota_inbox: Option<OtaInbox>,
    ota_answers: heapless::Deque<crate::update::Answer, MAX_OTA_ANSWERS>,
    /// The last link failure, for the next birth message.
    link_failure: Option<crate::transport::LinkFailure>,
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
            firmware_report: None,
            ota_inbox: None,
            ota_answers: heapless::Deque::new(),
            link_failure: None,
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
                    || !self.ota_answers.is_empty()
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
