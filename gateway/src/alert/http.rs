//! The alert API, mounted on the gateway's HTTP server. Reading needs nothing; acting (acknowledge,
//! silence) needs `Authorization: Bearer {http.token}`, and is refused when no token is configured.
//!
//! ```text
//! GET    /api/alerts                 every open incident, with its members, acknowledgement, silence
//! GET    /api/alerts/{key}           one incident
//! POST   /api/alerts/{key}/ack       {"by": "...", "comment": "..."}        (token)
//! GET    /api/silences               every silence
//! POST   /api/silences               {"matchers": {...}, "minutes": 60, "created_by": "...", "comment": "..."}  (token)
//! DELETE /api/silences/{id}                                                 (token)
//! ```

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::api::{ApiError, ApiRequest};
use super::engine::Engine;
use super::silence::{Matchers, Silence};
use super::state::Incident;
use crate::model::now_ms;

/// An incident as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    #[serde(flatten)]
    pub incident: Incident,
    pub silenced: bool,
}

/// What `GET /api/alerts` and `/api/silences` read: a snapshot the engine refreshes on every change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertsView {
    pub alerts: Vec<IncidentView>,
    pub silences: Vec<Silence>,
}

impl AlertsView {
    pub fn of(engine: &Engine, now_ms: i64) -> Self {
        AlertsView {
            alerts: engine
                .incidents()
                .map(|i| IncidentView {
                    incident: i.clone(),
                    silenced: engine.is_silenced(i, now_ms),
                })
                .collect(),
            silences: engine.silences().to_vec(),
        }
    }

    pub fn firing_count(&self) -> usize {
        self.alerts
            .iter()
            .filter(|a| a.incident.state == rackwatch_protocols::AlertState::Firing)
            .count()
    }
}

/// What the routes share.
#[derive(Debug, Clone)]
pub struct AlertApi {
    pub view: watch::Receiver<Arc<AlertsView>>,
    pub requests: mpsc::Sender<ApiRequest>,
    /// `None`: acting is refused.
    pub token: Option<crate::secret::Secret>,
}

/// The alert routes, ready to merge into the gateway's router.
pub fn routes(api: AlertApi) -> Router {
    Router::new()
        .route("/api/alerts", get(list_alerts))
        .route("/api/alerts/{key}", get(one_alert))
        .route("/api/alerts/{key}/ack", post(acknowledge))
        .route("/api/silences", get(list_silences).post(add_silence))
        .route("/api/silences/{id}", delete(remove_silence))
        .with_state(api)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

impl AlertApi {
    /// `Some(response)` when the request may not act: no token configured (403), or not its bearer
    /// token (401).
    fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        let Some(token) = &self.token else {
            return Some(error(
                StatusCode::FORBIDDEN,
                "acting on alerts needs http.token in the gateway's configuration",
            ));
        };
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        (!token.authorizes(given)).then(|| error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"))
    }

    async fn ask<T>(
        &self,
        request: ApiRequest,
        reply: oneshot::Receiver<Result<T, ApiError>>,
    ) -> Result<T, Response> {
        if self.requests.send(request).await.is_err() {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the alert engine has stopped",
            ));
        }
        match reply.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(error(
                match e {
                    ApiError::NoSuchAlert(_) | ApiError::NoSuchSilence(_) => StatusCode::NOT_FOUND,
                    ApiError::NotFiring(_) => StatusCode::CONFLICT,
                    ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
                },
                e.to_string(),
            )),
            Err(_) => Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the alert engine has stopped",
            )),
        }
    }
}

async fn list_alerts(State(api): State<AlertApi>) -> Response {
    let view = Arc::clone(&api.view.borrow());
    Json(&view.alerts).into_response()
}

async fn one_alert(State(api): State<AlertApi>, Path(key): Path<String>) -> Response {
    let view = Arc::clone(&api.view.borrow());
    match view.alerts.iter().find(|a| a.incident.key == key) {
        Some(alert) => Json(alert).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no alert with key `{key}`")),
    }
}

async fn list_silences(State(api): State<AlertApi>) -> Response {
    let view = Arc::clone(&api.view.borrow());
    Json(&view.silences).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    #[serde(default)]
    by: String,
    #[serde(default)]
    comment: String,
}

async fn acknowledge(
    State(api): State<AlertApi>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Option<Json<AckBody>>,
) -> Response {
    if let Some(refused) = api.refusal(&headers) {
        return refused;
    }
    let Json(body) = body.unwrap_or_default();
    let (reply, answer) = oneshot::channel();
    let request = ApiRequest::Acknowledge {
        key,
        by: if body.by.is_empty() { "api".into() } else { body.by },
        comment: body.comment,
        reply,
    };
    match api.ask(request, answer).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(response) => response,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    matchers: Matchers,
    /// How long from now; or give `ends_ms`.
    #[serde(default)]
    minutes: Option<u64>,
    #[serde(default)]
    starts_ms: Option<i64>,
    #[serde(default)]
    ends_ms: Option<i64>,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
}

async fn add_silence(
    State(api): State<AlertApi>,
    headers: HeaderMap,
    Json(body): Json<SilenceBody>,
) -> Response {
    if let Some(refused) = api.refusal(&headers) {
        return refused;
    }
    let starts_ms = body.starts_ms.unwrap_or_else(now_ms);
    let ends_ms = match (body.minutes, body.ends_ms) {
        (Some(minutes), None) => {
            starts_ms.saturating_add(i64::try_from(minutes).unwrap_or(i64::MAX).saturating_mul(60_000))
        }
        (None, Some(ends_ms)) => ends_ms,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give exactly one of `minutes` and `ends_ms`",
            );
        }
    };
    let (reply, answer) = oneshot::channel();
    let request = ApiRequest::Silence {
        matchers: body.matchers,
        starts_ms,
        ends_ms,
        created_by: body.created_by,
        comment: body.comment,
        reply,
    };
    match api.ask(request, answer).await {
        Ok(id) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(response) => response,
    }
}

async fn remove_silence(State(api): State<AlertApi>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    if let Some(refused) = api.refusal(&headers) {
        return refused;
    }
    let (reply, answer) = oneshot::channel();
    match api.ask(ApiRequest::Unsilence { id, reply }, answer).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(response) => response,
    }
}
