//! Manufacturer CAs: registered by the platform operator, readable by every caller (a tenant
//! needs to know which vendors' devices it can bind).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use mpos_errors::ServiceError;
use mpos_es::PLATFORM_TENANT;
use mpos_http::ApiJson;
use mpos_proto::terminal_management as pb;

use super::AppState;
use crate::access::{Need, Principal};
use crate::manufacturer::{CaCommand, CaError};

fn view(state: &AppState, ca_id: &str) -> Result<pb::ManufacturerCa, ServiceError> {
    state
        .model
        .ca(ca_id)
        .map(|entry| entry.to_proto())
        .ok_or_else(|| CaError::NotFound.into())
}

pub(super) async fn register(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<pb::RegisterManufacturerCaRequest>,
) -> Result<(StatusCode, Json<pb::ManufacturerCa>), ServiceError> {
    principal.authorize(None, Need::Platform)?;
    let facts = crate::devices::ca_registration(
        &request.name,
        &request.certificate_pem,
        chrono::Utc::now(),
    )?;
    let ca_id = facts.ca_id.clone();
    let cqrs = state.commands.cas.clone();
    state
        .execute(
            &cqrs,
            &principal,
            PLATFORM_TENANT,
            &ca_id,
            CaCommand::Register(facts),
        )
        .await?;
    tracing::info!(%ca_id, "manufacturer ca registered");
    Ok((StatusCode::CREATED, Json(view(&state, &ca_id)?)))
}

pub(super) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<pb::ListManufacturerCasResponse>, ServiceError> {
    principal.authorize(None, Need::Read)?;
    Ok(Json(pb::ListManufacturerCasResponse {
        cas: state
            .model
            .cas()
            .iter()
            .map(crate::model::CaEntry::to_proto)
            .collect(),
    }))
}

pub(super) async fn get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(ca_id): Path<String>,
) -> Result<Json<pb::ManufacturerCa>, ServiceError> {
    principal.authorize(None, Need::Read)?;
    Ok(Json(view(&state, &ca_id)?))
}

pub(super) async fn update_crl(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(ca_id): Path<String>,
    ApiJson(request): ApiJson<pb::UpdateCrlRequest>,
) -> Result<Json<pb::ManufacturerCa>, ServiceError> {
    principal.authorize(None, Need::Platform)?;
    let entry = state
        .model
        .ca(&ca_id)
        .filter(|entry| !entry.removed)
        .ok_or(CaError::NotFound)?;
    let registered_at =
        chrono::DateTime::from_timestamp_micros(entry.registered_at_us).unwrap_or_default();
    let facts = crate::devices::crl_update(
        &ca_id,
        &entry.certificate_der,
        registered_at,
        &request.crl_pem,
    )?;
    let cqrs = state.commands.cas.clone();
    state
        .execute(
            &cqrs,
            &principal,
            PLATFORM_TENANT,
            &ca_id,
            CaCommand::UpdateCrl(facts),
        )
        .await?;
    Ok(Json(view(&state, &ca_id)?))
}

pub(super) async fn remove(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(ca_id): Path<String>,
    ApiJson(request): ApiJson<pb::ReasonRequest>,
) -> Result<Json<pb::ManufacturerCa>, ServiceError> {
    principal.authorize(None, Need::Platform)?;
    if state.model.ca(&ca_id).is_none() {
        return Err(CaError::NotFound.into());
    }
    let cqrs = state.commands.cas.clone();
    state
        .execute(
            &cqrs,
            &principal,
            PLATFORM_TENANT,
            &ca_id,
            CaCommand::Remove {
                reason: request.reason,
            },
        )
        .await?;
    Ok(Json(view(&state, &ca_id)?))
}
