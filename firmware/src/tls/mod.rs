//! TLS 1.3 to the broker (feature `tls`): [`TlsLink`] is a [`Transport`] that encrypts another one,
//! so the MQTT session runs unchanged over TLS on the host (tokio TCP), the QEMU board and the
//! W5500-EVB-Pico (smoltcp).
//!
//! `embedded-tls` (no_std, no heap) does the protocol: TLS_AES_128_GCM_SHA256, ECDHE on P-256, the
//! broker's ECDSA P-256 certificate checked against the CA the node was provisioned with and the
//! broker's host name ([`verify`](self) explains what is and is not checked). Its API is `async`; the
//! engine future runs inside `Node::poll`, polled by the link whenever it moves bytes, so the core
//! stays sans-IO: no executor, no thread, no blocking.
//!
//! The caller owns the memory, so a board can keep it in a static:
//!
//! ```ignore
//! let mut state = TlsState::new();                           // pipe and record buffers
//! let (pipe, buffers) = state.parts();
//! let engine = core::pin::pin!(tls::engine(pipe, buffers, settings, rng));
//! let mut client = TlsClient::new(pipe, engine);
//! loop {
//!     node.poll(now, &mut sensors, &mut client.over(&mut tcp));  // tcp: the plain Transport
//! }
//! ```
//!
//! RAM: [`TlsState`] (record buffers sized by the max_fragment_length extension, RFC 6066 §4, and
//! the pipe's queues) plus the engine future (keys, transcript, the server certificate); the host
//! test `tls_state_fits_its_budget` prints both. A failure is a [`LinkFailure`] the session reports;
//! there is no fallback to plain TCP anywhere in this module.

mod engine;
mod pipe;
mod rng;
mod verify;

use core::convert::Infallible;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Waker};

use embedded_tls::MaxFragmentLength;
use rackwatch_protocols::MAX_CA_DER;
use rand_core::{CryptoRng, RngCore};

use crate::transport::{LinkError, LinkFailure, LinkState, Transport};
use pipe::Phase;
pub use pipe::Pipe;
pub use rng::SeededRng;
pub use verify::{MAX_SERVER_CERTIFICATE, Trust};

/// The plaintext a record carries at most, asked of the broker with max_fragment_length (RFC 6066
/// §4; OpenSSL, hence Mosquitto, honours it). It also bounds the handshake: the broker's certificate
/// message must fit one record, so the broker sends its own certificate, not the chain.
pub const MAX_FRAGMENT_LENGTH: MaxFragmentLength = MaxFragmentLength::Bits10;
const FRAGMENT: usize = 1024;
/// A received record's body: the fragment, its content type, the AEAD tag and padding, at most 256
/// bytes over the plaintext (RFC 8446 §5.2).
pub const READ_RECORD: usize = FRAGMENT + 256;
/// A sent record: the session's bytes go out in records of up to 512 bytes, plus `embedded-tls`'s
/// reserve for header, content type and tag; the ClientHello (about 200 bytes) fits too.
pub const WRITE_RECORD: usize = 512 + embedded_tls::TLS_RECORD_OVERHEAD;
/// Rounds of moving bytes per call, so one poll stays bounded even if the broker floods.
const MAX_ROUNDS: usize = 32;

/// What the broker must prove: its certificate chains to the trusted CA and names `server_name`.
#[derive(Debug, Clone, Copy)]
pub struct TlsSettings<'a> {
    /// The broker's DNS name: sent as SNI (RFC 6066 §3) and matched against its certificate.
    pub server_name: &'a str,
    pub trust: Trust<'a>,
}

impl<'a> TlsSettings<'a> {
    /// The settings a provisioned configuration asks for: `None` without `tls`, or with `tls` but
    /// neither a CA nor a pin (`provisioning::check` refuses such a configuration).
    pub fn of(broker: &'a rackwatch_protocols::BrokerConfig) -> Option<Self> {
        if !broker.tls {
            return None;
        }
        let trust = match (&broker.ca, &broker.ca_pin) {
            (Some(ca), _) => Trust::Ca(ca.der()),
            (None, Some(pin)) => Trust::Pin(pin.0),
            (None, None) => return None,
        };
        Some(TlsSettings {
            server_name: broker.tls_name(),
            trust,
        })
    }
}

/// The record buffers the engine encrypts and decrypts in, and where a pinned CA is kept.
#[derive(Debug)]
pub struct TlsBuffers {
    read: [u8; READ_RECORD],
    write: [u8; WRITE_RECORD],
    /// With [`Trust::Pin`]: the broker's CA, once it matched the pin, for the handshake's length.
    anchor: [u8; MAX_CA_DER],
}

/// The memory of one TLS link but the engine future: record buffers and the pipe.
#[derive(Debug)]
pub struct TlsState {
    pipe: Pipe,
    buffers: TlsBuffers,
}

impl Default for TlsState {
    fn default() -> Self {
        Self::new()
    }
}

impl TlsState {
    pub const fn new() -> Self {
        TlsState {
            pipe: Pipe::new(READ_RECORD),
            buffers: TlsBuffers {
                read: [0; READ_RECORD],
                write: [0; WRITE_RECORD],
                anchor: [0; MAX_CA_DER],
            },
        }
    }

