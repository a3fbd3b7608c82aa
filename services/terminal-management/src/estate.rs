//! The estate node aggregate: a tenant's merchants, stores and terminal groups. Pure domain
//! logic; whether a parent exists and is open is checked by the caller against the read
//! model and handed in with the command.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::terminal_management as pb;
use serde::{Deserialize, Serialize};

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "estate_node";

/// The id of a node or a terminal within a tenant: 1 to 64 characters of ASCII letters,
/// digits, `.`, `_` and `-`, starting with a letter or digit (providers use their own
/// merchant numbers and terminal ids).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EstateId(String);

impl EstateId {
    /// Validates an id; `field` names it in the error.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, EstateError> {
        let valid = (1..=64).contains(&value.len())
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(EstateError::InvalidId(field))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EstateId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The aggregate id of a tenant's node or terminal: ids are unique within a tenant only.
pub fn aggregate_id(tenant_id: &str, id: &EstateId) -> String {
    format!("{tenant_id}/{id}")
}

/// The level of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeKind {
    /// Directly under the tenant.
    Merchant,
    /// Under a merchant.
    Store,
    /// Under a store.
    TerminalGroup,
}

impl NodeKind {
    /// From the API's enum; unspecified is an error.
    pub fn from_proto(value: i32) -> Result<Self, EstateError> {
        match pb::NodeKind::try_from(value) {
            Ok(pb::NodeKind::Merchant) => Ok(Self::Merchant),
            Ok(pb::NodeKind::Store) => Ok(Self::Store),
            Ok(pb::NodeKind::TerminalGroup) => Ok(Self::TerminalGroup),
            _ => Err(EstateError::InvalidKind),
        }
    }

    /// The API's enum.
    pub fn to_proto(self) -> pb::NodeKind {
        match self {
            Self::Merchant => pb::NodeKind::Merchant,
            Self::Store => pb::NodeKind::Store,
            Self::TerminalGroup => pb::NodeKind::TerminalGroup,
        }
    }

    /// The kind a parent of this kind must have (`None`: the tenant itself).
    pub fn parent_kind(self) -> Option<Self> {
        match self {
            Self::Merchant => None,
            Self::Store => Some(Self::Merchant),
            Self::TerminalGroup => Some(Self::Store),
        }
    }

    /// Lowercase name, for messages and provenance.
    pub fn name(self) -> &'static str {
        match self {
            Self::Merchant => "merchant",
            Self::Store => "store",
            Self::TerminalGroup => "terminal_group",
        }
    }
}

/// A display name: 1 to 100 characters after trimming, no control characters.
pub fn parse_name(value: &str) -> Result<String, EstateError> {
    let trimmed = value.trim();
    if (1..=100).contains(&trimmed.chars().count()) && !trimmed.chars().any(char::is_control) {
        Ok(trimmed.to_owned())
    } else {
        Err(EstateError::InvalidName)
    }
}

/// A reason for the audit trail: 1 to 500 characters after trimming.
pub fn parse_reason(value: &str) -> Result<String, EstateError> {
    let trimmed = value.trim();
    if (1..=500).contains(&trimmed.chars().count()) && !trimmed.chars().any(char::is_control) {
        Ok(trimmed.to_owned())
    } else {
        Err(EstateError::InvalidReason)
    }
}

/// Hex SHA-256 of a partial parameter set's encoding: what an aggregate keeps to see whether
/// a new set changes anything.
pub fn parameters_digest(parameters: &pb::RiskParameters) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(prost::Message::encode_to_vec(
        parameters,
    )))
}

/// Why an estate command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EstateError {
    /// An id does not follow the rules.
    #[error(
        "{0} must be 1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"
    )]
    InvalidId(&'static str),
    /// The node kind is missing or unknown.
    #[error("kind must be NODE_KIND_MERCHANT, NODE_KIND_STORE or NODE_KIND_TERMINAL_GROUP")]
    InvalidKind,
    /// The name does not follow the rules.
    #[error("name must be 1 to 100 characters without control characters")]
    InvalidName,
    /// The reason does not follow the rules.
    #[error("reason must be 1 to 500 characters without control characters")]
    InvalidReason,
    /// The parent is missing where one is needed, or given for a merchant.
    #[error("{0}")]
    InvalidParent(String),
    /// Create on an existing node.
    #[error("estate node already exists")]
    AlreadyExists,
    /// A command on a node that does not exist (or belongs to another tenant).
    #[error("estate node not found")]
    NotFound,
    /// A change to a closed node.
    #[error("estate node is closed")]
    Closed,
    /// Close on a node that still has open children or live terminals.
    #[error("estate node still has {0}; close or move them first")]
    NotEmpty(String),
}

