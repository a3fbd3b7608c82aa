//! The estate as the API and the devices read it: tenants, API keys, nodes and terminals in
//! memory, rebuilt from the log at start and kept current by catching up after each command
//! and on a timer (other instances' writes). An estate of a few hundred thousand terminals
//! fits easily; it is always rebuilt from the log, never stored.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use mpos_es::{EventStore, StoreError, StoredEvent};
use mpos_proto::terminal_management as pb;

use crate::access::{PresentedKey, Principal, Role};
use crate::estate::{self, EstateId, NodeEvent, NodeKind, ParentNode};
use crate::manufacturer::{self, CaEvent};
use crate::tenant::{self, TenantEvent};
use crate::terminal::{self, TerminalEvent, TerminalKind, TerminalState};
use device_identity::{Crl, ManufacturerCa, TrustStore};
use tms_params::{LevelKind, RiskParameters};

/// Events read per page while catching up.
const PAGE: u32 = 5_000;

/// Where and when in the log something changed: parameter versions are log positions, so a
/// replay gives the same versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// The global position of the event.
    pub position: u64,
    /// When it occurred (µs).
    pub at_us: i64,
}

/// The parameters set at one level, and when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelParameters {
    /// The partial set (absent: nothing set here).
    pub parameters: Option<Arc<RiskParameters>>,
    /// The event that set it.
    pub changed: Change,
}

/// One level on the path from the tenant down to a node or terminal.
#[derive(Clone, Debug)]
pub struct PathLevel {
    /// Which level.
    pub kind: LevelKind,
    /// The tenant, node or terminal id.
    pub node_id: String,
    /// What it sets.
    pub parameters: Option<Arc<RiskParameters>>,
    /// When that was set.
    pub changed: Change,
}

impl PathLevel {
    fn new(kind: LevelKind, node_id: &str, parameters: &LevelParameters) -> Self {
        Self {
            kind,
            node_id: node_id.to_owned(),
            parameters: parameters.parameters.clone(),
            changed: parameters.changed,
        }
    }
}

/// A terminal's path through the estate, and the version of its effective parameters.
#[derive(Clone, Debug)]
pub struct TerminalPath {
    /// The levels, tenant first, the terminal last.
    pub levels: Vec<PathLevel>,
    /// The latest change on the path (parameters at any level, or the terminal placed).
    pub version: Change,
    /// The latest parameter change above the terminal (tenant and nodes only): terminals of
    /// one parent without parameters of their own share their effective set while this holds.
    pub chain_version: Change,
    /// The terminal's parent node.
    pub parent_id: String,
    /// Whether the terminal sets parameters of its own.
    pub own_parameters: bool,
}

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantEntry {
    /// Its id.
    pub tenant_id: String,
    /// Its name.
    pub name: String,
    /// Whether it is suspended.
    pub suspended: bool,
    /// Its tenant-level parameters.
    pub parameters: LevelParameters,
}

/// An API key (its digest, never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyEntry {
    /// The tenant.
    pub tenant_id: String,
    /// The key id.
    pub key_id: String,
    /// What it may do.
    pub role: Role,
    /// Its label.
    pub label: String,
    /// Hex SHA-256 of its secret.
    pub secret_sha256: String,
    /// Whether it was revoked.
    pub revoked: bool,
    /// When it was issued (µs).
    pub created_at_us: i64,
}

impl ApiKeyEntry {
    /// The API view (without secret).
    pub fn to_proto(&self) -> pb::ApiKey {
        pb::ApiKey {
            tenant_id: self.tenant_id.clone(),
            key_id: self.key_id.clone(),
            role: self.role.to_proto().into(),
            label: self.label.clone(),
            revoked: self.revoked,
            created_at: Some(mpos_proto::timestamp_from_micros(self.created_at_us)),
            secret: String::new(),
        }
    }
}

/// A merchant, store or terminal group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// The tenant.
    pub tenant_id: String,
    /// The node id.
    pub node_id: String,
    /// Its level.
    pub kind: NodeKind,
    /// Its parent (empty for a merchant).
    pub parent_id: String,
    /// Its name.
    pub name: String,
    /// Whether it is closed.
    pub closed: bool,
    /// Created (µs).
    pub created_at_us: i64,
    /// Last change (µs).
    pub updated_at_us: i64,
    /// Sequence of its last event.
    pub version: u64,
    /// Its parameters.
    pub parameters: LevelParameters,
}

