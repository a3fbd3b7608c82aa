//! The terminal aggregate: a PED or SoftPOS device bound to a tenant, and its lifecycle.
//! Pure domain logic; the caller checks the parent node and the device certificate against
//! the read model and the trust store and hands the results in with the command.
//!
//! ```text
//! bound ──activate──▶ active ──suspend──▶ suspended
//!                       ▲ └──────resume──────┘
//! bound | active | suspended ──blacklist──▶ blacklisted
//! bound | active | suspended ──swap out───▶ swapped out (the replacement carries on)
//! any but decommissioned ──decommission──▶ decommissioned
//! ```

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::terminal_management as pb;
use serde::{Deserialize, Serialize};

use crate::estate::{EstateId, NodeKind, ParentNode, parse_reason};

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "terminal";

/// How the reason of a suspension by the attestation service starts (e.g. `attestation:
/// verdict block (REATTESTATION_MISSED)`): only such a suspension is lifted by a passing
/// verdict ([`TerminalCommand::ResumeAfterAttestation`]). The admin API refuses it at the start
/// of a person's reason, so a person's suspension is never taken for one.
pub const ATTESTATION_SUSPENSION: &str = "attestation:";

/// Whether a suspension reason is the attestation service's (it starts with
/// [`ATTESTATION_SUSPENSION`], in any case, after leading blanks).
pub fn is_attestation_suspension(reason: &str) -> bool {
    reason
        .trim_start()
        .get(..ATTESTATION_SUSPENSION.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(ATTESTATION_SUSPENSION))
}

/// What kind of device a terminal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TerminalKind {
    /// A PIN entry device with a manufacturer-issued certificate.
    Ped,
    /// A phone, activated by attestation.
    SoftPos,
}

impl TerminalKind {
    /// From the API's enum; unspecified is an error.
    pub fn from_proto(value: i32) -> Result<Self, TerminalError> {
        match pb::TerminalKind::try_from(value) {
            Ok(pb::TerminalKind::Ped) => Ok(Self::Ped),
            Ok(pb::TerminalKind::Softpos) => Ok(Self::SoftPos),
            _ => Err(TerminalError::Invalid(
                "kind must be TERMINAL_KIND_PED or TERMINAL_KIND_SOFTPOS".into(),
            )),
        }
    }

    /// The API's enum.
    pub fn to_proto(self) -> pb::TerminalKind {
        match self {
            Self::Ped => pb::TerminalKind::Ped,
            Self::SoftPos => pb::TerminalKind::Softpos,
        }
    }
}

/// A terminal's lifecycle state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TerminalState {
    /// Bound, waiting for its first boot.
    #[default]
    Bound,
    /// Activated.
    Active,
    /// Suspended.
    Suspended,
    /// Blacklisted.
    Blacklisted,
    /// Replaced by another terminal.
    SwappedOut,
    /// Retired.
    Decommissioned,
}

impl TerminalState {
    /// The API's enum.
    pub fn to_proto(self) -> pb::TerminalState {
        match self {
            Self::Bound => pb::TerminalState::Bound,
            Self::Active => pb::TerminalState::Active,
            Self::Suspended => pb::TerminalState::Suspended,
            Self::Blacklisted => pb::TerminalState::Blacklisted,
            Self::SwappedOut => pb::TerminalState::SwappedOut,
            Self::Decommissioned => pb::TerminalState::Decommissioned,
        }
    }

    /// Lowercase name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bound => "bound",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Blacklisted => "blacklisted",
            Self::SwappedOut => "swapped out",
            Self::Decommissioned => "decommissioned",
        }
    }

    /// Whether the terminal still counts as part of the estate (not retired or replaced).
    pub fn is_live(self) -> bool {
        matches!(self, Self::Bound | Self::Active | Self::Suspended)
    }
}

