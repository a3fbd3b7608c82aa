//! Tenants: onboarded and administered by the platform operator; a tenant's own keys may
//! read their tenant.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use mpos_errors::ServiceError;
use mpos_http::ApiJson;
use mpos_proto::terminal_management as pb;

use super::AppState;
use crate::access::{Need, Principal};
use crate::tenant::{TenantCommand, TenantError, TenantId};

fn tenant_id(raw: &str) -> Result<TenantId, ServiceError> {
    TenantId::parse(raw).map_err(ServiceError::from)
}

impl AppState {
    async fn execute_tenant(
        &self,
        principal: &Principal,
        tenant_id: &TenantId,
        command: TenantCommand,
    ) -> Result<pb::Tenant, ServiceError> {
        let cqrs = self.commands.tenants.clone();
        self.execute(
            &cqrs,
            principal,
            tenant_id.as_str(),
            tenant_id.as_str(),
            command,
        )
        .await?;
        // Read-your-writes: bring the tenants read model up to this command too.
        self.tenants.catch_up().await?;
        self.tenant_document(tenant_id).await
    }

    async fn tenant_document(&self, tenant_id: &TenantId) -> Result<pb::Tenant, ServiceError> {
        let document = self
            .store
            .document("tenants", tenant_id.as_str(), tenant_id.as_str())
            .await?
            .ok_or_else(|| ServiceError::from(TenantError::NotFound))?;
        serde_json::from_str(&document.payload)
            .map_err(|_| ServiceError::internal("unreadable tenant document"))
    }
}

pub(super) async fn create_tenant(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<pb::CreateTenantRequest>,
) -> Result<(StatusCode, Json<pb::Tenant>), ServiceError> {
    principal.authorize(None, Need::Platform)?;
    let id = tenant_id(&request.tenant_id)?;
    let tenant = state
        .execute_tenant(
            &principal,
            &id,
            TenantCommand::Create {
                tenant_id: id.clone(),
                name: request.name,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// Every tenant for the operator; only its own for a tenant's key.
pub(super) async fn list_tenants(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<pb::ListTenantsResponse>, ServiceError> {
    let documents = state.store.list_documents("tenants", None).await?;
    let tenants = documents
        .iter()
        .map(|document| serde_json::from_str(&document.payload))
        .collect::<Result<Vec<pb::Tenant>, _>>()
        .map_err(|_| ServiceError::internal("unreadable tenant document"))?
        .into_iter()
        .filter(|tenant| {
            principal
                .authorize(Some(&tenant.tenant_id), Need::Read)
                .is_ok()
        })
        .collect();
    Ok(Json(pb::ListTenantsResponse { tenants }))
}

pub(super) async fn get_tenant(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(raw): Path<String>,
) -> Result<Json<pb::Tenant>, ServiceError> {
    let id = tenant_id(&raw)?;
    principal.authorize(Some(id.as_str()), Need::Read)?;
    Ok(Json(state.tenant_document(&id).await?))
}

pub(super) async fn rename_tenant(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(raw): Path<String>,
    ApiJson(request): ApiJson<pb::RenameTenantRequest>,
) -> Result<Json<pb::Tenant>, ServiceError> {
    principal.authorize(None, Need::Platform)?;
    let id = tenant_id(&raw)?;
    Ok(Json(
        state
            .execute_tenant(
                &principal,
                &id,
                TenantCommand::Rename { name: request.name },
            )
            .await?,
    ))
}

pub(super) async fn suspend_tenant(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(raw): Path<String>,
    ApiJson(request): ApiJson<pb::SuspendTenantRequest>,
) -> Result<Json<pb::Tenant>, ServiceError> {
    principal.authorize(None, Need::Platform)?;
    let id = tenant_id(&raw)?;
    Ok(Json(
        state
            .execute_tenant(
                &principal,
                &id,
                TenantCommand::Suspend {
                    reason: request.reason,
                },
            )
            .await?,
    ))
}

pub(super) async fn reactivate_tenant(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(raw): Path<String>,
) -> Result<Json<pb::Tenant>, ServiceError> {
    principal.authorize(None, Need::Platform)?;
    let id = tenant_id(&raw)?;
    Ok(Json(
        state
            .execute_tenant(&principal, &id, TenantCommand::Reactivate)
            .await?,
    ))
}