impl From<EstateError> for ServiceError {
    fn from(error: EstateError) -> Self {
        let message = error.to_string();
        match error {
            EstateError::InvalidId(_)
            | EstateError::InvalidKind
            | EstateError::InvalidName
            | EstateError::InvalidReason
            | EstateError::InvalidParent(_) => ServiceError::bad_request(message),
            EstateError::AlreadyExists => ServiceError::already_exists(message),
            EstateError::NotFound => ServiceError::not_found(message),
            EstateError::Closed | EstateError::NotEmpty(_) => ServiceError::conflict(message),
        }
    }
}

/// The parent of a new node as the read model found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentNode {
    /// Its id.
    pub id: EstateId,
    /// Its kind.
    pub kind: NodeKind,
    /// Whether it is closed.
    pub closed: bool,
}

/// What can be asked of an estate node.
// A command lives for one request: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum NodeCommand {
    /// Create a node.
    Create {
        /// The tenant.
        tenant_id: String,
        /// The node's id.
        node_id: EstateId,
        /// Its level.
        kind: NodeKind,
        /// Its parent as found in the read model (`None` for a merchant).
        parent: Option<ParentNode>,
        /// Its display name.
        name: String,
    },
    /// Change the display name.
    Rename {
        /// The new name.
        name: String,
    },
    /// Replace the parameters set at this node (validated, canonical, and checked in
    /// combination with every level above and below by the caller).
    SetParameters {
        /// The new partial set of this level.
        parameters: pb::RiskParameters,
    },
    /// Close the node; the caller states what still lives below it.
    Close {
        /// Why.
        reason: String,
        /// Open children and live terminals below it, as the read model counts them.
        open_children: usize,
        /// Live terminals directly below it.
        live_terminals: usize,
    },
}

mpos_es::proto_events! {
    /// Events of the estate node aggregate.
    pub enum NodeEvent {
        /// Created.
        Created(pb::EstateNodeCreated) = "mpos.terminal_management.v1.EstateNodeCreated",
        /// Renamed.
        Renamed(pb::EstateNodeRenamed) = "mpos.terminal_management.v1.EstateNodeRenamed",
        /// Closed.
        Closed(pb::EstateNodeClosed) = "mpos.terminal_management.v1.EstateNodeClosed",
        /// Parameters replaced.
        ParametersSet(pb::ParametersSet) = "mpos.terminal_management.v1.ParametersSet",
    }
}

/// A node's state as its commands need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EstateNode {
    tenant_id: String,
    node_id: Option<String>,
    #[serde(default)]
    kind: Option<NodeKind>,
    name: String,
    closed: bool,
    /// Digest of the parameters set here ("" when none).
    #[serde(default)]
    parameters_sha256: String,
}