/// Why a terminal command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TerminalError {
    /// A field of the command is malformed; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// Bind on an existing terminal.
    #[error("terminal already exists")]
    AlreadyExists,
    /// A command on a terminal that does not exist (or belongs to another tenant).
    #[error("terminal not found")]
    NotFound,
    /// The lifecycle does not allow the command in the current state.
    #[error("the terminal is {state}: it cannot be {action}")]
    IllegalTransition {
        /// The current state.
        state: &'static str,
        /// What was asked.
        action: &'static str,
    },
    /// The presented device certificate is not the one bound to this terminal.
    #[error("the device certificate is not the one bound to this terminal")]
    CertificateMismatch,
}

impl From<TerminalError> for ServiceError {
    fn from(error: TerminalError) -> Self {
        let message = error.to_string();
        match error {
            TerminalError::Invalid(_) => ServiceError::bad_request(message),
            TerminalError::AlreadyExists => ServiceError::already_exists(message),
            TerminalError::NotFound => ServiceError::not_found(message),
            TerminalError::IllegalTransition { .. } => ServiceError::conflict(message),
            TerminalError::CertificateMismatch => ServiceError::forbidden(message),
        }
    }
}

/// How a terminal proves itself at activation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Activation {
    /// A PED's first boot over mTLS: the SHA-256 of the certificate it presented (already
    /// verified against the trust store by the caller).
    DeviceCertificate {
        /// Hex SHA-256 of the presented certificate.
        certificate_sha256: String,
    },
    /// A SoftPOS device's passing attestation verdict.
    Attestation {
        /// The verdict's id.
        verdict_id: String,
    },
}

/// What can be asked of a terminal.
// A command lives for one request: boxing the large bind variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum TerminalCommand {
    /// Bind a device to the tenant and place it in the estate.
    Bind {
        /// The tenant.
        tenant_id: String,
        /// The terminal's id.
        terminal_id: EstateId,
        /// PED or SoftPOS.
        kind: TerminalKind,
        /// The store or terminal group, as the read model found it.
        parent: ParentNode,
        /// A PED's device certificate (required for a PED, absent for SoftPOS).
        device: Option<pb::DeviceBinding>,
        /// The terminal it replaces, if this is a swap.
        replaces: Option<EstateId>,
        /// A free label (0 to 100 characters).
        label: String,
    },
    /// Activate (first boot or attestation verdict).
    Activate(Activation),
    /// Suspend.
    Suspend {
        /// Why.
        reason: String,
    },
    /// Resume a suspended terminal.
    Resume,
    /// Resume a terminal the attestation service suspended (its suspension reason is
    /// [`ATTESTATION_SUSPENSION`]'s) now that its verdict passes again. A terminal suspended by
    /// a person, or not suspended, is left as it is: no event.
    ResumeAfterAttestation,
    /// Blacklist for good.
    Blacklist {
        /// Why.
        reason: String,
    },
    /// Mark as replaced by `replacement` (already bound with `replaces` = this terminal).
    SwapOut {
        /// The replacement terminal.
        replacement: EstateId,
        /// Why.
        reason: String,
    },
    /// Retire.
    Decommission {
        /// Why.
        reason: String,
    },
    /// Replace the parameters set at this terminal (validated, canonical, and checked in
    /// combination with every level above by the caller).
    SetParameters {
        /// The new partial set of the terminal level.
        parameters: pb::RiskParameters,
    },
    /// The device reports the parameter set it installed; the caller states what is in
    /// force.
    AcknowledgeParameters {
        /// The version the device installed.
        version: u64,
        /// SHA-256 of the payload it installed.
        payload_sha256: [u8; 32],
        /// When, by the device's clock.
        installed_at: Option<pbjson_types::Timestamp>,
        /// The version in force now.
        current_version: u64,
        /// SHA-256 of the payload of the version in force.
        current_sha256: [u8; 32],
    },
    /// Move to another store or terminal group.
    Move {
        /// The new parent, as the read model found it.
        parent: ParentNode,
    },
}

