//! Which DUKPT key each terminal holds, from key-injection's events: the BDKs assigned to
//! each tenant (`BdkAssigned`: the hsm-proxy key) and every terminal's key slot
//! (`KeySlotInstalled`, `KeySlotRevoked`). A payment's KSN must belong to the paying
//! terminal's installed, unrevoked key ([`ksn_belongs_to`]): a terminal cannot have card data
//! deciphered under another terminal's key, and a revoked key deciphers nothing.

use mpos_bus::EventEnvelope;
use mpos_errors::ServiceError;
use mpos_es::{Document, EventStore};
use mpos_feed::follow::Overlay;
use mpos_proto::key_injection as pb;
use prost::Message as _;
use serde::{Deserialize, Serialize};

/// The followed service's name (its stream on the bus).
pub const KI_SOURCE: &str = "key-injection";
const TYPE_PREFIX: &str = "mpos.key_injection.v1.";

/// A BDK of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BdkDoc {
    /// The key in the hsm-proxy (id or alias).
    pub hsm_key_id: String,
    /// `DukptAlgorithm` as a number.
    pub algorithm: i32,
}

/// A terminal's DUKPT key slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotDoc {
    /// The BDK it derives from (the tenant's name for it).
    pub bdk_id: String,
    /// TDES: the initial KSN (20 hex digits); AES: the initial key id (16 hex digits).
    pub initial_key_id: String,
    /// `DukptAlgorithm` as a number.
    pub algorithm: i32,
    /// Revoked (blacklisted, swapped out, decommissioned, re-keyed away).
    pub revoked: bool,
}

/// The key a terminal's payments are deciphered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminalKey {
    /// Its slot.
    pub slot: SlotDoc,
    /// The BDK in the hsm-proxy.
    pub bdk_hsm_key_id: String,
}

fn bdk_doc_id(tenant_id: &str, bdk_id: &str) -> String {
    format!("ki-bdk/{tenant_id}/{bdk_id}")
}

fn slot_doc_id(tenant_id: &str, terminal_id: &str) -> String {
    format!("ki-slot/{tenant_id}/{terminal_id}")
}

fn unreadable(error: serde_json::Error) -> ServiceError {
    tracing::error!(%error, "unreadable key document");
    ServiceError::internal("unreadable document")
}

/// Whether `ksn` (the payment's, 20 or 24 hex digits) is a transaction KSN of the key whose
/// initial identity is `initial_key_id`: TDES DUKPT (ANSI X9.24-1:2009) — the same 80-bit KSN
/// with the 21-bit transaction counter cleared; AES DUKPT (X9.24-3-2017) — the 64-bit initial
/// key id followed by a 32-bit counter.
pub fn ksn_belongs_to(ksn: &str, initial_key_id: &str) -> bool {
    let (Ok(ksn), Ok(initial)) = (hex::decode(ksn), hex::decode(initial_key_id)) else {
        return false;
    };
    match (ksn.len(), initial.len()) {
        (10, 10) => {
            let mut cleared = ksn.clone();
            // The counter is the rightmost 21 bits: all of bytes 8-9 and the low 5 bits of 7.
            cleared[7] &= 0xE0;
            cleared[8] = 0;
            cleared[9] = 0;
            cleared == initial
        }
        (12, 8) => ksn.get(..8) == Some(initial.as_slice()),
        _ => false,
    }
}

/// Reads of the key documents.
#[derive(Clone, Debug)]
pub struct KeyView {
    store: EventStore,
    projection: &'static str,
}

impl KeyView {
    /// The view over the documents of `projection` in `store`.
    pub fn new(store: EventStore, projection: &'static str) -> Self {
        Self { store, projection }
    }

