//! `mposctl audit verify` against real logs: an embedded data directory (SQLite logs, the
//! trusted key from its `chain-signing.key`) and PostgreSQL logs named by URL, first intact,
//! then tampered with directly in the database as an attacker with write access would.

use std::path::Path;

use ed25519_dalek::SigningKey;
use mpos_es::{ChainSigner, EventStore, NewEvent, now_micros};
use serde_json::Value;

mod common;

use common::mposctl;

/// The chain signing seed of these logs.
const SEED: [u8; 32] = [42; 32];

fn event(aggregate: &str, sequence: u64, n: usize) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        tenant_id: "acme".into(),
        aggregate_type: "counter".into(),
        aggregate_id: aggregate.into(),
        sequence,
        event_type: "mpos.test.v1.Incremented".into(),
        event_version: "1.0".into(),
        payload: serde_json::json!({ "n": n }).to_string(),
        metadata: r#"{"actor":"test"}"#.into(),
        occurred_at_us: now_micros(),
    }
}

/// Ten events over two aggregates, one append each, with the head signed at 5 and at 10.
async fn log_of_ten(store: &EventStore) {
    let signer = ChainSigner::new(store.clone(), SigningKey::from_bytes(&SEED));
    let mut sequences = [0_u64; 2];
    for n in 0..10_usize {
        let slot = n % 2;
        sequences[slot] += 1;
        store
            .append(vec![event(["a", "b"][slot], sequences[slot], n)], None)
            .await
            .expect("append");
        if n == 4 || n == 9 {
            signer.sign_head().await.expect("sign").expect("checkpoint");
        }
    }
}

fn service<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["services"]
        .as_array()
        .and_then(|services| services.iter().find(|service| service["service"] == name))
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

fn public_key(seed: [u8; 32]) -> String {
    hex::encode(SigningKey::from_bytes(&seed).verifying_key().as_bytes())
}

async fn sqlite_log(dir: &Path, service: &str) {
    let url = format!("sqlite://{}", dir.join(format!("{service}.db")).display());
    let store = EventStore::connect(&url, service).await.expect("sqlite");
    log_of_ten(&store).await;
    store.close().await;
}

