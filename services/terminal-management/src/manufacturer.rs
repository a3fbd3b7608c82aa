//! The manufacturer CA aggregate: a terminal vendor's CA the platform trusts. Pure domain
//! logic; certificates and CRLs are parsed and checked (CA constraints, CRL signature) by
//! the caller, which hands in the facts.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::terminal_management as pb;
use serde::{Deserialize, Serialize};

use crate::estate::{parse_name, parse_reason};

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "manufacturer_ca";

/// Why a manufacturer CA command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// A field is malformed; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// Register on a registered CA.
    #[error("manufacturer CA already registered")]
    AlreadyRegistered,
    /// A command on an unknown or removed CA.
    #[error("manufacturer CA not found")]
    NotFound,
    /// A CRL not newer than the one in force (a rollback would un-revoke devices).
    #[error("crl_pem: the CRL is not newer than the one in force")]
    StaleCrl,
}

impl From<CaError> for ServiceError {
    fn from(error: CaError) -> Self {
        let message = error.to_string();
        match error {
            CaError::Invalid(_) => ServiceError::bad_request(message),
            CaError::AlreadyRegistered => ServiceError::already_exists(message),
            CaError::NotFound => ServiceError::not_found(message),
            CaError::StaleCrl => ServiceError::conflict(message),
        }
    }
}

/// What can be asked of a manufacturer CA.
#[derive(Clone, Debug, PartialEq)]
pub enum CaCommand {
    /// Trust a CA (its certificate already parsed and checked by the caller).
    Register(pb::ManufacturerCaRegistered),
    /// Replace its CRL (already checked to be signed by this CA).
    UpdateCrl(pb::ManufacturerCaCrlUpdated),
    /// Stop trusting it.
    Remove {
        /// Why.
        reason: String,
    },
}

mpos_es::proto_events! {
    /// Events of the manufacturer CA aggregate.
    pub enum CaEvent {
        /// Registered.
        Registered(pb::ManufacturerCaRegistered) = "mpos.terminal_management.v1.ManufacturerCaRegistered",
        /// CRL replaced.
        CrlUpdated(pb::ManufacturerCaCrlUpdated) = "mpos.terminal_management.v1.ManufacturerCaCrlUpdated",
        /// Removed.
        Removed(pb::ManufacturerCaRemoved) = "mpos.terminal_management.v1.ManufacturerCaRemoved",
    }
}

/// A CA's state as its commands need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManufacturerCa {
    ca_id: Option<String>,
    removed: bool,
    /// `this_update` of the CRL in force (µs), 0 without one.
    crl_this_update_us: i64,
}

fn micros(timestamp: Option<&pbjson_types::Timestamp>) -> i64 {
    timestamp.map_or(0, mpos_proto::timestamp_to_micros)
}

impl ManufacturerCa {
    fn decide(&self, command: CaCommand) -> Result<Vec<CaEvent>, CaError> {
        let registered = self.ca_id.is_some() && !self.removed;
        match command {
            CaCommand::Register(mut facts) => {
                if registered {
                    return Err(CaError::AlreadyRegistered);
                }
                facts.name =
                    parse_name(&facts.name).map_err(|error| CaError::Invalid(error.to_string()))?;
                if facts.ca_id.len() != 64 || facts.certificate_der.is_empty() {
                    return Err(CaError::Invalid(
                        "certificate_pem: no CA certificate".into(),
                    ));
                }
                Ok(vec![CaEvent::Registered(facts)])
            }
            CaCommand::UpdateCrl(facts) => {
                if !registered {
                    return Err(CaError::NotFound);
                }
                if micros(facts.this_update.as_ref()) <= self.crl_this_update_us {
                    return Err(CaError::StaleCrl);
                }
                Ok(vec![CaEvent::CrlUpdated(facts)])
            }
            CaCommand::Remove { reason } => {
                let Some(ca_id) = self.ca_id.clone().filter(|_| registered) else {
                    return Err(CaError::NotFound);
                };
                let reason =
                    parse_reason(&reason).map_err(|error| CaError::Invalid(error.to_string()))?;
                Ok(vec![CaEvent::Removed(pb::ManufacturerCaRemoved {
                    ca_id,
                    reason,
                })])
            }
        }
    }
}

