//! The device aggregate (id `<tenant>/<device id>`): one SoftPOS device's challenges, its
//! attestations and verdicts, and its monitoring. A challenge is random, bound to this device
//! and tenant, valid for a short time and used once: an attestation against a used, expired or
//! unknown challenge is refused and changes nothing. The verdict is the policy rules
//! ([`crate::rules::judge`]) over the last evidence, so a policy change or a missed
//! re-attestation re-judges the same evidence. Pure domain logic.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::attestation as pb;
use mpos_proto::{timestamp_from_micros, timestamp_to_micros};
use serde::{Deserialize, Serialize};

use crate::rules::{self, Effective, Situation};

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "device";

/// Challenges a device may hold open (issued, unused, unexpired) at once.
pub const MAX_OPEN_CHALLENGES: usize = 4;
/// Challenges remembered (open or not) to tell a replay from an unknown challenge.
const REMEMBERED_CHALLENGES: usize = 16;

/// Why a device command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// A field is malformed; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// The challenge was never issued to this device.
    #[error("challenge unknown: request a challenge for this device first")]
    ChallengeUnknown,
    /// The challenge was used by an earlier attestation (a replay).
    #[error("challenge already used: request a new challenge")]
    ChallengeUsed,
    /// The challenge's validity passed.
    #[error("challenge expired: request a new challenge")]
    ChallengeExpired,
    /// Too many challenges open at once.
    #[error("too many open challenges: use or let expire the ones issued")]
    TooManyChallenges,
}

impl From<DeviceError> for ServiceError {
    fn from(error: DeviceError) -> Self {
        let message = error.to_string();
        match error {
            DeviceError::Invalid(_) | DeviceError::ChallengeUnknown => {
                ServiceError::bad_request(message)
            }
            DeviceError::ChallengeUsed
            | DeviceError::ChallengeExpired
            | DeviceError::TooManyChallenges => ServiceError::conflict(message),
        }
    }
}

/// What can be asked of a device.
#[derive(Clone, Debug, PartialEq)]
pub enum DeviceCommand {
    /// Issue a challenge.
    IssueChallenge {
        /// The tenant.
        tenant_id: String,
        /// The device.
        device_id: String,
        /// Its id.
        challenge_id: String,
        /// Its random bytes.
        challenge: Vec<u8>,
        /// Now, Unix microseconds.
        now_us: i64,
        /// How long it is valid.
        ttl_us: i64,
        /// Whether the app is asked for a Play Integrity verdict with it.
        play_integrity_requested: bool,
    },
    /// Record an attestation: the examined evidence, judged by the policy.
    Attest {
        /// The challenge it answers.
        challenge_id: String,
        /// What the evidence showed ([`crate::evidence::examine`]).
        summary: Box<pb::EvidenceSummary>,
        /// The tenant's policy and its version.
        policy: pb::Policy,
        /// Its version.
        policy_version: u64,
        /// Now, Unix microseconds.
        now_us: i64,
        /// The id of the token issued if the verdict allows payments.
        token_id: String,
    },
    /// Judge the last evidence again (the policy changed).
    Reevaluate {
        /// The new policy.
        policy: pb::Policy,
        /// Its version.
        policy_version: u64,
        /// Now, Unix microseconds.
        now_us: i64,
    },
    /// Monitoring: record a missed re-attestation, if it was missed.
    Monitor {
        /// The current policy.
        policy: pb::Policy,
        /// Its version.
        policy_version: u64,
        /// Now, Unix microseconds.
        now_us: i64,
    },
}

mpos_es::proto_events! {
    /// Events of the device aggregate.
    pub enum DeviceEvent {
        /// A challenge issued.
        ChallengeIssued(pb::ChallengeIssued) = "mpos.attestation.v1.ChallengeIssued",
        /// Evidence presented and judged.
        Attested(pb::DeviceAttested) = "mpos.attestation.v1.DeviceAttested",
        /// The verdict changed without new evidence.
        VerdictChanged(pb::DeviceVerdictChanged) = "mpos.attestation.v1.DeviceVerdictChanged",
        /// The re-attestation deadline passed.
        ReattestationMissed(pb::ReattestationMissed) = "mpos.attestation.v1.ReattestationMissed",
    }
}

