//! `mposctl inspect` and `mposctl replay` against real logs written by a service's own aggregate: routing's rules
//! of one tenant, published three times through `mpos_es::Aggregates` (the service's command
//! path), in an embedded SQLite log and in a PostgreSQL log named by URL. The state printed
//! is the one the service folds; a snapshot changed in the database is reported as not
//! matching the events and changes nothing printed from them.

use std::collections::BTreeSet;
use std::path::Path;

use mpos_es::{Aggregates, CommandMetadata, EventStore};
use routing::rules::{PublishRules, TenantRules};
use serde_json::Value;

mod common;

use common::{PgLog, mposctl, rules};

/// `mposctl inspect` of acme's rules in an embedded data directory.
fn inspect_acme(data_dir: &str) -> (i32, Value) {
    mposctl(&[
        "inspect",
        "--data-dir",
        data_dir,
        "--service",
        "routing",
        "--aggregate-type",
        "rules",
        "--aggregate-id",
        "acme",
    ])
}

/// Tenant acme's rules published three times, the last routing to acq-b then acq-a; a
/// snapshot is taken every two events, so one stands at sequence 2.
async fn publish_three_versions(store: &EventStore) {
    publish_versions(store, "acme", 3).await;
}

/// A tenant's rules published `count` times (at most three).
async fn publish_versions(store: &EventStore, tenant: &str, count: usize) {
    let aggregates = Aggregates::<TenantRules>::new(store, 2, ());
    let known: BTreeSet<String> = ["acq-a".to_owned(), "acq-b".to_owned()].into();
    for (version, acquirers) in [
        (0, &["acq-a"][..]),
        (1, &["acq-a", "acq-b"][..]),
        (2, &["acq-b", "acq-a"][..]),
    ]
    .into_iter()
    .take(count)
    {
        let mut loaded = aggregates.load(tenant).await.expect("load");
        let metadata = CommandMetadata {
            tenant_id: tenant.into(),
            actor: "user:ops@acme".into(),
            ..CommandMetadata::default()
        };
        aggregates
            .execute(
                &mut loaded,
                PublishRules {
                    tenant_id: tenant.into(),
                    rules: rules(acquirers),
                    expected_version: Some(version),
                    known_acquirers: known.clone(),
                },
                metadata,
            )
            .await
            .expect("publish");
    }
}

fn priority_of(rules: &Value) -> Value {
    rules["rules"][0]["route"]["priority"]["acquirerIds"].clone()
}

/// What both backends must print for acme's rules.
fn assert_history(answer: &Value) {
    assert_eq!(answer["service"], "routing", "{answer}");
    assert_eq!(answer["aggregate_type"], "rules", "{answer}");
    assert_eq!(answer["aggregate_id"], "acme", "{answer}");
    assert_eq!(answer["tenant_id"], "acme", "{answer}");
    assert_eq!(answer["version"], 3, "{answer}");
    assert_eq!(answer["state"]["version"], 3, "{answer}");
    assert_eq!(
        priority_of(&answer["state"]["rules"]),
        serde_json::json!(["acq-b", "acq-a"]),
        "{answer}"
    );
    let events = answer["events"].as_array().expect("events");
    assert_eq!(events.len(), 3, "{answer}");
    for (index, event) in events.iter().enumerate() {
        let sequence = index + 1;
        assert_eq!(event["sequence"], sequence, "{answer}");
        assert_eq!(event["global_position"], sequence, "{answer}");
        assert_eq!(
            event["event_type"], "mpos.routing.v1.RulesPublished",
            "{answer}"
        );
        assert_eq!(
            event["payload"]["@type"], "mpos.routing.v1.RulesPublished",
            "{answer}"
        );
        assert_eq!(event["metadata"]["actor"], "user:ops@acme", "{answer}");
        assert_eq!(event["hash"].as_str().map(str::len), Some(64), "{answer}");
        assert!(
            event["occurred_at"]
                .as_str()
                .is_some_and(|time| chrono::DateTime::parse_from_rfc3339(time).is_ok()),
            "{answer}"
        );
    }
    assert_eq!(
        priority_of(&events[0]["payload"]["rules"]),
        serde_json::json!(["acq-a"]),
        "{answer}"
    );
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("routing.db").display())
}

