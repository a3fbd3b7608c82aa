//! The key registry as the hot path reads it: every key's metadata in memory, rebuilt from
//! the log at start and kept current by catching up after each command and on a timer
//! (other instances' writes). Keys are few (thousands per tenant at most), so memory is the
//! right read model; it is always rebuilt from the log, never stored.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use mpos_es::{EventStore, StoreError};
use mpos_proto::hsm as pb;

use crate::error::HsmError;
use crate::key::{AGGREGATE_TYPE, KeyEvent, parse_alias};
use crate::spec::KeySpec;

/// Events read per page while catching up.
const PAGE: u32 = 5_000;

/// One key's metadata.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The owning tenant.
    pub tenant_id: String,
    /// The key id.
    pub key_id: String,
    /// Its alias (`alias/…`), or empty.
    pub alias: String,
    /// What the key is.
    pub spec: KeySpec,
    /// Generated or imported.
    pub origin: pb::KeyOrigin,
    /// Its KCV.
    pub kcv: String,
    /// Its state.
    pub state: pb::KeyState,
    /// Backends holding it.
    pub backend_keys: Vec<pb::BackendKey>,
    /// DUKPT key set id, if any.
    pub key_set_id: String,
    /// When it entered the registry (µs).
    pub created_at_us: i64,
    /// Last change (µs).
    pub updated_at_us: i64,
    /// End of the deletion waiting period (µs), or 0.
    pub delete_after_us: i64,
    /// Sequence of the last event applied.
    pub version: u64,
}

impl Entry {
    /// The handle `backend_id` holds the key under.
    pub fn handle_on(&self, backend_id: &str) -> Option<&str> {
        self.backend_keys
            .iter()
            .find(|key| key.backend_id == backend_id)
            .map(|key| key.handle.as_str())
    }

    /// Fails unless the key may be used (enabled).
    pub fn check_usable(&self) -> Result<(), HsmError> {
        match self.state {
            pb::KeyState::Enabled => Ok(()),
            pb::KeyState::Disabled => Err(HsmError::KeyState(format!(
                "key {} is disabled (StopKeyUsage)",
                self.key_id
            ))),
            pb::KeyState::DeletePending => Err(HsmError::KeyState(format!(
                "key {} is pending deletion",
                self.key_id
            ))),
            pb::KeyState::Deleted | pb::KeyState::Unspecified => Err(HsmError::KeyState(format!(
                "key {} is deleted",
                self.key_id
            ))),
        }
    }

