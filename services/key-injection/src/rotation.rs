//! BDK rotation: the old BDK is retired (`BdkRetired`: it allocates nothing more), the new one
//! becomes the tenant's current BDK (new devices get it), and the devices keyed under the old
//! one are re-keyed under the new one in batches: a batch of re-injections (reason
//! `rotation`) starts when every injection of the previous batch is confirmed, failed or
//! expired. The progress is a document beside the log, moved by compare-and-set on a version
//! (so two instances never step the same rotation twice); every re-injection is in the log.

use std::time::Duration;

use mpos_errors::ServiceError;
use mpos_es::{Document, StoreError};
use mpos_proto::key_injection as pb;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, reinject_terminal};
use crate::bdk::{Bdk, BdkCommand};
use crate::feed::TerminalStatus;
use crate::injection::State;
use crate::injector::Actor;

/// The projection of rotations in progress and done.
pub const PROJECTION: &str = "ki-rotations";
const DEFAULT_BATCH: u32 = 100;
const MAX_BATCH: u32 = 10_000;

/// A rotation's progress.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RotationDoc {
    tenant_id: String,
    from_bdk_id: String,
    to_bdk_id: String,
    batch_size: u32,
    terminals: Vec<String>,
    next: usize,
    in_flight: Vec<(String, String)>,
    started: u32,
    rekeyed: u32,
    skipped: u32,
    completed: bool,
    version: u64,
}

impl RotationDoc {
    fn to_proto(&self) -> pb::BdkRotation {
        pb::BdkRotation {
            tenant_id: self.tenant_id.clone(),
            from_bdk_id: self.from_bdk_id.clone(),
            to_bdk_id: self.to_bdk_id.clone(),
            batch_size: self.batch_size,
            terminals: u32::try_from(self.terminals.len()).unwrap_or(u32::MAX),
            started: self.started,
            rekeyed: self.rekeyed,
            skipped: self.skipped,
            completed: self.completed,
        }
    }

    fn consumer(&self) -> String {
        format!("ki-rotation:{}/{}", self.tenant_id, self.from_bdk_id)
    }
}

/// Starts and steps rotations.
#[derive(Debug, Default)]
pub struct Rotations {
    wake: tokio::sync::Notify,
}

fn unreadable(error: serde_json::Error) -> ServiceError {
    tracing::error!(%error, "unreadable rotation document");
    ServiceError::internal("unreadable rotation document")
}

impl Rotations {
    async fn load(
        state: &AppState,
        tenant_id: &str,
        from_bdk_id: &str,
    ) -> Result<Option<RotationDoc>, ServiceError> {
        state
            .injector
            .store
            .document(PROJECTION, tenant_id, from_bdk_id)
            .await?
            .map(|document| serde_json::from_str(&document.payload).map_err(unreadable))
            .transpose()
    }

