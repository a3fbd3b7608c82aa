//! The hsm-proxy's operations, whatever transport brought them (NATS request-reply or the
//! admin HTTP API): validate the request, resolve the tenant's keys, check their usage and
//! state, then run on the pool. Control-plane operations are events with their actor;
//! data-plane operations are counted (metrics), never logged with their data.

use std::sync::Arc;

use cqrs_es::AggregateError;
use mpos_es::{CommandMetadata, Cqrs};
use mpos_proto::hsm as pb;
use paycrypto::SecretBytes;
use paycrypto::dukpt::{aes as aes_dukpt, tdes as tdes_dukpt};
use paycrypto::mac::Padding;
use paycrypto::pin::{Pan, PinBlockFormat};
use paycrypto::tr31::Exportability;
use zeroize::Zeroizing;

use crate::backend::{
    Arpc, Arqc, CardValidation, Cipher, CipherMode, Dukpt, KeyRef, Mac, MasterKeyDerivation,
    Operation, Outcome, PinData, PinKey, PinMethod, StoredKey, Tr31Export, Working,
};
use crate::error::HsmError;
use crate::key::{Key, KeyCommand, parse_alias};
use crate::pool::{Member, Pool};
use crate::registry::{Entry, Registry};
use crate::spec::{Capability, KeyAlgorithm, KeySpec};

/// How long a backend may take to generate or store a key (RSA-4096 generation takes
/// seconds) before the attempt fails over.
const KEY_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A key a backend just stored, to enter the registry.
struct NewKey {
    spec: KeySpec,
    origin: pb::KeyOrigin,
    /// The backend that stored it, and how.
    stored: (String, StoredKey),
    alias: Option<String>,
    key_set_id: String,
}

/// Who asks, for the audit trail of control-plane events.
#[derive(Clone, Debug)]
pub struct Caller {
    /// `operator:platform`, `service:<name>`, …
    pub actor: String,
    /// Correlates the request's events.
    pub correlation_id: String,
    /// W3C trace context of the request.
    pub traceparent: String,
}

impl Caller {
    /// A caller with a fresh correlation id and the current trace.
    pub fn new(actor: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            correlation_id: uuid::Uuid::now_v7().to_string(),
            traceparent: mpos_telemetry::current_traceparent().unwrap_or_default(),
        }
    }
}

/// The hsm-proxy.
pub struct Hsm {
    cqrs: Arc<Cqrs<Key>>,
    registry: Arc<Registry>,
    pool: Arc<Pool>,
    /// One control-plane change at a time in this process: alias uniqueness and replication
    /// are checked against the registry under it.
    writes: tokio::sync::Mutex<()>,
    /// Appends to one key's stream one at a time in this process (stripes by key id):
    /// concurrent exports of a BDK for many devices queue instead of conflicting.
    key_stripes: Vec<tokio::sync::Mutex<()>>,
    /// Export records by (tenant, key): those made at the same time are recorded in one
    /// append.
    exports: mpos_es::Combiner<(String, String), pb::KeyExported, Result<(), HsmError>>,
}

/// How many stripes serialise appends per key.
const KEY_STRIPES: usize = 64;

/// The metadata of the caller's command on a key.
fn command_metadata(tenant_id: &str, caller: &Caller) -> CommandMetadata {
    CommandMetadata {
        tenant_id: tenant_id.to_owned(),
        correlation_id: caller.correlation_id.clone(),
        causation_id: String::new(),
        traceparent: caller.traceparent.clone(),
        actor: caller.actor.clone(),
    }
}

/// The stripe serialising appends to a key's stream.
fn stripe_of(key_id: &str) -> usize {
    key_id.bytes().fold(0_usize, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(usize::from(byte))
    }) % KEY_STRIPES
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// The PAN's digits of track 2 equivalent data (`plaintext`, zero-padded to the cipher's block
/// size): the 12 to 19 digits before the separator (`=` or `D`). The error names no digit.
fn track2_pan(plaintext: &[u8]) -> Result<Zeroizing<String>, HsmError> {
    let not_track2 = || {
        HsmError::invalid(
            "card_token_key",
            "the plaintext is not track 2 equivalent data (PAN, separator, expiry)",
        )
    };
    let separator = plaintext
        .iter()
        .position(|byte| matches!(byte, b'=' | b'D' | b'd'))
        .ok_or_else(not_track2)?;
    let digits = plaintext.get(..separator).ok_or_else(not_track2)?;
    if !(12..=19).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return Err(not_track2());
    }
    Ok(Zeroizing::new(
        digits.iter().map(|&byte| char::from(byte)).collect(),
    ))
}

/// Validates a tenant id (the platform's rule: 3 to 63 lowercase letters, digits or inner
/// hyphens, starting with a letter).
fn check_tenant(tenant_id: &str) -> Result<&str, HsmError> {
    let valid = (3..=63).contains(&tenant_id.len())
        && tenant_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && tenant_id.starts_with(|c: char| c.is_ascii_lowercase())
        && !tenant_id.ends_with('-');
    if valid {
        Ok(tenant_id)
    } else {
        Err(HsmError::invalid("tenantId", "missing or malformed"))
    }
}

fn pan(raw: &str) -> Result<Pan, HsmError> {
    Pan::new(raw.trim()).map_err(|_| HsmError::invalid("pan", "must be 12 to 19 digits"))
}

fn hex_field(field: &str, raw: &str) -> Result<Vec<u8>, HsmError> {
    hex::decode(raw.trim()).map_err(|_| HsmError::invalid(field, "not hexadecimal"))
}

fn fixed<const N: usize>(field: &str, bytes: &[u8]) -> Result<[u8; N], HsmError> {
    bytes
        .try_into()
        .map_err(|_| HsmError::invalid(field, format!("must be {N} bytes")))
}

fn pin_format(field: &str, value: i32) -> Result<PinBlockFormat, HsmError> {
    match pb::PinBlockFormat::try_from(value) {
        Ok(pb::PinBlockFormat::Iso0) => Ok(PinBlockFormat::Iso0),
        Ok(pb::PinBlockFormat::Iso1) => Ok(PinBlockFormat::Iso1),
        Ok(pb::PinBlockFormat::Iso3) => Ok(PinBlockFormat::Iso3),
        Ok(pb::PinBlockFormat::Iso4) => Ok(PinBlockFormat::Iso4),
        _ => Err(HsmError::invalid(
            field,
            "missing or unknown PIN block format",
        )),
    }
}

/// The DUKPT transaction of a request, checked against the key: a BDK needs one, any other
/// key refuses one.
/// The DUKPT context of exporting a device's initial key from the BDK `key` (usage B0) for
/// its initial KSN.
fn initial_key_dukpt(field: &str, key: &Entry, ksn: &str) -> Result<Dukpt, HsmError> {
    key.spec.permits(&["B0"], Capability::Derive)?;
    dukpt_of(
        field,
        key,
        Some(&pb::Dukpt {
            ksn: ksn.to_owned(),
            ..Default::default()
        }),
    )?
    .ok_or_else(|| HsmError::invalid(format!("{field}.ksn"), "missing"))
}

fn dukpt_of(
    field: &str,
    entry: &Entry,
    dukpt: Option<&pb::Dukpt>,
) -> Result<Option<Dukpt>, HsmError> {
    let is_bdk = entry.spec.usage.code() == "B0";
    let Some(dukpt) = dukpt.filter(|d| !d.ksn.trim().is_empty()) else {
        return if is_bdk {
            Err(HsmError::invalid(
                format!("{field}.dukpt.ksn"),
                "a BDK (B0) needs the transaction's KSN",
            ))
        } else {
            Ok(None)
        };
    };
    if !is_bdk {
        return Err(HsmError::invalid(
            format!("{field}.dukpt"),
            "only a BDK (key usage B0) derives DUKPT keys",
        ));
    }
    let response =
        pb::DukptDirection::try_from(dukpt.direction) == Ok(pb::DukptDirection::Response);
    let ksn_field = format!("{field}.dukpt.ksn");
    match entry.spec.algorithm {
        KeyAlgorithm::Tdes2 => Ok(Some(Dukpt::Tdes {
            ksn: tdes_dukpt::Ksn::from_hex(dukpt.ksn.trim())
                .map_err(|_| HsmError::invalid(&ksn_field, "a TDES DUKPT KSN is 20 hex digits"))?,
            response,
            variant_only: dukpt.variant_only,
        })),
        KeyAlgorithm::Aes128 | KeyAlgorithm::Aes192 | KeyAlgorithm::Aes256 => {
            let working_key = match pb::KeyAlgorithm::try_from(dukpt.working_key_algorithm) {
                Ok(pb::KeyAlgorithm::Unspecified | pb::KeyAlgorithm::Aes128) => {
                    aes_dukpt::KeyType::Aes128
                }
                Ok(pb::KeyAlgorithm::Aes192) => aes_dukpt::KeyType::Aes192,
                Ok(pb::KeyAlgorithm::Aes256) => aes_dukpt::KeyType::Aes256,
                Ok(pb::KeyAlgorithm::Tdes2key) => aes_dukpt::KeyType::Tdes2,
                Ok(pb::KeyAlgorithm::Tdes3key) => aes_dukpt::KeyType::Tdes3,
                _ => {
                    return Err(HsmError::invalid(
                        format!("{field}.dukpt.workingKeyAlgorithm"),
                        "must be an AES or TDES algorithm",
                    ));
                }
            };
            Ok(Some(Dukpt::Aes {
                ksn: aes_dukpt::Ksn::from_hex(dukpt.ksn.trim()).map_err(|_| {
                    HsmError::invalid(&ksn_field, "an AES DUKPT KSN is 24 hex digits")
                })?,
                response,
                working_key,
            }))
        }
        other => Err(HsmError::Unsupported(format!("DUKPT with a {other:?} BDK"))),
    }
}

