//! terminal-management's estate as the services acting for a terminal keep it (authorization
//! above all): for every terminal its state and kind, its merchant, store and terminal group,
//! the risk parameters of every level on its path (tenant → merchant → store → terminal group
//! → terminal) and the **parameters version**, each exactly as terminal-management defines
//! them. [`estate_documents`] is the projection step a
//! [`Follower`](crate::follow::Follower) of terminal-management calls (beside or instead of
//! [`tms_documents`](crate::tms::tms_documents): the document ids cannot collide);
//! [`EstateView::terminal_estate`] reads a terminal's [`TerminalEstate`], and
//! [`TerminalEstate::effective`] resolves its parameters with `tms_params::resolve`, as
//! terminal-management does.
//!
//! The version is terminal-management's: the global log position of the latest change on the
//! terminal's path — a `ParametersSet` at its tenant, at any node above it or at itself (an
//! empty set, which clears a level, counts), or the terminal being bound or moved. Lifecycle
//! events, renames and closures change no version.
//!
//! Documents, all tenant-scoped (`Document::tenant_id` is the tenant):
//!
//! - `estate-tenant/<tenant>`: the tenant level's parameters;
//! - `estate-node/<tenant>/<node>`: a merchant, store or terminal group: kind, parent, name,
//!   whether it is closed, its parameters;
//! - `estate-terminal/<tenant>/<terminal>`: kind, state, parent, the position it was bound or
//!   last moved at, its own parameters.
//!
//! A level keeps its canonical partial set as terminal-management wrote it
//! (`pb::RiskParameters`, JSON by the proto3 mapping) and the position of the `ParametersSet`
//! that wrote it. The sets are validated when read: a stored set that the current rules of
//! `tms-params` refuse makes [`TerminalEstate::effective`] fail with the reason, where
//! terminal-management logs it and treats the level as unset — for a payment, refusing is
//! the safe side (a level's block list is never silently dropped).

use mpos_bus::EventEnvelope;
use mpos_errors::ServiceError;
use mpos_es::{Document, EventStore};
use mpos_proto::terminal_management as pb;
use prost::Message as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tms_params::{Effective, Level, LevelKind, RiskParameters};

use crate::follow::Overlay;
use crate::tms::{TYPE_PREFIX, TerminalKind, TerminalStatus, decode, unreadable};

/// The most nodes a terminal's path climbs: the hierarchy is three deep, the bound guards
/// against a corrupt projection (a cycle). terminal-management's own walk has the same bound.
const MAX_DEPTH: usize = 8;

/// The kind of an estate node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum NodeKind {
    Merchant,
    Store,
    TerminalGroup,
}

impl NodeKind {
    /// From `EstateNodeCreated.kind`; `None` for an unknown kind (terminal-management skips
    /// such a node too).
    fn from_proto(kind: i32) -> Option<Self> {
        match pb::NodeKind::try_from(kind) {
            Ok(pb::NodeKind::Merchant) => Some(Self::Merchant),
            Ok(pb::NodeKind::Store) => Some(Self::Store),
            Ok(pb::NodeKind::TerminalGroup) => Some(Self::TerminalGroup),
            _ => None,
        }
    }

    /// Its parameter level.
    fn level(self) -> LevelKind {
        match self {
            Self::Merchant => LevelKind::Merchant,
            Self::Store => LevelKind::Store,
            Self::TerminalGroup => LevelKind::TerminalGroup,
        }
    }
}

/// What one level sets, as the last `ParametersSet` there left it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct LevelDoc {
    /// The canonical partial set (empty: nothing set here).
    #[serde(default)]
    parameters: pb::RiskParameters,
    /// The global position of that `ParametersSet` (0: never set).
    #[serde(default)]
    changed: u64,
}

/// `estate-tenant/<tenant>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct TenantDoc {
    #[serde(default)]
    level: LevelDoc,
}

/// `estate-node/<tenant>/<node>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct NodeDoc {
    kind: NodeKind,
    /// Empty for a merchant (its parent is the tenant).
    parent_id: String,
    name: String,
    closed: bool,
    #[serde(default)]
    level: LevelDoc,
}

/// `estate-terminal/<tenant>/<terminal>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TerminalDoc {
    kind: TerminalKind,
    status: TerminalStatus,
    /// Its store or terminal group.
    parent_id: String,
    /// The position it was bound or last moved at.
    placed: u64,
    #[serde(default)]
    level: LevelDoc,
}

fn tenant_doc_id(tenant_id: &str) -> String {
    format!("estate-tenant/{tenant_id}")
}

fn node_doc_id(tenant_id: &str, node_id: &str) -> String {
    format!("estate-node/{tenant_id}/{node_id}")
}

fn terminal_doc_id(tenant_id: &str, terminal_id: &str) -> String {
    format!("estate-terminal/{tenant_id}/{terminal_id}")
}

/// A terminal as the authorization of its payments needs it: where it is in the estate, its
/// state, the parameters of every level on its path and the version they make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminalEstate {
    /// The tenant.
    pub tenant_id: String,
    /// The terminal.
    pub terminal_id: String,
    /// What kind of device it is.
    pub kind: TerminalKind,
    /// Where it is in its life (only bound, active and suspended terminals are live).
    pub status: TerminalStatus,
    /// Its merchant.
    pub merchant_id: String,
    /// Its store.
    pub store_id: String,
    /// Its terminal group, when it is in one rather than directly in the store.
    pub terminal_group_id: Option<String>,
    /// Whether a node on its path is closed (terminal-management closes a node only once no
    /// live terminal is below it).
    pub closed: bool,
    /// The levels of its path, root first: the tenant, its merchant, store, terminal group
    /// (if any) and itself, each with the partial set stored there (empty when nothing is
    /// set, or when the stored set no longer validates — [`TerminalEstate::effective`] then
    /// refuses).
    pub levels: Vec<(LevelKind, String, RiskParameters)>,
    /// The parameters version, as terminal-management computes it (see the module docs).
    pub version: u64,
    /// The levels whose stored set no longer validates, each with why.
    invalid: Vec<String>,
}

