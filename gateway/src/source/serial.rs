//! The serial source (tokio-serial): nodes on UART, USB CDC or RS-485 send COBS frames
//! (protocols/README.md, "Serial frames"); telemetry, status and result frames join the pipeline.
//!
//! Serial telemetry is as durable as MQTT at QoS 1: each `Telemetry` frame carries a `Stored` frame
//! (an ack naming its `seq`) that ingest hands back once the readings are committed to the spool,
//! and this task writes it to the port; the node keeps and resends every round until then
//! (firmware `serial_uplink`), and ingest drops a repeated `(boot, seq)`.
//!
//! Commands reach serial nodes too: every node seen on a port is listed in [`SerialNodes`], and a
//! command for it goes out as a `Command` frame on that port; its `Result` frame comes back like an
//! MQTT ack.
//!
//! A port that fails or disappears is reopened with backoff. A frame whose COBS, length or CRC is
//! broken is counted and dead-lettered (as hex) like a rejected MQTT message; the node sends it again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rackwatch_protocols::frame::{self, FrameDecoder, FrameKind, MAX_ENCODED_LEN};
use rackwatch_protocols::{Ack, AckResult, Telemetry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_serial::SerialPortBuilderExt;

use crate::config::SerialConfig;
use crate::decode::{RejectReason, Rejection};
use crate::events::{MessageRejected, Metrics};
use crate::model::{Acknowledgement, Incoming, Route, now_ms};
use crate::shutdown::Shutdown;
use crate::source::serial_nodes::SerialNodes;
use crate::spool::deadletter::DeadLetters;

/// What one port's task needs besides its configuration.
#[derive(Debug)]
pub struct SerialPort {
    pub config: SerialConfig,
    pub incoming: mpsc::Sender<Incoming>,
    pub metrics: Arc<Metrics>,
    pub dead_letters: Arc<Mutex<DeadLetters>>,
    /// Frames to write to the port: the `Stored` answers ingest routes back, and commands.
    pub outgoing: mpsc::UnboundedReceiver<Bytes>,
    /// The sending side of `outgoing`, handed to [`SerialNodes`] for each node seen on the port.
    pub commands: mpsc::UnboundedSender<Bytes>,
    pub nodes: SerialNodes,
    pub shutdown: Shutdown,
}

/// Reads frames from one port and writes the answers until shutdown.
pub async fn run(port: SerialPort) {
    let SerialPort {
        config,
        incoming,
        metrics,
        dead_letters,
        mut outgoing,
        commands,
        nodes,
        mut shutdown,
    } = port;
    let port_name: Arc<str> = Arc::from(config.port.as_str());
    let mut failures = 0u32;
    while !shutdown.is_shutdown() {
        match tokio_serial::new(&config.port, config.baud).open_native_async() {
            Ok(stream) => {
                tracing::info!(port = %port_name, "serial port open");
                failures = 0;
                let (mut reader, mut writer) = tokio::io::split(stream);
                let mut frames = Framer::default();
                let mut buffer = [0u8; 1024];
                loop {
                    let n = tokio::select! {
                        () = shutdown.recv() => {
                            // Answer what was committed before leaving.
                            while let Ok(frame) = outgoing.try_recv() {
                                let _ = writer.write_all(&frame).await;
                            }
                            return;
                        }
                        Some(frame) = outgoing.recv() => {
                            if let Err(e) = writer.write_all(&frame).await {
                                tracing::warn!(port = %port_name, "serial write: {e}");
                                break;
                            }
                            continue;
                        }
                        read = reader.read(&mut buffer) => match read {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e) => {
                                tracing::warn!(port = %port_name, "serial read: {e}");
                                break;
                            }
                        },
                    };
                    for received in frames.feed(buffer.get(..n).unwrap_or_default()) {
                        let message = match received {
                            Framed::Message { kind, body } => {
                                nodes.attach(&body, &commands);
                                Incoming {
                                    ack: (kind == FrameKind::Telemetry)
                                        .then(|| stored_frame(&body))
                                        .flatten()
                                        .map(|frame| Acknowledgement::Serial {
                                            port: Arc::clone(&port_name),
                                            frame,
                                        }),
                                    route: Route::Serial {
                                        port: Arc::clone(&port_name),
                                        kind,
                                    },
                                    payload: body,
                                    received_ms: now_ms(),
                                }
                            }
                            Framed::Broken { raw, error } => {
                                bad_frame(&metrics, &dead_letters, &port_name, &raw, &error);
                                continue;
                            }
                        };
                        if incoming.send(message).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(port = %port_name, "cannot open serial port: {e}"),
        }
        failures += 1;
        let wait = Duration::from_millis(500).saturating_mul(1 << failures.min(5));
        tokio::select! {
            () = shutdown.recv() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The `Stored` answer to a telemetry frame: an ack naming its node and `seq`. `None` when the body
/// is not telemetry; ingest then dead-letters it, and the node sends it again.
fn stored_frame(body: &[u8]) -> Option<Bytes> {
    let telemetry = Telemetry::decode(body).ok()?;
    let ack = Ack::new(telemetry.seq, telemetry.node, AckResult::Ok);
    let mut json = [0u8; 256];
    let len = ack.encode(&mut json).ok()?;
    let mut line = vec![0u8; MAX_ENCODED_LEN + 1];
    // A leading delimiter ends whatever the node's receiver half-read before.
    let written = frame::encode(FrameKind::Stored, 0, json.get(..len)?, line.get_mut(1..)?).ok()?;
    line.truncate(written + 1);
    Some(Bytes::from(line))
}

/// A broken frame: counted and kept, like a rejected MQTT message.
fn bad_frame(metrics: &Metrics, dead_letters: &Mutex<DeadLetters>, port: &str, raw: &[u8], error: &str) {
    let rejection = Rejection {
        reason: RejectReason::BadFrame,
        node: None,
        detail: error.to_owned(),
    };
    MessageRejected {
        reason: rejection.reason.as_str(),
        node: None,
        detail: error,
        topic: Some(port),
    }
    .emit(metrics);
    let mut letters = dead_letters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Synced at once: no commit may follow soon to sync it (the node's resend is a new frame).
    if let Err(e) = letters
        .record(now_ms(), rejection.reason.as_str(), Some(port), None, error, raw)
        .and_then(|()| letters.sync())
    {
        tracing::error!("dead-letter file: {e}");
    }
}

/// What the framer found in the byte stream.
#[derive(Debug)]
enum Framed {
    /// A frame the pipeline takes.
    Message { kind: FrameKind, body: Bytes },
    /// A frame that failed its COBS, length or CRC check, as it was on the line.
    Broken { raw: Vec<u8>, error: String },
}

/// Splits the byte stream into frames and keeps each frame's raw bytes, for a broken one's dead
/// letter.
#[derive(Debug, Default)]
struct Framer {
    decoder: Box<FrameDecoder>,
    raw: Vec<u8>,
}

impl Framer {
    fn feed(&mut self, mut bytes: &[u8]) -> Vec<Framed> {
        let mut found = Vec::new();
        while !bytes.is_empty() {
            let (used, frame) = self.decoder.feed(bytes);
            if self.raw.len() < MAX_ENCODED_LEN {
                self.raw.extend_from_slice(bytes.get(..used).unwrap_or_default());
            }
            bytes = bytes.get(used..).unwrap_or_default();
            let Some(frame) = frame else { continue };
            let raw = std::mem::take(&mut self.raw);
            match frame {
                Ok(frame)
                    if matches!(
                        frame.kind,
                        FrameKind::Telemetry | FrameKind::Status | FrameKind::Info | FrameKind::Result
                    ) =>
                {
                    found.push(Framed::Message {
                        kind: frame.kind,
                        body: Bytes::copy_from_slice(frame.body),
                    });
                }
                // Log lines and the host's own frames echoed back: not data.
                Ok(_) => {}
                Err(e) => found.push(Framed::Broken {
                    raw,
                    error: e.to_string(),
                }),
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: FrameKind, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; MAX_ENCODED_LEN];
        let n = frame::encode(kind, 1, body, &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn broken_frames_are_reported_with_their_bytes_and_the_stream_goes_on() {
        let mut framer = Framer::default();
        let mut bad = line(FrameKind::Status, b"{\"x\":1}");
        bad[4] ^= 0x10;
        let mut stream = bad.clone();
        stream.extend(line(FrameKind::Status, b"{\"y\":2}"));
        let found = framer.feed(&stream);
        assert!(matches!(&found[0], Framed::Broken { raw, error } if *raw == bad && error.contains("CRC")));
        assert!(
            matches!(&found[1], Framed::Message { kind: FrameKind::Status, body } if &body[..] == b"{\"y\":2}")
        );
    }

    #[test]
    fn telemetry_is_answered_with_stored_naming_its_seq() {
        let body = br#"{"v":1,"node":"s1","boot":3,"seq":41,"up":5,"readings":[]}"#;
        let frame = stored_frame(body).unwrap();
        assert_eq!(frame[0], 0, "starts with a delimiter");
        let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
        let parsed = decoder.feed(&frame[1..]).1.unwrap().unwrap();
        assert_eq!(parsed.kind, FrameKind::Stored);
        let ack = Ack::decode(parsed.body).unwrap();
        assert_eq!((ack.id, ack.node.as_str()), (41, "s1"));
        assert_eq!(stored_frame(b"not telemetry"), None);
    }
}
