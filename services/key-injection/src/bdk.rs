//! The BDK aggregate: one of a tenant's base derivation keys (held in the hsm-proxy) and the
//! device identities allocated from it. Allocation only moves forward: the log is the counter,
//! so no identity is handed out twice, across restarts and replays alike. Pure domain logic.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::key_injection as pb;
use serde::{Deserialize, Serialize};

use crate::device_id::{DeviceIdError, Scheme};

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "bdk";

/// Why a BDK command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BdkError {
    /// A field is malformed; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// Assign on an assigned BDK.
    #[error("bdk already assigned")]
    AlreadyAssigned,
    /// A command on a BDK that was never assigned.
    #[error("bdk not found")]
    NotFound,
    /// Allocation from a retired BDK.
    #[error("bdk is retired: new devices get the tenant's current BDK")]
    Retired,
    /// The identity scheme refused.
    #[error(transparent)]
    DeviceId(#[from] DeviceIdError),
}

impl From<BdkError> for ServiceError {
    fn from(error: BdkError) -> Self {
        let message = error.to_string();
        match error {
            BdkError::Invalid(_)
            | BdkError::DeviceId(DeviceIdError::Algorithm | DeviceIdError::KeySetId(_)) => {
                ServiceError::bad_request(message)
            }
            BdkError::AlreadyAssigned => ServiceError::already_exists(message),
            BdkError::NotFound => ServiceError::not_found(message),
            BdkError::Retired | BdkError::DeviceId(DeviceIdError::Exhausted(_)) => {
                ServiceError::conflict(message)
            }
        }
    }
}

/// What can be asked of a BDK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BdkCommand {
    /// Assign a BDK of the hsm-proxy to the tenant.
    Assign {
        /// The tenant.
        tenant_id: String,
        /// The tenant's name for it.
        bdk_id: String,
        /// The key in the hsm-proxy.
        hsm_key_id: String,
        /// TDES or AES DUKPT.
        algorithm: pb::DukptAlgorithm,
        /// Key set identifier (TDES) or BDK id (AES), hex.
        key_set_id: String,
        /// The BDK's KCV, as the hsm-proxy reports it.
        kcv: String,
    },
    /// Hand the next device identities to injections, one each in order (all or none).
    Allocate {
        /// (terminal, injection) of each device.
        devices: Vec<(String, String)>,
    },
    /// Stop serving new devices.
    Retire {
        /// Why.
        reason: String,
    },
}

mpos_es::proto_events! {
    /// Events of the BDK aggregate.
    pub enum BdkEvent {
        /// Assigned.
        Assigned(pb::BdkAssigned) = "mpos.key_injection.v1.BdkAssigned",
        /// A device identity allocated.
        DeviceIdAllocated(pb::DeviceIdAllocated) = "mpos.key_injection.v1.DeviceIdAllocated",
        /// Retired.
        Retired(pb::BdkRetired) = "mpos.key_injection.v1.BdkRetired",
    }
}

/// A BDK's state as its commands need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bdk {
    tenant_id: String,
    bdk_id: Option<String>,
    algorithm: i32,
    key_set_id: String,
    /// The number the next device gets.
    next_index: u64,
    retired: bool,
}

impl Bdk {
    fn scheme(&self) -> Result<Scheme, BdkError> {
        let algorithm =
            pb::DukptAlgorithm::try_from(self.algorithm).unwrap_or(pb::DukptAlgorithm::Unspecified);
        Ok(Scheme::parse(algorithm, &self.key_set_id)?)
    }

