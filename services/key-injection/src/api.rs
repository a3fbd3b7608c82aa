//! The HTTP API: BDK assignment, and remote key injection (request → allocate a device
//! identity → the hsm-proxy derives the initial key and exports it in a TR-34 token for the
//! device → deliver → the device confirms the KCV). Platform operator only for now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use cqrs_es::Aggregate;
use device_identity::rustls::pki_types::CertificateDer;
use device_identity::rustls::pki_types::pem::PemObject;
use hsm_proxy::rpc::HsmClient;
use mpos_errors::ServiceError;
use mpos_es::{CommandMetadata, Cqrs, EventStore};
use mpos_http::{ApiJson, OperatorAuth};
use mpos_proto::hsm as hsm_pb;
use mpos_proto::key_injection as pb;
use sha2::{Digest, Sha256};

use crate::bdk::{self, Bdk, BdkCommand, BdkEvent};
use crate::injection::{self, Injection, InjectionCommand, InjectionEvent};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) bdks: Arc<Cqrs<Bdk>>,
    pub(crate) injections: Arc<Cqrs<Injection>>,
    pub(crate) store: EventStore,
    pub(crate) hsm: Arc<HsmClient>,
    pub(crate) operator: OperatorAuth,
    pub(crate) kdh_key: String,
    pub(crate) kdh_certificate: Arc<Vec<u8>>,
    pub(crate) krd_cas: Arc<Vec<Vec<u8>>>,
    pub(crate) confirmation_window: Duration,
    /// BDK aggregate id → (its hsm key, the sequence read up to): what allocation reads back.
    pub(crate) bdk_cache: Arc<Mutex<HashMap<String, (String, u64)>>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The routes, behind the operator token.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/tenants/{tenant_id}/bdks", post(assign_bdk))
        .route(
            "/v1/tenants/{tenant_id}/injections",
            post(request_injection),
        )
        .route(
            "/v1/tenants/{tenant_id}/injections/{injection}/confirm",
            post(confirm),
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

fn check_id(field: &str, value: &str) -> Result<(), ServiceError> {
    let valid = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(ServiceError::bad_request(format!(
            "{field} must be 1 to 64 ASCII letters, digits, '-', '_' or '.'"
        )))
    }
}

async fn execute<A>(
    cqrs: &Cqrs<A>,
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
        actor: "operator:platform".to_owned(),
    };
    mpos_es::execute(cqrs, aggregate_id, command, metadata).await
}

/// Whether a key receiving device certificate chains to one of the trusted CAs (RSA of at
/// least 2048 bits, within validity, key usage for key encipherment when present).
fn check_krd(cas: &[Vec<u8>], certificate: &[u8]) -> Result<(), String> {
    let now = u64::try_from(mpos_es::now_micros() / 1_000_000).unwrap_or(0);
    let mut last = "no trusted CA for device certificates is configured".to_owned();
    for ca in cas {
        match paycrypto::tr34::verify_certificate_chain(
            &[certificate],
            ca,
            now,
            paycrypto::tr34::CertificateRole::Krd,
        ) {
            Ok(()) => return Ok(()),
            Err(error) => last = error.to_string(),
        }
    }
    Err(last)
}

fn unreadable(error: serde_json::Error) -> ServiceError {
    tracing::error!(%error, "unreadable event in the log");
    ServiceError::internal("unreadable event in the log")
}

fn hsm_error(error: mpos_bus::BusError) -> ServiceError {
    ServiceError::from(error)
}

