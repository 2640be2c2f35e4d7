//! The core's [`Transport`] over an embassy-net TCP socket.
//!
//! `Node::poll` is synchronous and must never wait; embassy-net's socket calls are `async`. Each call
//! here polls the socket's future once ([`poll_once`]): a future that would wait (no bytes yet, no
//! room yet, handshake still running) counts as "nothing now", and the main loop polls the node again
//! a few milliseconds later. `connect`'s first poll already sends the SYN, so dropping its future
//! afterwards leaves the socket opening; [`Transport::state`] follows it from there.

use core::task::Poll;

use embassy_futures::poll_once;
use embassy_net::tcp::{State, TcpSocket};
use embassy_net::{IpEndpoint, Stack};
use rackwatch_firmware::{LinkError, LinkState, Transport};

/// The connection to the broker, or no network at all (the W5500 did not answer at boot).
pub enum BrokerLink<'a> {
    /// Over the W5500 and embassy-net.
    Ethernet {
        /// The network stack, for its DHCP state.
        stack: Stack<'a>,
        /// The one TCP socket the node uses.
        socket: TcpSocket<'a>,
        /// The broker from the configuration; `None` until the node is provisioned with one.
        broker: Option<IpEndpoint>,
    },
    /// Every open fails; the node samples and keeps its records until a reset brings the network.
    Absent,
}

impl core::fmt::Debug for BrokerLink<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BrokerLink::Ethernet { broker, .. } => f
                .debug_struct("BrokerLink::Ethernet")
                .field("broker", broker)
                .finish_non_exhaustive(),
            BrokerLink::Absent => f.write_str("BrokerLink::Absent"),
        }
    }
}

impl BrokerLink<'_> {
    /// Points the next connection at `broker`.
    pub fn set_broker(&mut self, endpoint: Option<IpEndpoint>) {
        if let BrokerLink::Ethernet { broker, .. } = self {
            *broker = endpoint;
        }
    }

    /// Whether DHCP has given the node an address.
    pub fn has_address(&self) -> bool {
        match self {
            BrokerLink::Ethernet { stack, .. } => stack.is_config_up(),
            BrokerLink::Absent => false,
        }
    }
}

impl Transport for BrokerLink<'_> {
    fn open(&mut self) -> Result<(), LinkError> {
        let BrokerLink::Ethernet {
            stack,
            socket,
            broker,
        } = self
        else {
            return Err(LinkError);
        };
        // No lease yet, or nowhere to go: fail now, the core backs off and tries again.
        let broker = broker.filter(|_| stack.is_config_up()).ok_or(LinkError)?;
        socket.abort();
        match poll_once(socket.connect(broker)) {
            Poll::Ready(Err(_)) => Err(LinkError),
            Poll::Ready(Ok(())) | Poll::Pending => Ok(()),
        }
    }

    fn state(&mut self) -> LinkState {
        let BrokerLink::Ethernet { socket, .. } = self else {
            return LinkState::Closed;
        };
        match socket.state() {
            State::Established => LinkState::Open,
            State::SynSent | State::SynReceived => LinkState::Opening,
            // Closed (refused, reset, timed out) or the broker closed its side (CloseWait and later).
            _ => LinkState::Closed,
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        let BrokerLink::Ethernet { socket, .. } = self else {
            return Err(LinkError);
        };
        match poll_once(socket.read(buf)) {
            // Ok(0) with a non-empty buffer is the broker's FIN: `state` reports it closed.
            Poll::Ready(read) => read.map_err(|_| LinkError),
            Poll::Pending => Ok(0),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<usize, LinkError> {
        let BrokerLink::Ethernet { socket, .. } = self else {
            return Err(LinkError);
        };
        match poll_once(socket.write(bytes)) {
            Poll::Ready(written) => written.map_err(|_| LinkError),
            Poll::Pending => Ok(0),
        }
    }

    /// An abort (RST), as on the QEMU board: the next `open` needs the socket closed at once.
    fn close(&mut self) {
        if let BrokerLink::Ethernet { socket, .. } = self {
            socket.abort();
        }
    }
}
