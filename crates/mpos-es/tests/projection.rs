//! Read models with stored checkpoints; replay rebuilds them to an identical state.

mod common;

use common::{each_backend, new_event};
use mpos_es::{
    Projection, ProjectionRunner, Replayed, ReplayedReadModel, StoreError, StoredEvent,
    digest_documents,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Totals {
    events: u64,
    sum: i64,
    last_sequence: u64,
}

#[derive(Debug)]
struct TotalsByAggregate;

impl Projection for TotalsByAggregate {
    type View = Totals;
    fn name(&self) -> &'static str {
        "totals"
    }
    fn document_id(&self, event: &StoredEvent) -> Option<String> {
        (event.event.aggregate_type == "counter").then(|| event.event.aggregate_id.clone())
    }
    fn apply(&self, view: &mut Totals, event: &StoredEvent) -> Result<(), StoreError> {
        let payload: serde_json::Value = serde_json::from_str(&event.event.payload)?;
        view.events += 1;
        view.sum += payload["n"].as_i64().unwrap_or(0);
        view.last_sequence = event.event.sequence;
        Ok(())
    }
}

#[tokio::test]
async fn a_rebuilt_read_model_equals_the_live_one() {
    for (backend, test) in each_backend("svc").await {
        let runner = ProjectionRunner::new(test.store.clone(), TotalsByAggregate);
        // Live: catch up after every few appends, like the running service does.
        let mut sequences = std::collections::HashMap::new();
        for index in 0..300_i64 {
            let aggregate = format!("agg-{}", index % 17);
            let sequence = sequences.entry(aggregate.clone()).or_insert(0_u64);
            *sequence += 1;
            test.store
                .append(
                    vec![new_event(
                        &aggregate,
                        *sequence,
                        serde_json::json!({"n": index}),
                    )],
                    None,
                )
                .await
                .expect("append");
            if index % 7 == 0 {
                runner.catch_up().await.expect("catch up");
            }
        }
        runner.catch_up().await.expect("catch up");
        let live = runner.digest().await.expect("digest");
        assert_eq!(
            test.store
                .consumer_position(&runner.consumer_name())
                .await
                .expect("position"),
            300
        );
        let documents = test
            .store
            .list_documents("totals", Some("acme"))
            .await
            .expect("list");
        assert_eq!(documents.len(), 17, "{backend}");
        let total: i64 = documents
            .iter()
            .map(|d| serde_json::from_str::<Totals>(&d.payload).expect("doc").sum)
            .sum();
        assert_eq!(total, (0..300).sum::<i64>(), "{backend}");

        // A fresh copy replayed in memory from the log, in pages: the same documents.
        let mut copy = Replayed::new(TotalsByAggregate);
        let mut position = 0;
        loop {
            let page = test.store.read_after(position, 64).await.expect("read");
            let Some(last) = page.last() else { break };
            position = last.global_position;
            copy.apply(&page).expect("apply");
        }
        let fresh = copy.documents().expect("documents");
        assert_eq!(fresh.len(), 17, "{backend}");
        assert_eq!(
            digest_documents(&fresh),
            live,
            "{backend}: fresh copy equals live"
        );
        let mut listed = test
            .store
            .list_documents("totals", None)
            .await
            .expect("list");
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        for (fresh, live) in fresh.iter().zip(&listed) {
            assert_eq!(
                (&fresh.id, &fresh.tenant_id, fresh.position, &fresh.payload),
                (&live.id, &live.tenant_id, live.position, &live.payload),
                "{backend}"
            );
        }

        let replayed = runner.rebuild().await.expect("rebuild");
        assert_eq!(replayed, 300, "{backend}");
        assert_eq!(
            runner.digest().await.expect("digest"),
            live,
            "{backend}: replay equals live"
        );
        // A second catch-up after the rebuild changes nothing.
        assert_eq!(runner.catch_up().await.expect("catch up"), 0);
        assert_eq!(runner.digest().await.expect("digest"), live);
    }
}

#[tokio::test]
async fn documents_are_visible_only_to_their_tenant() {
    for (backend, test) in each_backend("svc").await {
        let mut other = new_event("theirs", 1, serde_json::json!({"n": 1}));
        other.tenant_id = "globex".into();
        test.store
            .append(
                vec![new_event("ours", 1, serde_json::json!({"n": 1})), other],
                None,
            )
            .await
            .expect("append");
        let runner = ProjectionRunner::new(test.store.clone(), TotalsByAggregate);
        runner.catch_up().await.expect("catch up");
        let ours = test
            .store
            .list_documents("totals", Some("acme"))
            .await
            .expect("list");
        assert_eq!(
            ours.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["ours"],
            "{backend}"
        );
        assert!(
            test.store
                .document("totals", "acme", "theirs")
                .await
                .expect("get")
                .is_none(),
            "{backend}"
        );
        assert!(
            test.store
                .document("totals", "globex", "theirs")
                .await
                .expect("get")
                .is_some(),
            "{backend}"
        );
    }
}