impl NodeEntry {
    /// The API view.
    pub fn to_proto(&self) -> pb::EstateNode {
        pb::EstateNode {
            tenant_id: self.tenant_id.clone(),
            node_id: self.node_id.clone(),
            kind: self.kind.to_proto().into(),
            parent_id: self.parent_id.clone(),
            name: self.name.clone(),
            status: if self.closed {
                pb::NodeStatus::Closed
            } else {
                pb::NodeStatus::Open
            }
            .into(),
            created_at: Some(mpos_proto::timestamp_from_micros(self.created_at_us)),
            updated_at: Some(mpos_proto::timestamp_from_micros(self.updated_at_us)),
            version: self.version,
        }
    }
}

/// A terminal.
#[derive(Clone, Debug, PartialEq)]
pub struct TerminalEntry {
    /// The tenant.
    pub tenant_id: String,
    /// The terminal id.
    pub terminal_id: String,
    /// PED or SoftPOS.
    pub kind: TerminalKind,
    /// Its store or terminal group.
    pub parent_id: String,
    /// Its lifecycle state.
    pub state: TerminalState,
    /// A PED's device certificate.
    pub device: Option<pb::DeviceBinding>,
    /// Its label.
    pub label: String,
    /// The terminal it replaced.
    pub replaces_terminal_id: String,
    /// The terminal that replaced it.
    pub replaced_by_terminal_id: String,
    /// How it was activated.
    pub activation_method: pb::ActivationMethod,
    /// Bound (µs).
    pub created_at_us: i64,
    /// Last change (µs).
    pub updated_at_us: i64,
    /// Sequence of its last event.
    pub version: u64,
    /// Its own parameters.
    pub parameters: LevelParameters,
    /// When it was bound or last moved (its path changed).
    pub placed: Change,
    /// The parameter version the device last reported installed (0: none).
    pub installed_version: u64,
    /// When the device installed it, by its clock (µs; 0: never).
    pub installed_at_us: i64,
    /// Why it is suspended ("" when it is not): a suspension by the attestation service starts
    /// with [`terminal::ATTESTATION_SUSPENSION`].
    pub suspension_reason: String,
}

impl TerminalEntry {
    /// The API view.
    pub fn to_proto(&self) -> pb::Terminal {
        pb::Terminal {
            tenant_id: self.tenant_id.clone(),
            terminal_id: self.terminal_id.clone(),
            kind: self.kind.to_proto().into(),
            parent_id: self.parent_id.clone(),
            state: self.state.to_proto().into(),
            device: self.device.clone(),
            label: self.label.clone(),
            replaces_terminal_id: self.replaces_terminal_id.clone(),
            replaced_by_terminal_id: self.replaced_by_terminal_id.clone(),
            activation_method: self.activation_method.into(),
            created_at: Some(mpos_proto::timestamp_from_micros(self.created_at_us)),
            updated_at: Some(mpos_proto::timestamp_from_micros(self.updated_at_us)),
            version: self.version,
        }
    }
}

/// A manufacturer CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaEntry {
    /// SHA-256 of its certificate.
    pub ca_id: String,
    /// Display name.
    pub name: String,
    /// Subject.
    pub subject: String,
    /// The certificate.
    pub certificate_der: Vec<u8>,
    /// Validity start (µs).
    pub not_before_us: i64,
    /// Validity end (µs).
    pub not_after_us: i64,
    /// When it was (last) registered (µs): its validity is judged as of then on replay.
    pub registered_at_us: i64,
    /// Whether it was removed.
    pub removed: bool,
    /// The CRL in force.
    pub crl_der: Option<Vec<u8>>,
    /// Its thisUpdate (µs).
    pub crl_this_update_us: i64,
    /// Its nextUpdate (µs, 0: none).
    pub crl_next_update_us: i64,
    /// Certificates it revokes.
    pub crl_revoked_count: u32,
    /// Sequence of its last event.
    pub version: u64,
}

