//! What the sink knows about the database, for the health endpoint: the database takes writes, or
//! it refuses them until an operator acts (wrong credentials, no such database) and why.

use std::sync::{Mutex, PoisonError};

/// Shared between the sink, which sets it after every answer, and the health judge, which makes it
/// the `database` line of `/health/ready`.
#[derive(Debug, Default)]
pub struct SinkStatus {
    halted: Mutex<Option<String>>,
}

impl SinkStatus {
    /// The database refused the last write for a reason only an operator can fix.
    pub fn halt(&self, reason: &str, detail: &str) {
        *self.halted.lock().unwrap_or_else(PoisonError::into_inner) = Some(format!("{reason}: {detail}"));
    }

    /// The database took the last write.
    pub fn writing(&self) {
        *self.halted.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Why the database takes no writes, or `None` when it does.
    pub fn problem(&self) -> Option<String> {
        self.halted.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
