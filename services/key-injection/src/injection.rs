//! The injection aggregate: one remote key injection, a resumable state machine.
//!
//! ```text
//! requested ──key derived──▶ key derived ──delivered──▶ delivered ──confirmed (KCV)──▶ confirmed
//!     │                          │                          │
//!     └──────────────────────────┴──────────────────────────┴──▶ failed | expired
//! ```
//!
//! Every step is idempotent, so a process that crashed anywhere resumes by sending the step
//! again: recording the same derived key, delivering again or confirming again changes nothing.
//! A wrong KCV from the device, or a confirmation after the deadline, is recorded (failed or
//! expired) rather than refused, so the trail shows it. Pure domain logic: the caller supplies
//! the time.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::key_injection as pb;
use serde::{Deserialize, Serialize};

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "injection";

/// Where an injection is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Nothing yet.
    #[default]
    New,
    /// Requested.
    Requested,
    /// The key was derived and wrapped for the device.
    KeyDerived,
    /// The wrapped key was handed to the device.
    Delivered,
    /// The device confirmed the KCV.
    Confirmed,
    /// Failed.
    Failed,
    /// Not confirmed in time.
    Expired,
}

impl State {
    /// Lowercase name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Requested => "requested",
            Self::KeyDerived => "key derived",
            Self::Delivered => "delivered",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    /// Whether the injection is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Confirmed | Self::Failed | Self::Expired)
    }

    /// The API's enum.
    pub fn to_proto(self) -> pb::InjectionState {
        match self {
            Self::New => pb::InjectionState::Unspecified,
            Self::Requested => pb::InjectionState::Requested,
            Self::KeyDerived => pb::InjectionState::KeyDerived,
            Self::Delivered => pb::InjectionState::Delivered,
            Self::Confirmed => pb::InjectionState::Confirmed,
            Self::Failed => pb::InjectionState::Failed,
            Self::Expired => pb::InjectionState::Expired,
        }
    }
}

/// Why an injection command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InjectionError {
    /// A field is malformed; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// Request on an existing injection.
    #[error("injection already exists")]
    AlreadyExists,
    /// A command on an injection that does not exist.
    #[error("injection not found")]
    NotFound,
    /// Not allowed in the current state.
    #[error("the injection is {state}: it cannot be {action}")]
    IllegalTransition {
        /// The current state.
        state: &'static str,
        /// What was asked.
        action: &'static str,
    },
}

impl From<InjectionError> for ServiceError {
    fn from(error: InjectionError) -> Self {
        let message = error.to_string();
        match error {
            InjectionError::Invalid(_) => ServiceError::bad_request(message),
            InjectionError::AlreadyExists => ServiceError::already_exists(message),
            InjectionError::NotFound => ServiceError::not_found(message),
            InjectionError::IllegalTransition { .. } => ServiceError::conflict(message),
        }
    }
}

/// What can be asked of an injection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InjectionCommand {
    /// Start an injection.
    Request(pb::InjectionRequested),
    /// Record the derived, wrapped key (idempotent for the same identity).
    RecordKey {
        /// The device identity allocated for it.
        initial_key_id: String,
        /// KCV of the initial key.
        kcv: String,
        /// SHA-256 of the wrapped key block.
        key_block_sha256: String,
    },
    /// The wrapped key was handed to the device (idempotent).
    MarkDelivered,
    /// The device reports the KCV of the key it installed.
    Confirm {
        /// The KCV the device computed.
        kcv: String,
        /// Now (µs).
        now_us: i64,
    },
    /// Give up.
    Fail {
        /// Why.
        reason: String,
    },
    /// Expire it if its deadline passed.
    Expire {
        /// Now (µs).
        now_us: i64,
    },
}

