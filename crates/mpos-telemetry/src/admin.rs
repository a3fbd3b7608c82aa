//! The admin listener: `/livez`, `/readyz`, `/metrics`.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mpos_errors::ServiceError;

use crate::metrics_handle::MetricsHandle;
use crate::readiness::Readiness;

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histogram samples are drained into buckets between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    metrics: MetricsHandle,
}

/// Serves the admin endpoints on `listener` until `shutdown` completes:
///
/// - `GET /livez`: `200 ok` while the process runs;
/// - `GET /readyz`: `200` with the [`ReadinessReport`](crate::ReadinessReport) as JSON when every
///   check passes, `503` with the failing checks' errors otherwise;
/// - `GET /metrics`: `200` with `metrics` in the Prometheus text format;
/// - anything else: `404` with a `not_found` [`ServiceError`] as JSON.
///
/// Bind it to a separate port from the service's API (e.g. `MPOS_ADMIN_ADDR`); it has no
/// authentication.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    readiness: Readiness,
    metrics: MetricsHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                interval.tick().await;
                metrics.run_upkeep();
            }
        }
    });
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "admin listener started");
    }
    let result = axum::serve(listener, router(readiness, metrics))
        .with_graceful_shutdown(shutdown)
        .await;
    upkeep.abort();
    tracing::info!("admin listener stopped");
    result
}

fn router(readiness: Readiness, metrics: MetricsHandle) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .fallback(not_found)
        .with_state(AdminState { readiness, metrics })
}

async fn livez() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let report = state.readiness.evaluate().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

async fn render_metrics(State(state): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> ServiceError {
    ServiceError::not_found(format!("no admin route {}", uri.path()))
}
