//! The admin HTTP API of terminal-management (platform operators).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cqrs_es::AggregateError;
use mpos_errors::ServiceError;
use mpos_es::{CommandMetadata, Cqrs, EventStore, ProjectionRunner};
use mpos_proto::terminal_management as pb;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::read_model::TenantsProjection;
use crate::tenant::{Tenant, TenantCommand, TenantError, TenantId};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    cqrs: Arc<Cqrs<Tenant>>,
    store: EventStore,
    tenants: Arc<ProjectionRunner<TenantsProjection>>,
    /// SHA-256 of the operator token: the token itself is not kept.
    operator_token_hash: [u8; 32],
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
        let operator_token_hash = Sha256::digest(operator_token.expose_secret().as_bytes()).into();
        Self {
            cqrs,
            store,
            tenants,
            operator_token_hash,
        }
    }
}

/// A JSON body whose rejection is a `bad_request` in the shared error format.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ServiceError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ServiceError::bad_request(format!(
                "invalid JSON body: {}",
                rejection.body_text()
            ))),
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
            state.clone(),
            require_operator,
        ))
        .fallback(|| async { ServiceError::not_found("no such route") })
        .layer(axum::middleware::from_fn(observe))
        .with_state(state)
}

/// Rejects requests without the operator's bearer token (compared in constant time).
async fn require_operator(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let Some(presented) = presented else {
        return ServiceError::unauthenticated("missing bearer token").into_response();
    };
    let presented_hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    if !bool::from(presented_hash.ct_eq(&state.operator_token_hash)) {
        return ServiceError::unauthenticated("invalid bearer token").into_response();
    }
    next.run(request).await
}

/// A span per request, continuing the caller's trace, and the shared HTTP metrics.
async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let span = tracing::info_span!("http request", %method, %route);
    if let Some(traceparent) = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
    {
        mpos_telemetry::set_parent_from_traceparent(&span, traceparent);
    }
    let started = Instant::now();
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(mpos_telemetry::metric_names::HTTP_REQUESTS_TOTAL,
        "service" => crate::SERVICE, "route" => route.clone(), "status" => status)
    .increment(1);
    metrics::histogram!(mpos_telemetry::metric_names::HTTP_REQUEST_DURATION_SECONDS,
        "service" => crate::SERVICE, "route" => route)
    .record(started.elapsed().as_secs_f64());
    response
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