mpos_es::proto_events! {
    /// Events of the injection aggregate.
    pub enum InjectionEvent {
        /// Requested.
        Requested(pb::InjectionRequested) = "mpos.key_injection.v1.InjectionRequested",
        /// Key derived and wrapped.
        KeyDerived(pb::InjectionKeyDerived) = "mpos.key_injection.v1.InjectionKeyDerived",
        /// Delivered.
        Delivered(pb::InjectionDelivered) = "mpos.key_injection.v1.InjectionDelivered",
        /// Confirmed.
        Confirmed(pb::InjectionConfirmed) = "mpos.key_injection.v1.InjectionConfirmed",
        /// Failed.
        Failed(pb::InjectionFailed) = "mpos.key_injection.v1.InjectionFailed",
        /// Expired.
        Expired(pb::InjectionExpired) = "mpos.key_injection.v1.InjectionExpired",
    }
}

/// An injection's state as its commands need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injection {
    tenant_id: String,
    injection_id: String,
    terminal_id: String,
    #[serde(default)]
    bdk_id: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    failure: String,
    state: State,
    initial_key_id: String,
    kcv: String,
    key_block_sha256: String,
    expires_at_us: i64,
}

fn is_hex(value: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    lengths.contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Injection {
    /// Where it is.
    pub fn state(&self) -> State {
        self.state
    }

    /// The terminal it is for.
    pub fn terminal_id(&self) -> &str {
        &self.terminal_id
    }

    /// The BDK its key derives from.
    pub fn bdk_id(&self) -> &str {
        &self.bdk_id
    }

    /// Why it was requested ("activation", "re-injection", "rotation").
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Why it failed, if it did.
    pub fn failure(&self) -> &str {
        &self.failure
    }

    /// The device identity, once the key was derived.
    pub fn initial_key_id(&self) -> &str {
        &self.initial_key_id
    }

    /// The KCV the device must confirm, once the key was derived.
    pub fn kcv(&self) -> &str {
        &self.kcv
    }

    /// The confirmation deadline (µs).
    pub fn expires_at_us(&self) -> i64 {
        self.expires_at_us
    }

    /// The state after `events`, from nothing (read back from the log).
    pub fn replay(events: impl IntoIterator<Item = InjectionEvent>) -> Self {
        let mut injection = Self::default();
        for event in events {
            cqrs_es::Aggregate::apply(&mut injection, event);
        }
        injection
    }

    fn illegal(&self, action: &'static str) -> InjectionError {
        InjectionError::IllegalTransition {
            state: self.state.name(),
            action,
        }
    }

    fn failed(&self, reason: String) -> InjectionEvent {
        InjectionEvent::Failed(pb::InjectionFailed {
            tenant_id: self.tenant_id.clone(),
            injection_id: self.injection_id.clone(),
            reason,
        })
    }

    fn request(request: pb::InjectionRequested) -> Result<Vec<InjectionEvent>, InjectionError> {
        if request.injection_id.is_empty() || request.terminal_id.is_empty() {
            return Err(InjectionError::Invalid(
                "injection_id and terminal_id are required".into(),
            ));
        }
        if request.bdk_id.is_empty() {
            return Err(InjectionError::Invalid("bdk_id: missing".into()));
        }
        if !matches!(
            pb::DeliveryMethod::try_from(request.method),
            Ok(pb::DeliveryMethod::Tr34 | pb::DeliveryMethod::EcdhTr31)
        ) {
            return Err(InjectionError::Invalid(
                "method must be DELIVERY_METHOD_TR34 or DELIVERY_METHOD_ECDH_TR31".into(),
            ));
        }
        if !is_hex(&request.device_certificate_sha256, 64..=64) {
            return Err(InjectionError::Invalid(
                "device_certificate_sha256: 64 hexadecimal digits".into(),
            ));
        }
        if request.expires_at.is_none() {
            return Err(InjectionError::Invalid("expires_at: missing".into()));
        }
        Ok(vec![InjectionEvent::Requested(request)])
    }

    fn decide(&self, command: InjectionCommand) -> Result<Vec<InjectionEvent>, InjectionError> {
        if self.state == State::New {
            return match command {
                InjectionCommand::Request(request) => Self::request(request),
                _ => Err(InjectionError::NotFound),
            };
        }
        let (tenant_id, injection_id) = (self.tenant_id.clone(), self.injection_id.clone());
        match command {
            InjectionCommand::Request(_) => Err(InjectionError::AlreadyExists),
            InjectionCommand::RecordKey {
                initial_key_id,
                kcv,
                key_block_sha256,
            } => {
                if self.state != State::Requested {
                    // Resuming after a crash: the same key recorded again changes nothing.
                    if matches!(self.state, State::KeyDerived | State::Delivered)
                        && initial_key_id == self.initial_key_id
                    {
                        return Ok(Vec::new());
                    }
                    return Err(self.illegal("given a key"));
                }
                if !is_hex(&initial_key_id, 16..=20) {
                    return Err(InjectionError::Invalid(
                        "initial_key_id: a KSN (20) or initial key id (16 hexadecimal digits)"
                            .into(),
                    ));
                }
                if !is_hex(&kcv, 6..=16) || !is_hex(&key_block_sha256, 64..=64) {
                    return Err(InjectionError::Invalid(
                        "kcv or key_block_sha256 malformed".into(),
                    ));
                }
                Ok(vec![InjectionEvent::KeyDerived(pb::InjectionKeyDerived {
                    tenant_id,
                    injection_id,
                    initial_key_id: initial_key_id.to_ascii_uppercase(),
                    kcv: kcv.to_ascii_uppercase(),
                    key_block_sha256: key_block_sha256.to_ascii_lowercase(),
                })])
            }
            InjectionCommand::MarkDelivered => match self.state {
                State::KeyDerived => Ok(vec![InjectionEvent::Delivered(pb::InjectionDelivered {
                    tenant_id,
                    injection_id,
                })]),
                State::Delivered => Ok(Vec::new()),
                _ => Err(self.illegal("delivered")),
            },
            InjectionCommand::Confirm { kcv, now_us } => match self.state {
                // The device retries: the same confirmation changes nothing.
                State::Confirmed if kcv.eq_ignore_ascii_case(&self.kcv) => Ok(Vec::new()),
                // Delivered, or derived and delivered just before a crash.
                State::KeyDerived | State::Delivered => {
                    if now_us > self.expires_at_us {
                        return Ok(vec![InjectionEvent::Expired(pb::InjectionExpired {
                            tenant_id,
                            injection_id,
                        })]);
                    }
                    if !kcv.eq_ignore_ascii_case(&self.kcv) {
                        return Ok(vec![self.failed(format!(
                            "the device confirmed KCV {}, the key injected has another",
                            kcv.chars()
                                .filter(char::is_ascii_hexdigit)
                                .take(16)
                                .collect::<String>()
                        ))]);
                    }
                    Ok(vec![InjectionEvent::Confirmed(pb::InjectionConfirmed {
                        tenant_id,
                        injection_id,
                        terminal_id: self.terminal_id.clone(),
                        initial_key_id: self.initial_key_id.clone(),
                        kcv: self.kcv.clone(),
                    })])
                }
                _ => Err(self.illegal("confirmed")),
            },
            InjectionCommand::Fail { reason } => {
                if self.state.is_final() {
                    return Err(self.illegal("failed"));
                }
                let reason = reason.trim().to_owned();
                if reason.is_empty() || reason.chars().count() > 500 {
                    return Err(InjectionError::Invalid(
                        "reason must be 1 to 500 characters".into(),
                    ));
                }
                Ok(vec![self.failed(reason)])
            }
            InjectionCommand::Expire { now_us } => {
                if self.state.is_final() {
                    return Err(self.illegal("expired"));
                }
                if now_us <= self.expires_at_us {
                    return Err(InjectionError::Invalid(
                        "the injection has not reached its deadline".into(),
                    ));
                }
                Ok(vec![InjectionEvent::Expired(pb::InjectionExpired {
                    tenant_id,
                    injection_id,
                })])
            }
        }
    }
}

impl Aggregate for Injection {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = InjectionCommand;
    type Event = InjectionEvent;
    type Error = InjectionError;
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
            InjectionEvent::Requested(requested) => {
                self.tenant_id = requested.tenant_id;
                self.injection_id = requested.injection_id;
                self.terminal_id = requested.terminal_id;
                self.bdk_id = requested.bdk_id;
                self.reason = requested.reason;
                self.expires_at_us = requested
                    .expires_at
                    .as_ref()
                    .map_or(0, mpos_proto::timestamp_to_micros);
                self.state = State::Requested;
            }
            InjectionEvent::KeyDerived(derived) => {
                self.initial_key_id = derived.initial_key_id;
                self.kcv = derived.kcv;
                self.key_block_sha256 = derived.key_block_sha256;
                self.state = State::KeyDerived;
            }
            InjectionEvent::Delivered(_) => self.state = State::Delivered,
            InjectionEvent::Confirmed(_) => self.state = State::Confirmed,
            InjectionEvent::Failed(failed) => {
                self.failure = failed.reason;
                self.state = State::Failed;
            }
            InjectionEvent::Expired(_) => self.state = State::Expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use mpos_es::ProtoEvent;

    use super::*;

    type Test = TestFramework<Injection>;

    const DEADLINE: i64 = 1_000_000;
    const KSN: &str = "FFFF9876543210E00000";

    fn requested() -> pb::InjectionRequested {
        pb::InjectionRequested {
            tenant_id: "acme".into(),
            injection_id: "acme/t-1/1".into(),
            terminal_id: "t-1".into(),
            bdk_id: "bdk-2026".into(),
            method: pb::DeliveryMethod::Tr34.into(),
            device_certificate_sha256: "ab".repeat(32),
            reason: "activation".into(),
            expires_at: Some(mpos_proto::timestamp_from_micros(DEADLINE)),
        }
    }

    fn derived() -> InjectionEvent {
        InjectionEvent::KeyDerived(pb::InjectionKeyDerived {
            tenant_id: "acme".into(),
            injection_id: "acme/t-1/1".into(),
            initial_key_id: KSN.into(),
            kcv: "AF8C8B".into(),
            key_block_sha256: "cd".repeat(32),
        })
    }

    fn delivered() -> InjectionEvent {
        InjectionEvent::Delivered(pb::InjectionDelivered {
            tenant_id: "acme".into(),
            injection_id: "acme/t-1/1".into(),
        })
    }

    fn record(ksn: &str) -> InjectionCommand {
        InjectionCommand::RecordKey {
            initial_key_id: ksn.into(),
            kcv: "af8c8b".into(),
            key_block_sha256: "CD".repeat(32),
        }
    }

    fn confirm(kcv: &str, now_us: i64) -> InjectionCommand {
        InjectionCommand::Confirm {
            kcv: kcv.into(),
            now_us,
        }
    }

    fn confirmed() -> InjectionEvent {
        InjectionEvent::Confirmed(pb::InjectionConfirmed {
            tenant_id: "acme".into(),
            injection_id: "acme/t-1/1".into(),
            terminal_id: "t-1".into(),
            initial_key_id: KSN.into(),
            kcv: "AF8C8B".into(),
        })
    }

    fn start() -> Vec<InjectionEvent> {
        vec![InjectionEvent::Requested(requested())]
    }

    #[test]
    fn event_type_names_are_the_protobuf_names() {
        InjectionEvent::check_type_names().expect("names");
    }

    #[test]
    fn the_happy_path_requested_derived_delivered_confirmed() {
        Test::with(())
            .given_no_previous_events()
            .when(InjectionCommand::Request(requested()))
            .then_expect_events(start());
        Test::with(())
            .given(start())
            .when(record(KSN))
            .then_expect_events(vec![derived()]);
        Test::with(())
            .given(vec![InjectionEvent::Requested(requested()), derived()])
            .when(InjectionCommand::MarkDelivered)
            .then_expect_events(vec![delivered()]);
        Test::with(())
            .given(vec![
                InjectionEvent::Requested(requested()),
                derived(),
                delivered(),
            ])
            .when(confirm("af8c8b", DEADLINE))
            .then_expect_events(vec![confirmed()]);
    }

    #[test]
    fn every_step_resumes_idempotently_after_a_crash() {
        let after_derive = || vec![InjectionEvent::Requested(requested()), derived()];
        // The same key recorded again (the process crashed after the event, before replying).
        Test::with(())
            .given(after_derive())
            .when(record(KSN))
            .then_expect_events(vec![]);
        // Another identity for the same injection is refused: one device, one KSN.
        Test::with(())
            .given(after_derive())
            .when(record("FFFF9876543210E00000".replace("E0", "C0").as_str()))
            .then_expect_error(InjectionError::IllegalTransition {
                state: "key derived",
                action: "given a key",
            });
        let mut delivered_events = after_derive();
        delivered_events.push(delivered());
        Test::with(())
            .given(delivered_events.clone())
            .when(InjectionCommand::MarkDelivered)
            .then_expect_events(vec![]);
        // The device confirms although the delivery was never recorded (crash in between).
        Test::with(())
            .given(after_derive())
            .when(confirm("AF8C8B", 10))
            .then_expect_events(vec![confirmed()]);
        let mut done = delivered_events;
        done.push(confirmed());
        Test::with(())
            .given(done)
            .when(confirm("AF8C8B", 10))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_wrong_kcv_or_a_late_confirmation_is_recorded() {
        let ready = || {
            vec![
                InjectionEvent::Requested(requested()),
                derived(),
                delivered(),
            ]
        };
        Test::with(())
            .given(ready())
            .when(confirm("000000", 10))
            .then_expect_events(vec![InjectionEvent::Failed(pb::InjectionFailed {
                tenant_id: "acme".into(),
                injection_id: "acme/t-1/1".into(),
                reason: "the device confirmed KCV 000000, the key injected has another".into(),
            })]);
        Test::with(())
            .given(ready())
            .when(confirm("AF8C8B", DEADLINE + 1))
            .then_expect_events(vec![InjectionEvent::Expired(pb::InjectionExpired {
                tenant_id: "acme".into(),
                injection_id: "acme/t-1/1".into(),
            })]);
        Test::with(())
            .given(start())
            .when(InjectionCommand::Expire { now_us: DEADLINE })
            .then_expect_error(InjectionError::Invalid(
                "the injection has not reached its deadline".into(),
            ));
        Test::with(())
            .given(start())
            .when(InjectionCommand::Expire {
                now_us: DEADLINE + 1,
            })
            .then_expect_events(vec![InjectionEvent::Expired(pb::InjectionExpired {
                tenant_id: "acme".into(),
                injection_id: "acme/t-1/1".into(),
            })]);
    }

    #[test]
    fn finished_injections_stay_finished_and_bad_requests_are_typed() {
        let failed = InjectionEvent::Failed(pb::InjectionFailed {
            tenant_id: "acme".into(),
            injection_id: "acme/t-1/1".into(),
            reason: "hsm refused".into(),
        });
        for (command, action) in [
            (InjectionCommand::MarkDelivered, "delivered"),
            (confirm("AF8C8B", 1), "confirmed"),
            (
                InjectionCommand::Fail {
                    reason: "again".into(),
                },
                "failed",
            ),
            (record(KSN), "given a key"),
        ] {
            Test::with(())
                .given(vec![InjectionEvent::Requested(requested()), failed.clone()])
                .when(command)
                .then_expect_error(InjectionError::IllegalTransition {
                    state: "failed",
                    action,
                });
        }
        let mut bad = requested();
        bad.method = pb::DeliveryMethod::Unspecified.into();
        Test::with(())
            .given_no_previous_events()
            .when(InjectionCommand::Request(bad))
            .then_expect_error(InjectionError::Invalid(
                "method must be DELIVERY_METHOD_TR34 or DELIVERY_METHOD_ECDH_TR31".into(),
            ));
        let mut bad = requested();
        bad.device_certificate_sha256 = "zz".into();
        Test::with(())
            .given_no_previous_events()
            .when(InjectionCommand::Request(bad))
            .then_expect_error(InjectionError::Invalid(
                "device_certificate_sha256: 64 hexadecimal digits".into(),
            ));
        Test::with(())
            .given(start())
            .when(InjectionCommand::Request(requested()))
            .then_expect_error(InjectionError::AlreadyExists);
        Test::with(())
            .given_no_previous_events()
            .when(InjectionCommand::MarkDelivered)
            .then_expect_error(InjectionError::NotFound);
    }
}
