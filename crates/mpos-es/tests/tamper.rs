//! `verify` names the exact position and kind of every tampering an attacker with write
//! access to the database can do, on PostgreSQL and on SQLite.

mod common;

use common::{TestStore, each_backend, new_event};
use ed25519_dalek::SigningKey;
use mpos_es::chain::event_hash;
use mpos_es::{ChainSigner, EventStore, NewEvent, StoredEvent, Tamper, verify};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// 20 events over three aggregates, one per transaction, with signed checkpoints at 10 and 20.
async fn log_of_twenty(store: &EventStore) -> Vec<StoredEvent> {
    let signer = ChainSigner::new(store.clone(), key());
    let mut sequences = [0_u64; 3];
    for index in 0..20_usize {
        let slot = index % 3;
        sequences[slot] += 1;
        let aggregate = ["a", "b", "c"][slot];
        store
            .append(
                vec![new_event(
                    aggregate,
                    sequences[slot],
                    serde_json::json!({"n": index}),
                )],
                None,
            )
            .await
            .expect("append");
        if index == 9 || index == 19 {
            signer.sign_head().await.expect("sign").expect("checkpoint");
        }
    }
    store.read_after(0, 100).await.expect("read")
}

async fn first_finding(test: &TestStore) -> Option<Tamper> {
    let report = verify(&test.store, &[key().verifying_key()])
        .await
        .expect("verify");
    report.tamper
}

/// Moves positions >= `from` by `delta` without colliding on the primary key.
async fn shift_positions(test: &TestStore, from: u64, delta: i64) {
    test.execute(&format!(
        "UPDATE es_events SET global_position = global_position + 1000000 WHERE global_position >= {from}"
    ))
    .await;
    test.execute(&format!(
        "UPDATE es_events SET global_position = global_position - 1000000 + ({delta}) WHERE global_position >= 1000000"
    ))
    .await;
}