/// A key of an operation, as resolved and checked.
#[derive(Clone, Debug)]
struct Resolved {
    entry: Arc<Entry>,
    dukpt: Option<Dukpt>,
}

impl Resolved {
    fn working<'a>(&'a self, member: &'a Member) -> Result<Working<'a>, HsmError> {
        Ok(Working {
            key: key_ref(&self.entry, member)?,
            dukpt: self.dukpt.clone(),
        })
    }
}

fn key_ref<'a>(entry: &'a Entry, member: &Member) -> Result<KeyRef<'a>, HsmError> {
    let handle = entry.handle_on(member.backend.id()).ok_or_else(|| {
        HsmError::Unavailable(format!(
            "backend {} does not hold the key",
            member.backend.id()
        ))
    })?;
    Ok(KeyRef {
        handle,
        spec: &entry.spec,
    })
}

fn holds(entries: Vec<Arc<Entry>>) -> impl Fn(&Member) -> bool + Sync {
    move |member: &Member| {
        entries
            .iter()
            .all(|entry| entry.handle_on(member.backend.id()).is_some())
    }
}

fn bytes_of(outcome: Outcome) -> Result<Vec<u8>, HsmError> {
    match outcome {
        Outcome::Bytes(bytes) => Ok(bytes),
        other => Err(HsmError::Internal(format!(
            "unexpected backend outcome {other:?}"
        ))),
    }
}

fn verified_of(outcome: Outcome) -> Result<(bool, Vec<u8>), HsmError> {
    match outcome {
        Outcome::Verified { verified, arpc } => Ok((verified, arpc)),
        other => Err(HsmError::Internal(format!(
            "unexpected backend outcome {other:?}"
        ))),
    }
}

fn command_error(error: AggregateError<HsmError>) -> HsmError {
    match error {
        AggregateError::UserError(error) => error,
        AggregateError::AggregateConflict => {
            HsmError::KeyState("the key was changed concurrently; retry".into())
        }
        AggregateError::DatabaseConnectionError(error) => {
            HsmError::Unavailable(format!("event store unavailable: {error}"))
        }
        AggregateError::DeserializationError(error) | AggregateError::UnexpectedError(error) => {
            tracing::error!(%error, "key command failed");
            HsmError::Internal("unexpected error".into())
        }
    }
}

