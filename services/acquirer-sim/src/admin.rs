//! The admin HTTP API: faults on demand and what was received. Loopback only, no
//! authentication: it is a test tool.
//!
//! | method and path | body | effect |
//! |---|---|---|
//! | `GET /v1/received` | — | `{"total", "counts": {"0200": 1}, "messages": [{"seq", "mti", "stan", "rrn", "amount_minor", "pan_last4", "mcc", "pos_entry_mode", "response_code", "reverses"}]}` |
//! | `DELETE /v1/received` | — | forgets what was received |
//! | `GET /v1/faults` | — | the faults in force ([`Faults`]) |
//! | `PUT /v1/faults` | [`Faults`] | replaces the faults |
//! | `POST /v1/faults/delay` | `{"delay_ms": 500, "mti": "0200"}` | answers late (`mti` absent: everything; 0 removes) |
//! | `POST /v1/faults/blackhole` | `{"on": true, "mti": "0400"}` | reads, never answers (`mti` absent: everything) |
//! | `POST /v1/faults/drop-connections` | `{"refuse_new": false}` | closes every open connection now; `refuse_new` closes new ones at once until cleared |
//! | `DELETE /v1/faults` | — | removes every fault |
//! | `GET /healthz` | — | `ok` |

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::controls::{Controls, Faults, Received};

/// Body of `POST /v1/faults/delay`.
#[derive(Debug, Deserialize)]
pub struct DelayBody {
    /// Milliseconds; 0 removes the delay.
    pub delay_ms: u64,
    /// Only this request MTI.
    #[serde(default)]
    pub mti: Option<String>,
}

/// Body of `POST /v1/faults/blackhole`.
#[derive(Debug, Deserialize)]
pub struct BlackholeBody {
    /// On or off.
    pub on: bool,
    /// Only this request MTI.
    #[serde(default)]
    pub mti: Option<String>,
}

/// Body of `POST /v1/faults/drop-connections`.
#[derive(Debug, Default, Deserialize)]
pub struct DropBody {
    /// Also close new connections at once, until the faults are cleared.
    #[serde(default)]
    pub refuse_new: bool,
}

/// The admin routes over `controls`.
pub fn router(controls: Arc<Controls>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/received", get(received).delete(clear_received))
        .route(
            "/v1/faults",
            get(faults).put(set_faults).delete(clear_faults),
        )
        .route("/v1/faults/delay", post(delay))
        .route("/v1/faults/blackhole", post(blackhole))
        .route("/v1/faults/drop-connections", post(drop_connections))
        .with_state(controls)
}

async fn received(State(controls): State<Arc<Controls>>) -> Json<Received> {
    Json(controls.received())
}

async fn clear_received(State(controls): State<Arc<Controls>>) -> StatusCode {
    controls.clear_received();
    StatusCode::NO_CONTENT
}

async fn faults(State(controls): State<Arc<Controls>>) -> Json<Faults> {
    Json(controls.faults())
}

async fn set_faults(
    State(controls): State<Arc<Controls>>,
    Json(faults): Json<Faults>,
) -> Json<Faults> {
    controls.set_faults(faults);
    Json(controls.faults())
}

async fn clear_faults(State(controls): State<Arc<Controls>>) -> StatusCode {
    controls.clear_faults();
    StatusCode::NO_CONTENT
}

async fn delay(State(controls): State<Arc<Controls>>, Json(body): Json<DelayBody>) -> Json<Faults> {
    controls.set_delay(body.mti.as_deref(), Duration::from_millis(body.delay_ms));
    Json(controls.faults())
}

async fn blackhole(
    State(controls): State<Arc<Controls>>,
    Json(body): Json<BlackholeBody>,
) -> Json<Faults> {
    controls.set_blackhole(body.mti.as_deref(), body.on);
    Json(controls.faults())
}

async fn drop_connections(
    State(controls): State<Arc<Controls>>,
    body: Option<Json<DropBody>>,
) -> Json<Faults> {
    let body = body.map(|Json(body)| body).unwrap_or_default();
    if body.refuse_new {
        controls.refuse_connections(true);
    }
    controls.drop_connections();
    Json(controls.faults())
}

/// Serves the admin API on `listener` until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    controls: Arc<Controls>,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(controls))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}
