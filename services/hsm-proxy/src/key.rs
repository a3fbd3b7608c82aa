//! The key aggregate: one entry of the key registry (metadata only). Pure domain logic.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_proto::hsm as pb;
use serde::{Deserialize, Serialize};

use crate::error::HsmError;
use crate::spec::KeySpec;

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "key";
/// Shortest waiting period of DeleteKey, in days.
pub const MIN_WAITING_DAYS: u32 = 3;
/// Longest waiting period of DeleteKey, in days.
pub const MAX_WAITING_DAYS: u32 = 180;
/// The waiting period when the request names none.
pub const DEFAULT_WAITING_DAYS: u32 = 7;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Validates an alias and returns it in its canonical form `alias/<name>`: 1 to 256
/// characters of letters, digits, `/`, `_` and `-` after the prefix.
pub fn parse_alias(raw: &str) -> Result<String, HsmError> {
    let trimmed = raw.trim();
    let name = trimmed.strip_prefix("alias/").unwrap_or(trimmed);
    let valid = (1..=256).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'));
    if valid {
        Ok(format!("alias/{name}"))
    } else {
        Err(HsmError::invalid(
            "alias",
            "must be 1 to 256 letters, digits, '/', '_' or '-' (after an optional 'alias/')",
        ))
    }
}

/// What can be asked of a key.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyCommand {
    /// Register a key a backend generated or imported.
    Create {
        /// The owning tenant.
        tenant_id: String,
        /// The new key's id.
        key_id: String,
        /// Its attributes.
        spec: KeySpec,
        /// Generated or imported.
        origin: pb::KeyOrigin,
        /// Its check value.
        kcv: String,
        /// Where it lives.
        backend_keys: Vec<pb::BackendKey>,
        /// An alias to set at once (canonical form), if any.
        alias: Option<String>,
        /// A DUKPT key set id from the import, if any.
        key_set_id: String,
    },
    /// Name the key (the caller checked that no other key of the tenant has the alias).
    SetAlias {
        /// Canonical alias.
        alias: String,
    },
    /// Remove the key's alias.
    RemoveAlias,
    /// Allow the key again.
    StartUsage,
    /// Refuse every operation with the key.
    StopUsage {
        /// Why (kept in the audit trail).
        reason: String,
    },
    /// Refuse the key now and delete it after the waiting period.
    ScheduleDeletion {
        /// Days to wait.
        waiting_period_days: u32,
        /// The current time.
        now_micros: i64,
    },
    /// Take back a scheduled deletion; the key comes back disabled.
    Restore,
    /// The waiting period is over: the key is gone from the backends.
    Purge {
        /// The current time.
        now_micros: i64,
    },
    /// The key was exported (under a wrapping key, or to a device): one event per export,
    /// several recorded together.
    RecordExports(Vec<pb::KeyExported>),
}

mpos_es::proto_events! {
    /// Events of the key aggregate.
    pub enum KeyEvent {
        /// Entered the registry.
        Created(pb::KeyCreated) = "mpos.hsm.v1.KeyCreated",
        /// Alias set.
        AliasSet(pb::KeyAliasSet) = "mpos.hsm.v1.KeyAliasSet",
        /// Alias removed.
        AliasRemoved(pb::KeyAliasRemoved) = "mpos.hsm.v1.KeyAliasRemoved",
        /// StartKeyUsage.
        UsageStarted(pb::KeyUsageStarted) = "mpos.hsm.v1.KeyUsageStarted",
        /// StopKeyUsage.
        UsageStopped(pb::KeyUsageStopped) = "mpos.hsm.v1.KeyUsageStopped",
        /// DeleteKey.
        DeletionScheduled(pb::KeyDeletionScheduled) = "mpos.hsm.v1.KeyDeletionScheduled",
        /// RestoreKey.
        DeletionCancelled(pb::KeyDeletionCancelled) = "mpos.hsm.v1.KeyDeletionCancelled",
        /// Deleted from every backend.
        Deleted(pb::KeyDeleted) = "mpos.hsm.v1.KeyDeleted",
        /// Exported.
        Exported(pb::KeyExported) = "mpos.hsm.v1.KeyExported",
    }
}