/// A challenge as the device aggregate remembers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// Its id.
    pub id: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// When it expires, Unix microseconds.
    pub expires_at_us: i64,
    /// Used by an attestation.
    pub used: bool,
    /// A Play Integrity verdict was asked for.
    pub play_integrity_requested: bool,
}

/// A device's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// The tenant.
    pub tenant_id: String,
    /// The device.
    pub device_id: String,
    /// Recent challenges, oldest first.
    pub challenges: Vec<Challenge>,
    /// What the last evidence showed.
    pub summary: Option<pb::EvidenceSummary>,
    /// The current verdict (`Verdict` as a number; 0 before the first attestation).
    pub verdict: i32,
    /// The findings behind it.
    pub findings: Vec<pb::Finding>,
    /// The policy version it was judged with.
    pub policy_version: u64,
    /// The last attestation, Unix microseconds.
    pub attested_at_us: i64,
    /// The re-attestation deadline, Unix microseconds.
    pub reattest_by_us: i64,
    /// The last Play Integrity verdict that came with an attestation, Unix microseconds.
    pub last_play_integrity_us: i64,
    /// The deadline a miss was recorded for (one event per deadline).
    pub missed_deadline_us: i64,
}

impl Device {
    /// The challenge with this id.
    pub fn challenge(&self, challenge_id: &str) -> Option<&Challenge> {
        self.challenges.iter().find(|c| c.id == challenge_id)
    }

    /// The current verdict.
    pub fn current_verdict(&self) -> pb::Verdict {
        pb::Verdict::try_from(self.verdict).unwrap_or(pb::Verdict::Unspecified)
    }

    fn situation(&self, now_us: i64, missed: bool) -> Situation {
        Situation {
            now_s: now_us / 1_000_000,
            last_play_integrity_s: self.last_play_integrity_us / 1_000_000,
            reattestation_missed: missed,
        }
    }

    /// Whether the device has missed its current re-attestation deadline.
    fn missed(&self, now_us: i64) -> bool {
        self.reattest_by_us != 0 && now_us > self.reattest_by_us
    }

    fn changed(
        &self,
        findings: Vec<pb::Finding>,
        verdict: pb::Verdict,
        policy_version: u64,
        cause: pb::EvaluationCause,
    ) -> Option<DeviceEvent> {
        let codes = |list: &[pb::Finding]| -> Vec<(String, i32)> {
            list.iter().map(|f| (f.code.clone(), f.action)).collect()
        };
        if verdict == self.current_verdict() && codes(&findings) == codes(&self.findings) {
            return None;
        }
        Some(DeviceEvent::VerdictChanged(pb::DeviceVerdictChanged {
            tenant_id: self.tenant_id.clone(),
            device_id: self.device_id.clone(),
            previous: self.verdict,
            verdict: verdict.into(),
            findings,
            policy_version,
            cause: cause.into(),
        }))
    }

