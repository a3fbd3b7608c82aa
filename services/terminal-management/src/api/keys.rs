//! Tenant API keys: issued by the platform operator or a tenant admin; the token is shown
//! once, in the issuing response.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use mpos_errors::ServiceError;
use mpos_http::ApiJson;
use mpos_proto::terminal_management as pb;

use super::AppState;
use crate::access::{self, Need, Principal, Role};
use crate::tenant::{TenantCommand, TenantError};

pub(super) async fn issue(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<pb::IssueApiKeyRequest>,
) -> Result<(StatusCode, Json<pb::ApiKey>), ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::ManageKeys)?;
    let role = Role::from_proto(request.role)?;
    let key = access::generate();
    let cqrs = state.commands.tenants.clone();
    state
        .execute(
            &cqrs,
            &principal,
            &tenant_id,
            &tenant_id,
            TenantCommand::IssueApiKey {
                key_id: key.key_id.clone(),
                role,
                label: request.label,
                secret_sha256: key.secret_sha256.clone(),
            },
        )
        .await?;
    let mut view = state
        .model
        .api_key(&tenant_id, &key.key_id)
        .ok_or_else(|| ServiceError::internal("issued api key missing from the model"))?
        .to_proto();
    view.secret = access::reveal(&key);
    tracing::info!(tenant_id = %tenant_id, key_id = %key.key_id, "api key issued");
    Ok((StatusCode::CREATED, Json(view)))
}

pub(super) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(tenant_id): Path<String>,
) -> Result<Json<pb::ListApiKeysResponse>, ServiceError> {
    principal.authorize(Some(&tenant_id), Need::ManageKeys)?;
    state
        .model
        .tenant(&tenant_id)
        .ok_or_else(|| ServiceError::from(TenantError::NotFound))?;
    Ok(Json(pb::ListApiKeysResponse {
        api_keys: state
            .model
            .api_keys(&tenant_id)
            .iter()
            .map(crate::model::ApiKeyEntry::to_proto)
            .collect(),
    }))
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, key_id)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::RevokeApiKeyRequest>,
) -> Result<Json<pb::ApiKey>, ServiceError> {
    principal.authorize(Some(&tenant_id), Need::ManageKeys)?;
    state
        .model
        .tenant(&tenant_id)
        .ok_or_else(|| ServiceError::from(TenantError::NotFound))?;
    let cqrs = state.commands.tenants.clone();
    state
        .execute(
            &cqrs,
            &principal,
            &tenant_id,
            &tenant_id,
            TenantCommand::RevokeApiKey {
                key_id: key_id.clone(),
                reason: request.reason,
            },
        )
        .await?;
    let view = state
        .model
        .api_key(&tenant_id, &key_id)
        .ok_or_else(|| ServiceError::from(TenantError::ApiKeyNotFound))?
        .to_proto();
    Ok(Json(view))
}
