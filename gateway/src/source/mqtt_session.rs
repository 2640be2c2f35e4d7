//! The gateway's own short-lived-state MQTT connections (the alert engine's, the node commands'):
//! kept up until shutdown, reconnecting with back-off, each incoming packet handed to its owner,
//! and a clean DISCONNECT at the end. Unlike ingest's connection they have no persistent session:
//! whatever they need after a reconnect, their owner does again on each `ConnAck`.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Packet};

use crate::shutdown::Shutdown;

/// Polls `eventloop` until shutdown; `on_packet` gets every incoming packet (a `ConnAck` on every
/// (re)connect). `what` names the connection in log lines.
pub async fn drive(
    what: &'static str,
    client: AsyncClient,
    mut eventloop: EventLoop,
    mut shutdown: Shutdown,
    mut on_packet: impl FnMut(Packet),
) {
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = shutdown.recv() => break,
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(packet)) => {
                    if matches!(packet, Packet::ConnAck(_)) {
                        failures = 0;
                    }
                    on_packet(packet);
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => {
                    failures += 1;
                    let wait = Duration::from_millis(200)
                        .saturating_mul(1 << failures.min(6))
                        .min(Duration::from_secs(10));
                    tracing::warn!(retry_in_ms = wait.as_millis() as u64, "{what} MQTT connection: {e}");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.recv() => break,
                    }
                }
            }
        }
    }
    disconnect(&client, &mut eventloop).await;
}

/// Sends DISCONNECT and polls until it is out (at most 2 s), so the broker sees a clean leave and
/// does not publish the connection's last will.
pub async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = event {
                break;
            }
        }
    })
    .await;
}
