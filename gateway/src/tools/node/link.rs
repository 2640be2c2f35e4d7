//! Request and answer over a node's serial line (protocols/README.md, "Serial frames").
//!
//! Every request carries a fresh tag and waits for an answer of the expected kind with that tag. A
//! frame that fails its CRC or COBS check is dropped and counted; when no good answer came within the
//! timeout the same request goes again, up to `attempts` times. The node ignores a frame it cannot
//! read, so a request corrupted on the way out is retried the same way. Resending a `SetConfig` is
//! harmless: the node stores the same configuration again.

use std::time::Duration;

use rackwatch_protocols::frame::{self, FrameDecoder, FrameError, FrameKind, MAX_ENCODED_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What arrived on the line between two delimiters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A frame whose CRC matched.
    Frame { kind: FrameKind, tag: u8, body: Vec<u8> },
    /// Plain text the node printed before a host attached (its boot log).
    Text(String),
    /// A frame that was dropped: CRC mismatch, broken COBS, too short or too long.
    Bad(FrameError),
}

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "no answer to {request:?} after {attempts} attempts of {timeout:?} each ({bad_frames} bad frames dropped): is a rackwatch node on this port?"
    )]
    NoAnswer {
        request: FrameKind,
        attempts: u32,
        timeout: Duration,
        bad_frames: u32,
    },
    #[error("serial line: {0}")]
    Io(#[from] std::io::Error),
    #[error("the serial line closed")]
    Closed,
}

