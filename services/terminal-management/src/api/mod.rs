//! The admin HTTP API of terminal-management: the platform operator (operator token) and
//! tenants (tenant-scoped API keys with roles). Every change is an event whose actor is the
//! caller; a tenant's key sees only its own tenant, and another tenant's data answers exactly
//! like missing data.
//!
//! Both routers (admin here, device in `device`) are built from the route tables of
//! [`routes`], which also generate the OpenAPI document: served at `GET /openapi.json`
//! and published as `docs/openapi/terminal-management.json` (a test keeps it current; run
//! `MPOS_UPDATE_OPENAPI=1 cargo test -p terminal-management --test openapi` after an API
//! change).

mod cas;
mod device;
mod estate;
mod keys;
mod parameters;
pub mod routes;
mod tenants;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use mpos_errors::ServiceError;
use mpos_es::{CommandMetadata, Cqrs, EventStore, ProjectionRunner};
use mpos_http::OperatorAuth;
use mpos_openapi::{ApiRouter, OPENAPI_PATH, RouterError, serve_document};
use secrecy::SecretString;

pub use device::{PROTOBUF, device_router};

use crate::access::{Need, Principal};
use crate::estate::EstateNode;
use crate::manufacturer::ManufacturerCa;
use crate::model::{Model, TenantEntry};
use crate::parameters::ParameterSets;
use crate::read_model::TenantsProjection;
use crate::tenant::{Tenant, TenantError};
use crate::terminal::Terminal;

/// The command side: one cqrs-es framework per aggregate type.
#[derive(Clone)]
pub struct Commands {
    /// Tenants and their API keys.
    pub tenants: Arc<Cqrs<Tenant>>,
    /// Merchants, stores, terminal groups.
    pub nodes: Arc<Cqrs<EstateNode>>,
    /// Terminals.
    pub terminals: Arc<Cqrs<Terminal>>,
    /// Manufacturer CAs.
    pub cas: Arc<Cqrs<ManufacturerCa>>,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands").finish_non_exhaustive()
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    commands: Commands,
    store: EventStore,
    tenants: Arc<ProjectionRunner<TenantsProjection>>,
    model: Arc<Model>,
    sets: Arc<ParameterSets>,
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
        commands: Commands,
        store: EventStore,
        tenants: Arc<ProjectionRunner<TenantsProjection>>,
        model: Arc<Model>,
        sets: Arc<ParameterSets>,
        operator_token: &SecretString,
    ) -> Self {
        Self {
            commands,
            store,
            tenants,
            model,
            sets,
            operator: OperatorAuth::new(operator_token),
        }
    }

    /// Authorizes `principal` for `need` on `tenant_id` and returns the tenant; a change
    /// also needs the tenant to be active.
    fn tenant_for(
        &self,
        principal: &Principal,
        tenant_id: &str,
        need: Need,
    ) -> Result<TenantEntry, ServiceError> {
        principal.authorize(Some(tenant_id), need)?;
        let tenant = self
            .model
            .tenant(tenant_id)
            .ok_or_else(|| ServiceError::from(TenantError::NotFound))?;
        if need != Need::Read && tenant.suspended {
            return Err(ServiceError::conflict(
                "the tenant is suspended: its estate cannot change",
            ));
        }
        Ok(tenant)
    }

    /// Runs a command and brings the estate model up to it (read-your-writes).
    async fn execute<A>(
        &self,
        cqrs: &Cqrs<A>,
        principal: &Principal,
        tenant_id: &str,
        aggregate_id: &str,
        command: A::Command,
    ) -> Result<(), ServiceError>
    where
        A: Aggregate,
        A::Error: Into<ServiceError>,
    {
        let metadata = CommandMetadata {
            tenant_id: tenant_id.to_owned(),
            correlation_id: uuid::Uuid::now_v7().to_string(),
            causation_id: String::new(),
            traceparent: mpos_telemetry::current_traceparent().unwrap_or_default(),
            actor: principal.actor(),
        };
        mpos_es::execute(cqrs, aggregate_id, command, metadata).await?;
        self.model.catch_up().await?;
        Ok(())
    }
}

