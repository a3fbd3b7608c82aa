//! An auditor's look at a log: `EventStore::connect_read_only` reads and verifies with a
//! database role that may only `SELECT` (PostgreSQL) or a file opened `mode=ro` (SQLite),
//! creates nothing, migrates nothing, and refuses every write with a typed error while the
//! log stays exactly as it was.

mod common;

use common::{TestStore, each_backend, new_event, postgres, postgres_base_url, unique_name};
use ed25519_dalek::SigningKey;
use mpos_errors::ErrorCode;
use mpos_es::{ChainSigner, Document, EventRange, EventStore, StoreError, verify};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// 30 events of two aggregates and a signed checkpoint at the head.
async fn seed(store: &EventStore) {
    for n in 1..=15_u64 {
        let events = vec![
            new_event("left", n, serde_json::json!({ "n": n })),
            new_event("right", n, serde_json::json!({ "n": n })),
        ];
        store.append(events, None).await.expect("append");
    }
    ChainSigner::new(store.clone(), key())
        .sign_head()
        .await
        .expect("sign")
        .expect("checkpoint");
}

/// Every write a store offers, each refused with `ReadOnly` (403 in the shared codes).
async fn assert_every_write_refused(store: &EventStore, backend: &str) {
    let document = Document {
        id: "d".into(),
        tenant_id: "t".into(),
        position: 1,
        payload: "{}".into(),
    };
    let refusals = [
        (
            "append",
            store
                .append(vec![new_event("left", 16, serde_json::json!({}))], None)
                .await
                .map(|_| ()),
        ),
        (
            "set_consumer_position",
            store.set_consumer_position("auditor", 5).await,
        ),
        (
            "put_documents",
            store
                .put_documents("p", std::slice::from_ref(&document))
                .await,
        ),
        (
            "commit_document_changes",
            store
                .commit_document_changes("p", &[document], &[], "auditor", 0, 1)
                .await,
        ),
        ("drop_documents", store.drop_documents("p", "auditor").await),
    ];
    for (write, result) in refusals {
        match result {
            Err(error @ StoreError::ReadOnly(_)) => {
                assert_eq!(error.code(), ErrorCode::Forbidden, "{backend}: {write}");
            }
            other => panic!("{backend}: {write} on a read-only store gave {other:?}"),
        }
    }
}

async fn assert_reads_and_verifies(store: &EventStore, backend: &str) {
    let events = store.read_after(0, 100).await.expect("read");
    assert_eq!(events.len(), 30, "{backend}");
    assert_eq!(store.head().await.expect("head").0, 30, "{backend}");
    let mut range = EventRange::new(store, 1, u64::MAX);
    let mut ranged = Vec::new();
    while let Some(batch) = range.next_batch().await.expect("batch") {
        ranged.extend(batch.into_events().expect("events"));
    }
    assert_eq!(ranged, events, "{backend}: the audit's read ahead");
    let report = verify(store, &[key().verifying_key()])
        .await
        .expect("verify");
    assert!(report.is_intact(), "{backend}: {report:?}");
    assert_eq!(report.events_checked, 30, "{backend}");
    assert_eq!(report.checkpoints_checked, 1, "{backend}");
}

/// What a writer that reopens the log finds: the same 30 events and head.
async fn assert_unchanged(test: &TestStore, backend: &str) {
    let writer = test.reopen().await;
    assert_eq!(writer.head().await.expect("head").0, 30, "{backend}");
    assert_eq!(
        writer.read_after(0, 100).await.expect("read").len(),
        30,
        "{backend}"
    );
    assert!(
        writer
            .documents("p", &["d".to_owned()])
            .await
            .expect("documents")
            .is_empty(),
        "{backend}: no document was written"
    );
    assert_eq!(
        writer.consumer_position("auditor").await.expect("position"),
        0,
        "{backend}: no checkpoint was moved"
    );
}

#[tokio::test]
async fn a_read_only_store_reads_and_verifies_and_refuses_every_write() {
    for (backend, test) in each_backend("svc").await {
        seed(&test.store).await;
        let auditor = EventStore::connect_read_only(&test.url, "svc")
            .await
            .unwrap_or_else(|error| panic!("{backend}: read-only open: {error}"));
        assert_reads_and_verifies(&auditor, backend).await;
        assert_every_write_refused(&auditor, backend).await;
        assert_unchanged(&test, backend).await;
    }
}

/// The reason for the read-only open: a role granted `SELECT` and nothing else cannot run
/// the migrations `connect` runs, and can audit with `connect_read_only`.
#[tokio::test]
async fn a_select_only_postgres_role_audits_the_log() {
    let test = postgres("svc").await;
    seed(&test.store).await;
    let schema = test
        .url
        .split("schema=")
        .nth(1)
        .expect("schema in the url")
        .to_owned();
    let role = unique_name("auditor");
    test.execute(&format!("CREATE ROLE {role} LOGIN")).await;
    test.execute(&format!("GRANT USAGE ON SCHEMA {schema} TO {role}"))
        .await;
    test.execute(&format!(
        "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"
    ))
    .await;
    let base = url::Url::parse(&postgres_base_url()).expect("base url");
    let mut auditor_url = base.clone();
    auditor_url.set_username(&role).expect("username");
    auditor_url.set_password(None).expect("password");
    auditor_url.set_query(Some(&format!("schema={schema}")));

    let refused = EventStore::connect(auditor_url.as_str(), "svc").await;
    assert!(
        refused.is_err(),
        "a SELECT-only role cannot run the migrations of a read-write open"
    );
    let auditor = EventStore::connect_read_only(auditor_url.as_str(), "svc")
        .await
        .expect("read-only open with a SELECT-only role");
    assert_reads_and_verifies(&auditor, "postgres, SELECT-only role").await;
    assert_every_write_refused(&auditor, "postgres, SELECT-only role").await;
    auditor.close().await;
    assert_unchanged(&test, "postgres, SELECT-only role").await;
    test.execute(&format!("DROP OWNED BY {role}")).await;
    test.execute(&format!("DROP ROLE {role}")).await;
}

/// A log that is not there is a clear error, and looking for it creates nothing.
#[tokio::test]
async fn a_missing_log_is_unavailable_and_nothing_is_created() {
    let schema = unique_name("es_absent");
    let base = postgres_base_url();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}schema={schema}");
    match EventStore::connect_read_only(&url, "svc").await {
        Err(error @ StoreError::Unavailable(_)) => {
            assert!(error.to_string().contains("svc"), "{error}");
        }
        other => panic!("postgres: a missing schema gave {other:?}"),
    }
    let probe = postgres("probe").await;
    let pool = probe.raw().await;
    let found: Option<(String,)> = sqlx::query_as(
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name = $1",
    )
    .bind(&schema)
    .fetch_optional(&pool)
    .await
    .expect("schemata");
    assert_eq!(found, None, "the read-only open created no schema");
    pool.close().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent").join("events.db");
    let url = format!("sqlite://{}", path.display());
    match EventStore::connect_read_only(&url, "svc").await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("sqlite: a missing file gave {other:?}"),
    }
    assert!(
        !path.parent().expect("parent").exists(),
        "the read-only open created no directory"
    );
}
