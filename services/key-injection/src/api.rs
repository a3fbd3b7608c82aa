//! The admin API: BDK assignment, injections on demand, the key slot inventory, BDK rotation
//! and the key matrix. Callers are the platform operator (its token) or a tenant's API key
//! issued by terminal-management (`mpk_…`, known here from terminal-management's events):
//! admin and operator keys change their own tenant, read-only keys read it, and another
//! tenant's data answers exactly like missing data.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use device_identity::rustls::pki_types::CertificateDer;
use device_identity::rustls::pki_types::pem::PemObject;
use mpos_errors::ServiceError;
use mpos_http::{ApiJson, OperatorAuth};
use mpos_proto::hsm as hsm_pb;
use mpos_proto::key_injection as pb;

use crate::bdk::{Bdk, BdkCommand};
use crate::feed::TmsView;
use crate::injector::{Actor, InjectionSpec, Injector};
use crate::rotation::Rotations;

pub use mpos_feed::auth::{Need, Principal};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) injector: Arc<Injector>,
    pub(crate) view: TmsView,
    pub(crate) operator: OperatorAuth,
    pub(crate) rotations: Arc<Rotations>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/tenants/{tenant_id}/bdks", post(assign_bdk))
        .route(
            "/v1/tenants/{tenant_id}/bdks/{bdk_id}/rotate",
            post(rotate_bdk),
        )
        .route(
            "/v1/tenants/{tenant_id}/injections",
            post(request_injection),
        )
        .route(
            "/v1/tenants/{tenant_id}/injections/{injection}",
            get(get_injection),
        )
        .route(
            "/v1/tenants/{tenant_id}/injections/{injection}/confirm",
            post(confirm),
        )
        .route(
            "/v1/tenants/{tenant_id}/terminals/{terminal_id}/keys",
            get(key_slots),
        )
        .route(
            "/v1/tenants/{tenant_id}/terminals/{terminal_id}/keys/reinject",
            post(reinject),
        )
        .route("/v1/tenants/{tenant_id}/key-matrix", get(key_matrix))
        .route(
            "/v1/tenants/{tenant_id}/kdh-certificate",
            axum::routing::put(set_kdh_certificate),
        )
        .route(
            "/v1/tenants/{tenant_id}/bdks/{bdk_id}/rotation",
            get(rotation_progress),
        )
        .fallback(|| async { ServiceError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            crate::SERVICE,
            mpos_http::observe,
        ))
        .with_state(state)
}

/// The actor recorded in key-injection's events for a caller.
fn actor(principal: &Principal) -> Actor {
    Actor(principal.actor_name())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ServiceError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        mpos_feed::auth::authenticate(&state.view, &state.operator, &parts.headers).await
    }
}

/// An injection as the API shows it (no key token: only the delivering answer carries one).
fn injection_response(
    injection_id: String,
    injection: &crate::injection::Injection,
) -> pb::InjectionResponse {
    pb::InjectionResponse {
        injection_id,
        state: injection.state().to_proto().into(),
        initial_key_id: injection.initial_key_id().to_owned(),
        key_token: Vec::new(),
        kdh_certificate: Vec::new(),
    }
}

pub(crate) use mpos_http::check_id;

async fn assign_bdk(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<pb::AssignBdkRequest>,
) -> Result<(StatusCode, Json<pb::Bdk>), ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    principal.authorize(&tenant_id, Need::Write)?;
    check_id("bdk_id", &request.bdk_id)?;
    let algorithm =
        pb::DukptAlgorithm::try_from(request.algorithm).unwrap_or(pb::DukptAlgorithm::Unspecified);
    // The BDK must exist in the hsm-proxy, for this tenant, as a B0 key.
    let key: hsm_pb::Key = state
        .injector
        .hsm()
        .call(
            "GetKey",
            &hsm_pb::GetKeyRequest {
                tenant_id: tenant_id.clone(),
                key: request.hsm_key_id.clone(),
            },
        )
        .await
        .map_err(ServiceError::from)?;
    if key.attributes.as_ref().map(|a| a.key_usage.as_str()) != Some("B0") {
        return Err(ServiceError::bad_request(
            "hsm_key_id: not a BDK (key usage B0)",
        ));
    }
    let aggregate_id = format!("{tenant_id}/{}", request.bdk_id);
    state
        .injector
        .execute::<Bdk>(
            &state.injector.bdks,
            &actor(&principal),
            &tenant_id,
            &aggregate_id,
            BdkCommand::Assign {
                tenant_id: tenant_id.clone(),
                bdk_id: request.bdk_id.clone(),
                hsm_key_id: key.key_id.clone(),
                algorithm,
                key_set_id: request.key_set_id.clone(),
                kcv: key.kcv.clone(),
            },
        )
        .await?;
    // New devices get the BDK assigned last.
    state
        .injector
        .set_current_bdk(&tenant_id, &request.bdk_id)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(pb::Bdk {
            tenant_id,
            bdk_id: request.bdk_id,
            hsm_key_id: key.key_id,
            algorithm: algorithm.into(),
            key_set_id: request.key_set_id.to_ascii_uppercase(),
            kcv: key.kcv,
            allocated: 0,
            retired: false,
        }),
    ))
}

