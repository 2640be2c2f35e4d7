//! The fixed send and receive buffers of the MQTT session.

use rackwatch_protocols::MAX_MESSAGE_LEN;

/// The largest packet sent or received: a whole message plus topic and headers.
pub(super) const PACKET_CAPACITY: usize = MAX_MESSAGE_LEN + 256;

#[derive(Debug, Clone)]
pub(super) struct Buffer {
    pub(super) bytes: [u8; PACKET_CAPACITY],
    pub(super) len: usize,
}

impl Buffer {
    pub(super) const fn new() -> Self {
        Buffer {
            bytes: [0; PACKET_CAPACITY],
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
        self.len = (self.len + n).min(PACKET_CAPACITY);
    }

    /// Drops the first `n` bytes.
    pub(super) fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.bytes.copy_within(n..self.len, 0);
        self.len -= n;
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
    }
}
