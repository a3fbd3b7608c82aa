//! The terminal facts from this service's projection of terminal-management's events (API
//! keys, tenants, terminals and their certificates: `mpos_feed::tms`; the estate and
//! parameters: `mpos_feed::estate`) and key-injection's ([`crate::keys`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mpos_errors::ServiceError;
use mpos_feed::estate::EstateView;
use mpos_feed::tms::{TerminalKind, TerminalStatus, TmsView};

use crate::checks::{TerminalContext, TerminalState};
use crate::keys::KeyView;
use crate::ports::{DeviceKind, TerminalFacts, TerminalKeyFacts, Terminals};

/// The terminal facts over the projections, remembered between payments until the feeds
/// that keep those projections commit anything ([`FactsCache`]).
#[derive(Clone, Debug)]
pub struct ProjectedTerminals {
    /// terminal-management's documents.
    pub tms: TmsView,
    /// The estate.
    pub estate: EstateView,
    /// The keys.
    pub keys: KeyView,
    /// What was read, until the projections change.
    pub cache: Arc<FactsCache>,
}

/// The terminal a certificate is bound to: (tenant, terminal); `None` when unbound.
type Binding = Option<(String, String)>;

/// Most entries kept; past it the cache starts afresh.
const CACHE_LIMIT: usize = 100_000;

/// A terminal's facts and the binding of a certificate, as read at a generation of the
/// projections. terminal-management's and key-injection's followers in this process call
/// [`FactsCache::invalidate`] after every commit of documents, so an entry read at an older
/// generation is read again: a suspension, a new key or new parameters apply to the next
/// payment as before, without the documents being read for every payment.
#[derive(Debug, Default)]
pub struct FactsCache {
    generation: AtomicU64,
    facts: Mutex<HashMap<(String, String), (u64, TerminalFacts)>>,
    certificates: Mutex<HashMap<String, (u64, Binding)>>,
}

impl FactsCache {
    /// The projections changed: every entry is read again.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn facts(&self, key: &(String, String)) -> Option<TerminalFacts> {
        let current = self.generation();
        let facts = self.facts.lock().ok()?;
        facts
            .get(key)
            .filter(|(generation, _)| *generation == current)
            .map(|(_, facts)| facts.clone())
    }

    /// Keeps `facts`, read after `generation` was current.
    fn keep_facts(&self, key: (String, String), generation: u64, facts: TerminalFacts) {
        if let Ok(mut map) = self.facts.lock() {
            if map.len() >= CACHE_LIMIT {
                map.clear();
            }
            map.insert(key, (generation, facts));
        }
    }

    fn certificate(&self, certificate_sha256: &str) -> Option<Binding> {
        let current = self.generation();
        let certificates = self.certificates.lock().ok()?;
        certificates
            .get(certificate_sha256)
            .filter(|(generation, _)| *generation == current)
            .map(|(_, binding)| binding.clone())
    }

    fn keep_certificate(&self, certificate_sha256: &str, generation: u64, binding: Binding) {
        if let Ok(mut map) = self.certificates.lock() {
            if map.len() >= CACHE_LIMIT {
                map.clear();
            }
            map.insert(certificate_sha256.to_owned(), (generation, binding));
        }
    }
}

fn state_of(status: TerminalStatus) -> TerminalState {
    match status {
        TerminalStatus::Active => TerminalState::Active,
        TerminalStatus::Bound => TerminalState::Inactive("not activated yet"),
        TerminalStatus::Suspended => TerminalState::Inactive("suspended"),
        TerminalStatus::Blacklisted => TerminalState::Inactive("blacklisted"),
        TerminalStatus::SwappedOut => TerminalState::Inactive("swapped out"),
        TerminalStatus::Decommissioned => TerminalState::Inactive("decommissioned"),
    }
}

#[async_trait]
impl Terminals for ProjectedTerminals {
    async fn by_certificate(
        &self,
        certificate_sha256: &str,
    ) -> Result<Option<(String, String)>, ServiceError> {
        if let Some(binding) = self.cache.certificate(certificate_sha256) {
            return Ok(binding);
        }
        let generation = self.cache.generation();
        let binding = self
            .tms
            .terminal_by_certificate(certificate_sha256)
            .await?
            .map(|terminal| (terminal.tenant_id, terminal.terminal_id));
        self.cache
            .keep_certificate(certificate_sha256, generation, binding.clone());
        Ok(binding)
    }

    async fn facts(
        &self,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<Option<TerminalFacts>, ServiceError> {
        let key = (tenant_id.to_owned(), terminal_id.to_owned());
        if let Some(facts) = self.cache.facts(&key) {
            return Ok(Some(facts));
        }
        let generation = self.cache.generation();
        let facts = self.read_facts(tenant_id, terminal_id).await?;
        if let Some(facts) = &facts {
            self.cache.keep_facts(key, generation, facts.clone());
        }
        Ok(facts)
    }
}

impl ProjectedTerminals {
    /// The facts, read from the projections.
    async fn read_facts(
        &self,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<Option<TerminalFacts>, ServiceError> {
        let (terminal, estate, key, suspended) = tokio::try_join!(
            self.tms.terminal(tenant_id, terminal_id),
            self.estate.terminal_estate(tenant_id, terminal_id),
            self.keys.terminal_key(tenant_id, terminal_id),
            self.tms.tenant_suspended(tenant_id),
        )?;
        let (Some(terminal), Some(estate)) = (terminal, estate) else {
            return Ok(None);
        };
        let parameters = estate.effective();
        Ok(Some(TerminalFacts {
            kind: match terminal.kind {
                TerminalKind::Ped => DeviceKind::Ped,
                TerminalKind::SoftPos => DeviceKind::SoftPos,
            },
            certificate_sha256: terminal.certificate_sha256.clone(),
            tenant_suspended: suspended,
            context: TerminalContext {
                // terminal-management's own status wins: attestation suspensions and
                // lifecycle changes arrive there first.
                state: state_of(terminal.status),
                merchant_id: estate.merchant_id.clone(),
                terminal_group_id: estate.terminal_group_id.clone().unwrap_or_default(),
                parameters,
                parameters_version: estate.version,
            },
            key: key.map(|key| TerminalKeyFacts {
                bdk: key.bdk_hsm_key_id,
                initial_key_id: key.slot.initial_key_id,
                revoked: key.slot.revoked,
            }),
        }))
    }
}