impl Hsm {
    /// The service core over its aggregate framework, registry and pool.
    pub fn new(cqrs: Arc<Cqrs<Key>>, registry: Arc<Registry>, pool: Arc<Pool>) -> Self {
        Self {
            cqrs,
            registry,
            pool,
            writes: tokio::sync::Mutex::new(()),
            key_stripes: (0..KEY_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            exports: mpos_es::Combiner::default(),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The pool.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    async fn execute(
        &self,
        tenant_id: &str,
        key_id: &str,
        command: KeyCommand,
        caller: &Caller,
    ) -> Result<(), HsmError> {
        let metadata = command_metadata(tenant_id, caller);
        // Concurrent operations on one key (exports of a BDK for many devices) each append
        // an event to it: in this process they queue on the key's stripe; a conflict with
        // another instance is decided again on the new state, not returned.
        {
            let _append = self.key_stripes[stripe_of(key_id)].lock().await;
            mpos_es::retry_conflicts(&self.cqrs, key_id, command, metadata, 16)
                .await
                .map_err(command_error)?;
        }
        self.catch_up().await
    }

    async fn catch_up(&self) -> Result<(), HsmError> {
        self.registry
            .catch_up()
            .await
            .map_err(|error| HsmError::Unavailable(format!("event store: {error}")))?;
        Ok(())
    }

    /// Records an export on the key's stream. Exports of one key waiting meanwhile for its
    /// stripe are recorded together by whoever gets it: one append for many devices; each
    /// event names its own request (`correlation_id`, `actor`).
    async fn record_export(
        &self,
        tenant_id: &str,
        key_id: &str,
        exported: pb::KeyExported,
        caller: &Caller,
    ) -> Result<(), HsmError> {
        let exported = pb::KeyExported {
            correlation_id: caller.correlation_id.clone(),
            actor: caller.actor.clone(),
            ..exported
        };
        self.exports
            .submit(
                (tenant_id.to_owned(), key_id.to_owned()),
                exported,
                |exports| async move {
                    let count = exports.len();
                    let _append = self.key_stripes[stripe_of(key_id)].lock().await;
                    let result = mpos_es::retry_conflicts(
                        &self.cqrs,
                        key_id,
                        KeyCommand::RecordExports(exports),
                        command_metadata(tenant_id, caller),
                        16,
                    )
                    .await
                    .map_err(command_error);
                    vec![result; count]
                },
            )
            .await
            .unwrap_or_else(|| {
                Err(HsmError::Unavailable(
                    "the export's record was dropped unanswered".into(),
                ))
            })?;
        self.catch_up().await
    }

    async fn view(&self, tenant_id: &str, key_id: &str) -> Result<pb::Key, HsmError> {
        Ok(self.registry.resolve(tenant_id, key_id)?.to_proto())
    }

    fn check_alias_free(
        &self,
        tenant_id: &str,
        alias: &str,
        key_id: Option<&str>,
    ) -> Result<(), HsmError> {
        match self.registry.alias_owner(tenant_id, alias) {
            Some(owner) if Some(owner.as_str()) != key_id => Err(HsmError::AlreadyExists(format!(
                "{alias} names another key"
            ))),
            _ => Ok(()),
        }
    }

    /// Stores a new key on one backend (`first`), then replicates it to every other healthy
    /// backend; returns every backend's handle and KCV. A replica whose KCV differs is an
    /// error: the key would not be the same everywhere.
    async fn replicate(
        &self,
        spec: &KeySpec,
        first: StoredKey,
        origin_backend: &str,
    ) -> Result<Vec<pb::BackendKey>, HsmError> {
        let mut backend_keys = vec![pb::BackendKey {
            backend_id: origin_backend.to_owned(),
            handle: first.handle.clone(),
            kcv: first.kcv.clone(),
        }];
        let Some(origin) = self.pool.member(origin_backend) else {
            return Ok(backend_keys);
        };
        let others: Vec<_> = self
            .pool
            .members()
            .iter()
            .filter(|member| member.backend.id() != origin_backend && member.is_healthy())
            .cloned()
            .collect();
        if others.is_empty() {
            return Ok(backend_keys);
        }
        // A backend that cannot export replicas (pkcs11://) keeps its keys to itself; the
        // consistency check reports the backends that lack them.
        let replica = match origin
            .backend
            .export_replica(KeyRef {
                handle: &first.handle,
                spec,
            })
            .await
        {
            Ok(replica) => replica,
            Err(error) => {
                tracing::warn!(backend = origin_backend, %error, "key not replicated; the consistency check will report it");
                return Ok(backend_keys);
            }
        };
        for member in others {
            match member.backend.import_replica(spec, &replica).await {
                Ok(stored) if stored.kcv == first.kcv => backend_keys.push(pb::BackendKey {
                    backend_id: member.backend.id().to_owned(),
                    handle: stored.handle,
                    kcv: stored.kcv,
                }),
                Ok(_) => {
                    return Err(HsmError::Internal(format!(
                        "backend {} computed another KCV for the replicated key",
                        member.backend.id()
                    )));
                }
                Err(error) => {
                    tracing::warn!(backend = member.backend.id(), %error, "key not replicated; the consistency check will report it");
                }
            }
        }
        Ok(backend_keys)
    }

    async fn register(
        &self,
        tenant_id: &str,
        new: NewKey,
        caller: &Caller,
    ) -> Result<pb::Key, HsmError> {
        let (origin_backend, first) = new.stored;
        let kcv = first.kcv.clone();
        let backend_keys = self.replicate(&new.spec, first, &origin_backend).await?;
        let key_id = uuid::Uuid::now_v7().to_string();
        self.execute(
            tenant_id,
            &key_id,
            KeyCommand::Create {
                tenant_id: tenant_id.to_owned(),
                key_id: key_id.clone(),
                spec: new.spec,
                origin: new.origin,
                kcv,
                backend_keys,
                alias: new.alias,
                key_set_id: new.key_set_id,
            },
            caller,
        )
        .await?;
        self.view(tenant_id, &key_id).await
    }

    /// Runs `attempt` on the best healthy backend (a generate or import: any backend).
    async fn on_any_backend<F, Fut>(
        &self,
        operation: &'static str,
        attempt: F,
    ) -> Result<(String, StoredKey), HsmError>
    where
        F: Fn(Arc<Member>) -> Fut,
        Fut: std::future::Future<Output = Result<StoredKey, HsmError>>,
    {
        self.pool
            .run_within(
                operation,
                KEY_STORE_TIMEOUT,
                &|_: &Member| true,
                |member: Arc<Member>| {
                    let id = member.backend.id().to_owned();
                    let future = attempt(member);
                    async move { future.await.map(|stored| (id, stored)) }
                },
            )
            .await
    }

    /// CreateKey: generated inside a backend, replicated to the pool.
    pub async fn create_key(
        &self,
        request: pb::CreateKeyRequest,
        caller: &Caller,
    ) -> Result<pb::Key, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let spec = KeySpec::from_proto(request.attributes.as_ref())?;
        let alias = optional_alias(&request.alias)?;
        let _write = self.writes.lock().await;
        if let Some(alias) = &alias {
            self.check_alias_free(tenant_id, alias, None)?;
        }
        let stored = self
            .on_any_backend("CreateKey", |member| {
                let spec = spec.clone();
                async move { member.backend.generate(&spec).await }
            })
            .await?;
        self.register(
            tenant_id,
            NewKey {
                spec,
                origin: pb::KeyOrigin::Generated,
                stored,
                alias,
                key_set_id: String::new(),
            },
            caller,
        )
        .await
    }

    /// ImportKey: a TR-31 block under a wrapping key of the tenant, or clear components.
    pub async fn import_key(
        &self,
        request: pb::ImportKeyRequest,
        caller: &Caller,
    ) -> Result<pb::Key, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let alias = optional_alias(&request.alias)?;
        let _write = self.writes.lock().await;
        if let Some(alias) = &alias {
            self.check_alias_free(tenant_id, alias, None)?;
        }
        match request.material {
            Some(pb::import_key_request::Material::Tr31(tr31)) => {
                let wrapping = self.registry.resolve(tenant_id, &tr31.wrapping_key)?;
                wrapping.check_usable()?;
                wrapping.spec.permits(&["K0", "K1"], Capability::Decrypt)?;
                let block = tr31.key_block.trim().to_owned();
                if block.is_empty() {
                    return Err(HsmError::invalid("tr31.keyBlock", "missing"));
                }
                let eligible = holds(vec![wrapping.clone()]);
                let (backend_id, header, spec, stored) = self
                    .pool
                    .run("ImportKey", &eligible, |member: Arc<Member>| {
                        let wrapping = wrapping.clone();
                        let block = block.clone();
                        async move {
                            let id = member.backend.id().to_owned();
                            let (header, spec, stored) = member
                                .backend
                                .import_tr31(key_ref(&wrapping, &member)?, &block)
                                .await?;
                            Ok((id, header, spec, stored))
                        }
                    })
                    .await?;
                let key_set_id = header
                    .key_set_identifier()
                    .ok()
                    .flatten()
                    .map(hex::encode_upper)
                    .unwrap_or_default();
                self.register(
                    tenant_id,
                    NewKey {
                        spec,
                        origin: pb::KeyOrigin::ImportedTr31,
                        stored: (backend_id, stored),
                        alias,
                        key_set_id,
                    },
                    caller,
                )
                .await
            }
            Some(pb::import_key_request::Material::Components(components)) => {
                let spec = KeySpec::from_proto(components.attributes.as_ref())?;
                let combined = combine_components(&spec, &components)?;
                let stored = self
                    .on_any_backend("ImportKey", |member| {
                        let spec = spec.clone();
                        let combined = combined.clone();
                        async move { member.backend.import_clear(&spec, combined).await }
                    })
                    .await?;
                self.register(
                    tenant_id,
                    NewKey {
                        spec,
                        origin: pb::KeyOrigin::ImportedComponents,
                        stored,
                        alias,
                        key_set_id: String::new(),
                    },
                    caller,
                )
                .await
            }
            None => Err(HsmError::invalid("material", "give tr31 or components")),
        }
    }

    /// ExportKey: a TR-31 block under a KEK of the tenant, or a device's DUKPT initial key.
    pub async fn export_key(
        &self,
        request: pb::ExportKeyRequest,
        caller: &Caller,
    ) -> Result<pb::ExportKeyResponse, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let key = self.registry.resolve(tenant_id, &request.key)?;
        if let Some(pb::export_key_request::Format::EcdhDukptInitialKey(initial)) = request.format {
            // No wrapping key: the KBPK is agreed with the device for this export only.
            return self
                .export_ecdh_initial_key(tenant_id, key, initial, caller)
                .await;
        }
        let wrapping = self.registry.resolve(tenant_id, &request.wrapping_key)?;
        key.check_usable()?;
        wrapping.check_usable()?;
        if matches!(
            request.format,
            Some(pb::export_key_request::Format::Tr34DukptInitialKey(_))
        ) {
            // The key distribution host's signing key pair.
            wrapping.spec.permits(&["S0"], Capability::Sign)?;
            if !wrapping.spec.algorithm.is_rsa() {
                return Err(HsmError::WrongKeyUsage(
                    "a TR-34 key distribution host key is an RSA key pair".into(),
                ));
            }
        } else {
            wrapping.spec.permits(&["K0", "K1"], Capability::Encrypt)?;
        }
        let eligible = holds(vec![key.clone(), wrapping.clone()]);
        let (response, exported) = match request.format {
            Some(pb::export_key_request::Format::Tr31(tr31)) => {
                if key.spec.exportability != Exportability::Exportable {
                    return Err(HsmError::WrongKeyUsage(
                        "the key is not exportable (exportability E is needed)".into(),
                    ));
                }
                let exportability = match tr31.exportability.trim() {
                    "" | "N" => Exportability::NonExportable,
                    "E" => Exportability::Exportable,
                    "S" => Exportability::Sensitive,
                    _ => return Err(HsmError::invalid("tr31.exportability", "must be E, N or S")),
                };
                let block = self
                    .pool
                    .run("ExportKey", &eligible, |member: Arc<Member>| {
                        let (key, wrapping) = (key.clone(), wrapping.clone());
                        async move {
                            member
                                .backend
                                .export_tr31(Tr31Export {
                                    key: key_ref(&key, &member)?,
                                    wrapping_key: key_ref(&wrapping, &member)?,
                                    exportability,
                                })
                                .await
                        }
                    })
                    .await?;
                (
                    pb::ExportKeyResponse {
                        key_block: block,
                        kcv: key.kcv.clone(),
                        ..Default::default()
                    },
                    pb::KeyExported {
                        wrapping_key_id: wrapping.key_id.clone(),
                        format: "tr31".into(),
                        kcv: key.kcv.clone(),
                        ..Default::default()
                    },
                )
            }
            Some(pb::export_key_request::Format::DukptInitialKey(initial)) => {
                let dukpt = initial_key_dukpt("dukptInitialKey", &key, &initial.ksn)?;
                let (block, kcv) = self
                    .pool
                    .run("ExportKey", &eligible, |member: Arc<Member>| {
                        let (key, wrapping, dukpt) = (key.clone(), wrapping.clone(), dukpt.clone());
                        async move {
                            member
                                .backend
                                .export_dukpt_initial_key(
                                    key_ref(&key, &member)?,
                                    key_ref(&wrapping, &member)?,
                                    &dukpt,
                                )
                                .await
                        }
                    })
                    .await?;
                (
                    pb::ExportKeyResponse {
                        key_block: block,
                        kcv: kcv.clone(),
                        ..Default::default()
                    },
                    pb::KeyExported {
                        wrapping_key_id: wrapping.key_id.clone(),
                        format: "dukpt-initial-key".into(),
                        ksn: initial.ksn.trim().to_uppercase(),
                        kcv,
                        ..Default::default()
                    },
                )
            }
            Some(pb::export_key_request::Format::Tr34DukptInitialKey(initial)) => {
                let dukpt = initial_key_dukpt("tr34DukptInitialKey", &key, &initial.ksn)?;
                if initial.krd_certificate.is_empty() || initial.kdh_certificate.is_empty() {
                    return Err(HsmError::invalid(
                        "tr34DukptInitialKey",
                        "krdCertificate and kdhCertificate (DER) are required",
                    ));
                }
                let initial = Arc::new(initial);
                let (token, kcv) = self
                    .pool
                    .run("ExportKey", &eligible, |member: Arc<Member>| {
                        let (key, wrapping, dukpt, initial) = (
                            key.clone(),
                            wrapping.clone(),
                            dukpt.clone(),
                            initial.clone(),
                        );
                        async move {
                            member
                                .backend
                                .export_dukpt_initial_key_tr34(
                                    key_ref(&key, &member)?,
                                    key_ref(&wrapping, &member)?,
                                    &dukpt,
                                    &initial.kdh_certificate,
                                    &initial.krd_certificate,
                                )
                                .await
                        }
                    })
                    .await?;
                (
                    pb::ExportKeyResponse {
                        key_block: base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            token,
                        ),
                        kcv: kcv.clone(),
                        ..Default::default()
                    },
                    pb::KeyExported {
                        wrapping_key_id: wrapping.key_id.clone(),
                        format: "tr34-dukpt-initial-key".into(),
                        ksn: initial.ksn.trim().to_uppercase(),
                        kcv,
                        ..Default::default()
                    },
                )
            }
            // Handled above, before the wrapping key is resolved.
            Some(pb::export_key_request::Format::EcdhDukptInitialKey(_)) | None => {
                return Err(HsmError::invalid(
                    "format",
                    "give tr31, dukptInitialKey, tr34DukptInitialKey or ecdhDukptInitialKey",
                ));
            }
        };
        self.record_export(tenant_id, &key.key_id, exported, caller)
            .await?;
        Ok(response)
    }

    /// ExportKey with `ecdhDukptInitialKey`: a device's DUKPT initial key, delivered to its
    /// P-256 key by ECDH and a TR-31 version D block under the agreed one-time KBPK.
    async fn export_ecdh_initial_key(
        &self,
        tenant_id: &str,
        key: Arc<Entry>,
        initial: pb::EcdhDukptInitialKeyExport,
        caller: &Caller,
    ) -> Result<pb::ExportKeyResponse, HsmError> {
        key.check_usable()?;
        let dukpt = initial_key_dukpt("ecdhDukptInitialKey", &key, &initial.ksn)?;
        if initial.device_certificate.is_empty() {
            return Err(HsmError::invalid(
                "ecdhDukptInitialKey.deviceCertificate",
                "the device's certificate (DER) is required",
            ));
        }
        // Only public data is parsed here; every backend sees the same refusal.
        let device_public_key = Arc::new(
            paycrypto::ecdh::p256_public_key_from_certificate(&initial.device_certificate)
                .map_err(|error| {
                    HsmError::invalid(
                        "ecdhDukptInitialKey.deviceCertificate",
                        format!("not a certificate of a P-256 key: {error}"),
                    )
                })?,
        );
        let (delivery, kcv) = self
            .pool
            .run(
                "ExportKey",
                &holds(vec![key.clone()]),
                |member: Arc<Member>| {
                    let (key, dukpt, device_public_key) =
                        (key.clone(), dukpt.clone(), device_public_key.clone());
                    async move {
                        member
                            .backend
                            .export_dukpt_initial_key_ecdh(
                                key_ref(&key, &member)?,
                                &dukpt,
                                &device_public_key,
                            )
                            .await
                    }
                },
            )
            .await?;
        let exported = pb::KeyExported {
            format: "ecdh-dukpt-initial-key".into(),
            ksn: initial.ksn.trim().to_uppercase(),
            kcv: kcv.clone(),
            ..Default::default()
        };
        self.record_export(tenant_id, &key.key_id, exported, caller)
            .await?;
        Ok(pb::ExportKeyResponse {
            key_block: delivery.key_block,
            kcv,
            ephemeral_public_key: delivery.ephemeral_public_key,
        })
    }

    /// GetKey.
    pub fn get_key(&self, request: &pb::GetKeyRequest) -> Result<pb::Key, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        Ok(self.registry.resolve(tenant_id, &request.key)?.to_proto())
    }

    /// GetPublicKey: the DER SubjectPublicKeyInfo of an RSA or EC key pair.
    pub async fn get_public_key(
        &self,
        request: &pb::GetPublicKeyRequest,
    ) -> Result<pb::GetPublicKeyResponse, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let entry = self.registry.resolve(tenant_id, &request.key)?;
        if !entry.spec.algorithm.is_asymmetric() {
            return Err(HsmError::WrongKeyUsage(
                "only RSA and EC key pairs have a public key".into(),
            ));
        }
        let public_key = self
            .pool
            .run(
                "GetPublicKey",
                &holds(vec![entry.clone()]),
                |member: Arc<Member>| {
                    let entry = entry.clone();
                    async move { member.backend.public_key(key_ref(&entry, &member)?).await }
                },
            )
            .await?;
        Ok(pb::GetPublicKeyResponse {
            public_key,
            algorithm: entry.spec.algorithm.to_proto().into(),
        })
    }

    /// ListKeys.
    pub fn list_keys(
        &self,
        request: &pb::ListKeysRequest,
    ) -> Result<pb::ListKeysResponse, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        Ok(pb::ListKeysResponse {
            keys: self
                .registry
                .list(tenant_id)
                .iter()
                .map(|entry| entry.to_proto())
                .collect(),
        })
    }

    /// SetAlias (replaces the key's alias; an alias names one key per tenant).
    pub async fn set_alias(
        &self,
        request: pb::SetAliasRequest,
        caller: &Caller,
    ) -> Result<pb::Key, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let alias = parse_alias(&request.alias)?;
        let _write = self.writes.lock().await;
        let key = self.registry.resolve(tenant_id, &request.key)?;
        self.check_alias_free(tenant_id, &alias, Some(&key.key_id))?;
        self.execute(
            tenant_id,
            &key.key_id,
            KeyCommand::SetAlias { alias },
            caller,
        )
        .await?;
        self.view(tenant_id, &key.key_id).await
    }

    /// RemoveAlias.
    pub async fn remove_alias(
        &self,
        request: pb::RemoveAliasRequest,
        caller: &Caller,
    ) -> Result<pb::Key, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let _write = self.writes.lock().await;
        let key = self.registry.resolve(tenant_id, &request.key)?;
        self.execute(tenant_id, &key.key_id, KeyCommand::RemoveAlias, caller)
            .await?;
        self.view(tenant_id, &key.key_id).await
    }

    /// StartKeyUsage.
    pub async fn start_key_usage(
        &self,
        request: pb::StartKeyUsageRequest,
        caller: &Caller,
    ) -> Result<pb::Key, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let key = self.registry.resolve(tenant_id, &request.key)?;
        self.execute(tenant_id, &key.key_id, KeyCommand::StartUsage, caller)
            .await?;
        self.view(tenant_id, &key.key_id).await
    }

    /// StopKeyUsage.
    pub async fn stop_key_usage(
        &self,
        request: pb::StopKeyUsageRequest,
        caller: &Caller,
    ) -> Result<pb::Key, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let key = self.registry.resolve(tenant_id, &request.key)?;
        self.execute(
            tenant_id,
            &key.key_id,
            KeyCommand::StopUsage {
                reason: request.reason,
            },
            caller,
        )
        .await?;
        self.view(tenant_id, &key.key_id).await
    }

    /// DeleteKey: refused at once, deleted from the backends after the waiting period.
    pub async fn delete_key(
        &self,
        request: pb::DeleteKeyRequest,
        caller: &Caller,
    ) -> Result<pb::Key, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let key = self.registry.resolve(tenant_id, &request.key)?;
        self.execute(
            tenant_id,
            &key.key_id,
            KeyCommand::ScheduleDeletion {
                waiting_period_days: request.waiting_period_days,
                now_micros: mpos_es::now_micros(),
            },
            caller,
        )
        .await?;
        self.view(tenant_id, &key.key_id).await
    }

    /// RestoreKey during the waiting period (the key comes back disabled).
    pub async fn restore_key(
        &self,
        request: pb::RestoreKeyRequest,
        caller: &Caller,
    ) -> Result<pb::Key, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let key = self.registry.resolve(tenant_id, &request.key)?;
        self.execute(tenant_id, &key.key_id, KeyCommand::Restore, caller)
            .await?;
        self.view(tenant_id, &key.key_id).await
    }

    /// Deletes from every backend the keys whose waiting period ended at `now_micros`;
    /// returns how many.
    pub async fn purge_due(&self, now_micros: i64) -> Result<usize, HsmError> {
        let due: Vec<_> = self
            .registry
            .all_live()
            .into_iter()
            .filter(|entry| {
                entry.state == pb::KeyState::DeletePending && entry.delete_after_us <= now_micros
            })
            .collect();
        let caller = Caller::new("service:hsm-proxy");
        for entry in &due {
            for backend_key in &entry.backend_keys {
                if let Some(member) = self.pool.member(&backend_key.backend_id) {
                    member.backend.delete(&backend_key.handle).await?;
                }
            }
            self.execute(
                &entry.tenant_id,
                &entry.key_id,
                KeyCommand::Purge { now_micros },
                &caller,
            )
            .await?;
            tracing::info!(tenant_id = %entry.tenant_id, key_id = %entry.key_id, "key deleted after its waiting period");
        }
        Ok(due.len())
    }

    /// Compares every live key's KCV on every backend with the registry's: a backend that
    /// lacks a key or computes another KCV is reported.
    pub async fn consistency(&self) -> Vec<Inconsistency> {
        let mut findings = Vec::new();
        for entry in self.registry.all_live() {
            for member in self.pool.members() {
                let backend_id = member.backend.id().to_owned();
                let problem = match entry.handle_on(&backend_id) {
                    None => Some("the backend does not hold the key".to_owned()),
                    Some(handle) => match member
                        .backend
                        .kcv(KeyRef {
                            handle,
                            spec: &entry.spec,
                        })
                        .await
                    {
                        Ok(kcv) if kcv == entry.kcv => None,
                        Ok(kcv) => Some(format!(
                            "kcv {kcv} differs from the registry's {}",
                            entry.kcv
                        )),
                        Err(error) => Some(error.to_string()),
                    },
                };
                if let Some(problem) = problem {
                    findings.push(Inconsistency {
                        tenant_id: entry.tenant_id.clone(),
                        key_id: entry.key_id.clone(),
                        backend_id,
                        problem,
                    });
                }
            }
        }
        findings
    }

    // -----------------------------------------------------------------------------------
    // Data plane
    // -----------------------------------------------------------------------------------

    fn resolve_usable(
        &self,
        tenant_id: &str,
        field: &str,
        identifier: &str,
    ) -> Result<Arc<Entry>, HsmError> {
        if identifier.trim().is_empty() {
            return Err(HsmError::invalid(field, "missing"));
        }
        let entry = self.registry.resolve(tenant_id, identifier)?;
        entry.check_usable()?;
        Ok(entry)
    }

    fn resolve_cipher(
        &self,
        tenant_id: &str,
        field: &str,
        encryption: Option<&pb::Encryption>,
        capability: Capability,
    ) -> Result<(Resolved, CipherMode, Vec<u8>), HsmError> {
        let encryption = encryption.ok_or_else(|| HsmError::invalid(field, "missing"))?;
        let entry = self.resolve_usable(tenant_id, &format!("{field}.key"), &encryption.key)?;
        let dukpt = dukpt_of(field, &entry, encryption.dukpt.as_ref())?;
        if dukpt.is_some() {
            entry.spec.permits(&["B0"], Capability::Derive)?;
        } else {
            entry.spec.permits(&["D0"], capability)?;
        }
        let mode = match pb::CipherMode::try_from(encryption.mode) {
            Ok(pb::CipherMode::Ecb) => CipherMode::Ecb,
            Ok(pb::CipherMode::Cbc) => CipherMode::Cbc,
            _ => {
                return Err(HsmError::invalid(
                    format!("{field}.mode"),
                    "must be ECB or CBC",
                ));
            }
        };
        Ok((Resolved { entry, dukpt }, mode, encryption.iv.clone()))
    }

    async fn run_cipher(
        &self,
        operation: &'static str,
        tenant_id: &str,
        encryption: Option<&pb::Encryption>,
        encrypt: bool,
        data: Vec<u8>,
    ) -> Result<(Vec<u8>, String), HsmError> {
        let capability = if encrypt {
            Capability::Encrypt
        } else {
            Capability::Decrypt
        };
        let (resolved, mode, iv) =
            self.resolve_cipher(tenant_id, "encryption", encryption, capability)?;
        if data.is_empty() {
            return Err(HsmError::invalid(
                if encrypt { "plaintext" } else { "ciphertext" },
                "missing",
            ));
        }
        let kcv = resolved.entry.kcv.clone();
        let outcome = self
            .pool
            .run(
                operation,
                &holds(vec![resolved.entry.clone()]),
                |member: Arc<Member>| {
                    let (resolved, iv, data) = (resolved.clone(), iv.clone(), data.clone());
                    async move {
                        let cipher = Cipher {
                            key: resolved.working(&member)?,
                            mode,
                            iv,
                        };
                        let operation = if encrypt {
                            Operation::Encrypt { cipher, data }
                        } else {
                            Operation::Decrypt { cipher, data }
                        };
                        member.backend.run(operation).await
                    }
                },
            )
            .await?;
        Ok((bytes_of(outcome)?, kcv))
    }

    /// EncryptData.
    pub async fn encrypt_data(
        &self,
        request: pb::EncryptDataRequest,
    ) -> Result<pb::EncryptDataResponse, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let (ciphertext, kcv) = self
            .run_cipher(
                "EncryptData",
                tenant_id,
                request.encryption.as_ref(),
                true,
                request.plaintext,
            )
            .await?;
        Ok(pb::EncryptDataResponse { ciphertext, kcv })
    }

    /// DecryptData.
    pub async fn decrypt_data(
        &self,
        request: pb::DecryptDataRequest,
    ) -> Result<pb::DecryptDataResponse, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let (plaintext, kcv) = self
            .run_cipher(
                "DecryptData",
                tenant_id,
                request.encryption.as_ref(),
                false,
                request.ciphertext,
            )
            .await?;
        let card_token = if request.card_token_key.is_empty() {
            Vec::new()
        } else {
            // P2PE decrypt and tokenize: the PAN's keyed token, as GenerateMac computes it,
            // without the PAN travelling back in a second request.
            let pan = track2_pan(&plaintext)?;
            self.generate_mac(pb::GenerateMacRequest {
                tenant_id: request.tenant_id.clone(),
                key: request.card_token_key,
                algorithm: pb::MacAlgorithm::HmacSha256.into(),
                mac_length: 32,
                message: pan.as_bytes().to_vec(),
                ..pb::GenerateMacRequest::default()
            })
            .await?
            .mac
        };
        Ok(pb::DecryptDataResponse {
            plaintext,
            kcv,
            sealed_plaintext: None,
            card_token,
        })
    }

    /// ReEncryptData: the clear data never leaves the backend.
    pub async fn re_encrypt_data(
        &self,
        request: pb::ReEncryptDataRequest,
    ) -> Result<pb::ReEncryptDataResponse, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let (from, from_mode, from_iv) = self.resolve_cipher(
            tenant_id,
            "incoming",
            request.incoming.as_ref(),
            Capability::Decrypt,
        )?;
        let (to, to_mode, to_iv) = self.resolve_cipher(
            tenant_id,
            "outgoing",
            request.outgoing.as_ref(),
            Capability::Encrypt,
        )?;
        if request.ciphertext.is_empty() {
            return Err(HsmError::invalid("ciphertext", "missing"));
        }
        let kcv = to.entry.kcv.clone();
        let data = request.ciphertext;
        let outcome = self
            .pool
            .run(
                "ReEncryptData",
                &holds(vec![from.entry.clone(), to.entry.clone()]),
                |member: Arc<Member>| {
                    let (from, to, from_iv, to_iv, data) = (
                        from.clone(),
                        to.clone(),
                        from_iv.clone(),
                        to_iv.clone(),
                        data.clone(),
                    );
                    async move {
                        member
                            .backend
                            .run(Operation::ReEncrypt {
                                from: Cipher {
                                    key: from.working(&member)?,
                                    mode: from_mode,
                                    iv: from_iv,
                                },
                                to: Cipher {
                                    key: to.working(&member)?,
                                    mode: to_mode,
                                    iv: to_iv,
                                },
                                data,
                            })
                            .await
                    }
                },
            )
            .await?;
        Ok(pb::ReEncryptDataResponse {
            ciphertext: bytes_of(outcome)?,
            kcv,
        })
    }

    fn resolve_pin_key(
        &self,
        tenant_id: &str,
        field: &str,
        key: Option<&pb::PinBlockKey>,
        capability: Capability,
    ) -> Result<(Resolved, PinBlockFormat), HsmError> {
        let key = key.ok_or_else(|| HsmError::invalid(field, "missing"))?;
        let entry = self.resolve_usable(tenant_id, &format!("{field}.key"), &key.key)?;
        let dukpt = dukpt_of(field, &entry, key.dukpt.as_ref())?;
        if dukpt.is_some() {
            entry.spec.permits(&["B0"], Capability::Derive)?;
        } else {
            entry.spec.permits(&["P0"], capability)?;
        }
        let format = pin_format(&format!("{field}.format"), key.format)?;
        Ok((Resolved { entry, dukpt }, format))
    }

    /// TranslatePinData: DUKPT or PIN key in, PIN key out, ISO formats 0, 1, 3, 4.
    pub async fn translate_pin_data(
        &self,
        mut request: pb::TranslatePinDataRequest,
    ) -> Result<pb::TranslatePinDataResponse, HsmError> {
        // The PAN (in clear, or just opened from `sealed_pan`) is wiped when this returns.
        let raw_pan = Zeroizing::new(std::mem::take(&mut request.pan));
        let tenant_id = check_tenant(&request.tenant_id)?;
        let (from, from_format) = self.resolve_pin_key(
            tenant_id,
            "incoming",
            request.incoming.as_ref(),
            Capability::Decrypt,
        )?;
        let (to, to_format) = self.resolve_pin_key(
            tenant_id,
            "outgoing",
            request.outgoing.as_ref(),
            Capability::Encrypt,
        )?;
        if to.dukpt.is_some() {
            return Err(HsmError::invalid(
                "outgoing.dukpt",
                "PIN blocks are translated to a PIN key (P0), not to DUKPT",
            ));
        }
        let block = hex_field("pinBlock", &request.pin_block)?;
        if block.len() != from_format.block_len() {
            return Err(HsmError::invalid(
                "pinBlock",
                format!(
                    "must be {} hex digits for {from_format:?}",
                    from_format.block_len() * 2
                ),
            ));
        }
        let pan = if from_format.needs_pan() || to_format.needs_pan() {
            Some(pan(&raw_pan)?)
        } else {
            None
        };
        let kcv = to.entry.kcv.clone();
        let outcome = self
            .pool
            .run(
                "TranslatePinData",
                &holds(vec![from.entry.clone(), to.entry.clone()]),
                |member: Arc<Member>| {
                    let (from, to, block, pan) =
                        (from.clone(), to.clone(), block.clone(), pan.clone());
                    async move {
                        member
                            .backend
                            .run(Operation::TranslatePin {
                                from: PinKey {
                                    key: from.working(&member)?,
                                    format: from_format,
                                },
                                to: PinKey {
                                    key: to.working(&member)?,
                                    format: to_format,
                                },
                                block,
                                pan,
                            })
                            .await
                    }
                },
            )
            .await?;
        Ok(pb::TranslatePinDataResponse {
            pin_block: hex::encode_upper(bytes_of(outcome)?),
            kcv,
        })
    }

    fn resolve_mac(
        &self,
        tenant_id: &str,
        key: &str,
        algorithm: i32,
        padding: i32,
        dukpt: Option<&pb::Dukpt>,
        capability: Capability,
    ) -> Result<(Resolved, Mac), HsmError> {
        let entry = self.resolve_usable(tenant_id, "key", key)?;
        let dukpt = dukpt_of("mac", &entry, dukpt)?;
        let padding = match pb::MacPadding::try_from(padding) {
            Ok(pb::MacPadding::Unspecified | pb::MacPadding::Method1) => Padding::Method1,
            Ok(pb::MacPadding::Method2) => Padding::Method2,
            Ok(pb::MacPadding::Method3) => Padding::Method3,
            Err(_) => return Err(HsmError::invalid("padding", "unknown")),
        };
        let (mac, usages): (Mac, &[&str]) = match pb::MacAlgorithm::try_from(algorithm) {
            Ok(pb::MacAlgorithm::Iso9797Alg1) => (Mac::Alg1(padding), &["M0", "M1"]),
            Ok(pb::MacAlgorithm::Iso9797Alg3) => (Mac::Alg3(padding), &["M3"]),
            Ok(pb::MacAlgorithm::Cmac) => (Mac::Cmac, &["M6"]),
            Ok(pb::MacAlgorithm::HmacSha256) => (Mac::HmacSha256, &["M7"]),
            _ => {
                return Err(HsmError::invalid(
                    "algorithm",
                    "missing or unknown MAC algorithm",
                ));
            }
        };
        if dukpt.is_some() {
            entry.spec.permits(&["B0"], Capability::Derive)?;
            if matches!(mac, Mac::HmacSha256) {
                return Err(HsmError::invalid(
                    "algorithm",
                    "DUKPT MAC keys are TDES or AES",
                ));
            }
        } else {
            entry.spec.permits(usages, capability)?;
        }
        Ok((Resolved { entry, dukpt }, mac))
    }

    /// GenerateMac.
    pub async fn generate_mac(
        &self,
        request: pb::GenerateMacRequest,
    ) -> Result<pb::GenerateMacResponse, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let (resolved, algorithm) = self.resolve_mac(
            tenant_id,
            &request.key,
            request.algorithm,
            request.padding,
            request.dukpt.as_ref(),
            Capability::Generate,
        )?;
        let length = match usize::try_from(request.mac_length) {
            Ok(0) | Err(_) => paycrypto_mac_len(&resolved, algorithm),
            Ok(length) => length,
        };
        // The message may hold a PAN (a card's keyed token): wiped when this returns.
        let data = Zeroizing::new(request.message);
        let outcome = self
            .pool
            .run(
                "GenerateMac",
                &holds(vec![resolved.entry.clone()]),
                |member: Arc<Member>| {
                    let (resolved, data) = (resolved.clone(), data.to_vec());
                    async move {
                        member
                            .backend
                            .run(Operation::GenerateMac {
                                key: resolved.working(&member)?,
                                algorithm,
                                data,
                                length,
                            })
                            .await
                    }
                },
            )
            .await?;
        Ok(pb::GenerateMacResponse {
            mac: bytes_of(outcome)?,
        })
    }

    /// VerifyMac.
    pub async fn verify_mac(
        &self,
        request: pb::VerifyMacRequest,
    ) -> Result<pb::VerifyMacResponse, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let (resolved, algorithm) = self.resolve_mac(
            tenant_id,
            &request.key,
            request.algorithm,
            request.padding,
            request.dukpt.as_ref(),
            Capability::Verify,
        )?;
        // The message may hold a PAN (a card's keyed token): wiped when this returns.
        let (data, mac) = (Zeroizing::new(request.message), request.mac);
        let outcome = self
            .pool
            .run(
                "VerifyMac",
                &holds(vec![resolved.entry.clone()]),
                |member: Arc<Member>| {
                    let (resolved, data, mac) = (resolved.clone(), data.to_vec(), mac.clone());
                    async move {
                        member
                            .backend
                            .run(Operation::VerifyMac {
                                key: resolved.working(&member)?,
                                algorithm,
                                data,
                                mac,
                            })
                            .await
                    }
                },
            )
            .await?;
        Ok(pb::VerifyMacResponse {
            verified: verified_of(outcome)?.0,
        })
    }

    fn card_validation(method: i32, service_code: &str) -> Result<CardValidation, HsmError> {
        match pb::CardValidationMethod::try_from(method) {
            Ok(pb::CardValidationMethod::Cvv) => {
                let code = service_code.trim();
                if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HsmError::invalid("serviceCode", "must be 3 digits"));
                }
                Ok(CardValidation::Cvv {
                    service_code: code.to_owned(),
                })
            }
            Ok(pb::CardValidationMethod::Cvv2) => Ok(CardValidation::Cvv2),
            Ok(pb::CardValidationMethod::Icvv) => Ok(CardValidation::Icvv),
            _ => Err(HsmError::invalid("method", "must be CVV, CVV2 or ICVV")),
        }
    }

    fn check_expiry(expiry: &str) -> Result<String, HsmError> {
        let expiry = expiry.trim();
        if expiry.len() == 4 && expiry.bytes().all(|b| b.is_ascii_digit()) {
            Ok(expiry.to_owned())
        } else {
            Err(HsmError::invalid("expiry", "must be 4 digits (YYMM)"))
        }
    }

    /// GenerateCardValidationData.
    pub async fn generate_card_validation_data(
        &self,
        mut request: pb::GenerateCardValidationDataRequest,
    ) -> Result<pb::GenerateCardValidationDataResponse, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let entry = self.resolve_usable(tenant_id, "key", &request.key)?;
        entry.spec.permits(&["C0"], Capability::Generate)?;
        let kind = Self::card_validation(request.method, &request.service_code)?;
        let pan = pan(&Zeroizing::new(std::mem::take(&mut request.pan)))?;
        let expiry = Self::check_expiry(&request.expiry)?;
        let outcome = self
            .pool
            .run(
                "GenerateCardValidationData",
                &holds(vec![entry.clone()]),
                |member: Arc<Member>| {
                    let (entry, kind, pan, expiry) =
                        (entry.clone(), kind.clone(), pan.clone(), expiry.clone());
                    async move {
                        member
                            .backend
                            .run(Operation::GenerateCardValidation {
                                key: key_ref(&entry, &member)?,
                                kind,
                                pan,
                                expiry,
                            })
                            .await
                    }
                },
            )
            .await?;
        match outcome {
            Outcome::Digits(value) => Ok(pb::GenerateCardValidationDataResponse { value }),
            other => Err(HsmError::Internal(format!(
                "unexpected backend outcome {other:?}"
            ))),
        }
    }

    /// VerifyCardValidationData.
    pub async fn verify_card_validation_data(
        &self,
        mut request: pb::VerifyCardValidationDataRequest,
    ) -> Result<pb::VerifyCardValidationDataResponse, HsmError> {
        let tenant_id = check_tenant(&request.tenant_id)?;
        let entry = self.resolve_usable(tenant_id, "key", &request.key)?;
        entry.spec.permits(&["C0"], Capability::Verify)?;
        let kind = Self::card_validation(request.method, &request.service_code)?;
        let pan = pan(&Zeroizing::new(std::mem::take(&mut request.pan)))?;
        let expiry = Self::check_expiry(&request.expiry)?;
        let value = request.value.trim().to_owned();
        if !(3..=5).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HsmError::invalid("value", "must be 3 to 5 digits"));
        }
        let outcome = self
            .pool
            .run(
                "VerifyCardValidationData",
                &holds(vec![entry.clone()]),
                |member: Arc<Member>| {
                    let (entry, kind, pan, expiry, value) = (
                        entry.clone(),
                        kind.clone(),
                        pan.clone(),
                        expiry.clone(),
                        value.clone(),
                    );
                    async move {
                        member
                            .backend
                            .run(Operation::VerifyCardValidation {
                                key: key_ref(&entry, &member)?,
                                kind,
                                pan,
                                expiry,
                                value,
                            })
                            .await
                    }
                },
            )
            .await?;
        Ok(pb::VerifyCardValidationDataResponse {
            verified: verified_of(outcome)?.0,
        })
    }

    /// VerifyAuthRequestCryptogram (ARQC), with ARPC method 1 or 2 when asked.
    pub async fn verify_auth_request_cryptogram(
        &self,
        mut request: pb::VerifyAuthRequestCryptogramRequest,
    ) -> Result<pb::VerifyAuthRequestCryptogramResponse, HsmError> {
        use paycrypto::emv::SessionKeyDerivation;
        // The PAN (in clear, or just opened from `sealed_pan`) is wiped when this returns.
        let raw_pan = Zeroizing::new(std::mem::take(&mut request.pan));
        let tenant_id = check_tenant(&request.tenant_id)?;
        let entry = self.resolve_usable(tenant_id, "key", &request.key)?;
        entry.spec.permits(&["E0"], Capability::Derive)?;
        let derivation = match pb::MasterKeyDerivation::try_from(request.derivation) {
            Ok(pb::MasterKeyDerivation::OptionA) => MasterKeyDerivation::OptionA,
            Ok(pb::MasterKeyDerivation::OptionB) => MasterKeyDerivation::OptionB,
            _ => {
                return Err(HsmError::invalid(
                    "derivation",
                    "must be OPTION_A or OPTION_B",
                ));
            }
        };
        let atc = || fixed::<2>("atc", &request.atc);
        let (session, padding) = match pb::SessionKeyScheme::try_from(request.session_key_scheme) {
            Ok(pb::SessionKeyScheme::VisaCvn10) => (SessionKeyDerivation::None, Padding::Method1),
            Ok(pb::SessionKeyScheme::EmvCommon | pb::SessionKeyScheme::VisaCvn18) => (
                SessionKeyDerivation::EmvCsk { atc: atc()? },
                Padding::Method2,
            ),
            Ok(pb::SessionKeyScheme::MastercardSkd) => (
                SessionKeyDerivation::MastercardSkd {
                    atc: atc()?,
                    un: fixed::<4>("unpredictableNumber", &request.unpredictable_number)?,
                },
                Padding::Method2,
            ),
            _ => return Err(HsmError::invalid("sessionKeyScheme", "missing or unknown")),
        };
        let psn = if request.pan_sequence_number.trim().is_empty() {
            "00".to_owned()
        } else {
            request.pan_sequence_number.trim().to_owned()
        };
        if psn.len() != 2 || !psn.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HsmError::invalid("panSequenceNumber", "must be 2 digits"));
        }
        let arpc = match &request.arpc {
            None => Arpc::None,
            Some(pb::verify_auth_request_cryptogram_request::Arpc::ArpcMethod1(method1)) => {
                Arpc::Method1(fixed::<2>(
                    "arpcMethod1.authResponseCode",
                    &method1.auth_response_code,
                )?)
            }
            Some(pb::verify_auth_request_cryptogram_request::Arpc::ArpcMethod2(method2)) => {
                if method2.proprietary_auth_data.len() > 8 {
                    return Err(HsmError::invalid(
                        "arpcMethod2.proprietaryAuthData",
                        "at most 8 bytes",
                    ));
                }
                Arpc::Method2 {
                    csu: fixed::<4>("arpcMethod2.cardStatusUpdate", &method2.card_status_update)?,
                    proprietary: method2.proprietary_auth_data.clone(),
                }
            }
        };
        if request.transaction_data.is_empty() {
            return Err(HsmError::invalid("transactionData", "missing"));
        }
        let parts = (
            derivation,
            session,
            padding,
            pan(&raw_pan)?,
            psn,
            request.transaction_data,
            fixed::<8>("arqc", &request.arqc)?,
            arpc,
        );
        let outcome = self
            .pool
            .run(
                "VerifyAuthRequestCryptogram",
                &holds(vec![entry.clone()]),
                |member: Arc<Member>| {
                    let entry = entry.clone();
                    let (derivation, session, padding, pan, psn, data, arqc, arpc) = parts.clone();
                    async move {
                        member
                            .backend
                            .run(Operation::VerifyArqc(Arqc {
                                key: key_ref(&entry, &member)?,
                                derivation,
                                session,
                                padding,
                                pan,
                                psn,
                                data,
                                arqc,
                                arpc,
                            }))
                            .await
                    }
                },
            )
            .await?;
        let (verified, arpc) = verified_of(outcome)?;
        Ok(pb::VerifyAuthRequestCryptogramResponse { verified, arpc })
    }
}

