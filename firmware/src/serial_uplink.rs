//! Telemetry over the serial line, as durable as MQTT at QoS 1 (protocols/README.md, "Serial frames"):
//! a serial-attached node sends each sampling round as a `Telemetry` frame and keeps it until the
//! gateway answers `Stored` (an [`Ack`] whose `id` is the round's `seq`), which the gateway sends only
//! after its spool commit. A round not acknowledged within the resend time is sent again, so a
//! gateway that died or a frame the line corrupted costs a delay, never a reading; the gateway drops a
//! repeated `(boot, seq)`.
//!
//! Sans-IO like the rest of the core: the board pushes rounds in, writes the frames [`poll_frame`]
//! returns, and feeds every received byte to [`feed`]. The pending rounds are a bounded ring: when it
//! is full the oldest is dropped and counted, and the count goes out in the next round's `dropped`.
//!
//! [`poll_frame`]: SerialUplink::poll_frame
//! [`feed`]: SerialUplink::feed

use rackwatch_protocols::frame::{self, FrameDecoder, FrameKind};
use rackwatch_protocols::{Ack, Command, Telemetry};

/// Frames sent and not yet acknowledged at once: a burst after an outage stays within a small UART
/// buffer, and the gateway's answers keep up.
pub const MAX_UNACKNOWLEDGED: usize = 8;

/// The longest frame the node takes from the gateway: an ack or a command.
const MAX_RECEIVED_FRAME: usize = 512;

/// One round waiting for the gateway's `Stored`.
#[derive(Debug, Clone)]
struct Pending {
    telemetry: Telemetry,
    /// When it was last sent, `None` before the first time.
    sent_at_ms: Option<u64>,
}

/// What a received frame asked of the node.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "no heap to box it in; one is handed over at a time"
)]
pub enum Received {
    /// The gateway stored the round with this `seq`; it is forgotten.
    Stored(u32),
    /// A command for the board to carry out and answer with a `Result` frame (tag = the frame's).
    Command(u8, Command),
}

/// The serial uplink of one node; `N` rounds are kept at most.
#[derive(Debug)]
pub struct SerialUplink<const N: usize> {
    pending: heapless::Deque<Pending, N>,
    dropped: u32,
    decoder: FrameDecoder<MAX_RECEIVED_FRAME>,
    resend_after_ms: u64,
    /// Frames from the gateway dropped for a bad CRC, COBS or length.
    bad_frames: u32,
}

impl<const N: usize> SerialUplink<N> {
    /// An uplink that sends a round again when `resend_after_ms` pass without its `Stored`.
    pub fn new(resend_after_ms: u64) -> Self {
        SerialUplink {
            pending: heapless::Deque::new(),
            dropped: 0,
            decoder: FrameDecoder::new(),
            resend_after_ms,
            bad_frames: 0,
        }
    }

