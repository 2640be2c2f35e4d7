//! What the sink knows about the database, for the health endpoint: the database takes writes, or
//! it refuses them until an operator acts (wrong credentials, no such database) and why.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// Shared between the sink, which sets it after every answer, and the HTTP server, which reads it.
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

    /// `GET /health/ready`: 200 `database: ok`, or 503 with why the database takes no writes.
    pub fn routes(self: Arc<Self>) -> Router {
        Router::new().route("/health/ready", get(ready)).with_state(self)
    }
}

async fn ready(State(status): State<Arc<SinkStatus>>) -> (StatusCode, String) {
    match status.problem() {
        None => (StatusCode::OK, "database: ok\n".to_owned()),
        Some(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database: refusing writes ({problem}); readings are kept in the spool\n"),
        ),
    }
}
