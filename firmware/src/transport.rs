//! The byte stream to the broker, as the core sees it: non-blocking, opened and closed on request.
//!
//! The board implements it over a smoltcp TCP socket, the host over a tokio `TcpStream`, the tests over
//! a scripted fake. Nothing here blocks: the core calls it from `Node::poll` and comes back later.

pub use rackwatch_protocols::LinkFailure;

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No connection, or it was lost (refused, reset, closed by the peer).
    Closed,
    /// [`Transport::open`] was called and the connection is not up yet.
    Opening,
    /// Bytes can flow.
    Open,
}

/// The connection failed or went away; the core closes it and reconnects later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkError;

/// A non-blocking byte stream to the broker.
pub trait Transport {
    /// Starts opening a connection to the broker (any earlier one is closed first).
    fn open(&mut self) -> Result<(), LinkError>;
    /// Where the connection is now.
    fn state(&mut self) -> LinkState;
    /// Copies received bytes into `buf`: how many, `Ok(0)` when none are waiting.
    fn receive(&mut self, buf: &mut [u8]) -> Result<usize, LinkError>;
    /// Queues bytes to send: how many were taken, `Ok(0)` when the stream cannot take more now.
    fn send(&mut self, bytes: &[u8]) -> Result<usize, LinkError>;
    /// Closes the connection (a FIN if it was open).
    fn close(&mut self);
    /// Why the connection failed, when the transport knows more than "closed": a TLS link names the
    /// certificate or protocol problem. The session asks before it closes a lost connection.
    fn failure(&mut self) -> Option<LinkFailure> {
        None
    }
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn open(&mut self) -> Result<(), LinkError> {
        (**self).open()
    }
    fn state(&mut self) -> LinkState {
        (**self).state()
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        (**self).receive(buf)
    }
    fn send(&mut self, bytes: &[u8]) -> Result<usize, LinkError> {
        (**self).send(bytes)
    }
    fn close(&mut self) {
        (**self).close();
    }
    fn failure(&mut self) -> Option<LinkFailure> {
        (**self).failure()
    }
}
