//! The SoftPOS key API: a phone receives its DUKPT initial key by ECDH to the key its
//! attestation vouched for. A phone has no manufacturer certificate, so it is served over TLS
//! without a client certificate and authenticated by its attestation token
//! (`Authorization: Bearer`, verified offline with the attestation service's published keys):
//!
//! 1. the token must verify for the tenant and the device of the path, and carry a `cnf`
//!    naming the attested key's certificate (RFC 7800 / RFC 8705 `x5t#S256`);
//! 2. the certificate in the body must be that one (its SHA-256), with a P-256 key whose key
//!    usage allows key agreement;
//! 3. the device must be an active SoftPOS terminal of an active tenant in
//!    terminal-management;
//! 4. the injection is the same for the same certificate (its id derives from the tenant, the
//!    terminal and the certificate), so a retried request resumes it; a new attestation key
//!    (the app reinstalled) gets a new injection, which replaces the key on confirmation.
//!
//! The answer is the same [`pb::DeviceKeyDelivery`] a PED downloads: an ephemeral P-256
//! public key and a TR-31 key block under the ECDH-derived key; the phone confirms the key
//! by its KCV, with its token again.

use std::sync::Arc;

use attestation_keys::Tokens;
use attestation_token::TokenError;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use mpos_errors::ServiceError;
use mpos_http::ApiJson;
use mpos_proto::key_injection as pb;
use sha2::{Digest as _, Sha256};

use crate::device_api::actor;
use crate::feed::{TerminalDoc, TerminalKind, TerminalStatus, TmsView};
use crate::injector::{InjectionSpec, Injector};

/// What the SoftPOS handlers share.
#[derive(Clone, Debug)]
pub struct SoftPosState {
    /// The injection flow.
    pub injector: Arc<Injector>,
    /// What terminal-management told.
    pub view: TmsView,
    /// The attestation service's token keys.
    pub tokens: Arc<Tokens>,
}

/// The SoftPOS key routes (without a fallback: merged into a listener's router).
pub fn softpos_routes(state: SoftPosState) -> Router {
    Router::new()
        .route(
            "/v1/tenants/{tenant_id}/devices/{device_id}/keys",
            post(request_key),
        )
        .route(
            "/v1/tenants/{tenant_id}/devices/{device_id}/keys/{injection_id}/confirm",
            post(confirm),
        )
        .layer(axum::middleware::from_fn_with_state(
            crate::SERVICE,
            mpos_http::observe,
        ))
        .with_state(state)
}

/// The SoftPOS key routes with an answer for any other path: what key-injection's own
/// SoftPOS listener serves.
pub fn softpos_router(state: SoftPosState) -> Router {
    softpos_routes(state).merge(
        Router::new()
            .fallback(|| async { ServiceError::not_found("no such route") })
            .layer(axum::middleware::from_fn_with_state(
                crate::SERVICE,
                mpos_http::observe,
            )),
    )
}

/// The bearer token of a request.
fn bearer(headers: &HeaderMap) -> Result<&str, ServiceError> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ServiceError::unauthenticated(
                "an attestation token is required (Authorization: Bearer)",
            )
        })
}

impl SoftPosState {
    /// The verified token's claims and the device's active SoftPOS terminal.
    async fn admit(
        &self,
        headers: &HeaderMap,
        tenant_id: &str,
        device_id: &str,
    ) -> Result<(attestation_token::Claims, TerminalDoc), ServiceError> {
        let token = bearer(headers)?;
        let now_unix = u64::try_from(mpos_es::now_micros() / 1_000_000).unwrap_or(0);
        let verified = self
            .tokens
            .verify_fetching(token, tenant_id, device_id, now_unix)
            .await
            .map_err(|error| {
                tracing::info!(%tenant_id, %device_id, reason = refusal(&error), "softpos key request refused");
                ServiceError::unauthenticated(format!("attestation token refused: {error}"))
            })?;
        let terminal = self
            .view
            .terminal(tenant_id, device_id)
            .await?
            .ok_or_else(|| {
                ServiceError::forbidden("this device is not a terminal of the tenant")
            })?;
        if terminal.kind != TerminalKind::SoftPos {
            return Err(ServiceError::forbidden(
                "a PED receives its key over mTLS with its device certificate",
            ));
        }
        if self.view.tenant_suspended(tenant_id).await? {
            return Err(ServiceError::forbidden(
                "the terminal's tenant is suspended",
            ));
        }
        if terminal.status != TerminalStatus::Active {
            return Err(crate::device_api::not_active(terminal.status));
        }
        Ok((verified.claims, terminal))
    }
}

/// A stable name for a refusal, for the log.
fn refusal(error: &TokenError) -> &'static str {
    match error {
        TokenError::Expired { .. } => "expired",
        TokenError::NotYetValid { .. } => "not_yet_valid",
        TokenError::WrongTenant => "wrong_tenant",
        TokenError::WrongDevice => "wrong_device",
        TokenError::UnknownKey { .. } => "unknown_key",
        TokenError::BadSignature => "bad_signature",
        TokenError::Blocked => "blocked",
        _ => "malformed",
    }
}

