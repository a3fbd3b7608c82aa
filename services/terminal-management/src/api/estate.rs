//! A tenant's estate: merchants, stores, terminal groups and terminals.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use mpos_errors::ServiceError;
use mpos_http::ApiJson;
use mpos_proto::terminal_management as pb;

use super::AppState;
use crate::access::{Need, Principal};
use crate::estate::{EstateError, EstateId, NodeCommand, NodeKind, aggregate_id};
use crate::terminal::{
    ATTESTATION_SUSPENSION, Activation, TerminalCommand, TerminalError, TerminalKind,
    is_attestation_suspension,
};

fn node_view(
    state: &AppState,
    tenant_id: &str,
    node_id: &str,
) -> Result<pb::EstateNode, ServiceError> {
    state
        .model
        .node(tenant_id, node_id)
        .map(|node| node.to_proto())
        .ok_or_else(|| EstateError::NotFound.into())
}

fn terminal_view(
    state: &AppState,
    tenant_id: &str,
    terminal_id: &str,
) -> Result<pb::Terminal, ServiceError> {
    state
        .model
        .terminal(tenant_id, terminal_id)
        .map(|terminal| terminal.to_proto())
        .ok_or_else(|| TerminalError::NotFound.into())
}

/// The parent named by `raw` as the read model knows it; unknown is a bad request naming
/// the field.
fn parent(
    state: &AppState,
    tenant_id: &str,
    raw: &str,
) -> Result<Option<crate::estate::ParentNode>, ServiceError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let id = EstateId::parse("parent_id", raw)?;
    state
        .model
        .parent(tenant_id, &id)
        .map(Some)
        .ok_or_else(|| ServiceError::bad_request(format!("parent_id: no estate node {id}")))
}

pub(super) async fn create_node(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<pb::CreateEstateNodeRequest>,
) -> Result<(StatusCode, Json<pb::EstateNode>), ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Change)?;
    let node_id = EstateId::parse("node_id", &request.node_id)?;
    let command = NodeCommand::Create {
        tenant_id: tenant_id.clone(),
        node_id: node_id.clone(),
        kind: NodeKind::from_proto(request.kind)?,
        parent: parent(&state, &tenant_id, &request.parent_id)?,
        name: request.name,
    };
    let cqrs = state.commands.nodes.clone();
    state
        .execute(
            &cqrs,
            &principal,
            &tenant_id,
            &aggregate_id(&tenant_id, &node_id),
            command,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(node_view(&state, &tenant_id, node_id.as_str())?),
    ))
}

pub(super) async fn list_nodes(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(tenant_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<pb::ListEstateNodesResponse>, ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Read)?;
    let kind = match query.get("kind").map(String::as_str) {
        None => None,
        Some("merchant") => Some(NodeKind::Merchant),
        Some("store") => Some(NodeKind::Store),
        Some("terminal_group") => Some(NodeKind::TerminalGroup),
        Some(_) => {
            return Err(ServiceError::bad_request(
                "kind must be merchant, store or terminal_group",
            ));
        }
    };
    let nodes = state
        .model
        .nodes(&tenant_id, kind, query.get("parent").map(String::as_str))
        .iter()
        .map(crate::model::NodeEntry::to_proto)
        .collect();
    Ok(Json(pb::ListEstateNodesResponse { nodes }))
}

pub(super) async fn get_node(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, node_id)): Path<(String, String)>,
) -> Result<Json<pb::EstateNode>, ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Read)?;
    Ok(Json(node_view(&state, &tenant_id, &node_id)?))
}

async fn node_command(
    state: &AppState,
    principal: &Principal,
    tenant_id: &str,
    raw_id: &str,
    command: NodeCommand,
) -> Result<Json<pb::EstateNode>, ServiceError> {
    let node_id = EstateId::parse("node_id", raw_id)?;
    if state.model.node(tenant_id, node_id.as_str()).is_none() {
        return Err(EstateError::NotFound.into());
    }
    let cqrs = state.commands.nodes.clone();
    state
        .execute(
            &cqrs,
            principal,
            tenant_id,
            &aggregate_id(tenant_id, &node_id),
            command,
        )
        .await?;
    Ok(Json(node_view(state, tenant_id, node_id.as_str())?))
}

pub(super) async fn rename_node(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, node_id)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::RenameEstateNodeRequest>,
) -> Result<Json<pb::EstateNode>, ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Change)?;
    node_command(
        &state,
        &principal,
        &tenant_id,
        &node_id,
        NodeCommand::Rename { name: request.name },
    )
    .await
}