#[tokio::test]
async fn an_embedded_data_directory_verifies_and_an_altered_event_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("chain-signing.key"), hex::encode(SEED)).expect("key");
    for name in ["routing", "authorization"] {
        sqlite_log(dir.path(), name).await;
    }
    let data_dir = dir.path().display().to_string();

    let (status, report) = mposctl(&["audit", "verify", "--data-dir", &data_dir]);
    assert_eq!(status, 0, "{report}");
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["trusted_keys"][0], public_key(SEED).as_str());
    assert_eq!(report["services"].as_array().map(Vec::len), Some(2));
    for name in ["routing", "authorization"] {
        let log = service(&report, name);
        assert_eq!(log["intact"], true, "{report}");
        assert_eq!(log["events_checked"], 10, "{report}");
        assert_eq!(log["checkpoints_checked"], 2, "{report}");
        assert_eq!(log["last_position"], 10, "{report}");
    }

    // An attacker changes one event's payload in routing's log.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("routing.db").display()
    ))
    .await
    .expect("raw sqlite");
    sqlx::query(r#"UPDATE es_events SET payload = '{"n":999}' WHERE global_position = 4"#)
        .execute(&pool)
        .await
        .expect("tamper");
    pool.close().await;
    let (status, answer) = mposctl(&["audit", "verify", "--data-dir", &data_dir]);
    assert_eq!(status, 1, "{answer}");
    assert_eq!(answer["code"], "verification_failed", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|message| message.contains("routing: altered at position 4")),
        "{answer}"
    );
    let report = &answer["report"];
    assert_eq!(report["intact"], false, "{answer}");
    let routing = service(report, "routing");
    assert_eq!(routing["intact"], false);
    assert_eq!(routing["finding"]["kind"], "altered", "{answer}");
    assert_eq!(routing["finding"]["position"], 4, "{answer}");
    assert_eq!(service(report, "authorization")["intact"], true, "{answer}");

    // Checkpoints under a key the auditor does not trust are named, and --service narrows.
    let (status, answer) = mposctl(&[
        "audit",
        "verify",
        "--data-dir",
        &data_dir,
        "--trusted-key",
        &public_key([7; 32]),
        "--service",
        "authorization",
    ]);
    assert_eq!(status, 1, "{answer}");
    let authorization = service(&answer["report"], "authorization");
    assert_eq!(
        authorization["finding"]["kind"], "checkpoint_signature",
        "{answer}"
    );
    assert_eq!(authorization["finding"]["position"], 5, "{answer}");
    assert_eq!(
        answer["report"]["services"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn postgres_logs_named_by_url_verify_and_a_deleted_event_is_named() {
    let log = common::PgLog::new("audit");
    let (base, schema, url) = (&log.base, &log.schema, &log.url);
    let store = EventStore::connect(url, "routing")
        .await
        .expect("postgres (is it running? infra/postgres.sh)");
    log_of_ten(&store).await;
    store.close().await;
    let database = format!("routing={url}");
    let key = public_key(SEED);
    let args = [
        "audit",
        "verify",
        "--database",
        &database,
        "--trusted-key",
        &key,
    ];

    let (status, report) = mposctl(&args);
    assert_eq!(status, 0, "{report}");
    let routing = service(&report, "routing");
    assert_eq!(routing["events_checked"], 10, "{report}");
    assert_eq!(routing["checkpoints_checked"], 2, "{report}");

    let pool = sqlx::PgPool::connect(base).await.expect("raw postgres");
    sqlx::query(&format!(
        "DELETE FROM {schema}.es_events WHERE global_position = 7"
    ))
    .execute(&pool)
    .await
    .expect("tamper");
    let (status, answer) = mposctl(&args);
    assert_eq!(status, 1, "{answer}");
    let routing = service(&answer["report"], "routing");
    assert_eq!(routing["finding"]["kind"], "deleted", "{answer}");
    assert_eq!(routing["finding"]["position"], 7, "{answer}");
    // A mistyped schema: the audit opens logs read-only, so it is named as unavailable and
    // nothing is created in its place (it used to be created, an empty log that verified).
    let mistyped_schema = format!("{schema}_typo");
    let mistyped = url.replace(schema.as_str(), &mistyped_schema);
    let mistyped_database = format!("routing={mistyped}");
    let mistyped_args = args.map(|arg| {
        if arg == database {
            mistyped_database.as_str()
        } else {
            arg
        }
    });
    let (status, answer) = mposctl(&mistyped_args);
    assert_eq!(status, 1, "{answer}");
    assert_eq!(answer["code"], "unavailable", "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("routing: "), "{answer}");
    let created: Option<(String,)> = sqlx::query_as(
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name = $1",
    )
    .bind(&mistyped_schema)
    .fetch_optional(&pool)
    .await
    .expect("schemata");
    assert_eq!(created, None, "the audit created no schema");
    pool.close().await;
    log.drop_schema().await;
}

#[test]
fn logs_that_cannot_be_found_are_a_bad_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing").display().to_string();
    let (status, answer) = mposctl(&["audit", "verify", "--data-dir", &missing]);
    assert_eq!(status, 2, "{answer}");
    assert_eq!(answer["code"], "bad_request", "{answer}");
    let empty = dir.path().display().to_string();
    let (status, answer) = mposctl(&["audit", "verify", "--data-dir", &empty]);
    assert_eq!(status, 2, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|message| message.contains("no service log")),
        "{answer}"
    );
    let (status, answer) = mposctl(&["audit", "verify"]);
    assert_eq!(status, 2, "{answer}");
}

/// `--from` / `--to` check the events of a time window: a tampering before it is not its
/// finding, one inside is named, a window without events checks nothing.
#[tokio::test]
async fn a_time_window_is_checked_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("chain-signing.key"), hex::encode(SEED)).expect("key");
    sqlite_log(dir.path(), "routing").await;
    let url = format!("sqlite://{}", dir.path().join("routing.db").display());
    let store = EventStore::connect(&url, "routing").await.expect("sqlite");
    let events = store.read_after(0, 100).await.expect("read");
    store.close().await;
    let time = |index: usize| {
        chrono::DateTime::from_timestamp_micros(events[index].event.occurred_at_us)
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let pool = sqlx::SqlitePool::connect(&url).await.expect("raw sqlite");
    sqlx::query(r#"UPDATE es_events SET payload = '{"n":999}' WHERE global_position = 2"#)
        .execute(&pool)
        .await
        .expect("tamper");
    pool.close().await;
    let data_dir = dir.path().display().to_string();

    let from = time(3);
    let (status, report) = mposctl(&["audit", "verify", "--data-dir", &data_dir, "--from", &from]);
    assert_eq!(status, 0, "{report}");
    let routing = service(&report, "routing");
    let first = routing["window_positions"][0].as_u64().expect("first");
    assert!((2..=4).contains(&first), "{report}");
    assert_eq!(routing["window_positions"][1], 10, "{report}");
    assert_eq!(routing["last_position"], 10, "{report}");

    let to = time(2);
    let (status, answer) = mposctl(&["audit", "verify", "--data-dir", &data_dir, "--to", &to]);
    assert_eq!(status, 1, "{answer}");
    let routing = service(&answer["report"], "routing");
    assert_eq!(routing["finding"]["kind"], "altered", "{answer}");
    assert_eq!(routing["finding"]["position"], 2, "{answer}");

    let (status, report) = mposctl(&[
        "audit",
        "verify",
        "--data-dir",
        &data_dir,
        "--from",
        "1970-01-01T00:00:00Z",
        "--to",
        "1970-01-02T00:00:00Z",
    ]);
    assert_eq!(status, 0, "{report}");
    let routing = service(&report, "routing");
    assert_eq!(routing["events_checked"], 0, "{report}");
    assert!(routing["window_positions"].is_null(), "{report}");

    let (status, answer) = mposctl(&[
        "audit",
        "verify",
        "--data-dir",
        &data_dir,
        "--from",
        &from,
        "--to",
        &to,
    ]);
    assert_eq!(status, 2, "{answer}");
    let (status, answer) = mposctl(&[
        "audit",
        "verify",
        "--data-dir",
        &data_dir,
        "--from",
        "yesterday",
    ]);
    assert_eq!(status, 2, "{answer}");
    assert_eq!(answer["code"], "bad_request", "{answer}");
}