impl TerminalEstate {
    /// The effective parameters, resolved like terminal-management resolves them (the
    /// deepest level that sets a value wins, floor limits per currency, blocked lists
    /// accumulated) and complete.
    ///
    /// The error says what is wrong: the levels whose stored set does not validate
    /// (`store s-1: merchant_category_code: …`), a combination that breaks a rule
    /// (`contactless_floor_limit (set at store s-1): …`), or the required values no level
    /// sets, comma-separated in terminal-management's order (`terminal_country_code,
    /// floor_limits[EUR]`).
    pub fn effective(&self) -> Result<Effective, String> {
        if !self.invalid.is_empty() {
            return Err(self.invalid.join("; "));
        }
        let levels: Vec<Level<'_>> = self
            .levels
            .iter()
            .map(|(kind, node_id, parameters)| Level {
                kind: *kind,
                node_id,
                parameters,
            })
            .collect();
        let effective = tms_params::resolve(&levels).map_err(|error| error.to_string())?;
        let missing = effective.missing_required();
        if !missing.is_empty() {
            let missing: Vec<String> = missing.iter().map(ToString::to_string).collect();
            return Err(missing.join(", "));
        }
        Ok(effective)
    }
}

/// Reads of the projection of terminal-management's estate.
#[derive(Clone, Debug)]
pub struct EstateView {
    store: EventStore,
    projection: &'static str,
}

impl EstateView {
    /// The view over the documents of `projection` in `store`.
    pub fn new(store: EventStore, projection: &'static str) -> Self {
        Self { store, projection }
    }

