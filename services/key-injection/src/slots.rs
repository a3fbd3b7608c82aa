//! The key slot inventory of one terminal (aggregate `device_keys`, id
//! `<tenant>/<terminal id>`): which DUKPT key each slot holds, since when and until when,
//! whether it was revoked, and the alarms raised for it ([`alarms`](crate::alarms) decides
//! when).
//!
//! Usage reports are not recorded: a counter report only leaves a trace when it raises an
//! alarm, so the inventory's counter is the counter *as of the last counter alarm*. Every
//! alarm is raised once per kind and severity for one installed key (a warning, later a
//! critical, never the same twice); a new install in the slot starts over. A revoked slot takes
//! no usage reports and raises no alarms. Failed injections are counted per terminal; the
//! streak raises one alarm when it reaches [`alarms::FAILED_INJECTIONS_ALARM`] and ends with an
//! install or a successful injection.
//!
//! No command or event carries key material: keys are named by initial KSN / initial key id and
//! KCV. Pure domain logic: the caller supplies the time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::key_injection as pb;
use serde::{Deserialize, Serialize};

use crate::alarms::{self, Severity};

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "device_keys";

/// The slot of a device's DUKPT initial key.
pub const DUKPT_SLOT: &str = "dukpt";

/// The longest slot name.
const SLOT_MAX_LEN: usize = 32;
/// The longest revocation or failure reason.
const REASON_MAX_CHARS: usize = 500;
/// One day, in microseconds.
const DAY_US: i64 = 24 * 3600 * 1_000_000;

/// The aggregate id of a terminal's key slots.
pub fn aggregate_id(tenant_id: &str, terminal_id: &str) -> String {
    format!("{tenant_id}/{terminal_id}")
}

/// Why a key slot command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// A field is malformed; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// No key was ever installed in the slot.
    #[error("no key installed in slot {0}")]
    NotFound(String),
    /// The slot's key was revoked: it takes no usage reports.
    #[error("the key in slot {0} was revoked")]
    Revoked(String),
}

impl From<SlotError> for ServiceError {
    fn from(error: SlotError) -> Self {
        let message = error.to_string();
        match error {
            SlotError::Invalid(_) => ServiceError::bad_request(message),
            SlotError::NotFound(_) => ServiceError::not_found(message),
            SlotError::Revoked(_) => ServiceError::conflict(message),
        }
    }
}

/// What can be asked of a terminal's key slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceKeysCommand {
    /// The device confirmed an injection: the slot holds its key from now on (idempotent for
    /// the same injection).
    Install {
        /// The tenant.
        tenant_id: String,
        /// The terminal.
        terminal_id: String,
        /// The device's key slot, e.g. "dukpt".
        slot: String,
        /// TDES or AES DUKPT.
        algorithm: pb::DukptAlgorithm,
        /// The BDK it derives from.
        bdk_id: String,
        /// TDES: the initial KSN (20 hex digits); AES: the initial key id (16).
        initial_key_id: String,
        /// KCV of the initial key.
        kcv: String,
        /// The injection that installed it.
        injection_id: String,
        /// When (µs since the epoch).
        installed_at_us: i64,
        /// How long the key may serve.
        cryptoperiod: Duration,
    },
    /// Revoke every installed key of the terminal (e.g. it was blacklisted).
    Revoke {
        /// Why.
        reason: String,
    },
    /// The device's last DUKPT counter used in a slot.
    ReportCounter {
        /// The slot.
        slot: String,
        /// The KSN's transaction counter.
        ksn_counter: u32,
        /// Now (µs).
        now_us: i64,
    },
    /// Raise the cryptoperiod alarms due at `now_us`.
    CheckCryptoperiod {
        /// Now (µs).
        now_us: i64,
    },
    /// An injection of the terminal failed.
    RecordInjectionFailure {
        /// The tenant (the terminal may have no key yet).
        tenant_id: String,
        /// The terminal.
        terminal_id: String,
        /// The injection.
        injection_id: String,
        /// Why.
        reason: String,
        /// Now (µs).
        now_us: i64,
    },
    /// An injection of the terminal succeeded: a failure streak is over.
    RecordInjectionSuccess {
        /// The injection.
        injection_id: String,
    },
}

mpos_es::proto_events! {
    /// Events of the key slot inventory.
    pub enum DeviceKeysEvent {
        /// A key installed in a slot.
        Installed(pb::KeySlotInstalled) = "mpos.key_injection.v1.KeySlotInstalled",
        /// A slot's key revoked.
        Revoked(pb::KeySlotRevoked) = "mpos.key_injection.v1.KeySlotRevoked",
        /// An alarm raised.
        AlarmRaised(pb::KeySlotAlarmRaised) = "mpos.key_injection.v1.KeySlotAlarmRaised",
        /// An injection failed.
        InjectionFailureRecorded(pb::InjectionFailureRecorded) =
            "mpos.key_injection.v1.InjectionFailureRecorded",
        /// A failure streak ended with a successful injection.
        InjectionFailureStreakEnded(pb::InjectionFailureStreakEnded) =
            "mpos.key_injection.v1.InjectionFailureStreakEnded",
    }
}

/// One slot as the inventory shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotView {
    /// The slot's name.
    pub slot: String,
    /// TDES or AES DUKPT.
    pub algorithm: pb::DukptAlgorithm,
    /// The BDK the key derives from.
    pub bdk_id: String,
    /// Initial KSN (TDES) or initial key id (AES).
    pub initial_key_id: String,
    /// KCV of the initial key.
    pub kcv: String,
    /// The injection that installed it.
    pub injection_id: String,
    /// When it was installed (µs).
    pub injected_at_us: i64,
    /// When its cryptoperiod ends (µs).
    pub cryptoperiod_ends_at_us: i64,
    /// Revoked.
    pub revoked: bool,
    /// The DUKPT counter as of the last counter alarm.
    pub last_counter: Option<u32>,
    /// Transactions left as of the last counter alarm.
    pub remaining: Option<u64>,
    /// The alarms raised for the key, oldest first.
    pub alarms: Vec<(pb::KeyAlarmKind, pb::KeyAlarmSeverity)>,
}