    /// Keeps a sampling round until the gateway has stored it. The rounds dropped from a full ring
    /// so far are reported in its `dropped` field.
    pub fn push(&mut self, mut telemetry: Telemetry) {
        if self.pending.is_full() && self.pending.pop_front().is_some() {
            self.dropped = self.dropped.saturating_add(1);
        }
        telemetry.dropped = telemetry
            .dropped
            .saturating_add(core::mem::take(&mut self.dropped));
        if self
            .pending
            .push_back(Pending {
                telemetry,
                sent_at_ms: None,
            })
            .is_err()
        {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// The next frame to write, if any: the oldest round of the window that was never sent or whose
    /// `Stored` is overdue. `body` is scratch space for the JSON; the frame starts with a delimiter,
    /// so a line garbled before it ends there.
    pub fn poll_frame<'o>(&mut self, now_ms: u64, body: &mut [u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
        let resend_after = self.resend_after_ms;
        let due = self.pending.iter_mut().take(MAX_UNACKNOWLEDGED).find(|p| {
            p.sent_at_ms
                .is_none_or(|at| now_ms.saturating_sub(at) >= resend_after)
        })?;
        due.sent_at_ms = Some(now_ms);
        let len = due.telemetry.encode(body).ok()?;
        let (delimiter, rest) = out.split_first_mut()?;
        *delimiter = 0;
        // The tag is the low byte of `seq`, for a person reading the line; the ack names the seq.
        let tag = (due.telemetry.seq & 0xFF) as u8;
        let written = frame::encode(FrameKind::Telemetry, tag, body.get(..len)?, rest).ok()?;
        out.get(..written + 1)
    }

    /// Feeds bytes from the gateway; calls `on` for each frame that asks something of the node.
    /// A `Stored` removes its round at once.
    pub fn feed(&mut self, bytes: &[u8], mut on: impl FnMut(Received)) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (used, parsed) = self.decoder.feed(rest);
            rest = rest.get(used..).unwrap_or_default();
            let received = match parsed {
                None => continue,
                Some(Err(_)) => {
                    self.bad_frames = self.bad_frames.saturating_add(1);
                    continue;
                }
                Some(Ok(frame)) => match frame.kind {
                    FrameKind::Stored => Ack::decode(frame.body).ok().map(|ack| Received::Stored(ack.id)),
                    FrameKind::Command => Command::decode(frame.body)
                        .ok()
                        .map(|command| Received::Command(frame.tag, command)),
                    _ => None,
                },
            };
            if let Some(received) = received {
                if let Received::Stored(seq) = received {
                    self.forget(seq);
                }
                on(received);
            }
        }
    }

    fn forget(&mut self, seq: u32) {
        let Some(index) = self.pending.iter().position(|p| p.telemetry.seq == seq) else {
            return;
        };
        // Acks come in order almost always: the oldest is the common case.
        if index == 0 {
            self.pending.pop_front();
            return;
        }
        let mut kept: heapless::Deque<Pending, N> = heapless::Deque::new();
        for (i, pending) in core::mem::take(&mut self.pending).into_iter().enumerate() {
            if i != index {
                // Cannot fail: it held as many before.
                let _ = kept.push_back(pending);
            }
        }
        self.pending = kept;
    }

    /// Rounds kept, sent or not.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Frames from the gateway dropped as corrupt.
    pub fn bad_frames(&self) -> u32 {
        self.bad_frames
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use rackwatch_protocols::frame::MAX_ENCODED_LEN;
    use rackwatch_protocols::{AckResult, NodeId};

    use super::*;

    fn round(seq: u32) -> Telemetry {
        Telemetry {
            version: 1,
            node: NodeId::new("s1").unwrap(),
            boot: 7,
            seq,
            timestamp_ms: None,
            uptime_ms: u64::from(seq) * 1000,
            dropped: 0,
            readings: heapless::Vec::new(),
        }
    }

    /// The seqs of the frames the uplink writes at `now_ms`, until it has none.
    fn sent(uplink: &mut SerialUplink<4>, now_ms: u64) -> std::vec::Vec<u32> {
        let mut seqs = std::vec::Vec::new();
        let (mut body, mut out) = ([0u8; 1024], [0u8; MAX_ENCODED_LEN + 1]);
        while let Some(line) = uplink.poll_frame(now_ms, &mut body, &mut out) {
            let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
            let frame = decoder.feed(&line[1..]).1.unwrap().unwrap();
            assert_eq!(frame.kind, FrameKind::Telemetry);
            seqs.push(Telemetry::decode(frame.body).unwrap().seq);
        }
        seqs
    }

    fn stored(seq: u32) -> std::vec::Vec<u8> {
        let mut body = [0u8; 128];
        let n = Ack::new(seq, NodeId::new("s1").unwrap(), AckResult::Ok)
            .encode(&mut body)
            .unwrap();
        let mut out = [0u8; 256];
        let m = frame::encode(FrameKind::Stored, 0, &body[..n], &mut out).unwrap();
        out[..m].to_vec()
    }

    #[test]
    fn a_round_is_sent_again_until_the_gateway_stored_it() {
        let mut uplink = SerialUplink::<4>::new(1000);
        uplink.push(round(1));
        uplink.push(round(2));
        assert_eq!(sent(&mut uplink, 0), [1, 2]);
        assert_eq!(sent(&mut uplink, 500), [], "not yet overdue");
        let mut heard = std::vec::Vec::new();
        uplink.feed(&stored(1), |r| heard.push(r));
        assert_eq!(heard, [Received::Stored(1)]);
        assert_eq!(
            sent(&mut uplink, 1000),
            [2],
            "only the unacknowledged round again"
        );
        uplink.feed(&stored(2), |_| {});
        assert_eq!(uplink.pending(), 0);
        assert_eq!(sent(&mut uplink, 5000), []);
    }

    #[test]
    fn a_full_ring_drops_the_oldest_and_says_so_in_the_next_round() {
        let mut uplink = SerialUplink::<4>::new(1000);
        for seq in 0..6 {
            uplink.push(round(seq));
        }
        assert_eq!(sent(&mut uplink, 0), [2, 3, 4, 5]);
        uplink.push(round(6));
        let (mut body, mut out) = ([0u8; 1024], [0u8; MAX_ENCODED_LEN + 1]);
        let line = uplink.poll_frame(2000, &mut body, &mut out).unwrap().to_vec();
        let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
        let frame = decoder.feed(&line[1..]).1.unwrap().unwrap();
        let first = Telemetry::decode(frame.body).unwrap();
        assert_eq!(first.seq, 3, "2 was dropped for 6");
        assert_eq!(first.dropped, 0);
        assert_eq!(uplink.pending.iter().map(|p| p.telemetry.dropped).sum::<u32>(), 3);
    }

    #[test]
    fn a_corrupt_ack_is_counted_and_changes_nothing() {
        let mut uplink = SerialUplink::<4>::new(1000);
        uplink.push(round(1));
        let mut bad = stored(1);
        bad[3] ^= 0x40;
        uplink.feed(&bad, |_| panic!("nothing is heard"));
        assert_eq!((uplink.bad_frames(), uplink.pending()), (1, 1));
    }
}
