//! The admin HTTP API (operator token or tenant API key): rules, acquirers and their health,
//! a dry run, and a payment's exchange. Built from the route table of [`crate::routes`],
//! which also generates the OpenAPI document: served at `GET /openapi.json` and published as
//! `docs/openapi/routing.json` (a test keeps it current; run
//! `MPOS_UPDATE_OPENAPI=1 cargo test -p routing --test openapi` after an API change).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Json, Router};
use mpos_errors::ServiceError;
use mpos_feed::auth::{Need, Principal, authenticate};
use mpos_feed::tms::TmsView;
use mpos_http::{ApiJson, OperatorAuth, check_id};
use mpos_openapi::{ApiRouter, OPENAPI_PATH, RouterError, serve_document};
use mpos_proto::routing as pb;
use serde_json::{Value, json};

use crate::engine::{Actor, Router as Routing};
use crate::routes;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) router: Arc<Routing>,
    pub(crate) view: TmsView,
    pub(crate) operator: OperatorAuth,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The admin routes and the OpenAPI document at `GET /openapi.json` (no credentials). Fails
/// only when the route table and the handlers disagree.
pub fn router(state: AppState) -> Result<Router, RouterError> {
    let document = routes::openapi()?;
    let api = ApiRouter::new(routes::ADMIN_ROUTES)?
        .handle("getRoutingRules", get_rules)?
        .handle("putRoutingRules", put_rules)?
        .handle("dryRunRouting", dry_run)?
        .handle("listAcquirers", list_acquirers)?
        .handle("putAcquirer", put_acquirer)?
        .handle("deleteAcquirer", delete_acquirer)?
        .handle("getAcquirerHealth", get_health)?
        .handle("takeOutAcquirer", take_out)?
        .handle("putBackAcquirer", put_back)?
        .handle("getPaymentRouting", payment_routing)?
        .finish()?;
    Ok(api
        .route(OPENAPI_PATH, serve_document(&document))
        .fallback(|| async { ServiceError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            crate::SERVICE,
            mpos_http::observe,
        ))
        .with_state(state))
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

fn to_json(value: &impl serde::Serialize) -> Result<Value, ServiceError> {
    serde_json::to_value(value).map_err(|_| ServiceError::internal("cannot render the answer"))
}

/// `GET .../routing-rules`.
async fn get_rules(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(tenant_id): Path<String>,
) -> Result<Json<pb::RulesPublished>, ServiceError> {
    principal(&state, &headers, &tenant_id, Need::Read).await?;
    Ok(Json(state.router.rules(&tenant_id).await?))
}

/// `PUT .../routing-rules?expected_version=N` (`RuleSet`).
async fn put_rules(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(tenant_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    ApiJson(rules): ApiJson<pb::RuleSet>,
) -> Result<Json<pb::RulesPublished>, ServiceError> {
    let principal = principal(&state, &headers, &tenant_id, Need::Write).await?;
    let expected = query
        .get("expected_version")
        .map(|value| {
            value
                .parse::<u64>()
                .map_err(|_| ServiceError::bad_request("expected_version: a number"))
        })
        .transpose()?;
    Ok(Json(
        state
            .router
            .publish_rules(&Actor(principal.actor_name()), &tenant_id, rules, expected)
            .await?,
    ))
}

/// `POST .../routing-rules/dry-run` (`DecideRequest`).
async fn dry_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(tenant_id): Path<String>,
    ApiJson(mut request): ApiJson<pb::DecideRequest>,
) -> Result<Json<pb::DecideResponse>, ServiceError> {
    principal(&state, &headers, &tenant_id, Need::Read).await?;
    request.tenant_id = tenant_id;
    if request.payment_id.is_empty() {
        request.payment_id = "dry-run".to_owned();
    }
    Ok(Json(state.router.dry_run(request).await?))
}

/// `GET .../acquirers`.
async fn list_acquirers(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(tenant_id): Path<String>,
) -> Result<Json<Value>, ServiceError> {
    principal(&state, &headers, &tenant_id, Need::Read).await?;
    let acquirers = state.router.acquirers(&tenant_id).await?;
    Ok(Json(json!({ "acquirers": to_json(&acquirers)? })))
}

/// `PUT .../acquirers/{acquirer_id}` (`AcquirerSettings`).
async fn put_acquirer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((tenant_id, acquirer_id)): Path<(String, String)>,
    ApiJson(settings): ApiJson<pb::AcquirerSettings>,
) -> Result<Json<pb::AcquirerConfigured>, ServiceError> {
    let principal = principal(&state, &headers, &tenant_id, Need::Write).await?;
    Ok(Json(
        state
            .router
            .configure_acquirer(
                &Actor(principal.actor_name()),
                &tenant_id,
                &acquirer_id,
                settings,
            )
            .await?,
    ))
}

