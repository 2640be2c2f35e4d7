//! The facilities view: a live floor plan of the room served by the gateway, and the read-only
//! HTTP API behind it (current conditions per rack, probes, recent history, nodes). Acting on alerts
//! (acknowledge, silence) goes through the alert engine's routes, which need the token.
//!
//! The page is one static file compiled into the binary: nothing to build or fetch at run time.

mod floor;
mod state;
mod time_to_limit;

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::mpsc;

pub use floor::{AisleTile, FloorRack, RoomFloor};
pub use state::{NodeEntry, RackDetail, RackView, RoomState, rack_id};
pub use time_to_limit::{InletLimit, TimeToLimit};

use crate::inventory::Inventory;
use crate::model::{Observation, now_ms};
use crate::shutdown::Shutdown;

const INDEX_HTML: &str = include_str!("index.html");
const OPENAPI_JSON: &str = include_str!("../../../openapi.json");

/// The shared view, written by [`follow`] and read by the HTTP handlers.
#[derive(Debug, Clone)]
pub struct Dashboard {
    site: String,
    /// Fixed by the inventory, so drawn once.
    floor: Arc<Vec<RoomFloor>>,
    state: Arc<RwLock<RoomState>>,
}

impl Dashboard {
    pub fn new(site: &str, inventory: Inventory, window_minutes: usize, inlet_limit: InletLimit) -> Self {
        let racks: Vec<(String, crate::model::Position)> = inventory
            .racks()
            .into_iter()
            .map(|position| (rack_id(&position), position))
            .collect();
        Dashboard {
            site: site.to_owned(),
            floor: Arc::new(floor::floor_plan(&inventory, &racks)),
            state: Arc::new(RwLock::new(RoomState::new(
                inventory,
                window_minutes,
                inlet_limit,
            ))),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&RoomState) -> T) -> T {
        f(&self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Applies observations until the stream ends or shutdown.
    pub async fn follow(self, mut observations: mpsc::Receiver<Observation>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.recv() => return,
                observation = observations.recv() => {
                    let Some(observation) = observation else { return };
                    self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner).observe(&observation);
                }
            }
        }
    }

    /// The page and the read-only API.
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/api/openapi.json", get(openapi))
            .route("/api/room", get(room))
            .route("/api/racks/{id}", get(rack))
            .route("/api/nodes", get(nodes))
            .route("/api/firmware", get(firmware))
            .route("/api/stream", get(stream))
            .with_state(self.clone())
    }

    fn room(&self) -> Room {
        let now = now_ms();
        self.read(|state| Room {
            site: self.site.clone(),
            generated_ms: now,
            layout: state.layout(),
            floor: self.floor.as_ref().clone(),
            racks: state.racks(now),
        })
    }
}

/// `GET /api/room`: the floor plan and every rack's conditions now.
#[derive(Debug, Serialize)]
pub struct Room {
    pub site: String,
    pub generated_ms: i64,
    /// room -> row -> rack ids, in drawing order.
    pub layout: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>,
    /// Each room's floor plan: racks and aisles in floor tiles.
    pub floor: Vec<RoomFloor>,
    pub racks: Vec<RackView>,
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn room(State(dashboard): State<Dashboard>) -> Json<Room> {
    Json(dashboard.room())
}

async fn rack(State(dashboard): State<Dashboard>, Path(id): Path<String>) -> Response {
    match dashboard.read(|state| state.rack(&id, now_ms())) {
        Some(detail) => Json(detail).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no rack {id} in the inventory") })),
        )
            .into_response(),
    }
}

async fn nodes(State(dashboard): State<Dashboard>) -> Json<Vec<NodeEntry>> {
    Json(dashboard.read(RoomState::nodes))
}

/// A node's firmware as `GET /api/firmware` lists it.
#[derive(Debug, serde::Serialize)]
struct NodeFirmware {
    node: String,
    rack: String,
    online: Option<bool>,
    firmware: Option<String>,
    slot: Option<rackwatch_protocols::Slot>,
    ota: Option<rackwatch_protocols::OtaResult>,
}

/// `GET /api/firmware`: each node's version, slot and last update result, for a rollout's operator.
async fn firmware(State(dashboard): State<Dashboard>) -> Json<Vec<NodeFirmware>> {
    let nodes = dashboard.read(RoomState::nodes);
    Json(
        nodes
            .into_iter()
            .map(|n| NodeFirmware {
                node: n.node,
                rack: n.rack,
                online: n.online,
                firmware: n.firmware,
                slot: n.slot,
                ota: n.ota,
            })
            .collect(),
    )
}

/// `GET /api/stream`: server-sent events, one `room` event (the `/api/room` body) when anything
/// changed, at most once a second.
async fn stream(
    State(dashboard): State<Dashboard>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let events = async_stream(dashboard);
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn async_stream(dashboard: Dashboard) -> impl futures_util::Stream<Item = Result<Event, Infallible>> {
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(2);
    tokio::spawn(async move {
        let mut seen = u64::MAX;
        let mut tick = tokio::time::interval(Duration::from_millis(1000));
        loop {
            tick.tick().await;
            let version = dashboard.read(|s| s.version);
            if version == seen {
                continue;
            }
            seen = version;
            let body = serde_json::to_string(&dashboard.room()).unwrap_or_default();
            if tx
                .send(Ok(Event::default().event("room").data(body)))
                .await
                .is_err()
            {
                return; // The client went away.
            }
        }
    });
    tokio_stream_from(rx)
}

/// A receiver as a stream, without pulling in tokio-stream for one adapter.
fn tokio_stream_from<T>(mut rx: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