/// An injection on demand. With a key receiving certificate, the caller delivers the key
/// (a key loading facility): the answer carries it. Without, the key is for the terminal's
/// bound device, which downloads it on the device API (re-injection).
async fn request_injection(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<pb::RequestInjectionRequest>,
) -> Result<(StatusCode, Json<pb::InjectionResponse>), ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    principal.authorize(&tenant_id, Need::Write)?;
    check_id("terminal_id", &request.terminal_id)?;
    let bdk_id = if request.bdk_id.is_empty() {
        None
    } else {
        check_id("bdk_id", &request.bdk_id)?;
        Some(request.bdk_id.clone())
    };
    let actor = actor(&principal);
    if request.krd_certificate_pem.trim().is_empty() {
        let id = reinject_terminal(
            &state,
            &actor,
            &tenant_id,
            &request.terminal_id,
            bdk_id,
            &request.reason,
        )
        .await?;
        let injection = state.injector.load(&tenant_id, &id).await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(injection_response(id, &injection)),
        ));
    }
    let krd = CertificateDer::from_pem_slice(request.krd_certificate_pem.as_bytes())
        .map_err(|_| ServiceError::bad_request("krd_certificate_pem: not a PEM certificate"))?;
    if let Some(bdk_id) = &bdk_id
        && !state.injector.bdk_exists(&tenant_id, bdk_id).await?
    {
        return Err(crate::bdk::BdkError::NotFound.into());
    }
    let injection_id = state
        .injector
        .request(
            &actor,
            InjectionSpec {
                tenant_id: tenant_id.clone(),
                terminal_id: request.terminal_id.clone(),
                bdk_id,
                certificate_der: krd.as_ref().to_vec(),
                certificate_field: "krd_certificate_pem",
                injection_id: None,
                reason: request.reason.clone(),
                background: false,
                attested: false,
            },
        )
        .await?;
    let delivery = state
        .injector
        .derive(&actor, &tenant_id, &injection_id)
        .await?;
    state
        .injector
        .execute(
            &state.injector.injections,
            &actor,
            &tenant_id,
            &format!("{tenant_id}/{injection_id}"),
            crate::injection::InjectionCommand::MarkDelivered,
        )
        .await?;
    tracing::info!(%tenant_id, terminal_id = %request.terminal_id, initial_key_id = %delivery.initial_key_id, "initial key delivered");
    Ok((
        StatusCode::CREATED,
        Json(pb::InjectionResponse {
            injection_id,
            state: pb::InjectionState::Delivered.into(),
            initial_key_id: delivery.initial_key_id,
            key_token: delivery.key_token,
            kdh_certificate: delivery.kdh_certificate,
        }),
    ))
}

/// A new injection for the terminal's bound device, downloaded on the device API.
pub(crate) async fn reinject_terminal(
    state: &AppState,
    actor: &Actor,
    tenant_id: &str,
    terminal_id: &str,
    bdk_id: Option<String>,
    reason: &str,
) -> Result<String, ServiceError> {
    let terminal = state
        .view
        .terminal(tenant_id, terminal_id)
        .await?
        .ok_or_else(|| ServiceError::not_found("terminal not found"))?;
    if terminal.status != crate::feed::TerminalStatus::Active {
        return Err(ServiceError::conflict(
            "only an active terminal's device can receive a key",
        ));
    }
    if terminal.certificate_der.is_empty() {
        return Err(ServiceError::bad_request(
            "the terminal has no device certificate (SoftPOS)",
        ));
    }
    state
        .injector
        .request(
            actor,
            InjectionSpec {
                tenant_id: tenant_id.to_owned(),
                terminal_id: terminal_id.to_owned(),
                bdk_id,
                certificate_der: terminal.certificate(),
                certificate_field: "device certificate",
                injection_id: None,
                reason: if reason.trim().is_empty() {
                    "re-injection".to_owned()
                } else {
                    reason.to_owned()
                },
                background: true,
                attested: false,
            },
        )
        .await
}