impl CaEntry {
    /// The API view.
    pub fn to_proto(&self) -> pb::ManufacturerCa {
        let timestamp =
            |micros: i64| (micros != 0).then(|| mpos_proto::timestamp_from_micros(micros));
        pb::ManufacturerCa {
            ca_id: self.ca_id.clone(),
            name: self.name.clone(),
            subject: self.subject.clone(),
            not_before: timestamp(self.not_before_us),
            not_after: timestamp(self.not_after_us),
            removed: self.removed,
            crl_this_update: timestamp(self.crl_this_update_us),
            crl_next_update: timestamp(self.crl_next_update_us),
            crl_revoked_count: self.crl_revoked_count,
            version: self.version,
        }
    }
}

type Key = (String, String);

fn key(tenant_id: &str, id: &str) -> Key {
    (tenant_id.to_owned(), id.to_owned())
}

#[derive(Debug, Default)]
struct Inner {
    position: u64,
    tenants: BTreeMap<String, TenantEntry>,
    api_keys: HashMap<String, ApiKeyEntry>,
    nodes: HashMap<Key, NodeEntry>,
    terminals: HashMap<Key, Arc<TerminalEntry>>,
    /// (tenant, parent node or "" for merchants) → child node ids.
    children: HashMap<Key, BTreeSet<String>>,
    /// (tenant, parent node) → terminal ids.
    terminals_of: HashMap<Key, BTreeSet<String>>,
    /// Certificate SHA-256 → (tenant, terminal) of every live PED.
    certificates: HashMap<String, Key>,
    /// Manufacturer CAs by id.
    cas: BTreeMap<String, CaEntry>,
    /// Whether a CA event was applied since the trust store was last rebuilt.
    cas_changed: bool,
}

/// The in-memory estate.
#[derive(Debug)]
pub struct Model {
    store: EventStore,
    inner: RwLock<Inner>,
    catching_up: tokio::sync::Mutex<()>,
    /// The registered manufacturer CAs and their CRLs, as the mTLS listener verifies them.
    trust: TrustStore,
}

