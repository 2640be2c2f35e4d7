//! The node core's [`Transport`] over a smoltcp TCP socket: any board with a smoltcp `phy::Device`
//! uses it as is.

use rackwatch_firmware::{LinkError, LinkState, Transport};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::IpEndpoint;

/// First local port; each connection takes the next one, so a new SYN is never mistaken for a segment
/// of the previous connection.
const FIRST_LOCAL_PORT: u16 = 49_152;

/// The TCP connection to the broker. Built for each poll from the interface and socket set, which
/// the main loop owns.
pub struct TcpLink<'a, 'b> {
    /// The IP interface (for the connect's source address).
    pub interface: &'a mut Interface,
    /// The sockets the main loop polls.
    pub sockets: &'a mut SocketSet<'b>,
    /// The TCP socket of the broker connection.
    pub socket: SocketHandle,
    /// The broker's address and port.
    pub broker: IpEndpoint,
    /// The local port of the last connection.
    pub local_port: &'a mut u16,
}

impl core::fmt::Debug for TcpLink<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpLink")
            .field("broker", &self.broker)
            .field("local_port", &self.local_port)
            .finish_non_exhaustive()
    }
}

impl<'b> TcpLink<'_, 'b> {
    fn socket(&mut self) -> &mut tcp::Socket<'b> {
        self.sockets.get_mut::<tcp::Socket<'b>>(self.socket)
    }
}

impl<'b> Transport for TcpLink<'_, 'b> {
    fn open(&mut self) -> Result<(), LinkError> {
        *self.local_port = match self.local_port.checked_add(1) {
            Some(port) if port >= FIRST_LOCAL_PORT => port,
            _ => FIRST_LOCAL_PORT,
        };
        let (local_port, broker) = (*self.local_port, self.broker);
        let socket = self.sockets.get_mut::<tcp::Socket<'b>>(self.socket);
        socket.abort();
        socket
            .connect(self.interface.context(), broker, local_port)
            .map_err(|_| LinkError)
    }

    fn state(&mut self) -> LinkState {
        match self.socket().state() {
            tcp::State::Established => LinkState::Open,
            tcp::State::SynSent | tcp::State::SynReceived => LinkState::Opening,
            // Closed (refused or reset), or the broker closed its side (CloseWait and later).
            _ => LinkState::Closed,
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        self.socket().recv_slice(buf).map_err(|_| LinkError)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<usize, LinkError> {
        self.socket().send_slice(bytes).map_err(|_| LinkError)
    }

    /// An abort (RST): the next `open` needs the socket closed at once, not after TIME-WAIT, and the
    /// broker publishes the last will either way.
    fn close(&mut self) {
        self.socket().abort();
    }
}
