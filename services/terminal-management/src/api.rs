//! The admin HTTP API of terminal-management (platform operators).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cqrs_es::AggregateError;
use mpos_errors::ServiceError;
use mpos_es::{CommandMetadata, Cqrs, EventStore, ProjectionRunner};
use mpos_http::{ApiJson, OperatorAuth};
use mpos_proto::terminal_management as pb;
use secrecy::SecretString;

use crate::read_model::TenantsProjection;
use crate::tenant::{Tenant, TenantCommand, TenantError, TenantId};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    cqrs: Arc<Cqrs<Tenant>>,
    store: EventStore,
    tenants: Arc<ProjectionRunner<TenantsProjection>>,
    /// The operator token's digest: the token itself is not kept.
    operator: OperatorAuth,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("service", &self.store.service())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The handlers' state.
    pub fn new(
        cqrs: Arc<Cqrs<Tenant>>,
        store: EventStore,
        tenants: Arc<ProjectionRunner<TenantsProjection>>,
        operator_token: &SecretString,
    ) -> Self {
        Self {
            cqrs,
            store,
            tenants,
            operator: OperatorAuth::new(operator_token),
        }
    }
}

/// The API routes (`/v1/tenants…`), behind operator authentication.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/tenants/{tenant_id}", get(get_tenant))
        .route("/v1/tenants/{tenant_id}/rename", post(rename_tenant))
        .route("/v1/tenants/{tenant_id}/suspend", post(suspend_tenant))
        .route(
            "/v1/tenants/{tenant_id}/reactivate",
            post(reactivate_tenant),
        )
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

fn metadata(tenant_id: &TenantId) -> CommandMetadata {
    CommandMetadata {
        tenant_id: tenant_id.as_str().to_owned(),
        correlation_id: uuid::Uuid::now_v7().to_string(),
        causation_id: String::new(),
        traceparent: mpos_telemetry::current_traceparent().unwrap_or_default(),
        actor: "operator:platform".to_owned(),
    }
}

fn command_error(error: AggregateError<TenantError>) -> ServiceError {
    match error {
        AggregateError::UserError(error) => error.into(),
        AggregateError::AggregateConflict => {
            ServiceError::conflict("the tenant was changed concurrently; retry")
        }
        AggregateError::DatabaseConnectionError(error) => {
            ServiceError::unavailable(format!("event store unavailable: {error}"))
        }
        AggregateError::DeserializationError(error) | AggregateError::UnexpectedError(error) => {
            tracing::error!(%error, "tenant command failed");
            ServiceError::internal("unexpected error")
        }
    }
}

impl AppState {
    async fn execute(
        &self,
        tenant_id: &TenantId,
        command: TenantCommand,
    ) -> Result<pb::Tenant, ServiceError> {
        self.cqrs
            .execute_with_metadata(tenant_id.as_str(), command, metadata(tenant_id).into_map())
            .await
            .map_err(command_error)?;
        // Read-your-writes: bring the read model up to this command before answering.
        self.tenants.catch_up().await?;
        self.tenant(tenant_id).await
    }

    async fn tenant(&self, tenant_id: &TenantId) -> Result<pb::Tenant, ServiceError> {
        let document = self
            .store
            .document("tenants", tenant_id.as_str(), tenant_id.as_str())
            .await?
            .ok_or_else(|| ServiceError::from(TenantError::NotFound))?;
        serde_json::from_str(&document.payload)
            .map_err(|_| ServiceError::internal("unreadable tenant document"))
    }
}

fn tenant_id(raw: &str) -> Result<TenantId, ServiceError> {
    TenantId::parse(raw).map_err(ServiceError::from)
}

async fn create_tenant(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<pb::CreateTenantRequest>,
) -> Result<(StatusCode, Json<pb::Tenant>), ServiceError> {
    let id = tenant_id(&request.tenant_id)?;
    let tenant = state
        .execute(
            &id,
            TenantCommand::Create {
                tenant_id: id.clone(),
                name: request.name,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

async fn list_tenants(
    State(state): State<AppState>,
) -> Result<Json<pb::ListTenantsResponse>, ServiceError> {
    let documents = state.store.list_documents("tenants", None).await?;
    let tenants = documents
        .iter()
        .map(|document| serde_json::from_str(&document.payload))
        .collect::<Result<Vec<pb::Tenant>, _>>()
        .map_err(|_| ServiceError::internal("unreadable tenant document"))?;
    Ok(Json(pb::ListTenantsResponse { tenants }))
}

async fn get_tenant(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<pb::Tenant>, ServiceError> {
    Ok(Json(state.tenant(&tenant_id(&raw)?).await?))
}

async fn rename_tenant(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    ApiJson(request): ApiJson<pb::RenameTenantRequest>,
) -> Result<Json<pb::Tenant>, ServiceError> {
    let id = tenant_id(&raw)?;
    Ok(Json(
        state
            .execute(&id, TenantCommand::Rename { name: request.name })
            .await?,
    ))
}

async fn suspend_tenant(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    ApiJson(request): ApiJson<pb::SuspendTenantRequest>,
) -> Result<Json<pb::Tenant>, ServiceError> {
    let id = tenant_id(&raw)?;
    Ok(Json(
        state
            .execute(
                &id,
                TenantCommand::Suspend {
                    reason: request.reason,
                },
            )
            .await?,
    ))
}

async fn reactivate_tenant(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<pb::Tenant>, ServiceError> {
    let id = tenant_id(&raw)?;
    Ok(Json(state.execute(&id, TenantCommand::Reactivate).await?))
}
