//! Verifies a service log: the hash chain, aggregate sequences, the head row and signed
//! checkpoints. Reports the first position where the log stops being what the service wrote.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;

use crate::chain::{BreakContext, GENESIS_HASH, Tamper, classify_break, event_hash};
use crate::error::StoreError;
use crate::event::StoredEvent;
use crate::store::EventStore;

const PAGE: u32 = 10_000;

/// The outcome of a verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events read.
    pub events_checked: u64,
    /// Checkpoints whose signature and head were checked.
    pub checkpoints_checked: u64,
    /// Position of the last event.
    pub last_position: u64,
    /// The first problem found, if any.
    pub tamper: Option<Tamper>,
}

impl VerifyReport {
    /// Whether the log is intact.
    pub fn is_intact(&self) -> bool {
        self.tamper.is_none()
    }
}

/// Checks the whole log of `store` against the trusted checkpoint keys.
pub async fn verify(
    store: &EventStore,
    trusted_keys: &[VerifyingKey],
) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport {
        events_checked: 0,
        checkpoints_checked: 0,
        last_position: 0,
        tamper: None,
    };
    let checkpoints = store.checkpoints().await?;
    let mut checkpoint_hashes: HashMap<u64, [u8; 32]> = HashMap::new();
    for checkpoint in &checkpoints {
        if !checkpoint.verify(trusted_keys) {
            report.tamper = Some(Tamper::CheckpointSignature {
                position: checkpoint.position,
            });
            return Ok(report);
        }
        checkpoint_hashes.insert(checkpoint.position, checkpoint.head_hash);
    }

    let mut before_previous: Option<StoredEvent> = None;
    let mut previous: Option<StoredEvent> = None;
    let mut sequences: HashMap<(String, String), u64> = HashMap::new();
    let mut after = 0_u64;
    loop {
        let page = store.read_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.global_position;
        for (index, current) in page.iter().enumerate() {
            report.events_checked += 1;
            report.last_position = current.global_position;
            let expected_previous = previous.as_ref().map_or(GENESIS_HASH, |event| event.hash);
            let expected_position = previous
                .as_ref()
                .map_or(1, |event| event.global_position + 1);
            if current.previous_hash != expected_previous
                || current.global_position != expected_position
            {
                let next = match page.get(index + 1) {
                    Some(next) => Some(next.clone()),
                    None => store
                        .read_after(current.global_position, 1)
                        .await?
                        .into_iter()
                        .next(),
                };
                let predecessor_position = store.position_of_hash(&current.previous_hash).await?;
                let sequence_gap = store.has_sequence_gap().await?;
                let context = BreakContext {
                    before_previous: before_previous.as_ref(),
                    previous: previous.as_ref(),
                    current,
                    next: next.as_ref(),
                    predecessor_position,
                    sequence_gap,
                };
                report.tamper = Some(classify_break(&context));
                return Ok(report);
            }
            if event_hash(&current.event, &current.previous_hash) != current.hash {
                report.tamper = Some(Tamper::Altered {
                    position: current.global_position,
                });
                return Ok(report);
            }
            let key = (
                current.event.aggregate_type.clone(),
                current.event.aggregate_id.clone(),
            );
            let last_sequence = sequences.get(&key).copied().unwrap_or(0);
            if current.event.sequence != last_sequence + 1 {
                // The chain is consistent but an aggregate's stream is not: the chain was
                // recomputed after events were removed or moved.
                report.tamper = Some(if current.event.sequence > last_sequence + 1 {
                    Tamper::Deleted {
                        position: current.global_position,
                    }
                } else {
                    Tamper::Reordered {
                        position: current.global_position,
                    }
                });
                return Ok(report);
            }
            sequences.insert(key, current.event.sequence);
            if let Some(signed_hash) = checkpoint_hashes.get(&current.global_position) {
                report.checkpoints_checked += 1;
                if *signed_hash != current.hash {
                    report.tamper = Some(Tamper::CheckpointMismatch {
                        position: current.global_position,
                    });
                    return Ok(report);
                }
            }
            before_previous = previous.take();
            previous = Some(current.clone());
        }
    }

    // Events removed from the end leave the head row (and maybe checkpoints) pointing past the log.
    let (head_position, head_hash) = store.head().await?;
    let last_hash = previous.as_ref().map_or(GENESIS_HASH, |event| event.hash);
    if head_position != report.last_position || head_hash != last_hash {
        report.tamper = Some(Tamper::Deleted {
            position: report.last_position + 1,
        });
        return Ok(report);
    }
    if let Some(checkpoint) = checkpoints
        .iter()
        .find(|checkpoint| checkpoint.position > report.last_position)
    {
        report.tamper = Some(Tamper::Deleted {
            position: report.last_position.min(checkpoint.position) + 1,
        });
    }
    Ok(report)
}