/// A data directory holding routing's log with acme's three versions; the directory and its
/// path as an argument.
async fn embedded_rules_log() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EventStore::connect(&sqlite_url(dir.path()), "routing")
        .await
        .expect("sqlite");
    publish_three_versions(&store).await;
    store.close().await;
    let data_dir = dir.path().display().to_string();
    (dir, data_dir)
}

#[tokio::test]
async fn an_embedded_aggregate_is_shown_with_its_history_and_a_changed_snapshot_is_flagged() {
    let (dir, data_dir) = embedded_rules_log().await;
    let (status, answer) = inspect_acme(&data_dir);
    assert_eq!(status, 0, "{answer}");
    assert_history(&answer);
    assert_eq!(answer["snapshot"]["last_sequence"], 2, "{answer}");
    assert_eq!(answer["snapshot"]["matches_events"], true, "{answer}");

    // Someone with write access rewrites the snapshot: the events still say what happened.
    let pool = sqlx::SqlitePool::connect(&sqlite_url(dir.path()))
        .await
        .expect("raw sqlite");
    sqlx::query("UPDATE es_snapshots SET payload = '{\"version\":9,\"rules\":{}}'")
        .execute(&pool)
        .await
        .expect("tamper");
    pool.close().await;
    let (status, answer) = inspect_acme(&data_dir);
    assert_eq!(status, 0, "{answer}");
    assert_history(&answer);
    assert_eq!(answer["snapshot"]["matches_events"], false, "{answer}");
}

#[tokio::test]
async fn a_postgres_aggregate_named_by_url_is_shown_with_its_history() {
    let log = PgLog::new("inspect");
    let url = log.url.clone();
    let store = EventStore::connect(&url, "routing")
        .await
        .expect("postgres (is it running? infra/postgres.sh)");
    publish_three_versions(&store).await;
    store.close().await;

    let (status, answer) = mposctl(&[
        "inspect",
        "--database",
        &url,
        "--service",
        "routing",
        "--aggregate-type",
        "rules",
        "--aggregate-id",
        "acme",
    ]);
    assert_eq!(status, 0, "{answer}");
    assert_history(&answer);
    assert_eq!(answer["snapshot"]["matches_events"], true, "{answer}");
    log.drop_schema().await;
}

#[tokio::test]
async fn what_names_nothing_is_a_clear_error() {
    let (dir, data_dir) = embedded_rules_log().await;
    let inspect = |service: &str, kind: &str, id: &str| {
        mposctl(&[
            "inspect",
            "--data-dir",
            &data_dir,
            "--service",
            service,
            "--aggregate-type",
            kind,
            "--aggregate-id",
            id,
        ])
    };

    let (status, answer) = inspect("routing", "rules", "globex");
    assert_eq!(status, 2, "{answer}");
    assert_eq!(answer["code"], "not_found", "{answer}");

    let (status, answer) = inspect("routing", "payment", "acme");
    assert_eq!(status, 2, "{answer}");
    assert_eq!(answer["code"], "bad_request", "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    for kind in ["rules", "acquirer", "exchange"] {
        assert!(message.contains(kind), "{answer}");
    }

    let (status, answer) = inspect("ledger", "rules", "acme");
    assert_eq!(status, 2, "{answer}");
    assert_eq!(answer["code"], "bad_request", "{answer}");

    // A service without a log in the directory: nothing is created.
    let (status, answer) = inspect("authorization", "payment", "acme");
    assert_eq!(status, 2, "{answer}");
    assert_eq!(answer["code"], "bad_request", "{answer}");
    assert!(!dir.path().join("authorization.db").exists());
}