impl Model {
    /// An empty model over the service's log; call [`Model::catch_up`] to fill it.
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            inner: RwLock::new(Inner::default()),
            catching_up: tokio::sync::Mutex::new(()),
            trust: TrustStore::new(),
        }
    }

    /// The trust store the device listener verifies against (kept equal to the registered
    /// CAs and CRLs).
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// Every manufacturer CA ever registered, by id.
    pub fn cas(&self) -> Vec<CaEntry> {
        self.read().cas.values().cloned().collect()
    }

    /// A manufacturer CA.
    pub fn ca(&self, ca_id: &str) -> Option<CaEntry> {
        self.read().cas.get(ca_id).cloned()
    }

    /// Rebuilds the trust store from the registered CAs (after CA events).
    fn rebuild_trust(&self, inner: &mut Inner) {
        if !std::mem::take(&mut inner.cas_changed) {
            return;
        }
        let mut cas = Vec::new();
        let mut crls = Vec::new();
        for entry in inner.cas.values().filter(|entry| !entry.removed) {
            let registered_at =
                chrono::DateTime::from_timestamp_micros(entry.registered_at_us).unwrap_or_default();
            let ca = match ManufacturerCa::from_der(&entry.certificate_der, registered_at) {
                Ok(ca) => ca,
                Err(error) => {
                    tracing::error!(ca_id = %entry.ca_id, %error, "registered CA no longer parses; not trusted");
                    continue;
                }
            };
            if let Some(der) = &entry.crl_der {
                match Crl::from_der(der, &ca) {
                    Ok(crl) => crls.push(crl),
                    Err(error) => {
                        tracing::error!(ca_id = %entry.ca_id, %error, "registered CRL no longer parses; CA not trusted");
                        continue;
                    }
                }
            }
            cas.push(ca);
        }
        if let Err(error) = self.trust.replace(cas, crls) {
            tracing::error!(%error, "trust store rebuild failed");
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The global position of the last event applied.
    pub fn position(&self) -> u64 {
        self.read().position
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
                apply(&mut inner, stored)?;
            }
            self.rebuild_trust(&mut inner);
            inner.position = last_position;
            position = last_position;
        }
    }

    /// A tenant.
    pub fn tenant(&self, tenant_id: &str) -> Option<TenantEntry> {
        self.read().tenants.get(tenant_id).cloned()
    }

    /// Who presents `token`, if it is a live API key of an existing tenant.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let presented = PresentedKey::parse(token)?;
        let inner = self.read();
        let entry = inner.api_keys.get(&presented.key_id)?;
        if entry.revoked
            || !inner.tenants.contains_key(&entry.tenant_id)
            || !presented.matches(&entry.secret_sha256)
        {
            return None;
        }
        Some(Principal::ApiKey {
            tenant_id: entry.tenant_id.clone(),
            key_id: entry.key_id.clone(),
            role: entry.role,
        })
    }

    /// A tenant's API keys, oldest first.
    pub fn api_keys(&self, tenant_id: &str) -> Vec<ApiKeyEntry> {
        let mut keys: Vec<ApiKeyEntry> = self
            .read()
            .api_keys
            .values()
            .filter(|entry| entry.tenant_id == tenant_id)
            .cloned()
            .collect();
        keys.sort_by(|a, b| (a.created_at_us, &a.key_id).cmp(&(b.created_at_us, &b.key_id)));
        keys
    }

    /// An API key of a tenant.
    pub fn api_key(&self, tenant_id: &str, key_id: &str) -> Option<ApiKeyEntry> {
        self.read()
            .api_keys
            .get(key_id)
            .filter(|entry| entry.tenant_id == tenant_id)
            .cloned()
    }

    /// A node of a tenant.
    pub fn node(&self, tenant_id: &str, node_id: &str) -> Option<NodeEntry> {
        self.read().nodes.get(&key(tenant_id, node_id)).cloned()
    }

    /// A node as the parent of a new node or terminal.
    pub fn parent(&self, tenant_id: &str, node_id: &EstateId) -> Option<ParentNode> {
        self.node(tenant_id, node_id.as_str())
            .map(|node| ParentNode {
                id: node_id.clone(),
                kind: node.kind,
                closed: node.closed,
            })
    }

    /// A tenant's nodes, optionally only one kind or only the children of one parent
    /// (`Some("")`: the merchants), ordered by id.
    pub fn nodes(
        &self,
        tenant_id: &str,
        kind: Option<NodeKind>,
        parent_id: Option<&str>,
    ) -> Vec<NodeEntry> {
        let inner = self.read();
        let mut nodes: Vec<NodeEntry> = match parent_id {
            Some(parent) => inner
                .children
                .get(&key(tenant_id, parent))
                .into_iter()
                .flatten()
                .filter_map(|id| inner.nodes.get(&key(tenant_id, id)).cloned())
                .collect(),
            None => inner
                .nodes
                .values()
                .filter(|node| node.tenant_id == tenant_id)
                .cloned()
                .collect(),
        };
        nodes.retain(|node| kind.is_none_or(|kind| node.kind == kind));
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        nodes
    }

    /// Open child nodes and live terminals directly below a node.
    pub fn occupancy(&self, tenant_id: &str, node_id: &str) -> (usize, usize) {
        let inner = self.read();
        let node_key = key(tenant_id, node_id);
        let open_children = inner
            .children
            .get(&node_key)
            .into_iter()
            .flatten()
            .filter(|id| {
                inner
                    .nodes
                    .get(&key(tenant_id, id))
                    .is_some_and(|node| !node.closed)
            })
            .count();
        let live_terminals = inner
            .terminals_of
            .get(&node_key)
            .into_iter()
            .flatten()
            .filter(|id| {
                inner
                    .terminals
                    .get(&key(tenant_id, id))
                    .is_some_and(|terminal| terminal.state.is_live())
            })
            .count();
        (open_children, live_terminals)
    }

    /// A terminal of a tenant.
    pub fn terminal(&self, tenant_id: &str, terminal_id: &str) -> Option<Arc<TerminalEntry>> {
        self.read()
            .terminals
            .get(&key(tenant_id, terminal_id))
            .cloned()
    }

    /// A tenant's terminals, optionally only those directly below one node, ordered by id.
    pub fn terminals(&self, tenant_id: &str, parent_id: Option<&str>) -> Vec<Arc<TerminalEntry>> {
        let inner = self.read();
        let mut terminals: Vec<Arc<TerminalEntry>> = match parent_id {
            Some(parent) => inner
                .terminals_of
                .get(&key(tenant_id, parent))
                .into_iter()
                .flatten()
                .filter_map(|id| inner.terminals.get(&key(tenant_id, id)).cloned())
                .collect(),
            None => inner
                .terminals
                .values()
                .filter(|terminal| terminal.tenant_id == tenant_id)
                .cloned()
                .collect(),
        };
        terminals.sort_by(|a, b| a.terminal_id.cmp(&b.terminal_id));
        terminals
    }

    /// The live PED bound to a device certificate, whatever its tenant.
    pub fn terminal_by_certificate(&self, certificate_sha256: &str) -> Option<Arc<TerminalEntry>> {
        let inner = self.read();
        let terminal_key = inner.certificates.get(certificate_sha256)?;
        inner.terminals.get(terminal_key).cloned()
    }

    /// The levels from the tenant down to a node (inclusive).
    fn node_levels(inner: &Inner, tenant: &TenantEntry, node_id: &str) -> Vec<PathLevel> {
        let mut nodes = Vec::new();
        let mut next = node_id.to_owned();
        // The hierarchy is three levels deep; the bound guards against a corrupt log.
        while !next.is_empty() && nodes.len() < 8 {
            let Some(node) = inner.nodes.get(&key(&tenant.tenant_id, &next)) else {
                break;
            };
            next = node.parent_id.clone();
            nodes.push(node);
        }
        let mut levels = vec![PathLevel::new(
            LevelKind::Tenant,
            &tenant.tenant_id,
            &tenant.parameters,
        )];
        levels.extend(
            nodes
                .iter()
                .rev()
                .map(|node| PathLevel::new(level_kind(node.kind), &node.node_id, &node.parameters)),
        );
        levels
    }

    /// The path from the tenant to a terminal and the version of its effective parameters.
    pub fn terminal_path(&self, tenant_id: &str, terminal_id: &str) -> Option<TerminalPath> {
        let inner = self.read();
        let tenant = inner.tenants.get(tenant_id)?;
        let terminal = inner.terminals.get(&key(tenant_id, terminal_id))?;
        let mut levels = Self::node_levels(&inner, tenant, &terminal.parent_id);
        let chain_version = levels
            .iter()
            .map(|level| level.changed)
            .max()
            .unwrap_or_default();
        levels.push(PathLevel::new(
            LevelKind::Terminal,
            &terminal.terminal_id,
            &terminal.parameters,
        ));
        Some(TerminalPath {
            levels,
            version: chain_version
                .max(terminal.parameters.changed)
                .max(terminal.placed),
            chain_version,
            parent_id: terminal.parent_id.clone(),
            own_parameters: terminal.parameters.parameters.is_some(),
        })
    }

    /// The paths whose effective parameters a change at `node_id` (`None`: the tenant level,
    /// `Some(terminal)` with `terminal` true: one terminal) could alter: the node itself,
    /// every node below it, and every live terminal below it that sets parameters of its own
    /// (the others resolve like their parent node).
    pub fn affected_paths(
        &self,
        tenant_id: &str,
        node_id: Option<&str>,
        terminal: bool,
    ) -> Vec<Vec<PathLevel>> {
        if terminal {
            return node_id
                .and_then(|id| self.terminal_path(tenant_id, id))
                .map(|path| vec![path.levels])
                .unwrap_or_default();
        }
        let inner = self.read();
        let Some(tenant) = inner.tenants.get(tenant_id) else {
            return Vec::new();
        };
        let mut paths = Vec::new();
        let mut queue: Vec<String> = match node_id {
            Some(id) => vec![id.to_owned()],
            None => {
                paths.push(Self::node_levels(&inner, tenant, ""));
                inner
                    .children
                    .get(&key(tenant_id, ""))
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect()
            }
        };
        while let Some(id) = queue.pop() {
            let node_key = key(tenant_id, &id);
            paths.push(Self::node_levels(&inner, tenant, &id));
            for terminal_id in inner.terminals_of.get(&node_key).into_iter().flatten() {
                if let Some(terminal) = inner.terminals.get(&key(tenant_id, terminal_id))
                    && terminal.state.is_live()
                    && terminal.parameters.parameters.is_some()
                {
                    let mut levels = Self::node_levels(&inner, tenant, &id);
                    levels.push(PathLevel::new(
                        LevelKind::Terminal,
                        &terminal.terminal_id,
                        &terminal.parameters,
                    ));
                    paths.push(levels);
                }
            }
            queue.extend(inner.children.get(&node_key).into_iter().flatten().cloned());
        }
        paths
    }
}