/// A slot's key, in the aggregate's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Slot {
    algorithm: i32,
    bdk_id: String,
    initial_key_id: String,
    kcv: String,
    injection_id: String,
    installed_at_us: i64,
    cryptoperiod_ends_at_us: i64,
    revoked: bool,
    last_counter: Option<u32>,
    remaining: Option<u64>,
    /// (kind, severity) as the protobuf enums' numbers.
    alarms: Vec<(i32, i32)>,
}

impl Slot {
    fn algorithm(&self) -> pb::DukptAlgorithm {
        pb::DukptAlgorithm::try_from(self.algorithm).unwrap_or(pb::DukptAlgorithm::Unspecified)
    }

    /// Whether an alarm of `kind` at least as severe as `severity` was raised for this key.
    fn raised(&self, kind: pb::KeyAlarmKind, severity: pb::KeyAlarmSeverity) -> bool {
        raised(
            self.alarms.iter().filter(|(k, _)| *k == i32::from(kind)),
            severity,
        )
    }
}

/// Whether one of `alarms` (kind, severity) is at least as severe as `severity`.
fn raised<'a>(
    mut alarms: impl Iterator<Item = &'a (i32, i32)>,
    severity: pb::KeyAlarmSeverity,
) -> bool {
    alarms.any(|(_, raised)| *raised >= i32::from(severity))
}

/// The terminal's key slots, as commands and the inventory need them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeys {
    tenant_id: String,
    terminal_id: String,
    slots: BTreeMap<String, Slot>,
    /// Every injection ever installed: a late retry of an old one changes nothing.
    installed_injections: BTreeSet<String>,
    consecutive_failures: u32,
    last_failed_injection_id: String,
    /// Alarms of the current failure streak: (kind, severity).
    failure_alarms: Vec<(i32, i32)>,
}

fn severity(severity: Severity) -> pb::KeyAlarmSeverity {
    match severity {
        Severity::Warning => pb::KeyAlarmSeverity::Warning,
        Severity::Critical => pb::KeyAlarmSeverity::Critical,
    }
}

fn is_hex(value: &str, length: usize) -> bool {
    value.len() == length && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn valid_slot(slot: &str) -> Result<(), SlotError> {
    let ok = !slot.is_empty()
        && slot.len() <= SLOT_MAX_LEN
        && slot
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SlotError::Invalid(format!(
            "slot: 1 to {SLOT_MAX_LEN} of a-z, 0-9, '-' and '_'"
        )))
    }
}

fn valid_reason(reason: &str) -> Result<String, SlotError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > REASON_MAX_CHARS {
        return Err(SlotError::Invalid(format!(
            "reason must be 1 to {REASON_MAX_CHARS} characters"
        )));
    }
    Ok(reason.to_owned())
}

/// `1048575` as `1,048,575`.
fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

impl DeviceKeys {
    /// Every slot of the terminal, by name.
    pub fn slots(&self) -> Vec<SlotView> {
        self.slots
            .iter()
            .map(|(name, slot)| SlotView {
                slot: name.clone(),
                algorithm: slot.algorithm(),
                bdk_id: slot.bdk_id.clone(),
                initial_key_id: slot.initial_key_id.clone(),
                kcv: slot.kcv.clone(),
                injection_id: slot.injection_id.clone(),
                injected_at_us: slot.installed_at_us,
                cryptoperiod_ends_at_us: slot.cryptoperiod_ends_at_us,
                revoked: slot.revoked,
                last_counter: slot.last_counter,
                remaining: slot.remaining,
                alarms: slot
                    .alarms
                    .iter()
                    .map(|(kind, severity)| {
                        (
                            pb::KeyAlarmKind::try_from(*kind)
                                .unwrap_or(pb::KeyAlarmKind::Unspecified),
                            pb::KeyAlarmSeverity::try_from(*severity)
                                .unwrap_or(pb::KeyAlarmSeverity::Unspecified),
                        )
                    })
                    .collect(),
            })
            .collect()
    }

