//! The event store on real PostgreSQL and SQLite: appends, optimistic concurrency, and the
//! gap-safe global position under concurrent writers.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{each_backend, new_event};
use mpos_es::{EventStore, StoreError};

#[tokio::test]
async fn appends_are_read_back_in_order_with_chained_hashes() {
    for (backend, test) in each_backend("svc").await {
        let events = vec![
            new_event("a", 1, serde_json::json!({"n": 1})),
            new_event("a", 2, serde_json::json!({"n": 2})),
            new_event("b", 1, serde_json::json!({"n": 3})),
        ];
        let stored = test
            .store
            .append(events.clone(), None)
            .await
            .expect("append");
        assert_eq!(
            stored.iter().map(|e| e.global_position).collect::<Vec<_>>(),
            vec![1, 2, 3],
            "{backend}"
        );
        let read = test.store.read_after(0, 100).await.expect("read");
        assert_eq!(read, stored, "{backend}");
        assert_eq!(read[0].previous_hash, [0; 32], "{backend}");
        assert_eq!(read[1].previous_hash, read[0].hash, "{backend}");
        assert_eq!(read[2].previous_hash, read[1].hash, "{backend}");
        assert_eq!(
            test.store.read_after(2, 100).await.expect("read").len(),
            1,
            "{backend}"
        );
        let stream = test
            .store
            .read_aggregate("counter", "a", 1)
            .await
            .expect("stream");
        assert_eq!(stream.len(), 1, "{backend}");
        assert_eq!(stream[0].event, events[1], "{backend}");
        assert_eq!(
            test.store.head().await.expect("head"),
            (3, read[2].hash),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_conflicting_append_is_a_typed_error_and_writes_nothing() {
    for (backend, test) in each_backend("svc").await {
        test.store
            .append(vec![new_event("a", 1, serde_json::json!({}))], None)
            .await
            .expect("first");
        let other = test.reopen().await;
        // Sequence 1 is taken; the batch also carries a valid event that must not be written.
        let result = other
            .append(
                vec![
                    new_event("b", 1, serde_json::json!({})),
                    new_event("a", 1, serde_json::json!({})),
                ],
                None,
            )
            .await;
        match result {
            Err(error @ StoreError::Conflict { .. }) => {
                assert_eq!(error.code(), mpos_errors::ErrorCode::Conflict, "{backend}");
            }
            other => panic!("{backend}: expected a conflict, got {other:?}"),
        }
        assert_eq!(
            test.store.read_after(0, 100).await.expect("read").len(),
            1,
            "{backend}"
        );
        assert_eq!(test.store.head().await.expect("head").0, 1, "{backend}");
        // The log goes on normally after the conflict, from both instances.
        other
            .append(vec![new_event("a", 2, serde_json::json!({}))], None)
            .await
            .expect("after");
        test.store
            .append(vec![new_event("a", 3, serde_json::json!({}))], None)
            .await
            .expect("after");
        let positions: Vec<u64> = test
            .store
            .read_after(0, 100)
            .await
            .expect("read")
            .iter()
            .map(|e| e.global_position)
            .collect();
        assert_eq!(positions, vec![1, 2, 3], "{backend}");
    }
}

/// The process that wrote the head appends on it in one statement (PostgreSQL): a sequence
/// already taken is the same typed conflict, and neither the head nor the log moves.
#[tokio::test]
async fn a_conflict_on_the_cached_head_writes_nothing() {
    for (backend, test) in each_backend("svc").await {
        let store = &test.store;
        store
            .append(vec![new_event("a", 1, serde_json::json!({}))], None)
            .await
            .expect("first");
        store
            .append(vec![new_event("a", 2, serde_json::json!({}))], None)
            .await
            .expect("second, on the cached head");
        let head = store.head().await.expect("head");
        let result = store
            .append(
                vec![
                    new_event("c", 1, serde_json::json!({})),
                    new_event("a", 2, serde_json::json!({})),
                ],
                None,
            )
            .await;
        assert!(
            matches!(result, Err(StoreError::Conflict { .. })),
            "{backend}: {result:?}"
        );
        assert_eq!(store.head().await.expect("head"), head, "{backend}");
        assert_eq!(
            store.read_after(0, 100).await.expect("read").len(),
            2,
            "{backend}"
        );
        // The next append goes on from the unchanged head, and the chain verifies.
        let next = store
            .append(vec![new_event("a", 3, serde_json::json!({}))], None)
            .await
            .expect("after the conflict");
        assert_eq!(next[0].global_position, 3, "{backend}");
        let report = mpos_es::verify(store, &[]).await.expect("verify");
        assert!(report.is_intact(), "{backend}: {report:?}");
    }
}

#[tokio::test]
async fn invalid_urls_are_typed_errors() {
    for url in [
        "mysql://localhost/x",
        "not a url",
        "sqlite://",
        "postgres://localhost/x?schema=drop;table",
        "postgres://localhost/x?pool_size=0",
        "postgres://localhost/x?schema=a&pool_size=65",
        "postgres://localhost/x?pool_size=many",
    ] {
        match EventStore::connect(url, "svc").await {
            Err(StoreError::InvalidUrl(_)) => {}
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    match EventStore::connect("postgres://postgres@127.0.0.1:1/postgres", "svc").await {
        Err(error @ StoreError::Unavailable(_)) => {
            assert_eq!(error.code(), mpos_errors::ErrorCode::Unavailable)
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// At least 8 concurrent writers (on two store instances, like two processes) and a reader
/// tailing "after position N" concurrently: the reader sees every event exactly once, in
/// position order, with no gap, although commits interleave arbitrarily.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tailing_reader_never_skips_an_event_under_concurrent_writers() {
    const WRITERS: u64 = 8;
    const PER_WRITER: u64 = 400;
    for (backend, test) in each_backend("svc").await {
        let second = test.reopen().await;
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let store = test.store.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut after = 0;
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let page = store.read_after(after, 97).await.expect("tail");
                    for event in &page {
                        assert_eq!(
                            event.global_position,
                            after + 1,
                            "gap after position {after}"
                        );
                        after = event.global_position;
                        seen.push(event.event.event_id.clone());
                    }
                    if finished && page.is_empty() {
                        return seen;
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let store: EventStore = if writer % 2 == 0 {
                test.store.clone()
            } else {
                second.clone()
            };
            writers.push(tokio::spawn(async move {
                let aggregate = format!("writer-{writer}");
                let mut sequence = 1;
                while sequence <= PER_WRITER {
                    // Batches of 1 to 10 events.
                    let size = (sequence % 10).max(1).min(PER_WRITER - sequence + 1);
                    let batch = (sequence..sequence + size)
                        .map(|s| new_event(&aggregate, s, serde_json::json!({"w": writer, "s": s})))
                        .collect();
                    store.append(batch, None).await.expect("append");
                    sequence += size;
                }
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
        done.store(true, Ordering::SeqCst);
        let seen = reader.await.expect("reader");
        assert_eq!(
            seen.len() as u64,
            WRITERS * PER_WRITER,
            "{backend}: every event seen"
        );
        let distinct: HashSet<_> = seen.iter().collect();
        assert_eq!(distinct.len(), seen.len(), "{backend}: no event seen twice");
        let report = mpos_es::verify(&test.store, &[]).await.expect("verify");
        assert!(report.is_intact(), "{backend}: {report:?}");
        assert_eq!(report.events_checked, WRITERS * PER_WRITER, "{backend}");
    }
}

/// Many writes at once (on SQLite committed together by one writer, ADR 12): appends that
/// conflict with each other and a projection commit from a stale checkpoint each fail alone,
/// with a typed error; every other write commits, the positions have no gap and the hash chain
/// verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_fail_alone_and_the_rest_commit() {
    const AGGREGATES: usize = 16;
    const RIVALS: usize = 4;
    for (backend, test) in each_backend("svc").await {
        test.store
            .commit_documents("view", &[], "view-runner", 0, 1)
            .await
            .expect("checkpoint");
        let mut writes = tokio::task::JoinSet::new();
        for aggregate in 0..AGGREGATES {
            for rival in 0..RIVALS {
                let store = test.store.clone();
                writes.spawn(async move {
                    let event = new_event(
                        &format!("x{aggregate}"),
                        1,
                        serde_json::json!({ "rival": rival }),
                    );
                    store.append(vec![event], None).await.map(|_| ())
                });
            }
        }
        let stale = {
            let store = test.store.clone();
            tokio::spawn(async move {
                // The checkpoint is at 1, not 0.
                store
                    .commit_documents("view", &[], "view-runner", 0, 2)
                    .await
            })
        };
        let (mut committed, mut conflicts) = (0, 0);
        while let Some(result) = writes.join_next().await {
            match result.expect("task") {
                Ok(()) => committed += 1,
                Err(StoreError::Conflict { .. }) => conflicts += 1,
                Err(other) => panic!("{backend}: {other}"),
            }
        }
        assert_eq!(committed, AGGREGATES, "{backend}: one append per aggregate");
        assert_eq!(conflicts, AGGREGATES * (RIVALS - 1), "{backend}");
        assert!(
            matches!(stale.await.expect("task"), Err(StoreError::Conflict { .. })),
            "{backend}: a stale checkpoint is refused"
        );
        assert_eq!(
            test.store
                .consumer_position("view-runner")
                .await
                .expect("position"),
            1,
            "{backend}"
        );
        let log = test.store.read_after(0, 1_000).await.expect("read");
        assert_eq!(
            log.iter().map(|e| e.global_position).collect::<Vec<_>>(),
            (1..=u64::try_from(AGGREGATES).expect("small")).collect::<Vec<_>>(),
            "{backend}: no gap"
        );
        let ids: HashSet<String> = log.iter().map(|e| e.event.aggregate_id.clone()).collect();
        assert_eq!(ids.len(), AGGREGATES, "{backend}");
        let report = mpos_es::verify(&test.store, &[]).await.expect("verify");
        assert!(report.is_intact(), "{backend}: {report:?}");
        assert_eq!(report.events_checked, log.len() as u64, "{backend}");
        assert_eq!(
            test.store.head().await.expect("head"),
            (log.len() as u64, log[log.len() - 1].hash),
            "{backend}"
        );
    }
}

/// Appends that arrive while another commits share the next commit (PostgreSQL: ADR 22;
/// SQLite: ADR 12). Each is answered its own events, and the log is gap-free and chained
/// exactly as if they had committed one by one.
#[tokio::test]
async fn concurrent_appends_share_commits_and_each_is_answered_its_own_events() {
    const APPENDS: usize = 64;
    for (backend, test) in each_backend("svc").await {
        // The first append caches the head, as a running service has.
        test.store
            .append(vec![new_event("seed", 1, serde_json::json!({}))], None)
            .await
            .expect("seed");
        let before = test.store.append_commits();
        // Another connection holds the head row, so the first turn waits in the database
        // while the other appends queue behind it.
        let raw = test.raw().await;
        let mut holder = raw.begin().await.expect("begin");
        sqlx::query("UPDATE es_log_head SET position = position WHERE id = 1")
            .execute(&mut *holder)
            .await
            .expect("hold the head");
        let mut appends = tokio::task::JoinSet::new();
        for index in 0..APPENDS {
            let store = test.store.clone();
            appends.spawn(async move {
                let aggregate = format!("a{index}");
                // Some appends carry two events.
                let events = (1..=1 + u64::try_from(index % 2).expect("small"))
                    .map(|sequence| new_event(&aggregate, sequence, serde_json::json!({})))
                    .collect::<Vec<_>>();
                let sent = events.len();
                let stored = store.append(events, None).await;
                (aggregate, sent, stored)
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        holder.commit().await.expect("release the head");
        let mut positions = Vec::new();
        while let Some(joined) = appends.join_next().await {
            let (aggregate, sent, stored) = joined.expect("task");
            let stored = stored.unwrap_or_else(|error| panic!("{backend}: {error}"));
            assert_eq!(stored.len(), sent, "{backend}: {aggregate}");
            for (index, event) in stored.iter().enumerate() {
                assert_eq!(event.event.aggregate_id, aggregate, "{backend}");
                assert_eq!(event.event.sequence, index as u64 + 1, "{backend}");
                positions.push(event.global_position);
            }
        }
        positions.sort_unstable();
        let events = APPENDS + APPENDS / 2;
        assert_eq!(
            positions,
            (2..=1 + events as u64).collect::<Vec<_>>(),
            "{backend}: every position once, no gap"
        );
        let commits = test.store.append_commits() - before;
        assert!(
            commits <= 4,
            "{backend}: {APPENDS} appends queued behind one commit took {commits} commits"
        );
        let log = test.store.read_after(0, 1_000).await.expect("read");
        assert_eq!(log.len(), events + 1, "{backend}");
        let report = mpos_es::verify(&test.store, &[]).await.expect("verify");
        assert!(report.is_intact(), "{backend}: {report:?}");
        raw.close().await;
    }
}

/// A projection's checkpoint moves only from where it is: created only from 0, moved only
/// from its current position, with or without documents; anything else is a conflict that
/// writes nothing.
#[tokio::test]
async fn a_checkpoint_moves_only_from_where_it_is() {
    for (backend, test) in each_backend("svc").await {
        let store = &test.store;
        let document = |id: &str, position: u64| mpos_es::Document {
            id: id.to_owned(),
            tenant_id: "t".to_owned(),
            position,
            payload: "{}".to_owned(),
        };
        // Not created from anywhere but 0.
        let error = store
            .commit_documents("view", &[], "runner", 3, 4)
            .await
            .expect_err("created from 3");
        assert!(matches!(error, StoreError::Conflict { .. }), "{backend}");
        assert_eq!(
            store.consumer_position("runner").await.expect("position"),
            0
        );
        // Created from 0, then moved from where it is, without and with documents.
        store
            .commit_documents("view", &[], "runner", 0, 2)
            .await
            .expect("from 0");
        store
            .commit_documents("view", &[document("d1", 5)], "runner", 2, 5)
            .await
            .expect("from 2");
        assert_eq!(
            store.consumer_position("runner").await.expect("position"),
            5,
            "{backend}"
        );
        // A stale runner (from 0 again, or from 2) moves nothing and writes no document.
        for from in [0, 2] {
            let error = store
                .commit_documents("view", &[document("d2", 6)], "runner", from, 6)
                .await
                .expect_err("stale");
            assert!(matches!(error, StoreError::Conflict { .. }), "{backend}");
            let error = store
                .commit_documents("view", &[], "runner", from, 6)
                .await
                .expect_err("stale");
            assert!(matches!(error, StoreError::Conflict { .. }), "{backend}");
        }
        assert_eq!(
            store.consumer_position("runner").await.expect("position"),
            5,
            "{backend}"
        );
        let documents = store.list_documents("view", None).await.expect("documents");
        assert_eq!(
            documents.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["d1"],
            "{backend}"
        );
    }
}

/// ADR 18: what this process appended is read from memory, exactly as the log holds it; the
/// log is still read for what other processes appended, except by a pass woken by this
/// process's own append (`Horizon::Appended`), which stops at this process's last append.
#[tokio::test]
async fn new_events_come_from_memory_as_the_log_holds_them_and_other_writers_are_found() {
    use mpos_es::Horizon;
    for (backend, test) in each_backend("svc").await {
        let store = &test.store;
        let first = store
            .append(
                vec![
                    new_event("a", 1, serde_json::json!({"n": 1})),
                    new_event("a", 2, serde_json::json!({"n": "two", "x": [1, 2]})),
                ],
                None,
            )
            .await
            .expect("append");
        let second = store
            .append(vec![new_event("b", 1, serde_json::json!({"n": 3}))], None)
            .await
            .expect("append");
        let log = store.read_after(0, 100).await.expect("read the log");
        assert_eq!(log.len(), 3, "{backend}");
        for horizon in [Horizon::Log, Horizon::Appended] {
            assert_eq!(
                store.read_new(0, 100, horizon).await.expect("read new"),
                log,
                "{backend}"
            );
            assert_eq!(
                store.read_new(1, 1, horizon).await.expect("read new"),
                log[1..2].to_vec(),
                "{backend}"
            );
        }
        assert_eq!(
            [first, second].concat(),
            log,
            "{backend}: the append answers what the log holds"
        );

        // Another process appends after this one's last append.
        let other = test.reopen().await;
        let others = other
            .append(vec![new_event("c", 1, serde_json::json!({}))], None)
            .await
            .expect("the other process's append");
        assert_eq!(others[0].global_position, 4, "{backend}");
        // Woken by its own append, this process stops at it…
        assert!(
            store
                .read_new(3, 100, Horizon::Appended)
                .await
                .expect("read new")
                .is_empty(),
            "{backend}"
        );
        // …and its periodic pass reads the log and finds the other process's event.
        assert_eq!(
            store
                .read_new(3, 100, Horizon::Log)
                .await
                .expect("read new"),
            others,
            "{backend}"
        );
        // Its next append follows the other's: both are found from before the gap.
        let next = store
            .append(vec![new_event("a", 3, serde_json::json!({}))], None)
            .await
            .expect("append after the other process");
        assert_eq!(next[0].global_position, 5, "{backend}");
        let after_two = store
            .read_new(2, 100, Horizon::Appended)
            .await
            .expect("read new");
        assert_eq!(
            after_two,
            store.read_after(2, 100).await.expect("read the log"),
            "{backend}"
        );
        assert_eq!(after_two.len(), 3, "{backend}");
    }
}

#[tokio::test]
async fn a_pool_size_in_the_url_is_taken() {
    let schema = common::unique_name("es_pool");
    let url = format!(
        "{}?schema={schema}&pool_size=2",
        common::postgres_base_url()
    );
    let store = EventStore::connect(&url, "svc").await.expect("connect");
    let appended = store
        .append(vec![new_event("a", 1, serde_json::json!({}))], None)
        .await
        .expect("append");
    // Three reads at once on two connections: the third waits for one, none fails.
    let reads = futures::future::join_all((0..3).map(|_| store.read_after(0, 10))).await;
    for read in reads {
        assert_eq!(read.expect("read"), appended);
    }
    store.close().await;
}