async fn insert_row(
    test: &TestStore,
    position: u64,
    event: &NewEvent,
    previous_hash: [u8; 32],
    hash: [u8; 32],
) {
    let pool = test.raw().await;
    sqlx::query(
        "INSERT INTO es_events (global_position, event_id, tenant_id, aggregate_type, aggregate_id, sequence, \
         event_type, event_version, payload, metadata, occurred_at_us, previous_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(i64::try_from(position).expect("position"))
    .bind(event.event_id.clone())
    .bind(event.tenant_id.clone())
    .bind(event.aggregate_type.clone())
    .bind(event.aggregate_id.clone())
    .bind(i64::try_from(event.sequence).expect("sequence"))
    .bind(event.event_type.clone())
    .bind(event.event_version.clone())
    .bind(event.payload.clone())
    .bind(event.metadata.clone())
    .bind(event.occurred_at_us)
    .bind(previous_hash.to_vec())
    .bind(hash.to_vec())
    .execute(&pool)
    .await
    .expect("insert forged row");
    pool.close().await;
}

#[tokio::test]
async fn an_untouched_log_verifies() {
    for (backend, test) in each_backend("svc").await {
        log_of_twenty(&test.store).await;
        let report = verify(&test.store, &[key().verifying_key()])
            .await
            .expect("verify");
        assert_eq!(report.tamper, None, "{backend}");
        assert_eq!(
            (
                report.events_checked,
                report.checkpoints_checked,
                report.last_position
            ),
            (20, 2, 20),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn an_altered_payload_is_named() {
    for (backend, test) in each_backend("svc").await {
        log_of_twenty(&test.store).await;
        test.execute(r#"UPDATE es_events SET payload = '{"n":999}' WHERE global_position = 7"#)
            .await;
        assert_eq!(
            first_finding(&test).await,
            Some(Tamper::Altered { position: 7 }),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn an_altered_and_rehashed_event_is_named() {
    for (backend, test) in each_backend("svc").await {
        let events = log_of_twenty(&test.store).await;
        // The attacker recomputes the altered event's own hash but not its successor's link.
        let mut altered = events[6].event.clone();
        altered.payload = r#"{"n":999}"#.into();
        let hash = event_hash(&altered, &events[6].previous_hash);
        let pool = test.raw().await;
        sqlx::query("UPDATE es_events SET payload = $1, hash = $2 WHERE global_position = 7")
            .bind(altered.payload.clone())
            .bind(hash.to_vec())
            .execute(&pool)
            .await
            .expect("update");
        pool.close().await;
        assert_eq!(
            first_finding(&test).await,
            Some(Tamper::Altered { position: 7 }),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_deleted_event_is_named() {
    for (backend, test) in each_backend("svc").await {
        log_of_twenty(&test.store).await;
        test.execute("DELETE FROM es_events WHERE global_position = 7")
            .await;
        assert_eq!(
            first_finding(&test).await,
            Some(Tamper::Deleted { position: 7 }),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_deleted_event_is_named_even_after_renumbering() {
    for (backend, test) in each_backend("svc").await {
        log_of_twenty(&test.store).await;
        test.execute("DELETE FROM es_events WHERE global_position = 7")
            .await;
        shift_positions(&test, 8, -1).await;
        assert_eq!(
            first_finding(&test).await,
            Some(Tamper::Deleted { position: 7 }),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn events_deleted_from_the_end_are_named() {
    for (backend, test) in each_backend("svc").await {
        log_of_twenty(&test.store).await;
        test.execute("DELETE FROM es_events WHERE global_position >= 19")
            .await;
        assert_eq!(
            first_finding(&test).await,
            Some(Tamper::Deleted { position: 19 }),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn an_inserted_event_is_named() {
    for (backend, test) in each_backend("svc").await {
        let events = log_of_twenty(&test.store).await;
        // A well-forged row: it links to event 6 and carries its own correct hash.
        shift_positions(&test, 7, 1).await;
        let forged = new_event("z", 1, serde_json::json!({"forged": true}));
        let hash = event_hash(&forged, &events[5].hash);
        insert_row(&test, 7, &forged, events[5].hash, hash).await;
        assert_eq!(
            first_finding(&test).await,
            Some(Tamper::Inserted { position: 7 }),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn an_inserted_event_with_a_bogus_link_is_named() {
    for (backend, test) in each_backend("svc").await {
        log_of_twenty(&test.store).await;
        shift_positions(&test, 7, 1).await;
        let forged = new_event("z", 1, serde_json::json!({"forged": true}));
        insert_row(&test, 7, &forged, [9; 32], [8; 32]).await;
        assert_eq!(
            first_finding(&test).await,
            Some(Tamper::Inserted { position: 7 }),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn reordered_events_are_named() {
    for (backend, test) in each_backend("svc").await {
        log_of_twenty(&test.store).await;
        // Swap positions 7 and 8.
        test.execute("UPDATE es_events SET global_position = 1000007 WHERE global_position = 7")
            .await;
        test.execute("UPDATE es_events SET global_position = 7 WHERE global_position = 8")
            .await;
        test.execute("UPDATE es_events SET global_position = 8 WHERE global_position = 1000007")
            .await;
        assert_eq!(
            first_finding(&test).await,
            Some(Tamper::Reordered { position: 7 }),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn an_event_moved_far_back_is_named_reordered() {
    for (backend, test) in each_backend("svc").await {
        log_of_twenty(&test.store).await;
        // Move event 5 to the end of the log and close the hole.
        test.execute("UPDATE es_events SET global_position = 1000000 WHERE global_position = 5")
            .await;
        shift_positions(&test, 6, -1).await;
        test.execute(
            "UPDATE es_events SET global_position = 20 WHERE global_position = 1000000 - 1",
        )
        .await;
        assert_eq!(
            first_finding(&test).await,
            Some(Tamper::Reordered { position: 5 }),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_fully_recomputed_chain_is_caught_by_the_signed_checkpoint() {
    for (backend, test) in each_backend("svc").await {
        let events = log_of_twenty(&test.store).await;
        // The attacker alters event 5 and recomputes every hash after it, and the head row.
        let pool = test.raw().await;
        let mut previous_hash = events[3].hash;
        for event in &events[4..] {
            let mut rewritten = event.event.clone();
            if event.global_position == 5 {
                rewritten.payload = r#"{"n":999}"#.into();
            }
            let hash = event_hash(&rewritten, &previous_hash);
            sqlx::query("UPDATE es_events SET payload = $1, previous_hash = $2, hash = $3 WHERE global_position = $4")
                .bind(rewritten.payload.clone())
                .bind(previous_hash.to_vec())
                .bind(hash.to_vec())
                .bind(i64::try_from(event.global_position).expect("position"))
                .execute(&pool)
                .await
                .expect("rewrite");
            previous_hash = hash;
        }
        sqlx::query("UPDATE es_log_head SET head_hash = $1 WHERE id = 1")
            .bind(previous_hash.to_vec())
            .execute(&pool)
            .await
            .expect("head");
        pool.close().await;
        assert_eq!(
            first_finding(&test).await,
            Some(Tamper::CheckpointMismatch { position: 10 }),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_checkpoint_not_signed_by_a_trusted_key_is_named() {
    for (backend, test) in each_backend("svc").await {
        log_of_twenty(&test.store).await;
        let stranger = SigningKey::from_bytes(&[1; 32]);
        let report = verify(&test.store, &[stranger.verifying_key()])
            .await
            .expect("verify");
        assert_eq!(
            report.tamper,
            Some(Tamper::CheckpointSignature { position: 10 }),
            "{backend}"
        );
    }
}

/// A window of the log is checked alone: a tampering outside it is not its finding, one
/// inside it is named as in a whole-log check, and the event before the window anchors its
/// first link.
#[tokio::test]
async fn a_window_names_what_is_inside_it_and_only_that() {
    for (backend, test) in each_backend("svc").await {
        let events = log_of_twenty(&test.store).await;
        let keys = [key().verifying_key()];
        let window = mpos_es::verify_range(&test.store, &keys, 5, 15)
            .await
            .expect("verify");
        assert!(window.is_intact(), "{backend}: {window:?}");
        assert_eq!(window.events_checked, 11, "{backend}");
        assert_eq!(window.checkpoints_checked, 1, "{backend}: the one at 10");
        assert_eq!(window.last_position, 15, "{backend}");

        // The time window of events 5..=15 is found by their times.
        let positions = test
            .store
            .positions_between(
                events[4].event.occurred_at_us,
                events[14].event.occurred_at_us,
            )
            .await
            .expect("positions");
        let (from, to) = positions.expect("events in the window");
        assert!(from <= 5 && to >= 15, "{backend}: {from}..={to}");
        assert_eq!(
            test.store.positions_between(0, 1).await.expect("positions"),
            None,
            "{backend}: no event in 1970"
        );

        test.execute(r#"UPDATE es_events SET payload = '{"n":999}' WHERE global_position = 3"#)
            .await;
        test.execute(r#"UPDATE es_events SET payload = '{"n":999}' WHERE global_position = 18"#)
            .await;
        let window = mpos_es::verify_range(&test.store, &keys, 5, 15)
            .await
            .expect("verify");
        assert!(
            window.is_intact(),
            "{backend}: outside the window: {window:?}"
        );
        assert_eq!(
            mpos_es::verify_range(&test.store, &keys, 4, 19)
                .await
                .expect("verify")
                .tamper,
            Some(Tamper::Altered { position: 18 }),
            "{backend}"
        );
        assert_eq!(
            mpos_es::verify_range(&test.store, &keys, 2, 10)
                .await
                .expect("verify")
                .tamper,
            Some(Tamper::Altered { position: 3 }),
            "{backend}"
        );

        // The event before the window deleted: the window's first link names it.
        test.execute("DELETE FROM es_events WHERE global_position = 11")
            .await;
        assert_eq!(
            mpos_es::verify_range(&test.store, &keys, 12, 15)
                .await
                .expect("verify")
                .tamper,
            Some(Tamper::Deleted { position: 11 }),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn an_event_put_past_the_head_is_named_inserted() {
    for (backend, test) in each_backend("svc").await {
        let events = log_of_twenty(&test.store).await;
        // A well-forged row after the last one, linked to it, with the head row left alone:
        // no append put it there (an append moves the head in the same transaction).
        let forged = new_event("z", 1, serde_json::json!({"forged": true}));
        let hash = event_hash(&forged, &events[19].hash);
        insert_row(&test, 21, &forged, events[19].hash, hash).await;
        assert_eq!(
            first_finding(&test).await,
            Some(Tamper::Inserted { position: 21 }),
            "{backend}"
        );
    }
}

/// A running service appends while the audit reads: the audit checks the log as it was when
/// it began and finds nothing wrong, and the next audit covers what was appended.
#[tokio::test]
async fn a_log_appended_to_during_the_audit_verifies() {
    for (backend, test) in each_backend("svc").await {
        for first in (1..=3_000_u64).step_by(500) {
            let events = (first..first + 500)
                .map(|n| new_event("busy", n, serde_json::json!({"n": n})))
                .collect();
            test.store.append(events, None).await.expect("append");
        }
        let writer = {
            let store = test.store.clone();
            tokio::spawn(async move {
                for sequence in 1..=300 {
                    store
                        .append(
                            vec![new_event(
                                "late",
                                sequence,
                                serde_json::json!({"n": sequence}),
                            )],
                            None,
                        )
                        .await
                        .expect("append during the audit");
                }
            })
        };
        let mut audits = 0;
        while !writer.is_finished() {
            let report = verify(&test.store, &[]).await.expect("verify");
            assert_eq!(report.tamper, None, "{backend}: audit {audits}");
            assert!(report.events_checked >= 3_000, "{backend}");
            audits += 1;
        }
        writer.await.expect("writer");
        let report = verify(&test.store, &[]).await.expect("verify");
        assert_eq!(
            (report.tamper, report.events_checked),
            (None, 3_300),
            "{backend} after {audits} audits during the appends"
        );
    }
}