/// The PIN-related fields of Generate/VerifyPinData.
#[derive(Clone, Copy)]
struct PinDataFields<'r> {
    verification_key: &'r str,
    verification: Option<&'r pb::PinVerification>,
    encryption: Option<&'r pb::PinBlockKey>,
    pin_block: &'r str,
    pan: &'r str,
}

/// Generate/VerifyPinData as resolved and checked.
#[derive(Clone)]
struct PinParts {
    pvk: Arc<Entry>,
    method: PinMethod,
    resolved: Resolved,
    format: PinBlockFormat,
    block: Vec<u8>,
    pan: Pan,
}

/// The verification method of a PIN data request.
fn pin_method(
    verification: Option<&pb::PinVerification>,
    pan: &Pan,
) -> Result<PinMethod, HsmError> {
    use paycrypto::pinver::{DecimalizationTable, Pvki, ValidationData};
    let verification = verification.ok_or_else(|| HsmError::invalid("verification", "missing"))?;
    match pb::PinVerificationMethod::try_from(verification.method) {
        Ok(pb::PinVerificationMethod::VisaPvv) => {
            let pvki = u8::try_from(verification.pvki)
                .ok()
                .and_then(|value| Pvki::new(value).ok())
                .ok_or_else(|| HsmError::invalid("verification.pvki", "must be 0 to 9"))?;
            Ok(PinMethod::VisaPvv(pvki))
        }
        Ok(pb::PinVerificationMethod::Ibm3624Offset) => {
            let table = if verification.decimalization_table.trim().is_empty() {
                DecimalizationTable::default()
            } else {
                DecimalizationTable::parse(verification.decimalization_table.trim()).map_err(
                    |_| {
                        HsmError::invalid(
                            "verification.decimalizationTable",
                            "must be 16 decimal digits",
                        )
                    },
                )?
            };
            let validation = if verification.validation_data.trim().is_empty() {
                // The 12 rightmost PAN digits before the check digit.
                let digits = pan.len();
                ValidationData::from_pan(pan, digits.saturating_sub(13), 12, 'F')
            } else {
                ValidationData::parse(verification.validation_data.trim(), 'F')
            }
            .map_err(|_| {
                HsmError::invalid("verification.validationData", "must be 4 to 16 hex digits")
            })?;
            let check_len = usize::try_from(verification.pin_check_length).unwrap_or(usize::MAX);
            if check_len != 0 && !(4..=12).contains(&check_len) {
                return Err(HsmError::invalid(
                    "verification.pinCheckLength",
                    "must be 4 to 12",
                ));
            }
            Ok(PinMethod::Ibm3624 {
                table,
                validation,
                check_len,
            })
        }
        _ => Err(HsmError::invalid(
            "verification.method",
            "must be VISA_PVV or IBM3624_OFFSET",
        )),
    }
}

