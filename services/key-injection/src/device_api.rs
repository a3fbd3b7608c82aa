//! The device API, served only over mutual TLS with the PED's manufacturer certificate (the
//! same trust as terminal-management's device API: the registered manufacturer CAs and their
//! CRLs). A device downloads the key waiting for it, confirms it by KCV, and reports its DUKPT
//! counter so that the inventory can warn before the counter runs out.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use device_identity::PeerCertificate;
use mpos_errors::ServiceError;
use mpos_http::ApiJson;
use mpos_proto::key_injection as pb;
use serde::Deserialize;

use crate::feed::{TerminalDoc, TerminalStatus, TmsView};
use crate::injector::{Actor, Injector};
use crate::slots::DeviceKeysCommand;

/// What the device handlers share.
#[derive(Clone, Debug)]
pub struct DeviceState {
    /// The injection flow.
    pub injector: Arc<Injector>,
    /// What terminal-management told.
    pub view: TmsView,
}

/// The device routes, with an answer for any other path: what key-injection's own device
/// listener serves.
pub fn device_router(state: DeviceState) -> Router {
    device_routes(state).merge(
        Router::new()
            .fallback(|| async { ServiceError::not_found("no such route") })
            .layer(axum::middleware::from_fn_with_state(
                crate::SERVICE,
                mpos_http::observe,
            )),
    )
}

/// The device routes alone, without an answer for other paths: to be merged into another
/// service's device listener (`mposd` serves them beside terminal-management's, so that a
/// device makes one mTLS connection for its activation and its key).
pub fn device_routes(state: DeviceState) -> Router {
    Router::new()
        .route("/v1/devices/{terminal_id}/keys", get(download))
        .route(
            "/v1/devices/{terminal_id}/keys/{injection_id}/confirm",
            post(confirm),
        )
        .route("/v1/devices/{terminal_id}/keys/usage", post(usage))
        .layer(axum::middleware::from_fn_with_state(
            crate::SERVICE,
            mpos_http::observe,
        ))
        .with_state(state)
}

impl DeviceState {
    /// The active terminal the device certificate is bound to, which must be the one named.
    async fn terminal(
        &self,
        peer: &PeerCertificate,
        terminal_id: &str,
    ) -> Result<TerminalDoc, ServiceError> {
        let fingerprint = peer.verified.fingerprint.to_string();
        let terminal = self
            .view
            .terminal_by_certificate(&fingerprint)
            .await?
            .ok_or_else(|| {
                tracing::info!(certificate_sha256 = %fingerprint, "unbound device refused");
                ServiceError::forbidden("this device is not bound to a terminal")
            })?;
        if terminal.terminal_id != terminal_id {
            return Err(ServiceError::forbidden(
                "the device certificate does not belong to this terminal",
            ));
        }
        if self.view.tenant_suspended(&terminal.tenant_id).await? {
            return Err(ServiceError::forbidden(
                "the terminal's tenant is suspended",
            ));
        }
        // Activated a moment ago, not yet seen here: nothing waits yet (the device polls).
        if terminal.status == TerminalStatus::Bound {
            return Err(ServiceError::not_found(
                "no key is waiting for this terminal yet",
            ));
        }
        if terminal.status != TerminalStatus::Active {
            return Err(not_active(terminal.status));
        }
        Ok(terminal)
    }
}

/// The refusal for a terminal that is not active: "the terminal is suspended", ….
pub(crate) fn not_active(status: TerminalStatus) -> ServiceError {
    ServiceError::forbidden(format!(
        "the terminal is {}",
        serde_json::to_value(status)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
            .replace('_', " ")
    ))
}

pub(crate) fn actor(terminal: &TerminalDoc) -> Actor {
    Actor(format!("device:{}", terminal.terminal_id))
}

/// The longest a download may wait for its key.
pub const MAX_WAIT_SECONDS: u64 = 25;

/// How long a download waits for its key.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DownloadQuery {
    /// Seconds to wait for a key before answering 404 (long poll; 0, the default: answer
    /// at once; at most [`MAX_WAIT_SECONDS`]).
    #[serde(default)]
    wait_seconds: u64,
}