/// The most recently changed documents of one tenant come first, at most as many as asked,
/// and never another tenant's.
#[tokio::test]
async fn recent_documents_are_the_tenants_latest_changes_first() {
    for (backend, test) in each_backend("svc").await {
        // a-1, a-2, a-3 in order, then a-1 again; globex's g-1 last.
        for (aggregate, sequence) in [("a-1", 1), ("a-2", 1), ("a-3", 1), ("a-1", 2)] {
            test.store
                .append(
                    vec![new_event(aggregate, sequence, serde_json::json!({"n": 1}))],
                    None,
                )
                .await
                .expect("append");
        }
        let mut other = new_event("g-1", 1, serde_json::json!({"n": 1}));
        other.tenant_id = "globex".into();
        test.store.append(vec![other], None).await.expect("append");
        let runner = ProjectionRunner::new(test.store.clone(), TotalsByAggregate);
        runner.catch_up().await.expect("catch up");
        let ids = |documents: Vec<mpos_es::Document>| {
            documents.into_iter().map(|d| d.id).collect::<Vec<_>>()
        };
        let recent = test
            .store
            .recent_documents("totals", "acme", 10)
            .await
            .expect("recent");
        assert_eq!(ids(recent), ["a-1", "a-3", "a-2"], "{backend}");
        let two = test
            .store
            .recent_documents("totals", "acme", 2)
            .await
            .expect("recent");
        assert_eq!(ids(two), ["a-1", "a-3"], "{backend}");
        let theirs = test
            .store
            .recent_documents("totals", "globex", 10)
            .await
            .expect("recent");
        assert_eq!(ids(theirs), ["g-1"], "{backend}");
        assert!(
            test.store
                .recent_documents("totals", "nobody", 10)
                .await
                .expect("recent")
                .is_empty(),
            "{backend}"
        );
    }
}

/// Two runners (like two replicas) catching up concurrently never apply an event twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runners_apply_each_event_once() {
    for (backend, test) in each_backend("svc").await {
        for sequence in 1..=200_u64 {
            test.store
                .append(
                    vec![new_event("shared", sequence, serde_json::json!({"n": 1}))],
                    None,
                )
                .await
                .expect("append");
        }
        let first =
            std::sync::Arc::new(ProjectionRunner::new(test.store.clone(), TotalsByAggregate));
        let second = std::sync::Arc::new(ProjectionRunner::new(
            test.reopen().await,
            TotalsByAggregate,
        ));
        let tasks: Vec<_> = [first.clone(), second.clone(), first.clone()]
            .into_iter()
            .map(|runner| tokio::spawn(async move { runner.catch_up().await.expect("catch up") }))
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let totals = || async {
            let document = test
                .store
                .document("totals", "acme", "shared")
                .await
                .expect("get")
                .expect("exists");
            let totals: Totals = serde_json::from_str(&document.payload).expect("doc");
            (totals.events, totals.sum)
        };
        assert_eq!(totals().await, (200, 200), "{backend}");
        // Each runner remembers its checkpoint; the other moves it meanwhile (a second
        // process): the stale one is refused by the compare-and-set, read again, and no
        // event is applied twice.
        let mut next = 201_u64;
        for runner in [&second, &first, &second, &first] {
            for _ in 0..25 {
                test.store
                    .append(
                        vec![new_event("shared", next, serde_json::json!({"n": 1}))],
                        None,
                    )
                    .await
                    .expect("append");
                next += 1;
            }
            runner.catch_up().await.expect("catch up");
            assert_eq!(
                totals().await,
                (next - 1, i64::try_from(next - 1).expect("n")),
                "{backend}"
            );
        }
    }
}

/// What is outstanding per aggregate: its last number, kept only while it is odd. The view
/// depends only on the last event, so a document removed and started again equals a rebuild.
#[derive(Debug)]
struct OddLast;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Last {
    n: i64,
}

impl Projection for OddLast {
    type View = Last;
    fn name(&self) -> &'static str {
        "odd-last"
    }
    fn document_id(&self, event: &StoredEvent) -> Option<String> {
        TotalsByAggregate.document_id(event)
    }
    fn apply(&self, view: &mut Last, event: &StoredEvent) -> Result<(), StoreError> {
        let payload: serde_json::Value = serde_json::from_str(&event.event.payload)?;
        view.n = payload["n"].as_i64().unwrap_or(0);
        Ok(())
    }
    fn retains(&self, view: &Last) -> bool {
        view.n % 2 != 0
    }
}