    /// Every slot of the terminal, as the API shows it.
    pub fn to_proto(&self) -> Vec<pb::KeySlot> {
        self.slots()
            .into_iter()
            .map(|view| pb::KeySlot {
                slot: view.slot,
                algorithm: view.algorithm.into(),
                bdk_id: view.bdk_id,
                initial_key_id: view.initial_key_id,
                kcv: view.kcv,
                injection_id: view.injection_id,
                installed_at: Some(mpos_proto::timestamp_from_micros(view.injected_at_us)),
                cryptoperiod_ends_at: Some(mpos_proto::timestamp_from_micros(
                    view.cryptoperiod_ends_at_us,
                )),
                revoked: view.revoked,
                last_counter: view.last_counter,
                remaining: view.remaining,
                alarms: view
                    .alarms
                    .into_iter()
                    .map(|(kind, severity)| pb::KeySlotAlarm {
                        kind: kind.into(),
                        severity: severity.into(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Failed injections of the terminal since its last install or successful injection.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Refuse a command naming another terminal than the one this aggregate holds.
    fn same_terminal(&self, tenant_id: &str, terminal_id: &str) -> Result<(), SlotError> {
        if tenant_id.is_empty() || terminal_id.is_empty() {
            return Err(SlotError::Invalid(
                "tenant_id and terminal_id are required".into(),
            ));
        }
        if !self.tenant_id.is_empty()
            && (self.tenant_id != tenant_id || self.terminal_id != terminal_id)
        {
            return Err(SlotError::Invalid(
                "tenant_id and terminal_id must be the aggregate's".into(),
            ));
        }
        Ok(())
    }

    fn alarm(
        &self,
        slot: &str,
        initial_key_id: &str,
        (kind, severity): (pb::KeyAlarmKind, pb::KeyAlarmSeverity),
        detail: String,
        (counter, remaining): (u64, u64),
        now_us: i64,
    ) -> DeviceKeysEvent {
        DeviceKeysEvent::AlarmRaised(pb::KeySlotAlarmRaised {
            tenant_id: self.tenant_id.clone(),
            terminal_id: self.terminal_id.clone(),
            slot: slot.to_owned(),
            initial_key_id: initial_key_id.to_owned(),
            kind: kind.into(),
            severity: severity.into(),
            detail,
            counter,
            remaining,
            raised_at: Some(mpos_proto::timestamp_from_micros(now_us)),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn install(
        &self,
        tenant_id: String,
        terminal_id: String,
        slot: String,
        algorithm: pb::DukptAlgorithm,
        bdk_id: String,
        initial_key_id: String,
        kcv: String,
        injection_id: String,
        installed_at_us: i64,
        cryptoperiod: Duration,
    ) -> Result<Vec<DeviceKeysEvent>, SlotError> {
        self.same_terminal(&tenant_id, &terminal_id)?;
        valid_slot(&slot)?;
        let id_len = match algorithm {
            pb::DukptAlgorithm::Tdes => 20,
            pb::DukptAlgorithm::Aes128 => 16,
            pb::DukptAlgorithm::Unspecified => {
                return Err(SlotError::Invalid(
                    "algorithm must be DUKPT_ALGORITHM_TDES or DUKPT_ALGORITHM_AES128".into(),
                ));
            }
        };
        if !is_hex(&initial_key_id, id_len) {
            return Err(SlotError::Invalid(format!(
                "initial_key_id: {id_len} hexadecimal digits"
            )));
        }
        if !(6..=16).contains(&kcv.len()) || !kcv.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SlotError::Invalid("kcv: 6 to 16 hexadecimal digits".into()));
        }
        if bdk_id.is_empty() || injection_id.is_empty() {
            return Err(SlotError::Invalid(
                "bdk_id and injection_id are required".into(),
            ));
        }
        if cryptoperiod.is_zero() {
            return Err(SlotError::Invalid("cryptoperiod: must be positive".into()));
        }
        // The device confirming the same injection again (a retry) changes nothing.
        if self.installed_injections.contains(&injection_id) {
            return Ok(Vec::new());
        }
        let period_us = i64::try_from(cryptoperiod.as_micros()).unwrap_or(i64::MAX);
        let replaced_initial_key_id = self
            .slots
            .get(&slot)
            .map(|previous| previous.initial_key_id.clone())
            .unwrap_or_default();
        Ok(vec![DeviceKeysEvent::Installed(pb::KeySlotInstalled {
            tenant_id,
            terminal_id,
            slot,
            algorithm: algorithm.into(),
            bdk_id,
            initial_key_id: initial_key_id.to_ascii_uppercase(),
            kcv: kcv.to_ascii_uppercase(),
            injection_id,
            installed_at: Some(mpos_proto::timestamp_from_micros(installed_at_us)),
            cryptoperiod_ends_at: Some(mpos_proto::timestamp_from_micros(
                installed_at_us.saturating_add(period_us),
            )),
            replaced_initial_key_id,
        })])
    }

    fn report_counter(
        &self,
        name: &str,
        counter: u32,
        now_us: i64,
    ) -> Result<Vec<DeviceKeysEvent>, SlotError> {
        valid_slot(name)?;
        let slot = self
            .slots
            .get(name)
            .ok_or_else(|| SlotError::NotFound(name.to_owned()))?;
        if slot.revoked {
            return Err(SlotError::Revoked(name.to_owned()));
        }
        let algorithm = slot.algorithm();
        if algorithm == pb::DukptAlgorithm::Tdes && counter > paycrypto::dukpt::tdes::COUNTER_MASK {
            return Err(SlotError::Invalid(
                "ksn_counter: a TDES counter has 21 bits".into(),
            ));
        }
        // Reports arrive out of order: a counter at or below the last one recorded says
        // nothing new.
        if slot.last_counter.is_some_and(|last| counter <= last) {
            return Ok(Vec::new());
        }
        let Some(level) = alarms::counter_alarm(algorithm, counter).map(severity) else {
            return Ok(Vec::new());
        };
        if slot.raised(pb::KeyAlarmKind::CounterExhaustion, level) {
            return Ok(Vec::new());
        }
        let remaining = alarms::remaining_transactions(algorithm, counter);
        let total = alarms::total_transactions(algorithm);
        Ok(vec![self.alarm(
            name,
            &slot.initial_key_id,
            (pb::KeyAlarmKind::CounterExhaustion, level),
            format!(
                "{} of {} transactions left",
                thousands(remaining),
                thousands(total)
            ),
            (u64::from(counter), remaining),
            now_us,
        )])
    }

    fn check_cryptoperiod(&self, now_us: i64) -> Vec<DeviceKeysEvent> {
        let mut events = Vec::new();
        for (name, slot) in self.slots.iter().filter(|(_, slot)| !slot.revoked) {
            let period_us = slot
                .cryptoperiod_ends_at_us
                .saturating_sub(slot.installed_at_us)
                .max(0);
            let period = Duration::from_micros(u64::try_from(period_us).unwrap_or(0));
            let Some(level) =
                alarms::cryptoperiod_alarm(slot.installed_at_us, period, now_us).map(severity)
            else {
                continue;
            };
            if slot.raised(pb::KeyAlarmKind::Cryptoperiod, level) {
                continue;
            }
            let days_left =
                u64::try_from(slot.cryptoperiod_ends_at_us.saturating_sub(now_us) / DAY_US)
                    .unwrap_or(0);
            let detail = if now_us >= slot.cryptoperiod_ends_at_us {
                "the cryptoperiod has ended".to_owned()
            } else {
                format!("the cryptoperiod ends in {} days", thousands(days_left))
            };
            events.push(self.alarm(
                name,
                &slot.initial_key_id,
                (pb::KeyAlarmKind::Cryptoperiod, level),
                detail,
                (0, days_left),
                now_us,
            ));
        }
        events
    }

    fn record_failure(
        &self,
        tenant_id: String,
        terminal_id: String,
        injection_id: String,
        reason: &str,
        now_us: i64,
    ) -> Result<Vec<DeviceKeysEvent>, SlotError> {
        self.same_terminal(&tenant_id, &terminal_id)?;
        if injection_id.is_empty() {
            return Err(SlotError::Invalid("injection_id: missing".into()));
        }
        let reason = valid_reason(reason)?;
        // The same failure reported again (a retry) changes nothing.
        if injection_id == self.last_failed_injection_id {
            return Ok(Vec::new());
        }
        let consecutive_failures = self.consecutive_failures.saturating_add(1);
        let mut events = vec![DeviceKeysEvent::InjectionFailureRecorded(
            pb::InjectionFailureRecorded {
                tenant_id: tenant_id.clone(),
                terminal_id: terminal_id.clone(),
                injection_id,
                consecutive_failures,
                reason,
            },
        )];
        if let Some(level) = alarms::failing_injections_alarm(consecutive_failures).map(severity)
            && !raised(self.failure_alarms.iter(), level)
        {
            events.push(DeviceKeysEvent::AlarmRaised(pb::KeySlotAlarmRaised {
                tenant_id,
                terminal_id,
                slot: String::new(),
                initial_key_id: String::new(),
                kind: pb::KeyAlarmKind::InjectionFailures.into(),
                severity: level.into(),
                detail: format!("{consecutive_failures} consecutive failed injections"),
                counter: 0,
                remaining: 0,
                raised_at: Some(mpos_proto::timestamp_from_micros(now_us)),
            }));
        }
        Ok(events)
    }

    fn decide(&self, command: DeviceKeysCommand) -> Result<Vec<DeviceKeysEvent>, SlotError> {
        match command {
            DeviceKeysCommand::Install {
                tenant_id,
                terminal_id,
                slot,
                algorithm,
                bdk_id,
                initial_key_id,
                kcv,
                injection_id,
                installed_at_us,
                cryptoperiod,
            } => self.install(
                tenant_id,
                terminal_id,
                slot,
                algorithm,
                bdk_id,
                initial_key_id,
                kcv,
                injection_id,
                installed_at_us,
                cryptoperiod,
            ),
            DeviceKeysCommand::Revoke { reason } => {
                let reason = valid_reason(&reason)?;
                Ok(self
                    .slots
                    .iter()
                    .filter(|(_, slot)| !slot.revoked)
                    .map(|(name, slot)| {
                        DeviceKeysEvent::Revoked(pb::KeySlotRevoked {
                            tenant_id: self.tenant_id.clone(),
                            terminal_id: self.terminal_id.clone(),
                            slot: name.clone(),
                            initial_key_id: slot.initial_key_id.clone(),
                            reason: reason.clone(),
                        })
                    })
                    .collect())
            }
            DeviceKeysCommand::ReportCounter {
                slot,
                ksn_counter,
                now_us,
            } => self.report_counter(&slot, ksn_counter, now_us),
            DeviceKeysCommand::CheckCryptoperiod { now_us } => Ok(self.check_cryptoperiod(now_us)),
            DeviceKeysCommand::RecordInjectionFailure {
                tenant_id,
                terminal_id,
                injection_id,
                reason,
                now_us,
            } => self.record_failure(tenant_id, terminal_id, injection_id, &reason, now_us),
            DeviceKeysCommand::RecordInjectionSuccess { injection_id } => {
                if injection_id.is_empty() {
                    return Err(SlotError::Invalid("injection_id: missing".into()));
                }
                if self.consecutive_failures == 0 {
                    return Ok(Vec::new());
                }
                Ok(vec![DeviceKeysEvent::InjectionFailureStreakEnded(
                    pb::InjectionFailureStreakEnded {
                        tenant_id: self.tenant_id.clone(),
                        terminal_id: self.terminal_id.clone(),
                        injection_id,
                        consecutive_failures: self.consecutive_failures,
                    },
                )])
            }
        }
    }

    fn end_failure_streak(&mut self) {
        self.consecutive_failures = 0;
        self.failure_alarms.clear();
    }
}

impl Aggregate for DeviceKeys {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = DeviceKeysCommand;
    type Event = DeviceKeysEvent;
    type Error = SlotError;
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
            DeviceKeysEvent::Installed(installed) => {
                self.tenant_id = installed.tenant_id;
                self.terminal_id = installed.terminal_id;
                self.installed_injections
                    .insert(installed.injection_id.clone());
                let slot = Slot {
                    algorithm: installed.algorithm,
                    bdk_id: installed.bdk_id,
                    initial_key_id: installed.initial_key_id,
                    kcv: installed.kcv,
                    injection_id: installed.injection_id,
                    installed_at_us: installed
                        .installed_at
                        .as_ref()
                        .map_or(0, mpos_proto::timestamp_to_micros),
                    cryptoperiod_ends_at_us: installed
                        .cryptoperiod_ends_at
                        .as_ref()
                        .map_or(0, mpos_proto::timestamp_to_micros),
                    ..Slot::default()
                };
                self.slots.insert(installed.slot, slot);
                self.end_failure_streak();
            }
            DeviceKeysEvent::Revoked(revoked) => {
                if let Some(slot) = self.slots.get_mut(&revoked.slot)
                    && slot.initial_key_id == revoked.initial_key_id
                {
                    slot.revoked = true;
                }
            }
            DeviceKeysEvent::AlarmRaised(alarm) => {
                if alarm.kind == i32::from(pb::KeyAlarmKind::InjectionFailures) {
                    self.failure_alarms.push((alarm.kind, alarm.severity));
                    return;
                }
                let Some(slot) = self.slots.get_mut(&alarm.slot) else {
                    return;
                };
                // An alarm about a key the slot no longer holds says nothing about this one.
                if slot.initial_key_id != alarm.initial_key_id {
                    return;
                }
                slot.alarms.push((alarm.kind, alarm.severity));
                if alarm.kind == i32::from(pb::KeyAlarmKind::CounterExhaustion) {
                    slot.last_counter = u32::try_from(alarm.counter).ok();
                    slot.remaining = Some(alarm.remaining);
                }
            }
            DeviceKeysEvent::InjectionFailureRecorded(failure) => {
                if self.tenant_id.is_empty() {
                    self.tenant_id = failure.tenant_id;
                    self.terminal_id = failure.terminal_id;
                }
                self.consecutive_failures = failure.consecutive_failures;
                self.last_failed_injection_id = failure.injection_id;
            }
            DeviceKeysEvent::InjectionFailureStreakEnded(_) => self.end_failure_streak(),
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use mpos_es::ProtoEvent;
    use proptest::prelude::*;

    use super::*;

    type Test = TestFramework<DeviceKeys>;

    const KSN_1: &str = "FFFF9876543210E00000";
    const KSN_2: &str = "FFFF9876543210E00020";
    const DAY: i64 = DAY_US;
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600_000_000;

    fn install(injection_id: &str, ksn: &str) -> DeviceKeysCommand {
        DeviceKeysCommand::Install {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            slot: "dukpt".into(),
            algorithm: pb::DukptAlgorithm::Tdes,
            bdk_id: "bdk-2026".into(),
            initial_key_id: ksn.to_ascii_lowercase(),
            kcv: "af8c8b".into(),
            injection_id: injection_id.into(),
            installed_at_us: T0,
            cryptoperiod: YEAR,
        }
    }

    fn installed(injection_id: &str, ksn: &str, replaced: &str) -> DeviceKeysEvent {
        DeviceKeysEvent::Installed(pb::KeySlotInstalled {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            slot: "dukpt".into(),
            algorithm: pb::DukptAlgorithm::Tdes.into(),
            bdk_id: "bdk-2026".into(),
            initial_key_id: ksn.into(),
            kcv: "AF8C8B".into(),
            injection_id: injection_id.into(),
            installed_at: Some(mpos_proto::timestamp_from_micros(T0)),
            cryptoperiod_ends_at: Some(mpos_proto::timestamp_from_micros(T0 + 365 * DAY)),
            replaced_initial_key_id: replaced.into(),
        })
    }

    fn report(slot: &str, ksn_counter: u32) -> DeviceKeysCommand {
        DeviceKeysCommand::ReportCounter {
            slot: slot.into(),
            ksn_counter,
            now_us: T0 + DAY,
        }
    }

    fn counter_alarm(
        ksn: &str,
        level: pb::KeyAlarmSeverity,
        counter: u32,
        remaining: u64,
        detail: &str,
    ) -> DeviceKeysEvent {
        DeviceKeysEvent::AlarmRaised(pb::KeySlotAlarmRaised {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            slot: "dukpt".into(),
            initial_key_id: ksn.into(),
            kind: pb::KeyAlarmKind::CounterExhaustion.into(),
            severity: level.into(),
            detail: detail.into(),
            counter: counter.into(),
            remaining,
            raised_at: Some(mpos_proto::timestamp_from_micros(T0 + DAY)),
        })
    }

    /// The smallest TDES counter from which at most `left` transactions remain. Uses
    /// `remaining_transactions` (checked against a brute-force count of X9.24-1's counter rule
    /// in `alarms`) only to find the boundary; the boundary's alarm is then asserted.
    fn first_counter_leaving(left: u64) -> u32 {
        let (mut low, mut high) = (0_u32, paycrypto::dukpt::tdes::COUNTER_MASK);
        while low < high {
            let middle = low + (high - low) / 2;
            if alarms::remaining_transactions(pb::DukptAlgorithm::Tdes, middle) <= left {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        low
    }

    /// Warning at ≤ 10 % of 1,048,575 transactions left (≤ 104,857.5), critical at ≤ 1 %
    /// (≤ 10,485.75).
    fn boundaries() -> (u32, u32) {
        (
            first_counter_leaving(104_857),
            first_counter_leaving(10_485),
        )
    }

    fn failure(injection_id: &str) -> DeviceKeysCommand {
        DeviceKeysCommand::RecordInjectionFailure {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            injection_id: injection_id.into(),
            reason: "certificate refused".into(),
            now_us: T0,
        }
    }

    fn failure_recorded(injection_id: &str, consecutive_failures: u32) -> DeviceKeysEvent {
        DeviceKeysEvent::InjectionFailureRecorded(pb::InjectionFailureRecorded {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            injection_id: injection_id.into(),
            consecutive_failures,
            reason: "certificate refused".into(),
        })
    }

    fn failure_alarm(consecutive_failures: u32) -> DeviceKeysEvent {
        DeviceKeysEvent::AlarmRaised(pb::KeySlotAlarmRaised {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            slot: String::new(),
            initial_key_id: String::new(),
            kind: pb::KeyAlarmKind::InjectionFailures.into(),
            severity: pb::KeyAlarmSeverity::Warning.into(),
            detail: format!("{consecutive_failures} consecutive failed injections"),
            counter: 0,
            remaining: 0,
            raised_at: Some(mpos_proto::timestamp_from_micros(T0)),
        })
    }

    fn revoked(ksn: &str) -> DeviceKeysEvent {
        DeviceKeysEvent::Revoked(pb::KeySlotRevoked {
            tenant_id: "acme".into(),
            terminal_id: "t-1".into(),
            slot: "dukpt".into(),
            initial_key_id: ksn.into(),
            reason: "terminal blacklisted".into(),
        })
    }

    fn state(events: Vec<DeviceKeysEvent>) -> DeviceKeys {
        let mut keys = DeviceKeys::default();
        for event in events {
            keys.apply(event);
        }
        keys
    }

    #[test]
    fn event_type_names_are_the_protobuf_names() {
        DeviceKeysEvent::check_type_names().expect("names");
    }

    #[test]
    fn an_install_fills_the_slot_and_supersedes_the_key_it_held() {
        Test::with(())
            .given_no_previous_events()
            .when(install("i-1", KSN_1))
            .then_expect_events(vec![installed("i-1", KSN_1, "")]);
        Test::with(())
            .given(vec![installed("i-1", KSN_1, "")])
            .when(install("i-2", KSN_2))
            .then_expect_events(vec![installed("i-2", KSN_2, KSN_1)]);
    }

    #[test]
    fn installing_the_same_injection_again_changes_nothing() {
        Test::with(())
            .given(vec![installed("i-1", KSN_1, "")])
            .when(install("i-1", KSN_1))
            .then_expect_events(vec![]);
        // A late retry of a superseded injection does not bring its key back.
        Test::with(())
            .given(vec![
                installed("i-1", KSN_1, ""),
                installed("i-2", KSN_2, KSN_1),
            ])
            .when(install("i-1", KSN_1))
            .then_expect_events(vec![]);
    }

    #[test]
    fn malformed_installs_are_refused_with_the_field_named() {
        /// Changes one field of a valid install.
        type Change = fn(&mut DeviceKeysCommand);
        let with = |change: Change| {
            let mut command = install("i-1", KSN_1);
            change(&mut command);
            command
        };
        let cases: [(Change, &str); 5] = [
            (
                |c| {
                    if let DeviceKeysCommand::Install { algorithm, .. } = c {
                        *algorithm = pb::DukptAlgorithm::Unspecified;
                    }
                },
                "algorithm must be DUKPT_ALGORITHM_TDES or DUKPT_ALGORITHM_AES128",
            ),
            (
                |c| {
                    if let DeviceKeysCommand::Install { algorithm, .. } = c {
                        // A TDES KSN is not an AES initial key id.
                        *algorithm = pb::DukptAlgorithm::Aes128;
                    }
                },
                "initial_key_id: 16 hexadecimal digits",
            ),
            (
                |c| {
                    if let DeviceKeysCommand::Install { kcv, .. } = c {
                        *kcv = "xyz".into();
                    }
                },
                "kcv: 6 to 16 hexadecimal digits",
            ),
            (
                |c| {
                    if let DeviceKeysCommand::Install { slot, .. } = c {
                        *slot = "Slot 1".into();
                    }
                },
                "slot: 1 to 32 of a-z, 0-9, '-' and '_'",
            ),
            (
                |c| {
                    if let DeviceKeysCommand::Install { cryptoperiod, .. } = c {
                        *cryptoperiod = Duration::ZERO;
                    }
                },
                "cryptoperiod: must be positive",
            ),
        ];
        for (change, message) in cases {
            Test::with(())
                .given_no_previous_events()
                .when(with(change))
                .then_expect_error(SlotError::Invalid(message.into()));
        }
        Test::with(())
            .given(vec![installed("i-1", KSN_1, "")])
            .when(with(|c| {
                if let DeviceKeysCommand::Install { terminal_id, .. } = c {
                    *terminal_id = "t-2".into();
                }
            }))
            .then_expect_error(SlotError::Invalid(
                "tenant_id and terminal_id must be the aggregate's".into(),
            ));
    }

    #[test]
    fn counter_alarms_fire_exactly_at_the_published_thresholds() {
        let (warning, critical) = boundaries();
        // The same boundaries counted independently, by brute force over the 21-bit counters
        // with at most 10 one-bits (ANSI X9.24-1's rule): 104,857 valid counters lie above
        // 0x19E498, and 10,485 above 0x1E8A70.
        assert_eq!((warning, critical), (0x19_E498, 0x1E_8A70));
        // One valid counter fewer used, one transaction more left: the boundaries are exact.
        assert_eq!(
            alarms::remaining_transactions(pb::DukptAlgorithm::Tdes, warning - 1),
            104_858
        );
        assert_eq!(
            alarms::remaining_transactions(pb::DukptAlgorithm::Tdes, critical - 1),
            10_486
        );
        let given = || vec![installed("i-1", KSN_1, "")];
        Test::with(())
            .given(given())
            .when(report("dukpt", warning - 1))
            .then_expect_events(vec![]);
        Test::with(())
            .given(given())
            .when(report("dukpt", warning))
            .then_expect_events(vec![counter_alarm(
                KSN_1,
                pb::KeyAlarmSeverity::Warning,
                warning,
                104_857,
                "104,857 of 1,048,575 transactions left",
            )]);
        let warned = || {
            let mut events = given();
            events.push(counter_alarm(
                KSN_1,
                pb::KeyAlarmSeverity::Warning,
                warning,
                104_857,
                "104,857 of 1,048,575 transactions left",
            ));
            events
        };
        Test::with(())
            .given(warned())
            .when(report("dukpt", critical - 1))
            .then_expect_events(vec![]);
        Test::with(())
            .given(warned())
            .when(report("dukpt", critical))
            .then_expect_events(vec![counter_alarm(
                KSN_1,
                pb::KeyAlarmSeverity::Critical,
                critical,
                10_485,
                "10,485 of 1,048,575 transactions left",
            )]);
    }

    #[test]
    fn each_severity_is_raised_once_per_key() {
        let (warning, critical) = boundaries();
        let warning_alarm = counter_alarm(
            KSN_1,
            pb::KeyAlarmSeverity::Warning,
            warning,
            104_857,
            "104,857 of 1,048,575 transactions left",
        );
        let critical_alarm = counter_alarm(
            KSN_1,
            pb::KeyAlarmSeverity::Critical,
            critical,
            10_485,
            "10,485 of 1,048,575 transactions left",
        );
        // A device jumping straight into the last hundredth gets the critical alarm only.
        Test::with(())
            .given(vec![installed("i-1", KSN_1, "")])
            .when(report("dukpt", critical))
            .then_expect_events(vec![critical_alarm.clone()]);
        // Further reports at the same severity raise nothing.
        Test::with(())
            .given(vec![installed("i-1", KSN_1, ""), warning_alarm.clone()])
            .when(report("dukpt", warning + 0x1000))
            .then_expect_events(vec![]);
        Test::with(())
            .given(vec![
                installed("i-1", KSN_1, ""),
                warning_alarm.clone(),
                critical_alarm.clone(),
            ])
            .when(report("dukpt", paycrypto::dukpt::tdes::LAST_COUNTER))
            .then_expect_events(vec![]);
        // A counter going backwards (reports out of order) is ignored.
        Test::with(())
            .given(vec![installed("i-1", KSN_1, ""), critical_alarm])
            .when(report("dukpt", warning))
            .then_expect_events(vec![]);
    }

    #[test]
    fn reports_need_an_installed_live_slot() {
        Test::with(())
            .given_no_previous_events()
            .when(report("dukpt", 1))
            .then_expect_error(SlotError::NotFound("dukpt".into()));
        Test::with(())
            .given(vec![installed("i-1", KSN_1, "")])
            .when(report("pin", 1))
            .then_expect_error(SlotError::NotFound("pin".into()));
        Test::with(())
            .given(vec![installed("i-1", KSN_1, "")])
            .when(report("dukpt", 1 << 21))
            .then_expect_error(SlotError::Invalid(
                "ksn_counter: a TDES counter has 21 bits".into(),
            ));
        Test::with(())
            .given(vec![installed("i-1", KSN_1, ""), revoked(KSN_1)])
            .when(report("dukpt", boundaries().1))
            .then_expect_error(SlotError::Revoked("dukpt".into()));
    }

    #[test]
    fn a_revocation_covers_every_live_slot_and_silences_its_alarms() {
        Test::with(())
            .given(vec![installed("i-1", KSN_1, "")])
            .when(DeviceKeysCommand::Revoke {
                reason: " terminal blacklisted ".into(),
            })
            .then_expect_events(vec![revoked(KSN_1)]);
        for given in [vec![], vec![installed("i-1", KSN_1, ""), revoked(KSN_1)]] {
            Test::with(())
                .given(given)
                .when(DeviceKeysCommand::Revoke {
                    reason: "terminal blacklisted".into(),
                })
                .then_expect_events(vec![]);
        }
        Test::with(())
            .given(vec![installed("i-1", KSN_1, ""), revoked(KSN_1)])
            .when(DeviceKeysCommand::CheckCryptoperiod {
                now_us: T0 + 400 * DAY,
            })
            .then_expect_events(vec![]);
        Test::with(())
            .given_no_previous_events()
            .when(DeviceKeysCommand::Revoke { reason: " ".into() })
            .then_expect_error(SlotError::Invalid(
                "reason must be 1 to 500 characters".into(),
            ));
    }

    #[test]
    fn a_new_install_starts_the_alarms_over() {
        let (warning, critical) = boundaries();
        let old_alarms = vec![
            installed("i-1", KSN_1, ""),
            counter_alarm(
                KSN_1,
                pb::KeyAlarmSeverity::Warning,
                warning,
                104_857,
                "104,857 of 1,048,575 transactions left",
            ),
            counter_alarm(
                KSN_1,
                pb::KeyAlarmSeverity::Critical,
                critical,
                10_485,
                "10,485 of 1,048,575 transactions left",
            ),
        ];
        let mut rotated = old_alarms.clone();
        rotated.push(installed("i-2", KSN_2, KSN_1));
        Test::with(())
            .given(rotated.clone())
            .when(report("dukpt", warning))
            .then_expect_events(vec![counter_alarm(
                KSN_2,
                pb::KeyAlarmSeverity::Warning,
                warning,
                104_857,
                "104,857 of 1,048,575 transactions left",
            )]);
        // The new key's counter starts from scratch: a low counter is not "backwards".
        let keys = state(rotated);
        let view = &keys.slots()[0];
        assert_eq!(view.initial_key_id, KSN_2);
        assert_eq!((view.last_counter, view.remaining), (None, None));
        assert!(view.alarms.is_empty());
        // After a revocation, a new injection makes the slot live again.
        let mut reinstalled = vec![installed("i-1", KSN_1, ""), revoked(KSN_1)];
        reinstalled.push(installed("i-2", KSN_2, KSN_1));
        Test::with(())
            .given(reinstalled)
            .when(report("dukpt", critical))
            .then_expect_events(vec![counter_alarm(
                KSN_2,
                pb::KeyAlarmSeverity::Critical,
                critical,
                10_485,
                "10,485 of 1,048,575 transactions left",
            )]);
    }

    #[test]
    fn cryptoperiod_alarms_warn_thirty_days_ahead_then_at_the_end() {
        let check = |day: i64| DeviceKeysCommand::CheckCryptoperiod {
            now_us: T0 + day * DAY,
        };
        let alarm = |level: pb::KeyAlarmSeverity, day: i64, days_left: u64, detail: &str| {
            DeviceKeysEvent::AlarmRaised(pb::KeySlotAlarmRaised {
                tenant_id: "acme".into(),
                terminal_id: "t-1".into(),
                slot: "dukpt".into(),
                initial_key_id: KSN_1.into(),
                kind: pb::KeyAlarmKind::Cryptoperiod.into(),
                severity: level.into(),
                detail: detail.into(),
                counter: 0,
                remaining: days_left,
                raised_at: Some(mpos_proto::timestamp_from_micros(T0 + day * DAY)),
            })
        };
        let warning = alarm(
            pb::KeyAlarmSeverity::Warning,
            340,
            25,
            "the cryptoperiod ends in 25 days",
        );
        Test::with(())
            .given(vec![installed("i-1", KSN_1, "")])
            .when(check(334))
            .then_expect_events(vec![]);
        Test::with(())
            .given(vec![installed("i-1", KSN_1, "")])
            .when(check(340))
            .then_expect_events(vec![warning.clone()]);
        Test::with(())
            .given(vec![installed("i-1", KSN_1, ""), warning.clone()])
            .when(check(350))
            .then_expect_events(vec![]);
        Test::with(())
            .given(vec![installed("i-1", KSN_1, ""), warning])
            .when(check(365))
            .then_expect_events(vec![alarm(
                pb::KeyAlarmSeverity::Critical,
                365,
                0,
                "the cryptoperiod has ended",
            )]);
    }

    #[test]
    fn a_failure_streak_alarms_at_the_third_failure_and_not_again() {
        let two = || vec![failure_recorded("i-1", 1), failure_recorded("i-2", 2)];
        Test::with(())
            .given_no_previous_events()
            .when(failure("i-1"))
            .then_expect_events(vec![failure_recorded("i-1", 1)]);
        Test::with(())
            .given(two())
            .when(failure("i-3"))
            .then_expect_events(vec![failure_recorded("i-3", 3), failure_alarm(3)]);
        let mut three = two();
        three.extend([failure_recorded("i-3", 3), failure_alarm(3)]);
        Test::with(())
            .given(three.clone())
            .when(failure("i-4"))
            .then_expect_events(vec![failure_recorded("i-4", 4)]);
        // The same failure reported twice counts once.
        Test::with(())
            .given(two())
            .when(failure("i-2"))
            .then_expect_events(vec![]);
        // A success ends the streak; the next streak alarms again at its third failure.
        Test::with(())
            .given(three.clone())
            .when(DeviceKeysCommand::RecordInjectionSuccess {
                injection_id: "i-5".into(),
            })
            .then_expect_events(vec![DeviceKeysEvent::InjectionFailureStreakEnded(
                pb::InjectionFailureStreakEnded {
                    tenant_id: "acme".into(),
                    terminal_id: "t-1".into(),
                    injection_id: "i-5".into(),
                    consecutive_failures: 3,
                },
            )]);
        let mut after_success = three.clone();
        after_success.push(DeviceKeysEvent::InjectionFailureStreakEnded(
            pb::InjectionFailureStreakEnded {
                tenant_id: "acme".into(),
                terminal_id: "t-1".into(),
                injection_id: "i-5".into(),
                consecutive_failures: 3,
            },
        ));
        after_success.extend([failure_recorded("i-6", 1), failure_recorded("i-7", 2)]);
        Test::with(())
            .given(after_success)
            .when(failure("i-8"))
            .then_expect_events(vec![failure_recorded("i-8", 3), failure_alarm(3)]);
        // An install ends the streak too.
        let mut after_install = three;
        after_install.push(installed("i-5", KSN_1, ""));
        Test::with(())
            .given(after_install.clone())
            .when(failure("i-6"))
            .then_expect_events(vec![failure_recorded("i-6", 1)]);
        assert_eq!(state(after_install).consecutive_failures(), 0);
        // No streak, nothing to end.
        Test::with(())
            .given(vec![installed("i-1", KSN_1, "")])
            .when(DeviceKeysCommand::RecordInjectionSuccess {
                injection_id: "i-2".into(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn the_inventory_shows_every_slot_as_of_its_last_alarm() {
        let (warning, _) = boundaries();
        let keys = state(vec![
            installed("i-1", KSN_1, ""),
            counter_alarm(
                KSN_1,
                pb::KeyAlarmSeverity::Warning,
                warning,
                104_857,
                "104,857 of 1,048,575 transactions left",
            ),
            // An alarm about a key the slot no longer holds is not shown.
            counter_alarm(KSN_2, pb::KeyAlarmSeverity::Critical, 1, 1, "stale"),
        ]);
        assert_eq!(
            keys.to_proto(),
            vec![pb::KeySlot {
                slot: "dukpt".into(),
                algorithm: pb::DukptAlgorithm::Tdes.into(),
                bdk_id: "bdk-2026".into(),
                initial_key_id: KSN_1.into(),
                kcv: "AF8C8B".into(),
                injection_id: "i-1".into(),
                installed_at: Some(mpos_proto::timestamp_from_micros(T0)),
                cryptoperiod_ends_at: Some(mpos_proto::timestamp_from_micros(T0 + 365 * DAY)),
                revoked: false,
                last_counter: Some(warning),
                remaining: Some(104_857),
                alarms: vec![pb::KeySlotAlarm {
                    kind: pb::KeyAlarmKind::CounterExhaustion.into(),
                    severity: pb::KeyAlarmSeverity::Warning.into(),
                }],
            }]
        );
        assert_eq!(
            keys.slots()[0].alarms,
            vec![(
                pb::KeyAlarmKind::CounterExhaustion,
                pb::KeyAlarmSeverity::Warning
            )]
        );
    }

    /// Every string in a JSON value.
    fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::String(text) => out.push(text.clone()),
            serde_json::Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
            serde_json::Value::Object(fields) => {
                fields.values().for_each(|field| strings(field, out));
            }
            _ => {}
        }
    }

    #[test]
    fn no_event_carries_key_material() {
        // A whole life: install, alarms of every kind, rotation, revocation, failures.
        let (warning, critical) = boundaries();
        let commands = vec![
            install("i-1", KSN_1),
            report("dukpt", warning),
            report("dukpt", critical),
            DeviceKeysCommand::CheckCryptoperiod {
                now_us: T0 + 400 * DAY,
            },
            failure("i-2"),
            failure("i-3"),
            failure("i-4"),
            install("i-5", KSN_2),
            DeviceKeysCommand::Revoke {
                reason: "terminal blacklisted".into(),
            },
        ];
        let mut keys = DeviceKeys::default();
        let mut events = Vec::new();
        for command in commands {
            for event in keys.decide(command).expect("accepted") {
                keys.apply(event.clone());
                events.push(event);
            }
        }
        assert_eq!(events.len(), 10);
        for event in &events {
            let json = serde_json::to_value(event).expect("json");
            let mut texts = Vec::new();
            strings(&json, &mut texts);
            // Hex in an event is a KSN (20 digits) or a KCV (6): never a key (32 or more).
            for text in texts {
                let hex = text.len() >= 6 && text.bytes().all(|b| b.is_ascii_hexdigit());
                assert!(!hex || text.len() <= 20, "{text}");
            }
            let fields = json.as_object().expect("object");
            for name in fields.keys() {
                assert!(
                    !name.contains("key") || name.ends_with("initial_key_id"),
                    "{name}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn counter_reports_raise_at_most_a_warning_then_a_critical(
            counters in proptest::collection::vec(
                // Anywhere, or in the last sixth where the alarms are.
                prop_oneof![
                    0..=paycrypto::dukpt::tdes::COUNTER_MASK,
                    0x19_0000..=paycrypto::dukpt::tdes::COUNTER_MASK,
                ],
                1..40,
            )
        ) {
            let mut keys = state(vec![installed("i-1", KSN_1, "")]);
            let mut raised = Vec::new();
            for counter in counters {
                for event in keys.decide(report("dukpt", counter)).expect("accepted") {
                    keys.apply(event.clone());
                    let DeviceKeysEvent::AlarmRaised(alarm) = event else {
                        return Err(TestCaseError::fail("only alarms"));
                    };
                    prop_assert_eq!(
                        alarms::counter_alarm(pb::DukptAlgorithm::Tdes, counter).map(severity),
                        pb::KeyAlarmSeverity::try_from(alarm.severity).ok()
                    );
                    raised.push((alarm.severity, alarm.counter));
                }
            }
            prop_assert!(raised.len() <= 2);
            // Severities strictly rise, and so do the counters they were raised at.
            prop_assert!(raised.windows(2).all(|pair| pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1));
        }
    }
}
