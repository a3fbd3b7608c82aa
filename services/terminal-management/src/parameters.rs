//! Parameter sets: checking a change against every level it combines with, and issuing each
//! terminal's effective set, signed by the platform, cached by version.
//!
//! A terminal's version is the log position of the latest change on its path (parameters at
//! any level above or at it, or the terminal being bound or moved), so it only grows, and a
//! replay of the log gives the same version and — Ed25519 being deterministic — the same
//! signed bytes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ed25519_dalek::SigningKey;
use mpos_errors::ServiceError;
use mpos_proto::terminal_management as pb;
use sha2::{Digest, Sha256};
use tms_params::{Effective, Level, LevelKind, ParameterError, RiskParameters};

use crate::model::{Model, PathLevel, TerminalPath};

/// The platform's parameter-set signing key.
pub struct ParameterSigner {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for ParameterSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParameterSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ParameterSigner {
    /// A signer over an Ed25519 key; its id is the first 16 hex digits of the SHA-256 of the
    /// public key, so a rotated key has a new id.
    pub fn new(key: SigningKey) -> Self {
        let key_id = hex::encode(&Sha256::digest(key.verifying_key().as_bytes())[..8]);
        Self { key, key_id }
    }

    /// The key's id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public half, for devices and integrators.
    pub fn public_key(&self) -> pb::ParameterSigningKey {
        pb::ParameterSigningKey {
            key_id: self.key_id.clone(),
            algorithm: tms_params::ALGORITHM.to_owned(),
            public_key: self.key.verifying_key().as_bytes().to_vec(),
        }
    }
}

/// Which level a parameter change targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// The tenant level.
    Tenant,
    /// A merchant, store or terminal group.
    Node(&'a str),
    /// One terminal.
    Terminal(&'a str),
}

/// Resolves a path of levels.
pub fn resolve_levels(levels: &[PathLevel]) -> Result<Effective, ParameterError> {
    let empty = RiskParameters::default();
    let levels: Vec<Level<'_>> = levels
        .iter()
        .map(|level| Level {
            kind: level.kind,
            node_id: &level.node_id,
            parameters: level.parameters.as_deref().unwrap_or(&empty),
        })
        .collect();
    tms_params::resolve(&levels)
}

/// Checks that `new` at `target` combines with every level above and below it into valid
/// sets; the error names the field and the level that breaks the rule.
pub fn check_change(
    model: &Model,
    tenant_id: &str,
    target: Target<'_>,
    new: &Arc<RiskParameters>,
) -> Result<(), ServiceError> {
    let (node_id, terminal) = match target {
        Target::Tenant => (None, false),
        Target::Node(id) => (Some(id), false),
        Target::Terminal(id) => (Some(id), true),
    };
    let target_id = node_id.unwrap_or(tenant_id);
    for mut levels in model.affected_paths(tenant_id, node_id, terminal) {
        for level in &mut levels {
            let is_target = level.node_id == target_id
                && match target {
                    Target::Tenant => level.kind == LevelKind::Tenant,
                    Target::Node(_) => {
                        !matches!(level.kind, LevelKind::Tenant | LevelKind::Terminal)
                    }
                    Target::Terminal(_) => level.kind == LevelKind::Terminal,
                };
            if is_target {
                level.parameters = Some(new.clone());
            }
        }
        resolve_levels(&levels).map_err(|error| ServiceError::bad_request(error.to_string()))?;
    }
    Ok(())
}

/// One terminal's signed set.
#[derive(Debug)]
pub struct Issued {
    /// The signed set.
    pub signed: pb::SignedParameterSet,
    /// SHA-256 of its payload (what the device acknowledges).
    pub payload_sha256: [u8; 32],
}

/// Resolved device forms by (parent node, version of the levels above); `None`: incomplete or
/// inconsistent.
type SharedSets = HashMap<(String, u64), Option<Arc<pb::EffectiveParameters>>>;

/// The resolved, complete device form of a path's parameters.
fn device_set(path: &TerminalPath) -> Result<pb::EffectiveParameters, ParameterError> {
    let effective = resolve_levels(&path.levels)?;
    effective.check_complete()?;
    Ok(effective.to_device_proto())
}

/// Why a terminal has no set to download.
fn incomplete(error: &ParameterError) -> ServiceError {
    ServiceError::conflict(format!(
        "the terminal's parameters are incomplete or inconsistent: {error}"
    ))
}

/// Signed sets by terminal, issued on demand or for a whole tenant at once.
#[derive(Debug)]
pub struct ParameterSets {
    signer: ParameterSigner,
    cache: RwLock<HashMap<(String, String), Arc<Issued>>>,
    /// Tenants being re-signed, and whether another change arrived meanwhile.
    reissuing: std::sync::Mutex<HashMap<String, bool>>,
}

impl ParameterSets {
    /// An empty cache over a signer.
    pub fn new(signer: ParameterSigner) -> Self {
        Self {
            signer,
            cache: RwLock::new(HashMap::new()),
            reissuing: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Marks a tenant's re-signing as wanted: `true` if the caller must run it, `false` if a
    /// run is under way (which will then run once more).
    pub fn begin_reissue(&self, tenant_id: &str) -> bool {
        let mut reissuing = self
            .reissuing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match reissuing.get_mut(tenant_id) {
            Some(again) => {
                *again = true;
                false
            }
            None => {
                reissuing.insert(tenant_id.to_owned(), false);
                true
            }
        }
    }

    /// After a run: `true` if a change arrived during it (run again), else the run is over.
    pub fn reissue_again(&self, tenant_id: &str) -> bool {
        let mut reissuing = self
            .reissuing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match reissuing.get_mut(tenant_id) {
            Some(again) if *again => {
                *again = false;
                true
            }
            _ => {
                reissuing.remove(tenant_id);
                false
            }
        }
    }

    /// The signer.
    pub fn signer(&self) -> &ParameterSigner {
        &self.signer
    }

    fn cached(&self, tenant_id: &str, terminal_id: &str, version: u64) -> Option<Arc<Issued>> {
        self.cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(tenant_id.to_owned(), terminal_id.to_owned()))
            .filter(|issued| issued.signed.version == version)
            .cloned()
    }

    fn sign(
        &self,
        tenant_id: &str,
        terminal_id: &str,
        path: &TerminalPath,
    ) -> Result<Issued, ParameterError> {
        Ok(self.sign_device_set(tenant_id, terminal_id, path, &device_set(path)?))
    }

    /// Signs the set of `terminal_id` whose resolved device form is `parameters`.
    fn sign_device_set(
        &self,
        tenant_id: &str,
        terminal_id: &str,
        path: &TerminalPath,
        parameters: &pb::EffectiveParameters,
    ) -> Issued {
        // The shape of `tms_params::parameter_set`, from an already resolved device form.
        let set = pb::ParameterSet {
            tenant_id: tenant_id.to_owned(),
            terminal_id: terminal_id.to_owned(),
            version: path.version.position,
            issued_at: Some(mpos_proto::timestamp_from_micros(path.version.at_us)),
            parameters: Some(parameters.clone()),
        };
        let signed = tms_params::sign(&set, &self.signer.key, &self.signer.key_id);
        let payload_sha256 = tms_params::payload_digest(&signed);
        Issued {
            signed,
            payload_sha256,
        }
    }

    fn insert(&self, tenant_id: &str, terminal_id: &str, issued: Arc<Issued>) {
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((tenant_id.to_owned(), terminal_id.to_owned()), issued);
    }

    /// The terminal's set in force (from the cache when its version is current).
    pub fn issue(
        &self,
        model: &Model,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<Arc<Issued>, ServiceError> {
        let path = model
            .terminal_path(tenant_id, terminal_id)
            .ok_or_else(|| ServiceError::not_found("terminal not found"))?;
        if let Some(issued) = self.cached(tenant_id, terminal_id, path.version.position) {
            return Ok(issued);
        }
        let issued = Arc::new(
            self.sign(tenant_id, terminal_id, &path)
                .map_err(|error| incomplete(&error))?,
        );
        self.insert(tenant_id, terminal_id, issued.clone());
        Ok(issued)
    }

    /// Recomputes and signs the set of every live terminal of a tenant whose cached set is
    /// not current, on `threads` threads; returns (signed, refused as incomplete or
    /// inconsistent).
    pub fn issue_all(&self, model: &Model, tenant_id: &str, threads: usize) -> (usize, usize) {
        let terminals: Vec<String> = model
            .terminals(tenant_id, None)
            .into_iter()
            .filter(|terminal| terminal.state.is_live())
            .map(|terminal| terminal.terminal_id.clone())
            .collect();
        let threads = threads.max(1);
        let chunk = terminals.len().div_ceil(threads).max(1);
        let results: Vec<(usize, usize)> = std::thread::scope(|scope| {
            let handles: Vec<_> = terminals
                .chunks(chunk)
                .map(|ids| {
                    scope.spawn(move || {
                        let (mut signed, mut refused) = (0, 0);
                        // Terminals of one parent without parameters of their own resolve
                        // alike: resolve once per (parent, version of the levels above).
                        let mut shared: SharedSets = HashMap::new();
                        for id in ids {
                            let Some(path) = model.terminal_path(tenant_id, id) else {
                                continue;
                            };
                            if self.cached(tenant_id, id, path.version.position).is_some() {
                                continue;
                            }
                            let parameters = if path.own_parameters {
                                device_set(&path).ok().map(Arc::new)
                            } else {
                                shared
                                    .entry((path.parent_id.clone(), path.chain_version.position))
                                    .or_insert_with(|| device_set(&path).ok().map(Arc::new))
                                    .clone()
                            };
                            match parameters {
                                Some(parameters) => {
                                    let issued =
                                        self.sign_device_set(tenant_id, id, &path, &parameters);
                                    self.insert(tenant_id, id, Arc::new(issued));
                                    signed += 1;
                                }
                                None => refused += 1,
                            }
                        }
                        (signed, refused)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap_or((0, 0)))
                .collect()
        });
        results
            .into_iter()
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    /// The version in force and the payload digest of a terminal's set, for acknowledgements.
    pub fn current(
        &self,
        model: &Model,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<(u64, [u8; 32]), ServiceError> {
        let issued = self.issue(model, tenant_id, terminal_id)?;
        Ok((issued.signed.version, issued.payload_sha256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets() -> ParameterSets {
        ParameterSets::new(ParameterSigner::new(SigningKey::from_bytes(&[7; 32])))
    }

    #[test]
    fn re_signing_runs_once_at_a_time_and_coalesces_changes() {
        let sets = sets();
        assert!(sets.begin_reissue("acme"), "the first change starts a run");
        assert!(!sets.begin_reissue("acme"), "a second one joins it");
        assert!(!sets.begin_reissue("acme"), "and a third");
        assert!(
            sets.begin_reissue("globex"),
            "other tenants run on their own"
        );
        assert!(
            sets.reissue_again("acme"),
            "one more run for the changes meanwhile"
        );
        assert!(!sets.reissue_again("acme"), "then it is over");
        assert!(
            sets.begin_reissue("acme"),
            "the next change starts a new run"
        );
        assert!(!sets.reissue_again("acme"));
        assert!(!sets.reissue_again("globex"));
    }

    #[test]
    fn the_key_id_is_the_start_of_the_public_key_digest() {
        let signer = ParameterSigner::new(SigningKey::from_bytes(&[7; 32]));
        let public = signer.public_key();
        assert_eq!(public.algorithm, "Ed25519");
        assert_eq!(
            public.key_id,
            hex::encode(&Sha256::digest(&public.public_key)[..8])
        );
        assert_eq!(signer.key_id(), public.key_id);
    }
}