    /// Saves the next version; `false` if another instance saved one first.
    async fn save(state: &AppState, doc: &mut RotationDoc) -> Result<bool, ServiceError> {
        let from = doc.version;
        doc.version += 1;
        let document = Document {
            id: doc.from_bdk_id.clone(),
            tenant_id: doc.tenant_id.clone(),
            position: doc.version,
            payload: serde_json::to_string(doc).map_err(unreadable)?,
        };
        match state
            .injector
            .store
            .commit_documents(PROJECTION, &[document], &doc.consumer(), from, doc.version)
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Starts rotating the tenant's devices from `from_bdk_id` to the request's BDK; asking
    /// again answers the rotation's progress.
    pub async fn start(
        &self,
        state: &AppState,
        actor: &Actor,
        tenant_id: &str,
        from_bdk_id: &str,
        request: &pb::RotateBdkRequest,
    ) -> Result<pb::BdkRotation, ServiceError> {
        crate::api::check_id("to_bdk_id", &request.to_bdk_id)?;
        if let Some(existing) = Self::load(state, tenant_id, from_bdk_id).await? {
            return Ok(existing.to_proto());
        }
        if request.to_bdk_id == from_bdk_id {
            return Err(ServiceError::bad_request(
                "to_bdk_id: a BDK cannot be rotated to itself",
            ));
        }
        let batch_size = match request.batch_size {
            0 => DEFAULT_BATCH,
            size if size <= MAX_BATCH => size,
            _ => {
                return Err(ServiceError::bad_request("batch_size: 1 to 10,000 devices"));
            }
        };
        for bdk in [from_bdk_id, request.to_bdk_id.as_str()] {
            if !state.injector.bdk_exists(tenant_id, bdk).await? {
                return Err(ServiceError::not_found(format!("BDK {bdk} not found")));
            }
        }
        // The devices keyed under the old BDK now.
        let terminals: Vec<String> = state
            .injector
            .tenant_device_keys(tenant_id)
            .await?
            .into_iter()
            .filter(|(_, keys)| {
                keys.to_proto()
                    .iter()
                    .any(|slot| !slot.revoked && slot.bdk_id == from_bdk_id)
            })
            .map(|(terminal_id, _)| terminal_id)
            .collect();
        state
            .injector
            .execute::<Bdk>(
                &state.injector.bdks,
                actor,
                tenant_id,
                &format!("{tenant_id}/{from_bdk_id}"),
                BdkCommand::Retire {
                    reason: format!("rotated to {}", request.to_bdk_id),
                },
            )
            .await?;
        state
            .injector
            .set_current_bdk(tenant_id, &request.to_bdk_id)
            .await?;
        let mut doc = RotationDoc {
            tenant_id: tenant_id.to_owned(),
            from_bdk_id: from_bdk_id.to_owned(),
            to_bdk_id: request.to_bdk_id.clone(),
            batch_size,
            completed: terminals.is_empty(),
            terminals,
            ..RotationDoc::default()
        };
        if !Self::save(state, &mut doc).await? {
            // Started by another request at the same moment.
            if let Some(existing) = Self::load(state, tenant_id, from_bdk_id).await? {
                return Ok(existing.to_proto());
            }
        }
        tracing::info!(%tenant_id, from_bdk_id, to_bdk_id = %doc.to_bdk_id, terminals = doc.terminals.len(), "bdk rotation started");
        self.wake.notify_one();
        Ok(doc.to_proto())
    }

    /// The rotation's progress.
    pub async fn progress(
        state: &AppState,
        tenant_id: &str,
        from_bdk_id: &str,
    ) -> Result<Option<pb::BdkRotation>, ServiceError> {
        Ok(Self::load(state, tenant_id, from_bdk_id)
            .await?
            .map(|doc| doc.to_proto()))
    }

    /// One step of one rotation: collects finished injections of the batch, starts the next
    /// batch when it is done.
    async fn step(state: &AppState, mut doc: RotationDoc) -> Result<(), ServiceError> {
        let actor = Actor("service:key-injection".to_owned());
        let before = (doc.in_flight.len(), doc.next, doc.rekeyed, doc.skipped);
        let mut still = Vec::new();
        for (terminal_id, injection_id) in std::mem::take(&mut doc.in_flight) {
            let injection = state.injector.load(&doc.tenant_id, &injection_id).await?;
            match injection.state() {
                State::Confirmed => doc.rekeyed += 1,
                State::Failed | State::Expired => doc.skipped += 1,
                _ => {
                    // Expire what waited too long; the device may come back later.
                    let now = mpos_es::now_micros();
                    if now > injection.expires_at_us() {
                        let _ = state
                            .injector
                            .execute(
                                &state.injector.injections,
                                &actor,
                                &doc.tenant_id,
                                &format!("{}/{injection_id}", doc.tenant_id),
                                crate::injection::InjectionCommand::Expire { now_us: now },
                            )
                            .await;
                    }
                    still.push((terminal_id, injection_id));
                }
            }
        }
        doc.in_flight = still;
        if doc.in_flight.is_empty() && doc.next < doc.terminals.len() {
            let end = (doc.next + doc.batch_size as usize).min(doc.terminals.len());
            let batch: Vec<String> = doc.terminals[doc.next..end].to_vec();
            doc.next = end;
            for terminal_id in batch {
                let active = state
                    .view
                    .terminal(&doc.tenant_id, &terminal_id)
                    .await?
                    .is_some_and(|terminal| terminal.status == TerminalStatus::Active);
                if !active {
                    doc.skipped += 1;
                    continue;
                }
                match reinject_terminal(
                    state,
                    &actor,
                    &doc.tenant_id,
                    &terminal_id,
                    Some(doc.to_bdk_id.clone()),
                    "rotation",
                )
                .await
                {
                    Ok(injection_id) => {
                        doc.started += 1;
                        doc.in_flight.push((terminal_id, injection_id));
                    }
                    Err(error) => {
                        tracing::warn!(tenant_id = %doc.tenant_id, %terminal_id, error = %error.message, "rotation re-injection refused");
                        doc.skipped += 1;
                    }
                }
            }
        }
        doc.completed = doc.in_flight.is_empty() && doc.next >= doc.terminals.len();
        if (doc.in_flight.len(), doc.next, doc.rekeyed, doc.skipped) != before || doc.completed {
            if doc.completed {
                tracing::info!(tenant_id = %doc.tenant_id, from_bdk_id = %doc.from_bdk_id, rekeyed = doc.rekeyed, skipped = doc.skipped, "bdk rotation completed");
            }
            Self::save(state, &mut doc).await?;
        }
        Ok(())
    }

    /// Steps every rotation in progress, every `tick` or when one starts, until `cancel`.
    pub async fn run(&self, state: AppState, tick: Duration, cancel: CancellationToken) {
        loop {
            match state.injector.store.list_documents(PROJECTION, None).await {
                Ok(documents) => {
                    for document in documents {
                        let Ok(doc) = serde_json::from_str::<RotationDoc>(&document.payload) else {
                            continue;
                        };
                        if doc.completed {
                            continue;
                        }
                        if let Err(error) = Self::step(&state, doc).await {
                            tracing::warn!(error = %error.message, "bdk rotation step failed");
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read bdk rotations"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(tick) => {}
            }
        }
    }
}