impl Hsm {
    fn resolve_pin_data(
        &self,
        tenant_id: &str,
        fields: PinDataFields<'_>,
        capability: Capability,
    ) -> Result<PinParts, HsmError> {
        let pvk = self.resolve_usable(tenant_id, "verificationKey", fields.verification_key)?;
        let pan = pan(fields.pan)?;
        let method = pin_method(fields.verification, &pan)?;
        let usage = if matches!(method, PinMethod::VisaPvv(_)) {
            "V2"
        } else {
            "V1"
        };
        pvk.spec.permits(&[usage], capability)?;
        let (resolved, format) = self.resolve_pin_key(
            tenant_id,
            "encryption",
            fields.encryption,
            Capability::Decrypt,
        )?;
        let block = hex_field("pinBlock", fields.pin_block)?;
        if block.len() != format.block_len() {
            return Err(HsmError::invalid(
                "pinBlock",
                format!(
                    "must be {} hex digits for {format:?}",
                    format.block_len() * 2
                ),
            ));
        }
        Ok(PinParts {
            pvk,
            method,
            resolved,
            format,
            block,
            pan,
        })
    }

    /// GeneratePinData: the PVV or IBM 3624 offset of a customer-selected PIN.
    pub async fn generate_pin_data(
        &self,
        mut request: pb::GeneratePinDataRequest,
    ) -> Result<pb::GeneratePinDataResponse, HsmError> {
        // The PAN (in clear, or just opened from `sealed_pan`) is wiped when this returns.
        let raw_pan = Zeroizing::new(std::mem::take(&mut request.pan));
        let tenant_id = check_tenant(&request.tenant_id)?;
        let fields = PinDataFields {
            verification_key: &request.verification_key,
            verification: request.verification.as_ref(),
            encryption: request.encryption.as_ref(),
            pin_block: &request.pin_block,
            pan: &raw_pan,
        };
        let parts = self.resolve_pin_data(tenant_id, fields, Capability::Generate)?;
        let eligible = holds(vec![parts.pvk.clone(), parts.resolved.entry.clone()]);
        let outcome = self
            .pool
            .run("GeneratePinData", &eligible, |member: Arc<Member>| {
                let PinParts {
                    pvk,
                    method,
                    resolved,
                    format,
                    block,
                    pan,
                } = parts.clone();
                async move {
                    member
                        .backend
                        .run(Operation::GeneratePinData(PinData {
                            verification_key: key_ref(&pvk, &member)?,
                            method,
                            encryption: PinKey {
                                key: resolved.working(&member)?,
                                format,
                            },
                            block,
                            pan,
                        }))
                        .await
                }
            })
            .await?;
        match outcome {
            Outcome::Digits(verification_value) => {
                Ok(pb::GeneratePinDataResponse { verification_value })
            }
            other => Err(HsmError::Internal(format!(
                "unexpected backend outcome {other:?}"
            ))),
        }
    }

