//! The tenant aggregate: a payment service provider on the platform. Pure domain logic.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::terminal_management as pb;
use serde::{Deserialize, Serialize};

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "tenant";

/// A tenant id: 3 to 63 characters of lowercase letters, digits and inner hyphens, starting
/// with a letter (it appears in NATS subjects and Kafka headers).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TenantId(String);

impl TenantId {
    /// Validates a tenant id.
    pub fn parse(value: &str) -> Result<Self, TenantError> {
        let valid_length = (3..=63).contains(&value.len());
        let valid_chars = value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let starts_with_letter = value.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if valid_length && valid_chars && starts_with_letter && !value.ends_with('-') {
            Ok(Self(value.to_owned()))
        } else {
            Err(TenantError::InvalidTenantId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: 1 to 100 characters after trimming, no control characters.
fn parse_name(value: &str) -> Result<String, TenantError> {
    let trimmed = value.trim();
    let length = trimmed.chars().count();
    if (1..=100).contains(&length) && !trimmed.chars().any(char::is_control) {
        Ok(trimmed.to_owned())
    } else {
        Err(TenantError::InvalidName)
    }
}

/// Why a tenant command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// The id does not follow the rules.
    #[error(
        "tenant id must be 3 to 63 lowercase letters, digits or inner hyphens, starting with a letter"
    )]
    InvalidTenantId,
    /// The name does not follow the rules.
    #[error("name must be 1 to 100 characters without control characters")]
    InvalidName,
    /// The reason is empty or too long.
    #[error("reason must be 1 to 500 characters")]
    InvalidReason,
    /// Create on an existing tenant.
    #[error("tenant already exists")]
    AlreadyExists,
    /// Any command but create on a tenant that does not exist.
    #[error("tenant not found")]
    NotFound,
    /// Suspend on a suspended tenant.
    #[error("tenant is already suspended")]
    AlreadySuspended,
    /// Reactivate on an active tenant.
    #[error("tenant is not suspended")]
    NotSuspended,
}

impl From<TenantError> for ServiceError {
    fn from(error: TenantError) -> Self {
        let message = error.to_string();
        match error {
            TenantError::InvalidTenantId
            | TenantError::InvalidName
            | TenantError::InvalidReason => ServiceError::bad_request(message),
            TenantError::AlreadyExists => ServiceError::already_exists(message),
            TenantError::NotFound => ServiceError::not_found(message),
            TenantError::AlreadySuspended | TenantError::NotSuspended => {
                ServiceError::conflict(message)
            }
        }
    }
}

/// What can be asked of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantCommand {
    /// Onboard a tenant.
    Create {
        /// Its id.
        tenant_id: TenantId,
        /// Its display name.
        name: String,
    },
    /// Change the display name.
    Rename {
        /// The new name.
        name: String,
    },
    /// Stop the tenant from processing.
    Suspend {
        /// Why (kept in the audit trail).
        reason: String,
    },
    /// Let a suspended tenant process again.
    Reactivate,
}

mpos_es::proto_events! {
    /// Events of the tenant aggregate.
    pub enum TenantEvent {
        /// Onboarded.
        Created(pb::TenantCreated) = "mpos.terminal_management.v1.TenantCreated",
        /// Renamed.
        Renamed(pb::TenantRenamed) = "mpos.terminal_management.v1.TenantRenamed",
        /// Suspended.
        Suspended(pb::TenantSuspended) = "mpos.terminal_management.v1.TenantSuspended",
        /// Reactivated.
        Reactivated(pb::TenantReactivated) = "mpos.terminal_management.v1.TenantReactivated",
    }
}

/// The tenant's state as its commands need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    id: Option<String>,
    name: String,
    suspended: bool,
}

impl Tenant {
    fn decide(&self, command: TenantCommand) -> Result<Vec<TenantEvent>, TenantError> {
        let Some(tenant_id) = self.id.clone() else {
            return match command {
                TenantCommand::Create { tenant_id, name } => {
                    Ok(vec![TenantEvent::Created(pb::TenantCreated {
                        tenant_id: tenant_id.0,
                        name: parse_name(&name)?,
                    })])
                }
                _ => Err(TenantError::NotFound),
            };
        };
        match command {
            TenantCommand::Create { .. } => Err(TenantError::AlreadyExists),
            TenantCommand::Rename { name } => {
                let new_name = parse_name(&name)?;
                if new_name == self.name {
                    return Ok(Vec::new());
                }
                Ok(vec![TenantEvent::Renamed(pb::TenantRenamed {
                    tenant_id,
                    old_name: self.name.clone(),
                    new_name,
                })])
            }
            TenantCommand::Suspend { reason } => {
                let reason = reason.trim().to_owned();
                if reason.is_empty() || reason.chars().count() > 500 {
                    return Err(TenantError::InvalidReason);
                }
                if self.suspended {
                    return Err(TenantError::AlreadySuspended);
                }
                Ok(vec![TenantEvent::Suspended(pb::TenantSuspended {
                    tenant_id,
                    reason,
                })])
            }
            TenantCommand::Reactivate => {
                if !self.suspended {
                    return Err(TenantError::NotSuspended);
                }
                Ok(vec![TenantEvent::Reactivated(pb::TenantReactivated {
                    tenant_id,
                })])
            }
        }
    }
}

