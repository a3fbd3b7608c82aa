//! Acting on the attestation service's verdicts about SoftPOS terminals, from its event stream
//! (service `attestation`, followed with [`mpos_feed::follow`]). A device's current verdict is
//! that of its last `DeviceAttested` or `DeviceVerdictChanged`; the device id is the SoftPOS
//! terminal's id. What terminal-management does with it, as the actor
//! `service:attestation` (the attestation event's id as the causation):
//!
//! - a **bound** SoftPOS terminal whose device attested with a passing verdict (ALLOW or FLAG)
//!   is **activated** (`Activation::Attestation`, the verdict id being the `DeviceAttested`
//!   event's id);
//! - an **active** SoftPOS terminal whose verdict becomes BLOCK is **suspended**, with a
//!   reason that starts with [`ATTESTATION_SUSPENSION`] and names the blocking codes, e.g.
//!   `attestation: verdict block (REATTESTATION_MISSED)`;
//! - a terminal **suspended by attestation** (its suspension reason starts so; the admin API
//!   refuses such a reason from a person) is **resumed** when its verdict passes again. A
//!   terminal suspended by a person is never resumed here: the terminal aggregate itself checks
//!   the reason of its current suspension ([`TerminalCommand::ResumeAfterAttestation`]), so a
//!   person who resumed and suspended it again meanwhile wins.
//!
//! PEDs, blacklisted, swapped-out and decommissioned terminals are never touched; unknown
//! terminals, and terminals of a suspended tenant (whose estate is frozen), are ignored
//! (logged). Only `DeviceAttested` and a `DeviceVerdictChanged` that turns the verdict from
//! passing to BLOCK or back start work; `ReattestationMissed` is followed by a
//! `DeviceVerdictChanged` when the policy blocks it.
//!
//! The projection `tm-attestation` keeps one document per device (`device/<tenant>/<device>`):
//! its current verdict and reasons, and the `DeviceAttested` that may activate its terminal.
//! The work reconciles the terminal with the device's verdict as of the end of the batch (from
//! the documents, not from each event), and a command already in the wanted state is a no-op:
//! an event delivered again, or a batch applied again, changes nothing.

use std::sync::Arc;

use cqrs_es::AggregateError;
use mpos_bus::EventEnvelope;
use mpos_errors::ServiceError;
use mpos_es::{CommandMetadata, Cqrs, Document, EventStore};
use mpos_feed::follow::{Applied, FeedNames, FeedSource, Follower, Overlay};
use mpos_proto::attestation as att;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::estate::{EstateId, aggregate_id};
use crate::model::{Model, TerminalEntry};
use crate::terminal::{
    ATTESTATION_SUSPENSION, Activation, Terminal, TerminalCommand, TerminalKind, TerminalState,
    is_attestation_suspension,
};

/// The followed service: its stream on the bus.
pub const SOURCE: &str = "attestation";
/// The projection's name.
pub const PROJECTION: &str = "tm-attestation";
/// Its checkpoint: the attestation stream position it is as of.
pub const CONSUMER: &str = "tm-attestation-feed";
/// The durable consumer on the bus.
pub const DURABLE: &str = "terminal-management";
/// The actor of the commands run on a verdict.
pub const ACTOR: &str = "service:attestation";

/// The feed's names.
pub const NAMES: FeedNames = FeedNames {
    source: SOURCE,
    projection: PROJECTION,
    consumer: CONSUMER,
    durable: DURABLE,
    event_type: None,
};

const TYPE_PREFIX: &str = "mpos.attestation.v1.";

/// How many times a command is decided again when another writer changed the terminal.
const COMMAND_ATTEMPTS: u32 = 5;

/// At most this many reason codes are named in a suspension reason.
const REASONS_NAMED: usize = 8;

/// What a verdict means for payments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// ALLOW or FLAG.
    Passing,
    /// BLOCK.
    Blocked,
    /// No verdict (unspecified or unknown).
    None,
}

fn standing(verdict: i32) -> Standing {
    match att::Verdict::try_from(verdict) {
        Ok(att::Verdict::Allow | att::Verdict::Flag) => Standing::Passing,
        Ok(att::Verdict::Block) => Standing::Blocked,
        _ => Standing::None,
    }
}

