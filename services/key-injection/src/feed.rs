//! What key-injection knows of terminal-management, from its event stream: the manufacturer
//! CAs (the device API's mTLS trust), the tenants' API keys, and every terminal with its
//! device certificate and state. Kept as documents beside the log (projection `ki-tms`) with
//! the stream position they are as of, so it survives restarts and can be rebuilt by replaying
//! terminal-management's stream; the runner and the documents are [`mpos_feed`]'s.
//!
//! Four events also start work: `TerminalActivated` requests the terminal's key injection
//! (the injection id is derived from the event id, so a redelivered event resumes the same
//! injection), and `TerminalBlacklisted`, `TerminalSwappedOut` and `TerminalDecommissioned`
//! revoke the terminal's keys. The work is done before the position moves, so an event whose
//! work failed is delivered again.

use std::sync::Arc;

use mpos_bus::EventEnvelope;
use mpos_errors::ServiceError;
use mpos_es::{Document, EventStore};
use mpos_feed::follow::{Applied, FeedNames, Follower, Overlay};
use mpos_feed::tms::{TMS_SOURCE, changes_trust, terminal_in, tms_documents};
use mpos_proto::terminal_management as tms;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::injector::{Actor, InjectionSpec, Injector};

pub use mpos_feed::follow::FeedSource;
pub use mpos_feed::tms::{ApiKeyDoc, TerminalDoc, TerminalKind, TerminalStatus, TmsView};

/// The projection's name.
pub const PROJECTION: &str = "ki-tms";
/// Its checkpoint: the terminal-management stream position it is as of.
pub const CONSUMER: &str = "ki-tms-feed";
/// The durable consumer on the bus.
pub const DURABLE: &str = "key-injection";

/// The feed's names.
pub const NAMES: FeedNames = FeedNames {
    source: TMS_SOURCE,
    projection: PROJECTION,
    consumer: CONSUMER,
    durable: DURABLE,
    event_type: None,
};

const TYPE_PREFIX: &str = "mpos.terminal_management.v1.";

/// What an event asks of key-injection beyond the documents.
#[derive(Debug)]
pub enum Work {
    /// Inject the activated terminal's first key.
    Inject {
        /// The tenant.
        tenant_id: String,
        /// The terminal.
        terminal_id: String,
        /// Derived from the activation's event id.
        injection_id: String,
        /// The terminal as of the activation.
        terminal: Option<TerminalDoc>,
    },
    /// Revoke the terminal's keys.
    Revoke {
        /// The tenant.
        tenant_id: String,
        /// The terminal.
        terminal_id: String,
        /// Why.
        reason: String,
    },
}

/// The work key of a terminal: one terminal's work runs in order. terminal-management's ids
/// have no `/`, so the terminal id is what follows the first one.
fn work_key(tenant_id: &str, terminal_id: &str) -> String {
    format!("{tenant_id}/{terminal_id}")
}

/// key-injection's follower of terminal-management's stream.
#[derive(Debug)]
pub struct KiFollower {
    view: TmsView,
    injector: Arc<Injector>,
}

impl KiFollower {
    /// The follower writing through `view` and working with `injector`.
    pub fn new(view: TmsView, injector: Arc<Injector>) -> Self {
        Self { view, injector }
    }

    /// The revocation an event asks for, if it is one of those that retire a terminal.
    fn revocation(name: &str, payload: &[u8]) -> Result<Option<Work>, ServiceError> {
        let bad = |_| ServiceError::internal("undecodable terminal-management event");
        let (tenant_id, terminal_id, reason) = match name {
            "TerminalBlacklisted" => {
                let event = tms::TerminalBlacklisted::decode(payload).map_err(bad)?;
                let reason = format!("terminal blacklisted: {}", event.reason);
                (event.tenant_id, event.terminal_id, reason)
            }
            "TerminalSwappedOut" => {
                let event = tms::TerminalSwappedOut::decode(payload).map_err(bad)?;
                let reason = format!("terminal swapped out: {}", event.reason);
                (event.tenant_id, event.terminal_id, reason)
            }
            "TerminalDecommissioned" => {
                let event = tms::TerminalDecommissioned::decode(payload).map_err(bad)?;
                let reason = format!("terminal decommissioned: {}", event.reason);
                (event.tenant_id, event.terminal_id, reason)
            }
            _ => return Ok(None),
        };
        Ok(Some(Work::Revoke {
            tenant_id,
            terminal_id,
            reason,
        }))
    }
}

impl Follower for KiFollower {
    type Work = Work;