    /// VerifyPinData: an enciphered PIN against the PVV or offset on file.
    pub async fn verify_pin_data(
        &self,
        mut request: pb::VerifyPinDataRequest,
    ) -> Result<pb::VerifyPinDataResponse, HsmError> {
        // The PAN (in clear, or just opened from `sealed_pan`) is wiped when this returns.
        let raw_pan = Zeroizing::new(std::mem::take(&mut request.pan));
        let tenant_id = check_tenant(&request.tenant_id)?;
        let fields = PinDataFields {
            verification_key: &request.verification_key,
            verification: request.verification.as_ref(),
            encryption: request.encryption.as_ref(),
            pin_block: &request.pin_block,
            pan: &raw_pan,
        };
        let parts = self.resolve_pin_data(tenant_id, fields, Capability::Verify)?;
        let value = request.verification_value.trim().to_owned();
        if !(4..=12).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HsmError::invalid(
                "verificationValue",
                "must be 4 to 12 digits",
            ));
        }
        let eligible = holds(vec![parts.pvk.clone(), parts.resolved.entry.clone()]);
        let outcome = self
            .pool
            .run("VerifyPinData", &eligible, |member: Arc<Member>| {
                let PinParts {
                    pvk,
                    method,
                    resolved,
                    format,
                    block,
                    pan,
                } = parts.clone();
                let value = value.clone();
                async move {
                    member
                        .backend
                        .run(Operation::VerifyPinData {
                            data: PinData {
                                verification_key: key_ref(&pvk, &member)?,
                                method,
                                encryption: PinKey {
                                    key: resolved.working(&member)?,
                                    format,
                                },
                                block,
                                pan,
                            },
                            value,
                        })
                        .await
                }
            })
            .await?;
        Ok(pb::VerifyPinDataResponse {
            verified: verified_of(outcome)?.0,
        })
    }
}

