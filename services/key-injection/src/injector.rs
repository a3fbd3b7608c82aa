//! The injection flow, shared by the admin API (on demand), the terminal-management feed (a
//! terminal's activation), the background worker and the device API:
//!
//! 1. **request**: the injection is recorded with its reason, the device certificate is
//!    checked (its chain to a trusted manufacturer CA, its key: RSA for TR-34, P-256 for
//!    ECDH), and the next device identity of the BDK is allocated to it;
//! 2. **derive**: the hsm-proxy derives the device's initial key and wraps it for the device
//!    alone; the KCV is recorded (`InjectionKeyDerived`) and the wrapped key waits for the
//!    device beside the log (projection `ki-deliveries`: a wrapped key is no secret, only its
//!    device can open it);
//! 3. **deliver**: the device downloads it over mTLS (`InjectionDelivered`);
//! 4. **confirm**: the device reports the KCV of the key it installed; the key slot is
//!    recorded in the terminal's inventory.
//!
//! Every step can be repeated: a crash anywhere is resumed by doing the step again. The device
//! identity is read back from the BDK's log before a new one is allocated, so a resumed
//! injection never gets a second KSN, and one whose wrapped key was lost in a crash is wrapped
//! again for the same KSN.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use device_identity::TrustStore;
use hsm_proxy::rpc::HsmClient;
use mpos_errors::ServiceError;
use mpos_es::{CommandMetadata, Cqrs, Document, EventStore};
use mpos_proto::hsm as hsm_pb;
use mpos_proto::key_injection as pb;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::bdk::{self, Bdk, BdkCommand, BdkEvent};
use crate::injection::{self, Injection, InjectionCommand, InjectionError, InjectionEvent, State};
use crate::slots::{DeviceKeys, DeviceKeysCommand};

/// The projection holding wrapped keys until their device downloads them, and which
/// injection is a terminal's latest.
pub const DELIVERIES: &str = "ki-deliveries";
/// The projection naming each tenant's current BDK (the one new devices get).
pub const CURRENT_BDKS: &str = "ki-current-bdk";
/// The projection of each tenant's KDH certificate.
pub const KDH_CERTIFICATES: &str = "ki-kdh-certificate";

/// Who asks: written into every event's actor.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

/// A wrapped key waiting for its device, and what it takes to wrap it again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingDelivery {
    /// The tenant.
    pub tenant_id: String,
    /// The terminal.
    pub terminal_id: String,
    /// The injection.
    pub injection_id: String,
    /// The device certificate the key is wrapped for (DER, base64).
    pub certificate_der: String,
    /// TR-34 or ECDH.
    pub method: i32,
    /// TDES or AES DUKPT.
    pub algorithm: i32,
    /// The delivery, once derived.
    pub delivery: Option<pb::DeviceKeyDelivery>,
}

/// What an injection request names.
#[derive(Clone, Debug)]
pub struct InjectionSpec {
    /// The tenant.
    pub tenant_id: String,
    /// The terminal.
    pub terminal_id: String,
    /// The BDK; `None`: the tenant's current one.
    pub bdk_id: Option<String>,
    /// The device certificate (DER) whose key receives the initial key.
    pub certificate_der: Vec<u8>,
    /// How errors about the certificate name it (the API field, e.g. `krd_certificate_pem`).
    pub certificate_field: &'static str,
    /// A deterministic id (e.g. from the triggering event) for idempotency; `None`: a new one.
    pub injection_id: Option<String>,
    /// "activation", "re-injection", "rotation".
    pub reason: String,
    /// Whether the background workers derive the key (`false`: the caller derives it).
    pub background: bool,
    /// The certificate is a SoftPOS phone's key attestation leaf, named by a verified
    /// attestation token (its `cnf`): the attestation service verified its chain to the
    /// Android attestation roots, so it is not checked against the manufacturer CAs.
    pub attested: bool,
}

/// The settings of the flow.
#[derive(Clone, Debug)]
pub struct FlowSettings {
    /// The KDH key pair in the hsm-proxy (e.g. `alias/kdh`).
    pub kdh_key: String,
    /// The KDH certificate (DER) for tenants that have none of their own; empty: none.
    pub kdh_certificate: Vec<u8>,
    /// Extra CA certificates (DER) for devices' key receiving certificates, beside the
    /// manufacturer CAs registered in terminal-management.
    pub krd_cas: Vec<Vec<u8>>,
    /// How long an injection may wait for the device's confirmation.
    pub confirmation_window: Duration,
    /// How long an injected key may be used.
    pub cryptoperiod: Duration,
}

/// What derivation needs of a BDK.
#[derive(Clone, Debug, Default)]
struct BdkKey {
    /// The key in the hsm-proxy (empty: no such BDK).
    hsm_key: String,
    /// `DukptAlgorithm` as a number.
    algorithm: i32,
}

/// A BDK's log as read so far, cached.
#[derive(Clone, Debug, Default)]
struct BdkFacts {
    hsm_key: String,
    algorithm: i32,
    read_up_to: u64,
    /// Injection id → its device identity, for every allocation read so far.
    allocations: HashMap<String, String>,
}

/// Wakes the device downloads waiting (long polls) for a terminal's key: rung when a key
/// starts waiting for the terminal or when the feed applied its events. Keyed by terminal id
/// alone: a ring for a namesake of another tenant only makes a download look again.
#[derive(Debug, Default)]
pub struct Doorbells {
    bells: Mutex<HashMap<String, (Arc<tokio::sync::Notify>, usize)>>,
}

