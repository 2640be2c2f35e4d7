//! The HTTP server: `/metrics` (Prometheus text format) and `/health`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::events::Metrics;
use crate::shutdown::Shutdown;

/// Serves `/metrics`, `/health` and the stages' own `routes` (the alert API) until shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    routes: Router,
    mut shutdown: Shutdown,
) {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/health", get(health))
        .with_state(metrics)
        .merge(routes);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.recv().await })
        .await;
    if let Err(e) = served {
        tracing::error!("HTTP server: {e}");
    }
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render(),
    )
}

async fn health() -> &'static str {
    "ok\n"
}