fn paycrypto_mac_len(resolved: &Resolved, algorithm: Mac) -> usize {
    match algorithm {
        Mac::Alg1(_) | Mac::Alg3(_) => 8,
        Mac::HmacSha256 => 32,
        Mac::Cmac => {
            let aes = match &resolved.dukpt {
                None => resolved.entry.spec.algorithm.is_aes(),
                Some(Dukpt::Tdes { .. }) => false,
                Some(Dukpt::Aes { working_key, .. }) => !matches!(
                    working_key,
                    aes_dukpt::KeyType::Tdes2 | aes_dukpt::KeyType::Tdes3
                ),
            };
            if aes { 16 } else { 8 }
        }
    }
}

fn optional_alias(raw: &str) -> Result<Option<String>, HsmError> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        parse_alias(raw).map(Some)
    }
}

/// XOR-combines clear components, checking each one's KCV and the result's.
fn combine_components(
    spec: &KeySpec,
    import: &pb::ComponentsImport,
) -> Result<SecretBytes, HsmError> {
    let count = import.components.len();
    if !(2..=9).contains(&count) {
        return Err(HsmError::invalid("components", "give 2 to 9 components"));
    }
    if !matches!(
        spec.usage.code(),
        "K0" | "K1" | "B0" | "P0" | "D0" | "M1" | "M3" | "M6" | "C0" | "E0" | "V1" | "V2"
    ) {
        return Err(HsmError::invalid(
            "components.attributes.keyUsage",
            "this key usage cannot be entered as components",
        ));
    }
    let mut combined = Zeroizing::new(vec![0_u8; spec.algorithm.key_len()]);
    for (index, component) in import.components.iter().enumerate() {
        let field = format!("components[{index}]");
        let value = SecretBytes::new(
            hex::decode(component.value.trim())
                .map_err(|_| HsmError::invalid(format!("{field}.value"), "not hexadecimal"))?,
        );
        if value.len() != spec.algorithm.key_len() {
            return Err(HsmError::invalid(
                format!("{field}.value"),
                format!("must be {} bytes", spec.algorithm.key_len()),
            ));
        }
        let kcv = crate::backend::kcv_of(spec.algorithm, &value)?;
        if !kcv.eq_ignore_ascii_case(component.kcv.trim()) {
            return Err(HsmError::invalid(
                format!("{field}.kcv"),
                "does not match the component",
            ));
        }
        paycrypto::primitives::xor_in_place(&mut combined, value.expose());
    }
    let combined = SecretBytes::from_slice(&combined);
    if !import.kcv.trim().is_empty() {
        let kcv = crate::backend::kcv_of(spec.algorithm, &combined)?;
        if !kcv.eq_ignore_ascii_case(import.kcv.trim()) {
            return Err(HsmError::invalid(
                "components.kcv",
                "does not match the combined key",
            ));
        }
    }
    Ok(combined)
}

/// A backend that lacks a key or disagrees on its KCV.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inconsistency {
    /// The key's tenant.
    pub tenant_id: String,
    /// The key.
    pub key_id: String,
    /// The backend.
    pub backend_id: String,
    /// What is wrong.
    pub problem: String,
}