/// A subscription to a terminal's doorbell, dropped when the download ends.
#[derive(Debug)]
pub struct Doorbell<'a> {
    bells: &'a Doorbells,
    terminal_id: String,
    /// Rung for the terminal.
    pub bell: Arc<tokio::sync::Notify>,
}

impl Doorbells {
    /// Listens for the terminal's rings.
    pub fn subscribe(&self, terminal_id: &str) -> Doorbell<'_> {
        let mut bells = self
            .bells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (bell, listeners) = bells.entry(terminal_id.to_owned()).or_default();
        *listeners += 1;
        Doorbell {
            bells: self,
            terminal_id: terminal_id.to_owned(),
            bell: bell.clone(),
        }
    }

    /// Wakes every download waiting for the terminal.
    pub fn ring(&self, terminal_id: &str) {
        if let Some((bell, _)) = self
            .bells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(terminal_id)
        {
            bell.notify_waiters();
        }
    }
}

impl Drop for Doorbell<'_> {
    fn drop(&mut self) {
        let mut bells = self
            .bells
            .bells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, listeners)) = bells.get_mut(&self.terminal_id) {
            *listeners = listeners.saturating_sub(1);
            if *listeners == 0 {
                bells.remove(&self.terminal_id);
            }
        }
    }
}

/// An injection waiting for its device identity.
struct WaitingAllocation {
    tenant_id: String,
    terminal_id: String,
    injection_id: String,
    actor: Actor,
}

/// A device identity allocated, with its BDK.
type Allocated = Result<(BdkKey, String), ServiceError>;

/// The flow: the aggregates, the log and the hsm-proxy.
pub struct Injector {
    pub(crate) bdks: Arc<Cqrs<Bdk>>,
    pub(crate) injections: Arc<Cqrs<Injection>>,
    pub(crate) slots: Arc<Cqrs<DeviceKeys>>,
    pub(crate) store: EventStore,
    hsm: Arc<HsmClient>,
    trust: TrustStore,
    settings: FlowSettings,
    bdk_cache: Mutex<HashMap<String, BdkFacts>>,
    work: Mutex<Option<mpsc::Sender<(String, String)>>>,
    /// Allocations by BDK: those asked at the same time are made in one append, and a turn
    /// reads an injection's allocation before making one, so two paths resuming the same
    /// injection in this process never allocate twice.
    allocations: mpos_es::Combiner<String, WaitingAllocation, Allocated>,
    /// Device downloads waiting for a key.
    pub(crate) doorbells: Doorbells,
    /// Injections being derived in this process: a download and a worker deriving the same
    /// one take turns, and the second finds the first's delivery instead of exporting again.
    deriving: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injector").finish_non_exhaustive()
    }
}

fn unreadable(error: serde_json::Error) -> ServiceError {
    tracing::error!(%error, "unreadable event or document");
    ServiceError::internal("unreadable event or document")
}

/// A document holding one string (a pointer such as the current BDK), as JSON.
fn text_document(id: &str, tenant_id: &str, text: &str) -> Document {
    Document {
        id: id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        position: 0,
        payload: serde_json::Value::String(text.to_owned()).to_string(),
    }
}

/// The string of a [`text_document`].
fn document_text(document: &Document) -> Result<String, ServiceError> {
    serde_json::from_str(&document.payload).map_err(unreadable)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &str) -> Result<Vec<u8>, ServiceError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| ServiceError::internal("unreadable document"))
}

/// The delivery method a device certificate's key calls for: TR-34 for RSA, ECDH for P-256.
pub fn method_for(certificate_der: &[u8]) -> Result<pb::DeliveryMethod, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, certificate) = X509Certificate::from_der(certificate_der)
        .map_err(|_| "not a DER X.509 certificate".to_owned())?;
    let spki = &certificate.tbs_certificate.subject_pki;
    let algorithm = spki.algorithm.algorithm.to_id_string();
    match algorithm.as_str() {
        // rsaEncryption
        "1.2.840.113549.1.1.1" => Ok(pb::DeliveryMethod::Tr34),
        // id-ecPublicKey on prime256v1
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok())
                .map(|oid| oid.to_id_string());
            if curve.as_deref() == Some("1.2.840.10045.3.1.7") {
                Ok(pb::DeliveryMethod::EcdhTr31)
            } else {
                Err("an EC key on a curve other than P-256".to_owned())
            }
        }
        other => Err(format!("a key of algorithm {other}, neither RSA nor P-256")),
    }
}

