//! The TLS engine: one `async` task per link that waits for a connection to be asked for, runs the
//! `embedded-tls` handshake over the [`Pipe`], then moves application data until the link closes it
//! or it fails, and waits again. [`super::TlsLink`] polls it; it never blocks.

use core::future::{Future, poll_fn};
use core::pin::{Pin, pin};
use core::task::Poll;

use embedded_tls::{
    Aes128GcmSha256, CryptoProvider, CryptoRngCore, TlsConfig, TlsConnection, TlsContext, TlsError,
    TlsVerifier, alert::AlertDescription,
};
use rand_core::{CryptoRng, RngCore};

use super::pipe::{Phase, Pipe, PipeSocket, PipeState};
use super::verify::NodeVerifier;
use super::{TlsBuffers, TlsSettings};
use crate::transport::LinkFailure;

/// Plaintext moved per step between the pipe and the connection (the engine may not hold a borrow
/// of the pipe across an `.await`, so it copies through this, one for each direction).
const CHUNK: usize = 128;

/// Runs connection after connection, for ever. The link polls it between moving bytes.
pub(super) async fn run<R: RngCore + CryptoRng>(
    pipe: &Pipe,
    buffers: &mut TlsBuffers,
    settings: TlsSettings<'_>,
    mut rng: R,
) -> core::convert::Infallible {
    loop {
        let generation = poll_fn(|_| match pipe.with(|s| (s.phase, s.generation)) {
            Some((Phase::Handshaking, generation)) => Poll::Ready(generation),
            _ => Poll::Pending,
        })
        .await;
        let outcome = connection(pipe, generation, buffers, &settings, &mut rng).await;
        pipe.with(|state| {
            if state.generation == generation {
                state.end(outcome.err().flatten());
            }
        });
    }
}

/// One connection: the handshake, then application data until it ends. `Err` names why it failed;
/// `Err(None)` is a connection the broker closed.
async fn connection<R: RngCore + CryptoRng>(
    pipe: &Pipe,
    generation: u32,
    buffers: &mut TlsBuffers,
    settings: &TlsSettings<'_>,
    rng: &mut R,
) -> Result<(), Option<LinkFailure>> {
    let TlsBuffers { read, write, anchor } = buffers;
    let config = TlsConfig::new()
        .with_server_name(settings.server_name)
        .with_max_fragment_length(super::MAX_FRAGMENT_LENGTH);
    let mut provider = NodeProvider {
        rng,
        verifier: NodeVerifier::new(settings.trust, settings.server_name, anchor),
    };
    let socket = PipeSocket { pipe, generation };
    let mut tls: TlsConnection<'_, _, Aes128GcmSha256> = TlsConnection::new(socket, read, write);
    if let Err(error) = tls.open(TlsContext::new(&config, &mut provider)).await {
        return Err(provider.verifier.refused.or_else(|| classify(error, pipe)));
    }
    pipe.with(|state| {
        if state.phase == Phase::Handshaking {
            state.phase = Phase::Established;
        }
    });
    // Reading and writing run side by side: a record that arrives alone (a session ticket) must not
    // hold up what the session sends.
    let ended = {
        let (mut reader, mut writer) = tls.split();
        let reading = pin!(read_records(pipe, generation, &mut reader));
        let writing = pin!(write_records(pipe, generation, &mut writer));
        first(reading, writing).await
    };
    match ended {
        Ok(End::Close) => {
            // close_notify (RFC 8446 §6.1); the link closes TCP right after, so no answer is awaited.
            let _ = tls.close().await;
            Ok(())
        }
        Ok(End::Abandoned) => Ok(()),
        Err(failure) => Err(failure),
    }
}

/// How the application-data phase ended without a failure.
enum End {
    /// The link asked to close.
    Close,
    /// The link moved on to a newer connection.
    Abandoned,
}

/// Waits until `ready` says what to do with the pipe's state.
async fn wait_for<T>(
    pipe: &Pipe,
    generation: u32,
    mut ready: impl FnMut(&mut PipeState) -> Option<T>,
) -> Result<T, End> {
    poll_fn(|_| {
        match pipe.with(|state| {
            if state.generation != generation {
                Some(Err(End::Abandoned))
            } else if state.phase == Phase::Closing {
                Some(Err(End::Close))
            } else {
                ready(state).map(Ok)
            }
        }) {
            Some(Some(result)) => Poll::Ready(result),
            Some(None) => Poll::Pending,
            None => Poll::Ready(Err(End::Abandoned)),
        }
    })
    .await
}