/// How often a waiting download looks again without a ring (another instance may have
/// derived the key).
const RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// The key waiting for this terminal; 404 while none is, after waiting up to `waitSeconds`
/// for one.
async fn download(
    State(state): State<DeviceState>,
    Extension(peer): Extension<PeerCertificate>,
    Path(terminal_id): Path<String>,
    query: Result<axum::extract::Query<DownloadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<pb::DeviceKeyDelivery>, ServiceError> {
    let axum::extract::Query(query) = query.map_err(|rejection| {
        ServiceError::bad_request(format!(
            "query: {} (expected waitSeconds=0..{MAX_WAIT_SECONDS})",
            rejection.body_text()
        ))
    })?;
    if query.wait_seconds > MAX_WAIT_SECONDS {
        return Err(ServiceError::bad_request(format!(
            "waitSeconds: at most {MAX_WAIT_SECONDS}"
        )));
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(query.wait_seconds);
    let doorbell = state.injector.doorbells.subscribe(&terminal_id);
    loop {
        let rung = doorbell.bell.notified();
        tokio::pin!(rung);
        // Listening before looking: a ring between the look and the wait is not lost.
        rung.as_mut().enable();
        match download_once(&state, &peer, &terminal_id).await {
            Err(error)
                if error.code == mpos_errors::ErrorCode::NotFound
                    && tokio::time::Instant::now() < deadline =>
            {
                let recheck = (tokio::time::Instant::now() + RECHECK).min(deadline);
                tokio::select! {
                    () = rung => {}
                    () = tokio::time::sleep_until(recheck) => {}
                }
            }
            other => return other,
        }
    }
}

async fn download_once(
    state: &DeviceState,
    peer: &PeerCertificate,
    terminal_id: &str,
) -> Result<Json<pb::DeviceKeyDelivery>, ServiceError> {
    let terminal = state.terminal(peer, terminal_id).await?;
    let delivery = state
        .injector
        .deliver(
            &actor(&terminal),
            &terminal.tenant_id,
            &terminal.terminal_id,
        )
        .await?
        .ok_or_else(|| ServiceError::not_found("no key is waiting for this terminal"))?;
    tracing::info!(tenant_id = %terminal.tenant_id, terminal_id = %terminal.terminal_id, injection_id = %delivery.injection_id, "initial key delivered");
    Ok(Json(delivery))
}

/// The device installed the key: its KCV.
async fn confirm(
    State(state): State<DeviceState>,
    Extension(peer): Extension<PeerCertificate>,
    Path((terminal_id, injection_id)): Path<(String, String)>,
    ApiJson(request): ApiJson<pb::ConfirmInjectionRequest>,
) -> Result<Json<pb::InjectionResponse>, ServiceError> {
    let terminal = state.terminal(&peer, &terminal_id).await?;
    confirm_for(&state.injector, &terminal, &injection_id, &request.kcv)
        .await
        .map(Json)
}

/// A device's confirmation of the key it installed, for the injection `injection_id` of its
/// own terminal (another terminal's injection is not found), by a PED or a SoftPOS phone.
pub(crate) async fn confirm_for(
    injector: &Injector,
    terminal: &TerminalDoc,
    injection_id: &str,
    kcv: &str,
) -> Result<pb::InjectionResponse, ServiceError> {
    let injection = injector.load(&terminal.tenant_id, injection_id).await?;
    if injection.terminal_id() != terminal.terminal_id {
        return Err(ServiceError::not_found("injection not found"));
    }
    let response = injector
        .confirm(&actor(terminal), &terminal.tenant_id, injection_id, kcv)
        .await?;
    tracing::info!(tenant_id = %terminal.tenant_id, terminal_id = %terminal.terminal_id, kind = ?terminal.kind, %injection_id, "initial key confirmed");
    Ok(response)
}

/// A counter report.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UsageReport {
    /// The KSN of the device's last transaction (hex).
    ksn: String,
}

/// The device reports the KSN of its last transaction: an alarm is raised when its DUKPT
/// counter nears the end of its range.
async fn usage(
    State(state): State<DeviceState>,
    Extension(peer): Extension<PeerCertificate>,
    Path(terminal_id): Path<String>,
    ApiJson(report): ApiJson<UsageReport>,
) -> Result<Json<pb::ListKeySlotsResponse>, ServiceError> {
    let terminal = state.terminal(&peer, &terminal_id).await?;
    let counter = ksn_counter(&report.ksn)?;
    let aggregate_id = format!("{}/{}", terminal.tenant_id, terminal.terminal_id);
    state
        .injector
        .execute(
            &state.injector.slots,
            &actor(&terminal),
            &terminal.tenant_id,
            &aggregate_id,
            DeviceKeysCommand::ReportCounter {
                slot: crate::slots::DUKPT_SLOT.to_owned(),
                ksn_counter: counter,
                now_us: mpos_es::now_micros(),
            },
        )
        .await?;
    Ok(Json(
        state
            .injector
            .key_slots(&terminal.tenant_id, &terminal.terminal_id)
            .await?,
    ))
}

/// The transaction counter of a KSN: TDES (20 hex digits) or AES (24 hex digits), read by
/// paycrypto's KSN types.
pub fn ksn_counter(ksn: &str) -> Result<u32, ServiceError> {
    let counter = match ksn.len() {
        20 => paycrypto::dukpt::tdes::Ksn::from_hex(ksn)
            .ok()
            .map(|ksn| ksn.counter()),
        24 => paycrypto::dukpt::aes::Ksn::from_hex(ksn)
            .ok()
            .map(|ksn| ksn.counter()),
        _ => None,
    };
    counter
        .ok_or_else(|| ServiceError::bad_request("ksn: 20 (TDES) or 24 (AES) hexadecimal digits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_both_ksn_forms() {
        // ANSI X9.24-1:2009 A.4: KSN FFFF9876543210E00001 is the first transaction.
        assert_eq!(ksn_counter("FFFF9876543210E00001").ok(), Some(1));
        assert_eq!(ksn_counter("FFFF9876543210FFFFFF").ok(), Some(0x1F_FFFF));
        // X9.24-3-2017: initial key id 1234567890123456, counter 00000001.
        assert_eq!(ksn_counter("123456789012345600000001").ok(), Some(1));
        for bad in ["", "FFFF", "FFFF9876543210E0000G", "FFFF9876543210E000011"] {
            assert!(ksn_counter(bad).is_err(), "{bad}");
        }
    }
}