impl EstateNode {
    fn decide(&self, command: NodeCommand) -> Result<Vec<NodeEvent>, EstateError> {
        let Some(node_id) = self.node_id.clone() else {
            let NodeCommand::Create {
                tenant_id,
                node_id,
                kind,
                parent,
                name,
            } = command
            else {
                return Err(EstateError::NotFound);
            };
            let parent_id = match (kind.parent_kind(), parent) {
                (None, None) => String::new(),
                (None, Some(_)) => {
                    return Err(EstateError::InvalidParent(
                        "a merchant has no parent: leave parent_id empty".into(),
                    ));
                }
                (Some(expected), None) => {
                    return Err(EstateError::InvalidParent(format!(
                        "parent_id: a {} needs a {} as parent",
                        kind.name(),
                        expected.name()
                    )));
                }
                (Some(expected), Some(parent)) => {
                    if parent.kind != expected {
                        return Err(EstateError::InvalidParent(format!(
                            "parent_id: {} is a {}, a {} needs a {}",
                            parent.id,
                            parent.kind.name(),
                            kind.name(),
                            expected.name()
                        )));
                    }
                    if parent.closed {
                        return Err(EstateError::InvalidParent(format!(
                            "parent_id: {} is closed",
                            parent.id
                        )));
                    }
                    parent.id.0
                }
            };
            return Ok(vec![NodeEvent::Created(pb::EstateNodeCreated {
                tenant_id,
                node_id: node_id.0,
                kind: kind.to_proto().into(),
                parent_id,
                name: parse_name(&name)?,
            })]);
        };
        let tenant_id = self.tenant_id.clone();
        match command {
            NodeCommand::Create { .. } => Err(EstateError::AlreadyExists),
            _ if self.closed => Err(EstateError::Closed),
            NodeCommand::Rename { name } => {
                let new_name = parse_name(&name)?;
                if new_name == self.name {
                    return Ok(Vec::new());
                }
                Ok(vec![NodeEvent::Renamed(pb::EstateNodeRenamed {
                    tenant_id,
                    node_id,
                    old_name: self.name.clone(),
                    new_name,
                })])
            }
            NodeCommand::SetParameters { parameters } => {
                let digest = parameters_digest(&parameters);
                if digest == self.parameters_sha256 {
                    return Ok(Vec::new());
                }
                let level = match self.kind {
                    Some(NodeKind::Merchant) => pb::ParameterLevel::Merchant,
                    Some(NodeKind::Store) => pb::ParameterLevel::Store,
                    Some(NodeKind::TerminalGroup) => pb::ParameterLevel::TerminalGroup,
                    None => pb::ParameterLevel::Unspecified,
                };
                Ok(vec![NodeEvent::ParametersSet(pb::ParametersSet {
                    tenant_id,
                    level: level.into(),
                    node_id,
                    parameters: Some(parameters),
                })])
            }
            NodeCommand::Close {
                reason,
                open_children,
                live_terminals,
            } => {
                let reason = parse_reason(&reason)?;
                if open_children > 0 || live_terminals > 0 {
                    return Err(EstateError::NotEmpty(format!(
                        "{open_children} open child node(s) and {live_terminals} live terminal(s)"
                    )));
                }
                Ok(vec![NodeEvent::Closed(pb::EstateNodeClosed {
                    tenant_id,
                    node_id,
                    reason,
                })])
            }
        }
    }
}

