//! terminal-management's documents, as the services following its stream keep them: the
//! manufacturer CAs (a device API's mTLS trust), the tenants and their API keys, and every
//! terminal with its kind, device certificate and state. [`tms_documents`] is the projection
//! step a [`Follower`](crate::follow::Follower) of terminal-management calls; [`TmsView`]
//! reads the result.

use base64::Engine as _;
use chrono::Utc;
use device_identity::{Crl, ManufacturerCa, TrustStore};
use mpos_bus::EventEnvelope;
use mpos_errors::ServiceError;
use mpos_es::{Document, EventStore};
use mpos_proto::terminal_management as pb;
use prost::Message as _;
use serde::{Deserialize, Serialize};

use crate::follow::Overlay;

/// The followed service's name (its stream on the bus).
pub const TMS_SOURCE: &str = "terminal-management";
/// The prefix of terminal-management's event types.
pub(crate) const TYPE_PREFIX: &str = "mpos.terminal_management.v1.";

/// A terminal's lifecycle state.
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

/// What kind of device a terminal is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminalKind {
    /// A certified PIN entry device with a manufacturer-issued device certificate (also
    /// terminals bound before the kind was recorded).
    #[default]
    Ped,
    /// A phone taking contactless payments, activated by an attestation verdict.
    SoftPos,
}

impl TerminalKind {
    /// From `TerminalBound.kind` (unspecified counts as a PED).
    pub fn from_proto(kind: i32) -> Self {
        match pb::TerminalKind::try_from(kind) {
            Ok(pb::TerminalKind::Softpos) => Self::SoftPos,
            _ => Self::Ped,
        }
    }
}

/// A terminal as terminal-management's events describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalDoc {
    /// The tenant.
    pub tenant_id: String,
    /// The terminal.
    pub terminal_id: String,
    /// What kind of device it is.
    #[serde(default)]
    pub kind: TerminalKind,
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