/// Decrypts records into `plain_in` while it has room.
async fn read_records<S: embedded_io_async::Read>(
    pipe: &Pipe,
    generation: u32,
    reader: &mut S,
) -> Result<End, Option<LinkFailure>>
where
    S::Error: Into<TlsError>,
{
    let mut chunk = [0u8; CHUNK];
    loop {
        let room = match wait_for(pipe, generation, |state| {
            let room = state.plain_in.spare().len().min(CHUNK);
            (room > 0 && (!state.cipher_in.filled().is_empty() || state.eof)).then_some(room)
        })
        .await
        {
            Ok(room) => room,
            Err(end) => return Ok(end),
        };
        let n = reader
            .read(chunk.get_mut(..room).unwrap_or_default())
            .await
            .map_err(|e| classify(e.into(), pipe))?;
        pipe.with(|state| state.plain_in.push(chunk.get(..n).unwrap_or_default()));
    }
}

/// Encrypts what `plain_out` holds, one record per batch the session handed over.
async fn write_records<S: embedded_io_async::Write>(
    pipe: &Pipe,
    generation: u32,
    writer: &mut S,
) -> Result<End, Option<LinkFailure>>
where
    S::Error: Into<TlsError>,
{
    let mut chunk = [0u8; CHUNK];
    loop {
        let n = match wait_for(pipe, generation, |state| {
            let waiting = state.plain_out.filled();
            let n = waiting.len().min(CHUNK);
            chunk.get_mut(..n)?.copy_from_slice(waiting.get(..n)?);
            (n > 0).then_some(n)
        })
        .await
        {
            Ok(n) => n,
            Err(end) => return Ok(end),
        };
        let taken = writer
            .write(chunk.get(..n).unwrap_or_default())
            .await
            .map_err(|e| classify(e.into(), pipe))?;
        let drained = pipe.with(|state| {
            state.plain_out.consume(taken);
            state.plain_out.filled().is_empty()
        });
        if drained != Some(false) {
            writer.flush().await.map_err(|e| classify(e.into(), pipe))?;
        }
    }
}

/// Polls both until one finishes; its result.
async fn first<T>(mut a: Pin<&mut impl Future<Output = T>>, mut b: Pin<&mut impl Future<Output = T>>) -> T {
    poll_fn(|cx| match a.as_mut().poll(cx) {
        Poll::Ready(done) => Poll::Ready(done),
        Poll::Pending => b.as_mut().poll(cx),
    })
    .await
}

/// Names an `embedded-tls` error for the session and the birth message; `None` for a connection
/// that simply closed (at a record boundary) or was abandoned.
fn classify(error: TlsError, pipe: &Pipe) -> Option<LinkFailure> {
    // The pipe may already know: a record cut short or too long for the buffer.
    match pipe.with(|s| (s.phase, s.eof)) {
        Some((Phase::Ended(failure), _)) => return failure,
        Some((_, true))
            if matches!(
                error,
                TlsError::IoError | TlsError::Io(_) | TlsError::ConnectionClosed
            ) =>
        {
            return None;
        }
        _ => {}
    }
    Some(match error {
        TlsError::HandshakeAborted(_, AlertDescription::ProtocolVersion)
        | TlsError::InvalidSupportedVersions => LinkFailure::ProtocolVersion,
        TlsError::HandshakeAborted(..) => LinkFailure::Alert,
        // After the handshake an alert arrives encrypted; embedded-tls reports any but close_notify so.
        TlsError::InternalError => LinkFailure::Alert,
        TlsError::InsufficientSpace => LinkFailure::RecordTooLarge,
        TlsError::InvalidCertificate => LinkFailure::UnknownCa,
        TlsError::InvalidSignature => LinkFailure::BadSignature,
        TlsError::Io(_) | TlsError::IoError | TlsError::ConnectionClosed => return None,
        _ => LinkFailure::Protocol,
    })
}

/// The randomness and the verifier of one handshake.
struct NodeProvider<'a, R> {
    rng: &'a mut R,
    verifier: NodeVerifier<'a>,
}

impl<R: RngCore + CryptoRng> CryptoProvider for NodeProvider<'_, R> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = &'static [u8];

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Aes128GcmSha256>, TlsError> {
        Ok(&mut self.verifier)
    }
}