/// A device as terminal-management knows it from the attestation service's events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDoc {
    /// The tenant.
    pub tenant_id: String,
    /// The device: the SoftPOS terminal's id.
    pub device_id: String,
    /// The current verdict (`mpos.attestation.v1.Verdict` as a number; 0: none yet).
    pub verdict: i32,
    /// The id of the event that gave it.
    pub verdict_event_id: String,
    /// Its reason codes (for a BLOCK, those of the blocking findings).
    pub reasons: Vec<String>,
    /// The id of the last `DeviceAttested` with a passing verdict, while the verdict has
    /// passed ever since ("" otherwise): the verdict a bound terminal is activated on.
    pub activation_verdict_id: String,
    /// The re-attestation deadline missed since the last attestation (Unix µs; 0: none).
    pub missed_due_us: i64,
}

impl DeviceDoc {
    /// The document's id.
    pub fn document_id(tenant_id: &str, device_id: &str) -> String {
        format!("device/{tenant_id}/{device_id}")
    }

    fn set_verdict(&mut self, verdict: i32, event_id: &str, findings: &[att::Finding]) {
        let blocking: Vec<String> = findings
            .iter()
            .filter(|finding| finding.action == i32::from(att::RuleAction::Block))
            .map(|finding| finding.code.clone())
            .collect();
        self.reasons = if standing(verdict) == Standing::Blocked && !blocking.is_empty() {
            blocking
        } else {
            findings
                .iter()
                .map(|finding| finding.code.clone())
                .collect()
        };
        self.verdict = verdict;
        self.verdict_event_id = event_id.to_owned();
        if standing(verdict) != Standing::Passing {
            self.activation_verdict_id.clear();
        }
    }

    /// The reason of a suspension on this verdict.
    pub fn suspension_reason(&self) -> String {
        let mut codes = self
            .reasons
            .iter()
            .take(REASONS_NAMED)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if self.reasons.len() > REASONS_NAMED {
            codes.push_str(", …");
        }
        if codes.is_empty() {
            format!("{ATTESTATION_SUSPENSION} verdict block")
        } else {
            format!("{ATTESTATION_SUSPENSION} verdict block ({codes})")
        }
    }
}

/// What the device's verdict asks of its terminal, if anything: only a SoftPOS terminal is
/// touched, and only to activate it (bound, an attestation passed), suspend it (active,
/// blocked) or resume it (suspended by attestation, passing).
pub fn decide(device: &DeviceDoc, terminal: &TerminalEntry) -> Option<TerminalCommand> {
    if terminal.kind != TerminalKind::SoftPos {
        return None;
    }
    match (standing(device.verdict), terminal.state) {
        (Standing::Passing, TerminalState::Bound) if !device.activation_verdict_id.is_empty() => {
            Some(TerminalCommand::Activate(Activation::Attestation {
                verdict_id: device.activation_verdict_id.clone(),
            }))
        }
        (Standing::Passing, TerminalState::Suspended)
            if is_attestation_suspension(&terminal.suspension_reason) =>
        {
            Some(TerminalCommand::ResumeAfterAttestation)
        }
        (Standing::Blocked, TerminalState::Active) => Some(TerminalCommand::Suspend {
            reason: device.suspension_reason(),
        }),
        _ => None,
    }
}

/// The work of a device's events: reconcile its terminal with its verdict.
#[derive(Debug)]
pub struct Work {
    /// The device's document.
    document_id: String,
}

/// terminal-management's follower of the attestation service's stream.
pub struct VerdictFollower {
    documents: VerdictDocuments,
    terminals: Arc<Cqrs<Terminal>>,
    model: Arc<Model>,
}

/// The projection's documents alone: what [`VerdictFollower`] writes, without acting on any
/// terminal. `mposctl replay --read-model tm-attestation` follows attestation's log with it
/// into a fresh copy of the projection.
#[derive(Clone, Debug)]
pub struct VerdictDocuments {
    store: EventStore,
}

impl VerdictDocuments {
    /// The documents kept in `store`.
    pub fn new(store: EventStore) -> Self {
        Self { store }
    }
}

impl std::fmt::Debug for VerdictFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictFollower").finish_non_exhaustive()
    }
}

impl VerdictFollower {
    /// The follower keeping its documents in `store` (terminal-management's) and acting on
    /// terminals through `terminals`, as `model` knows them.
    pub fn new(store: EventStore, terminals: Arc<Cqrs<Terminal>>, model: Arc<Model>) -> Self {
        Self {
            documents: VerdictDocuments::new(store),
            terminals,
            model,
        }
    }

