//! The bytes between [`super::TlsLink`] and the TLS engine: ciphertext from and to the TCP transport,
//! plaintext from and to the MQTT session, and where the connection stands.
//!
//! The engine is an `async` task that `embedded-tls` drives; it reads and writes through [`PipeSocket`],
//! which answers `Pending` when no ciphertext is waiting instead of blocking. The link moves bytes
//! between the transport and these queues and polls the engine, all inside `Node::poll`: no executor,
//! no heap. Every borrow of the state ends before an `.await`, so the link and the engine never hold
//! it at the same time.

use core::cell::RefCell;
use core::task::Poll;

use embedded_io::ErrorKind;

use crate::transport::LinkFailure;

/// TLS record header: content type, legacy version, length (RFC 8446 §5.1).
const RECORD_HEADER_LEN: usize = 5;

/// Ciphertext received from the transport and not yet read by the engine.
pub(super) const CIPHER_IN: usize = 512;
/// Ciphertext the engine wrote and the transport has not taken yet.
pub(super) const CIPHER_OUT: usize = 512;
/// Plaintext decrypted for the session.
pub(super) const PLAIN_IN: usize = 256;
/// Plaintext from the session, waiting to be encrypted.
pub(super) const PLAIN_OUT: usize = 512;

/// A byte queue in a fixed array.
#[derive(Debug)]
pub(super) struct Queue<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Queue<N> {
    const fn new() -> Self {
        Queue {
            bytes: [0; N],
            len: 0,
        }
    }

    pub(super) fn filled(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    pub(super) fn spare(&mut self) -> &mut [u8] {
        self.bytes.get_mut(self.len..).unwrap_or_default()
    }

    pub(super) fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(N);
    }

    /// Appends what fits of `bytes`: how many.
    pub(super) fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(N - self.len);
        if let (Some(to), Some(from)) = (self.bytes.get_mut(self.len..self.len + n), bytes.get(..n)) {
            to.copy_from_slice(from);
            self.len += n;
        }
        n
    }

    /// Moves up to `out.len()` bytes from the front into `out`: how many.
    pub(super) fn pop_into(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        if let (Some(to), Some(from)) = (out.get_mut(..n), self.bytes.get(..n)) {
            to.copy_from_slice(from);
        }
        self.consume(n);
        n
    }

    pub(super) fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.bytes.copy_within(n..self.len, 0);
        self.len -= n;
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// No connection.
    Idle,
    /// The transport is opening its TCP connection.
    TcpOpening,
    /// TCP is up; the engine runs the handshake.
    Handshaking,
    /// The handshake finished: application data flows.
    Established,
    /// The session asked to close; the engine sends `close_notify`.
    Closing,
    /// The connection ended; `Some` names why if it failed.
    Ended(Option<LinkFailure>),
}

/// Follows the record framing of the ciphertext received, so a connection that closes mid-record
/// and a record longer than the engine's buffer are named before the engine sees them.
#[derive(Debug, Default, Clone, Copy)]
struct Framing {
    header: [u8; RECORD_HEADER_LEN],
    header_len: usize,
    body_left: usize,
}

impl Framing {
    /// Takes in received bytes; `Err` if a record is longer than `max_body`.
    fn observe(&mut self, mut bytes: &[u8], max_body: usize) -> Result<(), LinkFailure> {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = bytes.get(n..).unwrap_or_default();
                continue;
            }
            let n = (RECORD_HEADER_LEN - self.header_len).min(bytes.len());
            if let (Some(to), Some(from)) = (
                self.header.get_mut(self.header_len..self.header_len + n),
                bytes.get(..n),
            ) {
                to.copy_from_slice(from);
            }
            self.header_len += n;
            bytes = bytes.get(n..).unwrap_or_default();
            if self.header_len == RECORD_HEADER_LEN {
                let [_, _, _, high, low] = self.header;
                self.body_left = usize::from(u16::from_be_bytes([high, low]));
                self.header_len = 0;
                if self.body_left > max_body {
                    return Err(LinkFailure::RecordTooLarge);
                }
            }
        }
        Ok(())
    }

    fn mid_record(&self) -> bool {
        self.header_len > 0 || self.body_left > 0
    }
}

/// What the link and the engine share.
#[derive(Debug)]
pub(super) struct PipeState {
    pub(super) phase: Phase,
    /// Counts connections, so an engine still busy with an abandoned one knows to stop.
    pub(super) generation: u32,
    /// The transport reported the connection closed or failed.
    pub(super) eof: bool,
    framing: Framing,
    /// Largest record body the engine's read buffer takes.
    max_record_body: usize,
    pub(super) cipher_in: Queue<CIPHER_IN>,
    pub(super) cipher_out: Queue<CIPHER_OUT>,
    pub(super) plain_in: Queue<PLAIN_IN>,
    pub(super) plain_out: Queue<PLAIN_OUT>,
}