/// The typed parameters of a stored event (validated when written; a set the current rules
/// refuse is logged and treated as unset rather than stopping the model).
fn level_parameters(set: &pb::ParametersSet, changed: Change) -> LevelParameters {
    let proto = set.parameters.clone().unwrap_or_default();
    let parameters = if proto == pb::RiskParameters::default() {
        None
    } else {
        match tms_params::validate(&proto) {
            Ok(parameters) => Some(Arc::new(parameters)),
            Err(error) => {
                tracing::error!(node_id = %set.node_id, %error, "stored parameters no longer validate; ignored");
                None
            }
        }
    };
    LevelParameters {
        parameters,
        changed,
    }
}

fn apply(inner: &mut Inner, stored: &StoredEvent) -> Result<(), StoreError> {
    let change = Change {
        position: stored.global_position,
        at_us: stored.event.occurred_at_us,
    };
    let sequence = stored.event.sequence;
    match stored.event.aggregate_type.as_str() {
        tenant::AGGREGATE_TYPE => {
            apply_tenant(inner, serde_json::from_str(&stored.event.payload)?, change);
        }
        estate::AGGREGATE_TYPE => {
            apply_node(
                inner,
                serde_json::from_str(&stored.event.payload)?,
                change,
                sequence,
            );
        }
        terminal::AGGREGATE_TYPE => {
            apply_terminal(
                inner,
                serde_json::from_str(&stored.event.payload)?,
                change,
                sequence,
            );
        }
        manufacturer::AGGREGATE_TYPE => {
            apply_ca(
                inner,
                serde_json::from_str(&stored.event.payload)?,
                change,
                sequence,
            );
        }
        _ => {}
    }
    Ok(())
}