async fn reinject(
    State(state): State<AppState>,
    principal: Principal,
    Path((tenant_id, terminal_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<pb::InjectionResponse>), ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    principal.authorize(&tenant_id, Need::Write)?;
    check_id("terminal_id", &terminal_id)?;
    let id = reinject_terminal(
        &state,
        &actor(&principal),
        &tenant_id,
        &terminal_id,
        None,
        "re-injection",
    )
    .await?;
    let injection = state.injector.load(&tenant_id, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(injection_response(id, &injection)),
    ))
}

async fn get_injection(
    State(state): State<AppState>,
    principal: Principal,
    Path((tenant_id, injection_id)): Path<(String, String)>,
) -> Result<Json<pb::InjectionResponse>, ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    principal.authorize(&tenant_id, Need::Read)?;
    check_id("injection_id", &injection_id)?;
    let injection = state.injector.load(&tenant_id, &injection_id).await?;
    if injection.state() == crate::injection::State::New {
        return Err(ServiceError::not_found("injection not found"));
    }
    Ok(Json(injection_response(injection_id, &injection)))
}

/// The device's confirmation relayed by a caller that delivered the key itself.
async fn confirm(
    State(state): State<AppState>,
    principal: Principal,
    Path((tenant_id, injection_id)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::ConfirmInjectionRequest>,
) -> Result<Json<pb::InjectionResponse>, ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    principal.authorize(&tenant_id, Need::Write)?;
    check_id("injection_id", &injection_id)?;
    let response = state
        .injector
        .confirm(&actor(&principal), &tenant_id, &injection_id, &request.kcv)
        .await?;
    Ok(Json(response))
}

async fn key_slots(
    State(state): State<AppState>,
    principal: Principal,
    Path((tenant_id, terminal_id)): Path<(String, String)>,
) -> Result<Json<pb::ListKeySlotsResponse>, ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    principal.authorize(&tenant_id, Need::Read)?;
    check_id("terminal_id", &terminal_id)?;
    if state
        .view
        .terminal(&tenant_id, &terminal_id)
        .await?
        .is_none()
    {
        return Err(ServiceError::not_found("terminal not found"));
    }
    Ok(Json(
        state.injector.key_slots(&tenant_id, &terminal_id).await?,
    ))
}

async fn rotate_bdk(
    State(state): State<AppState>,
    principal: Principal,
    Path((tenant_id, bdk_id)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::RotateBdkRequest>,
) -> Result<(StatusCode, Json<pb::BdkRotation>), ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    principal.authorize(&tenant_id, Need::Write)?;
    check_id("bdk_id", &bdk_id)?;
    let rotation = state
        .rotations
        .start(&state, &actor(&principal), &tenant_id, &bdk_id, &request)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(rotation)))
}

async fn key_matrix(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<pb::KeyMatrix>, ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    principal.authorize(&tenant_id, Need::Read)?;
    crate::matrix::key_matrix(&state, &tenant_id)
        .await
        .map(Json)
}

/// The tenant's key distribution host certificate: issued offline by the provider's RKI CA
/// for the tenant's KDH key pair in the hsm-proxy; platform operator only.
async fn set_kdh_certificate(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<pb::SetKdhCertificateRequest>,
) -> Result<StatusCode, ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    if !matches!(principal, Principal::Operator) {
        return Err(ServiceError::forbidden(
            "only the platform operator sets KDH certificates",
        ));
    }
    let certificate = CertificateDer::from_pem_slice(request.certificate_pem.as_bytes())
        .map_err(|_| ServiceError::bad_request("certificate_pem: not a PEM certificate"))?;
    state
        .injector
        .set_kdh_certificate(&tenant_id, certificate.as_ref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotation_progress(
    State(state): State<AppState>,
    principal: Principal,
    Path((tenant_id, bdk_id)): Path<(String, String)>,
) -> Result<Json<pb::BdkRotation>, ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    principal.authorize(&tenant_id, Need::Read)?;
    check_id("bdk_id", &bdk_id)?;
    Rotations::progress(&state, &tenant_id, &bdk_id)
        .await?
        .map(Json)
        .ok_or_else(|| ServiceError::not_found("no rotation of this BDK"))
}
