//! The device API, served only over mTLS: a PED proves who it is with its manufacturer-issued
//! certificate (verified at the handshake against the registered CAs and their CRLs), and the
//! binding names its terminal. First boot activates the terminal; then it downloads its signed
//! parameter set and reports what it installed.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use device_identity::PeerCertificate;
use mpos_errors::ServiceError;
use mpos_http::ApiJson;
use mpos_openapi::{ApiRouter, RouterError};
use mpos_proto::terminal_management as pb;

use super::AppState;
use crate::access::Principal;
use crate::estate::{EstateId, aggregate_id};
use crate::model::TerminalEntry;
use crate::terminal::{Activation, TerminalCommand, TerminalState};

/// The media type of protobuf bodies.
pub const PROTOBUF: &str = "application/x-protobuf";

impl AppState {
    /// The live terminal the device certificate is bound to.
    async fn identify(&self, peer: &PeerCertificate) -> Result<Arc<TerminalEntry>, ServiceError> {
        let fingerprint = peer.verified.fingerprint.to_string();
        let terminal = match self.model.terminal_by_certificate(&fingerprint) {
            Some(terminal) => terminal,
            None => {
                // Bound a moment ago, perhaps through another instance.
                self.model.catch_up().await?;
                self.model
                    .terminal_by_certificate(&fingerprint)
                    .ok_or_else(|| {
                        tracing::info!(certificate_sha256 = %fingerprint, "unbound device refused");
                        ServiceError::forbidden("this device is not bound to a terminal")
                    })?
            }
        };
        if self
            .model
            .tenant(&terminal.tenant_id)
            .is_none_or(|tenant| tenant.suspended)
        {
            return Err(ServiceError::forbidden(
                "the terminal's tenant is suspended",
            ));
        }
        Ok(terminal)
    }

    /// The terminal, which must be the one in the path and active.
    async fn active_terminal(
        &self,
        peer: &PeerCertificate,
        terminal_id: &str,
    ) -> Result<Arc<TerminalEntry>, ServiceError> {
        let terminal = self.identify(peer).await?;
        if terminal.terminal_id != terminal_id {
            return Err(ServiceError::forbidden(
                "the device certificate does not belong to this terminal",
            ));
        }
        if terminal.state != TerminalState::Active {
            return Err(ServiceError::forbidden(format!(
                "the terminal is {}",
                terminal.state.name()
            )));
        }
        Ok(terminal)
    }
}

fn principal(terminal: &TerminalEntry) -> Principal {
    Principal::Device {
        tenant_id: terminal.tenant_id.clone(),
        terminal_id: terminal.terminal_id.clone(),
    }
}

/// First boot: activates the bound terminal (again: answers its state, unchanged).
async fn activate(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
) -> Result<Json<pb::Terminal>, ServiceError> {
    let terminal = state.identify(&peer).await?;
    match terminal.state {
        TerminalState::Bound => {
            let id = EstateId::parse("terminal_id", &terminal.terminal_id)?;
            let cqrs = state.commands.terminals.clone();
            state
                .execute(
                    &cqrs,
                    &principal(&terminal),
                    &terminal.tenant_id,
                    &aggregate_id(&terminal.tenant_id, &id),
                    TerminalCommand::Activate(Activation::DeviceCertificate {
                        certificate_sha256: peer.verified.fingerprint.to_string(),
                    }),
                )
                .await?;
            tracing::info!(tenant_id = %terminal.tenant_id, terminal_id = %terminal.terminal_id, "terminal activated");
        }
        TerminalState::Active => {}
        other => {
            return Err(ServiceError::forbidden(format!(
                "the terminal is {}",
                other.name()
            )));
        }
    }
    let terminal = state
        .model
        .terminal(&terminal.tenant_id, &terminal.terminal_id)
        .ok_or_else(|| ServiceError::internal("activated terminal missing from the model"))?;
    Ok(Json(terminal.to_proto()))
}

/// The signed parameter set in force, as JSON or (`Accept: application/x-protobuf`)
/// protobuf.
async fn parameters(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
    Path(terminal_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ServiceError> {
    let terminal = state.active_terminal(&peer, &terminal_id).await?;
    let issued = state
        .sets
        .issue(&state.model, &terminal.tenant_id, &terminal.terminal_id)?;
    metrics::counter!("mpos_parameter_downloads_total").increment(1);
    let wants_protobuf = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains(PROTOBUF));
    if wants_protobuf {
        let body = prost::Message::encode_to_vec(&issued.signed);
        return Ok(([(header::CONTENT_TYPE, PROTOBUF)], body).into_response());
    }
    Ok(Json(issued.signed.clone()).into_response())
}

/// The device reports the version it installed.
async fn acknowledge(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
    Path(terminal_id): Path<String>,
    ApiJson(request): ApiJson<pb::ParameterSetAcknowledgement>,
) -> Result<Json<pb::ParameterVersionStatus>, ServiceError> {
    let terminal = state.active_terminal(&peer, &terminal_id).await?;
    let payload_sha256: [u8; 32] = request
        .payload_sha256
        .as_slice()
        .try_into()
        .map_err(|_| ServiceError::bad_request("payload_sha256: must be 32 bytes"))?;
    let (current_version, current_sha256) =
        state
            .sets
            .current(&state.model, &terminal.tenant_id, &terminal.terminal_id)?;
    let id = EstateId::parse("terminal_id", &terminal.terminal_id)?;
    let cqrs = state.commands.terminals.clone();
    state
        .execute(
            &cqrs,
            &principal(&terminal),
            &terminal.tenant_id,
            &aggregate_id(&terminal.tenant_id, &id),
            TerminalCommand::AcknowledgeParameters {
                version: request.version,
                payload_sha256,
                installed_at: request.installed_at,
                current_version,
                current_sha256,
            },
        )
        .await?;
    let terminal = state
        .model
        .terminal(&terminal.tenant_id, &terminal.terminal_id)
        .ok_or_else(|| ServiceError::internal("terminal missing from the model"))?;
    Ok(Json(pb::ParameterVersionStatus {
        terminal_id: terminal.terminal_id.clone(),
        current_version,
        installed_version: terminal.installed_version,
        behind: terminal.installed_version < current_version,
        installed_at: (terminal.installed_at_us != 0)
            .then(|| mpos_proto::timestamp_from_micros(terminal.installed_at_us)),
    }))
}

/// The device API: every route of [`super::routes::DEVICE_ROUTES`] (served by
/// `device_identity::serve` with the trust store, which puts the verified
/// [`PeerCertificate`] on every request). Fails only when the route table and the handlers
/// disagree.
pub fn device_router(state: AppState) -> Result<Router, RouterError> {
    Ok(ApiRouter::new(super::routes::DEVICE_ROUTES)?
        .handle("activateDevice", activate)?
        .handle("getDeviceParameters", parameters)?
        .handle("acknowledgeParameters", acknowledge)?
        .handle(
            "getDeviceParameterSigningKey",
            super::parameters::signing_key,
        )?
        .finish()?
        .fallback(|| async { ServiceError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            crate::SERVICE,
            mpos_http::observe,
        ))
        .with_state(state))
}