    /// The pipe (shared by the link and the engine) and the buffers (the engine's alone).
    pub fn parts(&mut self) -> (&Pipe, &mut TlsBuffers) {
        (&self.pipe, &mut self.buffers)
    }
}

/// The engine of a link: pin it (`core::pin::pin!`, or `Box::pin` on the host) and hand it to
/// [`TlsClient::new`]. `rng` must be a cryptographic generator: it makes the ECDHE key.
pub fn engine<'a, R: RngCore + CryptoRng + 'a>(
    pipe: &'a Pipe,
    buffers: &'a mut TlsBuffers,
    settings: TlsSettings<'a>,
    rng: R,
) -> impl Future<Output = Infallible> + 'a {
    engine::run(pipe, buffers, settings, rng)
}

/// The long-lived half of a TLS link: the pipe and the pinned engine.
pub struct TlsClient<'a, F> {
    pipe: &'a Pipe,
    engine: Pin<&'a mut F>,
}

impl<F> core::fmt::Debug for TlsClient<'_, F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsClient")
            .field("pipe", &self.pipe)
            .finish_non_exhaustive()
    }
}

impl<'a, F: Future<Output = Infallible>> TlsClient<'a, F> {
    pub fn new(pipe: &'a Pipe, engine: Pin<&'a mut F>) -> Self {
        TlsClient { pipe, engine }
    }

    /// The link for this poll, over `tcp` (which a board may build afresh for each poll).
    pub fn over<T: Transport>(&mut self, tcp: T) -> TlsLink<'_, 'a, T, F> {
        TlsLink { client: self, tcp }
    }
}

/// A [`Transport`] that speaks TLS 1.3 over `tcp`.
pub struct TlsLink<'c, 'a, T, F> {
    client: &'c mut TlsClient<'a, F>,
    tcp: T,
}

impl<T, F> core::fmt::Debug for TlsLink<'_, '_, T, F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsLink")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl<T: Transport, F: Future<Output = Infallible>> TlsLink<'_, '_, T, F> {
    fn phase(&self) -> Phase {
        self.client.pipe.with(|s| s.phase).unwrap_or(Phase::Idle)
    }

    /// Moves ciphertext between `tcp` and the pipe and lets the engine work, until nothing moves.
    fn pump(&mut self) {
        let pipe = self.client.pipe;
        for _ in 0..MAX_ROUNDS {
            let before = pipe.with(|s| s.snapshot());
            let tcp = &mut self.tcp;
            pipe.with(|s| {
                if matches!(s.phase, Phase::Handshaking | Phase::Established | Phase::Closing) && !s.eof {
                    if tcp.state() == LinkState::Closed {
                        s.transport_closed();
                    } else {
                        match tcp.receive(s.cipher_in.spare()) {
                            Ok(n) => s.received(n),
                            Err(LinkError) => s.transport_closed(),
                        }
                    }
                }
            });
            let _ = self
                .client
                .engine
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
            let tcp = &mut self.tcp;
            pipe.with(|s| {
                if !s.cipher_out.filled().is_empty() && !s.eof {
                    match tcp.send(s.cipher_out.filled()) {
                        Ok(n) => s.cipher_out.consume(n),
                        Err(LinkError) => s.transport_closed(),
                    }
                }
            });
            if pipe.with(|s| s.snapshot()) == before {
                break;
            }
        }
    }
}

impl<T: Transport, F: Future<Output = Infallible>> Transport for TlsLink<'_, '_, T, F> {
    fn open(&mut self) -> Result<(), LinkError> {
        self.client.pipe.with(|s| s.restart(Phase::TcpOpening));
        // The engine leaves any earlier connection before this one starts.
        self.pump();
        self.tcp.open()
    }

    fn state(&mut self) -> LinkState {
        if self.phase() == Phase::TcpOpening {
            match self.tcp.state() {
                LinkState::Opening => return LinkState::Opening,
                LinkState::Closed => {
                    self.client.pipe.with(|s| s.end(None));
                    return LinkState::Closed;
                }
                LinkState::Open => {
                    self.client.pipe.with(|s| s.phase = Phase::Handshaking);
                }
            }
        }
        self.pump();
        match self.phase() {
            Phase::Idle | Phase::Ended(_) => LinkState::Closed,
            Phase::TcpOpening | Phase::Handshaking => LinkState::Opening,
            Phase::Established | Phase::Closing => LinkState::Open,
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        self.pump();
        self.client
            .pipe
            .with(|s| match s.phase {
                Phase::Established => Ok(s.plain_in.pop_into(buf)),
                _ => Err(LinkError),
            })
            .unwrap_or(Err(LinkError))
    }

    fn send(&mut self, bytes: &[u8]) -> Result<usize, LinkError> {
        let taken = self
            .client
            .pipe
            .with(|s| match s.phase {
                Phase::Established => Ok(s.plain_out.push(bytes)),
                _ => Err(LinkError),
            })
            .unwrap_or(Err(LinkError))?;
        self.pump();
        Ok(taken)
    }

    fn close(&mut self) {
        if self.phase() == Phase::Established {
            self.client.pipe.with(|s| s.phase = Phase::Closing);
            self.pump();
        }
        self.tcp.close();
        self.client.pipe.with(|s| s.restart(Phase::Idle));
        self.pump();
    }

    fn failure(&mut self) -> Option<LinkFailure> {
        match self.phase() {
            Phase::Ended(failure) => failure,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