/// A node's serial line.
#[derive(Debug)]
pub struct FrameLink<S> {
    stream: S,
    decoder: Box<FrameDecoder<MAX_ENCODED_LEN>>,
    /// Bytes since the last delimiter.
    segment: Vec<u8>,
    /// Bytes read but not yet split into segments.
    unread: std::collections::VecDeque<u8>,
    next_tag: u8,
    /// How long to wait for each answer.
    pub timeout: Duration,
    /// How often a request is sent before giving up.
    pub attempts: u32,
    /// Frames dropped for a bad CRC or encoding so far.
    pub bad_frames: u32,
    /// Requests sent again because no good answer came in time.
    pub resent: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameLink<S> {
    pub fn new(stream: S, timeout: Duration, attempts: u32) -> Self {
        FrameLink {
            stream,
            decoder: Box::new(FrameDecoder::new()),
            segment: Vec::new(),
            unread: std::collections::VecDeque::new(),
            next_tag: 1,
            timeout,
            attempts: attempts.max(1),
            bad_frames: 0,
            resent: 0,
        }
    }

    /// Sends `kind` with `body` and returns the body of the answer of kind `answer`.
    pub async fn request(
        &mut self,
        kind: FrameKind,
        body: &[u8],
        answer: FrameKind,
    ) -> Result<Vec<u8>, LinkError> {
        for attempt in 1..=self.attempts {
            let tag = self.next_tag;
            self.next_tag = self.next_tag.wrapping_add(1).max(1);
            self.send(kind, tag, body).await?;
            match tokio::time::timeout(self.timeout, self.answer(tag, answer)).await {
                Ok(result) => return result,
                Err(_) if attempt < self.attempts => {
                    self.resent += 1;
                    tracing::debug!(
                        "no answer to {kind:?} (tag {tag}) in {:?}, sending again",
                        self.timeout
                    );
                }
                Err(_) => {}
            }
        }
        Err(LinkError::NoAnswer {
            request: kind,
            attempts: self.attempts,
            timeout: self.timeout,
            bad_frames: self.bad_frames,
        })
    }

    /// Writes one frame, with a delimiter before it so any noise on the line ends first.
    pub async fn send(&mut self, kind: FrameKind, tag: u8, body: &[u8]) -> Result<(), LinkError> {
        let mut out = vec![0u8; MAX_ENCODED_LEN + 1];
        let len = frame::encode(kind, tag, body, out.get_mut(1..).unwrap_or_default())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.stream.write_all(out.get(..=len).unwrap_or_default()).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn answer(&mut self, tag: u8, answer: FrameKind) -> Result<Vec<u8>, LinkError> {
        loop {
            match self.receive().await? {
                Received::Frame { kind, tag: got, body } if kind == answer && got == tag => return Ok(body),
                Received::Frame { kind, tag: got, .. } => {
                    tracing::debug!(
                        "ignoring {kind:?} frame (tag {got}) while waiting for {answer:?} (tag {tag})"
                    );
                }
                Received::Bad(error) => tracing::warn!("dropped a frame from the node: {error}; retrying"),
                Received::Text(_) => {}
            }
        }
    }

    /// How the line went so far, for the user: "clean", or what was dropped and sent again.
    pub fn health(&self) -> String {
        match (self.bad_frames, self.resent) {
            (0, 0) => "clean line".to_owned(),
            (bad, resent) => format!("{bad} corrupted frame(s) dropped, {resent} request(s) sent again"),
        }
    }

    /// The next frame, text segment or dropped frame from the line.
    pub async fn receive(&mut self) -> Result<Received, LinkError> {
        loop {
            while let Some(byte) = self.unread.pop_front() {
                if byte != 0 {
                    self.segment.push(byte);
                    continue;
                }
                if self.segment.is_empty() {
                    continue;
                }
                let mut segment = std::mem::take(&mut self.segment);
                segment.push(0);
                let received = match self.decoder.feed(&segment).1 {
                    Some(Ok(frame)) => Received::Frame {
                        kind: frame.kind,
                        tag: frame.tag,
                        body: frame.body.to_vec(),
                    },
                    Some(Err(error)) => match text(segment.get(..segment.len() - 1).unwrap_or_default()) {
                        Some(line) => Received::Text(line),
                        None => {
                            self.bad_frames += 1;
                            Received::Bad(error)
                        }
                    },
                    None => continue,
                };
                return Ok(received);
            }
            let mut chunk = [0u8; 512];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(LinkError::Closed);
            }
            self.unread.extend(chunk.get(..n).unwrap_or_default());
        }
    }
}

/// Printable text ending in a line break: a log line written before a host attached.
fn text(segment: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(segment).ok()?;
    let printable = line
        .chars()
        .all(|c| !c.is_control() || c == '\r' || c == '\n' || c == '\t');
    (printable && line.ends_with('\n')).then(|| line.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    /// A node on the other end of a pipe that answers each Hello with an Info; the first `corrupt`
    /// answers have one bit flipped on the way.
    async fn fake_node(mut line: DuplexStream, mut corrupt: u32) {
        let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
        let mut buf = [0u8; 256];
        loop {
            let Ok(n) = line.read(&mut buf).await else { return };
            if n == 0 {
                return;
            }
            let mut input = &buf[..n];
            while !input.is_empty() {
                let (used, frame) = decoder.feed(input);
                input = &input[used..];
                let Some(Ok(frame)) = frame else { continue };
                let tag = frame.tag;
                let mut out = [0u8; 256];
                let len = frame::encode(FrameKind::Info, tag, br#"{"node":"n1"}"#, &mut out).unwrap();
                if corrupt > 0 {
                    corrupt -= 1;
                    out[5] ^= 0x04;
                }
                line.write_all(&out[..len]).await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_corrupted_answer_is_rejected_by_the_crc_and_the_request_retried() {
        let (host, node) = tokio::io::duplex(4096);
        tokio::spawn(fake_node(node, 2));
        let mut link = FrameLink::new(host, Duration::from_millis(200), 4);
        let body = link
            .request(FrameKind::Hello, b"", FrameKind::Info)
            .await
            .unwrap();
        assert_eq!(body, br#"{"node":"n1"}"#);
        assert_eq!((link.bad_frames, link.resent), (2, 2));
    }

    #[tokio::test]
    async fn silence_is_a_clear_error_within_the_timeout() {
        let (host, _node) = tokio::io::duplex(4096);
        let mut link = FrameLink::new(host, Duration::from_millis(100), 3);
        let started = std::time::Instant::now();
        let error = link
            .request(FrameKind::Hello, b"", FrameKind::Info)
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(1000));
        assert!(
            error
                .to_string()
                .starts_with("no answer to Hello after 3 attempts"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn boot_text_before_a_frame_is_kept_apart_from_it() {
        let (host, mut node) = tokio::io::duplex(4096);
        let mut link = FrameLink::new(host, Duration::from_millis(100), 1);
        let mut out = [0u8; 64];
        let len = frame::encode(FrameKind::Log, 0, b"hi", &mut out).unwrap();
        node.write_all(b"rackwatch node booting\r\n\0").await.unwrap();
        node.write_all(&out[..len]).await.unwrap();
        assert_eq!(
            link.receive().await.unwrap(),
            Received::Text("rackwatch node booting".into())
        );
        assert_eq!(
            link.receive().await.unwrap(),
            Received::Frame {
                kind: FrameKind::Log,
                tag: 0,
                body: b"hi".to_vec()
            }
        );
    }
}
