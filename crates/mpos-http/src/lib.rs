//! What every service's HTTP API shares:
//!
//! * [`ApiJson`]: a JSON body whose rejection is a `bad_request` in the shared error format;
//! * [`OperatorAuth`] with [`require_operator`]: the platform operator's bearer token, kept
//!   only as a SHA-256 digest and compared in constant time;
//! * [`observe`]: a span per request continuing the caller's trace, and the shared HTTP
//!   metrics labelled with the service;
//! * [`api_key`]: tenant API keys as presented, checked against the digest terminal-management
//!   publishes.

pub mod api_key;

/// Checks an identifier taken from a path or body (a tenant, terminal, device, BDK id…): 1 to
/// 64 ASCII letters, digits, `-`, `_` or `.`; else a `bad_request` naming `field`.
pub fn check_id(field: &str, value: &str) -> Result<(), ServiceError> {
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

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mpos_errors::ServiceError;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A JSON body whose rejection is a `bad_request` in the shared error format.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ServiceError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ServiceError::bad_request(format!(
                "invalid JSON body: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// The platform operator's bearer token, as a digest.
#[derive(Clone)]
pub struct OperatorAuth {
    token_hash: [u8; 32],
}

impl std::fmt::Debug for OperatorAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorAuth").finish_non_exhaustive()
    }
}

impl OperatorAuth {
    /// Keeps only the SHA-256 of `token`.
    pub fn new(token: &SecretString) -> Self {
        Self {
            token_hash: Sha256::digest(token.expose_secret().as_bytes()).into(),
        }
    }

    /// Whether `presented` is the operator's token (constant time).
    pub fn accepts(&self, presented: &str) -> bool {
        let presented_hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(presented_hash.ct_eq(&self.token_hash))
    }
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub fn bearer_token(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
}

/// Middleware (`from_fn_with_state(auth, require_operator)`): rejects requests without the
/// operator's bearer token.
pub async fn require_operator(
    State(auth): State<OperatorAuth>,
    request: Request,
    next: Next,
) -> Response {
    let Some(presented) = bearer_token(&request) else {
        return ServiceError::unauthenticated("missing bearer token").into_response();
    };
    if !auth.accepts(presented) {
        return ServiceError::unauthenticated("invalid bearer token").into_response();
    }
    next.run(request).await
}

/// Middleware (`from_fn_with_state(service_name, observe)`): a span per request, continuing
/// the caller's trace, and the shared HTTP metrics.
pub async fn observe(
    State(service): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let span = tracing::info_span!("http request", %method, %route);
    if let Some(traceparent) = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
    {
        mpos_telemetry::set_parent_from_traceparent(&span, traceparent);
    }
    let started = Instant::now();
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(mpos_telemetry::metric_names::HTTP_REQUESTS_TOTAL,
        "service" => service, "route" => route.clone(), "status" => status)
    .increment(1);
    metrics::histogram!(mpos_telemetry::metric_names::HTTP_REQUEST_DURATION_SECONDS,
        "service" => service, "route" => route)
    .record(started.elapsed().as_secs_f64());
    response
}
