//! The node core's [`Transport`] over a smoltcp TCP socket: any board with a smoltcp `phy::Device`
//! uses it as is.

use rackwatch_firmware::{LinkError, LinkState, Transport};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};

/// The node's address on QEMU's user network (`-nic user`).
pub const NODE_ADDRESS: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
/// Its prefix length: 10.0.2.0/24.
pub const NODE_PREFIX: u8 = 24;
/// QEMU's user-network gateway, which is the host's loopback (where the broker runs).
pub const GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

/// The IP interface on QEMU's user network: static address, default route to its gateway. `seed`
/// varies TCP initial sequence numbers and ports from one boot to the next.
pub fn interface<D: Device + ?Sized>(nic: &mut D, mac: [u8; 6], seed: u64, now: Instant) -> Interface {
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    config.random_seed = seed;
    let mut interface = Interface::new(config, nic, now);
    interface.update_ip_addrs(|addresses| {
        let _ = addresses.push(IpCidr::new(IpAddress::Ipv4(NODE_ADDRESS), NODE_PREFIX));
    });
    let _ = interface.routes_mut().add_default_ipv4_route(GATEWAY);
    interface
}

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