mpos_es::proto_events! {
    /// Events of the terminal aggregate.
    pub enum TerminalEvent {
        /// Bound.
        Bound(pb::TerminalBound) = "mpos.terminal_management.v1.TerminalBound",
        /// Activated.
        Activated(pb::TerminalActivated) = "mpos.terminal_management.v1.TerminalActivated",
        /// Suspended.
        Suspended(pb::TerminalSuspended) = "mpos.terminal_management.v1.TerminalSuspended",
        /// Resumed.
        Resumed(pb::TerminalResumed) = "mpos.terminal_management.v1.TerminalResumed",
        /// Blacklisted.
        Blacklisted(pb::TerminalBlacklisted) = "mpos.terminal_management.v1.TerminalBlacklisted",
        /// Swapped out.
        SwappedOut(pb::TerminalSwappedOut) = "mpos.terminal_management.v1.TerminalSwappedOut",
        /// Decommissioned.
        Decommissioned(pb::TerminalDecommissioned) = "mpos.terminal_management.v1.TerminalDecommissioned",
        /// Moved.
        Moved(pb::TerminalMoved) = "mpos.terminal_management.v1.TerminalMoved",
        /// Parameters replaced at the terminal level.
        ParametersSet(pb::ParametersSet) = "mpos.terminal_management.v1.ParametersSet",
        /// The device installed a parameter set.
        ParametersInstalled(pb::ParametersInstalled) = "mpos.terminal_management.v1.ParametersInstalled",
    }
}

/// A terminal's state as its commands need it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Terminal {
    tenant_id: String,
    terminal_id: Option<String>,
    kind: Option<TerminalKind>,
    parent_id: String,
    certificate_sha256: String,
    state: TerminalState,
    /// Digest of the parameters set here ("" when none).
    #[serde(default)]
    parameters_sha256: String,
    /// The last version the device reported installed.
    #[serde(default)]
    installed_version: u64,
    /// Why it is suspended ("" when it is not).
    #[serde(default)]
    suspension_reason: String,
}

fn check_parent(parent: &ParentNode) -> Result<(), TerminalError> {
    if !matches!(parent.kind, NodeKind::Store | NodeKind::TerminalGroup) {
        return Err(TerminalError::Invalid(format!(
            "parent_id: {} is a {}; a terminal belongs to a store or a terminal group",
            parent.id,
            parent.kind.name()
        )));
    }
    if parent.closed {
        return Err(TerminalError::Invalid(format!(
            "parent_id: {} is closed",
            parent.id
        )));
    }
    Ok(())
}

fn reason(value: &str) -> Result<String, TerminalError> {
    parse_reason(value).map_err(|error| TerminalError::Invalid(error.to_string()))
}

impl Terminal {
    fn illegal(&self, action: &'static str) -> TerminalError {
        TerminalError::IllegalTransition {
            state: self.state.name(),
            action,
        }
    }

    fn bind(command: TerminalCommand) -> Result<Vec<TerminalEvent>, TerminalError> {
        let TerminalCommand::Bind {
            tenant_id,
            terminal_id,
            kind,
            parent,
            device,
            replaces,
            label,
        } = command
        else {
            return Err(TerminalError::NotFound);
        };
        check_parent(&parent)?;
        let label = label.trim().to_owned();
        if label.chars().count() > 100 || label.chars().any(char::is_control) {
            return Err(TerminalError::Invalid(
                "label must be at most 100 characters without control characters".into(),
            ));
        }
        match (kind, &device) {
            (TerminalKind::Ped, None) => {
                return Err(TerminalError::Invalid(
                    "certificate_pem: a PED is bound by its device certificate".into(),
                ));
            }
            (TerminalKind::SoftPos, Some(_)) => {
                return Err(TerminalError::Invalid(
                    "certificate_pem: a SoftPOS terminal has no device certificate; it is activated by attestation".into(),
                ));
            }
            _ => {}
        }
        if replaces.as_ref() == Some(&terminal_id) {
            return Err(TerminalError::Invalid(
                "replaces_terminal_id: a terminal cannot replace itself".into(),
            ));
        }
        Ok(vec![TerminalEvent::Bound(pb::TerminalBound {
            tenant_id,
            terminal_id: terminal_id.as_str().to_owned(),
            kind: kind.to_proto().into(),
            parent_id: parent.id.as_str().to_owned(),
            device,
            replaces_terminal_id: replaces
                .map(|id| id.as_str().to_owned())
                .unwrap_or_default(),
            label,
        })])
    }