impl Aggregate for Tenant {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = TenantCommand;
    type Event = TenantEvent;
    type Error = TenantError;
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
            TenantEvent::Created(created) => {
                self.id = Some(created.tenant_id);
                self.name = created.name;
            }
            TenantEvent::Renamed(renamed) => self.name = renamed.new_name,
            TenantEvent::Suspended(_) => self.suspended = true,
            TenantEvent::Reactivated(_) => self.suspended = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::DomainEvent;
    use cqrs_es::test::TestFramework;
    use mpos_es::ProtoEvent;

    use super::*;

    type Test = TestFramework<Tenant>;

    fn created() -> TenantEvent {
        TenantEvent::Created(pb::TenantCreated {
            tenant_id: "acme".into(),
            name: "Acme Pay".into(),
        })
    }

    fn create(id: &str, name: &str) -> TenantCommand {
        TenantCommand::Create {
            tenant_id: TenantId::parse(id).expect("valid id"),
            name: name.into(),
        }
    }

    #[test]
    fn event_type_names_are_the_protobuf_names() {
        TenantEvent::check_type_names().expect("names");
        assert_eq!(
            created().event_type(),
            "mpos.terminal_management.v1.TenantCreated"
        );
    }

    #[test]
    fn events_serialise_like_protobuf_any() {
        let json = serde_json::to_value(created()).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"@type": "mpos.terminal_management.v1.TenantCreated", "tenantId": "acme", "name": "Acme Pay"})
        );
        let back: TenantEvent = serde_json::from_value(json).expect("back");
        assert_eq!(back, created());
    }

    #[test]
    fn tenant_ids_are_validated() {
        for valid in ["acme", "acme-pay", "a1b", "x".repeat(63).as_str()] {
            assert!(TenantId::parse(valid).is_ok(), "{valid}");
        }
        for invalid in [
            "",
            "ab",
            "Acme",
            "1acme",
            "acme-",
            "ac me",
            "acme.pay",
            "x".repeat(64).as_str(),
            "é-acme",
        ] {
            assert_eq!(
                TenantId::parse(invalid),
                Err(TenantError::InvalidTenantId),
                "{invalid}"
            );
        }
    }

    #[test]
    fn create_then_duplicate() {
        Test::with(())
            .given_no_previous_events()
            .when(create("acme", "  Acme Pay "))
            .then_expect_events(vec![created()]);
        Test::with(())
            .given(vec![created()])
            .when(create("acme", "Other"))
            .then_expect_error(TenantError::AlreadyExists);
    }

    #[test]
    fn names_are_validated() {
        Test::with(())
            .given_no_previous_events()
            .when(create("acme", "   "))
            .then_expect_error(TenantError::InvalidName);
        Test::with(())
            .given_no_previous_events()
            .when(create("acme", "a\u{7}b"))
            .then_expect_error(TenantError::InvalidName);
        Test::with(())
            .given(vec![created()])
            .when(TenantCommand::Rename {
                name: "x".repeat(101),
            })
            .then_expect_error(TenantError::InvalidName);
    }

    #[test]
    fn commands_on_a_missing_tenant_are_not_found() {
        for command in [
            TenantCommand::Rename { name: "x".into() },
            TenantCommand::Suspend {
                reason: "fraud".into(),
            },
            TenantCommand::Reactivate,
        ] {
            Test::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(TenantError::NotFound);
        }
    }

    #[test]
    fn rename_records_old_and_new_name_and_same_name_is_a_no_op() {
        Test::with(())
            .given(vec![created()])
            .when(TenantCommand::Rename {
                name: "Acme Payments".into(),
            })
            .then_expect_events(vec![TenantEvent::Renamed(pb::TenantRenamed {
                tenant_id: "acme".into(),
                old_name: "Acme Pay".into(),
                new_name: "Acme Payments".into(),
            })]);
        Test::with(())
            .given(vec![created()])
            .when(TenantCommand::Rename {
                name: "Acme Pay".into(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn suspend_and_reactivate_follow_the_lifecycle() {
        let suspended = TenantEvent::Suspended(pb::TenantSuspended {
            tenant_id: "acme".into(),
            reason: "chargebacks".into(),
        });
        Test::with(())
            .given(vec![created()])
            .when(TenantCommand::Suspend {
                reason: " chargebacks ".into(),
            })
            .then_expect_events(vec![suspended.clone()]);
        Test::with(())
            .given(vec![created(), suspended.clone()])
            .when(TenantCommand::Suspend {
                reason: "again".into(),
            })
            .then_expect_error(TenantError::AlreadySuspended);
        Test::with(())
            .given(vec![created()])
            .when(TenantCommand::Reactivate)
            .then_expect_error(TenantError::NotSuspended);
        Test::with(())
            .given(vec![created(), suspended])
            .when(TenantCommand::Reactivate)
            .then_expect_events(vec![TenantEvent::Reactivated(pb::TenantReactivated {
                tenant_id: "acme".into(),
            })]);
        Test::with(())
            .given(vec![created()])
            .when(TenantCommand::Suspend {
                reason: String::new(),
            })
            .then_expect_error(TenantError::InvalidReason);
    }
}
