//! The newest events this process appended, kept in memory so that the relays and projection
//! runners an append wakes take them from here instead of reading them back from the log
//! (ADR 18).
//!
//! The tail is a contiguous run of positions ending at this process's last append. Events
//! in the log never change, so serving a read from the tail returns what the log returns;
//! only the question "is there anything after the tail?" needs the log, since another
//! process may have appended since — and [`Horizon`] says whether the reader asks it.

use std::collections::VecDeque;

use crate::event::StoredEvent;

/// Events kept, at most: a relay or runner further behind reads the log.
pub(crate) const TAIL_CAPACITY: usize = 4_096;

/// How far a read of new events looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Horizon {
    /// Everything committed, by any process: the log is read to its end.
    Log,
    /// What this process appended: nothing after its last append is looked for. For passes
    /// woken by an append of this process; a periodic pass with [`Horizon::Log`] finds what
    /// other processes appended.
    Appended,
}

/// A contiguous run of the newest events appended by this process.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    events: VecDeque<StoredEvent>,
}

/// What the tail can say about the events after a position.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TailRead {
    /// These events, in order, the first right after the position.
    Events(Vec<StoredEvent>),
    /// The position is this process's last append: nothing after it that this process
    /// knows of.
    AtEnd,
    /// The tail does not hold the event after the position (too old, or never seen here).
    Unknown,
}

impl Tail {
    /// Records a committed append. An append that does not follow the tail (another process
    /// appended in between) starts a new tail; one older than the tail's end (two appends
    /// of this process finishing out of order) is left out, so that the tail stays a
    /// contiguous run ending at the newest position this process knows committed.
    pub(crate) fn record(&mut self, stored: &[StoredEvent]) {
        let (Some(first), Some(last)) = (stored.first(), stored.last()) else {
            return;
        };
        if !is_contiguous(stored) {
            self.events.clear();
            return;
        }
        match self.events.back().map(|event| event.global_position) {
            Some(end) if last.global_position <= end => return,
            Some(end) if first.global_position == end + 1 => {}
            _ => self.events.clear(),
        }
        self.events.extend(stored.iter().cloned());
        while self.events.len() > TAIL_CAPACITY {
            self.events.pop_front();
        }
    }

    /// The events after `position`, at most `limit`.
    pub(crate) fn after(&self, position: u64, limit: u32) -> TailRead {
        let (Some(first), Some(last)) = (self.events.front(), self.events.back()) else {
            return TailRead::Unknown;
        };
        if position == last.global_position {
            return TailRead::AtEnd;
        }
        if position < first.global_position.saturating_sub(1) || position > last.global_position {
            return TailRead::Unknown;
        }
        let skip = usize::try_from(position + 1 - first.global_position).unwrap_or(usize::MAX);
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        TailRead::Events(self.events.iter().skip(skip).take(take).cloned().collect())
    }
}

