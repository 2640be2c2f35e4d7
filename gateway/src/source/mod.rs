//! Sources: where messages enter the gateway. Each hands [`crate::model::Incoming`] to the pipeline
//! through one bounded channel, so a slow spool slows the sources instead of growing memory.

pub mod lookout;
pub mod mqtt;
pub mod mqtt_session;
pub mod serial;
pub mod serial_nodes;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::model::{AckToken, Acknowledgement};

/// Hands each acknowledgement from ingest to the source that owes it: PUBACKs to the MQTT source,
/// `Stored` frames to the serial port whose node sent the telemetry. Ends when ingest is gone.
pub async fn route_acks(
    mut acks: mpsc::UnboundedReceiver<Acknowledgement>,
    mqtt: mpsc::UnboundedSender<AckToken>,
    serial: HashMap<Arc<str>, mpsc::UnboundedSender<Bytes>>,
) {
    while let Some(ack) = acks.recv().await {
        // A source that is gone (shutdown) is answered by its peer resending: nothing to do.
        match ack {
            Acknowledgement::Mqtt(token) => {
                let _ = mqtt.send(token);
            }
            Acknowledgement::Serial { port, frame } => {
                if let Some(port) = serial.get(&port) {
                    let _ = port.send(frame);
                }
            }
        }
    }
}
