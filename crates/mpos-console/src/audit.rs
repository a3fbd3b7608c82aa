//! `POST /console/api/audit/verify`: every service's audit trail checked as
//! `mposctl audit verify` checks it (`mpos_es::verify`: the hash chain, each aggregate's
//! sequence, the head row and the signed checkpoints), for the platform operator only.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use ed25519_dalek::VerifyingKey;
use mpos_errors::ServiceError;
use mpos_es::EventStore;
use serde_json::{Value, json};

use crate::Console;

/// The logs audit verification reads — each service's store — and the keys its signed
/// checkpoints must verify under.
pub struct AuditLogs {
    logs: Vec<(String, EventStore)>,
    trusted_keys: Vec<VerifyingKey>,
}

impl std::fmt::Debug for AuditLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLogs")
            .field(
                "services",
                &self.logs.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl AuditLogs {
    /// The logs of `logs` (service name, store), checkpoints trusted under `trusted_keys`.
    pub fn new(logs: Vec<(String, EventStore)>, trusted_keys: Vec<VerifyingKey>) -> Self {
        Self { logs, trusted_keys }
    }

    /// Verifies every log, in order; the report (`intact` only if every log is).
    pub async fn verify(&self) -> Result<Value, ServiceError> {
        let mut services = Vec::with_capacity(self.logs.len());
        let mut intact = true;
        for (service, store) in &self.logs {
            let report = mpos_es::verify(store, &self.trusted_keys)
                .await
                .map_err(|error| {
                    tracing::warn!(service = %service, %error, "audit verification failed to read");
                    ServiceError::unavailable(format!("{service}'s log cannot be read"))
                })?;
            intact &= report.is_intact();
            services.push(json!({
                "service": service,
                "intact": report.is_intact(),
                "eventsChecked": report.events_checked,
                "checkpointsChecked": report.checkpoints_checked,
                "lastPosition": report.last_position,
                "finding": report.tamper.as_ref().map(|tamper| json!({
                    "kind": tamper.kind(),
                    "position": tamper.position(),
                    "message": tamper.explain(),
                })),
            }));
        }
        if !intact {
            tracing::warn!("audit verification found the trail not intact");
        }
        Ok(json!({ "intact": intact, "services": services }))
    }
}

/// The handler: the platform operator's bearer token, then [`AuditLogs::verify`].
pub(crate) async fn verify(State(console): State<Console>, request: Request) -> Response {
    // Owned before any await: the request's body is not `Sync`.
    let presented = mpos_http::bearer_token(&request).map(str::to_owned);
    drop(request);
    let result = async {
        let presented = presented
            .as_deref()
            .ok_or_else(|| ServiceError::unauthenticated("missing bearer token"))?;
        if !console.operator.accepts(presented) {
            return Err(ServiceError::forbidden(
                "audit verification is for the platform operator's token",
            ));
        }
        let Some(logs) = &console.audit else {
            return Err(ServiceError::not_found(
                "audit verification is not offered by this console",
            ));
        };
        logs.verify().await
    }
    .await;
    let mut response = match result {
        Ok(report) => axum::Json(report).into_response(),
        Err(error) => error.into_response(),
    };
    crate::assets::no_store(&mut response);
    response
}
