//! Risk parameters at every level of the estate, each terminal's effective set with its
//! sources, and which terminals run which version.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use mpos_errors::ServiceError;
use mpos_http::ApiJson;
use mpos_proto::terminal_management as pb;

use super::AppState;
use crate::access::{Need, Principal};
use crate::estate::{EstateError, EstateId, NodeCommand, aggregate_id};
use crate::model::LevelParameters;
use crate::parameters::{Target, check_change, resolve_levels};
use crate::tenant::TenantCommand;
use crate::terminal::{TerminalCommand, TerminalError};

fn stored(parameters: &LevelParameters) -> pb::RiskParameters {
    parameters
        .parameters
        .as_ref()
        .map(|parameters| parameters.to_proto())
        .unwrap_or_default()
}

impl AppState {
    /// The parameters stored at a level, or not found.
    fn level_parameters(
        &self,
        tenant_id: &str,
        target: Target<'_>,
    ) -> Result<LevelParameters, ServiceError> {
        match target {
            Target::Tenant => self
                .model
                .tenant(tenant_id)
                .map(|tenant| tenant.parameters)
                .ok_or_else(|| ServiceError::not_found("tenant not found")),
            Target::Node(id) => self
                .model
                .node(tenant_id, id)
                .map(|node| node.parameters)
                .ok_or_else(|| EstateError::NotFound.into()),
            Target::Terminal(id) => self
                .model
                .terminal(tenant_id, id)
                .map(|terminal| terminal.parameters.clone())
                .ok_or_else(|| TerminalError::NotFound.into()),
        }
    }

    /// Validates, checks in combination, records, and re-signs the tenant's sets in the
    /// background.
    async fn set_parameters(
        &self,
        principal: &Principal,
        tenant_id: &str,
        target: Target<'_>,
        request: &pb::RiskParameters,
    ) -> Result<pb::RiskParameters, ServiceError> {
        self.tenant_for(principal, tenant_id, Need::Change)?;
        self.level_parameters(tenant_id, target)?;
        let typed = tms_params::validate(request)
            .map_err(|error| ServiceError::bad_request(error.to_string()))?;
        let parameters = typed.to_proto();
        check_change(&self.model, tenant_id, target, &Arc::new(typed))?;
        match target {
            Target::Tenant => {
                let cqrs = self.commands.tenants.clone();
                self.execute(
                    &cqrs,
                    principal,
                    tenant_id,
                    tenant_id,
                    TenantCommand::SetParameters { parameters },
                )
                .await?;
            }
            Target::Node(id) => {
                let id = EstateId::parse("node_id", id)?;
                let cqrs = self.commands.nodes.clone();
                self.execute(
                    &cqrs,
                    principal,
                    tenant_id,
                    &aggregate_id(tenant_id, &id),
                    NodeCommand::SetParameters { parameters },
                )
                .await?;
            }
            Target::Terminal(id) => {
                let id = EstateId::parse("terminal_id", id)?;
                let cqrs = self.commands.terminals.clone();
                self.execute(
                    &cqrs,
                    principal,
                    tenant_id,
                    &aggregate_id(tenant_id, &id),
                    TerminalCommand::SetParameters { parameters },
                )
                .await?;
            }
        }
        self.reissue(tenant_id);
        Ok(stored(&self.level_parameters(tenant_id, target)?))
    }

    /// Signs every terminal's new set ahead of the downloads, off the async runtime.
    /// A tenant's re-signing runs once at a time: changes arriving meanwhile are coalesced
    /// into one more run (a burst of changes costs two runs, not one per change).
    pub(super) fn reissue(&self, tenant_id: &str) {
        if !self.sets.begin_reissue(tenant_id) {
            return;
        }
        let (sets, model, tenant_id) =
            (self.sets.clone(), self.model.clone(), tenant_id.to_owned());
        tokio::task::spawn_blocking(move || {
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            loop {
                let (signed, refused) = sets.issue_all(&model, &tenant_id, threads);
                tracing::info!(%tenant_id, signed, refused, "parameter sets issued");
                if !sets.reissue_again(&tenant_id) {
                    break;
                }
            }
        });
    }
}