pub(super) async fn close_node(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, node_id)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::ReasonRequest>,
) -> Result<Json<pb::EstateNode>, ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Change)?;
    let (open_children, live_terminals) = state.model.occupancy(&tenant_id, &node_id);
    node_command(
        &state,
        &principal,
        &tenant_id,
        &node_id,
        NodeCommand::Close {
            reason: request.reason,
            open_children,
            live_terminals,
        },
    )
    .await
}

/// Turns a bind request into the command (the certificate is checked against the trust
/// store and must not identify another live terminal).
fn bind_command(
    state: &AppState,
    tenant_id: &str,
    request: pb::BindTerminalRequest,
    replaces: Option<EstateId>,
) -> Result<(EstateId, TerminalCommand), ServiceError> {
    let terminal_id = EstateId::parse("terminal_id", &request.terminal_id)?;
    let kind = TerminalKind::from_proto(request.kind)?;
    let parent = parent(state, tenant_id, &request.parent_id)?.ok_or_else(|| {
        ServiceError::bad_request("parent_id: a terminal belongs to a store or a terminal group")
    })?;
    let device = if request.certificate_pem.trim().is_empty() {
        None
    } else {
        Some(crate::devices::binding_from_pem(
            state.model.trust(),
            &request.certificate_pem,
            chrono::Utc::now(),
        )?)
    };
    if let Some(device) = &device
        && let Some(holder) = state
            .model
            .terminal_by_certificate(&device.certificate_sha256)
    {
        // Another tenant's terminal is not named: only that the device is taken.
        let holder_name = if holder.tenant_id == tenant_id {
            format!(" (terminal {})", holder.terminal_id)
        } else {
            String::new()
        };
        return Err(ServiceError::already_exists(format!(
            "certificate_pem: this device is already bound to a live terminal{holder_name}"
        )));
    }
    Ok((
        terminal_id.clone(),
        TerminalCommand::Bind {
            tenant_id: tenant_id.to_owned(),
            terminal_id,
            kind,
            parent,
            device,
            replaces,
            label: request.label,
        },
    ))
}

pub(super) async fn bind_terminal(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(tenant_id): Path<String>,
    ApiJson(request): ApiJson<pb::BindTerminalRequest>,
) -> Result<(StatusCode, Json<pb::Terminal>), ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Change)?;
    let (terminal_id, command) = bind_command(&state, &tenant_id, request, None)?;
    let cqrs = state.commands.terminals.clone();
    state
        .execute(
            &cqrs,
            &principal,
            &tenant_id,
            &aggregate_id(&tenant_id, &terminal_id),
            command,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(terminal_view(&state, &tenant_id, terminal_id.as_str())?),
    ))
}

pub(super) async fn list_terminals(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(tenant_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<pb::ListTerminalsResponse>, ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Read)?;
    let terminals = state
        .model
        .terminals(&tenant_id, query.get("parent").map(String::as_str))
        .iter()
        .map(|terminal| terminal.to_proto())
        .collect();
    Ok(Json(pb::ListTerminalsResponse { terminals }))
}

pub(super) async fn get_terminal(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, terminal_id)): Path<(String, String)>,
) -> Result<Json<pb::Terminal>, ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Read)?;
    Ok(Json(terminal_view(&state, &tenant_id, &terminal_id)?))
}

/// The terminal a lifecycle action names, once the caller may take it: `need` for the
/// caller, a change of an active tenant, a well-formed and existing terminal id.
fn action_target(
    state: &AppState,
    principal: &Principal,
    tenant_id: &str,
    raw_id: &str,
    need: Need,
) -> Result<EstateId, ServiceError> {
    principal.authorize(Some(tenant_id), need)?;
    state.tenant_for(principal, tenant_id, Need::Change)?;
    let terminal_id = EstateId::parse("terminal_id", raw_id)?;
    if state
        .model
        .terminal(tenant_id, terminal_id.as_str())
        .is_none()
    {
        return Err(TerminalError::NotFound.into());
    }
    Ok(terminal_id)
}

/// An action's body, read only after the caller and the terminal are checked (so that a
/// malformed body never tells a stranger more than a missing terminal would).
fn action_body<T: serde::de::DeserializeOwned>(body: serde_json::Value) -> Result<T, ServiceError> {
    serde_json::from_value(body)
        .map_err(|error| ServiceError::bad_request(format!("invalid JSON body: {error}")))
}

