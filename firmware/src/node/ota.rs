//! Firmware update frames in, their answers out: the node's side of `.../ota` and `.../ota/ack`.
//!
//! The node does not own the flash, so it does not install anything itself. A PUBLISH on `.../ota`
//! stays in the receive buffer, unacknowledged, until the board took its payload
//! ([`Node::ota_frame`]), fed it to its update agent ([`crate::ota::Ota`]) and handed back the answer
//! ([`Node::answer_ota`]): no copy of a 2 KiB chunk, and nothing more is read meanwhile, so a board
//! that is slow to write flash slows the gateway down instead of overflowing. The answer goes out on
//! `.../ota/ack` at QoS 1 through the in-flight queue, like every other message that must arrive.
//!
//! Only a board that called [`Node::accept_updates`] subscribes to `.../ota`.

use rackwatch_protocols::OtaAck;
use rackwatch_protocols::topic::{self, NodeTopic};

use crate::mqtt::{Packet, QoS};

use embedded_storage::nor_flash::NorFlash;

use crate::boot::BootControl;
use crate::ota::{FirmwareReport, Ota};
use crate::update::Answer;

use super::{MAX_OTA_ANSWERS, Node, OtaInbox};

impl<const RING: usize> Node<RING> {
    /// Hands the waiting update frame, if any, to the board's agent `ota` (writing into `slot`)
    /// and its answer back; `true` if there was one. A report that changed (a refused update) goes
    /// into the birth.
    pub fn serve_update<B: BootControl, F: NorFlash>(&mut self, ota: &mut Ota<B>, slot: &mut F) -> bool {
        let Some(frame) = self.ota_frame() else {
            return false;
        };
        let before = ota.report();
        let answer = ota.handle(frame, slot);
        self.answer_ota(answer);
        if ota.report() != before {
            self.accept_updates(ota.report());
        }
        true
    }

    /// The node reached the broker: an image on trial confirms itself through `ota`, and the birth
    /// says so.
    pub fn confirm_update<B: BootControl>(&mut self, ota: &mut Ota<B>) {
        if ota.connected() {
            self.accept_updates(ota.report());
        }
    }

    /// Subscribes to `.../ota` (from the next connection on) and makes the birth message carry
    /// `report`; called again when the report changes (a trial image confirmed), it publishes the
    /// birth again.
    pub fn accept_updates(&mut self, report: FirmwareReport) {
        let changed = self.firmware_report != Some(report);
        let first = self.firmware_report.is_none();
        self.firmware_report = Some(report);
        if self.is_online() && changed {
            self.birth_due = true;
            if first {
                self.subscribe_ota();
            }
        }
    }

    /// The payload of the update frame waiting for the board, if one is.
    pub fn ota_frame(&self) -> Option<&[u8]> {
        let inbox = self.ota_inbox?;
        self.rx
            .filled()
            .get(inbox.packet_len.saturating_sub(inbox.payload_len)..inbox.packet_len)
    }

    /// The board's answer to the frame from [`Self::ota_frame`]: acknowledges its PUBLISH, frees the
    /// receive buffer and queues the answer for `.../ota/ack`.
    pub fn answer_ota(&mut self, answer: Answer) {
        if let Some(inbox) = self.ota_inbox.take() {
            if let Some(packet_id) = inbox.packet_id {
                self.write(&Packet::PubAck { packet_id });
            }
            self.rx.consume(inbox.packet_len);
        }
        if self.ota_answers.len() >= MAX_OTA_ANSWERS {
            // The gateway waits for each answer before its next frame; more is a repeat: keep the newest.
            self.ota_answers.pop_front();
        }
        let _ = self.ota_answers.push_back(answer);
    }

    /// The ack message of an answer.
    pub(super) fn ota_ack(&self, answer: &Answer) -> OtaAck {
        OtaAck {
            version: rackwatch_protocols::VERSION,
            node: self.config.node.clone(),
            update: answer.update,
            offset: answer.offset,
            result: answer.result,
            reason: (!answer.reason.is_empty())
                .then(|| heapless::String::try_from(answer.reason).ok())
                .flatten(),
        }
    }

    /// A PUBLISH on `.../ota` of `packet_len` bytes sits at the front of the receive buffer.
    pub(super) fn hold_ota(&mut self, inbox: OtaInbox) {
        self.ota_inbox = Some(inbox);
    }

    pub(super) fn subscribe_ota(&mut self) {
        let filter = topic::node(&self.config.site, &self.config.node, NodeTopic::Ota);
        let packet_id = self.packet_id();
        self.write(&Packet::Subscribe {
            packet_id,
            filter: &filter,
            qos: QoS::AtLeastOnce,
        });
    }
}