pub(super) async fn get_tenant_parameters(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(tenant_id): Path<String>,
) -> Result<Json<pb::RiskParameters>, ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Read)?;
    Ok(Json(stored(
        &state.level_parameters(&tenant_id, Target::Tenant)?,
    )))
}

pub(super) async fn put_tenant_parameters(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<pb::RiskParameters>,
) -> Result<Json<pb::RiskParameters>, ServiceError> {
    Ok(Json(
        state
            .set_parameters(&principal, &tenant_id, Target::Tenant, &request)
            .await?,
    ))
}

pub(super) async fn get_node_parameters(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, node_id)): Path<(String, String)>,
) -> Result<Json<pb::RiskParameters>, ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Read)?;
    Ok(Json(stored(
        &state.level_parameters(&tenant_id, Target::Node(&node_id))?,
    )))
}

pub(super) async fn put_node_parameters(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, node_id)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::RiskParameters>,
) -> Result<Json<pb::RiskParameters>, ServiceError> {
    Ok(Json(
        state
            .set_parameters(&principal, &tenant_id, Target::Node(&node_id), &request)
            .await?,
    ))
}

pub(super) async fn get_terminal_parameters(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, terminal_id)): Path<(String, String)>,
) -> Result<Json<pb::RiskParameters>, ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Read)?;
    Ok(Json(stored(&state.level_parameters(
        &tenant_id,
        Target::Terminal(&terminal_id),
    )?)))
}

pub(super) async fn put_terminal_parameters(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, terminal_id)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::RiskParameters>,
) -> Result<Json<pb::RiskParameters>, ServiceError> {
    Ok(Json(
        state
            .set_parameters(
                &principal,
                &tenant_id,
                Target::Terminal(&terminal_id),
                &request,
            )
            .await?,
    ))
}

/// The effective set of a terminal, each value with the level it came from.
pub(super) async fn effective(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, terminal_id)): Path<(String, String)>,
) -> Result<Json<pb::EffectiveParametersResponse>, ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Read)?;
    let path = state
        .model
        .terminal_path(&tenant_id, &terminal_id)
        .ok_or(TerminalError::NotFound)?;
    let effective = resolve_levels(&path.levels).map_err(|error| {
        ServiceError::conflict(format!(
            "the terminal's parameters are inconsistent: {error}"
        ))
    })?;
    Ok(Json(pb::EffectiveParametersResponse {
        tenant_id,
        terminal_id,
        version: path.version.position,
        parameters: Some(effective.to_proto()),
        missing: effective
            .missing_required()
            .iter()
            .map(ToString::to_string)
            .collect(),
    }))
}

/// Which live terminal runs which version, and which are behind.
pub(super) async fn status(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(tenant_id): Path<String>,
) -> Result<Json<pb::ParameterStatusResponse>, ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Read)?;
    let mut response = pb::ParameterStatusResponse::default();
    for terminal in state.model.terminals(&tenant_id, None) {
        if !terminal.state.is_live() {
            continue;
        }
        let Some(path) = state.model.terminal_path(&tenant_id, &terminal.terminal_id) else {
            continue;
        };
        let current_version = path.version.position;
        let behind = terminal.installed_version < current_version;
        response.total += 1;
        if behind {
            response.behind += 1;
        } else {
            response.up_to_date += 1;
        }
        response.terminals.push(pb::ParameterVersionStatus {
            terminal_id: terminal.terminal_id.clone(),
            current_version,
            installed_version: terminal.installed_version,
            behind,
            installed_at: (terminal.installed_at_us != 0)
                .then(|| mpos_proto::timestamp_from_micros(terminal.installed_at_us)),
        });
    }
    Ok(Json(response))
}

/// The platform's parameter-signing public key.
pub(super) async fn signing_key(State(state): State<AppState>) -> Json<pb::ParameterSigningKey> {
    Json(state.sets.signer().public_key())
}