/// Runs a lifecycle command on the terminal and answers its new view.
async fn run_action(
    state: &AppState,
    principal: &Principal,
    tenant_id: &str,
    terminal_id: &EstateId,
    command: TerminalCommand,
) -> Result<Json<pb::Terminal>, ServiceError> {
    let cqrs = state.commands.terminals.clone();
    state
        .execute(
            &cqrs,
            principal,
            tenant_id,
            &aggregate_id(tenant_id, terminal_id),
            command,
        )
        .await?;
    Ok(Json(terminal_view(state, tenant_id, terminal_id.as_str())?))
}

/// `POST .../terminals/{terminal_id}/suspend` (`ReasonRequest`). A reason starting with
/// `attestation:` is the attestation service's ([`is_attestation_suspension`]) and refused.
pub(super) async fn suspend_terminal(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, raw_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<pb::Terminal>, ServiceError> {
    let terminal_id = action_target(&state, &principal, &tenant_id, &raw_id, Need::Change)?;
    let reason = action_body::<pb::ReasonRequest>(body)?.reason;
    if is_attestation_suspension(&reason) {
        return Err(ServiceError::bad_request(format!(
            "reason: \"{ATTESTATION_SUSPENSION}\" starts the attestation service's suspensions only (they are lifted by its next passing verdict)"
        )));
    }
    let command = TerminalCommand::Suspend { reason };
    run_action(&state, &principal, &tenant_id, &terminal_id, command).await
}

/// `POST .../terminals/{terminal_id}/resume` (no body).
pub(super) async fn resume_terminal(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, raw_id)): Path<(String, String)>,
) -> Result<Json<pb::Terminal>, ServiceError> {
    let terminal_id = action_target(&state, &principal, &tenant_id, &raw_id, Need::Change)?;
    let command = TerminalCommand::Resume;
    run_action(&state, &principal, &tenant_id, &terminal_id, command).await
}