#[tokio::test]
async fn documents_a_projection_does_not_retain_are_removed_and_can_return() {
    for (backend, test) in each_backend("svc").await {
        let runner = ProjectionRunner::new(test.store.clone(), OddLast);
        let listed = |store: mpos_es::EventStore| async move {
            store
                .list_documents("odd-last", None)
                .await
                .expect("list")
                .into_iter()
                .map(|document| {
                    let view: Last = serde_json::from_str(&document.payload).expect("doc");
                    (document.id, view.n)
                })
                .collect::<Vec<_>>()
        };
        let append = |aggregate: &'static str, sequence: u64, n: i64| {
            let store = test.store.clone();
            async move {
                store
                    .append(
                        vec![new_event(aggregate, sequence, serde_json::json!({"n": n}))],
                        None,
                    )
                    .await
                    .expect("append");
            }
        };
        append("a", 1, 1).await;
        append("b", 1, 2).await;
        runner.catch_up().await.expect("catch up");
        assert_eq!(
            listed(test.store.clone()).await,
            vec![("a".into(), 1)],
            "{backend}"
        );
        // a becomes even: removed; b becomes odd: written.
        append("a", 2, 2).await;
        append("b", 2, 3).await;
        runner.catch_up().await.expect("catch up");
        assert_eq!(
            listed(test.store.clone()).await,
            vec![("b".into(), 3)],
            "{backend}"
        );
        // a odd again: its document comes back.
        append("a", 3, 5).await;
        runner.catch_up().await.expect("catch up");
        let expected = vec![("a".to_owned(), 5), ("b".to_owned(), 3)];
        assert_eq!(listed(test.store.clone()).await, expected, "{backend}");
        // Replay yields the same read model, in memory as in the store.
        let live = runner.digest().await.expect("digest");
        let mut copy = Replayed::new(OddLast);
        copy.apply(&test.store.read_after(0, 100).await.expect("read"))
            .expect("apply");
        assert_eq!(
            digest_documents(&copy.documents().expect("documents")),
            live,
            "{backend}"
        );
        runner.rebuild().await.expect("rebuild");
        assert_eq!(listed(test.store.clone()).await, expected, "{backend}");
        assert_eq!(runner.digest().await.expect("digest"), live, "{backend}");
    }
}

fn stored_at(position: u64) -> StoredEvent {
    StoredEvent {
        global_position: position,
        event: new_event("a-1", position, serde_json::json!({"n": 1})),
        previous_hash: [0; 32],
        hash: [0; 32],
    }
}

fn positions(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|event| event.global_position).collect()
}

/// Kafka's partitions interleave and a broker may deliver twice: a fold from a broker still
/// sees each position once, in order, and a gap holds back what follows it.
#[test]
fn deliveries_are_put_back_in_log_order() {
    let mut order = mpos_es::InOrder::default();
    assert!(positions(&order.push(stored_at(2))).is_empty());
    assert!(positions(&order.push(stored_at(4))).is_empty());
    assert_eq!(positions(&order.push(stored_at(1))), [1, 2]);
    assert!(
        positions(&order.push(stored_at(2))).is_empty(),
        "a duplicate"
    );
    assert!(
        positions(&order.push(stored_at(4))).is_empty(),
        "a held duplicate"
    );
    assert_eq!((order.folded(), order.held()), (2, 1));
    assert!(!order.is_drained(), "4 waits for 3");
    assert_eq!(positions(&order.push(stored_at(3))), [3, 4]);
    assert_eq!(order.folded(), 4);
    assert!(order.is_drained());
}

use proptest::prelude::{Just, Strategy};

proptest::proptest! {
    /// Any interleaving with duplicates of positions 1..=n releases exactly 1..=n in order.
    #[test]
    fn any_interleaving_is_released_in_order(
        order in (1_u64..60).prop_flat_map(|n| {
            let all: Vec<u64> = (1..=n).chain(1..=n / 3).collect();
            Just(all).prop_shuffle()
        })
    ) {
        let n = order.iter().copied().max().unwrap_or(0);
        let mut in_order = mpos_es::InOrder::default();
        let mut released = Vec::new();
        for position in order {
            released.extend(positions(&in_order.push(stored_at(position))));
        }
        proptest::prop_assert_eq!(released, (1..=n).collect::<Vec<_>>());
        proptest::prop_assert!(in_order.is_drained());
    }
}
