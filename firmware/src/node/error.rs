//! Why the MQTT session ended: the reason a [`super::Event::Disconnected`] carries.
//!
//! Every variant is followed by the same recovery (close, back off, connect again), so the type
//! exists to name the cause in the node's log and in tests, not to branch on it. `Display` and
//! `Error` are written out rather than derived with `thiserror`: the derive formats each message
//! through its own `fmt::Arguments`, which costs the QEMU board's tight flash budget about 280 bytes.

use crate::transport::LinkFailure;

/// Why the node closed its connection to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// The transport could not start a connection.
    CannotOpen,
    /// The CONNECT packet (with will and credentials) is larger than the send buffer.
    ConnectTooLarge,
    /// The transport reported the connection closed while it was opening.
    Refused,
    /// The connection was not open within the configured connect timeout.
    ConnectTimeout,
    /// The broker did not answer CONNECT within the connect timeout.
    NoConnAck,
    /// The connection closed under a running session.
    Closed,
    /// A PINGREQ went unanswered for a whole keep-alive period (§3.1.2.10).
    NoPingResp,
    /// The transport failed to take bytes.
    Send,
    /// The transport failed to deliver bytes.
    Receive,
    /// The broker sent bytes that are not an MQTT 3.1.1 packet.
    Malformed,
    /// The broker sent a packet type a client never receives or this codec does not read.
    Unsupported,
    /// A packet larger than the receive buffer.
    PacketTooLarge,
    /// A CONNACK outside the connect handshake.
    UnexpectedConnAck,
    /// The broker answered CONNECT with a refusal code.
    BrokerRefused,
    /// A provisioned configuration was applied: the session starts again under the new identity.
    Reprovisioned,
    /// The encrypted link failed, and why (a certificate, the TLS version, an alert, a cut record).
    Link(LinkFailure),
}

impl SessionError {
    /// The reason in words, as the node's log line shows it.
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionError::CannotOpen => "cannot open a connection",
            SessionError::ConnectTooLarge => "CONNECT does not fit",
            SessionError::Refused => "connection refused",
            SessionError::ConnectTimeout => "connect timed out",
            SessionError::NoConnAck => "no CONNACK",
            SessionError::Closed => "connection closed",
            SessionError::NoPingResp => "no PINGRESP",
            SessionError::Send => "send failed",
            SessionError::Receive => "receive failed",
            SessionError::Malformed => "malformed packet from the broker",
            SessionError::Unsupported => "unsupported packet from the broker",
            SessionError::PacketTooLarge => "packet larger than the receive buffer",
            SessionError::UnexpectedConnAck => "unexpected CONNACK",
            SessionError::BrokerRefused => "broker refused the connection",
            SessionError::Reprovisioned => "provisioned",
            SessionError::Link(failure) => failure.describe(),
        }
    }
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for SessionError {}
