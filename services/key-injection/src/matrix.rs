//! The PCI-style key matrix of a tenant: every kind of key the platform holds or injects for
//! it, what each protects, what protects it, and where it is. The hsm-proxy's keys are listed
//! from the hsm-proxy itself (ids, aliases, backends); device keys are counted from the key
//! slot inventory.

use std::collections::BTreeMap;

use mpos_errors::ServiceError;
use mpos_proto::hsm as hsm_pb;
use mpos_proto::key_injection as pb;

use crate::api::AppState;

/// What a TR-31 key usage is, for the matrix.
fn describe(usage: &str) -> (&'static str, &'static str) {
    match usage {
        "B0" => (
            "BDK (base derivation key)",
            "derives every device's initial DUKPT key",
        ),
        "B1" => (
            "initial DUKPT key (IPEK / IK)",
            "a device's initial key, from which its transaction keys derive",
        ),
        "S0" => (
            "key distribution host key pair (TR-34)",
            "signs TR-34 key tokens sent to devices",
        ),
        "K0" | "K1" => (
            "key encryption key",
            "wraps keys exchanged with other hosts",
        ),
        "P0" => (
            "PIN encryption key (zone PIN key)",
            "protects PIN blocks between hosts",
        ),
        "D0" => ("data encryption key", "protects card data"),
        "M0" | "M1" | "M3" | "M6" => ("MAC key", "authenticates messages"),
        "V2" | "V1" | "C0" => ("card verification key", "verifies PINs and card codes"),
        "E0" | "E1" | "E2" | "E3" | "E4" | "E5" | "E6" => (
            "EMV issuer master key",
            "derives card keys for cryptograms and scripts",
        ),
        _ => ("other key", "see the hsm-proxy's key attributes"),
    }
}

/// The tenant's key matrix.
pub async fn key_matrix(state: &AppState, tenant_id: &str) -> Result<pb::KeyMatrix, ServiceError> {
    let listed: hsm_pb::ListKeysResponse = state
        .injector
        .hsm()
        .call(
            "ListKeys",
            &hsm_pb::ListKeysRequest {
                tenant_id: tenant_id.to_owned(),
            },
        )
        .await
        .map_err(ServiceError::from)?;
    // Grouped by usage and algorithm.
    let mut groups: BTreeMap<(String, String), (Vec<String>, Vec<String>)> = BTreeMap::new();
    for key in &listed.keys {
        if key.state == i32::from(hsm_pb::KeyState::DeletePending) {
            continue;
        }
        let Some(attributes) = &key.attributes else {
            continue;
        };
        let algorithm = hsm_pb::KeyAlgorithm::try_from(attributes.algorithm)
            .map(|algorithm| {
                algorithm
                    .as_str_name()
                    .trim_start_matches("KEY_ALGORITHM_")
                    .to_owned()
            })
            .unwrap_or_default();
        let entry = groups
            .entry((attributes.key_usage.clone(), algorithm))
            .or_default();
        entry.0.push(if key.alias.is_empty() {
            key.key_id.clone()
        } else {
            format!("{} ({})", key.key_id, key.alias)
        });
        for backend in &key.backend_ids {
            if !entry.1.contains(backend) {
                entry.1.push(backend.clone());
            }
        }
    }
    let mut entries: Vec<pb::KeyMatrixEntry> = groups
        .into_iter()
        .map(|((usage, algorithm), (ids, backends))| {
            let (key_type, purpose) = describe(&usage);
            let protected_by = if algorithm.starts_with("RSA") || algorithm.starts_with("EC") {
                "private key sealed by the HSM backend (never exported)"
            } else {
                "the HSM backend's master key (LMK / local master key); exported only as TR-31 or TR-34 blocks"
            };
            pb::KeyMatrixEntry {
                key_type: key_type.to_owned(),
                key_usage: usage,
                algorithm,
                purpose: purpose.to_owned(),
                protected_by: protected_by.to_owned(),
                location: format!("hsm-proxy backends: {}", backends.join(", ")),
                count: ids.len() as u64,
                key_ids: ids,
            }
        })
        .collect();
    let (installed, revoked) = state.injector.slot_counts(tenant_id).await?;
    entries.push(pb::KeyMatrixEntry {
        key_type: "initial DUKPT key (IPEK / IK), in devices".to_owned(),
        key_usage: "B1".to_owned(),
        algorithm: "TDES-2KEY or AES-128 (per BDK)".to_owned(),
        purpose: "each device's own initial key; transaction keys derive from it".to_owned(),
        protected_by: "in transit: TR-34 one-pass token (the device's RSA key, signed by the KDH) or a TR-31 version D block under an ECDH (P-256) one-time KBPK; at rest: the PED's tamper-responsive memory".to_owned(),
        location: format!("devices ({revoked} revoked slots not counted); the platform keeps only KSN and KCV"),
        count: installed,
        key_ids: Vec::new(),
    });
    entries.push(pb::KeyMatrixEntry {
        key_type: "DUKPT transaction keys (PIN, data, MAC)".to_owned(),
        key_usage: "P0, D0, M3 (derived)".to_owned(),
        algorithm: "TDES or AES (per BDK)".to_owned(),
        purpose: "one key per transaction for PIN blocks, card data and MACs".to_owned(),
        protected_by: "never stored: derived per transaction in the device (future key registers) and inside the HSM backend".to_owned(),
        location: "devices and hsm-proxy backends, transiently".to_owned(),
        count: installed,
        key_ids: Vec::new(),
    });
    Ok(pb::KeyMatrix {
        tenant_id: tenant_id.to_owned(),
        entries,
    })
}