fn apply_tenant(inner: &mut Inner, event: TenantEvent, change: Change) {
    let at = change.at_us;
    match event {
        TenantEvent::Created(created) => {
            inner.tenants.insert(
                created.tenant_id.clone(),
                TenantEntry {
                    tenant_id: created.tenant_id,
                    name: created.name,
                    suspended: false,
                    parameters: LevelParameters::default(),
                },
            );
        }
        TenantEvent::Renamed(renamed) => {
            if let Some(tenant) = inner.tenants.get_mut(&renamed.tenant_id) {
                tenant.name = renamed.new_name;
            }
        }
        TenantEvent::Suspended(suspended) => {
            if let Some(tenant) = inner.tenants.get_mut(&suspended.tenant_id) {
                tenant.suspended = true;
            }
        }
        TenantEvent::Reactivated(reactivated) => {
            if let Some(tenant) = inner.tenants.get_mut(&reactivated.tenant_id) {
                tenant.suspended = false;
            }
        }
        TenantEvent::ParametersSet(set) => {
            if let Some(tenant) = inner.tenants.get_mut(&set.tenant_id) {
                tenant.parameters = level_parameters(&set, change);
            }
        }
        TenantEvent::ApiKeyIssued(issued) => {
            let Ok(role) = Role::from_proto(issued.role) else {
                tracing::error!(key_id = %issued.key_id, "api key issued with an unknown role; skipped");
                return;
            };
            inner.api_keys.insert(
                issued.key_id.clone(),
                ApiKeyEntry {
                    tenant_id: issued.tenant_id,
                    key_id: issued.key_id,
                    role,
                    label: issued.label,
                    secret_sha256: issued.secret_sha256,
                    revoked: false,
                    created_at_us: at,
                },
            );
        }
        TenantEvent::ApiKeyRevoked(revoked) => {
            if let Some(entry) = inner.api_keys.get_mut(&revoked.key_id) {
                entry.revoked = true;
            }
        }
    }
}

