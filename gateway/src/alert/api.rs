//! What the HTTP API (`http.rs`) may change in the engine: acknowledge a firing incident, add and
//! remove silences. The checks live here, so the API and the engine agree on what is refused.

use rackwatch_protocols::AlertState;
use tokio::sync::oneshot;

use super::incidents::Incidents;
use super::silence::{Matchers, Silence};
use super::state::{Acknowledgement, Incident};

/// Why an API request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("no alert with key `{0}`")]
    NoSuchAlert(String),
    #[error("alert `{0}` is not firing")]
    NotFiring(String),
    #[error("no silence with id {0}")]
    NoSuchSilence(u64),
    #[error("{0}")]
    Invalid(&'static str),
}

/// A request from the HTTP API that changes the engine's state.
#[derive(Debug)]
pub enum ApiRequest {
    Acknowledge {
        key: String,
        by: String,
        comment: String,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    Silence {
        matchers: Matchers,
        starts_ms: i64,
        ends_ms: i64,
        created_by: String,
        comment: String,
        reply: oneshot::Sender<Result<u64, ApiError>>,
    },
    Unsilence {
        id: u64,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
}

/// `POST /api/alerts/{key}/ack`: stops repeats and escalation of this firing.
pub fn acknowledge(
    incidents: &mut Incidents,
    key: &str,
    by: String,
    comment: String,
    now_ms: i64,
) -> Result<(), ApiError> {
    let incident = incidents
        .get_mut(key)
        .ok_or_else(|| ApiError::NoSuchAlert(key.to_owned()))?;
    if incident.state != AlertState::Firing {
        return Err(ApiError::NotFiring(key.to_owned()));
    }
    incident.acknowledged = Some(Acknowledgement {
        by,
        comment,
        at_ms: now_ms,
    });
    Ok(())
}

/// The silences, and the id the next one gets.
#[derive(Debug, Clone, Default)]
pub struct Silences {
    pub list: Vec<Silence>,
    pub last_id: u64,
}

impl Silences {
    pub fn covers(&self, incident: &Incident, now_ms: i64) -> bool {
        self.list.iter().any(|s| s.covers(incident, now_ms))
    }

    /// `POST /api/silences`.
    pub fn add(
        &mut self,
        matchers: Matchers,
        starts_ms: i64,
        ends_ms: i64,
        created_by: String,
        comment: String,
    ) -> Result<u64, ApiError> {
        if ends_ms <= starts_ms {
            return Err(ApiError::Invalid("a silence must end after it starts"));
        }
        if matchers == Matchers::default() {
            return Err(ApiError::Invalid("a silence needs at least one matcher"));
        }
        self.last_id += 1;
        let id = self.last_id;
        self.list.push(Silence {
            id,
            matchers,
            starts_ms,
            ends_ms,
            created_by,
            comment,
        });
        Ok(id)
    }

    /// `DELETE /api/silences/{id}`.
    pub fn remove(&mut self, id: u64) -> Result<(), ApiError> {
        let before = self.list.len();
        self.list.retain(|s| s.id != id);
        if self.list.len() == before {
            return Err(ApiError::NoSuchSilence(id));
        }
        Ok(())
    }

    /// Forgets silences that ended; whether any did.
    pub fn expire(&mut self, now_ms: i64) -> bool {
        let before = self.list.len();
        self.list.retain(|s| s.ends_ms > now_ms);
        self.list.len() != before
    }
}
