//! The service's operations over its log: challenges, attestations (evidence examined against
//! the current trust anchors and status list, judged by the tenant's policy, a token issued
//! when payments are allowed), policy edits that re-judge the tenant's devices, monitoring,
//! and the dashboard reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attestation_token::{Claims, Confirmation, TokenIssuer, Verdict as TokenVerdict};
use attestation_trust::TrustSources;
use mpos_errors::ServiceError;
use mpos_es::Cqrs;
use mpos_es::{CommandMetadata, EventStore, ProjectionRunner};
use mpos_proto::attestation as pb;
use mpos_proto::{timestamp_from_micros, timestamp_to_micros};
use rand::RngCore as _;

use crate::dashboard::{AdoptionProjection, DevicesProjection};
use crate::device::{AGGREGATE_TYPE as DEVICE, Device, DeviceCommand, DeviceEvent};
use crate::evidence::{self, Evidence, Trust};
use crate::policy::{PolicyCommand, TenantPolicy};
use crate::rules::Effective;

/// Who acts (the envelope's actor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// Settings of the operations.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a challenge is valid.
    pub challenge_ttl: Duration,
    /// The tokens' issuer (`iss`).
    pub issuer: String,
}

/// The operations.
pub struct Attestor {
    pub(crate) store: EventStore,
    policies: Arc<Cqrs<TenantPolicy>>,
    devices: Arc<Cqrs<Device>>,
    pub(crate) trust: TrustSources,
    tokens: Arc<TokenIssuer>,
    settings: Settings,
    pub(crate) device_views: ProjectionRunner<DevicesProjection>,
    pub(crate) adoption: ProjectionRunner<AdoptionProjection>,
    /// Play Integrity verdicts requested per (tenant, UTC day), in this process.
    quota: Mutex<HashMap<(String, String), u32>>,
    /// Verified link signatures above the leaves (ADR 14, docs/benchmarks.md).
    links: android_attestation::LinkCache,
}

impl std::fmt::Debug for Attestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestor").finish_non_exhaustive()
    }
}

fn unreadable(error: serde_json::Error) -> ServiceError {
    tracing::error!(%error, "unreadable event");
    ServiceError::internal("unreadable event")
}

/// The key a token vouches for (its `cnf` claim): the attestation leaf, only when its chain
/// verified to a trusted root and it was generated for this challenge. A service that
/// delivers a secret to the device (key-injection's SoftPOS initial key) sends it to this
/// certificate's key and to no other.
pub fn attested_key(summary: &pb::EvidenceSummary) -> Option<Confirmation> {
    let unproven = summary.evidence_findings.iter().any(|finding| {
        finding.code == crate::rules::KA_CHAIN_INVALID.code
            || finding.code == crate::rules::KA_CHALLENGE_MISMATCH.code
    });
    if unproven {
        return None;
    }
    Confirmation::of_sha256_hex(&summary.leaf_sha256)
}

