//! What the node reports for a log line, drained with [`super::Node::next_event`].

use core::fmt;

use rackwatch_protocols::AckResult;

use super::error::SessionError;

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
        reason: SessionError,
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
