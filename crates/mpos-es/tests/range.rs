//! `EventRange` reads exactly the events `read_after` reads, in order, on both backends; on
//! PostgreSQL that is the server's own binary COPY output decoded by `pg_copy`, checked here
//! against the same rows read by `SELECT`.

mod common;

use common::{each_backend, new_event};
use mpos_es::{EventRange, EventStore, StoredEvent};

/// `count` events of one aggregate, 500 to an append.
async fn seed(store: &EventStore, aggregate_id: &str, count: u64) {
    let mut sequence = 0;
    while sequence < count {
        let events = (sequence + 1..=count.min(sequence + 500))
            .map(|n| new_event(aggregate_id, n, serde_json::json!({"by": n})))
            .collect::<Vec<_>>();
        sequence += events.len() as u64;
        store.append(events, None).await.expect("append");
    }
}

async fn collect(range: &mut EventRange) -> Vec<StoredEvent> {
    let mut events = Vec::new();
    while let Some(batch) = range.next_batch().await.expect("batch") {
        assert!(!batch.is_empty(), "no empty batch is handed over");
        events.extend(batch.into_events().expect("events"));
    }
    events
}

#[tokio::test]
async fn a_range_reads_what_read_after_reads() {
    for (backend, test) in each_backend("svc").await {
        seed(&test.store, "one", 2_500).await;
        // Text that is not ASCII, an empty-ish payload and a second aggregate.
        let mut unusual = new_event("zwei-ü", 1, serde_json::json!({"name": "Zoë 🧾", "n": []}));
        unusual.metadata = "{}".into();
        test.store
            .append(vec![unusual], None)
            .await
            .expect("append");
        let all = test.store.read_after(0, 10_000).await.expect("read");
        assert_eq!(all.len(), 2_501, "{backend}");

        let whole = collect(&mut EventRange::new(&test.store, 1, u64::MAX)).await;
        assert_eq!(whole, all, "{backend}: the whole log");
        let window = collect(&mut EventRange::new(&test.store, 1_000, 2_100)).await;
        assert_eq!(window, all[999..2_100].to_vec(), "{backend}: a window");
        let tail = collect(&mut EventRange::new(&test.store, 2_501, u64::MAX)).await;
        assert_eq!(tail, all[2_500..].to_vec(), "{backend}: the last event");
        let empty = collect(&mut EventRange::new(&test.store, 2_502, u64::MAX)).await;
        assert!(empty.is_empty(), "{backend}: past the end");
        let backwards = collect(&mut EventRange::new(&test.store, 10, 9)).await;
        assert!(backwards.is_empty(), "{backend}: an empty window");
    }
}

/// A reader that stops early (an audit that found what it looked for) leaves nothing behind:
/// the next ranges and every other read work as before.
#[tokio::test]
async fn a_range_dropped_half_read_leaves_the_store_working() {
    for (backend, test) in each_backend("svc").await {
        seed(&test.store, "one", 6_000).await;
        for _ in 0..3 {
            let mut range = EventRange::new(&test.store, 1, u64::MAX);
            let first = range.next_batch().await.expect("batch").expect("events");
            assert_eq!(
                first.get(0).map(|event| event.global_position),
                Some(1),
                "{backend}"
            );
            drop(range);
        }
        let whole = collect(&mut EventRange::new(&test.store, 1, u64::MAX)).await;
        assert_eq!(whole.len(), 6_000, "{backend}");
        assert_eq!(
            whole.last().map(|event| event.global_position),
            Some(6_000),
            "{backend}"
        );
        assert_eq!(test.store.head().await.expect("head").0, 6_000, "{backend}");
    }
}