/// `POST .../terminals/{terminal_id}/blacklist` (`ReasonRequest`).
pub(super) async fn blacklist_terminal(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, raw_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<pb::Terminal>, ServiceError> {
    let terminal_id = action_target(&state, &principal, &tenant_id, &raw_id, Need::Change)?;
    let reason = action_body::<pb::ReasonRequest>(body)?.reason;
    let command = TerminalCommand::Blacklist { reason };
    run_action(&state, &principal, &tenant_id, &terminal_id, command).await
}

/// `POST .../terminals/{terminal_id}/decommission` (`ReasonRequest`).
pub(super) async fn decommission_terminal(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, raw_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<pb::Terminal>, ServiceError> {
    let terminal_id = action_target(&state, &principal, &tenant_id, &raw_id, Need::Change)?;
    let reason = action_body::<pb::ReasonRequest>(body)?.reason;
    let command = TerminalCommand::Decommission { reason };
    run_action(&state, &principal, &tenant_id, &terminal_id, command).await
}

/// `POST .../terminals/{terminal_id}/move` (`MoveTerminalRequest`).
pub(super) async fn move_terminal(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, raw_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<pb::Terminal>, ServiceError> {
    let terminal_id = action_target(&state, &principal, &tenant_id, &raw_id, Need::Change)?;
    let request: pb::MoveTerminalRequest = action_body(body)?;
    let parent = parent(&state, &tenant_id, &request.parent_id)?
        .ok_or_else(|| ServiceError::bad_request("parent_id: missing"))?;
    let command = TerminalCommand::Move { parent };
    run_action(&state, &principal, &tenant_id, &terminal_id, command).await
}

/// `POST .../terminals/{terminal_id}/activate` (`ActivateTerminalRequest`): for the
/// platform's own services only (operator token): PEDs activate themselves over mTLS,
/// SoftPOS devices on an attestation verdict.
pub(super) async fn activate_terminal(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, raw_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<pb::Terminal>, ServiceError> {
    let terminal_id = action_target(&state, &principal, &tenant_id, &raw_id, Need::Platform)?;
    let request: pb::ActivateTerminalRequest = action_body(body)?;
    let command = match pb::ActivationMethod::try_from(request.method) {
        Ok(pb::ActivationMethod::Attestation) => {
            TerminalCommand::Activate(Activation::Attestation {
                verdict_id: request.evidence,
            })
        }
        _ => {
            return Err(ServiceError::bad_request(
                "method: only ACTIVATION_METHOD_ATTESTATION here; a PED activates itself on the device API",
            ));
        }
    };
    run_action(&state, &principal, &tenant_id, &terminal_id, command).await
}

/// `POST .../terminals/{terminal_id}/swap` (`SwapTerminalRequest`).
pub(super) async fn swap_terminal(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((tenant_id, raw_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<pb::Terminal>, ServiceError> {
    let terminal_id = action_target(&state, &principal, &tenant_id, &raw_id, Need::Change)?;
    swap(&state, &principal, &tenant_id, &terminal_id, body).await
}

/// Swap: bind the replacement (which names the old terminal), then mark the old one
/// swapped out. The old terminal must be live before anything is written.
async fn swap(
    state: &AppState,
    principal: &Principal,
    tenant_id: &str,
    terminal_id: &EstateId,
    body: serde_json::Value,
) -> Result<Json<pb::Terminal>, ServiceError> {
    let request: pb::SwapTerminalRequest = action_body(body)?;
    let old = state
        .model
        .terminal(tenant_id, terminal_id.as_str())
        .ok_or(TerminalError::NotFound)?;
    if !old.state.is_live() {
        return Err(TerminalError::IllegalTransition {
            state: old.state.name(),
            action: "swapped out",
        }
        .into());
    }
    crate::estate::parse_reason(&request.reason)?;
    let replacement = request
        .replacement
        .ok_or_else(|| ServiceError::bad_request("replacement: missing"))?;
    let (replacement_id, bind) =
        bind_command(state, tenant_id, replacement, Some(terminal_id.clone()))?;
    let cqrs = state.commands.terminals.clone();
    state
        .execute(
            &cqrs,
            principal,
            tenant_id,
            &aggregate_id(tenant_id, &replacement_id),
            bind,
        )
        .await?;
    state
        .execute(
            &cqrs,
            principal,
            tenant_id,
            &aggregate_id(tenant_id, terminal_id),
            TerminalCommand::SwapOut {
                replacement: replacement_id.clone(),
                reason: request.reason,
            },
        )
        .await?;
    Ok(Json(terminal_view(
        state,
        tenant_id,
        replacement_id.as_str(),
    )?))
}

/// `POST /v1/tenants/{tenant}/terminal-imports?parent=<store or group>`: binds many PEDs
/// from a CSV (`text/csv`) or JSON (`application/json`) file of serials and device
/// certificates. The file is accepted whole or refused whole: every row is checked (its
/// certificate against the registered CAs, its terminal id and device not yet bound) before
/// anything is written. Each terminal's id is its certificate serial.
pub(super) async fn import_terminals(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(tenant_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Result<(StatusCode, Json<pb::ListTerminalsResponse>), ServiceError> {
    state.tenant_for(&principal, &tenant_id, Need::Change)?;
    let parent_id = query.get("parent").map_or("", String::as_str);
    let parent = parent(&state, &tenant_id, parent_id)?.ok_or_else(|| {
        ServiceError::bad_request("parent: the store or terminal group to bind into is missing")
    })?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let rows = crate::devices::parse_bulk(content_type, &body)?;
    let now = chrono::Utc::now();
    let mut commands = Vec::with_capacity(rows.len());
    for row in &rows {
        let field = format!("row {}: certificate", row.row);
        let device =
            crate::devices::verify_certificate(state.model.trust(), &row.certificate, &field, now)?;
        let terminal_id = EstateId::parse("terminal_id", &row.serial.to_string())?;
        if state
            .model
            .terminal(&tenant_id, terminal_id.as_str())
            .is_some()
        {
            return Err(ServiceError::already_exists(format!(
                "row {}: terminal {terminal_id} already exists",
                row.row
            )));
        }
        if state
            .model
            .terminal_by_certificate(&device.certificate_sha256)
            .is_some()
        {
            return Err(ServiceError::already_exists(format!(
                "row {}: this device is already bound to a live terminal",
                row.row
            )));
        }
        commands.push((
            terminal_id.clone(),
            TerminalCommand::Bind {
                tenant_id: tenant_id.clone(),
                terminal_id,
                kind: TerminalKind::Ped,
                parent: parent.clone(),
                device: Some(device),
                replaces: None,
                label: String::new(),
            },
        ));
    }
    let cqrs = state.commands.terminals.clone();
    let mut terminals = Vec::with_capacity(commands.len());
    for (terminal_id, command) in commands {
        state
            .execute(
                &cqrs,
                &principal,
                &tenant_id,
                &aggregate_id(&tenant_id, &terminal_id),
                command,
            )
            .await?;
        terminals.push(terminal_view(&state, &tenant_id, terminal_id.as_str())?);
    }
    tracing::info!(%tenant_id, count = terminals.len(), "terminals imported");
    Ok((
        StatusCode::CREATED,
        Json(pb::ListTerminalsResponse { terminals }),
    ))
}