impl Aggregate for ManufacturerCa {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = CaCommand;
    type Event = CaEvent;
    type Error = CaError;
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
            CaEvent::Registered(registered) => {
                self.ca_id = Some(registered.ca_id);
                self.removed = false;
                self.crl_this_update_us = 0;
            }
            CaEvent::CrlUpdated(updated) => {
                self.crl_this_update_us = micros(updated.this_update.as_ref());
            }
            CaEvent::Removed(_) => self.removed = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use mpos_es::ProtoEvent;

    use super::*;

    type Test = TestFramework<ManufacturerCa>;

    fn registered() -> pb::ManufacturerCaRegistered {
        pb::ManufacturerCaRegistered {
            ca_id: "ab".repeat(32),
            name: "Vendor A".into(),
            subject: "CN=Vendor A Device CA".into(),
            certificate_der: vec![0x30, 0x00],
            not_before: None,
            not_after: None,
        }
    }

    fn crl(this_update_us: i64) -> pb::ManufacturerCaCrlUpdated {
        pb::ManufacturerCaCrlUpdated {
            ca_id: "ab".repeat(32),
            crl_der: vec![0x30, 0x00],
            this_update: Some(mpos_proto::timestamp_from_micros(this_update_us)),
            next_update: None,
            revoked_count: 1,
        }
    }

    #[test]
    fn event_type_names_are_the_protobuf_names() {
        CaEvent::check_type_names().expect("names");
    }

    #[test]
    fn a_ca_registers_once_until_removed() {
        Test::with(())
            .given_no_previous_events()
            .when(CaCommand::Register(registered()))
            .then_expect_events(vec![CaEvent::Registered(registered())]);
        Test::with(())
            .given(vec![CaEvent::Registered(registered())])
            .when(CaCommand::Register(registered()))
            .then_expect_error(CaError::AlreadyRegistered);
        let removed = CaEvent::Removed(pb::ManufacturerCaRemoved {
            ca_id: "ab".repeat(32),
            reason: "vendor compromised".into(),
        });
        Test::with(())
            .given(vec![CaEvent::Registered(registered())])
            .when(CaCommand::Remove {
                reason: "vendor compromised".into(),
            })
            .then_expect_events(vec![removed.clone()]);
        Test::with(())
            .given(vec![CaEvent::Registered(registered()), removed.clone()])
            .when(CaCommand::Remove {
                reason: "again".into(),
            })
            .then_expect_error(CaError::NotFound);
        Test::with(())
            .given(vec![CaEvent::Registered(registered()), removed])
            .when(CaCommand::Register(registered()))
            .then_expect_events(vec![CaEvent::Registered(registered())]);
    }

    #[test]
    fn crls_only_move_forward() {
        Test::with(())
            .given(vec![CaEvent::Registered(registered())])
            .when(CaCommand::UpdateCrl(crl(1_000)))
            .then_expect_events(vec![CaEvent::CrlUpdated(crl(1_000))]);
        Test::with(())
            .given(vec![
                CaEvent::Registered(registered()),
                CaEvent::CrlUpdated(crl(1_000)),
            ])
            .when(CaCommand::UpdateCrl(crl(1_000)))
            .then_expect_error(CaError::StaleCrl);
        Test::with(())
            .given_no_previous_events()
            .when(CaCommand::UpdateCrl(crl(1_000)))
            .then_expect_error(CaError::NotFound);
    }

    #[test]
    fn names_and_certificates_are_required() {
        let mut nameless = registered();
        nameless.name = " ".into();
        Test::with(())
            .given_no_previous_events()
            .when(CaCommand::Register(nameless))
            .then_expect_error(CaError::Invalid(
                "name must be 1 to 100 characters without control characters".into(),
            ));
        let mut empty = registered();
        empty.certificate_der.clear();
        Test::with(())
            .given_no_previous_events()
            .when(CaCommand::Register(empty))
            .then_expect_error(CaError::Invalid(
                "certificate_pem: no CA certificate".into(),
            ));
    }
}