impl Aggregate for EstateNode {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = NodeCommand;
    type Event = NodeEvent;
    type Error = EstateError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            NodeEvent::Created(created) => {
                self.tenant_id = created.tenant_id;
                self.node_id = Some(created.node_id);
                self.kind = NodeKind::from_proto(created.kind).ok();
                self.name = created.name;
            }
            NodeEvent::Renamed(renamed) => self.name = renamed.new_name,
            NodeEvent::Closed(_) => self.closed = true,
            NodeEvent::ParametersSet(set) => {
                self.parameters_sha256 = parameters_digest(&set.parameters.unwrap_or_default());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use mpos_es::ProtoEvent;

    use super::*;

    type Test = TestFramework<EstateNode>;

    fn id(value: &str) -> EstateId {
        EstateId::parse("node_id", value).expect("valid id")
    }

    fn merchant_created() -> NodeEvent {
        NodeEvent::Created(pb::EstateNodeCreated {
            tenant_id: "acme".into(),
            node_id: "m-1".into(),
            kind: pb::NodeKind::Merchant.into(),
            parent_id: String::new(),
            name: "Corner Café".into(),
        })
    }

    fn create(kind: NodeKind, parent: Option<ParentNode>) -> NodeCommand {
        NodeCommand::Create {
            tenant_id: "acme".into(),
            node_id: id("m-1"),
            kind,
            parent,
            name: " Corner Café ".into(),
        }
    }

    fn parent(kind: NodeKind, closed: bool) -> Option<ParentNode> {
        Some(ParentNode {
            id: id("p-1"),
            kind,
            closed,
        })
    }

    #[test]
    fn event_type_names_are_the_protobuf_names() {
        NodeEvent::check_type_names().expect("names");
    }

    #[test]
    fn ids_are_validated() {
        for valid in ["m", "M-1", "store_12.a", "0", &"x".repeat(64)] {
            assert!(EstateId::parse("node_id", valid).is_ok(), "{valid}");
        }
        for invalid in ["", "-a", "a/b", "a b", "é", &"x".repeat(65), ".a"] {
            assert_eq!(
                EstateId::parse("node_id", invalid),
                Err(EstateError::InvalidId("node_id")),
                "{invalid}"
            );
        }
        assert!(
            EstateError::InvalidId("terminal_id")
                .to_string()
                .starts_with("terminal_id must")
        );
    }

    #[test]
    fn a_merchant_sits_under_the_tenant() {
        Test::with(())
            .given_no_previous_events()
            .when(create(NodeKind::Merchant, None))
            .then_expect_events(vec![merchant_created()]);
        Test::with(())
            .given_no_previous_events()
            .when(create(
                NodeKind::Merchant,
                parent(NodeKind::Merchant, false),
            ))
            .then_expect_error(EstateError::InvalidParent(
                "a merchant has no parent: leave parent_id empty".into(),
            ));
    }

    #[test]
    fn stores_need_merchants_and_groups_need_stores() {
        Test::with(())
            .given_no_previous_events()
            .when(create(NodeKind::Store, parent(NodeKind::Merchant, false)))
            .then_expect_events(vec![NodeEvent::Created(pb::EstateNodeCreated {
                tenant_id: "acme".into(),
                node_id: "m-1".into(),
                kind: pb::NodeKind::Store.into(),
                parent_id: "p-1".into(),
                name: "Corner Café".into(),
            })]);
        Test::with(())
            .given_no_previous_events()
            .when(create(NodeKind::Store, None))
            .then_expect_error(EstateError::InvalidParent(
                "parent_id: a store needs a merchant as parent".into(),
            ));
        Test::with(())
            .given_no_previous_events()
            .when(create(
                NodeKind::TerminalGroup,
                parent(NodeKind::Merchant, false),
            ))
            .then_expect_error(EstateError::InvalidParent(
                "parent_id: p-1 is a merchant, a terminal_group needs a store".into(),
            ));
        Test::with(())
            .given_no_previous_events()
            .when(create(
                NodeKind::TerminalGroup,
                parent(NodeKind::Store, true),
            ))
            .then_expect_error(EstateError::InvalidParent(
                "parent_id: p-1 is closed".into(),
            ));
    }

    #[test]
    fn duplicates_and_missing_nodes_are_refused() {
        Test::with(())
            .given(vec![merchant_created()])
            .when(create(NodeKind::Merchant, None))
            .then_expect_error(EstateError::AlreadyExists);
        Test::with(())
            .given_no_previous_events()
            .when(NodeCommand::Rename { name: "x".into() })
            .then_expect_error(EstateError::NotFound);
        Test::with(())
            .given_no_previous_events()
            .when(NodeCommand::Create {
                tenant_id: "acme".into(),
                node_id: id("m-1"),
                kind: NodeKind::Merchant,
                parent: None,
                name: "\u{7}".into(),
            })
            .then_expect_error(EstateError::InvalidName);
    }

    #[test]
    fn rename_records_both_names() {
        Test::with(())
            .given(vec![merchant_created()])
            .when(NodeCommand::Rename {
                name: "Corner Bistro".into(),
            })
            .then_expect_events(vec![NodeEvent::Renamed(pb::EstateNodeRenamed {
                tenant_id: "acme".into(),
                node_id: "m-1".into(),
                old_name: "Corner Café".into(),
                new_name: "Corner Bistro".into(),
            })]);
        Test::with(())
            .given(vec![merchant_created()])
            .when(NodeCommand::Rename {
                name: "Corner Café".into(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn only_an_empty_node_closes_and_a_closed_node_is_frozen() {
        let close = |open_children, live_terminals| NodeCommand::Close {
            reason: "contract ended".into(),
            open_children,
            live_terminals,
        };
        let closed = NodeEvent::Closed(pb::EstateNodeClosed {
            tenant_id: "acme".into(),
            node_id: "m-1".into(),
            reason: "contract ended".into(),
        });
        Test::with(())
            .given(vec![merchant_created()])
            .when(close(0, 0))
            .then_expect_events(vec![closed.clone()]);
        Test::with(())
            .given(vec![merchant_created()])
            .when(close(2, 1))
            .then_expect_error(EstateError::NotEmpty(
                "2 open child node(s) and 1 live terminal(s)".into(),
            ));
        Test::with(())
            .given(vec![merchant_created()])
            .when(NodeCommand::Close {
                reason: " ".into(),
                open_children: 0,
                live_terminals: 0,
            })
            .then_expect_error(EstateError::InvalidReason);
        Test::with(())
            .given(vec![merchant_created(), closed.clone()])
            .when(NodeCommand::Rename { name: "x".into() })
            .then_expect_error(EstateError::Closed);
        Test::with(())
            .given(vec![merchant_created(), closed])
            .when(close(0, 0))
            .then_expect_error(EstateError::Closed);
    }
}
