//! The HTTP API. Device routes (the SoftPOS app): a challenge, then the evidence; the device
//! must be a SoftPOS terminal of a live tenant in terminal-management (known from its
//! events), and its challenge is what binds the evidence to it. Admin routes (the platform
//! operator's token or a tenant API key): the tenant's policy (read, edit: a new version that
//! re-judges its devices), the dashboard, a device's history; the operator's: the trust
//! anchors and status list (status, refresh, replacement at run time). The token verification
//! key is public.
//!
//! Both routers are built from the route tables of [`crate::routes`], which also generate the
//! OpenAPI document: served at `GET /openapi.json` and published as
//! `docs/openapi/attestation.json` (a test keeps it current; run
//! `MPOS_UPDATE_OPENAPI=1 cargo test -p attestation --test openapi` after an API change).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::{Json, Router};
use mpos_errors::ServiceError;
use mpos_feed::auth::{Need, Principal, authenticate};
use mpos_feed::tms::{TerminalKind, TerminalStatus, TmsView};
use mpos_http::{ApiJson, OperatorAuth, check_id};
use mpos_openapi::{ApiRouter, OPENAPI_PATH, RouterError, serve_document};
use mpos_proto::attestation as pb;

use crate::engine::{Actor, Attestor};
use crate::routes;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) attestor: Arc<Attestor>,
    pub(crate) view: TmsView,
    pub(crate) operator: OperatorAuth,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The device routes the admin listener serves when the device API has no listener of its
/// own: [`routes::EVIDENCE_ROUTES`], a challenge, then the evidence.
fn evidence_routes() -> Result<Router<AppState>, RouterError> {
    ApiRouter::new(routes::EVIDENCE_ROUTES)?
        .handle("issueChallenge", challenge)?
        .handle("attest", attest)?
        .finish()
}

fn finish(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(|| async { ServiceError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            crate::SERVICE,
            mpos_http::observe,
        ))
        .with_state(state)
}

/// The admin routes ([`routes::ADMIN_ROUTES`]), and with `with_devices` the device routes too
/// (when the device API has no TLS listener of its own: `mposd` on localhost); the OpenAPI
/// document of both APIs at `GET /openapi.json` (no credentials). Fails only when the route
/// tables and the handlers disagree.
pub fn router(state: AppState, with_devices: bool) -> Result<Router, RouterError> {
    let document = routes::openapi()?;
    let mut api = ApiRouter::new(routes::ADMIN_ROUTES)?
        .handle("getDeviceHistory", device_history)?
        .handle("getAttestationPolicy", get_policy)?
        .handle("putAttestationPolicy", put_policy)?
        .handle("getAttestationDashboard", dashboard)?
        .handle("getTrustStatus", trust_status)?
        .handle("refreshTrust", trust_refresh)?
        .handle("replaceTrustAnchors", replace_anchors)?
        .handle("getTokenKeys", token_keys)?
        .finish()?;
    if with_devices {
        api = api.merge(evidence_routes()?);
    }
    Ok(finish(
        api.route(OPENAPI_PATH, serve_document(&document)),
        state,
    ))
}

/// The device API alone (its TLS listener): [`routes::DEVICE_ROUTES`], the device routes and
/// the public token keys, and the device API's OpenAPI document at `GET /openapi.json`. Fails
/// only when the route table and the handlers disagree.
pub fn device_router(state: AppState) -> Result<Router, RouterError> {
    let document = routes::device_openapi()?;
    let api = ApiRouter::new(routes::DEVICE_ROUTES)?
        .handle("issueChallenge", challenge)?
        .handle("attest", attest)?
        .handle("getDeviceTokenKeys", token_keys)?
        .finish()?;
    Ok(finish(
        api.route(OPENAPI_PATH, serve_document(&document)),
        state,
    ))
}

/// The device must be a SoftPOS terminal of a live tenant; another tenant's or an unknown
/// device is "not found".
async fn softpos_device(
    state: &AppState,
    tenant_id: &str,
    device_id: &str,
) -> Result<(), ServiceError> {
    check_id("tenant_id", tenant_id)?;
    check_id("device_id", device_id)?;
    let unknown = || ServiceError::not_found("device not found");
    let terminal = state
        .view
        .terminal(tenant_id, device_id)
        .await?
        .ok_or_else(unknown)?;
    if terminal.kind != TerminalKind::SoftPos {
        return Err(unknown());
    }
    if state.view.tenant_suspended(tenant_id).await? {
        return Err(ServiceError::forbidden("the tenant is suspended"));
    }
    match terminal.status {
        TerminalStatus::Bound | TerminalStatus::Active | TerminalStatus::Suspended => Ok(()),
        TerminalStatus::Blacklisted
        | TerminalStatus::SwappedOut
        | TerminalStatus::Decommissioned => Err(ServiceError::forbidden(
            "the device is out of service in terminal-management",
        )),
    }
}

fn device_actor(device_id: &str) -> Actor {
    Actor(format!("device:{device_id}"))
}