/// Acme's three versions and globex's first, in that order: positions 1 to 4.
async fn four_events(url: &str) {
    let store = EventStore::connect(url, "routing").await.expect("log");
    publish_three_versions(&store).await;
    publish_versions(&store, "globex", 1).await;
    store.close().await;
}

/// The lines of a replay file, and the SHA-256 of its bytes.
fn replayed(path: &Path) -> (Vec<Value>, String) {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).expect("replay file");
    let lines = String::from_utf8(bytes.clone())
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    (lines, hex::encode(sha2::Sha256::digest(&bytes)))
}

#[tokio::test]
async fn an_embedded_log_replays_into_a_file_filtered_with_its_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    four_events(&sqlite_url(dir.path())).await;
    let data_dir = dir.path().display().to_string();
    let replay = |output: &Path, filters: &[&str]| {
        let output = output.display().to_string();
        let mut args = vec![
            "replay",
            "--data-dir",
            &data_dir,
            "--service",
            "routing",
            "--output",
            &output,
        ];
        args.extend_from_slice(filters);
        mposctl(&args)
    };

    let all = dir.path().join("all.jsonl");
    let (status, summary) = replay(&all, &[]);
    assert_eq!(status, 0, "{summary}");
    let (lines, digest) = replayed(&all);
    assert_eq!(summary["sha256"], digest.as_str(), "{summary}");
    assert_eq!(summary["events_read"], 4, "{summary}");
    assert_eq!(summary["events_written"], 4, "{summary}");
    assert_eq!(summary["first_position"], 1, "{summary}");
    assert_eq!(summary["last_position"], 4, "{summary}");
    let tenants: Vec<&str> = lines
        .iter()
        .filter_map(|line| line["tenant_id"].as_str())
        .collect();
    assert_eq!(tenants, ["acme", "acme", "acme", "globex"]);
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line["global_position"], index + 1, "{line}");
        assert_eq!(line["aggregate_type"], "rules", "{line}");
        assert_eq!(
            line["payload"]["@type"], "mpos.routing.v1.RulesPublished",
            "{line}"
        );
    }
    // The same lines as inspect prints for the aggregate's history.
    let (_, inspected) = inspect_acme(&data_dir);
    for (line, event) in lines
        .iter()
        .zip(inspected["events"].as_array().expect("events"))
    {
        assert_eq!(line["event_id"], event["event_id"]);
        assert_eq!(line["payload"], event["payload"]);
        assert_eq!(line["hash"], event["hash"]);
    }

    let globex = dir.path().join("globex.jsonl");
    let (status, summary) = replay(&globex, &["--tenant", "globex"]);
    assert_eq!(status, 0, "{summary}");
    let (lines, _) = replayed(&globex);
    assert_eq!(lines.len(), 1, "{summary}");
    assert_eq!(lines[0]["aggregate_id"], "globex");
    assert_eq!(summary["events_read"], 4, "{summary}");
    assert_eq!(summary["first_position"], 4, "{summary}");

    let second = dir.path().join("second.jsonl");
    let (status, summary) = replay(
        &second,
        &[
            "--aggregate-id",
            "acme",
            "--to",
            "2999-01-01T00:00:00Z",
            "--from",
            "2000-01-01T00:00:00Z",
        ],
    );
    assert_eq!(status, 0, "{summary}");
    assert_eq!(summary["events_written"], 3, "{summary}");

    let later = dir.path().join("later.jsonl");
    let (status, summary) = replay(&later, &["--from-position", "3"]);
    assert_eq!(status, 0, "{summary}");
    assert_eq!(summary["events_read"], 2, "{summary}");
    assert_eq!(summary["first_position"], 3, "{summary}");
    assert_eq!(summary["last_position"], 4, "{summary}");

    let none = dir.path().join("none.jsonl");
    let (status, summary) = replay(&none, &["--event-type", "mpos.routing.v1.Nothing"]);
    assert_eq!(status, 0, "{summary}");
    assert_eq!(summary["events_written"], 0, "{summary}");
    assert_eq!(summary["first_position"], Value::Null, "{summary}");
    assert_eq!(std::fs::read(&none).expect("file").len(), 0);

    // An existing file is never overwritten.
    let (status, answer) = replay(&all, &[]);
    assert_eq!(status, 2, "{answer}");
    assert_eq!(answer["code"], "bad_request", "{answer}");
    assert_eq!(replayed(&all).1, digest);
}