/// The injection of an attested key: one per tenant, terminal and certificate.
fn injection_id(tenant_id: &str, terminal_id: &str, certificate: &[u8]) -> String {
    let mut digest = Sha256::new();
    for part in [tenant_id.as_bytes(), terminal_id.as_bytes(), certificate] {
        digest.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        digest.update(part);
    }
    format!("softpos-{}", &hex::encode(digest.finalize())[..32])
}

/// The phone's initial key, wrapped for its attested key.
async fn request_key(
    State(state): State<SoftPosState>,
    headers: HeaderMap,
    Path((tenant_id, device_id)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::SoftPosKeyRequest>,
) -> Result<Json<pb::DeviceKeyDelivery>, ServiceError> {
    let (claims, terminal) = state.admit(&headers, &tenant_id, &device_id).await?;
    let Some(confirmation) = claims.cnf else {
        return Err(ServiceError::forbidden(
            "the attestation token names no attested key: attest again",
        ));
    };
    if request.attested_certificate.is_empty() {
        return Err(ServiceError::bad_request(
            "attested_certificate: the attested key's certificate (DER) is required",
        ));
    }
    if !confirmation.confirms(&request.attested_certificate) {
        return Err(ServiceError::forbidden(
            "attested_certificate: not the key the attestation token vouches for",
        ));
    }
    let method = crate::injector::method_for(&request.attested_certificate)
        .map_err(|reason| ServiceError::bad_request(format!("attested_certificate: {reason}")))?;
    if method != pb::DeliveryMethod::EcdhTr31 {
        return Err(ServiceError::bad_request(
            "attested_certificate: a SoftPOS key is delivered by ECDH to a P-256 key",
        ));
    }
    let actor = actor(&terminal);
    let injection_id = state
        .injector
        .request(
            &actor,
            InjectionSpec {
                tenant_id: tenant_id.clone(),
                terminal_id: terminal.terminal_id.clone(),
                bdk_id: None,
                certificate_der: request.attested_certificate.clone(),
                certificate_field: "attested_certificate",
                injection_id: Some(injection_id(
                    &tenant_id,
                    &terminal.terminal_id,
                    &request.attested_certificate,
                )),
                reason: "softpos attested key".to_owned(),
                background: false,
                attested: true,
            },
        )
        .await?;
    // The id derives from this terminal: the delivery must be that injection.
    let delivery = state
        .injector
        .deliver(&actor, &tenant_id, &terminal.terminal_id)
        .await?
        .filter(|delivery| delivery.injection_id == injection_id)
        .ok_or_else(|| {
            ServiceError::conflict(
                "no key waits for this attested key (installed or expired): attest again with a new key",
            )
        })?;
    tracing::info!(%tenant_id, terminal_id = %terminal.terminal_id, %injection_id, token_id = %claims.jti, "softpos initial key delivered");
    metrics::counter!("mpos_ki_softpos_keys_delivered_total").increment(1);
    Ok(Json(delivery))
}

/// The phone installed the key: its KCV.
async fn confirm(
    State(state): State<SoftPosState>,
    headers: HeaderMap,
    Path((tenant_id, device_id, injection_id)): Path<(String, String, String)>,
    ApiJson(request): ApiJson<pb::ConfirmInjectionRequest>,
) -> Result<Json<pb::InjectionResponse>, ServiceError> {
    let (_, terminal) = state.admit(&headers, &tenant_id, &device_id).await?;
    crate::device_api::confirm_for(&state.injector, &terminal, &injection_id, &request.kcv)
        .await
        .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injection_ids_are_one_per_tenant_terminal_and_certificate() {
        let id = injection_id("acme", "sp-1", b"cert");
        assert_eq!(id, injection_id("acme", "sp-1", b"cert"));
        assert!(id.starts_with("softpos-") && id.len() == 8 + 32, "{id}");
        for other in [
            injection_id("acme", "sp-2", b"cert"),
            injection_id("acme2", "sp-1", b"cert"),
            injection_id("acme", "sp-1", b"cert2"),
            // Lengths are part of the input: moving a byte between parts changes the id.
            injection_id("acmes", "p-1", b"cert"),
        ] {
            assert_ne!(id, other);
        }
    }

    #[test]
    fn a_request_without_a_bearer_token_is_unauthenticated() {
        let mut headers = HeaderMap::new();
        assert!(bearer(&headers).is_err());
        headers.insert(
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("Basic abc"),
        );
        assert!(bearer(&headers).is_err());
        headers.insert(
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("Bearer  "),
        );
        assert!(bearer(&headers).is_err());
        headers.insert(
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("Bearer a.b.c"),
        );
        assert_eq!(bearer(&headers).ok(), Some("a.b.c"));
    }
}