    /// The projection's name.
    pub fn projection(&self) -> &'static str {
        self.projection
    }

    /// A document of a tenant as written earlier in the batch (`overlay`), else as stored.
    async fn read<T: DeserializeOwned>(
        &self,
        overlay: &Overlay,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<T>, ServiceError> {
        if let Some(document) = overlay.get(id) {
            return decode(document).map(Some);
        }
        self.store
            .document(self.projection, tenant_id, id)
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// A terminal of a tenant with its place in the estate and its parameters; `None` when
    /// the tenant or the terminal is unknown (another tenant's terminal is unknown). An error
    /// when the store fails or the projection is inconsistent (a path without merchant or
    /// store).
    pub async fn terminal_estate(
        &self,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<Option<TerminalEstate>, ServiceError> {
        terminal_estate_in(self, &Overlay::new(), tenant_id, terminal_id).await
    }
}

/// A level of the path in typed form; a stored set that no longer validates is listed empty
/// and recorded in `invalid`.
fn typed_level(
    kind: LevelKind,
    node_id: &str,
    level: &LevelDoc,
    invalid: &mut Vec<String>,
) -> (LevelKind, String, RiskParameters) {
    let parameters = tms_params::validate(&level.parameters).unwrap_or_else(|error| {
        invalid.push(format!("{kind} {node_id}: {error}"));
        RiskParameters::default()
    });
    (kind, node_id.to_owned(), parameters)
}

/// [`EstateView::terminal_estate`] as of the documents written so far in this batch
/// (`overlay`), else as stored: what a follower's work sees of the batch it runs in.
pub async fn terminal_estate_in(
    view: &EstateView,
    overlay: &Overlay,
    tenant_id: &str,
    terminal_id: &str,
) -> Result<Option<TerminalEstate>, ServiceError> {
    let Some(terminal) = view
        .read::<TerminalDoc>(overlay, tenant_id, &terminal_doc_id(tenant_id, terminal_id))
        .await?
    else {
        return Ok(None);
    };
    let Some(tenant) = view
        .read::<TenantDoc>(overlay, tenant_id, &tenant_doc_id(tenant_id))
        .await?
    else {
        return Ok(None);
    };
    // Up from the terminal's parent to the merchant, as terminal-management walks it.
    let mut nodes: Vec<(String, NodeDoc)> = Vec::new();
    let mut next = terminal.parent_id.clone();
    while !next.is_empty() && nodes.len() < MAX_DEPTH {
        let Some(node) = view
            .read::<NodeDoc>(overlay, tenant_id, &node_doc_id(tenant_id, &next))
            .await?
        else {
            break;
        };
        let parent_id = node.parent_id.clone();
        nodes.push((next, node));
        next = parent_id;
    }
    nodes.reverse();
    let find = |kind: NodeKind| {
        nodes
            .iter()
            .find(|(_, node)| node.kind == kind)
            .map(|(node_id, _)| node_id.clone())
    };
    let (Some(merchant_id), Some(store_id)) = (find(NodeKind::Merchant), find(NodeKind::Store))
    else {
        tracing::error!(
            tenant_id,
            terminal_id,
            parent_id = %terminal.parent_id,
            "terminal's estate path lacks its merchant or store"
        );
        return Err(ServiceError::internal("inconsistent estate projection"));
    };

    let mut invalid = Vec::new();
    let mut levels = Vec::with_capacity(nodes.len() + 2);
    levels.push(typed_level(
        LevelKind::Tenant,
        tenant_id,
        &tenant.level,
        &mut invalid,
    ));
    for (node_id, node) in &nodes {
        levels.push(typed_level(
            node.kind.level(),
            node_id,
            &node.level,
            &mut invalid,
        ));
    }
    levels.push(typed_level(
        LevelKind::Terminal,
        terminal_id,
        &terminal.level,
        &mut invalid,
    ));
    let version = nodes
        .iter()
        .map(|(_, node)| node.level.changed)
        .chain([
            tenant.level.changed,
            terminal.level.changed,
            terminal.placed,
        ])
        .max()
        .unwrap_or_default();
    Ok(Some(TerminalEstate {
        tenant_id: tenant_id.to_owned(),
        terminal_id: terminal_id.to_owned(),
        kind: terminal.kind,
        status: terminal.status,
        merchant_id,
        store_id,
        terminal_group_id: find(NodeKind::TerminalGroup),
        closed: nodes.iter().any(|(_, node)| node.closed),
        levels,
        version,
        invalid,
    }))
}

fn document<T: Serialize>(
    id: String,
    tenant_id: &str,
    position: u64,
    value: &T,
) -> Result<Document, ServiceError> {
    Ok(Document {
        id,
        tenant_id: tenant_id.to_owned(),
        position,
        payload: serde_json::to_string(value).map_err(unreadable)?,
    })
}

/// Changes a tenant's document `id` (as of the batch, else as stored) and writes it; nothing
/// when there is no such document.
async fn update<T: Serialize + DeserializeOwned>(
    view: &EstateView,
    overlay: &Overlay,
    tenant_id: &str,
    id: String,
    position: u64,
    change: impl FnOnce(&mut T),
) -> Result<Vec<Document>, ServiceError> {
    let Some(mut value) = view.read::<T>(overlay, tenant_id, &id).await? else {
        return Ok(Vec::new());
    };
    change(&mut value);
    Ok(vec![document(id, tenant_id, position, &value)?])
}

/// Which document a `ParametersSet` changes: by its level, else (unspecified) by the
/// aggregate that wrote it, as terminal-management dispatches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Tenant,
    Node,
    Terminal,
}

impl Target {
    fn of(level: i32, aggregate_type: &str) -> Option<Self> {
        match pb::ParameterLevel::try_from(level) {
            Ok(pb::ParameterLevel::Tenant) => Some(Self::Tenant),
            Ok(
                pb::ParameterLevel::Merchant
                | pb::ParameterLevel::Store
                | pb::ParameterLevel::TerminalGroup,
            ) => Some(Self::Node),
            Ok(pb::ParameterLevel::Terminal) => Some(Self::Terminal),
            Ok(pb::ParameterLevel::Unspecified) | Err(_) => match aggregate_type {
                "tenant" => Some(Self::Tenant),
                "estate_node" => Some(Self::Node),
                "terminal" => Some(Self::Terminal),
                _ => None,
            },
        }
    }
}

/// The projection step: the documents a terminal-management event changes, given those
/// written earlier in the batch (`overlay`) and else the stored ones. Events of other
/// services and the ones the estate does not depend on change nothing; an event about a
/// tenant, node or terminal the projection does not know changes nothing either (as in
/// terminal-management's own model).
pub async fn estate_documents(
    view: &EstateView,
    overlay: &Overlay,
    envelope: &EventEnvelope,
) -> Result<Vec<Document>, ServiceError> {
    let Some(name) = envelope.event_type.strip_prefix(TYPE_PREFIX) else {
        return Ok(Vec::new());
    };
    let payload = envelope.payload.as_slice();
    let position = envelope.global_position;
    let bad = |error: prost::DecodeError| {
        tracing::error!(%error, event_type = %envelope.event_type, position, "undecodable terminal-management event");
        ServiceError::internal("undecodable terminal-management event")
    };
    let status = |tenant_id: String, terminal_id: String, status: TerminalStatus| async move {
        let id = terminal_doc_id(&tenant_id, &terminal_id);
        update(
            view,
            overlay,
            &tenant_id,
            id,
            position,
            |terminal: &mut TerminalDoc| {
                terminal.status = status;
            },
        )
        .await
    };
    Ok(match name {
        "TenantCreated" => {
            let created = pb::TenantCreated::decode(payload).map_err(bad)?;
            let id = tenant_doc_id(&created.tenant_id);
            vec![document(
                id,
                &created.tenant_id,
                position,
                &TenantDoc::default(),
            )?]
        }
        "EstateNodeCreated" => {
            let created = pb::EstateNodeCreated::decode(payload).map_err(bad)?;
            let Some(kind) = NodeKind::from_proto(created.kind) else {
                tracing::error!(tenant_id = %created.tenant_id, node_id = %created.node_id, kind = created.kind, "estate node of an unknown kind; skipped");
                return Ok(Vec::new());
            };
            let node = NodeDoc {
                kind,
                parent_id: created.parent_id,
                name: created.name,
                closed: false,
                level: LevelDoc::default(),
            };
            let id = node_doc_id(&created.tenant_id, &created.node_id);
            vec![document(id, &created.tenant_id, position, &node)?]
        }
        "EstateNodeRenamed" => {
            let renamed = pb::EstateNodeRenamed::decode(payload).map_err(bad)?;
            let id = node_doc_id(&renamed.tenant_id, &renamed.node_id);
            update(
                view,
                overlay,
                &renamed.tenant_id,
                id,
                position,
                |node: &mut NodeDoc| {
                    node.name = renamed.new_name;
                },
            )
            .await?
        }
        "EstateNodeClosed" => {
            let closed = pb::EstateNodeClosed::decode(payload).map_err(bad)?;
            let id = node_doc_id(&closed.tenant_id, &closed.node_id);
            update(
                view,
                overlay,
                &closed.tenant_id,
                id,
                position,
                |node: &mut NodeDoc| {
                    node.closed = true;
                },
            )
            .await?
        }
        "TerminalBound" => {
            let bound = pb::TerminalBound::decode(payload).map_err(bad)?;
            let kind = match pb::TerminalKind::try_from(bound.kind) {
                Ok(pb::TerminalKind::Ped) => TerminalKind::Ped,
                Ok(pb::TerminalKind::Softpos) => TerminalKind::SoftPos,
                _ => {
                    // terminal-management's model skips it: it has no parameters there.
                    tracing::error!(tenant_id = %bound.tenant_id, terminal_id = %bound.terminal_id, kind = bound.kind, "terminal of an unknown kind; skipped");
                    return Ok(Vec::new());
                }
            };
            let terminal = TerminalDoc {
                kind,
                status: TerminalStatus::Bound,
                parent_id: bound.parent_id,
                placed: position,
                level: LevelDoc::default(),
            };
            let id = terminal_doc_id(&bound.tenant_id, &bound.terminal_id);
            vec![document(id, &bound.tenant_id, position, &terminal)?]
        }
        "TerminalMoved" => {
            let moved = pb::TerminalMoved::decode(payload).map_err(bad)?;
            let id = terminal_doc_id(&moved.tenant_id, &moved.terminal_id);
            update(
                view,
                overlay,
                &moved.tenant_id,
                id,
                position,
                |terminal: &mut TerminalDoc| {
                    terminal.parent_id = moved.new_parent_id;
                    terminal.placed = position;
                },
            )
            .await?
        }
        "TerminalActivated" => {
            let event = pb::TerminalActivated::decode(payload).map_err(bad)?;
            status(event.tenant_id, event.terminal_id, TerminalStatus::Active).await?
        }
        "TerminalSuspended" => {
            let event = pb::TerminalSuspended::decode(payload).map_err(bad)?;
            status(
                event.tenant_id,
                event.terminal_id,
                TerminalStatus::Suspended,
            )
            .await?
        }
        "TerminalResumed" => {
            let event = pb::TerminalResumed::decode(payload).map_err(bad)?;
            status(event.tenant_id, event.terminal_id, TerminalStatus::Active).await?
        }
        "TerminalBlacklisted" => {
            let event = pb::TerminalBlacklisted::decode(payload).map_err(bad)?;
            status(
                event.tenant_id,
                event.terminal_id,
                TerminalStatus::Blacklisted,
            )
            .await?
        }
        "TerminalSwappedOut" => {
            let event = pb::TerminalSwappedOut::decode(payload).map_err(bad)?;
            status(
                event.tenant_id,
                event.terminal_id,
                TerminalStatus::SwappedOut,
            )
            .await?
        }
        "TerminalDecommissioned" => {
            let event = pb::TerminalDecommissioned::decode(payload).map_err(bad)?;
            status(
                event.tenant_id,
                event.terminal_id,
                TerminalStatus::Decommissioned,
            )
            .await?
        }
        "ParametersSet" => {
            let set = pb::ParametersSet::decode(payload).map_err(bad)?;
            let level = LevelDoc {
                parameters: set.parameters.unwrap_or_default(),
                changed: position,
            };
            if let Err(error) = tms_params::validate(&level.parameters) {
                // Kept as written: the terminals below refuse it when they resolve.
                tracing::error!(tenant_id = %set.tenant_id, node_id = %set.node_id, %error, "parameters set that does not validate; terminals below will refuse it");
            }
            let tenant_id = set.tenant_id;
            match Target::of(set.level, &envelope.aggregate_type) {
                Some(Target::Tenant) => {
                    let id = tenant_doc_id(&tenant_id);
                    update(
                        view,
                        overlay,
                        &tenant_id,
                        id,
                        position,
                        |tenant: &mut TenantDoc| {
                            tenant.level = level;
                        },
                    )
                    .await?
                }
                Some(Target::Node) => {
                    let id = node_doc_id(&tenant_id, &set.node_id);
                    update(
                        view,
                        overlay,
                        &tenant_id,
                        id,
                        position,
                        |node: &mut NodeDoc| {
                            node.level = level;
                        },
                    )
                    .await?
                }
                Some(Target::Terminal) => {
                    let id = terminal_doc_id(&tenant_id, &set.node_id);
                    update(
                        view,
                        overlay,
                        &tenant_id,
                        id,
                        position,
                        |terminal: &mut TerminalDoc| terminal.level = level,
                    )
                    .await?
                }
                None => {
                    tracing::error!(%tenant_id, node_id = %set.node_id, level = set.level, "parameters set at an unknown level; skipped");
                    Vec::new()
                }
            }
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tms_params::{Field, FieldPath};

    use super::*;
    use crate::testing::{envelope, sqlite};
    use crate::tms::{TmsView, tms_documents};

    const PROJECTION: &str = "estate-test";
    const CONSUMER: &str = "estate-test-feed";

    /// Applies the events as one batch (each reads what the ones before it wrote) and commits
    /// the documents.
    async fn apply_all(view: &EstateView, store: &EventStore, events: &[EventEnvelope]) {
        let mut overlay = Overlay::new();
        for event in events {
            for document in estate_documents(view, &overlay, event).await.unwrap() {
                overlay.insert(document.id.clone(), document);
            }
        }
        let documents: Vec<Document> = overlay.into_values().collect();
        let from = store.consumer_position(CONSUMER).await.unwrap();
        let to = events.last().map_or(from, |event| event.global_position);
        store
            .commit_documents(PROJECTION, &documents, CONSUMER, from, to)
            .await
            .unwrap();
    }

    /// terminal-management's events at increasing positions.
    #[derive(Default)]
    struct Log {
        position: u64,
    }

    impl Log {
        fn next(
            &mut self,
            tenant_id: &str,
            name: &str,
            payload: impl prost::Message,
        ) -> EventEnvelope {
            self.position += 1;
            envelope(
                self.position,
                tenant_id,
                "aggregate",
                &format!("{TYPE_PREFIX}{name}"),
                payload.encode_to_vec(),
            )
        }

        fn tenant(&mut self, tenant_id: &str) -> EventEnvelope {
            let created = pb::TenantCreated {
                tenant_id: tenant_id.to_owned(),
                name: tenant_id.to_owned(),
            };
            self.next(tenant_id, "TenantCreated", created)
        }

        fn node(
            &mut self,
            tenant_id: &str,
            node_id: &str,
            kind: pb::NodeKind,
            parent_id: &str,
        ) -> EventEnvelope {
            let created = pb::EstateNodeCreated {
                tenant_id: tenant_id.to_owned(),
                node_id: node_id.to_owned(),
                kind: kind.into(),
                parent_id: parent_id.to_owned(),
                name: format!("{node_id} name"),
            };
            self.next(tenant_id, "EstateNodeCreated", created)
        }

        fn bound(&mut self, tenant_id: &str, terminal_id: &str, parent_id: &str) -> EventEnvelope {
            let bound = pb::TerminalBound {
                tenant_id: tenant_id.to_owned(),
                terminal_id: terminal_id.to_owned(),
                kind: pb::TerminalKind::Softpos.into(),
                parent_id: parent_id.to_owned(),
                ..pb::TerminalBound::default()
            };
            self.next(tenant_id, "TerminalBound", bound)
        }

        fn moved(
            &mut self,
            tenant_id: &str,
            terminal_id: &str,
            from: &str,
            to: &str,
        ) -> EventEnvelope {
            let moved = pb::TerminalMoved {
                tenant_id: tenant_id.to_owned(),
                terminal_id: terminal_id.to_owned(),
                old_parent_id: from.to_owned(),
                new_parent_id: to.to_owned(),
            };
            self.next(tenant_id, "TerminalMoved", moved)
        }

        fn parameters(
            &mut self,
            tenant_id: &str,
            level: pb::ParameterLevel,
            node_id: &str,
            parameters: pb::RiskParameters,
        ) -> EventEnvelope {
            let set = pb::ParametersSet {
                tenant_id: tenant_id.to_owned(),
                level: level.into(),
                node_id: node_id.to_owned(),
                parameters: Some(parameters),
            };
            self.next(tenant_id, "ParametersSet", set)
        }
    }

    fn range(low: &str, high: &str) -> pb::BinRange {
        pb::BinRange {
            low: low.to_owned(),
            high: high.to_owned(),
        }
    }

    fn floor(currency: &str, amount: u64) -> Vec<pb::FloorLimit> {
        vec![pb::FloorLimit {
            currency: currency.to_owned(),
            amount,
        }]
    }

    /// A complete set, as a tenant would set it.
    fn tenant_parameters() -> pb::RiskParameters {
        pb::RiskParameters {
            floor_limits: floor("EUR", 5000),
            terminal_action_codes: Some(pb::TerminalActionCodes {
                denial: Some("0010000000".to_owned()),
                online: Some("FC50BCF800".to_owned()),
                default_code: Some("FC50BCA000".to_owned()),
            }),
            merchant_category_code: Some("5411".to_owned()),
            transaction_currency: Some("EUR".to_owned()),
            terminal_country_code: Some("276".to_owned()),
            contactless_transaction_limit: Some(15000),
            contactless_floor_limit: Some(5000),
            blocked_bin_ranges: vec![range("400000", "400099")],
            ..pb::RiskParameters::default()
        }
    }

    fn source(effective: &Effective, path: impl Into<FieldPath>) -> (LevelKind, String) {
        let source = effective.source(&path.into()).unwrap();
        (source.level, source.node_id.to_owned())
    }

    fn values(effective: &Effective) -> pb::RiskParameters {
        effective.to_proto().values.unwrap()
    }

    /// acme: m-1 → s-1 → g-1 → t-1, and s-2 (m-1) → t-2; parameters at every level of t-1.
    /// Returns the log (positions 1 to 14).
    async fn acme(view: &EstateView, store: &EventStore) -> Log {
        use pb::{NodeKind as K, ParameterLevel as P};
        let mut log = Log::default();
        let token = vec![0xab; 32];
        let events = vec![
            log.tenant("acme"),                                             // 1
            log.node("acme", "m-1", K::Merchant, ""),                       // 2
            log.node("acme", "s-1", K::Store, "m-1"),                       // 3
            log.node("acme", "g-1", K::TerminalGroup, "s-1"),               // 4
            log.node("acme", "s-2", K::Store, "m-1"),                       // 5
            log.bound("acme", "t-1", "g-1"),                                // 6
            log.parameters("acme", P::Tenant, "acme", tenant_parameters()), // 7
            log.parameters(
                "acme",
                P::Merchant,
                "m-1",
                pb::RiskParameters {
                    contactless_transaction_limit: Some(10000),
                    ..pb::RiskParameters::default()
                },
            ), // 8
            log.parameters(
                "acme",
                P::Store,
                "s-1",
                pb::RiskParameters {
                    floor_limits: floor("EUR", 3000),
                    blocked_bin_ranges: vec![range("510000", "510999")],
                    ..pb::RiskParameters::default()
                },
            ), // 9
            log.parameters(
                "acme",
                P::TerminalGroup,
                "g-1",
                pb::RiskParameters {
                    // A set empty allow-list: "no allow-list", unlike an unset one.
                    allowed_bin_ranges: Some(pb::BinRangeList::default()),
                    blocked_bin_ranges: vec![range("400000", "400099")],
                    blocked_card_tokens: vec![token],
                    ..pb::RiskParameters::default()
                },
            ), // 10
            log.parameters(
                "acme",
                P::Terminal,
                "t-1",
                pb::RiskParameters {
                    merchant_category_code: Some("5812".to_owned()),
                    ..pb::RiskParameters::default()
                },
            ), // 11
            log.bound("acme", "t-2", "s-2"),                                // 12
            log.parameters(
                "acme",
                P::Store,
                "s-2",
                pb::RiskParameters {
                    merchant_category_code: Some("5999".to_owned()),
                    ..pb::RiskParameters::default()
                },
            ), // 13
            log.next(
                "acme",
                "TerminalActivated",
                pb::TerminalActivated {
                    tenant_id: "acme".to_owned(),
                    terminal_id: "t-1".to_owned(),
                    ..pb::TerminalActivated::default()
                },
            ), // 14
        ];
        // One batch: every event reads what the ones before it wrote.
        apply_all(view, store, &events).await;
        log
    }

    #[tokio::test]
    async fn a_terminal_resolves_down_its_path_like_terminal_management() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let view = EstateView::new(store.clone(), PROJECTION);
        acme(&view, &store).await;

        let t1 = view.terminal_estate("acme", "t-1").await.unwrap().unwrap();
        assert_eq!(
            (t1.kind, t1.status),
            (TerminalKind::SoftPos, TerminalStatus::Active)
        );
        assert_eq!(
            (
                t1.merchant_id.as_str(),
                t1.store_id.as_str(),
                t1.terminal_group_id.as_deref()
            ),
            ("m-1", "s-1", Some("g-1"))
        );
        assert!(!t1.closed);
        let path: Vec<(LevelKind, &str)> = t1
            .levels
            .iter()
            .map(|(kind, node_id, _)| (*kind, node_id.as_str()))
            .collect();
        assert_eq!(
            path,
            vec![
                (LevelKind::Tenant, "acme"),
                (LevelKind::Merchant, "m-1"),
                (LevelKind::Store, "s-1"),
                (LevelKind::TerminalGroup, "g-1"),
                (LevelKind::Terminal, "t-1"),
            ]
        );
        // The latest parameter change on the path: the terminal's own, at 11 (the terminal
        // was bound at 6; s-2's change at 13 and the activation at 14 are not on it).
        assert_eq!(t1.version, 11);

        let effective = t1.effective().unwrap();
        let resolved = values(&effective);
        // The deepest level that sets a value wins.
        assert_eq!(resolved.merchant_category_code.as_deref(), Some("5812"));
        assert_eq!(
            source(&effective, Field::MerchantCategoryCode),
            (LevelKind::Terminal, "t-1".to_owned())
        );
        assert_eq!(resolved.floor_limits, floor("EUR", 3000));
        assert_eq!(resolved.contactless_transaction_limit, Some(10000));
        assert_eq!(
            source(&effective, Field::ContactlessTransactionLimit),
            (LevelKind::Merchant, "m-1".to_owned())
        );
        assert_eq!(resolved.contactless_floor_limit, Some(5000));
        assert_eq!(resolved.transaction_currency.as_deref(), Some("EUR"));
        assert_eq!(
            resolved.allowed_bin_ranges,
            Some(pb::BinRangeList::default())
        );
        // Blocked lists accumulate; an entry's source is the root-most level blocking it.
        assert_eq!(
            resolved.blocked_bin_ranges,
            vec![range("400000", "400099"), range("510000", "510999")]
        );
        assert_eq!(resolved.blocked_card_tokens, vec![vec![0xab; 32]]);
        let sources = effective.to_proto().sources;
        let range_source = sources
            .iter()
            .find(|source| source.field == "blocked_bin_ranges[400000-400099]")
            .unwrap();
        assert_eq!(range_source.level, i32::from(pb::ParameterLevel::Tenant));

        // The same as resolving the stored sets directly.
        let expected = {
            let sets: Vec<RiskParameters> = t1
                .levels
                .iter()
                .map(|(_, _, parameters)| parameters.clone())
                .collect();
            let levels: Vec<Level<'_>> = t1
                .levels
                .iter()
                .zip(&sets)
                .map(|((kind, node_id, _), parameters)| Level {
                    kind: *kind,
                    node_id,
                    parameters,
                })
                .collect();
            tms_params::resolve(&levels).unwrap()
        };
        assert_eq!(effective, expected);

        // t-2: directly in store s-2, no group; bound at 12, s-2's change at 13.
        let t2 = view.terminal_estate("acme", "t-2").await.unwrap().unwrap();
        assert_eq!(
            (
                t2.merchant_id.as_str(),
                t2.store_id.as_str(),
                t2.terminal_group_id.as_deref(),
                t2.status
            ),
            ("m-1", "s-2", None, TerminalStatus::Bound)
        );
        assert_eq!(t2.version, 13);
        let effective = t2.effective().unwrap();
        assert_eq!(
            values(&effective).merchant_category_code.as_deref(),
            Some("5999")
        );
        assert_eq!(
            values(&effective).blocked_bin_ranges,
            vec![range("400000", "400099")]
        );
    }

    #[tokio::test]
    async fn versions_follow_the_changes_on_the_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let view = EstateView::new(store.clone(), PROJECTION);
        let mut log = acme(&view, &store).await;
        let version = |terminal_id: &'static str| {
            let view = view.clone();
            async move {
                view.terminal_estate("acme", terminal_id)
                    .await
                    .unwrap()
                    .unwrap()
                    .version
            }
        };

        // A later batch, read from the store: the group's change is on t-1's path only.
        let group = log.parameters(
            "acme",
            pb::ParameterLevel::TerminalGroup,
            "g-1",
            pb::RiskParameters::default(),
        ); // 15: clears g-1
        let renamed = log.next(
            "acme",
            "EstateNodeRenamed",
            pb::EstateNodeRenamed {
                tenant_id: "acme".to_owned(),
                node_id: "s-1".to_owned(),
                old_name: "s-1 name".to_owned(),
                new_name: "Main street".to_owned(),
            },
        ); // 16
        let suspended = log.next(
            "acme",
            "TerminalSuspended",
            pb::TerminalSuspended {
                tenant_id: "acme".to_owned(),
                terminal_id: "t-1".to_owned(),
                reason: "lost".to_owned(),
            },
        ); // 17
        apply_all(&view, &store, &[group, renamed, suspended]).await;
        assert_eq!(version("t-1").await, 15, "an emptied level is a change too");
        assert_eq!(version("t-2").await, 13);
        let t1 = view.terminal_estate("acme", "t-1").await.unwrap().unwrap();
        assert_eq!(t1.status, TerminalStatus::Suspended);
        let resolved = values(&t1.effective().unwrap());
        // g-1's token and allow-list are gone; the range it repeated stays (the tenant's).
        assert!(resolved.blocked_card_tokens.is_empty());
        assert_eq!(resolved.allowed_bin_ranges, None);
        assert_eq!(
            resolved.blocked_bin_ranges,
            vec![range("400000", "400099"), range("510000", "510999")]
        );

        // A tenant change reaches every terminal.
        let tenant = log.parameters(
            "acme",
            pb::ParameterLevel::Tenant,
            "acme",
            pb::RiskParameters {
                terminal_country_code: Some("250".to_owned()),
                ..tenant_parameters()
            },
        ); // 18
        apply_all(&view, &store, &[tenant]).await;
        assert_eq!(version("t-1").await, 18);
        assert_eq!(version("t-2").await, 18);
    }

    #[tokio::test]
    async fn a_move_changes_the_place_the_parameters_and_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let view = EstateView::new(store.clone(), PROJECTION);
        let mut log = acme(&view, &store).await;
        let events = vec![
            log.node("acme", "m-2", pb::NodeKind::Merchant, ""), // 15
            log.node("acme", "s-3", pb::NodeKind::Store, "m-2"), // 16
            log.parameters(
                "acme",
                pb::ParameterLevel::Store,
                "s-3",
                pb::RiskParameters {
                    floor_limits: floor("EUR", 2000),
                    ..pb::RiskParameters::default()
                },
            ), // 17
        ];
        apply_all(&view, &store, &events).await;
        assert_eq!(
            view.terminal_estate("acme", "t-1")
                .await
                .unwrap()
                .unwrap()
                .version,
            11,
            "not on its path yet"
        );

        let moved = log.moved("acme", "t-1", "g-1", "s-3"); // 18
        apply_all(&view, &store, &[moved]).await;
        let t1 = view.terminal_estate("acme", "t-1").await.unwrap().unwrap();
        assert_eq!(
            (
                t1.merchant_id.as_str(),
                t1.store_id.as_str(),
                t1.terminal_group_id.as_deref()
            ),
            ("m-2", "s-3", None)
        );
        assert_eq!(t1.version, 18);
        let effective = t1.effective().unwrap();
        let resolved = values(&effective);
        // Its own MCC moves with it; the rest comes from its new path.
        assert_eq!(resolved.merchant_category_code.as_deref(), Some("5812"));
        assert_eq!(resolved.floor_limits, floor("EUR", 2000));
        assert_eq!(resolved.contactless_transaction_limit, Some(15000));
        assert_eq!(
            source(&effective, Field::ContactlessTransactionLimit),
            (LevelKind::Tenant, "acme".to_owned())
        );
        assert_eq!(resolved.blocked_bin_ranges, vec![range("400000", "400099")]);
        assert!(resolved.blocked_card_tokens.is_empty());

        // Its old store is no longer on its path; its new merchant is.
        let old = log.parameters(
            "acme",
            pb::ParameterLevel::Store,
            "s-1",
            pb::RiskParameters::default(),
        ); // 19
        apply_all(&view, &store, &[old]).await;
        assert_eq!(
            view.terminal_estate("acme", "t-1")
                .await
                .unwrap()
                .unwrap()
                .version,
            18
        );
        let new = log.parameters(
            "acme",
            pb::ParameterLevel::Merchant,
            "m-2",
            pb::RiskParameters {
                contactless_transaction_limit: Some(8000),
                ..pb::RiskParameters::default()
            },
        ); // 20
        apply_all(&view, &store, &[new]).await;
        let t1 = view.terminal_estate("acme", "t-1").await.unwrap().unwrap();
        assert_eq!(t1.version, 20);
        assert_eq!(
            values(&t1.effective().unwrap()).contactless_transaction_limit,
            Some(8000)
        );
    }

    #[tokio::test]
    async fn a_closed_node_is_shown_and_changes_no_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let view = EstateView::new(store.clone(), PROJECTION);
        let mut log = acme(&view, &store).await;
        let decommissioned = log.next(
            "acme",
            "TerminalDecommissioned",
            pb::TerminalDecommissioned {
                tenant_id: "acme".to_owned(),
                terminal_id: "t-2".to_owned(),
                reason: "retired".to_owned(),
            },
        ); // 15
        let closed = log.next(
            "acme",
            "EstateNodeClosed",
            pb::EstateNodeClosed {
                tenant_id: "acme".to_owned(),
                node_id: "s-2".to_owned(),
                reason: "shop closed".to_owned(),
            },
        ); // 16
        apply_all(&view, &store, &[decommissioned, closed]).await;

        let t2 = view.terminal_estate("acme", "t-2").await.unwrap().unwrap();
        assert!(t2.closed);
        assert_eq!(t2.status, TerminalStatus::Decommissioned);
        assert_eq!(t2.version, 13);
        // Still resolvable, as terminal-management answers it.
        assert!(t2.effective().is_ok());
        let t1 = view.terminal_estate("acme", "t-1").await.unwrap().unwrap();
        assert!(!t1.closed);
    }

    #[tokio::test]
    async fn another_tenants_estate_is_not_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let view = EstateView::new(store.clone(), PROJECTION);
        let mut log = acme(&view, &store).await;
        // globex uses the same node and terminal ids.
        let events = vec![
            log.tenant("globex"),
            log.node("globex", "m-1", pb::NodeKind::Merchant, ""),
            log.node("globex", "s-1", pb::NodeKind::Store, "m-1"),
            log.bound("globex", "t-1", "s-1"),
            log.parameters(
                "globex",
                pb::ParameterLevel::Store,
                "s-1",
                pb::RiskParameters {
                    merchant_category_code: Some("7011".to_owned()),
                    ..pb::RiskParameters::default()
                },
            ),
        ];
        let globex_store_change = log.position;
        apply_all(&view, &store, &events).await;

        let acme_t1 = view.terminal_estate("acme", "t-1").await.unwrap().unwrap();
        assert_eq!(acme_t1.version, 11);
        assert_eq!(acme_t1.terminal_group_id.as_deref(), Some("g-1"));
        let globex_t1 = view
            .terminal_estate("globex", "t-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(globex_t1.version, globex_store_change);
        assert_eq!(globex_t1.terminal_group_id, None);
        // globex sets no tenant parameters: acme's do not leak into it.
        let missing = globex_t1.effective().unwrap_err();
        assert!(missing.contains("transaction_currency"), "{missing}");
        assert_eq!(view.terminal_estate("globex", "t-2").await.unwrap(), None);
        assert_eq!(view.terminal_estate("other", "t-1").await.unwrap(), None);

        // Every document is its tenant's.
        for tenant_id in ["acme", "globex"] {
            let documents = store
                .list_documents(PROJECTION, Some(tenant_id))
                .await
                .unwrap();
            assert!(!documents.is_empty());
            for document in documents {
                assert!(
                    document
                        .id
                        .starts_with(&format!("estate-tenant/{tenant_id}"))
                        || document
                            .id
                            .starts_with(&format!("estate-node/{tenant_id}/"))
                        || document
                            .id
                            .starts_with(&format!("estate-terminal/{tenant_id}/")),
                    "{}",
                    document.id
                );
            }
        }
        assert!(
            store
                .list_documents(PROJECTION, Some(""))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn missing_invalid_and_inconsistent_parameters_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let view = EstateView::new(store.clone(), PROJECTION);
        let mut log = Log::default();
        let events = vec![
            log.tenant("bare"),
            log.node("bare", "m-1", pb::NodeKind::Merchant, ""),
            log.node("bare", "s-1", pb::NodeKind::Store, "m-1"),
            log.bound("bare", "t-1", "s-1"),
        ];
        apply_all(&view, &store, &events).await;
        let effective = |view: &EstateView| {
            let view = view.clone();
            async move {
                view.terminal_estate("bare", "t-1")
                    .await
                    .unwrap()
                    .unwrap()
                    .effective()
            }
        };
        assert_eq!(
            effective(&view).await.unwrap_err(),
            "terminal_action_codes.denial, terminal_action_codes.online, \
             terminal_action_codes.default_code, merchant_category_code, \
             transaction_currency, terminal_country_code"
        );

        // A currency without its floor limit.
        let partial = log.parameters(
            "bare",
            pb::ParameterLevel::Tenant,
            "bare",
            pb::RiskParameters {
                floor_limits: Vec::new(),
                terminal_country_code: None,
                ..tenant_parameters()
            },
        );
        apply_all(&view, &store, &[partial]).await;
        assert_eq!(
            effective(&view).await.unwrap_err(),
            "terminal_country_code, floor_limits[EUR]"
        );

        // A combination no level breaks alone: the store's contactless floor limit above
        // the tenant's contactless limit.
        let complete = log.parameters(
            "bare",
            pb::ParameterLevel::Tenant,
            "bare",
            tenant_parameters(),
        );
        let store_floor = log.parameters(
            "bare",
            pb::ParameterLevel::Store,
            "s-1",
            pb::RiskParameters {
                contactless_floor_limit: Some(20000),
                ..pb::RiskParameters::default()
            },
        );
        apply_all(&view, &store, &[complete, store_floor]).await;
        let inconsistent = effective(&view).await.unwrap_err();
        assert!(
            inconsistent.starts_with("contactless_floor_limit (set at store s-1)"),
            "{inconsistent}"
        );

        // A stored set that does not validate (never written by terminal-management, but a
        // rule may tighten): an error naming the level, not a panic, not a silent gap.
        let invalid = log.parameters(
            "bare",
            pb::ParameterLevel::Store,
            "s-1",
            pb::RiskParameters {
                merchant_category_code: Some("54".to_owned()),
                blocked_bin_ranges: vec![range("510999", "510000")],
                ..pb::RiskParameters::default()
            },
        );
        apply_all(&view, &store, &[invalid]).await;
        let estate = view.terminal_estate("bare", "t-1").await.unwrap().unwrap();
        let error = estate.effective().unwrap_err();
        assert!(error.starts_with("store s-1: "), "{error}");
        assert_eq!(estate.version, log.position);
        let (_, _, listed) = &estate.levels[2];
        assert_eq!(listed, &RiskParameters::default());
    }

    #[tokio::test]
    async fn other_events_change_nothing_and_ids_do_not_collide_with_tms_documents() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let view = EstateView::new(store.clone(), PROJECTION);
        let tms = TmsView::new(
            store.clone(),
            device_identity::TrustStore::new(),
            PROJECTION,
        );
        let mut log = Log::default();
        let events = [
            log.tenant("acme"),
            log.node("acme", "m-1", pb::NodeKind::Merchant, ""),
            log.node("acme", "s-1", pb::NodeKind::Store, "m-1"),
            log.bound("acme", "t-1", "s-1"),
            log.parameters(
                "acme",
                pb::ParameterLevel::Tenant,
                "acme",
                tenant_parameters(),
            ),
            // Unknown to this step, or another service's.
            log.next("acme", "Unknown", pb::TenantCreated::default()),
            envelope(99, "acme", "x", "mpos.other.v1.TenantCreated", Vec::new()),
            // About a terminal nobody bound.
            log.moved("acme", "ghost", "s-1", "s-1"),
        ];
        // Both steps in one projection, as a service keeping both would run them.
        let mut overlay = Overlay::new();
        let (mut estate_ids, mut tms_ids) = (Vec::new(), Vec::new());
        for (index, event) in events.iter().enumerate() {
            let estate = estate_documents(&view, &overlay, event).await.unwrap();
            if index >= 5 {
                assert!(estate.is_empty(), "{}", event.event_type);
            }
            let tms = tms_documents(&tms, &overlay, event).await.unwrap();
            for document in estate {
                estate_ids.push(document.id.clone());
                overlay.insert(document.id.clone(), document);
            }
            for document in tms {
                tms_ids.push(document.id.clone());
                overlay.insert(document.id.clone(), document);
            }
        }
        assert_eq!(estate_ids.len(), 5, "{estate_ids:?}");
        assert!(!tms_ids.is_empty());
        assert!(estate_ids.iter().all(|id| id.starts_with("estate-")));
        assert!(estate_ids.iter().all(|id| !tms_ids.contains(id)));
    }

    #[test]
    fn level_documents_keep_the_canonical_set_exactly() {
        let level = LevelDoc {
            parameters: pb::RiskParameters {
                allowed_bin_ranges: Some(pb::BinRangeList::default()),
                blocked_card_tokens: vec![vec![0x01; 32], vec![0xfe; 32]],
                random_selection: Some(pb::RandomSelection {
                    threshold: Some(0),
                    ..pb::RandomSelection::default()
                }),
                cvm_required_limit: Some(u64::MAX),
                ..tenant_parameters()
            },
            changed: 42,
        };
        let json = serde_json::to_string(&level).unwrap();
        let read: LevelDoc = serde_json::from_str(&json).unwrap();
        assert_eq!(read, level);
        // Documents written before a level was ever set read as "nothing set".
        let node: NodeDoc =
            serde_json::from_str(r#"{"kind":"store","parent_id":"m-1","name":"","closed":false}"#)
                .unwrap();
        assert_eq!(node.level, LevelDoc::default());
    }
}