    fn decide(&self, command: DeviceCommand) -> Result<Vec<DeviceEvent>, DeviceError> {
        match command {
            DeviceCommand::IssueChallenge {
                tenant_id,
                device_id,
                challenge_id,
                challenge,
                now_us,
                ttl_us,
                play_integrity_requested,
            } => {
                if !(16..=64).contains(&challenge.len()) {
                    return Err(DeviceError::Invalid(
                        "challenge: 16 to 64 random bytes".into(),
                    ));
                }
                if ttl_us <= 0 {
                    return Err(DeviceError::Invalid("ttl: must be positive".into()));
                }
                let open = self
                    .challenges
                    .iter()
                    .filter(|c| !c.used && c.expires_at_us > now_us)
                    .count();
                if open >= MAX_OPEN_CHALLENGES {
                    return Err(DeviceError::TooManyChallenges);
                }
                Ok(vec![DeviceEvent::ChallengeIssued(pb::ChallengeIssued {
                    tenant_id,
                    device_id,
                    challenge_id,
                    challenge,
                    expires_at: Some(timestamp_from_micros(now_us.saturating_add(ttl_us))),
                    play_integrity_requested,
                })])
            }
            DeviceCommand::Attest {
                challenge_id,
                summary,
                policy,
                policy_version,
                now_us,
                token_id,
            } => {
                let challenge = self
                    .challenge(&challenge_id)
                    .ok_or(DeviceError::ChallengeUnknown)?;
                if challenge.used {
                    return Err(DeviceError::ChallengeUsed);
                }
                if now_us >= challenge.expires_at_us {
                    return Err(DeviceError::ChallengeExpired);
                }
                let effective = Effective::of(&policy);
                let mut situation = self.situation(now_us, false);
                if summary.play_integrity {
                    situation.last_play_integrity_s = now_us / 1_000_000;
                }
                let (findings, verdict) = rules::judge(&summary, &policy, situation);
                let pays = verdict != pb::Verdict::Block;
                let second = 1_000_000_i64;
                let validity = i64::try_from(effective.verdict_validity_s).unwrap_or(0) * second;
                let interval =
                    i64::try_from(effective.reattestation_interval_s).unwrap_or(0) * second;
                let pi_interval = i64::try_from(policy.play_integrity_interval_seconds)
                    .unwrap_or(0)
                    .saturating_mul(second);
                let last_pi = if summary.play_integrity {
                    now_us
                } else {
                    self.last_play_integrity_us
                };
                Ok(vec![DeviceEvent::Attested(pb::DeviceAttested {
                    tenant_id: self.tenant_id.clone(),
                    device_id: self.device_id.clone(),
                    challenge_id,
                    evidence: Some(*summary),
                    findings,
                    verdict: verdict.into(),
                    policy_version,
                    attested_at: Some(timestamp_from_micros(now_us)),
                    valid_until: Some(timestamp_from_micros(if pays {
                        now_us.saturating_add(validity)
                    } else {
                        now_us
                    })),
                    reattest_by: Some(timestamp_from_micros(now_us.saturating_add(interval))),
                    token_id: if pays { token_id } else { String::new() },
                    play_integrity_due: (pi_interval > 0)
                        .then(|| timestamp_from_micros(last_pi.saturating_add(pi_interval))),
                    first_attestation: self.summary.is_none(),
                })])
            }
            DeviceCommand::Reevaluate {
                policy,
                policy_version,
                now_us,
            } => {
                let Some(summary) = &self.summary else {
                    return Ok(Vec::new());
                };
                let situation = self.situation(now_us, self.missed(now_us));
                let (findings, verdict) = rules::judge(summary, &policy, situation);
                Ok(self
                    .changed(
                        findings,
                        verdict,
                        policy_version,
                        pb::EvaluationCause::PolicyChange,
                    )
                    .into_iter()
                    .collect())
            }
            DeviceCommand::Monitor {
                policy,
                policy_version,
                now_us,
            } => {
                let Some(summary) = &self.summary else {
                    return Ok(Vec::new());
                };
                if !self.missed(now_us) || self.missed_deadline_us == self.reattest_by_us {
                    return Ok(Vec::new());
                }
                let mut events = vec![DeviceEvent::ReattestationMissed(pb::ReattestationMissed {
                    tenant_id: self.tenant_id.clone(),
                    device_id: self.device_id.clone(),
                    due_at: Some(timestamp_from_micros(self.reattest_by_us)),
                })];
                let (findings, verdict) =
                    rules::judge(summary, &policy, self.situation(now_us, true));
                events.extend(self.changed(
                    findings,
                    verdict,
                    policy_version,
                    pb::EvaluationCause::Monitoring,
                ));
                Ok(events)
            }
        }
    }
}

fn micros(timestamp: Option<&pbjson_types::Timestamp>) -> i64 {
    timestamp.map(timestamp_to_micros).unwrap_or(0)
}

