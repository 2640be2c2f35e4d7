//! Why the MQTT session ended: the reason a [`super::Event::Disconnected`] carries.
//!
//! Every variant is followed by the same recovery (close, back off, connect again), so the type
//! exists to name the cause in the node's log and in tests, not to branch on it.

/// Why the node closed its connection to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The transport could not start a connection.
    #[error("cannot open a connection")]
    CannotOpen,
    /// The CONNECT packet (with will and credentials) is larger than the send buffer.
    #[error("CONNECT does not fit")]
    ConnectTooLarge,
    /// The transport reported the connection closed while it was opening.
    #[error("connection refused")]
    Refused,
    /// The connection was not open within the configured connect timeout.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The broker did not answer CONNECT within the connect timeout.
    #[error("no CONNACK")]
    NoConnAck,
    /// The connection closed under a running session.
    #[error("connection closed")]
    Closed,
    /// A PINGREQ went unanswered for a whole keep-alive period (§3.1.2.10).
    #[error("no PINGRESP")]
    NoPingResp,
    /// The transport failed to take bytes.
    #[error("send failed")]
    Send,
    /// The transport failed to deliver bytes.
    #[error("receive failed")]
    Receive,
    /// The broker sent bytes that are not an MQTT 3.1.1 packet.
    #[error("malformed packet from the broker")]
    Malformed,
    /// The broker sent a packet type a client never receives or this codec does not read.
    #[error("unsupported packet from the broker")]
    Unsupported,
    /// A packet larger than the receive buffer.
    #[error("packet larger than the receive buffer")]
    PacketTooLarge,
    /// A CONNACK outside the connect handshake.
    #[error("unexpected CONNACK")]
    UnexpectedConnAck,
    /// The broker answered CONNECT with a refusal code.
    #[error("broker refused the connection")]
    BrokerRefused,
    /// A provisioned configuration was applied: the session starts again under the new identity.
    #[error("provisioned")]
    Reprovisioned,
}