impl Injector {
    /// The flow over the given aggregates and hsm-proxy client.
    pub(crate) fn new(
        bdks: Arc<Cqrs<Bdk>>,
        injections: Arc<Cqrs<Injection>>,
        slots: Arc<Cqrs<DeviceKeys>>,
        store: EventStore,
        hsm: Arc<HsmClient>,
        trust: TrustStore,
        settings: FlowSettings,
    ) -> Self {
        Self {
            bdks,
            injections,
            slots,
            store,
            hsm,
            trust,
            settings,
            bdk_cache: Mutex::new(HashMap::new()),
            work: Mutex::new(None),
            allocations: mpos_es::Combiner::default(),
            doorbells: Doorbells::default(),
            deriving: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's KDH certificate (DER): its own, or the configured default.
    pub async fn kdh_certificate(&self, tenant_id: &str) -> Result<Vec<u8>, ServiceError> {
        let own = self
            .store
            .document(KDH_CERTIFICATES, tenant_id, tenant_id)
            .await?;
        let certificate = match own {
            Some(document) => unb64(&document_text(&document)?)?,
            None => self.settings.kdh_certificate.clone(),
        };
        if certificate.is_empty() {
            return Err(ServiceError::conflict(
                "no key distribution host certificate is set for the tenant",
            ));
        }
        Ok(certificate)
    }

    /// Sets the tenant's KDH certificate after checking that it certifies the tenant's KDH
    /// key pair in the hsm-proxy.
    pub async fn set_kdh_certificate(
        &self,
        tenant_id: &str,
        certificate: &[u8],
    ) -> Result<(), ServiceError> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, parsed) = X509Certificate::from_der(certificate)
            .map_err(|_| ServiceError::bad_request("certificate_pem: not an X.509 certificate"))?;
        let public: hsm_pb::GetPublicKeyResponse = self
            .hsm
            .call(
                "GetPublicKey",
                &hsm_pb::GetPublicKeyRequest {
                    tenant_id: tenant_id.to_owned(),
                    key: self.settings.kdh_key.clone(),
                },
            )
            .await
            .map_err(ServiceError::from)?;
        if parsed.tbs_certificate.subject_pki.raw != public.public_key.as_slice() {
            return Err(ServiceError::bad_request(
                "certificate_pem: it does not certify the tenant's KDH key pair in the hsm-proxy",
            ));
        }
        let document = text_document(tenant_id, tenant_id, &b64(certificate));
        self.store
            .put_documents(KDH_CERTIFICATES, &[document])
            .await?;
        Ok(())
    }

    /// The hsm-proxy client.
    pub(crate) fn hsm(&self) -> &HsmClient {
        &self.hsm
    }

    /// The manufacturer CAs the device API trusts.
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// Where requested injections go to be derived in the background.
    pub(crate) fn set_worker(&self, work: mpsc::Sender<(String, String)>) {
        *self
            .work
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(work);
    }

    pub(crate) async fn execute<A>(
        &self,
        cqrs: &Cqrs<A>,
        actor: &Actor,
        tenant_id: &str,
        aggregate_id: &str,
        command: A::Command,
    ) -> Result<(), ServiceError>
    where
        A: cqrs_es::Aggregate,
        A::Command: Clone,
        A::Error: Into<ServiceError>,
    {
        let metadata = CommandMetadata {
            tenant_id: tenant_id.to_owned(),
            correlation_id: uuid::Uuid::now_v7().to_string(),
            causation_id: String::new(),
            traceparent: mpos_telemetry::current_traceparent().unwrap_or_default(),
            actor: actor.0.clone(),
        };
        // Commands here are idempotent or take the next free value: deciding one again on
        // a state another writer changed is safe.
        mpos_es::execute_retrying(cqrs, aggregate_id, command, metadata, 8).await
    }

    /// Reads a BDK's events after those already read (the log only grows); returns its
    /// facts and the identity allocated to `injection_id`, if any.
    async fn read_bdk(
        &self,
        aggregate_id: &str,
        injection_id: &str,
    ) -> Result<(BdkKey, Option<String>), ServiceError> {
        let after = self
            .bdk_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(aggregate_id)
            .map_or(0, |facts| facts.read_up_to);
        let events = self
            .store
            .read_aggregate(bdk::AGGREGATE_TYPE, aggregate_id, after)
            .await?;
        let mut decoded = Vec::with_capacity(events.len());
        for stored in &events {
            decoded.push((
                stored.event.sequence,
                serde_json::from_str::<BdkEvent>(&stored.event.payload).map_err(unreadable)?,
            ));
        }
        let mut cache = self
            .bdk_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let facts = cache.entry(aggregate_id.to_owned()).or_default();
        for (sequence, event) in decoded {
            // Another reader may have applied these meanwhile.
            if sequence <= facts.read_up_to {
                continue;
            }
            facts.read_up_to = sequence;
            match event {
                BdkEvent::Assigned(assigned) => {
                    facts.hsm_key = assigned.hsm_key_id;
                    facts.algorithm = assigned.algorithm;
                }
                BdkEvent::DeviceIdAllocated(allocation) => {
                    facts
                        .allocations
                        .insert(allocation.injection_id, allocation.initial_key_id);
                }
                BdkEvent::Retired(_) => {}
            }
        }
        let allocated = facts.allocations.get(injection_id).cloned();
        let key = BdkKey {
            hsm_key: facts.hsm_key.clone(),
            algorithm: facts.algorithm,
        };
        Ok((key, allocated))
    }

    /// Whether the BDK exists.
    pub(crate) async fn bdk_exists(
        &self,
        tenant_id: &str,
        bdk_id: &str,
    ) -> Result<bool, ServiceError> {
        let (facts, _) = self.read_bdk(&format!("{tenant_id}/{bdk_id}"), "").await?;
        Ok(!facts.hsm_key.is_empty())
    }

    /// The tenant's current BDK (the one new devices get), if any.
    pub async fn current_bdk(&self, tenant_id: &str) -> Result<Option<String>, ServiceError> {
        let document = self
            .store
            .document(CURRENT_BDKS, tenant_id, tenant_id)
            .await?;
        Ok(document
            .as_ref()
            .map(document_text)
            .transpose()?
            .filter(|bdk| !bdk.is_empty()))
    }

    /// Makes `bdk_id` (or none) the tenant's current BDK.
    pub(crate) async fn set_current_bdk(
        &self,
        tenant_id: &str,
        bdk_id: &str,
    ) -> Result<(), ServiceError> {
        let document = text_document(tenant_id, tenant_id, bdk_id);
        self.store.put_documents(CURRENT_BDKS, &[document]).await?;
        Ok(())
    }