fn apply_node(inner: &mut Inner, event: NodeEvent, change: Change, sequence: u64) {
    let at = change.at_us;
    let (tenant_id, node_id) = match &event {
        NodeEvent::Created(e) => (&e.tenant_id, &e.node_id),
        NodeEvent::Renamed(e) => (&e.tenant_id, &e.node_id),
        NodeEvent::Closed(e) => (&e.tenant_id, &e.node_id),
        NodeEvent::ParametersSet(e) => (&e.tenant_id, &e.node_id),
    };
    let node_key = key(tenant_id, node_id);
    if let NodeEvent::Created(created) = event {
        let Ok(kind) = NodeKind::from_proto(created.kind) else {
            tracing::error!(node_id = %created.node_id, "estate node with an unknown kind; skipped");
            return;
        };
        inner
            .children
            .entry(key(&created.tenant_id, &created.parent_id))
            .or_default()
            .insert(created.node_id.clone());
        inner.nodes.insert(
            node_key,
            NodeEntry {
                tenant_id: created.tenant_id,
                node_id: created.node_id,
                kind,
                parent_id: created.parent_id,
                name: created.name,
                closed: false,
                created_at_us: at,
                updated_at_us: at,
                version: sequence,
                parameters: LevelParameters::default(),
            },
        );
        return;
    }
    let Some(node) = inner.nodes.get_mut(&node_key) else {
        return;
    };
    match event {
        NodeEvent::Created(_) => {}
        NodeEvent::Renamed(renamed) => node.name = renamed.new_name,
        NodeEvent::Closed(_) => node.closed = true,
        NodeEvent::ParametersSet(set) => node.parameters = level_parameters(&set, change),
    }
    node.updated_at_us = at;
    node.version = sequence;
}

fn apply_terminal(inner: &mut Inner, event: TerminalEvent, change: Change, sequence: u64) {
    let at = change.at_us;
    let (tenant_id, terminal_id) = match &event {
        TerminalEvent::Bound(e) => (&e.tenant_id, &e.terminal_id),
        TerminalEvent::Activated(e) => (&e.tenant_id, &e.terminal_id),
        TerminalEvent::Suspended(e) => (&e.tenant_id, &e.terminal_id),
        TerminalEvent::Resumed(e) => (&e.tenant_id, &e.terminal_id),
        TerminalEvent::Blacklisted(e) => (&e.tenant_id, &e.terminal_id),
        TerminalEvent::SwappedOut(e) => (&e.tenant_id, &e.terminal_id),
        TerminalEvent::Decommissioned(e) => (&e.tenant_id, &e.terminal_id),
        TerminalEvent::Moved(e) => (&e.tenant_id, &e.terminal_id),
        TerminalEvent::ParametersSet(e) => (&e.tenant_id, &e.node_id),
        TerminalEvent::ParametersInstalled(e) => (&e.tenant_id, &e.terminal_id),
    };
    let terminal_key = key(tenant_id, terminal_id);
    if let TerminalEvent::Bound(bound) = event {
        let Ok(kind) = TerminalKind::from_proto(bound.kind) else {
            tracing::error!(terminal_id = %bound.terminal_id, "terminal with an unknown kind; skipped");
            return;
        };
        inner
            .terminals_of
            .entry(key(&bound.tenant_id, &bound.parent_id))
            .or_default()
            .insert(bound.terminal_id.clone());
        if let Some(device) = &bound.device {
            inner
                .certificates
                .insert(device.certificate_sha256.clone(), terminal_key.clone());
        }
        inner.terminals.insert(
            terminal_key,
            Arc::new(TerminalEntry {
                tenant_id: bound.tenant_id,
                terminal_id: bound.terminal_id,
                kind,
                parent_id: bound.parent_id,
                state: TerminalState::Bound,
                device: bound.device,
                label: bound.label,
                replaces_terminal_id: bound.replaces_terminal_id,
                replaced_by_terminal_id: String::new(),
                activation_method: pb::ActivationMethod::Unspecified,
                created_at_us: at,
                updated_at_us: at,
                version: sequence,
                parameters: LevelParameters::default(),
                placed: change,
                installed_version: 0,
                installed_at_us: 0,
                suspension_reason: String::new(),
            }),
        );
        return;
    }
    let Some(current) = inner.terminals.get(&terminal_key) else {
        return;
    };
    let mut entry = (**current).clone();
    match event {
        TerminalEvent::Bound(_) => {}
        TerminalEvent::Activated(activated) => {
            entry.state = TerminalState::Active;
            entry.activation_method = pb::ActivationMethod::try_from(activated.method)
                .unwrap_or(pb::ActivationMethod::Unspecified);
            entry.suspension_reason.clear();
        }
        TerminalEvent::Resumed(_) => {
            entry.state = TerminalState::Active;
            entry.suspension_reason.clear();
        }
        TerminalEvent::Suspended(suspended) => {
            entry.state = TerminalState::Suspended;
            entry.suspension_reason = suspended.reason;
        }
        TerminalEvent::Blacklisted(_) => entry.state = TerminalState::Blacklisted,
        TerminalEvent::SwappedOut(swapped) => {
            entry.state = TerminalState::SwappedOut;
            entry.replaced_by_terminal_id = swapped.replacement_terminal_id;
        }
        TerminalEvent::Decommissioned(_) => entry.state = TerminalState::Decommissioned,
        TerminalEvent::Moved(moved) => {
            if let Some(siblings) = inner
                .terminals_of
                .get_mut(&key(&entry.tenant_id, &moved.old_parent_id))
            {
                siblings.remove(&entry.terminal_id);
            }
            inner
                .terminals_of
                .entry(key(&entry.tenant_id, &moved.new_parent_id))
                .or_default()
                .insert(entry.terminal_id.clone());
            entry.parent_id = moved.new_parent_id;
            entry.placed = change;
        }
        TerminalEvent::ParametersSet(set) => entry.parameters = level_parameters(&set, change),
        TerminalEvent::ParametersInstalled(installed) => {
            entry.installed_version = installed.version;
            entry.installed_at_us = installed
                .installed_at
                .as_ref()
                .map_or(0, mpos_proto::timestamp_to_micros);
        }
    }
    if !entry.state.is_live()
        && let Some(device) = &entry.device
        && inner.certificates.get(&device.certificate_sha256) == Some(&terminal_key)
    {
        // A retired, blacklisted or replaced device no longer identifies a terminal.
        inner.certificates.remove(&device.certificate_sha256);
    }
    entry.updated_at_us = at;
    entry.version = sequence;
    inner.terminals.insert(terminal_key, Arc::new(entry));
}