/// `POST .../devices/{device_id}/challenges`: a one-time challenge.
async fn challenge(
    State(state): State<AppState>,
    Path((tenant_id, device_id)): Path<(String, String)>,
) -> Result<Json<pb::ChallengeResponse>, ServiceError> {
    softpos_device(&state, &tenant_id, &device_id).await?;
    let response = state
        .attestor
        .issue_challenge(&device_actor(&device_id), &tenant_id, &device_id)
        .await?;
    Ok(Json(response))
}

/// `POST .../devices/{device_id}/attestations` (`AttestRequest`): the verdict.
async fn attest(
    State(state): State<AppState>,
    Path((tenant_id, device_id)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::AttestRequest>,
) -> Result<Json<pb::AttestResponse>, ServiceError> {
    softpos_device(&state, &tenant_id, &device_id).await?;
    let response = state
        .attestor
        .attest(&device_actor(&device_id), &tenant_id, &device_id, request)
        .await?;
    Ok(Json(response))
}

async fn principal(
    state: &AppState,
    headers: &HeaderMap,
    tenant_id: &str,
    need: Need,
) -> Result<Principal, ServiceError> {
    let principal = authenticate(&state.view, &state.operator, headers).await?;
    check_id("tenant_id", tenant_id)?;
    principal.authorize(tenant_id, need)?;
    Ok(principal)
}

async fn operator(state: &AppState, headers: &HeaderMap) -> Result<Principal, ServiceError> {
    let principal = authenticate(&state.view, &state.operator, headers).await?;
    if principal != Principal::Operator {
        return Err(ServiceError::forbidden(
            "only the platform operator manages the attestation trust anchors",
        ));
    }
    Ok(principal)
}

/// `GET .../devices/{device_id}`: the device and its history.
async fn device_history(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((tenant_id, device_id)): Path<(String, String)>,
) -> Result<Json<pb::DeviceHistory>, ServiceError> {
    principal(&state, &headers, &tenant_id, Need::Read).await?;
    check_id("device_id", &device_id)?;
    Ok(Json(state.attestor.history(&tenant_id, &device_id).await?))
}

/// `GET .../attestation-policy`.
async fn get_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(tenant_id): Path<String>,
) -> Result<Json<pb::PolicyResponse>, ServiceError> {
    principal(&state, &headers, &tenant_id, Need::Read).await?;
    let current = state.attestor.policy(&tenant_id).await?;
    Ok(Json(pb::PolicyResponse {
        tenant_id,
        version: current.version,
        policy: Some(current.policy),
        devices_reevaluated: 0,
        verdicts_changed: 0,
    }))
}

/// `PUT .../attestation-policy` (`PutPolicyRequest`): a new version, and every device of the
/// tenant re-judged with it.
async fn put_policy(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<pb::PutPolicyRequest>,
) -> Result<Json<pb::PolicyResponse>, ServiceError> {
    let principal = principal(&state, &headers, &tenant_id, Need::Write).await?;
    let actor = Actor(principal.actor_name());
    Ok(Json(
        state
            .attestor
            .publish_policy(&actor, &tenant_id, request)
            .await?,
    ))
}

/// `GET .../attestation/dashboard`.
async fn dashboard(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(tenant_id): Path<String>,
) -> Result<Json<pb::Dashboard>, ServiceError> {
    principal(&state, &headers, &tenant_id, Need::Read).await?;
    Ok(Json(state.attestor.dashboard(&tenant_id).await?))
}

/// `GET /v1/attestation/trust` (operator): anchors, status list, freshness.
async fn trust_status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<attestation_trust::TrustStatus>, ServiceError> {
    operator(&state, &headers).await?;
    Ok(Json(state.attestor.trust.status()))
}

/// `POST /v1/attestation/trust/refresh` (operator): reload anchors and status list now.
async fn trust_refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<attestation_trust::TrustStatus>, ServiceError> {
    operator(&state, &headers).await?;
    state
        .attestor
        .trust
        .refresh()
        .await
        .map_err(|error| ServiceError::unavailable(error.to_string()))?;
    Ok(Json(state.attestor.trust.status()))
}

/// `PUT /v1/attestation/trust/anchors` (operator, PEM body): replace the trust anchors now,
/// without a restart.
async fn replace_anchors(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<attestation_trust::TrustStatus>, ServiceError> {
    operator(&state, &headers).await?;
    state
        .attestor
        .trust
        .replace_anchors(&body)
        .map_err(|error| ServiceError::bad_request(format!("anchors: {error}")))?;
    tracing::info!(
        anchors = state.attestor.trust.snapshot().anchors.len(),
        "attestation trust anchors replaced"
    );
    Ok(Json(state.attestor.trust.status()))
}

/// `GET /v1/attestation/token-keys`: the public keys that verify attestation tokens.
async fn token_keys(State(state): State<AppState>) -> Json<attestation_token::PublishedKeys> {
    let (kid, key) = state.attestor.token_key();
    Json(attestation_token::PublishedKeys::of([(kid.as_str(), &key)]))
}