/// The key's state as its commands need it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    tenant_id: Option<String>,
    key_id: String,
    alias: String,
    state: i32,
    delete_after_micros: i64,
}

impl Key {
    fn state(&self) -> pb::KeyState {
        pb::KeyState::try_from(self.state).unwrap_or(pb::KeyState::Unspecified)
    }

    fn decide(&self, command: KeyCommand) -> Result<Vec<KeyEvent>, HsmError> {
        let Some(tenant_id) = self.tenant_id.clone() else {
            return match command {
                KeyCommand::Create {
                    tenant_id,
                    key_id,
                    spec,
                    origin,
                    kcv,
                    backend_keys,
                    alias,
                    key_set_id,
                } => {
                    let mut events = vec![KeyEvent::Created(pb::KeyCreated {
                        tenant_id: tenant_id.clone(),
                        key_id: key_id.clone(),
                        attributes: Some(spec.to_proto()),
                        origin: origin.into(),
                        kcv,
                        backend_keys,
                        key_set_id,
                    })];
                    if let Some(alias) = alias {
                        events.push(KeyEvent::AliasSet(pb::KeyAliasSet {
                            tenant_id,
                            key_id,
                            alias,
                            previous_alias: String::new(),
                        }));
                    }
                    Ok(events)
                }
                _ => Err(HsmError::KeyNotFound("no such key".into())),
            };
        };
        let key_id = self.key_id.clone();
        let state = self.state();
        if state == pb::KeyState::Deleted {
            return Err(HsmError::KeyState("the key is deleted".into()));
        }
        match command {
            KeyCommand::Create { .. } => Err(HsmError::AlreadyExists("key".into())),
            KeyCommand::SetAlias { alias } => {
                if alias == self.alias {
                    return Ok(Vec::new());
                }
                Ok(vec![KeyEvent::AliasSet(pb::KeyAliasSet {
                    tenant_id,
                    key_id,
                    alias,
                    previous_alias: self.alias.clone(),
                })])
            }
            KeyCommand::RemoveAlias => {
                if self.alias.is_empty() {
                    return Ok(Vec::new());
                }
                Ok(vec![KeyEvent::AliasRemoved(pb::KeyAliasRemoved {
                    tenant_id,
                    key_id,
                    alias: self.alias.clone(),
                })])
            }
            KeyCommand::StartUsage => match state {
                pb::KeyState::Enabled => Ok(Vec::new()),
                pb::KeyState::Disabled => Ok(vec![KeyEvent::UsageStarted(pb::KeyUsageStarted {
                    tenant_id,
                    key_id,
                })]),
                _ => Err(HsmError::KeyState(
                    "the key is pending deletion; restore it first".into(),
                )),
            },
            KeyCommand::StopUsage { reason } => {
                let reason = reason.trim().to_owned();
                if reason.chars().count() > 500 {
                    return Err(HsmError::invalid("reason", "at most 500 characters"));
                }
                match state {
                    pb::KeyState::Disabled => Ok(Vec::new()),
                    pb::KeyState::Enabled => {
                        Ok(vec![KeyEvent::UsageStopped(pb::KeyUsageStopped {
                            tenant_id,
                            key_id,
                            reason,
                        })])
                    }
                    _ => Err(HsmError::KeyState("the key is pending deletion".into())),
                }
            }
            KeyCommand::ScheduleDeletion {
                waiting_period_days,
                now_micros,
            } => {
                let days = if waiting_period_days == 0 {
                    DEFAULT_WAITING_DAYS
                } else {
                    waiting_period_days
                };
                if !(MIN_WAITING_DAYS..=MAX_WAITING_DAYS).contains(&days) {
                    return Err(HsmError::invalid(
                        "waitingPeriodDays",
                        format!("must be {MIN_WAITING_DAYS} to {MAX_WAITING_DAYS}"),
                    ));
                }
                if state == pb::KeyState::DeletePending {
                    return Err(HsmError::KeyState(
                        "the key is already pending deletion".into(),
                    ));
                }
                let delete_after = now_micros.saturating_add(i64::from(days) * MICROS_PER_DAY);
                Ok(vec![KeyEvent::DeletionScheduled(
                    pb::KeyDeletionScheduled {
                        tenant_id,
                        key_id,
                        delete_after: Some(mpos_proto::timestamp_from_micros(delete_after)),
                        waiting_period_days: days,
                    },
                )])
            }
            KeyCommand::Restore => {
                if state != pb::KeyState::DeletePending {
                    return Err(HsmError::KeyState("the key is not pending deletion".into()));
                }
                Ok(vec![KeyEvent::DeletionCancelled(
                    pb::KeyDeletionCancelled { tenant_id, key_id },
                )])
            }
            KeyCommand::Purge { now_micros } => {
                if state != pb::KeyState::DeletePending || now_micros < self.delete_after_micros {
                    return Err(HsmError::KeyState(
                        "the key's waiting period has not ended".into(),
                    ));
                }
                Ok(vec![KeyEvent::Deleted(pb::KeyDeleted {
                    tenant_id,
                    key_id,
                })])
            }
            KeyCommand::RecordExports(exports) => Ok(exports
                .into_iter()
                .map(|exported| {
                    KeyEvent::Exported(pb::KeyExported {
                        tenant_id: tenant_id.clone(),
                        key_id: key_id.clone(),
                        ..exported
                    })
                })
                .collect()),
        }
    }
}

