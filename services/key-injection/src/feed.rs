//! What key-injection knows of terminal-management, from its event stream: the manufacturer
//! CAs (the device API's mTLS trust), the tenants' API keys, and every terminal with its
//! device certificate and state. Kept as documents beside the log (projection `ki-tms`) with
//! the stream position they are as of, so it survives restarts and can be rebuilt by replaying
//! terminal-management's stream.
//!
//! Three events also start work: `TerminalActivated` requests the terminal's key injection
//! (the injection id is derived from the event id, so a redelivered event resumes the same
//! injection), and `TerminalBlacklisted`, `TerminalSwappedOut` and `TerminalDecommissioned`
//! revoke the terminal's keys. The work is done before the position moves, so an event whose
//! work failed is delivered again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use device_identity::{Crl, ManufacturerCa, TrustStore};
use mpos_bus::EventEnvelope;
use mpos_bus::{EventSubscriber, SubscribeOptions};
use mpos_errors::ServiceError;
use mpos_es::{Document, EventStore, StoreError};
use mpos_proto::terminal_management as tms;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::injector::{Actor, InjectionSpec, Injector};

/// The projection's name.
pub const PROJECTION: &str = "ki-tms";
/// Its checkpoint: the terminal-management stream position it is as of.
pub const CONSUMER: &str = "ki-tms-feed";
/// The durable consumer on the bus.
pub const DURABLE: &str = "key-injection";
const SOURCE: &str = "terminal-management";
const TYPE_PREFIX: &str = "mpos.terminal_management.v1.";

/// A terminal's lifecycle state, as key-injection needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminalStatus {
    /// Bound, not yet booted.
    Bound,
    /// Active: may receive keys.
    Active,
    /// Suspended.
    Suspended,
    /// Blacklisted: its keys are revoked.
    Blacklisted,
    /// Replaced by another terminal.
    SwappedOut,
    /// Retired.
    Decommissioned,
}

/// A terminal as key-injection knows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TerminalDoc {
    /// The tenant.
    pub tenant_id: String,
    /// The terminal.
    pub terminal_id: String,
    /// SHA-256 of its device certificate (empty for SoftPOS).
    pub certificate_sha256: String,
    /// The device certificate, DER in base64.
    pub certificate_der: String,
    /// Where it is.
    pub status: TerminalStatus,
}

impl TerminalDoc {
    /// The device certificate (DER).
    pub fn certificate(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.certificate_der)
            .unwrap_or_default()
    }
}

/// A tenant API key as terminal-management issued it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiKeyDoc {
    /// The tenant.
    pub tenant_id: String,
    /// `ApiKeyRole` as a number.
    pub role: i32,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// No longer valid.
    pub revoked: bool,
}

/// A manufacturer CA and its CRL.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct CaDoc {
    certificate_der: String,
    crl_der: String,
    removed: bool,
}

/// A tenant's standing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct TenantDoc {
    suspended: bool,
}

/// Reads of the projection.
#[derive(Clone, Debug)]
pub struct TmsView {
    store: EventStore,
    trust: TrustStore,
}

fn unreadable(error: serde_json::Error) -> ServiceError {
    tracing::error!(%error, "unreadable document");
    ServiceError::internal("unreadable document")
}

fn decode<T: for<'de> Deserialize<'de>>(document: &Document) -> Result<T, ServiceError> {
    serde_json::from_str(&document.payload).map_err(unreadable)
}

impl TmsView {
    /// The view over `store`; `trust` is kept equal to the registered CAs.
    pub fn new(store: EventStore, trust: TrustStore) -> Self {
        Self { store, trust }
    }

    /// The device API's trust store.
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    async fn one(&self, id: &str) -> Result<Option<Document>, ServiceError> {
        Ok(self
            .store
            .documents(PROJECTION, &[id.to_owned()])
            .await?
            .into_iter()
            .next())
    }