/// `DELETE .../acquirers/{acquirer_id}`.
async fn delete_acquirer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((tenant_id, acquirer_id)): Path<(String, String)>,
) -> Result<StatusCode, ServiceError> {
    let principal = principal(&state, &headers, &tenant_id, Need::Write).await?;
    state
        .router
        .remove_acquirer(&Actor(principal.actor_name()), &tenant_id, &acquirer_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn health_json(
    state: &AppState,
    tenant_id: &str,
    acquirer_id: &str,
) -> Result<pb::AcquirerHealthChanged, ServiceError> {
    let health = state.router.acquirer_health(tenant_id, acquirer_id).await?;
    let link_state = state
        .router
        .links()
        .states()
        .into_iter()
        .find(|(tenant, acquirer, _)| tenant == tenant_id && acquirer == acquirer_id)
        .map_or("not_started", |(_, _, state)| state);
    Ok(crate::engine::health_view(
        tenant_id,
        acquirer_id,
        &health,
        link_state,
    ))
}

/// `GET .../acquirers/{acquirer_id}/health`.
async fn get_health(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((tenant_id, acquirer_id)): Path<(String, String)>,
) -> Result<Json<pb::AcquirerHealthChanged>, ServiceError> {
    principal(&state, &headers, &tenant_id, Need::Read).await?;
    Ok(Json(health_json(&state, &tenant_id, &acquirer_id).await?))
}

/// `POST .../acquirers/{acquirer_id}/take-out?note=...`.
async fn take_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((tenant_id, acquirer_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<pb::AcquirerHealthChanged>, ServiceError> {
    let principal = principal(&state, &headers, &tenant_id, Need::Write).await?;
    let note = query.get("note").map_or("", String::as_str);
    state
        .router
        .force_open(
            &Actor(principal.actor_name()),
            &tenant_id,
            &acquirer_id,
            note,
        )
        .await?;
    Ok(Json(health_json(&state, &tenant_id, &acquirer_id).await?))
}

/// `POST .../acquirers/{acquirer_id}/put-back?note=...`.
async fn put_back(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((tenant_id, acquirer_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<pb::AcquirerHealthChanged>, ServiceError> {
    let principal = principal(&state, &headers, &tenant_id, Need::Write).await?;
    let note = query.get("note").map_or("", String::as_str);
    state
        .router
        .reset(
            &Actor(principal.actor_name()),
            &tenant_id,
            &acquirer_id,
            note,
        )
        .await?;
    Ok(Json(health_json(&state, &tenant_id, &acquirer_id).await?))
}

/// `GET .../payments/{payment_id}/routing`.
async fn payment_routing(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((tenant_id, payment_id)): Path<(String, String)>,
) -> Result<Json<Value>, ServiceError> {
    principal(&state, &headers, &tenant_id, Need::Read).await?;
    let exchange = state.router.exchange(&tenant_id, &payment_id).await?;
    if exchange.decided.is_none() {
        return Err(ServiceError::not_found("payment not found"));
    }
    Ok(Json(to_json(&exchange)?))
}