fn is_contiguous(stored: &[StoredEvent]) -> bool {
    stored
        .windows(2)
        .all(|pair| pair[0].global_position + 1 == pair[1].global_position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NewEvent;
    use proptest::prelude::*;

    fn events(from: u64, to: u64) -> Vec<StoredEvent> {
        (from..=to)
            .map(|global_position| StoredEvent {
                global_position,
                event: NewEvent {
                    event_id: format!("e{global_position}"),
                    tenant_id: "t".into(),
                    aggregate_type: "a".into(),
                    aggregate_id: "1".into(),
                    sequence: global_position,
                    event_type: "x".into(),
                    event_version: "1".into(),
                    payload: "{}".into(),
                    metadata: "{}".into(),
                    occurred_at_us: 0,
                },
                previous_hash: [0; 32],
                hash: [0; 32],
            })
            .collect()
    }

    fn positions(read: TailRead) -> Option<Vec<u64>> {
        match read {
            TailRead::Events(events) => {
                Some(events.iter().map(|event| event.global_position).collect())
            }
            TailRead::AtEnd => Some(Vec::new()),
            TailRead::Unknown => None,
        }
    }

    #[test]
    fn an_empty_tail_knows_nothing() {
        let tail = Tail::default();
        assert_eq!(tail.after(0, 10), TailRead::Unknown);
    }

    #[test]
    fn reads_inside_the_tail_come_from_memory_and_its_end_is_known() {
        let mut tail = Tail::default();
        tail.record(&events(5, 7));
        tail.record(&events(8, 9));
        assert_eq!(positions(tail.after(4, 10)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(positions(tail.after(6, 2)), Some(vec![7, 8]));
        assert_eq!(tail.after(9, 10), TailRead::AtEnd);
        assert_eq!(tail.after(3, 10), TailRead::Unknown);
        assert_eq!(tail.after(10, 10), TailRead::Unknown);
    }

    #[test]
    fn an_append_after_a_gap_starts_a_new_tail() {
        let mut tail = Tail::default();
        tail.record(&events(1, 3));
        // Another process appended 4..=6.
        tail.record(&events(7, 8));
        assert_eq!(tail.after(3, 10), TailRead::Unknown);
        assert_eq!(positions(tail.after(6, 10)), Some(vec![7, 8]));
    }

    #[test]
    fn an_older_append_finishing_late_is_left_out() {
        let mut tail = Tail::default();
        tail.record(&events(1, 2));
        tail.record(&events(5, 6));
        tail.record(&events(3, 4));
        assert_eq!(tail.after(6, 10), TailRead::AtEnd);
        assert_eq!(tail.after(2, 10), TailRead::Unknown);
    }

    #[test]
    fn the_tail_keeps_its_capacity() {
        let mut tail = Tail::default();
        let total = u64::try_from(TAIL_CAPACITY).unwrap_or(u64::MAX) + 10;
        tail.record(&events(1, total));
        assert_eq!(tail.after(0, 10), TailRead::Unknown);
        assert_eq!(
            positions(tail.after(total - 2, 10)),
            Some(vec![total - 1, total])
        );
    }

    proptest! {
        /// Whatever the order appends finish in, every read the tail answers is the log's
        /// own answer (the events after the position, up to the limit, all of them committed).
        #[test]
        fn the_tail_never_answers_differently_from_the_log(
            sizes in proptest::collection::vec(1_u64..5, 1..20),
            swaps in proptest::collection::vec(any::<bool>(), 20),
            gaps in proptest::collection::vec(0_u64..3, 20),
            position in 0_u64..80,
            limit in 1_u32..10,
        ) {
            // Batches of consecutive positions, with gaps where other processes appended.
            let mut batches = Vec::new();
            let mut next = 1;
            for (index, size) in sizes.iter().enumerate() {
                next += gaps[index];
                batches.push(events(next, next + size - 1));
                next += size;
            }
            // Neighbours finishing out of order.
            let neighbours = batches.len().saturating_sub(1);
            for (index, swap) in swaps.iter().enumerate().take(neighbours) {
                if *swap {
                    batches.swap(index, index + 1);
                }
            }
            let mut tail = Tail::default();
            let mut committed: Vec<u64> = Vec::new();
            for batch in &batches {
                tail.record(batch);
                committed.extend(batch.iter().map(|event| event.global_position));
                let newest = committed.iter().copied().max().unwrap_or(0);
                match tail.after(position, limit) {
                    TailRead::Events(read) => {
                        let expected: Vec<u64> = (position + 1..)
                            .take(read.len())
                            .collect();
                        let got: Vec<u64> = read.iter().map(|event| event.global_position).collect();
                        prop_assert_eq!(&got, &expected);
                        prop_assert!(!got.is_empty() && got.len() <= limit as usize);
                        prop_assert!(got.iter().all(|p| committed.contains(p)));
                    }
                    // Only ever at the newest position this process committed.
                    TailRead::AtEnd => prop_assert_eq!(position, newest),
                    TailRead::Unknown => {}
                }
            }
        }
    }
}