    /// The injection's state, read back from the log.
    pub async fn load(
        &self,
        tenant_id: &str,
        injection_id: &str,
    ) -> Result<Injection, ServiceError> {
        let events = self
            .store
            .read_aggregate(
                injection::AGGREGATE_TYPE,
                &format!("{tenant_id}/{injection_id}"),
                0,
            )
            .await?;
        let events = events
            .iter()
            .map(|stored| serde_json::from_str::<InjectionEvent>(&stored.event.payload))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unreadable)?;
        Ok(Injection::replay(events))
    }

    async fn pending(
        &self,
        tenant_id: &str,
        injection_id: &str,
    ) -> Result<Option<PendingDelivery>, ServiceError> {
        let document = self
            .store
            .document(DELIVERIES, tenant_id, &format!("injection/{injection_id}"))
            .await?;
        document
            .map(|document| serde_json::from_str(&document.payload).map_err(unreadable))
            .transpose()
    }

    /// Saves the waiting delivery; with `point`, also makes it the terminal's latest
    /// injection, which its device downloads (only once the identity is allocated, so that
    /// a download never races the allocation).
    async fn save_pending(
        &self,
        pending: &PendingDelivery,
        point: bool,
    ) -> Result<(), ServiceError> {
        let payload = serde_json::to_string(pending).map_err(unreadable)?;
        let mut documents = vec![Document {
            id: format!("injection/{}", pending.injection_id),
            tenant_id: pending.tenant_id.clone(),
            position: 0,
            payload,
        }];
        if point {
            documents.push(text_document(
                &format!("terminal/{}", pending.terminal_id),
                &pending.tenant_id,
                &pending.injection_id,
            ));
        }
        self.store.put_documents(DELIVERIES, &documents).await?;
        if point {
            self.doorbells.ring(&pending.terminal_id);
        }
        Ok(())
    }

    /// The terminal's latest injection, if any.
    pub async fn latest_injection(
        &self,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<Option<String>, ServiceError> {
        let document = self
            .store
            .document(DELIVERIES, tenant_id, &format!("terminal/{terminal_id}"))
            .await?;
        document.as_ref().map(document_text).transpose()
    }

    /// Whether a device certificate may receive a key by `method`: its key fits the method,
    /// and it chains to a manufacturer CA registered in terminal-management (the device API's
    /// trust store: chain, validity, CRLs) or, for TR-34, to one of the configured key
    /// receiving device CAs.
    fn check_certificate(
        &self,
        method: pb::DeliveryMethod,
        certificate: &[u8],
    ) -> Result<(), String> {
        key_fits(certificate, method)?;
        let der = device_identity::rustls::pki_types::CertificateDer::from(certificate.to_vec());
        let refused = match self
            .trust
            .verify(std::slice::from_ref(&der), chrono::Utc::now())
        {
            Ok(_) => return Ok(()),
            Err(error) => error.to_string(),
        };
        if method == pb::DeliveryMethod::Tr34 {
            let now = u64::try_from(mpos_es::now_micros() / 1_000_000).unwrap_or(0);
            for ca in &self.settings.krd_cas {
                if paycrypto::tr34::verify_certificate_chain(
                    &[certificate],
                    ca,
                    now,
                    paycrypto::tr34::CertificateRole::Krd,
                )
                .is_ok()
                {
                    return Ok(());
                }
            }
        }
        Err(refused)
    }

    /// Requests an injection and allocates its device identity; the key is derived in the
    /// background (or by [`Injector::derive`]). Asking again with the same injection id
    /// resumes it.
    pub async fn request(
        &self,
        actor: &Actor,
        spec: InjectionSpec,
    ) -> Result<String, ServiceError> {
        let tenant_id = spec.tenant_id.clone();
        let bdk_id = match spec.bdk_id.clone() {
            Some(bdk_id) => bdk_id,
            None => self
                .current_bdk(&tenant_id)
                .await?
                .ok_or_else(|| ServiceError::conflict("no BDK is assigned to the tenant"))?,
        };
        let bdk_aggregate = format!("{tenant_id}/{bdk_id}");
        let (facts, _) = self.read_bdk(&bdk_aggregate, "").await?;
        if facts.hsm_key.is_empty() {
            return Err(bdk::BdkError::NotFound.into());
        }
        let method = method_for(&spec.certificate_der).map_err(|reason| {
            ServiceError::bad_request(format!("{}: {reason}", spec.certificate_field))
        })?;
        let injection_id = spec
            .injection_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
        let aggregate_id = format!("{tenant_id}/{injection_id}");
        let expires_at = mpos_es::now_micros()
            + i64::try_from(self.settings.confirmation_window.as_micros()).unwrap_or(i64::MAX / 2);
        let requested = self
            .execute(
                &self.injections,
                actor,
                &tenant_id,
                &aggregate_id,
                InjectionCommand::Request(pb::InjectionRequested {
                    tenant_id: tenant_id.clone(),
                    injection_id: injection_id.clone(),
                    terminal_id: spec.terminal_id.clone(),
                    bdk_id: bdk_id.clone(),
                    method: method.into(),
                    device_certificate_sha256: hex::encode(Sha256::digest(&spec.certificate_der)),
                    reason: if spec.reason.trim().is_empty() {
                        "activation".to_owned()
                    } else {
                        spec.reason.trim().to_owned()
                    },
                    expires_at: Some(mpos_proto::timestamp_from_micros(expires_at)),
                }),
            )
            .await;
        match requested {
            Ok(()) => {}
            // Asked again (a redelivered activation, a retry): resume where it is.
            Err(error) if error.code == mpos_errors::ErrorCode::AlreadyExists => {
                let injection = self.load(&tenant_id, &injection_id).await?;
                if injection.state() != State::Requested {
                    return Ok(injection_id);
                }
            }
            Err(error) => return Err(error),
        }
        let pending = PendingDelivery {
            tenant_id: tenant_id.clone(),
            terminal_id: spec.terminal_id.clone(),
            injection_id: injection_id.clone(),
            certificate_der: b64(&spec.certificate_der),
            method: method.into(),
            algorithm: facts.algorithm,
            delivery: None,
        };
        self.save_pending(&pending, false).await?;
        // The device's certificate must chain to a trusted CA before it gets an identity; a
        // refusal is recorded.
        let checked = if spec.attested {
            key_fits(&spec.certificate_der, method)
        } else {
            self.check_certificate(method, &spec.certificate_der)
        };
        if let Err(reason) = checked {
            self.fail(
                actor,
                &tenant_id,
                &injection_id,
                &spec.terminal_id,
                format!("device certificate refused: {reason}"),
            )
            .await?;
            self.save_pending(&pending, true).await?;
            return Err(ServiceError::bad_request(format!(
                "{}: refused: {reason}",
                spec.certificate_field
            )));
        }
        self.allocate(
            actor,
            &tenant_id,
            &bdk_aggregate,
            &spec.terminal_id,
            &injection_id,
        )
        .await?;
        self.save_pending(&pending, true).await?;
        let work = self
            .work
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(work) = work.filter(|_| spec.background) {
            // The worker derives it; if the queue is gone the device's download does.
            let _ = work.send((tenant_id, injection_id.clone())).await;
        }
        Ok(injection_id)
    }

    /// The identity allocated to the injection (the one in the BDK's log, or the next one),
    /// with the BDK. Concurrent allocations of a BDK are made together, in one append.
    async fn allocate(
        &self,
        actor: &Actor,
        tenant_id: &str,
        bdk_aggregate: &str,
        terminal_id: &str,
        injection_id: &str,
    ) -> Allocated {
        if let (key, Some(allocated)) = self.read_bdk(bdk_aggregate, injection_id).await? {
            return Ok((key, allocated));
        }
        let waiting = WaitingAllocation {
            tenant_id: tenant_id.to_owned(),
            terminal_id: terminal_id.to_owned(),
            injection_id: injection_id.to_owned(),
            actor: actor.clone(),
        };
        self.allocations
            .submit(bdk_aggregate.to_owned(), waiting, |allocations| {
                self.allocate_together(bdk_aggregate, allocations)
            })
            .await
            .unwrap_or_else(|| {
                Err(ServiceError::internal(
                    "the allocation was dropped unanswered",
                ))
            })
    }

    /// Allocates for every waiting injection of one BDK that has no identity yet, in one
    /// command; answers each its identity.
    async fn allocate_together(
        &self,
        bdk_aggregate: &str,
        allocations: Vec<WaitingAllocation>,
    ) -> Vec<Allocated> {
        let made = async {
            self.read_bdk(bdk_aggregate, "").await?;
            let mut devices: Vec<(String, String)> = Vec::new();
            for allocation in &allocations {
                if self
                    .cached_allocation(bdk_aggregate, &allocation.injection_id)
                    .is_none()
                    && !devices
                        .iter()
                        .any(|(_, injection)| *injection == allocation.injection_id)
                {
                    devices.push((
                        allocation.terminal_id.clone(),
                        allocation.injection_id.clone(),
                    ));
                }
            }
            if let (false, Some(first)) = (devices.is_empty(), allocations.first()) {
                self.execute(
                    &self.bdks,
                    &first.actor,
                    &first.tenant_id,
                    bdk_aggregate,
                    BdkCommand::Allocate { devices },
                )
                .await?;
            }
            self.read_bdk(bdk_aggregate, "").await
        }
        .await;
        allocations
            .iter()
            .map(|allocation| match &made {
                Err(error) => Err(error.clone()),
                Ok((key, _)) => self
                    .cached_allocation(bdk_aggregate, &allocation.injection_id)
                    .map(|allocated| (key.clone(), allocated))
                    .ok_or_else(|| ServiceError::internal("allocation not found in the log")),
            })
            .collect()
    }

    /// The identity allocated to an injection, as far as the BDK's log was read.
    fn cached_allocation(&self, bdk_aggregate: &str, injection_id: &str) -> Option<String> {
        self.bdk_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(bdk_aggregate)
            .and_then(|facts| facts.allocations.get(injection_id).cloned())
    }

    /// Records a failure, and counts it in the terminal's inventory.
    pub(crate) async fn fail(
        &self,
        actor: &Actor,
        tenant_id: &str,
        injection_id: &str,
        terminal_id: &str,
        reason: String,
    ) -> Result<(), ServiceError> {
        self.execute(
            &self.injections,
            actor,
            tenant_id,
            &format!("{tenant_id}/{injection_id}"),
            InjectionCommand::Fail {
                reason: reason.clone(),
            },
        )
        .await?;
        self.execute(
            &self.slots,
            actor,
            tenant_id,
            &format!("{tenant_id}/{terminal_id}"),
            DeviceKeysCommand::RecordInjectionFailure {
                tenant_id: tenant_id.to_owned(),
                terminal_id: terminal_id.to_owned(),
                injection_id: injection_id.to_owned(),
                reason,
                now_us: mpos_es::now_micros(),
            },
        )
        .await
    }

    /// Derives the injection's key in the hsm-proxy and wraps it for its device (again, for
    /// the same identity, if the wrapped key was lost); returns the delivery.
    pub async fn derive(
        &self,
        actor: &Actor,
        tenant_id: &str,
        injection_id: &str,
    ) -> Result<pb::DeviceKeyDelivery, ServiceError> {
        let injection = self.load(tenant_id, injection_id).await?;
        self.derive_loaded(actor, tenant_id, injection_id, &injection)
            .await
    }

    /// [`Injector::derive`] of an injection already read back.
    async fn derive_loaded(
        &self,
        actor: &Actor,
        tenant_id: &str,
        injection_id: &str,
        injection: &Injection,
    ) -> Result<pb::DeviceKeyDelivery, ServiceError> {
        match injection.state() {
            State::Requested | State::KeyDerived | State::Delivered => {}
            State::New => return Err(InjectionError::NotFound.into()),
            other => {
                return Err(ServiceError::conflict(format!(
                    "the injection is {}",
                    other.name()
                )));
            }
        }
        if let Some(pending) = self.pending(tenant_id, injection_id).await?
            && let Some(delivery) = pending.delivery
            && injection.state() != State::Requested
        {
            return Ok(delivery);
        }
        let key = format!("{tenant_id}/{injection_id}");
        let turn = self
            .deriving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let result = {
            let _turn = turn.lock().await;
            self.derive_in_turn(actor, tenant_id, injection_id, injection)
                .await
        };
        let mut deriving = self
            .deriving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The map holds one handle and `turn` another: nobody else waits for this one.
        if Arc::strong_count(&turn) == 2 {
            deriving.remove(&key);
        }
        result
    }

    /// [`Injector::derive_loaded`] once no other task of this process derives the injection.
    async fn derive_in_turn(
        &self,
        actor: &Actor,
        tenant_id: &str,
        injection_id: &str,
        injection: &Injection,
    ) -> Result<pb::DeviceKeyDelivery, ServiceError> {
        let mut pending = self
            .pending(tenant_id, injection_id)
            .await?
            .ok_or_else(|| {
                ServiceError::internal("the injection's device certificate is missing")
            })?;
        // Derived meanwhile (the key is recorded before its delivery is saved).
        if let Some(delivery) = &pending.delivery {
            return Ok(delivery.clone());
        }
        let bdk_aggregate = format!("{tenant_id}/{}", injection.bdk_id());
        let (facts, initial_key_id) = self
            .allocate(
                actor,
                tenant_id,
                &bdk_aggregate,
                injection.terminal_id(),
                injection_id,
            )
            .await?;
        let certificate = unb64(&pending.certificate_der)?;
        let aes = facts.algorithm == i32::from(pb::DukptAlgorithm::Aes128);
        // The hsm-proxy takes the initial KSN: for AES, the initial key id and a counter of 0.
        let ksn = if aes {
            format!("{initial_key_id}00000000")
        } else {
            initial_key_id.clone()
        };
        let method = pb::DeliveryMethod::try_from(pending.method).unwrap_or_default();
        let kdh_certificate = if method == pb::DeliveryMethod::Tr34 {
            self.kdh_certificate(tenant_id).await?
        } else {
            Vec::new()
        };
        let format = match method {
            pb::DeliveryMethod::Tr34 => hsm_pb::export_key_request::Format::Tr34DukptInitialKey(
                hsm_pb::Tr34DukptInitialKeyExport {
                    ksn,
                    krd_certificate: certificate,
                    kdh_certificate: kdh_certificate.clone(),
                },
            ),
            _ => hsm_pb::export_key_request::Format::EcdhDukptInitialKey(
                hsm_pb::EcdhDukptInitialKeyExport {
                    ksn,
                    device_certificate: certificate,
                },
            ),
        };
        let exported: Result<hsm_pb::ExportKeyResponse, _> = self
            .hsm
            .call(
                "ExportKey",
                &hsm_pb::ExportKeyRequest {
                    tenant_id: tenant_id.to_owned(),
                    key: facts.hsm_key.clone(),
                    wrapping_key: self.settings.kdh_key.clone(),
                    format: Some(format),
                },
            )
            .await;
        let exported = match exported {
            Ok(exported) => exported,
            Err(error) => {
                let error = ServiceError::from(error);
                // Unavailable, timed out or busy: try again later. Refused: recorded.
                if !matches!(
                    error.code,
                    mpos_errors::ErrorCode::Unavailable
                        | mpos_errors::ErrorCode::Timeout
                        | mpos_errors::ErrorCode::Conflict
                ) {
                    self.fail(
                        actor,
                        tenant_id,
                        injection_id,
                        injection.terminal_id(),
                        format!("the hsm-proxy refused the export: {}", error.message),
                    )
                    .await?;
                }
                return Err(error);
            }
        };
        let mut delivery = pb::DeviceKeyDelivery {
            injection_id: injection_id.to_owned(),
            method: method.into(),
            algorithm: facts.algorithm,
            initial_key_id: initial_key_id.clone(),
            ..Default::default()
        };
        let block_digest = match method {
            pb::DeliveryMethod::Tr34 => {
                let token = base64::engine::general_purpose::STANDARD
                    .decode(&exported.key_block)
                    .map_err(|_| {
                        ServiceError::internal("the hsm-proxy answered an unreadable token")
                    })?;
                let digest = hex::encode(Sha256::digest(&token));
                delivery.key_token = token;
                delivery.kdh_certificate = kdh_certificate;
                digest
            }
            _ => {
                let digest = hex::encode(Sha256::digest(exported.key_block.as_bytes()));
                delivery.key_block = exported.key_block.clone();
                delivery.ephemeral_public_key = exported.ephemeral_public_key.clone();
                digest
            }
        };
        self.execute(
            &self.injections,
            actor,
            tenant_id,
            &format!("{tenant_id}/{injection_id}"),
            InjectionCommand::RecordKey {
                initial_key_id,
                kcv: exported.kcv,
                key_block_sha256: block_digest,
            },
        )
        .await?;
        pending.delivery = Some(delivery.clone());
        self.save_pending(&pending, true).await?;
        metrics::counter!("mpos_ki_keys_derived_total").increment(1);
        Ok(delivery)
    }

    /// Hands the terminal's waiting key to its device (deriving it first if the worker has
    /// not yet); `None` if no key waits.
    pub async fn deliver(
        &self,
        actor: &Actor,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<Option<pb::DeviceKeyDelivery>, ServiceError> {
        let Some(injection_id) = self.latest_injection(tenant_id, terminal_id).await? else {
            return Ok(None);
        };
        let injection = self.load(tenant_id, &injection_id).await?;
        match injection.state() {
            State::New | State::Confirmed | State::Expired => return Ok(None),
            State::Failed => {
                return Err(ServiceError::conflict(format!(
                    "the key injection failed: {}",
                    injection.failure()
                )));
            }
            _ => {}
        }
        let delivery = self
            .derive_loaded(actor, tenant_id, &injection_id, &injection)
            .await?;
        self.execute(
            &self.injections,
            actor,
            tenant_id,
            &format!("{tenant_id}/{injection_id}"),
            InjectionCommand::MarkDelivered,
        )
        .await?;
        Ok(Some(delivery))
    }

    /// The device's confirmation: its KCV of the key it installed. A match installs the key
    /// in the terminal's inventory; a wrong KCV is recorded and answered as a bad request.
    pub async fn confirm(
        &self,
        actor: &Actor,
        tenant_id: &str,
        injection_id: &str,
        kcv: &str,
    ) -> Result<pb::InjectionResponse, ServiceError> {
        let aggregate_id = format!("{tenant_id}/{injection_id}");
        self.execute(
            &self.injections,
            actor,
            tenant_id,
            &aggregate_id,
            InjectionCommand::Confirm {
                kcv: kcv.to_owned(),
                now_us: mpos_es::now_micros(),
            },
        )
        .await?;
        let injection = self.load(tenant_id, injection_id).await?;
        match injection.state() {
            State::Confirmed => {
                let (facts, _) = self
                    .read_bdk(&format!("{tenant_id}/{}", injection.bdk_id()), "")
                    .await?;
                self.execute(
                    &self.slots,
                    actor,
                    tenant_id,
                    &format!("{tenant_id}/{}", injection.terminal_id()),
                    DeviceKeysCommand::Install {
                        tenant_id: tenant_id.to_owned(),
                        terminal_id: injection.terminal_id().to_owned(),
                        slot: crate::slots::DUKPT_SLOT.to_owned(),
                        algorithm: pb::DukptAlgorithm::try_from(facts.algorithm)
                            .unwrap_or_default(),
                        bdk_id: injection.bdk_id().to_owned(),
                        initial_key_id: injection.initial_key_id().to_owned(),
                        kcv: injection.kcv().to_owned(),
                        injection_id: injection_id.to_owned(),
                        installed_at_us: mpos_es::now_micros(),
                        cryptoperiod: self.settings.cryptoperiod,
                    },
                )
                .await?;
                metrics::counter!("mpos_ki_keys_injected_total").increment(1);
                Ok(pb::InjectionResponse {
                    injection_id: injection_id.to_owned(),
                    state: pb::InjectionState::Confirmed.into(),
                    initial_key_id: injection.initial_key_id().to_owned(),
                    key_token: Vec::new(),
                    kdh_certificate: Vec::new(),
                })
            }
            State::Expired => Err(ServiceError::conflict(
                "the injection expired before the device confirmed it",
            )),
            _ => {
                // The failure was recorded by the aggregate; count it for the terminal.
                self.execute(
                    &self.slots,
                    actor,
                    tenant_id,
                    &format!("{tenant_id}/{}", injection.terminal_id()),
                    DeviceKeysCommand::RecordInjectionFailure {
                        tenant_id: tenant_id.to_owned(),
                        terminal_id: injection.terminal_id().to_owned(),
                        injection_id: injection_id.to_owned(),
                        reason: "wrong KCV".to_owned(),
                        now_us: mpos_es::now_micros(),
                    },
                )
                .await?;
                Err(ServiceError::bad_request(
                    "injection failed: the KCV does not match the key injected",
                ))
            }
        }
    }

    /// Revokes the terminal's keys (blacklisted, swapped out, decommissioned): its pending
    /// injection fails, its installed keys are marked revoked.
    pub async fn revoke(
        &self,
        actor: &Actor,
        tenant_id: &str,
        terminal_id: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        if let Some(injection_id) = self.latest_injection(tenant_id, terminal_id).await? {
            let injection = self.load(tenant_id, &injection_id).await?;
            if injection.state() != State::New && !injection.state().is_final() {
                self.execute(
                    &self.injections,
                    actor,
                    tenant_id,
                    &format!("{tenant_id}/{injection_id}"),
                    InjectionCommand::Fail {
                        reason: reason.to_owned(),
                    },
                )
                .await?;
            }
        }
        self.execute(
            &self.slots,
            actor,
            tenant_id,
            &format!("{tenant_id}/{terminal_id}"),
            DeviceKeysCommand::Revoke {
                reason: reason.to_owned(),
            },
        )
        .await
    }

    /// The terminal's key slots, read back from the log.
    pub async fn key_slots(
        &self,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<pb::ListKeySlotsResponse, ServiceError> {
        let keys = self.device_keys(tenant_id, terminal_id).await?;
        Ok(pb::ListKeySlotsResponse {
            slots: keys.to_proto(),
            consecutive_failed_injections: keys.consecutive_failures(),
        })
    }

    /// The terminal's key inventory, read back from the log.
    pub(crate) async fn device_keys(
        &self,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<DeviceKeys, ServiceError> {
        let events = self
            .store
            .read_aggregate(
                crate::slots::AGGREGATE_TYPE,
                &format!("{tenant_id}/{terminal_id}"),
                0,
            )
            .await?;
        let mut keys = DeviceKeys::default();
        for stored in &events {
            let event = serde_json::from_str(&stored.event.payload).map_err(unreadable)?;
            cqrs_es::Aggregate::apply(&mut keys, event);
        }
        Ok(keys)
    }

    /// Every terminal's key inventory of the tenant, by terminal id.
    pub(crate) async fn tenant_device_keys(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<(String, DeviceKeys)>, ServiceError> {
        let prefix = format!("{tenant_id}/");
        let events = self
            .store
            .read_aggregate_type(crate::slots::AGGREGATE_TYPE)
            .await?;
        let mut inventories: std::collections::BTreeMap<String, DeviceKeys> =
            std::collections::BTreeMap::new();
        for stored in &events {
            let Some(terminal_id) = stored.event.aggregate_id.strip_prefix(&prefix) else {
                continue;
            };
            let event = serde_json::from_str(&stored.event.payload).map_err(unreadable)?;
            cqrs_es::Aggregate::apply(
                inventories.entry(terminal_id.to_owned()).or_default(),
                event,
            );
        }
        Ok(inventories.into_iter().collect())
    }

    /// The tenant's installed and revoked device key slots.
    pub(crate) async fn slot_counts(&self, tenant_id: &str) -> Result<(u64, u64), ServiceError> {
        let mut counts = (0, 0);
        for (_, keys) in self.tenant_device_keys(tenant_id).await? {
            for slot in keys.to_proto() {
                if slot.revoked {
                    counts.1 += 1;
                } else {
                    counts.0 += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Every injection left between request and delivery (after a restart): to derive again.
    pub async fn unfinished(&self) -> Result<Vec<(String, String)>, ServiceError> {
        let events = self
            .store
            .read_aggregate_type(injection::AGGREGATE_TYPE)
            .await?;
        let mut states: HashMap<String, (String, State)> = HashMap::new();
        for stored in &events {
            let event = serde_json::from_str::<InjectionEvent>(&stored.event.payload)
                .map_err(unreadable)?;
            let entry = states
                .entry(stored.event.aggregate_id.clone())
                .or_insert_with(|| (String::new(), State::New));
            match event {
                InjectionEvent::Requested(requested) => {
                    *entry = (requested.tenant_id, State::Requested);
                }
                InjectionEvent::KeyDerived(_) => entry.1 = State::KeyDerived,
                InjectionEvent::Delivered(_) => entry.1 = State::Delivered,
                InjectionEvent::Confirmed(_) => entry.1 = State::Confirmed,
                InjectionEvent::Failed(_) => entry.1 = State::Failed,
                InjectionEvent::Expired(_) => entry.1 = State::Expired,
            }
        }
        Ok(states
            .into_iter()
            .filter(|(_, (_, state))| *state == State::Requested)
            .filter_map(|(aggregate_id, (tenant_id, _))| {
                let injection_id = aggregate_id
                    .strip_prefix(&format!("{tenant_id}/"))?
                    .to_owned();
                Some((tenant_id, injection_id))
            })
            .collect())
    }
}

/// Whether a device certificate's key fits the delivery method: for TR-34 an RSA key of at
/// least 2048 bits whose key usage (when present) allows key encipherment; for ECDH a key
/// whose key usage (when present) allows key agreement (the curve was checked by
/// [`method_for`]).
fn key_fits(certificate: &[u8], method: pb::DeliveryMethod) -> Result<(), String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::public_key::PublicKey;
    let (_, device) = X509Certificate::from_der(certificate)
        .map_err(|_| "not a DER X.509 certificate".to_owned())?;
    let usage = device
        .key_usage()
        .map_err(|_| "the device certificate's key usage is malformed".to_owned())?
        .map(|extension| extension.value);
    match method {
        pb::DeliveryMethod::Tr34 => {
            let bits = match device.public_key().parsed() {
                Ok(PublicKey::RSA(rsa)) => rsa.key_size(),
                _ => 0,
            };
            if bits < 2048 {
                return Err("TR-34 needs an RSA key of at least 2048 bits".to_owned());
            }
            if usage.is_some_and(|usage| !usage.key_encipherment()) {
                return Err(
                    "the device certificate's key usage does not allow key encipherment".to_owned(),
                );
            }
        }
        _ => {
            if usage.is_some_and(|usage| !usage.key_agreement()) {
                return Err(
                    "the device certificate's key usage does not allow key agreement".to_owned(),
                );
            }
        }
    }
    Ok(())
}
