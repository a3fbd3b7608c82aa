//! The admin HTTP API of the hsm-proxy: the key registry's control plane as JSON (proto3
//! JSON mapping of `mpos.hsm.v1`), the pool's health and the KCV consistency check. Behind
//! the platform operator's bearer token; every change is an event with the actor
//! `operator:platform`. A key is addressed by id or by `alias/<name>` (URL-encode the `/`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mpos_errors::ServiceError;
use mpos_http::{ApiJson, OperatorAuth};
use mpos_proto::hsm as pb;
use secrecy::SecretString;
use serde::Serialize;

use crate::engine::{Caller, Hsm, Inconsistency};

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    hsm: Arc<Hsm>,
    operator: OperatorAuth,
}

impl AppState {
    /// The handlers' state.
    pub fn new(hsm: Arc<Hsm>, operator_token: &SecretString) -> Self {
        Self {
            hsm,
            operator: OperatorAuth::new(operator_token),
        }
    }
}

fn operator() -> Caller {
    Caller::new("operator:platform")
}

/// The API routes, behind operator authentication.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/tenants/{tenant_id}/keys",
            post(create_key).get(list_keys),
        )
        .route("/v1/tenants/{tenant_id}/keys/import", post(import_key))
        .route("/v1/tenants/{tenant_id}/keys/{key}", get(get_key))
        .route(
            "/v1/tenants/{tenant_id}/keys/{key}/public-key",
            get(get_public_key),
        )
        .route(
            "/v1/tenants/{tenant_id}/keys/{key}/export",
            post(export_key),
        )
        .route(
            "/v1/tenants/{tenant_id}/keys/{key}/alias",
            axum::routing::put(set_alias).delete(remove_alias),
        )
        .route(
            "/v1/tenants/{tenant_id}/keys/{key}/start",
            post(start_key_usage),
        )
        .route(
            "/v1/tenants/{tenant_id}/keys/{key}/stop",
            post(stop_key_usage),
        )
        .route(
            "/v1/tenants/{tenant_id}/keys/{key}/delete",
            post(delete_key),
        )
        .route(
            "/v1/tenants/{tenant_id}/keys/{key}/restore",
            post(restore_key),
        )
        .route("/v1/backends", get(backends))
        .route("/v1/backends/consistency", get(consistency))
        .route_layer(axum::middleware::from_fn_with_state(
            state.operator.clone(),
            mpos_http::require_operator,
        ))
        .fallback(|| async { ServiceError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            crate::SERVICE,
            mpos_http::observe,
        ))
        .with_state(state)
}

type Reply<T> = Result<Json<T>, ServiceError>;

async fn create_key(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<pb::CreateKeyRequest>,
) -> Result<(StatusCode, Json<pb::Key>), ServiceError> {
    let request = pb::CreateKeyRequest {
        tenant_id,
        ..request
    };
    let key = state.hsm.create_key(request, &operator()).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

async fn import_key(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<pb::ImportKeyRequest>,
) -> Result<(StatusCode, Json<pb::Key>), ServiceError> {
    let request = pb::ImportKeyRequest {
        tenant_id,
        ..request
    };
    let key = state.hsm.import_key(request, &operator()).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

async fn list_keys(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
) -> Reply<pb::ListKeysResponse> {
    Ok(Json(
        state.hsm.list_keys(&pb::ListKeysRequest { tenant_id })?,
    ))
}

async fn get_key(
    State(state): State<AppState>,
    Path((tenant_id, key)): Path<(String, String)>,
) -> Reply<pb::Key> {
    Ok(Json(
        state.hsm.get_key(&pb::GetKeyRequest { tenant_id, key })?,
    ))
}

async fn get_public_key(
    State(state): State<AppState>,
    Path((tenant_id, key)): Path<(String, String)>,
) -> Reply<pb::GetPublicKeyResponse> {
    let request = pb::GetPublicKeyRequest { tenant_id, key };
    Ok(Json(state.hsm.get_public_key(&request).await?))
}

async fn export_key(
    State(state): State<AppState>,
    Path((tenant_id, key)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::ExportKeyRequest>,
) -> Reply<pb::ExportKeyResponse> {
    let request = pb::ExportKeyRequest {
        tenant_id,
        key,
        ..request
    };
    Ok(Json(state.hsm.export_key(request, &operator()).await?))
}

async fn set_alias(
    State(state): State<AppState>,
    Path((tenant_id, key)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::SetAliasRequest>,
) -> Reply<pb::Key> {
    let request = pb::SetAliasRequest {
        tenant_id,
        key,
        alias: request.alias,
    };
    Ok(Json(state.hsm.set_alias(request, &operator()).await?))
}

async fn remove_alias(
    State(state): State<AppState>,
    Path((tenant_id, key)): Path<(String, String)>,
) -> Reply<pb::Key> {
    let request = pb::RemoveAliasRequest { tenant_id, key };
    Ok(Json(state.hsm.remove_alias(request, &operator()).await?))
}

async fn start_key_usage(
    State(state): State<AppState>,
    Path((tenant_id, key)): Path<(String, String)>,
) -> Reply<pb::Key> {
    let request = pb::StartKeyUsageRequest { tenant_id, key };
    Ok(Json(state.hsm.start_key_usage(request, &operator()).await?))
}

async fn stop_key_usage(
    State(state): State<AppState>,
    Path((tenant_id, key)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::StopKeyUsageRequest>,
) -> Reply<pb::Key> {
    let request = pb::StopKeyUsageRequest {
        tenant_id,
        key,
        reason: request.reason,
    };
    Ok(Json(state.hsm.stop_key_usage(request, &operator()).await?))
}

async fn delete_key(
    State(state): State<AppState>,
    Path((tenant_id, key)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::DeleteKeyRequest>,
) -> Reply<pb::Key> {
    let request = pb::DeleteKeyRequest {
        tenant_id,
        key,
        waiting_period_days: request.waiting_period_days,
    };
    Ok(Json(state.hsm.delete_key(request, &operator()).await?))
}

async fn restore_key(
    State(state): State<AppState>,
    Path((tenant_id, key)): Path<(String, String)>,
) -> Reply<pb::Key> {
    let request = pb::RestoreKeyRequest { tenant_id, key };
    Ok(Json(state.hsm.restore_key(request, &operator()).await?))
}

/// One backend as the pool sees it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BackendView {
    backend_id: String,
    site: String,
    kind: &'static str,
    healthy: bool,
}

async fn backends(State(state): State<AppState>) -> Json<Vec<BackendView>> {
    Json(
        state
            .hsm
            .pool()
            .members()
            .iter()
            .map(|member| BackendView {
                backend_id: member.backend.id().to_owned(),
                site: member.backend.site().to_owned(),
                kind: member.backend.kind(),
                healthy: member.is_healthy(),
            })
            .collect(),
    )
}

/// The KCV consistency report of every key on every backend.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConsistencyReport {
    consistent: bool,
    inconsistencies: Vec<Inconsistency>,
}

async fn consistency(State(state): State<AppState>) -> Json<ConsistencyReport> {
    let inconsistencies = state.hsm.consistency().await;
    Json(ConsistencyReport {
        consistent: inconsistencies.is_empty(),
        inconsistencies,
    })
}
