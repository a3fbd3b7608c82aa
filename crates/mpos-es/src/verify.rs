//! Verifies a service log: the hash chain, aggregate sequences, the head row and signed
//! checkpoints. Reports the first position where the log stops being what the service wrote.

use foldhash::HashMap;

use ed25519_dalek::VerifyingKey;

use crate::chain::{BreakContext, GENESIS_HASH, Link, Tamper, classify_break};
use crate::error::StoreError;
use crate::range::{EventRange, EventView};
use crate::store::EventStore;

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
    verify_range(store, trusted_keys, 1, u64::MAX).await
}

/// Checks the events at positions `first..=last` of `store` (an audit of a window): the
/// link of the first to the event before it, every link and hash inside, each aggregate's
/// sequence from its first event in the window on, and the signed checkpoints at positions
/// inside. An open window (`last` = `u64::MAX`) also checks the head row and that no
/// checkpoint points past the log; `1..=u64::MAX` is [`verify`].
pub async fn verify_range(
    store: &EventStore,
    trusted_keys: &[VerifyingKey],
    first: u64,
    last: u64,
) -> Result<VerifyReport, StoreError> {
    let first = first.max(1);
    let mut report = VerifyReport {
        events_checked: 0,
        checkpoints_checked: 0,
        last_position: 0,
        tamper: None,
    };
    let checkpoints: Vec<_> = store
        .checkpoints()
        .await?
        .into_iter()
        .filter(|checkpoint| checkpoint.position >= first && checkpoint.position <= last)
        .collect();
    let mut checkpoint_hashes: HashMap<u64, [u8; 32]> = HashMap::default();
    for checkpoint in &checkpoints {
        if !checkpoint.verify(trusted_keys) {
            report.tamper = Some(Tamper::CheckpointSignature {
                position: checkpoint.position,
            });
            return Ok(report);
        }
        checkpoint_hashes.insert(checkpoint.position, checkpoint.head_hash);
    }

    // The two events before the window: the first link is checked against them.
    let (mut before_previous, mut previous) = if first > 1 {
        let before = store.read_after(first.saturating_sub(3), 2).await?;
        let mut before = before
            .iter()
            .filter(|event| event.global_position < first)
            .map(Link::from);
        let (one, two) = (before.next(), before.next());
        match two {
            Some(two) => (one, Some(two)),
            None => (None, one),
        }
    } else {
        (None, None)
    };
    if first > 1 && previous.is_none() {
        // The event before the window is gone.
        report.tamper = Some(Tamper::Deleted {
            position: first - 1,
        });
        return Ok(report);
    }
    // Sequences are checked from each aggregate's first event in the window on; by type,
    // then id, so that looking one up allocates nothing. foldhash, not SipHash: two lookups
    // per event audited, over the log's own ids (a log's writer could only slow its own
    // audit by choosing colliding ids).
    let mut sequences: HashMap<Vec<u8>, HashMap<Vec<u8>, u64>> = HashMap::default();
    // An open window ends at the head as it is now: the log as it was when the audit began.
    // Events a running service appends meanwhile are the next audit's; they move the head in
    // the same transaction, which is what tells them from events put past it (checked below).
    let head_at_start = if last == u64::MAX {
        Some(store.head().await?)
    } else {
        None
    };
    let read_to = head_at_start.map_or(last, |(position, _)| position);
    // The events are checked where the read left them (views into each batch's buffer):
    // nothing is allocated per event but each aggregate's first entry in `sequences`.
    let mut range = EventRange::new(store, first, read_to);
    while let Some(batch) = range.next_batch().await? {
        let mut views = batch.iter().peekable();
        while let Some(current) = views.next() {
            report.events_checked += 1;
            report.last_position = current.global_position;
            let link = link_of(&current);
            let expected_previous = previous.map_or(GENESIS_HASH, |event| event.hash);
            let expected_position = previous.map_or(1, |event| event.position + 1);
            if link.previous_hash != expected_previous || link.position != expected_position {
                let next = match views.peek() {
                    Some(next) => Some(link_of(next)),
                    None => store
                        .read_after(current.global_position, 1)
                        .await?
                        .first()
                        .map(Link::from),
                };
                let context = BreakContext {
                    before_previous,
                    previous,
                    current: link,
                    next,
                    predecessor_position: store.position_of_hash(current.previous_hash).await?,
                    sequence_gap: store.has_sequence_gap().await?,
                };
                report.tamper = Some(classify_break(&context));
                return Ok(report);
            }
            if current.fields.hash(current.previous_hash) != *current.hash {
                report.tamper = Some(Tamper::Altered {
                    position: current.global_position,
                });
                return Ok(report);
            }
            let fields = &current.fields;
            let last_sequence = match sequences
                .get(fields.aggregate_type)
                .and_then(|ids| ids.get(fields.aggregate_id))
            {
                Some(sequence) => *sequence,
                None if first > 1 => fields.sequence.saturating_sub(1),
                None => 0,
            };
            if fields.sequence != last_sequence + 1 {
                // The chain is consistent but an aggregate's stream is not: the chain was
                // recomputed after events were removed or moved.
                report.tamper = Some(if fields.sequence > last_sequence + 1 {
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
            match sequences
                .get_mut(fields.aggregate_type)
                .and_then(|ids| ids.get_mut(fields.aggregate_id))
            {
                Some(sequence) => *sequence = fields.sequence,
                None => {
                    sequences
                        .entry(fields.aggregate_type.to_vec())
                        .or_default()
                        .insert(fields.aggregate_id.to_vec(), fields.sequence);
                }
            }
            if let Some(signed_hash) = checkpoint_hashes.get(&current.global_position) {
                report.checkpoints_checked += 1;
                if signed_hash != current.hash {
                    report.tamper = Some(Tamper::CheckpointMismatch {
                        position: current.global_position,
                    });
                    return Ok(report);
                }
            }
            before_previous = previous.replace(link);
        }
    }

    if last != u64::MAX {
        // The window has an end: what follows it is not this audit's.
        return Ok(report);
    }
    // Events removed from the end leave the head row (and maybe checkpoints) pointing past the log.
    let (head_position, head_hash) = match head_at_start {
        Some(head) => head,
        None => store.head().await?,
    };
    let last_hash = previous.map_or(GENESIS_HASH, |event| event.hash);
    if head_position != report.last_position || head_hash != last_hash {
        report.tamper = Some(Tamper::Deleted {
            position: report.last_position + 1,
        });
        return Ok(report);
    }
    // An event past the head that no append put there (an append moves the head with it).
    if let Some(past) = store.read_after(report.last_position, 1).await?.first() {
        let (head_now, _) = store.head().await?;
        if past.global_position > head_now {
            report.tamper = Some(Tamper::Inserted {
                position: past.global_position,
            });
            return Ok(report);
        }
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

fn link_of(event: &EventView<'_>) -> Link {
    Link {
        position: event.global_position,
        previous_hash: *event.previous_hash,
        hash: *event.hash,
    }
}