    fn decide(&self, command: TerminalCommand) -> Result<Vec<TerminalEvent>, TerminalError> {
        let Some(terminal_id) = self.terminal_id.clone() else {
            return Self::bind(command);
        };
        let tenant_id = self.tenant_id.clone();
        let state = self.state;
        let event = match command {
            TerminalCommand::Bind { .. } => return Err(TerminalError::AlreadyExists),
            TerminalCommand::Activate(activation) => {
                if state != TerminalState::Bound {
                    return Err(self.illegal("activated"));
                }
                let (method, evidence) = match (self.kind, activation) {
                    (
                        Some(TerminalKind::Ped),
                        Activation::DeviceCertificate { certificate_sha256 },
                    ) => {
                        if certificate_sha256 != self.certificate_sha256 {
                            return Err(TerminalError::CertificateMismatch);
                        }
                        (pb::ActivationMethod::DeviceCertificate, certificate_sha256)
                    }
                    (Some(TerminalKind::SoftPos), Activation::Attestation { verdict_id }) => {
                        if verdict_id.trim().is_empty() {
                            return Err(TerminalError::Invalid(
                                "evidence: the attestation verdict id is missing".into(),
                            ));
                        }
                        (pb::ActivationMethod::Attestation, verdict_id)
                    }
                    (Some(TerminalKind::Ped), Activation::Attestation { .. }) => {
                        return Err(TerminalError::Invalid(
                            "method: a PED is activated by its device certificate".into(),
                        ));
                    }
                    _ => {
                        return Err(TerminalError::Invalid(
                            "method: a SoftPOS terminal is activated by attestation".into(),
                        ));
                    }
                };
                TerminalEvent::Activated(pb::TerminalActivated {
                    tenant_id,
                    terminal_id,
                    method: method.into(),
                    evidence,
                })
            }
            TerminalCommand::Suspend { reason: text } => {
                if state != TerminalState::Active {
                    return Err(self.illegal("suspended"));
                }
                TerminalEvent::Suspended(pb::TerminalSuspended {
                    tenant_id,
                    terminal_id,
                    reason: reason(&text)?,
                })
            }
            TerminalCommand::Resume => {
                if state != TerminalState::Suspended {
                    return Err(self.illegal("resumed"));
                }
                TerminalEvent::Resumed(pb::TerminalResumed {
                    tenant_id,
                    terminal_id,
                })
            }
            TerminalCommand::ResumeAfterAttestation => {
                if state != TerminalState::Suspended
                    || !is_attestation_suspension(&self.suspension_reason)
                {
                    return Ok(Vec::new());
                }
                TerminalEvent::Resumed(pb::TerminalResumed {
                    tenant_id,
                    terminal_id,
                })
            }
            TerminalCommand::Blacklist { reason: text } => {
                if !state.is_live() {
                    return Err(self.illegal("blacklisted"));
                }
                TerminalEvent::Blacklisted(pb::TerminalBlacklisted {
                    tenant_id,
                    terminal_id,
                    reason: reason(&text)?,
                })
            }
            TerminalCommand::SwapOut {
                replacement,
                reason: text,
            } => {
                if !state.is_live() {
                    return Err(self.illegal("swapped out"));
                }
                if replacement.as_str() == terminal_id {
                    return Err(TerminalError::Invalid(
                        "replacement: a terminal cannot replace itself".into(),
                    ));
                }
                TerminalEvent::SwappedOut(pb::TerminalSwappedOut {
                    tenant_id,
                    terminal_id,
                    replacement_terminal_id: replacement.as_str().to_owned(),
                    reason: reason(&text)?,
                })
            }
            TerminalCommand::Decommission { reason: text } => {
                if state == TerminalState::Decommissioned {
                    return Err(self.illegal("decommissioned"));
                }
                TerminalEvent::Decommissioned(pb::TerminalDecommissioned {
                    tenant_id,
                    terminal_id,
                    reason: reason(&text)?,
                })
            }
            TerminalCommand::SetParameters { parameters } => {
                if !state.is_live() {
                    return Err(self.illegal("given parameters"));
                }
                if crate::estate::parameters_digest(&parameters) == self.parameters_sha256 {
                    return Ok(Vec::new());
                }
                TerminalEvent::ParametersSet(pb::ParametersSet {
                    tenant_id,
                    level: pb::ParameterLevel::Terminal.into(),
                    node_id: terminal_id,
                    parameters: Some(parameters),
                })
            }
            TerminalCommand::AcknowledgeParameters {
                version,
                payload_sha256,
                installed_at,
                current_version,
                current_sha256,
            } => {
                if state != TerminalState::Active {
                    return Err(self.illegal("installing parameters"));
                }
                if version == 0 || version > current_version {
                    return Err(TerminalError::Invalid(format!(
                        "version: {version} was never issued to this terminal (in force: {current_version})"
                    )));
                }
                if version == current_version && payload_sha256 != current_sha256 {
                    return Err(TerminalError::Invalid(
                        "payload_sha256: not the parameter set issued for this version".into(),
                    ));
                }
                if version < self.installed_version {
                    return Err(TerminalError::Invalid(format!(
                        "version: {version} is older than the installed {}",
                        self.installed_version
                    )));
                }
                if version == self.installed_version {
                    return Ok(Vec::new());
                }
                TerminalEvent::ParametersInstalled(pb::ParametersInstalled {
                    tenant_id,
                    terminal_id,
                    version,
                    payload_sha256: payload_sha256.to_vec(),
                    installed_at,
                })
            }
            TerminalCommand::Move { parent } => {
                if !state.is_live() {
                    return Err(self.illegal("moved"));
                }
                check_parent(&parent)?;
                if parent.id.as_str() == self.parent_id {
                    return Ok(Vec::new());
                }
                TerminalEvent::Moved(pb::TerminalMoved {
                    tenant_id,
                    terminal_id,
                    old_parent_id: self.parent_id.clone(),
                    new_parent_id: parent.id.as_str().to_owned(),
                })
            }
        };
        Ok(vec![event])
    }
}

