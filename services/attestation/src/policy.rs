//! The policy aggregate: a tenant's attestation policy (id: the tenant id), every edit a new
//! version. An edit names the version it was made from, so two editors cannot silently
//! overwrite each other. Pure domain logic.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::attestation as pb;
use serde::{Deserialize, Serialize};

use crate::rules;

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "policy";

/// Why a policy command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy is malformed; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The edit was made from another version than the current one.
    #[error("the policy is at version {current}, the edit was made from version {expected}")]
    VersionConflict {
        /// The current version.
        current: u64,
        /// The version the editor saw.
        expected: u64,
    },
}

impl From<PolicyError> for ServiceError {
    fn from(error: PolicyError) -> Self {
        let message = error.to_string();
        match error {
            PolicyError::Invalid(_) => ServiceError::bad_request(message),
            PolicyError::VersionConflict { .. } => ServiceError::conflict(message),
        }
    }
}

/// What can be asked of a policy.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicyCommand {
    /// Publish a new version.
    Publish {
        /// The tenant.
        tenant_id: String,
        /// The policy.
        policy: pb::Policy,
        /// Why, may be empty.
        comment: String,
        /// The version the edit was made from (`None`: whatever is current).
        expected_version: Option<u64>,
    },
}

mpos_es::proto_events! {
    /// Events of the policy aggregate.
    pub enum PolicyEvent {
        /// A version published.
        Published(pb::PolicyPublished) = "mpos.attestation.v1.PolicyPublished",
    }
}

/// A tenant's policy: its current version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantPolicy {
    /// 0 until the first version.
    pub version: u64,
    /// The current policy (the default one before any version).
    pub policy: pb::Policy,
}

impl TenantPolicy {
    fn decide(&self, command: PolicyCommand) -> Result<Vec<PolicyEvent>, PolicyError> {
        let PolicyCommand::Publish {
            tenant_id,
            policy,
            comment,
            expected_version,
        } = command;
        if let Some(expected) = expected_version
            && expected != self.version
        {
            return Err(PolicyError::VersionConflict {
                current: self.version,
                expected,
            });
        }
        rules::validate(&policy).map_err(|error| PolicyError::Invalid(error.0))?;
        let comment = comment.trim().to_owned();
        if comment.chars().count() > 500 {
            return Err(PolicyError::Invalid(
                "comment: at most 500 characters".into(),
            ));
        }
        Ok(vec![PolicyEvent::Published(pb::PolicyPublished {
            tenant_id,
            version: self.version + 1,
            policy: Some(policy),
            comment,
        })])
    }
}

impl Aggregate for TenantPolicy {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = PolicyCommand;
    type Event = PolicyEvent;
    type Error = PolicyError;
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
            PolicyEvent::Published(published) => {
                self.version = self.version.max(published.version);
                self.policy = published.policy.unwrap_or_default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type Test = TestFramework<TenantPolicy>;

    fn publish(policy: pb::Policy, expected_version: Option<u64>) -> PolicyCommand {
        PolicyCommand::Publish {
            tenant_id: "acme".into(),
            policy,
            comment: " first ".into(),
            expected_version,
        }
    }

    fn published(version: u64, policy: pb::Policy, comment: &str) -> PolicyEvent {
        PolicyEvent::Published(pb::PolicyPublished {
            tenant_id: "acme".into(),
            version,
            policy: Some(policy),
            comment: comment.into(),
        })
    }

    fn strict() -> pb::Policy {
        pb::Policy {
            min_os_version: 140_000,
            min_patch_level: 202_601,
            ..pb::Policy::default()
        }
    }

    #[test]
    fn versions_count_up_from_one() {
        Test::with(())
            .given_no_previous_events()
            .when(publish(strict(), Some(0)))
            .then_expect_events(vec![published(1, strict(), "first")]);
        Test::with(())
            .given(vec![published(1, strict(), "first")])
            .when(publish(pb::Policy::default(), None))
            .then_expect_events(vec![published(2, pb::Policy::default(), "first")]);
    }

    #[test]
    fn an_edit_from_an_old_version_is_a_conflict() {
        Test::with(())
            .given(vec![
                published(1, strict(), "a"),
                published(2, strict(), "b"),
            ])
            .when(publish(pb::Policy::default(), Some(1)))
            .then_expect_error(PolicyError::VersionConflict {
                current: 2,
                expected: 1,
            });
    }

    #[test]
    fn a_malformed_policy_is_refused() {
        let mut bad = strict();
        bad.min_patch_level = 202_613;
        Test::with(())
            .given_no_previous_events()
            .when(publish(bad, None))
            .then_expect_error(PolicyError::Invalid(
                "min_patch_level: YYYYMM, e.g. 202601".into(),
            ));
        let mut softened = strict();
        softened
            .actions
            .insert("KA_CHAIN_INVALID".into(), pb::RuleAction::Flag.into());
        Test::with(())
            .given_no_previous_events()
            .when(publish(softened, None))
            .then_expect_error(PolicyError::Invalid(
                "actions.KA_CHAIN_INVALID: invalid evidence always blocks".into(),
            ));
        let mut unknown = strict();
        unknown
            .actions
            .insert("NO_SUCH_CODE".into(), pb::RuleAction::Flag.into());
        Test::with(())
            .given_no_previous_events()
            .when(publish(unknown, None))
            .then_expect_error(PolicyError::Invalid(
                "actions: \"NO_SUCH_CODE\" is not a reason code".into(),
            ));
    }
}
