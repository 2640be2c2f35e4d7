//! The serial source (tokio-serial): nodes on UART, USB CDC or RS-485 send COBS frames
//! (protocols/README.md, "Serial frames"); telemetry, status and result frames join the pipeline.
//! A port that fails or disappears is reopened with backoff; a bad frame is counted and skipped.

use std::sync::Arc;
use std::time::Duration;

use rackwatch_protocols::frame::{FrameDecoder, FrameKind};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_serial::SerialPortBuilderExt;

use crate::config::SerialConfig;
use crate::events::{Metrics, ReasonLabel};
use crate::model::{Incoming, Route, now_ms};
use crate::shutdown::Shutdown;

/// Reads frames from one port until shutdown.
pub async fn run(
    config: SerialConfig,
    incoming: mpsc::Sender<Incoming>,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    let port_name: Arc<str> = Arc::from(config.port.as_str());
    let mut failures = 0u32;
    while !shutdown.is_shutdown() {
        match tokio_serial::new(&config.port, config.baud).open_native_async() {
            Ok(mut port) => {
                tracing::info!(port = %port_name, "serial port open");
                failures = 0;
                let mut decoder: Box<FrameDecoder> = Box::default();
                let mut buffer = [0u8; 1024];
                loop {
                    let read = tokio::select! {
                        () = shutdown.recv() => return,
                        read = port.read(&mut buffer) => read,
                    };
                    let n = match read {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(port = %port_name, "serial read: {e}");
                            break;
                        }
                    };
                    let mut rest = buffer.get(..n).unwrap_or_default();
                    while !rest.is_empty() {
                        let (used, frame) = decoder.feed(rest);
                        rest = rest.get(used..).unwrap_or_default();
                        match frame {
                            Some(Ok(frame))
                                if matches!(
                                    frame.kind,
                                    FrameKind::Telemetry
                                        | FrameKind::Status
                                        | FrameKind::Info
                                        | FrameKind::Result
                                ) =>
                            {
                                let message = Incoming {
                                    route: Route::Serial {
                                        port: Arc::clone(&port_name),
                                        kind: frame.kind,
                                    },
                                    payload: bytes::Bytes::copy_from_slice(frame.body),
                                    received_ms: now_ms(),
                                    ack: None,
                                };
                                if incoming.send(message).await.is_err() {
                                    return;
                                }
                            }
                            Some(Ok(_)) | None => {}
                            Some(Err(e)) => {
                                metrics
                                    .messages_rejected
                                    .get_or_create(&ReasonLabel { reason: "bad_frame" })
                                    .inc();
                                tracing::debug!(port = %port_name, "serial frame dropped: {e}");
                            }
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