/// The parameter level of a node kind.
pub fn level_kind(kind: NodeKind) -> LevelKind {
    match kind {
        NodeKind::Merchant => LevelKind::Merchant,
        NodeKind::Store => LevelKind::Store,
        NodeKind::TerminalGroup => LevelKind::TerminalGroup,
    }
}

fn micros(timestamp: Option<&pbjson_types::Timestamp>) -> i64 {
    timestamp.map_or(0, mpos_proto::timestamp_to_micros)
}

fn apply_ca(inner: &mut Inner, event: CaEvent, change: Change, sequence: u64) {
    inner.cas_changed = true;
    match event {
        CaEvent::Registered(registered) => {
            inner.cas.insert(
                registered.ca_id.clone(),
                CaEntry {
                    not_before_us: micros(registered.not_before.as_ref()),
                    not_after_us: micros(registered.not_after.as_ref()),
                    ca_id: registered.ca_id,
                    name: registered.name,
                    subject: registered.subject,
                    certificate_der: registered.certificate_der,
                    registered_at_us: change.at_us,
                    removed: false,
                    crl_der: None,
                    crl_this_update_us: 0,
                    crl_next_update_us: 0,
                    crl_revoked_count: 0,
                    version: sequence,
                },
            );
        }
        CaEvent::CrlUpdated(updated) => {
            if let Some(entry) = inner.cas.get_mut(&updated.ca_id) {
                entry.crl_this_update_us = micros(updated.this_update.as_ref());
                entry.crl_next_update_us = micros(updated.next_update.as_ref());
                entry.crl_revoked_count = updated.revoked_count;
                entry.crl_der = Some(updated.crl_der);
                entry.version = sequence;
            }
        }
        CaEvent::Removed(removed) => {
            if let Some(entry) = inner.cas.get_mut(&removed.ca_id) {
                entry.removed = true;
                entry.version = sequence;
            }
        }
    }
}