    async fn apply(
        &self,
        overlay: &Overlay,
        envelope: &EventEnvelope,
    ) -> Result<Applied<Work>, ServiceError> {
        let documents = tms_documents(&self.view, overlay, envelope).await?;
        let Some(name) = envelope.event_type.strip_prefix(TYPE_PREFIX) else {
            return Ok((documents, None));
        };
        let payload = envelope.payload.as_slice();
        let work = if name == "TerminalActivated" {
            let activated = tms::TerminalActivated::decode(payload)
                .map_err(|_| ServiceError::internal("undecodable terminal-management event"))?;
            let is_ped = activated.method == i32::from(tms::ActivationMethod::DeviceCertificate);
            if is_ped {
                // The terminal as of this event: activation changes only its status, so its
                // certificate is that of the documents written before it.
                let terminal = terminal_in(
                    &self.view,
                    overlay,
                    &activated.tenant_id,
                    &activated.terminal_id,
                )
                .await?;
                Some(Work::Inject {
                    injection_id: format!(
                        "act-{}",
                        envelope.event_id.replace('-', "").to_ascii_lowercase()
                    ),
                    tenant_id: activated.tenant_id,
                    terminal_id: activated.terminal_id,
                    terminal,
                })
            } else {
                None
            }
        } else {
            Self::revocation(name, payload)?
        };
        let keyed = work.map(|item| {
            let key = match &item {
                Work::Inject {
                    tenant_id,
                    terminal_id,
                    ..
                }
                | Work::Revoke {
                    tenant_id,
                    terminal_id,
                    ..
                } => work_key(tenant_id, terminal_id),
            };
            (key, item)
        });
        Ok((documents, keyed))
    }

    async fn work(
        &self,
        _overlay: &Overlay,
        _key: &str,
        items: Vec<Work>,
    ) -> Result<(), ServiceError> {
        for item in items {
            do_work(&self.injector, item).await?;
        }
        Ok(())
    }

    async fn committed(&self, documents: &[Document], keys: &[String]) -> Result<(), ServiceError> {
        if changes_trust(documents) {
            self.view.reload_trust().await?;
        }
        // A device waiting for its key may have waited for its terminal's activation.
        for key in keys {
            if let Some((_, terminal_id)) = key.split_once('/') {
                self.injector.doorbells.ring(terminal_id);
            }
        }
        Ok(())
    }
}

/// Runs the feed from its source until `cancel`: the projection in `store` (key-injection's
/// own), read through `view`.
pub async fn run_from(
    store: EventStore,
    view: TmsView,
    source: FeedSource,
    injector: Arc<Injector>,
    cancel: CancellationToken,
) {
    let follower = Arc::new(KiFollower::new(view, injector));
    mpos_feed::follow::run(store, NAMES, source, follower, cancel).await;
}

async fn do_work(injector: &Injector, work: Work) -> Result<(), ServiceError> {
    let actor = Actor("service:key-injection".to_owned());
    match work {
        Work::Inject {
            tenant_id,
            terminal_id,
            injection_id,
            terminal,
        } => {
            let Some(terminal) = terminal else {
                tracing::warn!(%tenant_id, %terminal_id, "activated terminal unknown; no injection");
                return Ok(());
            };
            if terminal.kind == TerminalKind::SoftPos {
                // A phone has no device certificate: it asks for its key with its attestation
                // token once attested (the SoftPOS key API).
                tracing::info!(%tenant_id, %terminal_id, "softpos terminal activated; its key waits for an attested request");
                return Ok(());
            }
            if injector.current_bdk(&tenant_id).await?.is_none() {
                tracing::warn!(%tenant_id, %terminal_id, "no bdk assigned to the tenant; no injection");
                metrics::counter!("mpos_ki_injections_skipped_total").increment(1);
                return Ok(());
            }
            let requested = injector
                .request(
                    &actor,
                    InjectionSpec {
                        tenant_id: tenant_id.clone(),
                        terminal_id: terminal_id.clone(),
                        bdk_id: None,
                        certificate_der: terminal.certificate(),
                        certificate_field: "device certificate",
                        injection_id: Some(injection_id),
                        reason: "activation".to_owned(),
                        background: true,
                        attested: false,
                    },
                )
                .await;
            match requested {
                Ok(injection_id) => {
                    tracing::info!(%tenant_id, %terminal_id, %injection_id, "injection requested on activation");
                    Ok(())
                }
                // Refused for a reason that will not change (recorded as an event).
                Err(error) if error.code == mpos_errors::ErrorCode::BadRequest => {
                    tracing::warn!(%tenant_id, %terminal_id, error = %error.message, "injection refused on activation");
                    Ok(())
                }
                Err(error) => Err(error),
            }
        }
        Work::Revoke {
            tenant_id,
            terminal_id,
            reason,
        } => {
            injector
                .revoke(&actor, &tenant_id, &terminal_id, &reason)
                .await?;
            tracing::info!(%tenant_id, %terminal_id, "device keys revoked");
            Ok(())
        }
    }
}