#[tokio::test]
async fn a_postgres_log_named_by_url_replays_into_a_file() {
    let log = PgLog::new("replay");
    let url = log.url.clone();
    four_events(&url).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("routing.jsonl");
    let output_arg = output.display().to_string();

    let (status, summary) = mposctl(&[
        "replay",
        "--database",
        &url,
        "--service",
        "routing",
        "--output",
        &output_arg,
        "--tenant",
        "acme",
    ]);
    assert_eq!(status, 0, "{summary}");
    let (lines, digest) = replayed(&output);
    assert_eq!(summary["sha256"], digest.as_str(), "{summary}");
    assert_eq!(lines.len(), 3, "{summary}");
    assert_eq!(
        priority_of(&lines[2]["payload"]["rules"]),
        serde_json::json!(["acq-b", "acq-a"])
    );
    log.drop_schema().await;
}

#[tokio::test]
async fn a_replay_shows_its_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    four_events(&sqlite_url(dir.path())).await;
    let data_dir = dir.path().display().to_string();
    let binary = env!("CARGO_BIN_EXE_mposctl");

    // Not a terminal: stdout holds the summary alone and stderr nothing.
    let quiet = dir.path().join("quiet.jsonl");
    let output = std::process::Command::new(binary)
        .args([
            "replay",
            "--data-dir",
            &data_dir,
            "--service",
            "routing",
            "--output",
        ])
        .arg(&quiet)
        .output()
        .expect("run mposctl");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");

    // On a terminal (a pseudo-terminal from util-linux's script): the bar, up to the head.
    let shown = dir.path().join("shown.jsonl");
    let command = format!(
        "{binary} replay --data-dir {data_dir} --service routing --output {}",
        shown.display()
    );
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("run script (util-linux)");
    let terminal = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{terminal}");
    assert!(terminal.contains("4/4 events"), "{terminal:?}");
    assert!(terminal.contains("\"events_written\":4"), "{terminal:?}");
}

/// `replay --read-model`: the read models named by their service; a name the service does
/// not keep, or a service that keeps none, is `not_found` (exit 2) naming what there is; a
/// read model never caught up and its replay up to the same position agree (both empty).
#[tokio::test]
async fn read_models_are_replayed_by_name() {
    let (_dir, data_dir) = embedded_rules_log().await;
    let replay = |service: &str, name: &str| {
        mposctl(&[
            "replay",
            "--data-dir",
            &data_dir,
            "--service",
            service,
            "--read-model",
            name,
        ])
    };
    let (status, answer) = replay("routing", "nope");
    assert_eq!(status, 2, "{answer}");
    assert_eq!(answer["code"], "not_found", "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    for name in ["routing-acquirers", "routing-pending"] {
        assert!(message.contains(name), "{answer}");
    }
    let (status, answer) = replay("routing", "routing-pending");
    assert_eq!(status, 0, "{answer}");
    let models = answer["read_models"].as_array().expect("read models");
    assert_eq!(models.len(), 1, "{answer}");
    assert_eq!(models[0]["name"], "routing-pending");
    assert_eq!(models[0]["position"], 0);
    assert_eq!(models[0]["identical"], true);
    assert_eq!(answer["events_read"], 0, "{answer}");

    // The filters of an event replay do not apply to a read model.
    let (status, answer) = mposctl(&[
        "replay",
        "--data-dir",
        &data_dir,
        "--service",
        "routing",
        "--read-model",
        "all",
        "--tenant",
        "acme",
    ]);
    assert_eq!(status, 2, "{answer}");
    assert_eq!(answer["code"], "bad_request", "{answer}");
}