    /// A terminal of a tenant.
    pub async fn terminal(
        &self,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<Option<TerminalDoc>, ServiceError> {
        self.store
            .document(
                PROJECTION,
                tenant_id,
                &format!("terminal/{tenant_id}/{terminal_id}"),
            )
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// The terminal a device certificate is bound to.
    pub async fn terminal_by_certificate(
        &self,
        certificate_sha256: &str,
    ) -> Result<Option<TerminalDoc>, ServiceError> {
        let Some(pointer) = self
            .one(&format!("certificate/{certificate_sha256}"))
            .await?
        else {
            return Ok(None);
        };
        let terminal_id: String = decode(&pointer)?;
        self.terminal(&pointer.tenant_id, &terminal_id).await
    }

    /// An API key by id.
    pub async fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyDoc>, ServiceError> {
        self.one(&format!("api-key/{key_id}"))
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// Whether the tenant is suspended (unknown tenants count as suspended).
    pub async fn tenant_suspended(&self, tenant_id: &str) -> Result<bool, ServiceError> {
        Ok(self
            .store
            .document(PROJECTION, tenant_id, &format!("tenant/{tenant_id}"))
            .await?
            .as_ref()
            .map(decode::<TenantDoc>)
            .transpose()?
            .is_none_or(|tenant| tenant.suspended))
    }

    /// Rebuilds the trust store from the CA documents.
    pub async fn reload_trust(&self) -> Result<(), ServiceError> {
        let now = Utc::now();
        let mut cas = Vec::new();
        let mut crls = Vec::new();
        for document in self.store.list_documents(PROJECTION, Some("")).await? {
            if !document.id.starts_with("ca/") {
                continue;
            }
            let ca: CaDoc = decode(&document)?;
            if ca.removed {
                continue;
            }
            let engine = base64::engine::general_purpose::STANDARD;
            let Ok(der) = engine.decode(&ca.certificate_der) else {
                continue;
            };
            let Ok(parsed) = ManufacturerCa::from_der(&der, now) else {
                continue;
            };
            if let Ok(crl_der) = engine.decode(&ca.crl_der)
                && !crl_der.is_empty()
                && let Ok(crl) = Crl::from_der(&crl_der, &parsed)
            {
                crls.push(crl);
            }
            cas.push(parsed);
        }
        self.trust
            .replace(cas, crls)
            .map_err(|error| ServiceError::internal(format!("trust store: {error}")))
    }
}

/// What an event asks of key-injection beyond the documents.
#[derive(Debug, PartialEq, Eq)]
enum Work {
    Inject {
        tenant_id: String,
        terminal_id: String,
        injection_id: String,
    },
    Revoke {
        tenant_id: String,
        terminal_id: String,
        reason: String,
    },
}

impl Work {
    /// The terminal the work is for.
    fn terminal(&self) -> (String, String) {
        match self {
            Self::Inject {
                tenant_id,
                terminal_id,
                ..
            }
            | Self::Revoke {
                tenant_id,
                terminal_id,
                ..
            } => (tenant_id.clone(), terminal_id.clone()),
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A terminal as of the documents written so far in this batch, else as stored.
async fn terminal_in(
    view: &TmsView,
    overlay: &HashMap<String, Document>,
    tenant_id: &str,
    terminal_id: &str,
) -> Result<Option<TerminalDoc>, ServiceError> {
    match overlay.get(&format!("terminal/{tenant_id}/{terminal_id}")) {
        Some(document) => decode(document).map(Some),
        None => view.terminal(tenant_id, terminal_id).await,
    }
}

/// The projection step: the documents an event changes (given the current ones it reads) and
/// the work it starts. Unknown event types change nothing.
async fn apply(
    view: &TmsView,
    overlay: &HashMap<String, Document>,
    envelope: &EventEnvelope,
) -> Result<(Vec<Document>, Option<Work>), ServiceError> {
    let Some(name) = envelope.event_type.strip_prefix(TYPE_PREFIX) else {
        return Ok((Vec::new(), None));
    };
    let payload = envelope.payload.as_slice();
    let position = envelope.global_position;
    let bad = |_| ServiceError::internal("undecodable terminal-management event");
    let doc = |id: String, tenant_id: &str, payload: String| Document {
        id,
        tenant_id: tenant_id.to_owned(),
        position,
        payload,
    };
    let terminal_status = |tenant_id: &str, terminal_id: &str, status: TerminalStatus| {
        let (tenant_id, terminal_id) = (tenant_id.to_owned(), terminal_id.to_owned());
        async move {
            let Some(mut terminal) = terminal_in(view, overlay, &tenant_id, &terminal_id).await?
            else {
                return Ok::<_, ServiceError>(Vec::new());
            };
            terminal.status = status;
            Ok(vec![Document {
                id: format!("terminal/{tenant_id}/{terminal_id}"),
                tenant_id: tenant_id.clone(),
                position,
                payload: serde_json::to_string(&terminal).map_err(unreadable)?,
            }])
        }
    };
    Ok(match name {
        "TenantCreated" | "TenantReactivated" | "TenantSuspended" => {
            let tenant_id = envelope.tenant_id.clone();
            let suspended = name == "TenantSuspended";
            (
                vec![doc(
                    format!("tenant/{tenant_id}"),
                    &tenant_id,
                    serde_json::to_string(&TenantDoc { suspended }).map_err(unreadable)?,
                )],
                None,
            )
        }
        "ApiKeyIssued" => {
            let issued = tms::ApiKeyIssued::decode(payload).map_err(bad)?;
            let key = ApiKeyDoc {
                tenant_id: issued.tenant_id.clone(),
                role: issued.role,
                secret_sha256: issued.secret_sha256,
                revoked: false,
            };
            (
                vec![doc(
                    format!("api-key/{}", issued.key_id),
                    &issued.tenant_id,
                    serde_json::to_string(&key).map_err(unreadable)?,
                )],
                None,
            )
        }
        "ApiKeyRevoked" => {
            let revoked = tms::ApiKeyRevoked::decode(payload).map_err(bad)?;
            let id = format!("api-key/{}", revoked.key_id);
            let current = match overlay.get(&id) {
                Some(document) => Some(decode::<ApiKeyDoc>(document)?),
                None => view.api_key(&revoked.key_id).await?,
            };
            let Some(mut key) = current else {
                return Ok((Vec::new(), None));
            };
            key.revoked = true;
            (
                vec![doc(
                    format!("api-key/{}", revoked.key_id),
                    &key.tenant_id.clone(),
                    serde_json::to_string(&key).map_err(unreadable)?,
                )],
                None,
            )
        }
        "ManufacturerCaRegistered" => {
            let registered = tms::ManufacturerCaRegistered::decode(payload).map_err(bad)?;
            let ca = CaDoc {
                certificate_der: b64(&registered.certificate_der),
                ..CaDoc::default()
            };
            (
                vec![doc(
                    format!("ca/{}", registered.ca_id),
                    "",
                    serde_json::to_string(&ca).map_err(unreadable)?,
                )],
                None,
            )
        }
        "ManufacturerCaCrlUpdated" | "ManufacturerCaRemoved" => {
            let (ca_id, crl, removed) = if name == "ManufacturerCaRemoved" {
                let removed = tms::ManufacturerCaRemoved::decode(payload).map_err(bad)?;
                (removed.ca_id, None, true)
            } else {
                let updated = tms::ManufacturerCaCrlUpdated::decode(payload).map_err(bad)?;
                (updated.ca_id, Some(updated.crl_der), false)
            };
            let id = format!("ca/{ca_id}");
            let current = match overlay.get(&id) {
                Some(document) => Some(document.clone()),
                None => view.one(&id).await?,
            };
            let Some(current) = current else {
                return Ok((Vec::new(), None));
            };
            let mut ca: CaDoc = decode(&current)?;
            if let Some(crl) = crl {
                ca.crl_der = b64(&crl);
            }
            ca.removed |= removed;
            (
                vec![doc(
                    format!("ca/{ca_id}"),
                    "",
                    serde_json::to_string(&ca).map_err(unreadable)?,
                )],
                None,
            )
        }
        "TerminalBound" => {
            let bound = tms::TerminalBound::decode(payload).map_err(bad)?;
            let device = bound.device.unwrap_or_default();
            let terminal = TerminalDoc {
                tenant_id: bound.tenant_id.clone(),
                terminal_id: bound.terminal_id.clone(),
                certificate_sha256: device.certificate_sha256.clone(),
                certificate_der: b64(&device.certificate_der),
                status: TerminalStatus::Bound,
            };
            let mut documents = vec![doc(
                format!("terminal/{}/{}", bound.tenant_id, bound.terminal_id),
                &bound.tenant_id,
                serde_json::to_string(&terminal).map_err(unreadable)?,
            )];
            if !device.certificate_sha256.is_empty() {
                documents.push(doc(
                    format!("certificate/{}", device.certificate_sha256),
                    &bound.tenant_id,
                    serde_json::Value::String(bound.terminal_id.clone()).to_string(),
                ));
            }
            (documents, None)
        }
        "TerminalActivated" => {
            let activated = tms::TerminalActivated::decode(payload).map_err(bad)?;
            let documents = terminal_status(
                &activated.tenant_id,
                &activated.terminal_id,
                TerminalStatus::Active,
            )
            .await?;
            let is_ped = activated.method == i32::from(tms::ActivationMethod::DeviceCertificate);
            let work = is_ped.then(|| Work::Inject {
                tenant_id: activated.tenant_id.clone(),
                terminal_id: activated.terminal_id.clone(),
                injection_id: format!(
                    "act-{}",
                    envelope.event_id.replace('-', "").to_ascii_lowercase()
                ),
            });
            (documents, work)
        }
        "TerminalSuspended" => {
            let event = tms::TerminalSuspended::decode(payload).map_err(bad)?;
            (
                terminal_status(
                    &event.tenant_id,
                    &event.terminal_id,
                    TerminalStatus::Suspended,
                )
                .await?,
                None,
            )
        }
        "TerminalResumed" => {
            let event = tms::TerminalResumed::decode(payload).map_err(bad)?;
            (
                terminal_status(&event.tenant_id, &event.terminal_id, TerminalStatus::Active)
                    .await?,
                None,
            )
        }
        "TerminalBlacklisted" => {
            let event = tms::TerminalBlacklisted::decode(payload).map_err(bad)?;
            (
                terminal_status(
                    &event.tenant_id,
                    &event.terminal_id,
                    TerminalStatus::Blacklisted,
                )
                .await?,
                Some(Work::Revoke {
                    tenant_id: event.tenant_id,
                    terminal_id: event.terminal_id,
                    reason: format!("terminal blacklisted: {}", event.reason),
                }),
            )
        }
        "TerminalSwappedOut" => {
            let event = tms::TerminalSwappedOut::decode(payload).map_err(bad)?;
            (
                terminal_status(
                    &event.tenant_id,
                    &event.terminal_id,
                    TerminalStatus::SwappedOut,
                )
                .await?,
                Some(Work::Revoke {
                    tenant_id: event.tenant_id,
                    terminal_id: event.terminal_id,
                    reason: format!("terminal swapped out: {}", event.reason),
                }),
            )
        }
        "TerminalDecommissioned" => {
            let event = tms::TerminalDecommissioned::decode(payload).map_err(bad)?;
            (
                terminal_status(
                    &event.tenant_id,
                    &event.terminal_id,
                    TerminalStatus::Decommissioned,
                )
                .await?,
                Some(Work::Revoke {
                    tenant_id: event.tenant_id,
                    terminal_id: event.terminal_id,
                    reason: format!("terminal decommissioned: {}", event.reason),
                }),
            )
        }
        _ => (Vec::new(), None),
    })
}

/// Runs the feed: applies terminal-management's events as they come, until `cancel`.
pub async fn run(
    view: TmsView,
    subscriber: Arc<dyn EventSubscriber>,
    injector: Arc<Injector>,
    cancel: CancellationToken,
) {
    if let Err(error) = view.reload_trust().await {
        tracing::warn!(%error, "cannot load the manufacturer cas");
    }
    let mut retry = Duration::from_millis(200);
    let mut gap_since = None;
    while !cancel.is_cancelled() {
        let subscription = subscriber
            .subscribe(SubscribeOptions::new(SOURCE, DURABLE))
            .await;
        let mut stream = match subscription {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "cannot subscribe to terminal-management events");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return,
                next = stream.next() => next,
            };
            let Some(next) = next else { break };
            let delivery = match next {
                Ok(delivery) => delivery,
                Err(error) => {
                    tracing::warn!(%error, "terminal-management event not received");
                    continue;
                }
            };
            // terminal-management's log has no gaps: an event past the next position was
            // delivered before some unacknowledged ones (after a crash, the broker redelivers
            // those only when their acknowledgement deadline passes). Leave it unacknowledged
            // until they come, unless they never do.
            let checkpoint = match in_order(&view, &delivery.envelope, &mut gap_since).await {
                Ok(Some(checkpoint)) => checkpoint,
                Ok(None) => {
                    drop(delivery);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(error = %error.message, "cannot read the feed position");
                    drop(delivery);
                    tokio::time::sleep(retry).await;
                    continue;
                }
            };
            match handle_batch(
                &view,
                &injector,
                checkpoint,
                std::slice::from_ref(&delivery.envelope),
            )
            .await
            {
                Ok(()) => {
                    retry = Duration::from_millis(200);
                    if let Err(error) = delivery.ack().await {
                        tracing::warn!(%error, "cannot acknowledge a terminal-management event");
                    }
                }
                Err(error) => {
                    // Not acknowledged: it comes again with the next subscription.
                    tracing::warn!(%error, event_type = %delivery.envelope.event_type, "terminal-management event not applied; retrying");
                    drop(delivery);
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(Duration::from_secs(5));
                    break;
                }
            }
        }
    }
}

/// Where terminal-management's events come from.
#[derive(Clone)]
pub enum FeedSource {
    /// Its stream on the bus (a distributed deployment).
    Bus(Arc<dyn EventSubscriber>),
    /// Its log, read directly (`mposd`, where both run in one process on one machine):
    /// nothing is lost to an in-process bus that a restart empties.
    Store {
        /// terminal-management's log.
        store: EventStore,
        /// Its event codec.
        codec: Arc<mpos_es::EventCodec>,
    },
}

impl std::fmt::Debug for FeedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bus(_) => f.write_str("FeedSource::Bus"),
            Self::Store { .. } => f.write_str("FeedSource::Store"),
        }
    }
}

/// Runs the feed from its source until `cancel`.
pub async fn run_from(
    view: TmsView,
    source: FeedSource,
    injector: Arc<Injector>,
    cancel: CancellationToken,
) {
    match source {
        FeedSource::Bus(subscriber) => run(view, subscriber, injector, cancel).await,
        FeedSource::Store { store, codec } => {
            run_from_store(view, store, codec, injector, cancel).await;
        }
    }
}

/// Reads terminal-management's log after the checkpoint, as it grows.
async fn run_from_store(
    view: TmsView,
    source: EventStore,
    codec: Arc<mpos_es::EventCodec>,
    injector: Arc<Injector>,
    cancel: CancellationToken,
) {
    let mut retry = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        let appended = source.appended();
        let checkpoint = match view.store.consumer_position(CONSUMER).await {
            Ok(checkpoint) => checkpoint,
            Err(error) => {
                tracing::warn!(%error, "cannot read the feed position");
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        let events = match source.read_after(checkpoint, 500).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "cannot read terminal-management's log");
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        let mut envelopes = Vec::with_capacity(events.len());
        for stored in &events {
            match codec.encode(stored) {
                Ok(payload) => envelopes.push(stored.to_envelope(SOURCE, payload)),
                Err(error) => {
                    tracing::warn!(%error, "terminal-management event not encodable; skipped");
                }
            }
        }
        let mut failed = false;
        if let Err(error) = handle_batch(&view, &injector, checkpoint, &envelopes).await {
            tracing::warn!(error = %error.message, events = envelopes.len(), "terminal-management events not applied; retrying");
            failed = true;
        }
        if failed {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(Duration::from_secs(5));
            continue;
        }
        retry = Duration::from_millis(200);
        if events.is_empty() {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = appended => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// How long an out-of-order delivery waits for the events before it (past the broker's
/// redelivery deadline), before it is applied anyway (those events are gone, e.g. trimmed).
const GAP_PATIENCE: Duration = Duration::from_secs(90);

/// The feed's position if the delivery is the next event of the stream (or a duplicate, or
/// one whose predecessors waited long enough); `None` while it must wait.
async fn in_order(
    view: &TmsView,
    envelope: &EventEnvelope,
    gap_since: &mut Option<std::time::Instant>,
) -> Result<Option<u64>, ServiceError> {
    let checkpoint = view.store.consumer_position(CONSUMER).await?;
    if envelope.global_position <= checkpoint.saturating_add(1) {
        *gap_since = None;
        return Ok(Some(checkpoint));
    }
    let since = *gap_since.get_or_insert_with(std::time::Instant::now);
    if since.elapsed() < GAP_PATIENCE {
        return Ok(None);
    }
    tracing::error!(
        from = checkpoint + 1,
        to = envelope.global_position - 1,
        "terminal-management events never arrived; continuing without them"
    );
    *gap_since = None;
    Ok(Some(checkpoint))
}

/// One terminal's work of a batch, in stream order, with the terminal as of its event.
type TerminalWork = Vec<(Work, Option<TerminalDoc>)>;

/// How many terminals' work a batch runs at once.
const BATCH_WORK: usize = 256;

/// Applies events in stream order: their documents (each event reads what the ones before it
/// wrote), then their work — one terminal's in order, different terminals' at once — and
/// then the documents with the position of the last, in one transaction. Work is idempotent:
/// a batch that failed half-way is applied again. `checkpoint` is the position the batch
/// follows (moved by compare-and-set: another instance's progress wins).
async fn handle_batch(
    view: &TmsView,
    injector: &Injector,
    checkpoint: u64,
    envelopes: &[EventEnvelope],
) -> Result<(), ServiceError> {
    let mut overlay: HashMap<String, Document> = HashMap::new();
    let mut work: BTreeMap<(String, String), TerminalWork> = BTreeMap::new();
    let mut last = checkpoint;
    for envelope in envelopes {
        if envelope.global_position <= last {
            continue;
        }
        let (documents, next) = apply(view, &overlay, envelope).await?;
        for document in documents {
            overlay.insert(document.id.clone(), document);
        }
        if let Some(next) = next {
            let (tenant_id, terminal_id) = next.terminal();
            let terminal = terminal_in(view, &overlay, &tenant_id, &terminal_id).await?;
            work.entry((tenant_id, terminal_id))
                .or_default()
                .push((next, terminal));
        }
        last = envelope.global_position;
    }
    if last == checkpoint {
        return Ok(());
    }
    let worked: Vec<String> = work
        .keys()
        .map(|(_, terminal_id)| terminal_id.clone())
        .collect();
    let results: Vec<Result<(), ServiceError>> =
        futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
            futures::stream::iter(work.into_values().map(|items| async move {
                for (item, terminal) in items {
                    do_work(injector, item, terminal).await?;
                }
                Ok(())
            })),
            BATCH_WORK,
        ))
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    let documents: Vec<Document> = overlay.into_values().collect();
    match view
        .store
        .commit_documents(PROJECTION, &documents, CONSUMER, checkpoint, last)
        .await
    {
        Ok(()) => {}
        // Another instance moved the position meanwhile: what it applied stays.
        Err(StoreError::Conflict { .. }) => return Ok(()),
        Err(error) => return Err(error.into()),
    }
    if documents
        .iter()
        .any(|document| document.id.starts_with("ca/"))
    {
        view.reload_trust().await?;
    }
    // A device waiting for its key may have waited for its terminal's activation.
    for terminal_id in &worked {
        injector.doorbells.ring(terminal_id);
    }
    Ok(())
}

async fn do_work(
    injector: &Injector,
    work: Work,
    terminal: Option<TerminalDoc>,
) -> Result<(), ServiceError> {
    let actor = Actor("service:key-injection".to_owned());
    match work {
        Work::Inject {
            tenant_id,
            terminal_id,
            injection_id,
        } => {
            let Some(terminal) = terminal else {
                tracing::warn!(%tenant_id, %terminal_id, "activated terminal unknown; no injection");
                return Ok(());
            };
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