impl Aggregate for Key {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = KeyCommand;
    type Event = KeyEvent;
    type Error = HsmError;
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
            KeyEvent::Created(created) => {
                self.tenant_id = Some(created.tenant_id);
                self.key_id = created.key_id;
                self.state = pb::KeyState::Enabled.into();
            }
            KeyEvent::AliasSet(set) => self.alias = set.alias,
            KeyEvent::AliasRemoved(_) => self.alias.clear(),
            KeyEvent::UsageStarted(_) => self.state = pb::KeyState::Enabled.into(),
            KeyEvent::UsageStopped(_) | KeyEvent::DeletionCancelled(_) => {
                self.state = pb::KeyState::Disabled.into();
            }
            KeyEvent::DeletionScheduled(scheduled) => {
                self.state = pb::KeyState::DeletePending.into();
                self.delete_after_micros = scheduled
                    .delete_after
                    .as_ref()
                    .map_or(0, mpos_proto::timestamp_to_micros);
            }
            KeyEvent::Deleted(_) => {
                self.state = pb::KeyState::Deleted.into();
                self.alias.clear();
            }
            KeyEvent::Exported(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use mpos_es::ProtoEvent;
    use paycrypto::tr31::{Exportability, KeyUsage, ModeOfUse};

    use super::*;
    use crate::spec::KeyAlgorithm;

    type Test = TestFramework<Key>;

    fn spec() -> KeySpec {
        KeySpec::new(
            KeyAlgorithm::Tdes2,
            KeyUsage::P0,
            ModeOfUse::Both,
            Exportability::NonExportable,
        )
        .expect("spec")
    }

    fn created() -> KeyEvent {
        KeyEvent::Created(pb::KeyCreated {
            tenant_id: "acme".into(),
            key_id: "k1".into(),
            attributes: Some(spec().to_proto()),
            origin: pb::KeyOrigin::Generated.into(),
            kcv: "08D7B4".into(),
            backend_keys: vec![pb::BackendKey {
                backend_id: "soft".into(),
                handle: "h".into(),
                kcv: "08D7B4".into(),
            }],
            key_set_id: String::new(),
        })
    }

    fn scheduled(at: i64) -> KeyEvent {
        KeyEvent::DeletionScheduled(pb::KeyDeletionScheduled {
            tenant_id: "acme".into(),
            key_id: "k1".into(),
            delete_after: Some(mpos_proto::timestamp_from_micros(at)),
            waiting_period_days: 7,
        })
    }

    #[test]
    fn event_type_names_are_the_protobuf_names() {
        KeyEvent::check_type_names().expect("names");
    }

    #[test]
    fn aliases_are_canonical_and_validated() {
        assert_eq!(parse_alias("pin/zpk-1").expect("ok"), "alias/pin/zpk-1");
        assert_eq!(parse_alias("alias/x").expect("ok"), "alias/x");
        for bad in ["", "alias/", "a b", "é", &"x".repeat(257)] {
            assert!(parse_alias(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_with_alias_then_duplicate() {
        let command = KeyCommand::Create {
            tenant_id: "acme".into(),
            key_id: "k1".into(),
            spec: spec(),
            origin: pb::KeyOrigin::Generated,
            kcv: "08D7B4".into(),
            backend_keys: vec![pb::BackendKey {
                backend_id: "soft".into(),
                handle: "h".into(),
                kcv: "08D7B4".into(),
            }],
            alias: Some("alias/zpk".into()),
            key_set_id: String::new(),
        };
        Test::with(())
            .given_no_previous_events()
            .when(command.clone())
            .then_expect_events(vec![
                created(),
                KeyEvent::AliasSet(pb::KeyAliasSet {
                    tenant_id: "acme".into(),
                    key_id: "k1".into(),
                    alias: "alias/zpk".into(),
                    previous_alias: String::new(),
                }),
            ]);
        Test::with(())
            .given(vec![created()])
            .when(command)
            .then_expect_error(HsmError::AlreadyExists("key".into()));
    }

    #[test]
    fn stop_start_and_no_ops() {
        Test::with(())
            .given(vec![created()])
            .when(KeyCommand::StartUsage)
            .then_expect_events(vec![]);
        Test::with(())
            .given(vec![created()])
            .when(KeyCommand::StopUsage {
                reason: " compromise suspected ".into(),
            })
            .then_expect_events(vec![KeyEvent::UsageStopped(pb::KeyUsageStopped {
                tenant_id: "acme".into(),
                key_id: "k1".into(),
                reason: "compromise suspected".into(),
            })]);
    }

    #[test]
    fn deletion_waits_and_can_be_restored() {
        Test::with(())
            .given(vec![created()])
            .when(KeyCommand::ScheduleDeletion {
                waiting_period_days: 0,
                now_micros: 1_000,
            })
            .then_expect_events(vec![scheduled(1_000 + 7 * MICROS_PER_DAY)]);
        Test::with(())
            .given(vec![created()])
            .when(KeyCommand::ScheduleDeletion {
                waiting_period_days: 2,
                now_micros: 0,
            })
            .then_expect_error(HsmError::invalid("waitingPeriodDays", "must be 3 to 180"));
        Test::with(())
            .given(vec![created(), scheduled(5_000)])
            .when(KeyCommand::Purge { now_micros: 4_999 })
            .then_expect_error(HsmError::KeyState(
                "the key's waiting period has not ended".into(),
            ));
        Test::with(())
            .given(vec![created(), scheduled(5_000)])
            .when(KeyCommand::Purge { now_micros: 5_000 })
            .then_expect_events(vec![KeyEvent::Deleted(pb::KeyDeleted {
                tenant_id: "acme".into(),
                key_id: "k1".into(),
            })]);
        Test::with(())
            .given(vec![created(), scheduled(5_000)])
            .when(KeyCommand::StartUsage)
            .then_expect_error(HsmError::KeyState(
                "the key is pending deletion; restore it first".into(),
            ));
        Test::with(())
            .given(vec![created(), scheduled(5_000)])
            .when(KeyCommand::Restore)
            .then_expect_events(vec![KeyEvent::DeletionCancelled(
                pb::KeyDeletionCancelled {
                    tenant_id: "acme".into(),
                    key_id: "k1".into(),
                },
            )]);
        Test::with(())
            .given(vec![created()])
            .when(KeyCommand::Restore)
            .then_expect_error(HsmError::KeyState("the key is not pending deletion".into()));
    }

    #[test]
    fn commands_on_a_missing_key_are_not_found() {
        Test::with(())
            .given_no_previous_events()
            .when(KeyCommand::StartUsage)
            .then_expect_error(HsmError::KeyNotFound("no such key".into()));
    }
}