    /// Brings the terminal in line with the device's verdict.
    async fn reconcile(&self, device: &DeviceDoc) -> Result<(), ServiceError> {
        let (tenant_id, device_id) = (device.tenant_id.as_str(), device.device_id.as_str());
        // Other instances' writes.
        self.model.catch_up().await?;
        let Ok(terminal_id) = EstateId::parse("terminal_id", device_id) else {
            tracing::info!(%tenant_id, %device_id, "verdict for a device that is no terminal id; ignored");
            return Ok(());
        };
        let Some(terminal) = self.model.terminal(tenant_id, terminal_id.as_str()) else {
            tracing::info!(%tenant_id, %device_id, "verdict for an unknown terminal; ignored");
            return Ok(());
        };
        if self
            .model
            .tenant(tenant_id)
            .is_none_or(|tenant| tenant.suspended)
        {
            tracing::info!(%tenant_id, terminal_id = %terminal_id, "verdict for a terminal of a suspended tenant; ignored");
            return Ok(());
        }
        let Some(command) = decide(device, &terminal) else {
            if terminal.kind == TerminalKind::SoftPos
                && terminal.state == TerminalState::Suspended
                && standing(device.verdict) == Standing::Passing
            {
                tracing::info!(%tenant_id, terminal_id = %terminal_id, "passing verdict for a terminal suspended by a person; left suspended");
            }
            return Ok(());
        };
        let action = match &command {
            TerminalCommand::Activate(_) => "activated",
            TerminalCommand::Suspend { .. } => "suspended",
            _ => "resumed",
        };
        let metadata = CommandMetadata {
            tenant_id: tenant_id.to_owned(),
            correlation_id: uuid::Uuid::now_v7().to_string(),
            causation_id: device.verdict_event_id.clone(),
            traceparent: mpos_telemetry::current_traceparent().unwrap_or_default(),
            actor: ACTOR.to_owned(),
        };
        let executed = mpos_es::retry_conflicts(
            &self.terminals,
            &aggregate_id(tenant_id, &terminal_id),
            command,
            metadata,
            COMMAND_ATTEMPTS,
        )
        .await;
        match executed {
            Ok(()) => {
                tracing::info!(%tenant_id, terminal_id = %terminal_id, action, verdict_event_id = %device.verdict_event_id, "terminal changed on an attestation verdict");
            }
            // The terminal changed meanwhile (its state no longer allows it): nothing to do.
            Err(AggregateError::UserError(error)) => {
                tracing::info!(%tenant_id, terminal_id = %terminal_id, action, %error, "attestation verdict not applied: the terminal refused it");
            }
            Err(error) => return Err(mpos_es::command_error(error)),
        }
        self.model.catch_up().await?;
        Ok(())
    }
}

/// Decodes an attestation event's payload; an undecodable one is logged and skipped (it would
/// never decode on a redelivery either).
fn decode<M: prost::Message + Default>(envelope: &EventEnvelope) -> Option<M> {
    match M::decode(envelope.payload.as_slice()) {
        Ok(message) => Some(message),
        Err(error) => {
            tracing::error!(%error, event_id = %envelope.event_id, event_type = %envelope.event_type, "undecodable attestation event; skipped");
            None
        }
    }
}

/// The document and the work of a changed device.
fn changed(device: &DeviceDoc, position: u64, work: bool) -> Result<Applied<Work>, ServiceError> {
    let id = DeviceDoc::document_id(&device.tenant_id, &device.device_id);
    let payload = serde_json::to_string(device)
        .map_err(|_| ServiceError::internal("device document not encodable"))?;
    let document = Document {
        id: id.clone(),
        tenant_id: device.tenant_id.clone(),
        position,
        payload,
    };
    let work = work.then(|| {
        (
            format!("{}/{}", device.tenant_id, device.device_id),
            Work { document_id: id },
        )
    });
    Ok((vec![document], work))
}