pub(crate) fn unreadable(error: serde_json::Error) -> ServiceError {
    tracing::error!(%error, "unreadable document");
    ServiceError::internal("unreadable document")
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(document: &Document) -> Result<T, ServiceError> {
    serde_json::from_str(&document.payload).map_err(unreadable)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn terminal_doc_id(tenant_id: &str, terminal_id: &str) -> String {
    format!("terminal/{tenant_id}/{terminal_id}")
}

/// Reads of the projection of terminal-management's documents.
#[derive(Clone, Debug)]
pub struct TmsView {
    store: EventStore,
    trust: TrustStore,
    projection: &'static str,
}

impl TmsView {
    /// The view over the documents of `projection` in `store`; `trust` is kept equal to the
    /// registered CAs.
    pub fn new(store: EventStore, trust: TrustStore, projection: &'static str) -> Self {
        Self {
            store,
            trust,
            projection,
        }
    }

    /// The trust store of the registered manufacturer CAs (a device API's mTLS trust).
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// The projection's name.
    pub fn projection(&self) -> &'static str {
        self.projection
    }

    async fn one(&self, id: &str) -> Result<Option<Document>, ServiceError> {
        Ok(self
            .store
            .documents(self.projection, &[id.to_owned()])
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
                self.projection,
                tenant_id,
                &terminal_doc_id(tenant_id, terminal_id),
            )
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// Every terminal of a tenant, by id.
    pub async fn terminals(&self, tenant_id: &str) -> Result<Vec<TerminalDoc>, ServiceError> {
        let prefix = format!("terminal/{tenant_id}/");
        self.store
            .list_documents(self.projection, Some(tenant_id))
            .await?
            .iter()
            .filter(|document| document.id.starts_with(&prefix))
            .map(decode)
            .collect()
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
            .document(self.projection, tenant_id, &format!("tenant/{tenant_id}"))
            .await?
            .as_ref()
            .map(decode::<TenantDoc>)
            .transpose()?
            .is_none_or(|tenant| tenant.suspended))
    }

    /// Rebuilds the trust store from the CA documents (call it at start and after a batch
    /// that changed a `ca/` document).
    pub async fn reload_trust(&self) -> Result<(), ServiceError> {
        let now = Utc::now();
        let mut cas = Vec::new();
        let mut crls = Vec::new();
        for document in self.store.list_documents(self.projection, Some("")).await? {
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

/// A terminal as of the documents written so far in this batch, else as stored.
pub async fn terminal_in(
    view: &TmsView,
    overlay: &Overlay,
    tenant_id: &str,
    terminal_id: &str,
) -> Result<Option<TerminalDoc>, ServiceError> {
    match overlay.get(&terminal_doc_id(tenant_id, terminal_id)) {
        Some(document) => decode(document).map(Some),
        None => view.terminal(tenant_id, terminal_id).await,
    }
}

/// Whether a batch's documents changed a manufacturer CA (the trust store is then reloaded).
pub fn changes_trust(documents: &[Document]) -> bool {
    documents
        .iter()
        .any(|document| document.id.starts_with("ca/"))
}

/// The projection step: the documents a terminal-management event changes, given those
/// written earlier in the batch (`overlay`) and else the stored ones. Unknown event types
/// change nothing.
pub async fn tms_documents(
    view: &TmsView,
    overlay: &Overlay,
    envelope: &EventEnvelope,
) -> Result<Vec<Document>, ServiceError> {
    let Some(name) = envelope.event_type.strip_prefix(TYPE_PREFIX) else {
        return Ok(Vec::new());
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
                id: terminal_doc_id(&tenant_id, &terminal_id),
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
            vec![doc(
                format!("tenant/{tenant_id}"),
                &tenant_id,
                serde_json::to_string(&TenantDoc { suspended }).map_err(unreadable)?,
            )]
        }
        "ApiKeyIssued" => {
            let issued = pb::ApiKeyIssued::decode(payload).map_err(bad)?;
            let key = ApiKeyDoc {
                tenant_id: issued.tenant_id.clone(),
                role: issued.role,
                secret_sha256: issued.secret_sha256,
                revoked: false,
            };
            vec![doc(
                format!("api-key/{}", issued.key_id),
                &issued.tenant_id,
                serde_json::to_string(&key).map_err(unreadable)?,
            )]
        }
        "ApiKeyRevoked" => {
            let revoked = pb::ApiKeyRevoked::decode(payload).map_err(bad)?;
            let id = format!("api-key/{}", revoked.key_id);
            let current = match overlay.get(&id) {
                Some(document) => Some(decode::<ApiKeyDoc>(document)?),
                None => view.api_key(&revoked.key_id).await?,
            };
            let Some(mut key) = current else {
                return Ok(Vec::new());
            };
            key.revoked = true;
            vec![doc(
                id,
                &key.tenant_id.clone(),
                serde_json::to_string(&key).map_err(unreadable)?,
            )]
        }
        "ManufacturerCaRegistered" => {
            let registered = pb::ManufacturerCaRegistered::decode(payload).map_err(bad)?;
            let ca = CaDoc {
                certificate_der: b64(&registered.certificate_der),
                ..CaDoc::default()
            };
            vec![doc(
                format!("ca/{}", registered.ca_id),
                "",
                serde_json::to_string(&ca).map_err(unreadable)?,
            )]
        }
        "ManufacturerCaCrlUpdated" | "ManufacturerCaRemoved" => {
            let (ca_id, crl, removed) = if name == "ManufacturerCaRemoved" {
                let removed = pb::ManufacturerCaRemoved::decode(payload).map_err(bad)?;
                (removed.ca_id, None, true)
            } else {
                let updated = pb::ManufacturerCaCrlUpdated::decode(payload).map_err(bad)?;
                (updated.ca_id, Some(updated.crl_der), false)
            };
            let id = format!("ca/{ca_id}");
            let current = match overlay.get(&id) {
                Some(document) => Some(document.clone()),
                None => view.one(&id).await?,
            };
            let Some(current) = current else {
                return Ok(Vec::new());
            };
            let mut ca: CaDoc = decode(&current)?;
            if let Some(crl) = crl {
                ca.crl_der = b64(&crl);
            }
            ca.removed |= removed;
            vec![doc(id, "", serde_json::to_string(&ca).map_err(unreadable)?)]
        }
        "TerminalBound" => {
            let bound = pb::TerminalBound::decode(payload).map_err(bad)?;
            let device = bound.device.unwrap_or_default();
            let terminal = TerminalDoc {
                tenant_id: bound.tenant_id.clone(),
                terminal_id: bound.terminal_id.clone(),
                kind: TerminalKind::from_proto(bound.kind),
                certificate_sha256: device.certificate_sha256.clone(),
                certificate_der: b64(&device.certificate_der),
                status: TerminalStatus::Bound,
            };
            let mut documents = vec![doc(
                terminal_doc_id(&bound.tenant_id, &bound.terminal_id),
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
            documents
        }
        "TerminalActivated" => {
            let event = pb::TerminalActivated::decode(payload).map_err(bad)?;
            terminal_status(&event.tenant_id, &event.terminal_id, TerminalStatus::Active).await?
        }
        "TerminalSuspended" => {
            let event = pb::TerminalSuspended::decode(payload).map_err(bad)?;
            terminal_status(
                &event.tenant_id,
                &event.terminal_id,
                TerminalStatus::Suspended,
            )
            .await?
        }
        "TerminalResumed" => {
            let event = pb::TerminalResumed::decode(payload).map_err(bad)?;
            terminal_status(&event.tenant_id, &event.terminal_id, TerminalStatus::Active).await?
        }
        "TerminalBlacklisted" => {
            let event = pb::TerminalBlacklisted::decode(payload).map_err(bad)?;
            terminal_status(
                &event.tenant_id,
                &event.terminal_id,
                TerminalStatus::Blacklisted,
            )
            .await?
        }
        "TerminalSwappedOut" => {
            let event = pb::TerminalSwappedOut::decode(payload).map_err(bad)?;
            terminal_status(
                &event.tenant_id,
                &event.terminal_id,
                TerminalStatus::SwappedOut,
            )
            .await?
        }
        "TerminalDecommissioned" => {
            let event = pb::TerminalDecommissioned::decode(payload).map_err(bad)?;
            terminal_status(
                &event.tenant_id,
                &event.terminal_id,
                TerminalStatus::Decommissioned,
            )
            .await?
        }
        _ => Vec::new(),
    })
}

/// A follower of terminal-management that keeps its documents and does nothing else per
/// event: what a service needs whose admin API authenticates tenant API keys and looks at
/// tenants and terminals.
#[derive(Clone, Debug)]
pub struct TmsDocuments {
    /// The documents' view.
    pub view: TmsView,
}

impl crate::follow::Follower for TmsDocuments {
    type Work = ();

    async fn apply(
        &self,
        overlay: &Overlay,
        envelope: &EventEnvelope,
    ) -> Result<crate::follow::Applied<()>, ServiceError> {
        Ok((tms_documents(&self.view, overlay, envelope).await?, None))
    }

    async fn work(&self, _: &Overlay, _: &str, _: Vec<()>) -> Result<(), ServiceError> {
        Ok(())
    }

    async fn committed(&self, _: &[Document], _: &[String]) -> Result<(), ServiceError> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::{envelope, sqlite};

    const PROJECTION: &str = "tms-test";

    /// Applies the events as one batch and commits the documents.
    async fn apply_all(view: &TmsView, store: &EventStore, events: &[EventEnvelope]) {
        let mut overlay = Overlay::new();
        for event in events {
            for document in tms_documents(view, &overlay, event).await.unwrap() {
                overlay.insert(document.id.clone(), document);
            }
        }
        let documents: Vec<Document> = overlay.into_values().collect();
        let from = store.consumer_position("tms-test-feed").await.unwrap();
        let to = events.last().map_or(from, |event| event.global_position);
        store
            .commit_documents(PROJECTION, &documents, "tms-test-feed", from, to)
            .await
            .unwrap();
    }

    fn tms_event(position: u64, tenant_id: &str, name: &str, payload: Vec<u8>) -> EventEnvelope {
        envelope(
            position,
            tenant_id,
            "aggregate",
            &format!("{TYPE_PREFIX}{name}"),
            payload,
        )
    }

    fn bound(tenant_id: &str, terminal_id: &str, kind: pb::TerminalKind, sha: &str) -> Vec<u8> {
        pb::TerminalBound {
            tenant_id: tenant_id.to_owned(),
            terminal_id: terminal_id.to_owned(),
            kind: kind.into(),
            device: (!sha.is_empty()).then(|| pb::DeviceBinding {
                certificate_sha256: sha.to_owned(),
                certificate_der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
                ..pb::DeviceBinding::default()
            }),
            ..pb::TerminalBound::default()
        }
        .encode_to_vec()
    }

    #[tokio::test]
    async fn terminal_management_events_become_documents() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let view = TmsView::new(store.clone(), TrustStore::new(), PROJECTION);
        let created = pb::TenantCreated {
            tenant_id: "acme".to_owned(),
            name: "Acme".to_owned(),
        };
        let issued = pb::ApiKeyIssued {
            tenant_id: "acme".to_owned(),
            key_id: "0123456789abcdef".to_owned(),
            role: pb::ApiKeyRole::Admin.into(),
            secret_sha256: "ab".repeat(32),
            ..pb::ApiKeyIssued::default()
        };
        let activated = pb::TerminalActivated {
            tenant_id: "acme".to_owned(),
            terminal_id: "ped-1".to_owned(),
            method: pb::ActivationMethod::DeviceCertificate.into(),
            evidence: "cafe".to_owned(),
        };
        apply_all(
            &view,
            &store,
            &[
                tms_event(1, "acme", "TenantCreated", created.encode_to_vec()),
                tms_event(2, "acme", "ApiKeyIssued", issued.encode_to_vec()),
                tms_event(
                    3,
                    "acme",
                    "TerminalBound",
                    bound("acme", "ped-1", pb::TerminalKind::Ped, "cafe"),
                ),
                // Activated in the same batch: it reads the terminal bound before it.
                tms_event(4, "acme", "TerminalActivated", activated.encode_to_vec()),
                tms_event(5, "acme", "Unknown", Vec::new()),
            ],
        )
        .await;

        let ped = view.terminal("acme", "ped-1").await.unwrap().unwrap();
        assert_eq!(ped.kind, TerminalKind::Ped);
        assert_eq!(ped.status, TerminalStatus::Active);
        assert_eq!(ped.certificate(), vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        assert_eq!(
            view.terminal_by_certificate("cafe").await.unwrap(),
            Some(ped)
        );
        assert!(!view.tenant_suspended("acme").await.unwrap());
        assert!(view.tenant_suspended("other").await.unwrap());
        let key = view.api_key("0123456789abcdef").await.unwrap().unwrap();
        assert!(!key.revoked);
        // Another tenant sees nothing of it.
        assert_eq!(view.terminal("other", "ped-1").await.unwrap(), None);

        let revoked = pb::ApiKeyRevoked {
            tenant_id: "acme".to_owned(),
            key_id: "0123456789abcdef".to_owned(),
            ..pb::ApiKeyRevoked::default()
        };
        let suspended = pb::TerminalSuspended {
            tenant_id: "acme".to_owned(),
            terminal_id: "ped-1".to_owned(),
            reason: "lost".to_owned(),
        };
        apply_all(
            &view,
            &store,
            &[
                tms_event(
                    6,
                    "acme",
                    "TerminalBound",
                    bound("acme", "phone-1", pb::TerminalKind::Softpos, ""),
                ),
                tms_event(7, "acme", "ApiKeyRevoked", revoked.encode_to_vec()),
                tms_event(8, "acme", "TerminalSuspended", suspended.encode_to_vec()),
                tms_event(9, "acme", "TenantSuspended", Vec::new()),
            ],
        )
        .await;
        assert!(
            view.api_key("0123456789abcdef")
                .await
                .unwrap()
                .unwrap()
                .revoked
        );
        assert!(view.tenant_suspended("acme").await.unwrap());
        let terminals = view.terminals("acme").await.unwrap();
        let summary: Vec<(&str, TerminalKind, TerminalStatus)> = terminals
            .iter()
            .map(|terminal| {
                (
                    terminal.terminal_id.as_str(),
                    terminal.kind,
                    terminal.status,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("ped-1", TerminalKind::Ped, TerminalStatus::Suspended),
                ("phone-1", TerminalKind::SoftPos, TerminalStatus::Bound),
            ]
        );
        assert_eq!(terminals[1].certificate_sha256, "");
        assert!(view.terminals("other").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unregistered_ca_update_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let view = TmsView::new(store, TrustStore::new(), PROJECTION);
        let removed = pb::ManufacturerCaRemoved {
            ca_id: "ca-1".to_owned(),
            ..pb::ManufacturerCaRemoved::default()
        };
        let event = tms_event(1, "", "ManufacturerCaRemoved", removed.encode_to_vec());
        let documents = tms_documents(&view, &Overlay::new(), &event).await.unwrap();
        assert!(documents.is_empty());
        assert!(!changes_trust(&documents));
    }

    #[test]
    fn terminals_stored_before_the_kind_was_recorded_are_peds() {
        let stored = r#"{"tenant_id":"acme","terminal_id":"t","certificate_sha256":"","certificate_der":"","status":"bound"}"#;
        let terminal: TerminalDoc = serde_json::from_str(stored).unwrap();
        assert_eq!(terminal.kind, TerminalKind::Ped);
        let written = serde_json::to_value(TerminalDoc {
            kind: TerminalKind::SoftPos,
            ..terminal
        })
        .unwrap();
        assert_eq!(written["kind"], "soft_pos");
        assert_eq!(TerminalKind::from_proto(0), TerminalKind::Ped);
        assert_eq!(
            TerminalKind::from_proto(pb::TerminalKind::Softpos.into()),
            TerminalKind::SoftPos
        );
    }
}