    async fn doc<T: for<'de> Deserialize<'de>>(
        &self,
        overlay: Option<&Overlay>,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<T>, ServiceError> {
        if let Some(document) = overlay.and_then(|overlay| overlay.get(id)) {
            return serde_json::from_str(&document.payload)
                .map(Some)
                .map_err(unreadable);
        }
        self.store
            .document(self.projection, tenant_id, id)
            .await?
            .map(|document| serde_json::from_str(&document.payload).map_err(unreadable))
            .transpose()
    }

    /// The key a terminal holds now, if it holds one.
    pub async fn terminal_key(
        &self,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<Option<TerminalKey>, ServiceError> {
        let Some(slot) = self
            .doc::<SlotDoc>(None, tenant_id, &slot_doc_id(tenant_id, terminal_id))
            .await?
        else {
            return Ok(None);
        };
        let Some(bdk) = self
            .doc::<BdkDoc>(None, tenant_id, &bdk_doc_id(tenant_id, &slot.bdk_id))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(TerminalKey {
            slot,
            bdk_hsm_key_id: bdk.hsm_key_id,
        }))
    }

    /// The projection step: the documents a key-injection event changes. Unknown event
    /// types change nothing.
    pub async fn documents(
        &self,
        overlay: &Overlay,
        envelope: &EventEnvelope,
    ) -> Result<Vec<Document>, ServiceError> {
        let Some(name) = envelope.event_type.strip_prefix(TYPE_PREFIX) else {
            return Ok(Vec::new());
        };
        let payload = envelope.payload.as_slice();
        let bad = |_| ServiceError::internal("undecodable key-injection event");
        let document = |id: String, tenant_id: &str, body: String| Document {
            id,
            tenant_id: tenant_id.to_owned(),
            position: envelope.global_position,
            payload: body,
        };
        Ok(match name {
            "BdkAssigned" => {
                let assigned = pb::BdkAssigned::decode(payload).map_err(bad)?;
                let doc = BdkDoc {
                    hsm_key_id: assigned.hsm_key_id,
                    algorithm: assigned.algorithm,
                };
                vec![document(
                    bdk_doc_id(&assigned.tenant_id, &assigned.bdk_id),
                    &assigned.tenant_id,
                    serde_json::to_string(&doc).map_err(unreadable)?,
                )]
            }
            "KeySlotInstalled" => {
                let installed = pb::KeySlotInstalled::decode(payload).map_err(bad)?;
                let doc = SlotDoc {
                    bdk_id: installed.bdk_id,
                    initial_key_id: installed.initial_key_id.to_ascii_uppercase(),
                    algorithm: installed.algorithm,
                    revoked: false,
                };
                vec![document(
                    slot_doc_id(&installed.tenant_id, &installed.terminal_id),
                    &installed.tenant_id,
                    serde_json::to_string(&doc).map_err(unreadable)?,
                )]
            }
            "KeySlotRevoked" => {
                let revoked = pb::KeySlotRevoked::decode(payload).map_err(bad)?;
                let id = slot_doc_id(&revoked.tenant_id, &revoked.terminal_id);
                let Some(mut slot) = self
                    .doc::<SlotDoc>(Some(overlay), &revoked.tenant_id, &id)
                    .await?
                else {
                    return Ok(Vec::new());
                };
                // Only the key revoked: a newer key installed meanwhile stays.
                if !slot
                    .initial_key_id
                    .eq_ignore_ascii_case(&revoked.initial_key_id)
                {
                    return Ok(Vec::new());
                }
                slot.revoked = true;
                vec![document(
                    id,
                    &revoked.tenant_id,
                    serde_json::to_string(&slot).map_err(unreadable)?,
                )]
            }
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tdes_ksn_belongs_to_its_initial_ksn_whatever_the_counter() {
        // ANSI X9.24-1:2009 A.4: initial KSN FFFF9876543210E00000, transaction KSNs
        // FFFF9876543210E00001 ... (counter in the low 21 bits).
        let initial = "FFFF9876543210E00000";
        assert!(ksn_belongs_to("FFFF9876543210E00001", initial));
        assert!(ksn_belongs_to("FFFF9876543210E00012", initial));
        assert!(ksn_belongs_to("FFFF9876543210FFFFFF", initial));
        // Another device of the same key set (bit 22 up differs).
        assert!(!ksn_belongs_to("FFFF9876543210C00001", initial));
        assert!(!ksn_belongs_to("FFFF9876543211E00001", initial));
    }

    #[test]
    fn an_aes_ksn_is_its_initial_key_id_and_a_counter() {
        // ANSI X9.24-3-2017: initial key id 1234567890123456, KSN = id || 32-bit counter.
        assert!(ksn_belongs_to(
            "123456789012345600000001",
            "1234567890123456"
        ));
        assert!(!ksn_belongs_to(
            "123456789012345700000001",
            "1234567890123456"
        ));
    }

    #[test]
    fn malformed_or_mismatched_lengths_never_match() {
        assert!(!ksn_belongs_to(
            "FFFF9876543210E0000",
            "FFFF9876543210E00000"
        ));
        assert!(!ksn_belongs_to("zz", "FFFF9876543210E00000"));
        assert!(!ksn_belongs_to(
            "123456789012345600000001",
            "FFFF9876543210E00000"
        ));
        assert!(!ksn_belongs_to("FFFF9876543210E00001", "1234567890123456"));
    }
}