impl VerdictDocuments {
    /// The device's document as of this point of the batch.
    async fn device(
        &self,
        overlay: &Overlay,
        tenant_id: &str,
        device_id: &str,
    ) -> Result<DeviceDoc, ServiceError> {
        let id = DeviceDoc::document_id(tenant_id, device_id);
        let document = match overlay.get(&id) {
            Some(document) => Some(document.clone()),
            None => self.store.document(PROJECTION, tenant_id, &id).await?,
        };
        let mut device = match document {
            Some(document) => serde_json::from_str(&document.payload).map_err(|error| {
                tracing::error!(%error, document = %id, "unreadable device document");
                ServiceError::internal("unreadable device document")
            })?,
            None => DeviceDoc::default(),
        };
        device.tenant_id = tenant_id.to_owned();
        device.device_id = device_id.to_owned();
        Ok(device)
    }

    /// The documents an attestation event changes, and the reconciliation it starts.
    async fn documents(
        &self,
        overlay: &Overlay,
        envelope: &EventEnvelope,
    ) -> Result<Applied<Work>, ServiceError> {
        let Some(name) = envelope.event_type.strip_prefix(TYPE_PREFIX) else {
            return Ok((Vec::new(), None));
        };
        let position = envelope.global_position;
        match name {
            "DeviceAttested" => {
                let Some(attested) = decode::<att::DeviceAttested>(envelope) else {
                    return Ok((Vec::new(), None));
                };
                let mut device = self
                    .device(overlay, &attested.tenant_id, &attested.device_id)
                    .await?;
                device.set_verdict(attested.verdict, &envelope.event_id, &attested.findings);
                if standing(attested.verdict) == Standing::Passing {
                    device.activation_verdict_id = envelope.event_id.clone();
                }
                device.missed_due_us = 0;
                changed(&device, position, true)
            }
            "DeviceVerdictChanged" => {
                let Some(change) = decode::<att::DeviceVerdictChanged>(envelope) else {
                    return Ok((Vec::new(), None));
                };
                let mut device = self
                    .device(overlay, &change.tenant_id, &change.device_id)
                    .await?;
                let turned = standing(change.previous) != standing(change.verdict);
                device.set_verdict(change.verdict, &envelope.event_id, &change.findings);
                changed(&device, position, turned)
            }
            "ReattestationMissed" => {
                let Some(missed) = decode::<att::ReattestationMissed>(envelope) else {
                    return Ok((Vec::new(), None));
                };
                let mut device = self
                    .device(overlay, &missed.tenant_id, &missed.device_id)
                    .await?;
                device.missed_due_us = missed
                    .due_at
                    .as_ref()
                    .map_or(0, mpos_proto::timestamp_to_micros);
                changed(&device, position, false)
            }
            _ => Ok((Vec::new(), None)),
        }
    }
}

impl Follower for VerdictDocuments {
    type Work = ();

    async fn apply(
        &self,
        overlay: &Overlay,
        envelope: &EventEnvelope,
    ) -> Result<Applied<()>, ServiceError> {
        let (documents, _) = self.documents(overlay, envelope).await?;
        Ok((documents, None))
    }

    async fn work(&self, _: &Overlay, _: &str, _: Vec<()>) -> Result<(), ServiceError> {
        Ok(())
    }

    async fn committed(&self, _: &[Document], _: &[String]) -> Result<(), ServiceError> {
        Ok(())
    }
}

impl Follower for VerdictFollower {
    type Work = Work;

    async fn apply(
        &self,
        overlay: &Overlay,
        envelope: &EventEnvelope,
    ) -> Result<Applied<Work>, ServiceError> {
        self.documents.documents(overlay, envelope).await
    }

    async fn work(
        &self,
        overlay: &Overlay,
        _key: &str,
        items: Vec<Work>,
    ) -> Result<(), ServiceError> {
        // The device's verdict as of the end of the batch: one reconciliation per device.
        let Some(item) = items.last() else {
            return Ok(());
        };
        let Some(document) = overlay.get(&item.document_id) else {
            return Ok(());
        };
        let device: DeviceDoc = serde_json::from_str(&document.payload)
            .map_err(|_| ServiceError::internal("unreadable device document"))?;
        self.reconcile(&device).await
    }

    async fn committed(&self, _: &[Document], _: &[String]) -> Result<(), ServiceError> {
        Ok(())
    }
}

