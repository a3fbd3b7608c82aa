//! The HTTP APIs. Device routes: a PED over mTLS (its certificate arrives as a
//! [`PeerCertificate`] request extension), a SoftPOS phone over TLS with its attestation
//! token. Admin routes: the platform operator's token or a tenant API key.
//!
//! A payment runs in a task of its own, so a terminal that hangs up does not cancel it half
//! way: the payment completes, and if its answer can no longer be handed to the connection
//! that asked, it is reversed (`REVERSAL_REASON_TERMINAL_UNREACHABLE`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::{Extension, Json, Router};
use device_identity::PeerCertificate;
use mpos_errors::ServiceError;
use mpos_feed::auth::{Need, authenticate};
use mpos_feed::tms::TmsView;
use mpos_http::{ApiJson, OperatorAuth, check_id};
use mpos_openapi::{ApiRouter, OPENAPI_PATH, RouterError, serve_document};
use mpos_proto::authorization as pb;
use serde::Deserialize;

use crate::engine::{Authorizer, Caller, response_of};
use crate::routes;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) authorizer: Arc<Authorizer>,
    pub(crate) view: TmsView,
    pub(crate) operator: OperatorAuth,
}

impl AppState {
    /// The state over the operations, terminal-management's view (API keys) and the
    /// operator's token.
    pub fn new(authorizer: Arc<Authorizer>, view: TmsView, operator: OperatorAuth) -> Self {
        Self {
            authorizer,
            view,
            operator,
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
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

/// The device routes ([`routes::DEVICE_ROUTES`]), for a listener that puts a
/// [`PeerCertificate`] on requests (PEDs, mTLS) or none (SoftPOS, TLS).
pub fn device_router(state: AppState) -> Result<Router, RouterError> {
    let document = routes::openapi()?;
    let api = ApiRouter::new(routes::DEVICE_ROUTES)?
        .handle("submitPayment", submit)?
        .handle("getPaymentStatus", status)?
        .handle("reversePayment", reverse)?
        .finish()?;
    Ok(finish(
        api.route(OPENAPI_PATH, serve_document(&document)),
        state,
    ))
}

/// The device routes without the OpenAPI route, to merge into another listener's router
/// (`mposd`'s shared device listener).
pub fn device_routes(state: AppState) -> Result<Router, RouterError> {
    let api = ApiRouter::new(routes::DEVICE_ROUTES)?
        .handle("submitPayment", submit)?
        .handle("getPaymentStatus", status)?
        .handle("reversePayment", reverse)?
        .finish()?;
    Ok(api.with_state(state))
}

/// The admin routes ([`routes::ADMIN_ROUTES`]) and the OpenAPI document.
pub fn admin_router(state: AppState) -> Result<Router, RouterError> {
    let document = routes::openapi()?;
    let api = ApiRouter::new(routes::ADMIN_ROUTES)?
        .handle("getPayment", get_payment)?
        .handle("listPayments", list_payments)?
        .handle("getPaymentHistory", payment_history)?
        .finish()?;
    Ok(finish(
        api.route(OPENAPI_PATH, serve_document(&document)),
        state,
    ))
}

fn caller(peer: Option<&PeerCertificate>, token: &str) -> Caller {
    match peer {
        Some(peer) => Caller::Device {
            certificate_sha256: peer.verified.fingerprint.to_string(),
        },
        None => Caller::SoftPos {
            attestation_token: token.to_owned(),
        },
    }
}

/// `POST /v1/payments`.
async fn submit(
    State(state): State<AppState>,
    peer: Option<Extension<PeerCertificate>>,
    ApiJson(request): ApiJson<pb::PaymentRequest>,
) -> Result<Json<pb::PaymentResponse>, ServiceError> {
    let caller = caller(peer.as_deref(), &request.attestation_token);
    let (answer, answered) = tokio::sync::oneshot::channel();
    let authorizer = state.authorizer.clone();
    tokio::spawn(async move {
        let result = authorizer.pay(&caller, request).await;
        if let Err(Ok((tenant_id, response))) = answer.send(result) {
            tracing::warn!(
                payment_id = %response.payment_id,
                "terminal gone before the answer: reversing"
            );
            if let Err(error) = authorizer
                .undelivered(&tenant_id, &response.payment_id)
                .await
            {
                tracing::error!(error = %error.message, "reversal of an undelivered answer failed");
            }
        }
    });
    let (_, response) = answered
        .await
        .map_err(|_| ServiceError::internal("the payment task ended without an answer"))??;
    Ok(Json(response))
}

/// The terminal named in a device read.
#[derive(Debug, Deserialize)]
struct TerminalQuery {
    terminal_id: String,
    #[serde(default)]
    tenant_id: String,
}

/// `GET /v1/payments/{payment_id}`.
async fn status(
    State(state): State<AppState>,
    peer: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    Path(payment_id): Path<String>,
    Query(query): Query<TerminalQuery>,
) -> Result<Json<pb::PaymentResponse>, ServiceError> {
    check_id("payment_id", &payment_id)?;
    check_id("terminal_id", &query.terminal_id)?;
    // A SoftPOS phone presents its token as a bearer token on reads.
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    let caller = caller(peer.as_deref(), token);
    Ok(Json(
        state
            .authorizer
            .status(&caller, &query.tenant_id, &query.terminal_id, &payment_id)
            .await?,
    ))
}

/// `POST /v1/payments/{payment_id}/reversal`.
async fn reverse(
    State(state): State<AppState>,
    peer: Option<Extension<PeerCertificate>>,
    Path(payment_id): Path<String>,
    ApiJson(body): ApiJson<pb::ReversalRequestBody>,
) -> Result<Json<pb::PaymentResponse>, ServiceError> {
    check_id("payment_id", &payment_id)?;
    check_id("terminal_id", &body.terminal_id)?;
    let caller = caller(peer.as_deref(), &body.attestation_token);
    Ok(Json(
        state
            .authorizer
            .reverse(&caller, &body.tenant_id, &body.terminal_id, &payment_id)
            .await?,
    ))
}

/// `GET /v1/tenants/{tenant_id}/payments/{payment_id}`.
async fn get_payment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((tenant_id, payment_id)): Path<(String, String)>,
) -> Result<Json<pb::PaymentResponse>, ServiceError> {
    let principal = authenticate(&state.view, &state.operator, &headers).await?;
    check_id("tenant_id", &tenant_id)?;
    check_id("payment_id", &payment_id)?;
    principal.authorize(&tenant_id, Need::Read)?;
    let payment = state.authorizer.payment(&tenant_id, &payment_id).await?;
    if payment.received.is_none() {
        return Err(ServiceError::not_found("payment not found"));
    }
    Ok(Json(response_of(&payment)))
}

/// `GET /v1/tenants/{tenant_id}/payments?limit=N`.
async fn list_payments(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(tenant_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<pb::PaymentList>, ServiceError> {
    let principal = authenticate(&state.view, &state.operator, &headers).await?;
    check_id("tenant_id", &tenant_id)?;
    principal.authorize(&tenant_id, Need::Read)?;
    let limit = match query.get("limit") {
        None => 50,
        Some(value) => value.parse::<u32>().map_err(|_| {
            ServiceError::bad_request(format!(
                "limit: a number from 1 to {}",
                crate::listing::MAX_LIST
            ))
        })?,
    };
    Ok(Json(
        state.authorizer.recent_payments(&tenant_id, limit).await?,
    ))
}

/// `GET /v1/tenants/{tenant_id}/payments/{payment_id}/history`.
async fn payment_history(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((tenant_id, payment_id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ServiceError> {
    let principal = authenticate(&state.view, &state.operator, &headers).await?;
    check_id("tenant_id", &tenant_id)?;
    check_id("payment_id", &payment_id)?;
    principal.authorize(&tenant_id, Need::Read)?;
    Ok(Json(
        state
            .authorizer
            .payment_history(&tenant_id, &payment_id)
            .await?,
    ))
}
