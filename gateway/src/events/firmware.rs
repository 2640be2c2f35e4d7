//! Events of fleet firmware updates.

use super::metrics::{Metrics, ReasonLabel};

/// A node's firmware update failed: it refused the update, rolled back, or went silent.
#[derive(Debug)]
pub struct FirmwareUpdateFailed<'a> {
    pub node: &'a str,
    /// A fixed label (`hash_mismatch`, `rolled_back`, `timeout`, ...).
    pub reason: &'static str,
}

impl FirmwareUpdateFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics
            .firmware_update_failures
            .get_or_create(&ReasonLabel { reason: self.reason })
            .inc();
        if let Some(suppressed) = metrics.should_log("firmware_update_failed") {
            tracing::warn!(
                node = self.node,
                reason = self.reason,
                suppressed,
                "firmware update failed"
            );
        }
    }
}

/// The counter label of a refusal: a short, fixed set, whatever the node wrote.
pub fn failure_reason(reason: &str) -> &'static str {
    let reason = reason.to_ascii_lowercase();
    [
        ("signature", "signature"),
        ("board", "wrong_board"),
        ("newer", "downgrade"),
        ("hash", "hash_mismatch"),
        ("out of order", "out_of_order"),
        ("past the image", "out_of_order"),
        ("in progress", "update_in_progress"),
        ("no such update", "unknown_update"),
        ("larger than", "too_large"),
        ("did not confirm", "rolled_back"),
        ("no answer", "timeout"),
    ]
    .into_iter()
    .find(|(words, _)| reason.contains(words))
    .map_or("other", |(_, label)| label)
}