async fn assign_bdk(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<pb::AssignBdkRequest>,
) -> Result<(StatusCode, Json<pb::Bdk>), ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    check_id("bdk_id", &request.bdk_id)?;
    let algorithm =
        pb::DukptAlgorithm::try_from(request.algorithm).unwrap_or(pb::DukptAlgorithm::Unspecified);
    // The BDK must exist in the hsm-proxy, for this tenant, as a B0 key.
    let key: hsm_pb::Key = state
        .hsm
        .call(
            "GetKey",
            &hsm_pb::GetKeyRequest {
                tenant_id: tenant_id.clone(),
                key: request.hsm_key_id.clone(),
            },
        )
        .await
        .map_err(hsm_error)?;
    if key.attributes.as_ref().map(|a| a.key_usage.as_str()) != Some("B0") {
        return Err(ServiceError::bad_request(
            "hsm_key_id: not a BDK (key usage B0)",
        ));
    }
    let aggregate_id = format!("{tenant_id}/{}", request.bdk_id);
    execute(
        &state.bdks,
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

impl AppState {
    /// Reads a BDK aggregate's events after the cached sequence; returns its hsm key and the
    /// identity allocated to `injection_id`, if one is in what was read.
    async fn read_bdk(
        &self,
        aggregate_id: &str,
        injection_id: &str,
    ) -> Result<(String, Option<String>), ServiceError> {
        let (mut hsm_key, after) = self
            .bdk_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(aggregate_id)
            .cloned()
            .unwrap_or_default();
        let events = self
            .store
            .read_aggregate(bdk::AGGREGATE_TYPE, aggregate_id, after)
            .await?;
        let mut allocated = None;
        let mut last = after;
        for stored in &events {
            last = stored.event.sequence;
            match serde_json::from_str::<BdkEvent>(&stored.event.payload).map_err(unreadable)? {
                BdkEvent::Assigned(assigned) => hsm_key = assigned.hsm_key_id,
                BdkEvent::DeviceIdAllocated(allocation)
                    if allocation.injection_id == injection_id =>
                {
                    allocated = Some(allocation.initial_key_id);
                }
                _ => {}
            }
        }
        self.bdk_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(aggregate_id.to_owned(), (hsm_key.clone(), last));
        Ok((hsm_key, allocated))
    }
}

async fn request_injection(
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<pb::RequestInjectionRequest>,
) -> Result<(StatusCode, Json<pb::InjectionResponse>), ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    check_id("terminal_id", &request.terminal_id)?;
    check_id("bdk_id", &request.bdk_id)?;
    let krd = CertificateDer::from_pem_slice(request.krd_certificate_pem.as_bytes())
        .map_err(|_| ServiceError::bad_request("krd_certificate_pem: not a PEM certificate"))?;
    let bdk_aggregate = format!("{tenant_id}/{}", request.bdk_id);
    if state.read_bdk(&bdk_aggregate, "").await?.0.is_empty() {
        return Err(bdk::BdkError::NotFound.into());
    }
    let injection_id = uuid::Uuid::now_v7().simple().to_string();
    let aggregate_id = format!("{tenant_id}/{injection_id}");
    let expires_at = mpos_es::now_micros()
        + i64::try_from(state.confirmation_window.as_micros()).unwrap_or(i64::MAX / 2);
    execute(
        &state.injections,
        &tenant_id,
        &aggregate_id,
        InjectionCommand::Request(pb::InjectionRequested {
            tenant_id: tenant_id.clone(),
            injection_id: injection_id.clone(),
            terminal_id: request.terminal_id.clone(),
            bdk_id: request.bdk_id.clone(),
            method: pb::DeliveryMethod::Tr34.into(),
            device_certificate_sha256: hex::encode(Sha256::digest(krd.as_ref())),
            reason: if request.reason.trim().is_empty() {
                "activation".to_owned()
            } else {
                request.reason.trim().to_owned()
            },
            expires_at: Some(mpos_proto::timestamp_from_micros(expires_at)),
        }),
    )
    .await?;
    // The device's certificate must chain to a trusted CA before it gets an identity; a
    // refusal is recorded.
    if let Err(reason) = check_krd(&state.krd_cas, krd.as_ref()) {
        execute(
            &state.injections,
            &tenant_id,
            &aggregate_id,
            InjectionCommand::Fail {
                reason: format!("device certificate refused: {reason}"),
            },
        )
        .await?;
        return Err(ServiceError::bad_request(format!(
            "krd_certificate_pem: refused: {reason}"
        )));
    }
    // The next identity of the BDK, never handed out before.
    execute(
        &state.bdks,
        &tenant_id,
        &bdk_aggregate,
        BdkCommand::Allocate {
            terminal_id: request.terminal_id.clone(),
            injection_id: injection_id.clone(),
        },
    )
    .await?;
    let (hsm_key, allocated) = state.read_bdk(&bdk_aggregate, &injection_id).await?;
    let initial_key_id =
        allocated.ok_or_else(|| ServiceError::internal("allocation not found in the log"))?;
    // The hsm-proxy derives the device's initial key and envelopes it for the device only.
    let exported: Result<hsm_pb::ExportKeyResponse, _> = state
        .hsm
        .call(
            "ExportKey",
            &hsm_pb::ExportKeyRequest {
                tenant_id: tenant_id.clone(),
                key: hsm_key,
                wrapping_key: state.kdh_key.clone(),
                format: Some(hsm_pb::export_key_request::Format::Tr34DukptInitialKey(
                    hsm_pb::Tr34DukptInitialKeyExport {
                        ksn: initial_key_id.clone(),
                        krd_certificate: krd.as_ref().to_vec(),
                        kdh_certificate: state.kdh_certificate.to_vec(),
                    },
                )),
            },
        )
        .await;
    let exported = match exported {
        Ok(exported) => exported,
        Err(error) => {
            let error = hsm_error(error);
            execute(
                &state.injections,
                &tenant_id,
                &aggregate_id,
                InjectionCommand::Fail {
                    reason: format!("the hsm-proxy refused the export: {}", error.message),
                },
            )
            .await?;
            return Err(error);
        }
    };
    let token = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        &exported.key_block,
    )
    .map_err(|_| ServiceError::internal("the hsm-proxy answered an unreadable token"))?;
    execute(
        &state.injections,
        &tenant_id,
        &aggregate_id,
        InjectionCommand::RecordKey {
            initial_key_id: initial_key_id.clone(),
            kcv: exported.kcv,
            key_block_sha256: hex::encode(Sha256::digest(&token)),
        },
    )
    .await?;
    execute(
        &state.injections,
        &tenant_id,
        &aggregate_id,
        InjectionCommand::MarkDelivered,
    )
    .await?;
    tracing::info!(%tenant_id, terminal_id = %request.terminal_id, %initial_key_id, "initial key delivered");
    Ok((
        StatusCode::CREATED,
        Json(pb::InjectionResponse {
            injection_id,
            state: pb::InjectionState::Delivered.into(),
            initial_key_id,
            key_token: token,
            kdh_certificate: state.kdh_certificate.to_vec(),
        }),
    ))
}

