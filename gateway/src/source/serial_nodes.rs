//! The serial-attached nodes the gateway has heard, each with the port it answers on: the serial
//! source fills it from the frames it reads, and the alert engine sends a command for such a node as
//! a `Command` frame on its port instead of over MQTT (protocols/README.md, "Serial frames"). It
//! sits below both stages, so neither knows the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use rackwatch_protocols::frame::{self, FrameKind, MAX_ENCODED_LEN};
use rackwatch_protocols::{Command, NodeId};
use tokio::sync::mpsc;

/// The serial-attached nodes seen so far, each with the port it answers on.
#[derive(Debug, Clone, Default)]
pub struct SerialNodes(Arc<Mutex<HashMap<NodeId, mpsc::UnboundedSender<Bytes>>>>);

/// Why a command could not be handed to a serial port.
#[derive(Debug, thiserror::Error)]
pub enum SerialCommandError {
    #[error("encode: {0}")]
    Encode(rackwatch_protocols::EncodeError),
    #[error("frame: {0}")]
    Frame(frame::FrameError),
    #[error("the serial port of node {0} is closed")]
    PortClosed(NodeId),
}

impl SerialNodes {
    /// Notes the node a frame body names (telemetry, status, info and results all carry `node`).
    pub fn attach(&self, body: &[u8], port: &mpsc::UnboundedSender<Bytes>) {
        #[derive(serde::Deserialize)]
        struct Sender {
            node: NodeId,
        }
        let Ok(Sender { node }) = serde_json::from_slice::<Sender>(body) else {
            return;
        };
        let mut nodes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if nodes.get(&node).is_none_or(|known| !known.same_channel(port)) {
            nodes.insert(node, port.clone());
        }
    }

    /// Sends `command` to `node` as a `Command` frame (tag: the low byte of its id) when the node is
    /// serial-attached; `None` when it is not.
    pub fn command(&self, node: &NodeId, command: &Command) -> Option<Result<(), SerialCommandError>> {
        let port = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node)
            .cloned()?;
        let mut json = vec![0u8; rackwatch_protocols::MAX_MESSAGE_LEN];
        let sent = command
            .encode(&mut json)
            .map_err(SerialCommandError::Encode)
            .and_then(|len| {
                let mut line = vec![0u8; MAX_ENCODED_LEN + 1];
                let body = json.get(..len).unwrap_or_default();
                let tag = (command.id & 0xFF) as u8;
                let written = frame::encode(
                    FrameKind::Command,
                    tag,
                    body,
                    line.get_mut(1..).unwrap_or_default(),
                )
                .map_err(SerialCommandError::Frame)?;
                line.truncate(written + 1);
                port.send(Bytes::from(line))
                    .map_err(|_| SerialCommandError::PortClosed(node.clone()))
            });
        Some(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rackwatch_protocols::frame::FrameDecoder;

    #[test]
    fn a_command_goes_to_the_port_its_node_was_heard_on() {
        let nodes = SerialNodes::default();
        let (port, mut written) = mpsc::unbounded_channel();
        let command: Command = Command::decode(br#"{"v":1,"id":300,"action":"identify"}"#).unwrap();
        let node = NodeId::new("s1").unwrap();
        assert!(nodes.command(&node, &command).is_none(), "not heard yet");
        nodes.attach(br#"{"v":1,"node":"s1","state":"online","boot":1}"#, &port);
        nodes.command(&node, &command).unwrap().unwrap();
        let line = written.try_recv().unwrap();
        let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
        let parsed = decoder.feed(&line[1..]).1.unwrap().unwrap();
        assert_eq!((parsed.kind, parsed.tag), (FrameKind::Command, 300u32 as u8));
        assert_eq!(Command::decode(parsed.body).unwrap().id, 300);
    }
}
