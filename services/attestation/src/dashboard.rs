//! The dashboard's read models, built from the service's own log: one document per device
//! (its current verdict, versions and reasons: the distributions are counted over them) and
//! one per tenant and UTC day (attestations, new devices, verdicts: adoption over time). Both
//! can be dropped and rebuilt by replay. A device's history is read from its events.

use std::collections::BTreeMap;

use mpos_es::{Projection, StoreError, StoredEvent};
use mpos_proto::attestation as pb;
use mpos_proto::timestamp_from_micros;

use crate::device::{AGGREGATE_TYPE, DeviceEvent};

/// One document per device: [`pb::DeviceView`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DevicesProjection;

/// The projection's name.
pub const DEVICES: &str = "attestation-devices";
/// The adoption projection's name.
pub const ADOPTION: &str = "attestation-adoption";

fn decode(event: &StoredEvent) -> Result<Option<DeviceEvent>, StoreError> {
    if event.event.aggregate_type != AGGREGATE_TYPE {
        return Ok(None);
    }
    Ok(Some(serde_json::from_str(&event.event.payload)?))
}

impl Projection for DevicesProjection {
    type View = pb::DeviceView;

    fn name(&self) -> &'static str {
        DEVICES
    }

    fn document_id(&self, event: &StoredEvent) -> Option<String> {
        (event.event.aggregate_type == AGGREGATE_TYPE && event.event.event_type != CHALLENGE)
            .then(|| event.event.aggregate_id.clone())
    }

    fn apply(&self, view: &mut pb::DeviceView, event: &StoredEvent) -> Result<(), StoreError> {
        match decode(event)? {
            Some(DeviceEvent::Attested(attested)) => {
                let evidence = attested.evidence.unwrap_or_default();
                let signals = evidence.signals.unwrap_or_default();
                view.tenant_id = attested.tenant_id;
                view.device_id = attested.device_id;
                view.verdict = attested.verdict;
                view.findings = attested.findings;
                view.policy_version = attested.policy_version;
                if view.first_attested_at.is_none() {
                    view.first_attested_at.clone_from(&attested.attested_at);
                }
                view.attested_at = attested.attested_at;
                view.reattest_by = attested.reattest_by;
                view.os_version = if evidence.os_version == 0 {
                    signals.os_version
                } else {
                    evidence.os_version
                };
                view.os_patch_level = if evidence.os_patch_level == 0 {
                    crate::rules::patch_from_signal(&signals.security_patch_level)
                } else {
                    evidence.os_patch_level
                };
                view.sdk_version = signals.sdk_version;
                view.app_version = signals.app_version;
                view.security_level = evidence.attestation_security_level;
                view.attestations += 1;
                view.reattestation_missed = false;
            }
            Some(DeviceEvent::VerdictChanged(changed)) => {
                view.verdict = changed.verdict;
                view.findings = changed.findings;
                view.policy_version = changed.policy_version;
            }
            Some(DeviceEvent::ReattestationMissed(_)) => view.reattestation_missed = true,
            Some(DeviceEvent::ChallengeIssued(_)) | None => {}
        }
        Ok(())
    }
}

const CHALLENGE: &str = "mpos.attestation.v1.ChallengeIssued";
const ATTESTED: &str = "mpos.attestation.v1.DeviceAttested";

/// The UTC day of a time, `YYYY-MM-DD`.
pub fn day_of(micros: i64) -> String {
    let timestamp = timestamp_from_micros(micros);
    chrono::DateTime::from_timestamp(timestamp.seconds, 0)
        .map(|time| time.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// One document per tenant and day: [`pb::AdoptionDay`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AdoptionProjection;

impl Projection for AdoptionProjection {
    type View = pb::AdoptionDay;

    fn name(&self) -> &'static str {
        ADOPTION
    }

    fn document_id(&self, event: &StoredEvent) -> Option<String> {
        (event.event.event_type == ATTESTED).then(|| {
            format!(
                "{}/{}",
                event.event.tenant_id,
                day_of(event.event.occurred_at_us)
            )
        })
    }

    fn apply(&self, view: &mut pb::AdoptionDay, event: &StoredEvent) -> Result<(), StoreError> {
        if let Some(DeviceEvent::Attested(attested)) = decode(event)? {
            view.day = day_of(event.event.occurred_at_us);
            view.attestations += 1;
            view.new_devices += u64::from(attested.first_attestation);
            match pb::Verdict::try_from(attested.verdict) {
                Ok(pb::Verdict::Allow) => view.allowed += 1,
                Ok(pb::Verdict::Flag) => view.flagged += 1,
                _ => view.blocked += 1,
            }
        }
        Ok(())
    }
}

fn buckets(counts: BTreeMap<String, u64>) -> Vec<pb::Bucket> {
    counts
        .into_iter()
        .map(|(value, devices)| pb::Bucket { value, devices })
        .collect()
}

fn verdict_name(verdict: i32) -> String {
    pb::Verdict::try_from(verdict)
        .map(|v| {
            v.as_str_name()
                .trim_start_matches("VERDICT_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// The dashboard of a tenant from its device documents and adoption days; `now_us` decides
/// which devices are active (re-attestation not overdue).
pub fn dashboard(
    tenant_id: &str,
    devices: &[pb::DeviceView],
    mut adoption: Vec<pb::AdoptionDay>,
    now_us: i64,
) -> pb::Dashboard {
    let mut verdicts = BTreeMap::new();
    let mut reasons = BTreeMap::new();
    let mut os_versions = BTreeMap::new();
    let mut patch_levels = BTreeMap::new();
    let mut sdk_versions = BTreeMap::new();
    let mut app_versions = BTreeMap::new();
    let mut active = 0;
    let count = |map: &mut BTreeMap<String, u64>, key: String| *map.entry(key).or_insert(0) += 1;
    for device in devices {
        let overdue = device.reattestation_missed
            || device
                .reattest_by
                .as_ref()
                .is_some_and(|by| mpos_proto::timestamp_to_micros(by) < now_us);
        if !overdue {
            active += 1;
        }
        count(&mut verdicts, verdict_name(device.verdict));
        for finding in &device.findings {
            count(&mut reasons, finding.code.clone());
        }
        count(&mut os_versions, device.os_version.to_string());
        count(&mut patch_levels, device.os_patch_level.to_string());
        count(&mut sdk_versions, device.sdk_version.clone());
        count(&mut app_versions, device.app_version.clone());
    }
    adoption.sort_by(|a, b| a.day.cmp(&b.day));
    pb::Dashboard {
        tenant_id: tenant_id.to_owned(),
        devices: u64::try_from(devices.len()).unwrap_or(u64::MAX),
        active_devices: active,
        verdicts: buckets(verdicts),
        reasons: buckets(reasons),
        os_versions: buckets(os_versions),
        patch_levels: buckets(patch_levels),
        sdk_versions: buckets(sdk_versions),
        app_versions: buckets(app_versions),
        adoption,
    }
}