    fn decide(&self, command: BdkCommand) -> Result<Vec<BdkEvent>, BdkError> {
        let Some(bdk_id) = self.bdk_id.clone() else {
            let BdkCommand::Assign {
                tenant_id,
                bdk_id,
                hsm_key_id,
                algorithm,
                key_set_id,
                kcv,
            } = command
            else {
                return Err(BdkError::NotFound);
            };
            let scheme = Scheme::parse(algorithm, &key_set_id)?;
            if hsm_key_id.trim().is_empty() {
                return Err(BdkError::Invalid("hsm_key_id: missing".into()));
            }
            if !(6..=16).contains(&kcv.len()) || !kcv.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BdkError::Invalid("kcv: 6 to 16 hexadecimal digits".into()));
            }
            return Ok(vec![BdkEvent::Assigned(pb::BdkAssigned {
                tenant_id,
                bdk_id,
                hsm_key_id,
                algorithm: algorithm.into(),
                key_set_id: scheme.key_set_id(),
                kcv: kcv.to_ascii_uppercase(),
            })]);
        };
        let tenant_id = self.tenant_id.clone();
        match command {
            BdkCommand::Assign { .. } => Err(BdkError::AlreadyAssigned),
            BdkCommand::Allocate { devices } => {
                if self.retired {
                    return Err(BdkError::Retired);
                }
                let scheme = self.scheme()?;
                let mut events = Vec::with_capacity(devices.len());
                for (device_index, (terminal_id, injection_id)) in (self.next_index..).zip(devices)
                {
                    events.push(BdkEvent::DeviceIdAllocated(pb::DeviceIdAllocated {
                        tenant_id: tenant_id.clone(),
                        bdk_id: bdk_id.clone(),
                        device_index,
                        initial_key_id: scheme.initial_key_id(device_index)?,
                        terminal_id,
                        injection_id,
                    }));
                }
                Ok(events)
            }
            BdkCommand::Retire { reason } => {
                if self.retired {
                    return Err(BdkError::Retired);
                }
                let reason = reason.trim().to_owned();
                if reason.is_empty() || reason.chars().count() > 500 {
                    return Err(BdkError::Invalid(
                        "reason must be 1 to 500 characters".into(),
                    ));
                }
                Ok(vec![BdkEvent::Retired(pb::BdkRetired {
                    tenant_id,
                    bdk_id,
                    reason,
                })])
            }
        }
    }
}

impl Aggregate for Bdk {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = BdkCommand;
    type Event = BdkEvent;
    type Error = BdkError;
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
            BdkEvent::Assigned(assigned) => {
                self.tenant_id = assigned.tenant_id;
                self.bdk_id = Some(assigned.bdk_id);
                self.algorithm = assigned.algorithm;
                self.key_set_id = assigned.key_set_id;
            }
            BdkEvent::DeviceIdAllocated(allocated) => {
                // The log is the counter: never step back, whatever order a replay shows.
                self.next_index = self.next_index.max(allocated.device_index + 1);
            }
            BdkEvent::Retired(_) => self.retired = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use mpos_es::ProtoEvent;

    use super::*;

    type Test = TestFramework<Bdk>;

    fn assigned() -> BdkEvent {
        BdkEvent::Assigned(pb::BdkAssigned {
            tenant_id: "acme".into(),
            bdk_id: "bdk-2026".into(),
            hsm_key_id: "alias/bdk-2026".into(),
            algorithm: pb::DukptAlgorithm::Tdes.into(),
            key_set_id: "FFFF987654".into(),
            kcv: "08D7B4".into(),
        })
    }

    fn allocated(index: u64, ksn: &str, injection: &str) -> BdkEvent {
        BdkEvent::DeviceIdAllocated(pb::DeviceIdAllocated {
            tenant_id: "acme".into(),
            bdk_id: "bdk-2026".into(),
            device_index: index,
            initial_key_id: ksn.into(),
            terminal_id: "t-1".into(),
            injection_id: injection.into(),
        })
    }

    fn allocate(injection: &str) -> BdkCommand {
        BdkCommand::Allocate {
            devices: vec![("t-1".into(), injection.into())],
        }
    }

    #[test]
    fn event_type_names_are_the_protobuf_names() {
        BdkEvent::check_type_names().expect("names");
    }

