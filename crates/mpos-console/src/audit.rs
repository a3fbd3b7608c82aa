//! The audit page's two checks, for the platform operator only:
//! - `POST /console/api/audit/verify`: every service's audit trail checked as
//!   `mposctl audit verify` checks it (`mpos_es::verify`: the hash chain, each aggregate's
//!   sequence, the head row and the signed checkpoints);
//! - `POST /console/api/audit/replay`: every read model a service keeps of its own log
//!   compared with a fresh copy replayed from that log, as `mposctl replay --read-model all`
//!   compares them (`mpos_es::compare_read_models`: both digests at the live checkpoint).

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use ed25519_dalek::VerifyingKey;
use mpos_errors::ServiceError;
use mpos_es::{EventStore, ReplayedReadModel, digest_documents};
use serde_json::{Value, json};

use crate::Console;

/// A service's read models as fresh (empty) copies: the service's own `read_models()`.
pub type ReadModels = fn() -> Vec<Box<dyn ReplayedReadModel>>;

/// The logs audit verification reads — each service's store — the keys its signed
/// checkpoints must verify under, and the read models each service keeps of its log.
pub struct AuditLogs {
    logs: Vec<(String, EventStore)>,
    trusted_keys: Vec<VerifyingKey>,
    read_models: Vec<(String, ReadModels)>,
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
        Self {
            logs,
            trusted_keys,
            read_models: Vec::new(),
        }
    }

    /// Offers the replay of the read models of every platform service that keeps some of its
    /// own log (terminal-management, attestation, routing, authorization), for those whose
    /// log is among `logs`.
    pub fn platform_read_models(self) -> Self {
        [
            (
                terminal_management::SERVICE,
                terminal_management::read_models as ReadModels,
            ),
            (attestation::SERVICE, attestation::read_models),
            (routing::SERVICE, routing::read_models),
            (authorization::SERVICE, authorization::read_models),
        ]
        .into_iter()
        .fold(self, |logs, (service, models)| {
            logs.read_models(service, models)
        })
    }

    /// Offers the replay of `service`'s read models (of its log among `logs`).
    pub fn read_models(mut self, service: &str, models: ReadModels) -> Self {
        self.read_models.push((service.to_owned(), models));
        self
    }

    /// Whether any read model can be replayed.
    pub fn offers_replay(&self) -> bool {
        !self.read_models.is_empty()
    }

    /// Compares every read model with its replay from the log, service by service; the
    /// report (`identical` only if every read model is).
    pub async fn replay(&self) -> Result<Value, ServiceError> {
        let mut services = Vec::new();
        let mut identical = true;
        for (service, store) in &self.logs {
            let Some((_, models)) = self.read_models.iter().find(|(name, _)| name == service)
            else {
                continue;
            };
            let (compared, read) = mpos_es::compare_read_models(store, models())
                .await
                .map_err(|error| {
                    tracing::warn!(service = %service, %error, "read model replay failed");
                    ServiceError::unavailable(format!("{service}'s read models cannot be replayed"))
                })?;
            let mut read_models = Vec::with_capacity(compared.len());
            for model in &compared {
                let fresh = model.copy.documents().map_err(|error| {
                    tracing::warn!(service = %service, %error, "replayed read model unreadable");
                    ServiceError::internal("a replayed read model cannot be read")
                })?;
                let (live, replayed) = (digest_documents(&model.live), digest_documents(&fresh));
                identical &= live == replayed;
                read_models.push(json!({
                    "name": model.copy.name(),
                    "position": model.position,
                    "live": {"documents": model.live.len(), "digest": live},
                    "replayed": {"documents": fresh.len(), "digest": replayed},
                    "identical": live == replayed,
                }));
            }
            services.push(json!({
                "service": service,
                "eventsRead": read,
                "readModels": read_models,
            }));
        }
        if !identical {
            tracing::warn!("a read model differs from its replay");
        }
        Ok(json!({ "identical": identical, "services": services }))
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

/// The handler of verification: the platform operator's bearer token, then
/// [`AuditLogs::verify`].
pub(crate) async fn verify(State(console): State<Console>, request: Request) -> Response {
    operator_only(&console, request, Check::Verify).await
}

/// The handler of the read models' replay: the platform operator's bearer token, then
/// [`AuditLogs::replay`].
pub(crate) async fn replay(State(console): State<Console>, request: Request) -> Response {
    operator_only(&console, request, Check::Replay).await
}

#[derive(Clone, Copy)]
enum Check {
    Verify,
    Replay,
}

async fn operator_only(console: &Console, request: Request, check: Check) -> Response {
    // Owned before any await: the request's body is not `Sync`.
    let presented = mpos_http::bearer_token(&request).map(str::to_owned);
    drop(request);
    let result = async {
        let presented = presented
            .as_deref()
            .ok_or_else(|| ServiceError::unauthenticated("missing bearer token"))?;
        if !console.operator.accepts(presented) {
            return Err(ServiceError::forbidden(
                "the audit checks are for the platform operator's token",
            ));
        }
        let Some(logs) = &console.audit else {
            return Err(ServiceError::not_found(
                "audit checks are not offered by this console",
            ));
        };
        match check {
            Check::Verify => logs.verify().await,
            Check::Replay => logs.replay().await,
        }
    }
    .await;
    let mut response = match result {
        Ok(report) => axum::Json(report).into_response(),
        Err(error) => error.into_response(),
    };
    crate::assets::no_store(&mut response);
    response
}