    /// The API view.
    pub fn to_proto(&self) -> pb::Key {
        let timestamp =
            |micros: i64| (micros != 0).then(|| mpos_proto::timestamp_from_micros(micros));
        pb::Key {
            tenant_id: self.tenant_id.clone(),
            key_id: self.key_id.clone(),
            alias: self.alias.clone(),
            attributes: Some(self.spec.to_proto()),
            origin: self.origin.into(),
            kcv: self.kcv.clone(),
            state: self.state.into(),
            created_at: timestamp(self.created_at_us),
            updated_at: timestamp(self.updated_at_us),
            delete_after: timestamp(self.delete_after_us),
            backend_ids: self
                .backend_keys
                .iter()
                .map(|key| key.backend_id.clone())
                .collect(),
            version: self.version,
            key_set_id: self.key_set_id.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    position: u64,
    keys: HashMap<String, Arc<Entry>>,
    /// (tenant, alias) → key id.
    aliases: HashMap<(String, String), String>,
}

/// The in-memory key registry.
#[derive(Debug)]
pub struct Registry {
    store: EventStore,
    inner: RwLock<Inner>,
    catching_up: tokio::sync::Mutex<()>,
}

impl Registry {
    /// An empty registry over the service's log; call [`Registry::catch_up`] to fill it.
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            inner: RwLock::new(Inner::default()),
            catching_up: tokio::sync::Mutex::new(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies every event appended since the last catch-up.
    pub async fn catch_up(&self) -> Result<u64, StoreError> {
        let _running = self.catching_up.lock().await;
        let mut position = self.read().position;
        loop {
            let events = self.store.read_after(position, PAGE).await?;
            let Some(last) = events.last() else {
                return Ok(position);
            };
            let last_position = last.global_position;
            let mut inner = self
                .inner
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for stored in &events {
                if stored.event.aggregate_type == AGGREGATE_TYPE {
                    let event: KeyEvent = serde_json::from_str(&stored.event.payload)?;
                    apply(
                        &mut inner,
                        &event,
                        stored.event.sequence,
                        stored.event.occurred_at_us,
                    );
                }
            }
            inner.position = last_position;
            position = last_position;
        }
    }

    /// Resolves a key id or `alias/<name>` of `tenant_id`. Another tenant's key is
    /// [`HsmError::KeyNotFound`], exactly like a missing one.
    pub fn resolve(&self, tenant_id: &str, identifier: &str) -> Result<Arc<Entry>, HsmError> {
        let identifier = identifier.trim();
        if identifier.is_empty() {
            return Err(HsmError::invalid("key", "missing"));
        }
        let inner = self.read();
        let key_id = if identifier.starts_with("alias/") {
            let alias = parse_alias(identifier)?;
            inner
                .aliases
                .get(&(tenant_id.to_owned(), alias))
                .cloned()
                .ok_or_else(|| HsmError::KeyNotFound(identifier.to_owned()))?
        } else {
            identifier.to_owned()
        };
        inner
            .keys
            .get(&key_id)
            .filter(|entry| entry.tenant_id == tenant_id && entry.state != pb::KeyState::Deleted)
            .cloned()
            .ok_or_else(|| HsmError::KeyNotFound(identifier.to_owned()))
    }

    /// The key id that has `alias` in `tenant_id`, if any.
    pub fn alias_owner(&self, tenant_id: &str, alias: &str) -> Option<String> {
        self.read()
            .aliases
            .get(&(tenant_id.to_owned(), alias.to_owned()))
            .cloned()
    }

    /// Every key of a tenant (deleted ones included), ordered by creation.
    pub fn list(&self, tenant_id: &str) -> Vec<Arc<Entry>> {
        let mut keys: Vec<Arc<Entry>> = self
            .read()
            .keys
            .values()
            .filter(|entry| entry.tenant_id == tenant_id)
            .cloned()
            .collect();
        keys.sort_by(|a, b| (a.created_at_us, &a.key_id).cmp(&(b.created_at_us, &b.key_id)));
        keys
    }

    /// Every key not deleted, of every tenant (for consistency checks and deletions).
    pub fn all_live(&self) -> Vec<Arc<Entry>> {
        self.read()
            .keys
            .values()
            .filter(|entry| entry.state != pb::KeyState::Deleted)
            .cloned()
            .collect()
    }
}

fn apply(inner: &mut Inner, event: &KeyEvent, sequence: u64, at: i64) {
    if let KeyEvent::Created(created) = event {
        let Some(spec) = created
            .attributes
            .as_ref()
            .and_then(|attributes| KeySpec::from_proto(Some(attributes)).ok())
        else {
            tracing::error!(key_id = %created.key_id, "key created with unreadable attributes; skipped");
            return;
        };
        inner.keys.insert(
            created.key_id.clone(),
            Arc::new(Entry {
                tenant_id: created.tenant_id.clone(),
                key_id: created.key_id.clone(),
                alias: String::new(),
                spec,
                origin: pb::KeyOrigin::try_from(created.origin)
                    .unwrap_or(pb::KeyOrigin::Unspecified),
                kcv: created.kcv.clone(),
                state: pb::KeyState::Enabled,
                backend_keys: created.backend_keys.clone(),
                key_set_id: created.key_set_id.clone(),
                created_at_us: at,
                updated_at_us: at,
                delete_after_us: 0,
                version: sequence,
            }),
        );
        return;
    }
    let key_id = match event {
        KeyEvent::Created(created) => &created.key_id,
        KeyEvent::AliasSet(e) => &e.key_id,
        KeyEvent::AliasRemoved(e) => &e.key_id,
        KeyEvent::UsageStarted(e) => &e.key_id,
        KeyEvent::UsageStopped(e) => &e.key_id,
        KeyEvent::DeletionScheduled(e) => &e.key_id,
        KeyEvent::DeletionCancelled(e) => &e.key_id,
        KeyEvent::Deleted(e) => &e.key_id,
        KeyEvent::Exported(e) => &e.key_id,
    };
    let Some(current) = inner.keys.get(key_id) else {
        return;
    };
    let mut entry = (**current).clone();
    let tenant = entry.tenant_id.clone();
    match event {
        KeyEvent::Created(_) | KeyEvent::Exported(_) => {}
        KeyEvent::AliasSet(set) => {
            if !entry.alias.is_empty() {
                inner.aliases.remove(&(tenant.clone(), entry.alias.clone()));
            }
            entry.alias = set.alias.clone();
            inner
                .aliases
                .insert((tenant, set.alias.clone()), entry.key_id.clone());
        }
        KeyEvent::AliasRemoved(_) => {
            inner.aliases.remove(&(tenant, entry.alias.clone()));
            entry.alias.clear();
        }
        KeyEvent::UsageStarted(_) => entry.state = pb::KeyState::Enabled,
        KeyEvent::UsageStopped(_) => entry.state = pb::KeyState::Disabled,
        KeyEvent::DeletionScheduled(scheduled) => {
            entry.state = pb::KeyState::DeletePending;
            entry.delete_after_us = scheduled
                .delete_after
                .as_ref()
                .map_or(0, mpos_proto::timestamp_to_micros);
        }
        KeyEvent::DeletionCancelled(_) => {
            entry.state = pb::KeyState::Disabled;
            entry.delete_after_us = 0;
        }
        KeyEvent::Deleted(_) => {
            if !entry.alias.is_empty() {
                inner.aliases.remove(&(tenant, entry.alias.clone()));
            }
            entry.alias.clear();
            entry.state = pb::KeyState::Deleted;
        }
    }
    entry.updated_at_us = at;
    entry.version = sequence;
    inner.keys.insert(entry.key_id.clone(), Arc::new(entry));
}