    #[test]
    fn a_bdk_is_assigned_once_with_a_valid_scheme() {
        Test::with(())
            .given_no_previous_events()
            .when(BdkCommand::Assign {
                tenant_id: "acme".into(),
                bdk_id: "bdk-2026".into(),
                hsm_key_id: "alias/bdk-2026".into(),
                algorithm: pb::DukptAlgorithm::Tdes,
                key_set_id: "ffff987654".into(),
                kcv: "08d7b4".into(),
            })
            .then_expect_events(vec![assigned()]);
        Test::with(())
            .given(vec![assigned()])
            .when(BdkCommand::Assign {
                tenant_id: "acme".into(),
                bdk_id: "bdk-2026".into(),
                hsm_key_id: "x".into(),
                algorithm: pb::DukptAlgorithm::Tdes,
                key_set_id: "FFFF987654".into(),
                kcv: "08D7B4".into(),
            })
            .then_expect_error(BdkError::AlreadyAssigned);
        Test::with(())
            .given_no_previous_events()
            .when(BdkCommand::Assign {
                tenant_id: "acme".into(),
                bdk_id: "b".into(),
                hsm_key_id: "k".into(),
                algorithm: pb::DukptAlgorithm::Aes128,
                key_set_id: "FFFF987654".into(),
                kcv: "08D7B4".into(),
            })
            .then_expect_error(BdkError::DeviceId(DeviceIdError::KeySetId(8)));
    }

    #[test]
    fn allocations_move_forward_and_never_repeat() {
        Test::with(())
            .given(vec![assigned()])
            .when(allocate("i-1"))
            .then_expect_events(vec![allocated(0, "FFFF9876540000000000", "i-1")]);
        Test::with(())
            .given(vec![
                assigned(),
                allocated(0, "FFFF9876540000000000", "i-1"),
                allocated(1, "FFFF9876540000200000", "i-2"),
            ])
            .when(allocate("i-3"))
            .then_expect_events(vec![allocated(2, "FFFF9876540000400000", "i-3")]);
        // An identity allocated to an injection that never finished is skipped, not reused:
        // allocating again for the same injection gets the next one.
        Test::with(())
            .given(vec![
                assigned(),
                allocated(0, "FFFF9876540000000000", "i-1"),
            ])
            .when(allocate("i-1"))
            .then_expect_events(vec![allocated(1, "FFFF9876540000200000", "i-1")]);
    }

    #[test]
    fn several_devices_get_consecutive_identities_in_one_decision() {
        Test::with(())
            .given(vec![
                assigned(),
                allocated(0, "FFFF9876540000000000", "i-1"),
            ])
            .when(BdkCommand::Allocate {
                devices: vec![("t-1".into(), "i-2".into()), ("t-1".into(), "i-3".into())],
            })
            .then_expect_events(vec![
                allocated(1, "FFFF9876540000200000", "i-2"),
                allocated(2, "FFFF9876540000400000", "i-3"),
            ]);
        // All or none: a batch that would run past the last identity allocates nothing.
        Test::with(())
            .given(vec![
                assigned(),
                allocated(524_286, "FFFF987654FFFFC00000", "i-before-last"),
            ])
            .when(BdkCommand::Allocate {
                devices: vec![
                    ("t-1".into(), "i-last".into()),
                    ("t-1".into(), "i-none".into()),
                ],
            })
            .then_expect_error(BdkError::DeviceId(DeviceIdError::Exhausted(524_288)));
    }

    #[test]
    fn a_retired_or_full_bdk_allocates_nothing() {
        let retired = BdkEvent::Retired(pb::BdkRetired {
            tenant_id: "acme".into(),
            bdk_id: "bdk-2026".into(),
            reason: "rotation".into(),
        });
        Test::with(())
            .given(vec![assigned(), retired])
            .when(allocate("i-9"))
            .then_expect_error(BdkError::Retired);
        Test::with(())
            .given(vec![
                assigned(),
                allocated(524_287, "FFFF987654FFFFE00000", "i-last"),
            ])
            .when(allocate("i-9"))
            .then_expect_error(BdkError::DeviceId(DeviceIdError::Exhausted(524_288)));
        Test::with(())
            .given_no_previous_events()
            .when(allocate("i-1"))
            .then_expect_error(BdkError::NotFound);
    }
}