impl Aggregate for Device {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = DeviceCommand;
    type Event = DeviceEvent;
    type Error = DeviceError;
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
            DeviceEvent::ChallengeIssued(issued) => {
                self.tenant_id = issued.tenant_id;
                self.device_id = issued.device_id;
                self.challenges.push(Challenge {
                    id: issued.challenge_id,
                    bytes: issued.challenge,
                    expires_at_us: micros(issued.expires_at.as_ref()),
                    used: false,
                    play_integrity_requested: issued.play_integrity_requested,
                });
                let excess = self.challenges.len().saturating_sub(REMEMBERED_CHALLENGES);
                self.challenges.drain(..excess);
            }
            DeviceEvent::Attested(attested) => {
                if let Some(challenge) = self
                    .challenges
                    .iter_mut()
                    .find(|c| c.id == attested.challenge_id)
                {
                    challenge.used = true;
                }
                let summary = attested.evidence.unwrap_or_default();
                self.attested_at_us = micros(attested.attested_at.as_ref());
                if summary.play_integrity {
                    self.last_play_integrity_us = self.attested_at_us;
                }
                self.summary = Some(summary);
                self.verdict = attested.verdict;
                self.findings = attested.findings;
                self.policy_version = attested.policy_version;
                self.reattest_by_us = micros(attested.reattest_by.as_ref());
            }
            DeviceEvent::VerdictChanged(changed) => {
                self.verdict = changed.verdict;
                self.findings = changed.findings;
                self.policy_version = changed.policy_version;
            }
            DeviceEvent::ReattestationMissed(missed) => {
                self.missed_deadline_us = micros(missed.due_at.as_ref());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type Test = TestFramework<Device>;

    const T0: i64 = 1_800_000_000_000_000;
    const MINUTE: i64 = 60_000_000;

    fn issue(id: &str, now_us: i64) -> DeviceCommand {
        DeviceCommand::IssueChallenge {
            tenant_id: "acme".into(),
            device_id: "phone-1".into(),
            challenge_id: id.into(),
            challenge: vec![7; 32],
            now_us,
            ttl_us: 5 * MINUTE,
            play_integrity_requested: false,
        }
    }

    fn issued(id: &str, now_us: i64) -> DeviceEvent {
        DeviceEvent::ChallengeIssued(pb::ChallengeIssued {
            tenant_id: "acme".into(),
            device_id: "phone-1".into(),
            challenge_id: id.into(),
            challenge: vec![7; 32],
            expires_at: Some(timestamp_from_micros(now_us + 5 * MINUTE)),
            play_integrity_requested: false,
        })
    }

    /// A verified TEE chain of Android 15 with the given patch level.
    fn summary(patch: u32) -> pb::EvidenceSummary {
        pb::EvidenceSummary {
            leaf_sha256: "ab".repeat(32),
            attestation_security_level: rules::level::TEE.into(),
            keymint_security_level: rules::level::TEE.into(),
            verified_boot_state: "verified".into(),
            device_locked: true,
            os_version: 150_000,
            os_patch_level: patch,
            ..pb::EvidenceSummary::default()
        }
    }

    fn attest(id: &str, now_us: i64, policy: pb::Policy) -> DeviceCommand {
        DeviceCommand::Attest {
            challenge_id: id.into(),
            summary: Box::new(summary(202_510)),
            policy,
            policy_version: 1,
            now_us,
            token_id: "tok-1".into(),
        }
    }

    fn attested_state(policy: &pb::Policy) -> Vec<DeviceEvent> {
        let mut device = Device::default();
        let mut events = vec![issued("c1", T0)];
        for event in &events {
            device.apply(event.clone());
        }
        let more = device
            .decide(attest("c1", T0 + MINUTE, policy.clone()))
            .expect("attested");
        events.extend(more);
        events
    }

    #[test]
    fn a_challenge_is_used_once_and_only_before_it_expires() {
        let events = attested_state(&pb::Policy::default());
        Test::with(())
            .given(events.clone())
            .when(attest("c1", T0 + 2 * MINUTE, pb::Policy::default()))
            .then_expect_error(DeviceError::ChallengeUsed);
        Test::with(())
            .given(vec![issued("c2", T0)])
            .when(attest("c2", T0 + 5 * MINUTE, pb::Policy::default()))
            .then_expect_error(DeviceError::ChallengeExpired);
        Test::with(())
            .given(vec![issued("c2", T0)])
            .when(attest("other", T0 + MINUTE, pb::Policy::default()))
            .then_expect_error(DeviceError::ChallengeUnknown);
    }

    #[test]
    fn open_challenges_are_limited() {
        let events: Vec<DeviceEvent> = (0..MAX_OPEN_CHALLENGES)
            .map(|i| issued(&format!("c{i}"), T0))
            .collect();
        Test::with(())
            .given(events.clone())
            .when(issue("next", T0 + MINUTE))
            .then_expect_error(DeviceError::TooManyChallenges);
        // Once they expired, a new one is issued.
        Test::with(())
            .given(events)
            .when(issue("next", T0 + 6 * MINUTE))
            .then_expect_events(vec![issued("next", T0 + 6 * MINUTE)]);
    }

    #[test]
    fn an_attestation_is_judged_and_carries_its_windows() {
        let policy = pb::Policy {
            reattestation_interval_seconds: 3_600,
            verdict_validity_seconds: 600,
            ..pb::Policy::default()
        };
        let events = attested_state(&policy);
        let Some(DeviceEvent::Attested(attested)) = events.last() else {
            panic!("attested expected");
        };
        assert_eq!(attested.verdict, i32::from(pb::Verdict::Allow));
        assert!(attested.findings.is_empty());
        assert_eq!(attested.token_id, "tok-1");
        assert_eq!(
            micros(attested.valid_until.as_ref()),
            T0 + MINUTE + 600_000_000
        );
        assert_eq!(
            micros(attested.reattest_by.as_ref()),
            T0 + MINUTE + 3_600_000_000
        );
    }

    #[test]
    fn a_policy_change_re_judges_the_last_evidence() {
        let events = attested_state(&pb::Policy::default());
        let stricter = pb::Policy {
            min_patch_level: 202_601,
            actions: [(
                "PATCH_LEVEL_TOO_OLD".to_owned(),
                pb::RuleAction::Block.into(),
            )]
            .into_iter()
            .collect(),
            ..pb::Policy::default()
        };
        let mut device = Device::default();
        for event in events.clone() {
            device.apply(event);
        }
        let changed = device
            .decide(DeviceCommand::Reevaluate {
                policy: stricter.clone(),
                policy_version: 2,
                now_us: T0 + 2 * MINUTE,
            })
            .expect("re-evaluated");
        let [DeviceEvent::VerdictChanged(changed)] = changed.as_slice() else {
            panic!("one verdict change expected, got {changed:?}");
        };
        assert_eq!(changed.previous, i32::from(pb::Verdict::Allow));
        assert_eq!(changed.verdict, i32::from(pb::Verdict::Block));
        assert_eq!(changed.findings[0].code, "PATCH_LEVEL_TOO_OLD");
        assert_eq!(changed.policy_version, 2);
        // The same policy again changes nothing.
        device.apply(DeviceEvent::VerdictChanged(changed.clone()));
        Test::with(())
            .given(
                events
                    .into_iter()
                    .chain([DeviceEvent::VerdictChanged(changed.clone())])
                    .collect(),
            )
            .when(DeviceCommand::Reevaluate {
                policy: stricter,
                policy_version: 3,
                now_us: T0 + 3 * MINUTE,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_missed_re_attestation_is_recorded_once_and_blocks() {
        let policy = pb::Policy {
            reattestation_interval_seconds: 3_600,
            ..pb::Policy::default()
        };
        let events = attested_state(&policy);
        let monitor = |now_us| DeviceCommand::Monitor {
            policy: policy.clone(),
            policy_version: 1,
            now_us,
        };
        Test::with(())
            .given(events.clone())
            .when(monitor(T0 + 30 * MINUTE))
            .then_expect_events(vec![]);
        let mut device = Device::default();
        for event in events {
            device.apply(event);
        }
        let late = T0 + 62 * MINUTE;
        let recorded = device.decide(monitor(late)).expect("monitored");
        let [
            DeviceEvent::ReattestationMissed(missed),
            DeviceEvent::VerdictChanged(changed),
        ] = recorded.as_slice()
        else {
            panic!("a miss and a verdict change expected, got {recorded:?}");
        };
        assert_eq!(micros(missed.due_at.as_ref()), T0 + 61 * MINUTE);
        assert_eq!(changed.verdict, i32::from(pb::Verdict::Block));
        assert_eq!(changed.cause, i32::from(pb::EvaluationCause::Monitoring));
        for event in recorded {
            device.apply(event);
        }
        assert_eq!(device.decide(monitor(late + MINUTE)), Ok(vec![]));
    }
}