/// The shared state, borrowed briefly by one side at a time.
#[derive(Debug)]
pub struct Pipe {
    state: RefCell<PipeState>,
}

impl Pipe {
    pub(super) const fn new(max_record_body: usize) -> Self {
        Pipe {
            state: RefCell::new(PipeState {
                phase: Phase::Idle,
                generation: 0,
                eof: false,
                framing: Framing {
                    header: [0; RECORD_HEADER_LEN],
                    header_len: 0,
                    body_left: 0,
                },
                max_record_body,
                cipher_in: Queue::new(),
                cipher_out: Queue::new(),
                plain_in: Queue::new(),
                plain_out: Queue::new(),
            }),
        }
    }

    /// Runs `f` on the state; `None` if it is borrowed (it never is: neither side re-enters).
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut PipeState) -> R) -> Option<R> {
        let mut state = self.state.try_borrow_mut().ok()?;
        Some(f(&mut state))
    }
}

/// What a round of the link compares to see whether anything moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Snapshot {
    phase: Phase,
    generation: u32,
    eof: bool,
    queued: [usize; 4],
}

impl PipeState {
    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            phase: self.phase,
            generation: self.generation,
            eof: self.eof,
            queued: [
                self.cipher_in.len,
                self.cipher_out.len,
                self.plain_in.len,
                self.plain_out.len,
            ],
        }
    }

    /// Starts a new connection: empty queues, new generation.
    pub(super) fn restart(&mut self, phase: Phase) {
        self.phase = phase;
        self.generation = self.generation.wrapping_add(1);
        self.eof = false;
        self.framing = Framing::default();
        self.cipher_in.clear();
        self.cipher_out.clear();
        self.plain_in.clear();
        self.plain_out.clear();
    }

    /// Ends the connection with `failure`, unless it has ended already.
    pub(super) fn end(&mut self, failure: Option<LinkFailure>) {
        if !matches!(self.phase, Phase::Ended(_) | Phase::Idle) {
            self.phase = Phase::Ended(failure);
        }
    }

    /// Ciphertext from the transport: queued, and its framing checked.
    pub(super) fn received(&mut self, n: usize) {
        let start = self.cipher_in.len;
        self.cipher_in.commit(n);
        let bytes = self.cipher_in.bytes.get(start..start + n).unwrap_or_default();
        if let Err(failure) = self.framing.observe(bytes, self.max_record_body) {
            self.end(Some(failure));
        }
    }

    /// The transport closed: a connection cut inside a record is a truncated record.
    pub(super) fn transport_closed(&mut self) {
        self.eof = true;
        if self.framing.mid_record() {
            self.end(Some(LinkFailure::TruncatedRecord));
        }
    }
}

/// The engine's socket: reads `cipher_in`, writes `cipher_out`, `Pending` while there is nothing to
/// read or no room to write. An abandoned connection (a newer generation) reads as an abort.
#[derive(Clone)]
pub(super) struct PipeSocket<'p> {
    pub(super) pipe: &'p Pipe,
    pub(super) generation: u32,
}

impl embedded_io::ErrorType for PipeSocket<'_> {
    type Error = ErrorKind;
}

impl PipeSocket<'_> {
    fn step<R>(
        &self,
        f: impl FnOnce(&mut PipeState) -> Poll<Result<R, ErrorKind>>,
    ) -> Poll<Result<R, ErrorKind>> {
        self.pipe
            .with(|state| {
                if state.generation != self.generation || matches!(state.phase, Phase::Ended(_)) {
                    return Poll::Ready(Err(ErrorKind::ConnectionAborted));
                }
                f(state)
            })
            .unwrap_or(Poll::Ready(Err(ErrorKind::Other)))
    }
}

impl embedded_io_async::Read for PipeSocket<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        core::future::poll_fn(|_| {
            self.step(|state| {
                if buf.is_empty() {
                    Poll::Ready(Ok(0))
                } else if !state.cipher_in.filled().is_empty() {
                    Poll::Ready(Ok(state.cipher_in.pop_into(buf)))
                } else if state.eof {
                    Poll::Ready(Ok(0))
                } else {
                    Poll::Pending
                }
            })
        })
        .await
    }
}

impl embedded_io_async::Write for PipeSocket<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<usize, ErrorKind> {
        core::future::poll_fn(|_| {
            self.step(|state| {
                if bytes.is_empty() {
                    return Poll::Ready(Ok(0));
                }
                match state.cipher_out.push(bytes) {
                    0 => Poll::Pending,
                    n => Poll::Ready(Ok(n)),
                }
            })
        })
        .await
    }

    /// The link hands `cipher_out` to the transport after every round; nothing to wait for here.
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}