/// Follows the attestation service's verdicts from `source` until `cancel`: the projection in
/// `store` (terminal-management's own), the terminals changed through `terminals`.
pub async fn run(
    store: EventStore,
    source: FeedSource,
    terminals: Arc<Cqrs<Terminal>>,
    model: Arc<Model>,
    cancel: CancellationToken,
) {
    let follower = Arc::new(VerdictFollower::new(store.clone(), terminals, model));
    mpos_feed::follow::run(store, NAMES, source, follower, cancel).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminal(kind: TerminalKind, state: TerminalState, reason: &str) -> TerminalEntry {
        TerminalEntry {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            kind,
            parent_id: "s-1".into(),
            state,
            device: None,
            label: String::new(),
            replaces_terminal_id: String::new(),
            replaced_by_terminal_id: String::new(),
            activation_method: mpos_proto::terminal_management::ActivationMethod::Unspecified,
            created_at_us: 0,
            updated_at_us: 0,
            version: 1,
            parameters: crate::model::LevelParameters::default(),
            placed: crate::model::Change::default(),
            installed_version: 0,
            installed_at_us: 0,
            suspension_reason: reason.into(),
        }
    }

    fn finding(code: &str, action: att::RuleAction) -> att::Finding {
        att::Finding {
            code: code.into(),
            action: action.into(),
            ..att::Finding::default()
        }
    }

    fn device(verdict: att::Verdict, activation: &str) -> DeviceDoc {
        let mut device = DeviceDoc {
            tenant_id: "acme".into(),
            device_id: "t-1".into(),
            ..DeviceDoc::default()
        };
        device.set_verdict(
            verdict.into(),
            "e-1",
            &[
                finding("PATCH_LEVEL_TOO_OLD", att::RuleAction::Flag),
                finding("REATTESTATION_MISSED", att::RuleAction::Block),
            ],
        );
        device.activation_verdict_id = activation.into();
        device
    }

    #[test]
    fn a_verdict_activates_suspends_or_resumes_only_a_softpos_terminal_in_the_right_state() {
        let allow = device(att::Verdict::Allow, "e-0");
        let block = device(att::Verdict::Block, "");
        assert_eq!(
            block.suspension_reason(),
            "attestation: verdict block (REATTESTATION_MISSED)"
        );
        let soft = |state, reason| terminal(TerminalKind::SoftPos, state, reason);
        assert_eq!(
            decide(&allow, &soft(TerminalState::Bound, "")),
            Some(TerminalCommand::Activate(Activation::Attestation {
                verdict_id: "e-0".into()
            }))
        );
        // Passing again after a block, without a new attestation: no activation.
        assert_eq!(
            decide(
                &device(att::Verdict::Flag, ""),
                &soft(TerminalState::Bound, "")
            ),
            None
        );
        assert_eq!(
            decide(&block, &soft(TerminalState::Active, "")),
            Some(TerminalCommand::Suspend {
                reason: "attestation: verdict block (REATTESTATION_MISSED)".into()
            })
        );
        assert_eq!(
            decide(
                &allow,
                &soft(TerminalState::Suspended, "attestation: verdict block")
            ),
            Some(TerminalCommand::ResumeAfterAttestation)
        );
        assert_eq!(
            decide(&allow, &soft(TerminalState::Suspended, "lost")),
            None
        );
        for state in [
            TerminalState::Blacklisted,
            TerminalState::SwappedOut,
            TerminalState::Decommissioned,
        ] {
            assert_eq!(decide(&allow, &soft(state, "")), None);
            assert_eq!(decide(&block, &soft(state, "")), None);
        }
        assert_eq!(decide(&allow, &soft(TerminalState::Active, "")), None);
        assert_eq!(decide(&block, &soft(TerminalState::Bound, "")), None);
        for state in [TerminalState::Bound, TerminalState::Active] {
            let ped = terminal(TerminalKind::Ped, state, "");
            assert_eq!(decide(&allow, &ped), None);
            assert_eq!(decide(&block, &ped), None);
        }
    }

    #[test]
    fn a_suspension_reason_names_a_bounded_number_of_codes() {
        let mut block = device(att::Verdict::Block, "");
        block.reasons = (0..12).map(|i| format!("CODE_{i}")).collect();
        let reason = block.suspension_reason();
        assert!(reason.starts_with("attestation: verdict block (CODE_0, "));
        assert!(reason.ends_with("CODE_7, …)"), "{reason}");
        block.reasons.clear();
        assert_eq!(block.suspension_reason(), "attestation: verdict block");
    }
}