/// Middleware: resolves the bearer token to a [`Principal`] (the operator token, or a live
/// tenant API key) and hands it to the handlers as a request extension.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(presented) = mpos_http::bearer_token(&request) else {
        return ServiceError::unauthenticated("missing bearer token").into_response();
    };
    let principal = if state.operator.accepts(presented) {
        Principal::Operator
    } else if let Some(principal) = state.model.authenticate(presented) {
        principal
    } else {
        return ServiceError::unauthenticated("invalid bearer token").into_response();
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The admin API: every route of [`routes::ADMIN_ROUTES`] behind authentication, and the
/// OpenAPI document of both APIs at `GET /openapi.json` (unauthenticated). Fails only when
/// the route table and the handlers disagree.
pub fn router(state: AppState) -> Result<Router, RouterError> {
    let document = routes::openapi()?;
    let api = ApiRouter::new(routes::ADMIN_ROUTES)?
        .handle("createTenant", tenants::create_tenant)?
        .handle("listTenants", tenants::list_tenants)?
        .handle("getTenant", tenants::get_tenant)?
        .handle("renameTenant", tenants::rename_tenant)?
        .handle("suspendTenant", tenants::suspend_tenant)?
        .handle("reactivateTenant", tenants::reactivate_tenant)?
        .handle("issueApiKey", keys::issue)?
        .handle("listApiKeys", keys::list)?
        .handle("revokeApiKey", keys::revoke)?
        .handle("createEstateNode", estate::create_node)?
        .handle("listEstateNodes", estate::list_nodes)?
        .handle("getEstateNode", estate::get_node)?
        .handle("renameEstateNode", estate::rename_node)?
        .handle("closeEstateNode", estate::close_node)?
        .handle("bindTerminal", estate::bind_terminal)?
        .handle("listTerminals", estate::list_terminals)?
        .handle("getTerminal", estate::get_terminal)?
        .handle("suspendTerminal", estate::suspend_terminal)?
        .handle("resumeTerminal", estate::resume_terminal)?
        .handle("blacklistTerminal", estate::blacklist_terminal)?
        .handle("decommissionTerminal", estate::decommission_terminal)?
        .handle("moveTerminal", estate::move_terminal)?
        .handle("swapTerminal", estate::swap_terminal)?
        .handle("activateTerminal", estate::activate_terminal)?
        .handle_with("importTerminals", |method| {
            axum::routing::on(method.filter(), estate::import_terminals).layer(
                axum::extract::DefaultBodyLimit::max(device_identity::MAX_BULK_INPUT_BYTES),
            )
        })?
        .handle("putTenantParameters", parameters::put_tenant_parameters)?
        .handle("getTenantParameters", parameters::get_tenant_parameters)?
        .handle("putNodeParameters", parameters::put_node_parameters)?
        .handle("getNodeParameters", parameters::get_node_parameters)?
        .handle("putTerminalParameters", parameters::put_terminal_parameters)?
        .handle("getTerminalParameters", parameters::get_terminal_parameters)?
        .handle("getEffectiveParameters", parameters::effective)?
        .handle("getParameterStatus", parameters::status)?
        .handle("getParameterSigningKey", parameters::signing_key)?
        .handle("registerManufacturerCa", cas::register)?
        .handle("listManufacturerCas", cas::list)?
        .handle("getManufacturerCa", cas::get)?
        .handle("updateManufacturerCaCrl", cas::update_crl)?
        .handle("removeManufacturerCa", cas::remove)?
        .finish()?;
    Ok(api
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        // Added after the authentication layer: the document needs no credentials.
        .route(OPENAPI_PATH, serve_document(&document))
        .fallback(|| async { ServiceError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            crate::SERVICE,
            mpos_http::observe,
        ))
        .with_state(state))
}