/// The device's confirmation: its KCV of the key it installed. A wrong KCV is recorded as
/// a failed injection and answered as a bad request.
async fn confirm(
    State(state): State<AppState>,
    Path((tenant_id, injection)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::ConfirmInjectionRequest>,
) -> Result<Json<pb::InjectionResponse>, ServiceError> {
    check_id("tenant_id", &tenant_id)?;
    check_id("injection_id", &injection)?;
    let injection_id = injection;
    let aggregate_id = format!("{tenant_id}/{injection_id}");
    execute(
        &state.injections,
        &tenant_id,
        &aggregate_id,
        InjectionCommand::Confirm {
            kcv: request.kcv,
            now_us: mpos_es::now_micros(),
        },
    )
    .await?;
    let events = state
        .store
        .read_aggregate(injection::AGGREGATE_TYPE, &aggregate_id, 0)
        .await?;
    let last = events
        .last()
        .ok_or_else(|| ServiceError::not_found("injection not found"))?;
    let mut initial_key_id = String::new();
    let mut outcome = pb::InjectionState::Unspecified;
    for stored in &events {
        match serde_json::from_str::<InjectionEvent>(&stored.event.payload).map_err(unreadable)? {
            InjectionEvent::KeyDerived(derived) => initial_key_id = derived.initial_key_id,
            InjectionEvent::Confirmed(_) => outcome = pb::InjectionState::Confirmed,
            InjectionEvent::Failed(failed) if stored.event.sequence == last.event.sequence => {
                return Err(ServiceError::bad_request(format!(
                    "injection failed: {}",
                    failed.reason
                )));
            }
            InjectionEvent::Expired(_) if stored.event.sequence == last.event.sequence => {
                return Err(ServiceError::conflict(
                    "the injection expired before the device confirmed it",
                ));
            }
            _ => {}
        }
    }
    Ok(Json(pb::InjectionResponse {
        injection_id,
        state: outcome.into(),
        initial_key_id,
        key_token: Vec::new(),
        kdh_certificate: Vec::new(),
    }))
}
