//! The rules aggregate (id: the tenant id): a tenant's routing rules, every edit a new
//! version. An edit names the version it was made from, so two editors cannot silently
//! overwrite each other, and is validated as a whole against the tenant's configured
//! acquirers (`routing_rules::RuleSet::validate`): every problem is reported at once. Pure
//! domain logic.

use std::collections::BTreeSet;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::routing as pb;
use serde::{Deserialize, Serialize};

use crate::convert;

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "rules";

/// Why a rules command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// The rule set is malformed; the message lists every problem.
    #[error("{0}")]
    Invalid(String),
    /// The edit was made from another version than the current one.
    #[error("the rules are at version {current}, the edit was made from version {expected}")]
    VersionConflict {
        /// The current version.
        current: u64,
        /// The version the editor saw.
        expected: u64,
    },
}

impl From<RulesError> for ServiceError {
    fn from(error: RulesError) -> Self {
        let message = error.to_string();
        match error {
            RulesError::Invalid(_) => ServiceError::bad_request(message),
            RulesError::VersionConflict { .. } => ServiceError::conflict(message),
        }
    }
}

/// Publish a new version of a tenant's rules.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishRules {
    /// The tenant.
    pub tenant_id: String,
    /// The rules.
    pub rules: pb::RuleSet,
    /// The version the edit was made from (`None`: whatever is current).
    pub expected_version: Option<u64>,
    /// The tenant's configured acquirers (every acquirer a rule names must be one).
    pub known_acquirers: BTreeSet<String>,
}

mpos_es::proto_events! {
    /// Events of the rules aggregate.
    pub enum RulesEvent {
        /// A version published.
        Published(pb::RulesPublished) = "mpos.routing.v1.RulesPublished",
    }
}

/// A tenant's rules: the current version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantRules {
    /// 0 until the first version.
    pub version: u64,
    /// The current rules (none before the first version: nothing is routed).
    pub rules: pb::RuleSet,
}

impl TenantRules {
    /// The rules as the decision logic takes them.
    pub fn domain(&self) -> Result<routing_rules::RuleSet, convert::ConvertError> {
        convert::rule_set(&self.rules, self.version)
    }

    fn decide(&self, command: PublishRules) -> Result<Vec<RulesEvent>, RulesError> {
        if let Some(expected) = command.expected_version
            && expected != self.version
        {
            return Err(RulesError::VersionConflict {
                current: self.version,
                expected,
            });
        }
        let version = self.version + 1;
        let domain = convert::rule_set(&command.rules, version)
            .map_err(|error| RulesError::Invalid(error.0))?;
        if let Err(problems) = domain.validate(&command.known_acquirers) {
            let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(RulesError::Invalid(listed.join("; ")));
        }
        // Stored in the canonical form the domain reads back.
        Ok(vec![RulesEvent::Published(pb::RulesPublished {
            tenant_id: command.tenant_id,
            version,
            rules: Some(convert::rule_set_to_proto(&domain)),
        })])
    }
}

impl Aggregate for TenantRules {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = PublishRules;
    type Event = RulesEvent;
    type Error = RulesError;
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
            RulesEvent::Published(published) => {
                self.version = self.version.max(published.version);
                self.rules = published.rules.unwrap_or_default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type Test = TestFramework<TenantRules>;

    fn priority(ids: &[&str]) -> pb::Route {
        pb::Route {
            kind: Some(pb::route::Kind::Priority(pb::PriorityRoute {
                acquirer_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            })),
        }
    }

    fn rules(ids: &[&str]) -> pb::RuleSet {
        pb::RuleSet {
            rules: vec![pb::Rule {
                id: "all".into(),
                enabled: true,
                conditions: Some(pb::Conditions::default()),
                route: Some(priority(ids)),
                ..pb::Rule::default()
            }],
            default_route: None,
        }
    }

    fn publish(set: pb::RuleSet, expected: Option<u64>) -> PublishRules {
        PublishRules {
            tenant_id: "acme".into(),
            rules: set,
            expected_version: expected,
            known_acquirers: ["acq-a".to_owned(), "acq-b".to_owned()].into(),
        }
    }

    fn published(version: u64, set: pb::RuleSet) -> RulesEvent {
        RulesEvent::Published(pb::RulesPublished {
            tenant_id: "acme".into(),
            version,
            rules: Some(set),
        })
    }

    #[test]
    fn versions_count_up_and_stale_edits_conflict() {
        Test::with(())
            .given_no_previous_events()
            .when(publish(rules(&["acq-a", "acq-b"]), Some(0)))
            .then_expect_events(vec![published(1, rules(&["acq-a", "acq-b"]))]);
        Test::with(())
            .given(vec![
                published(1, rules(&["acq-a"])),
                published(2, rules(&["acq-b"])),
            ])
            .when(publish(rules(&["acq-a"]), Some(1)))
            .then_expect_error(RulesError::VersionConflict {
                current: 2,
                expected: 1,
            });
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut bad = rules(&["acq-a", "acq-x"]);
        bad.rules.push(pb::Rule {
            id: "all".into(),
            enabled: true,
            conditions: Some(pb::Conditions {
                currencies: vec!["euro".into()],
                ..pb::Conditions::default()
            }),
            route: Some(priority(&["acq-b"])),
            ..pb::Rule::default()
        });
        let result = TenantRules::default().decide(publish(bad, None));
        let Err(RulesError::Invalid(message)) = result else {
            panic!("expected invalid, got {result:?}");
        };
        assert!(message.contains("acq-x"), "{message}");
        assert!(message.contains("currencies"), "{message}");
        assert!(message.contains("already used"), "{message}");
    }
}