impl Aggregate for Terminal {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = TerminalCommand;
    type Event = TerminalEvent;
    type Error = TerminalError;
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
            TerminalEvent::Bound(bound) => {
                self.tenant_id = bound.tenant_id;
                self.terminal_id = Some(bound.terminal_id);
                self.kind = TerminalKind::from_proto(bound.kind).ok();
                self.parent_id = bound.parent_id;
                self.certificate_sha256 = bound
                    .device
                    .map(|device| device.certificate_sha256)
                    .unwrap_or_default();
                self.state = TerminalState::Bound;
            }
            TerminalEvent::Activated(_) | TerminalEvent::Resumed(_) => {
                self.state = TerminalState::Active;
                self.suspension_reason.clear();
            }
            TerminalEvent::Suspended(suspended) => {
                self.state = TerminalState::Suspended;
                self.suspension_reason = suspended.reason;
            }
            TerminalEvent::Blacklisted(_) => self.state = TerminalState::Blacklisted,
            TerminalEvent::SwappedOut(_) => self.state = TerminalState::SwappedOut,
            TerminalEvent::Decommissioned(_) => self.state = TerminalState::Decommissioned,
            TerminalEvent::Moved(moved) => self.parent_id = moved.new_parent_id,
            TerminalEvent::ParametersSet(set) => {
                self.parameters_sha256 =
                    crate::estate::parameters_digest(&set.parameters.unwrap_or_default());
            }
            TerminalEvent::ParametersInstalled(installed) => {
                self.installed_version = installed.version;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use mpos_es::ProtoEvent;

    use super::*;

    type Test = TestFramework<Terminal>;

    const CERT: &str = "aa11";

    fn id(value: &str) -> EstateId {
        EstateId::parse("terminal_id", value).expect("valid id")
    }

    fn store(id_: &str) -> ParentNode {
        ParentNode {
            id: id(id_),
            kind: NodeKind::Store,
            closed: false,
        }
    }

    fn device() -> pb::DeviceBinding {
        pb::DeviceBinding {
            serial: "01ab".into(),
            certificate_sha256: CERT.into(),
            issuer_sha256: "bb22".into(),
            subject: "CN=PED 01AB".into(),
            not_after: None,
            certificate_der: Vec::new(),
        }
    }

    fn bind(kind: TerminalKind, device: Option<pb::DeviceBinding>) -> TerminalCommand {
        TerminalCommand::Bind {
            tenant_id: "acme".into(),
            terminal_id: id("t-1"),
            kind,
            parent: store("s-1"),
            device,
            replaces: None,
            label: "till 1".into(),
        }
    }

    fn bound(kind: TerminalKind) -> TerminalEvent {
        TerminalEvent::Bound(pb::TerminalBound {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            kind: kind.to_proto().into(),
            parent_id: "s-1".into(),
            device: (kind == TerminalKind::Ped).then(device),
            replaces_terminal_id: String::new(),
            label: "till 1".into(),
        })
    }

    fn activated() -> TerminalEvent {
        TerminalEvent::Activated(pb::TerminalActivated {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            method: pb::ActivationMethod::DeviceCertificate.into(),
            evidence: CERT.into(),
        })
    }

    fn suspended() -> TerminalEvent {
        TerminalEvent::Suspended(pb::TerminalSuspended {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            reason: "lost".into(),
        })
    }

    fn activate_with(cert: &str) -> TerminalCommand {
        TerminalCommand::Activate(Activation::DeviceCertificate {
            certificate_sha256: cert.into(),
        })
    }

    #[test]
    fn event_type_names_are_the_protobuf_names() {
        TerminalEvent::check_type_names().expect("names");
    }

    #[test]
    fn a_ped_is_bound_by_its_certificate_and_a_softpos_without() {
        Test::with(())
            .given_no_previous_events()
            .when(bind(TerminalKind::Ped, Some(device())))
            .then_expect_events(vec![bound(TerminalKind::Ped)]);
        Test::with(())
            .given_no_previous_events()
            .when(bind(TerminalKind::SoftPos, None))
            .then_expect_events(vec![bound(TerminalKind::SoftPos)]);
        Test::with(())
            .given_no_previous_events()
            .when(bind(TerminalKind::Ped, None))
            .then_expect_error(TerminalError::Invalid(
                "certificate_pem: a PED is bound by its device certificate".into(),
            ));
        Test::with(())
            .given_no_previous_events()
            .when(bind(TerminalKind::SoftPos, Some(device())))
            .then_expect_error(TerminalError::Invalid("certificate_pem: a SoftPOS terminal has no device certificate; it is activated by attestation".into()));
        Test::with(())
            .given(vec![bound(TerminalKind::Ped)])
            .when(bind(TerminalKind::Ped, Some(device())))
            .then_expect_error(TerminalError::AlreadyExists);
    }

    #[test]
    fn terminals_belong_to_open_stores_or_groups() {
        let mut command = bind(TerminalKind::SoftPos, None);
        if let TerminalCommand::Bind { parent, .. } = &mut command {
            parent.kind = NodeKind::Merchant;
        }
        Test::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(TerminalError::Invalid(
                "parent_id: s-1 is a merchant; a terminal belongs to a store or a terminal group"
                    .into(),
            ));
        Test::with(())
            .given(vec![bound(TerminalKind::Ped)])
            .when(TerminalCommand::Move {
                parent: ParentNode {
                    id: id("g-1"),
                    kind: NodeKind::TerminalGroup,
                    closed: true,
                },
            })
            .then_expect_error(TerminalError::Invalid("parent_id: g-1 is closed".into()));
        Test::with(())
            .given(vec![bound(TerminalKind::Ped)])
            .when(TerminalCommand::Move {
                parent: ParentNode {
                    id: id("g-1"),
                    kind: NodeKind::TerminalGroup,
                    closed: false,
                },
            })
            .then_expect_events(vec![TerminalEvent::Moved(pb::TerminalMoved {
                tenant_id: "acme".into(),
                terminal_id: "t-1".into(),
                old_parent_id: "s-1".into(),
                new_parent_id: "g-1".into(),
            })]);
    }

    #[test]
    fn activation_needs_the_bound_certificate_or_an_attestation_verdict() {
        Test::with(())
            .given(vec![bound(TerminalKind::Ped)])
            .when(activate_with(CERT))
            .then_expect_events(vec![activated()]);
        Test::with(())
            .given(vec![bound(TerminalKind::Ped)])
            .when(activate_with("cc33"))
            .then_expect_error(TerminalError::CertificateMismatch);
        Test::with(())
            .given(vec![bound(TerminalKind::SoftPos)])
            .when(TerminalCommand::Activate(Activation::Attestation {
                verdict_id: "v-9".into(),
            }))
            .then_expect_events(vec![TerminalEvent::Activated(pb::TerminalActivated {
                tenant_id: "acme".into(),
                terminal_id: "t-1".into(),
                method: pb::ActivationMethod::Attestation.into(),
                evidence: "v-9".into(),
            })]);
        Test::with(())
            .given(vec![bound(TerminalKind::SoftPos)])
            .when(activate_with(CERT))
            .then_expect_error(TerminalError::Invalid(
                "method: a SoftPOS terminal is activated by attestation".into(),
            ));
        Test::with(())
            .given(vec![bound(TerminalKind::Ped), activated()])
            .when(activate_with(CERT))
            .then_expect_error(TerminalError::IllegalTransition {
                state: "active",
                action: "activated",
            });
    }

    #[test]
    fn suspend_and_resume_alternate() {
        Test::with(())
            .given(vec![bound(TerminalKind::Ped), activated()])
            .when(TerminalCommand::Suspend {
                reason: " lost ".into(),
            })
            .then_expect_events(vec![suspended()]);
        Test::with(())
            .given(vec![bound(TerminalKind::Ped), activated(), suspended()])
            .when(TerminalCommand::Resume)
            .then_expect_events(vec![TerminalEvent::Resumed(pb::TerminalResumed {
                tenant_id: "acme".into(),
                terminal_id: "t-1".into(),
            })]);
        Test::with(())
            .given(vec![bound(TerminalKind::Ped)])
            .when(TerminalCommand::Suspend {
                reason: "lost".into(),
            })
            .then_expect_error(TerminalError::IllegalTransition {
                state: "bound",
                action: "suspended",
            });
        Test::with(())
            .given(vec![bound(TerminalKind::Ped), activated()])
            .when(TerminalCommand::Resume)
            .then_expect_error(TerminalError::IllegalTransition {
                state: "active",
                action: "resumed",
            });
    }

    #[test]
    fn blacklisted_and_swapped_out_terminals_can_only_be_decommissioned() {
        let blacklisted = TerminalEvent::Blacklisted(pb::TerminalBlacklisted {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            reason: "stolen".into(),
        });
        Test::with(())
            .given(vec![bound(TerminalKind::Ped), activated(), suspended()])
            .when(TerminalCommand::Blacklist {
                reason: "stolen".into(),
            })
            .then_expect_events(vec![blacklisted.clone()]);
        let after_blacklist = || vec![bound(TerminalKind::Ped), activated(), blacklisted.clone()];
        for (command, action) in [
            (TerminalCommand::Resume, "resumed"),
            (TerminalCommand::Suspend { reason: "x".into() }, "suspended"),
            (
                TerminalCommand::Blacklist { reason: "x".into() },
                "blacklisted",
            ),
            (activate_with(CERT), "activated"),
            (
                TerminalCommand::SwapOut {
                    replacement: id("t-2"),
                    reason: "x".into(),
                },
                "swapped out",
            ),
            (
                TerminalCommand::Move {
                    parent: store("s-2"),
                },
                "moved",
            ),
        ] {
            Test::with(())
                .given(after_blacklist())
                .when(command)
                .then_expect_error(TerminalError::IllegalTransition {
                    state: "blacklisted",
                    action,
                });
        }
        let decommissioned = TerminalEvent::Decommissioned(pb::TerminalDecommissioned {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            reason: "retired".into(),
        });
        Test::with(())
            .given(after_blacklist())
            .when(TerminalCommand::Decommission {
                reason: "retired".into(),
            })
            .then_expect_events(vec![decommissioned.clone()]);
        Test::with(())
            .given(vec![bound(TerminalKind::Ped), decommissioned])
            .when(TerminalCommand::Decommission {
                reason: "again".into(),
            })
            .then_expect_error(TerminalError::IllegalTransition {
                state: "decommissioned",
                action: "decommissioned",
            });
    }

    #[test]
    fn a_swap_names_the_replacement() {
        Test::with(())
            .given(vec![bound(TerminalKind::Ped), activated()])
            .when(TerminalCommand::SwapOut {
                replacement: id("t-2"),
                reason: "screen broken".into(),
            })
            .then_expect_events(vec![TerminalEvent::SwappedOut(pb::TerminalSwappedOut {
                tenant_id: "acme".into(),
                terminal_id: "t-1".into(),
                replacement_terminal_id: "t-2".into(),
                reason: "screen broken".into(),
            })]);
        Test::with(())
            .given(vec![bound(TerminalKind::Ped), activated()])
            .when(TerminalCommand::SwapOut {
                replacement: id("t-1"),
                reason: "x".into(),
            })
            .then_expect_error(TerminalError::Invalid(
                "replacement: a terminal cannot replace itself".into(),
            ));
    }

    #[test]
    fn only_a_suspension_by_attestation_is_lifted_by_attestation() {
        let by_attestation = TerminalEvent::Suspended(pb::TerminalSuspended {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            reason: "attestation: verdict block (REATTESTATION_MISSED)".into(),
        });
        let softpos_active = || {
            vec![
                bound(TerminalKind::SoftPos),
                TerminalEvent::Activated(pb::TerminalActivated {
                    tenant_id: "acme".into(),
                    terminal_id: "t-1".into(),
                    method: pb::ActivationMethod::Attestation.into(),
                    evidence: "v-1".into(),
                }),
            ]
        };
        let mut given = softpos_active();
        given.push(by_attestation.clone());
        Test::with(())
            .given(given)
            .when(TerminalCommand::ResumeAfterAttestation)
            .then_expect_events(vec![TerminalEvent::Resumed(pb::TerminalResumed {
                tenant_id: "acme".into(),
                terminal_id: "t-1".into(),
            })]);
        // A person's suspension, also after one by attestation was lifted by a person.
        let mut given = softpos_active();
        given.extend([
            by_attestation,
            TerminalEvent::Resumed(pb::TerminalResumed {
                tenant_id: "acme".into(),
                terminal_id: "t-1".into(),
            }),
            suspended(),
        ]);
        Test::with(())
            .given(given)
            .when(TerminalCommand::ResumeAfterAttestation)
            .then_expect_events(vec![]);
        // Not suspended: nothing to lift.
        Test::with(())
            .given(softpos_active())
            .when(TerminalCommand::ResumeAfterAttestation)
            .then_expect_events(vec![]);
        assert!(is_attestation_suspension(" Attestation: verdict block"));
        assert!(!is_attestation_suspension("lost; attestation: later"));
        assert!(!is_attestation_suspension("attest"));
    }

    #[test]
    fn commands_on_a_missing_terminal_are_not_found() {
        Test::with(())
            .given_no_previous_events()
            .when(TerminalCommand::Resume)
            .then_expect_error(TerminalError::NotFound);
    }
}
