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