fn micros_of(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// The device aggregate's id.
pub fn device_key(tenant_id: &str, device_id: &str) -> String {
    format!("{tenant_id}/{device_id}")
}

impl Attestor {
    /// The operations over `store`, verifying against `trust`, signing with `tokens`.
    pub fn new(
        store: EventStore,
        trust: TrustSources,
        tokens: Arc<TokenIssuer>,
        settings: Settings,
    ) -> Self {
        Self {
            policies: mpos_es::snapshot_framework(&store, 50),
            devices: mpos_es::snapshot_framework(&store, 100),
            device_views: ProjectionRunner::new(store.clone(), DevicesProjection),
            adoption: ProjectionRunner::new(store.clone(), AdoptionProjection),
            store,
            trust,
            tokens,
            settings,
            quota: Mutex::new(HashMap::new()),
            links: android_attestation::LinkCache::new(16_384),
        }
    }

    /// The token signing key's public half (for verifiers) and its key id.
    pub fn token_key(&self) -> (String, attestation_token::PublicKey) {
        (self.tokens.kid().to_owned(), self.tokens.public_key())
    }

    fn metadata(actor: &Actor, tenant_id: &str) -> CommandMetadata {
        CommandMetadata {
            tenant_id: tenant_id.to_owned(),
            correlation_id: uuid::Uuid::now_v7().to_string(),
            causation_id: String::new(),
            traceparent: mpos_telemetry::current_traceparent().unwrap_or_default(),
            actor: actor.0.clone(),
        }
    }

    /// Applies to `state` the events of one aggregate after `sequence`; returns the last
    /// sequence applied (so that a later call reads only what came since).
    async fn replay<A>(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: u64,
        state: &mut A,
    ) -> Result<u64, ServiceError>
    where
        A: cqrs_es::Aggregate,
        A::Event: serde::de::DeserializeOwned,
    {
        let mut last = sequence;
        for stored in self
            .store
            .read_aggregate(aggregate_type, aggregate_id, sequence)
            .await?
        {
            let event: A::Event =
                serde_json::from_str(&stored.event.payload).map_err(unreadable)?;
            state.apply(event);
            last = stored.event.sequence;
        }
        Ok(last)
    }

    /// The tenant's current policy (version 0 and the defaults before the first edit).
    pub async fn policy(&self, tenant_id: &str) -> Result<TenantPolicy, ServiceError> {
        let mut policy = TenantPolicy::default();
        self.replay(crate::policy::AGGREGATE_TYPE, tenant_id, 0, &mut policy)
            .await?;
        Ok(policy)
    }

    /// A device's state (default if it never asked for a challenge) and its last sequence.
    async fn load_device(
        &self,
        tenant_id: &str,
        device_id: &str,
    ) -> Result<(Device, u64), ServiceError> {
        let mut device = Device::default();
        let sequence = self
            .replay(DEVICE, &device_key(tenant_id, device_id), 0, &mut device)
            .await?;
        Ok((device, sequence))
    }

    /// A device's state (default if it never asked for a challenge).
    pub async fn device(&self, tenant_id: &str, device_id: &str) -> Result<Device, ServiceError> {
        Ok(self.load_device(tenant_id, device_id).await?.0)
    }

    /// Whether a Play Integrity verdict is asked for now: the device's is due under the
    /// policy, and the tenant's app is under its daily quota (counted here when asked).
    fn ask_play_integrity(
        &self,
        tenant_id: &str,
        device: &Device,
        policy: &pb::Policy,
        now_us: i64,
    ) -> bool {
        let interval = i64::try_from(policy.play_integrity_interval_seconds).unwrap_or(0);
        if interval == 0 {
            return false;
        }
        let due = now_us.saturating_sub(device.last_play_integrity_us) / 1_000_000 >= interval;
        if !due {
            return false;
        }
        let quota = Effective::of(policy).play_integrity_daily_quota;
        let key = (tenant_id.to_owned(), crate::dashboard::day_of(now_us));
        let Ok(mut counts) = self.quota.lock() else {
            return false;
        };
        counts.retain(|(_, day), _| *day == key.1);
        let used = counts.entry(key).or_insert(0);
        if *used >= quota {
            metrics::counter!("mpos_attestation_play_integrity_quota_reached_total").increment(1);
            return false;
        }
        *used += 1;
        true
    }

    /// Issues a challenge to a device.
    pub async fn issue_challenge(
        &self,
        actor: &Actor,
        tenant_id: &str,
        device_id: &str,
    ) -> Result<pb::ChallengeResponse, ServiceError> {
        let now_us = mpos_es::now_micros();
        let policy = self.policy(tenant_id).await?;
        let device = self.device(tenant_id, device_id).await?;
        let play_integrity_requested =
            self.ask_play_integrity(tenant_id, &device, &policy.policy, now_us);
        let mut challenge = vec![0_u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut challenge);
        let challenge_id = uuid::Uuid::now_v7().to_string();
        let ttl_us = micros_of(self.settings.challenge_ttl);
        mpos_es::execute(
            &self.devices,
            &device_key(tenant_id, device_id),
            DeviceCommand::IssueChallenge {
                tenant_id: tenant_id.to_owned(),
                device_id: device_id.to_owned(),
                challenge_id: challenge_id.clone(),
                challenge: challenge.clone(),
                now_us,
                ttl_us,
                play_integrity_requested,
            },
            Self::metadata(actor, tenant_id),
        )
        .await?;
        Ok(pb::ChallengeResponse {
            challenge_id,
            request_hash: evidence::request_hash(&challenge),
            challenge,
            expires_at: Some(timestamp_from_micros(now_us.saturating_add(ttl_us))),
            play_integrity_requested,
        })
    }

    /// Examines and judges a device's evidence for one of its challenges; issues a token when
    /// payments are allowed.
    pub async fn attest(
        &self,
        actor: &Actor,
        tenant_id: &str,
        device_id: &str,
        request: pb::AttestRequest,
    ) -> Result<pb::AttestResponse, ServiceError> {
        if request.key_attestation_chain.len() > android_attestation::MAX_CHAIN_LEN {
            return Err(ServiceError::bad_request(format!(
                "key_attestation_chain: at most {} certificates",
                android_attestation::MAX_CHAIN_LEN
            )));
        }
        let now_us = mpos_es::now_micros();
        let (mut device, sequence) = self.load_device(tenant_id, device_id).await?;
        let challenge = device
            .challenge(&request.challenge_id)
            .ok_or(crate::device::DeviceError::ChallengeUnknown)?;
        if challenge.used {
            return Err(crate::device::DeviceError::ChallengeUsed.into());
        }
        if now_us >= challenge.expires_at_us {
            return Err(crate::device::DeviceError::ChallengeExpired.into());
        }
        let policy = self.policy(tenant_id).await?;
        let snapshot = self.trust.snapshot();
        let evidence = Evidence {
            chain: request
                .key_attestation_chain
                .iter()
                .map(|der| der.to_vec())
                .collect(),
            play_integrity: (!request.play_integrity_verdict.is_empty())
                .then(|| request.play_integrity_verdict.clone().into_bytes()),
            signals: request.signals.unwrap_or_default(),
        };
        let summary = evidence::examine(
            &evidence,
            &challenge.bytes,
            Trust {
                anchors: &snapshot.anchors,
                revocations: &snapshot.revocations,
                stale: self.trust.is_stale(),
                links: Some(&self.links),
            },
            &policy.policy,
            u64::try_from(now_us / 1_000).unwrap_or(0),
        );
        let token_id = uuid::Uuid::now_v7().to_string();
        let key = device_key(tenant_id, device_id);
        let confirmation = attested_key(&summary);
        mpos_es::execute(
            &self.devices,
            &key,
            DeviceCommand::Attest {
                challenge_id: request.challenge_id.clone(),
                summary: Box::new(summary),
                policy: policy.policy.clone(),
                policy_version: policy.version,
                now_us,
                token_id: token_id.clone(),
            },
            Self::metadata(actor, tenant_id),
        )
        .await?;
        // Only the events this attestation wrote (or a concurrent writer's) are read back.
        self.replay(DEVICE, &key, sequence, &mut device).await?;
        let after = device;
        let verdict = after.current_verdict();
        metrics::counter!("mpos_attestation_verdicts_total", "verdict" => verdict.as_str_name())
            .increment(1);
        let valid_until_us = if verdict == pb::Verdict::Block {
            now_us
        } else {
            now_us.saturating_add(
                i64::try_from(Effective::of(&policy.policy).verdict_validity_s).unwrap_or(0)
                    * 1_000_000,
            )
        };
        let token = match verdict {
            pb::Verdict::Allow | pb::Verdict::Flag => {
                let now_s = u64::try_from(now_us / 1_000_000).unwrap_or(0);
                let claims = Claims {
                    iss: self.settings.issuer.clone(),
                    sub: device_id.to_owned(),
                    tenant: tenant_id.to_owned(),
                    verdict: if verdict == pb::Verdict::Allow {
                        TokenVerdict::Allow
                    } else {
                        TokenVerdict::Flag
                    },
                    reasons: after.findings.iter().map(|f| f.code.clone()).collect(),
                    iat: now_s,
                    nbf: now_s,
                    exp: u64::try_from(valid_until_us / 1_000_000).unwrap_or(0),
                    jti: token_id,
                    policy_version: policy.version,
                    cnf: confirmation,
                };
                self.tokens
                    .issue(&claims)
                    .map_err(|error| ServiceError::internal(format!("token: {error}")))?
            }
            _ => String::new(),
        };
        let pi_interval = i64::try_from(policy.policy.play_integrity_interval_seconds).unwrap_or(0);
        Ok(pb::AttestResponse {
            verdict: verdict.into(),
            findings: after.findings.clone(),
            valid_until: Some(timestamp_from_micros(valid_until_us)),
            reattest_by: Some(timestamp_from_micros(after.reattest_by_us)),
            token,
            policy_version: policy.version,
            play_integrity_due: (pi_interval > 0).then(|| {
                timestamp_from_micros(
                    after
                        .last_play_integrity_us
                        .saturating_add(pi_interval.saturating_mul(1_000_000)),
                )
            }),
        })
    }

    /// The ids of a tenant's devices that attested at least once.
    pub async fn device_ids(&self, tenant_id: &str) -> Result<Vec<String>, ServiceError> {
        self.device_views.catch_up().await?;
        Ok(self
            .store
            .list_documents(crate::dashboard::DEVICES, Some(tenant_id))
            .await?
            .into_iter()
            .filter_map(|document| {
                document
                    .id
                    .strip_prefix(&format!("{tenant_id}/"))
                    .map(str::to_owned)
            })
            .collect())
    }

    /// Publishes a new policy version and re-judges every device of the tenant with it.
    pub async fn publish_policy(
        &self,
        actor: &Actor,
        tenant_id: &str,
        request: pb::PutPolicyRequest,
    ) -> Result<pb::PolicyResponse, ServiceError> {
        mpos_es::execute(
            &self.policies,
            tenant_id,
            PolicyCommand::Publish {
                tenant_id: tenant_id.to_owned(),
                policy: request.policy.unwrap_or_default(),
                comment: request.comment,
                expected_version: (request.expected_version != 0)
                    .then_some(request.expected_version),
            },
            Self::metadata(actor, tenant_id),
        )
        .await?;
        let current = self.policy(tenant_id).await?;
        let (reevaluated, changed) = self.reevaluate(actor, tenant_id, &current).await?;
        Ok(pb::PolicyResponse {
            tenant_id: tenant_id.to_owned(),
            version: current.version,
            policy: Some(current.policy),
            devices_reevaluated: reevaluated,
            verdicts_changed: changed,
        })
    }

    /// Re-judges every device of the tenant with `policy`; (devices, verdicts changed).
    pub async fn reevaluate(
        &self,
        actor: &Actor,
        tenant_id: &str,
        policy: &TenantPolicy,
    ) -> Result<(u64, u64), ServiceError> {
        let now_us = mpos_es::now_micros();
        let (mut devices, mut changed) = (0, 0);
        for device_id in self.device_ids(tenant_id).await? {
            let key = device_key(tenant_id, &device_id);
            let (mut device, sequence) = self.load_device(tenant_id, &device_id).await?;
            let before = device.verdict;
            mpos_es::execute_retrying(
                &self.devices,
                &key,
                DeviceCommand::Reevaluate {
                    policy: policy.policy.clone(),
                    policy_version: policy.version,
                    now_us,
                },
                Self::metadata(actor, tenant_id),
                8,
            )
            .await?;
            self.replay(DEVICE, &key, sequence, &mut device).await?;
            devices += 1;
            changed += u64::from(before != device.verdict);
        }
        Ok((devices, changed))
    }

    /// Monitoring: records every missed re-attestation (each once); how many were recorded.
    pub async fn monitor(&self, actor: &Actor) -> Result<u64, ServiceError> {
        self.monitor_at(actor, mpos_es::now_micros()).await
    }

    /// [`Attestor::monitor`] as of `now_us` (Unix microseconds).
    pub async fn monitor_at(&self, actor: &Actor, now_us: i64) -> Result<u64, ServiceError> {
        self.device_views.catch_up().await?;
        let mut missed = 0;
        let mut policies: HashMap<String, TenantPolicy> = HashMap::new();
        for document in self
            .store
            .list_documents(crate::dashboard::DEVICES, None)
            .await?
        {
            let view: pb::DeviceView =
                serde_json::from_str(&document.payload).map_err(unreadable)?;
            let overdue = !view.reattestation_missed
                && view
                    .reattest_by
                    .as_ref()
                    .is_some_and(|by| timestamp_to_micros(by) < now_us);
            if !overdue {
                continue;
            }
            let policy = match policies.get(&view.tenant_id) {
                Some(policy) => policy.clone(),
                None => {
                    let policy = self.policy(&view.tenant_id).await?;
                    policies.insert(view.tenant_id.clone(), policy.clone());
                    policy
                }
            };
            mpos_es::execute_retrying(
                &self.devices,
                &device_key(&view.tenant_id, &view.device_id),
                DeviceCommand::Monitor {
                    policy: policy.policy,
                    policy_version: policy.version,
                    now_us,
                },
                Self::metadata(actor, &view.tenant_id),
                8,
            )
            .await?;
            missed += 1;
        }
        if missed > 0 {
            tracing::info!(devices = missed, "re-attestations missed");
        }
        Ok(missed)
    }

    /// The tenant's dashboard.
    pub async fn dashboard(&self, tenant_id: &str) -> Result<pb::Dashboard, ServiceError> {
        self.device_views.catch_up().await?;
        self.adoption.catch_up().await?;
        let decode = |payload: &str| serde_json::from_str(payload).map_err(unreadable);
        let devices = self
            .store
            .list_documents(crate::dashboard::DEVICES, Some(tenant_id))
            .await?
            .iter()
            .map(|d| decode(&d.payload))
            .collect::<Result<Vec<pb::DeviceView>, _>>()?;
        let adoption = self
            .store
            .list_documents(crate::dashboard::ADOPTION, Some(tenant_id))
            .await?
            .iter()
            .map(|d| serde_json::from_str(&d.payload).map_err(unreadable))
            .collect::<Result<Vec<pb::AdoptionDay>, _>>()?;
        Ok(crate::dashboard::dashboard(
            tenant_id,
            &devices,
            adoption,
            mpos_es::now_micros(),
        ))
    }

    /// A device's view and its history.
    pub async fn history(
        &self,
        tenant_id: &str,
        device_id: &str,
    ) -> Result<pb::DeviceHistory, ServiceError> {
        self.device_views.catch_up().await?;
        let key = device_key(tenant_id, device_id);
        let view = self
            .store
            .document(crate::dashboard::DEVICES, tenant_id, &key)
            .await?
            .map(|d| serde_json::from_str::<pb::DeviceView>(&d.payload).map_err(unreadable))
            .transpose()?;
        let events = self.store.read_aggregate(DEVICE, &key, 0).await?;
        if view.is_none() && events.is_empty() {
            return Err(ServiceError::not_found("device not found"));
        }
        let mut entries = Vec::with_capacity(events.len());
        for stored in events {
            let event: DeviceEvent =
                serde_json::from_str(&stored.event.payload).map_err(unreadable)?;
            let (verdict, findings, policy_version) = match &event {
                DeviceEvent::Attested(e) => (e.verdict, e.findings.clone(), e.policy_version),
                DeviceEvent::VerdictChanged(e) => (e.verdict, e.findings.clone(), e.policy_version),
                DeviceEvent::ChallengeIssued(_) | DeviceEvent::ReattestationMissed(_) => {
                    (0, Vec::new(), 0)
                }
            };
            entries.push(pb::HistoryEntry {
                sequence: stored.event.sequence,
                event_type: stored.event.event_type.clone(),
                occurred_at: Some(timestamp_from_micros(stored.event.occurred_at_us)),
                actor: stored.metadata().actor,
                verdict,
                reasons: findings.into_iter().map(|f| f.code).collect(),
                policy_version,
            });
        }
        Ok(pb::DeviceHistory {
            device: view,
            entries,
        })
    }
}
