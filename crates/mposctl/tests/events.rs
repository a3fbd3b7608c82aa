//! `mposctl events tail` and `mposctl replay --bus` against the real brokers (`MPOS_TEST_NATS_URL`,
//! `MPOS_TEST_KAFKA_URL`): routing events published through the platform's own bus adapter,
//! followed from the start, filtered, live, and until idle; each line's payload decoded from
//! protobuf by its type.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mpos_bus::{Bus, EventEnvelope};
use mpos_proto::Message as _;
use mpos_proto::routing as pb;
use serde_json::Value;

mod common;

fn namespace() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

fn nats_url(namespace: &str) -> String {
    let base =
        std::env::var("MPOS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    format!("{base}?namespace={namespace}")
}

fn kafka_url(namespace: &str) -> String {
    let base = std::env::var("MPOS_TEST_KAFKA_URL")
        .unwrap_or_else(|_| "kafka://127.0.0.1:9092".to_owned());
    format!("{base}?namespace={namespace}")
}

/// Removes the test's stream from the shared NATS server.
async fn delete_stream(namespace: &str) {
    let url = nats_url(namespace);
    let address = url
        .trim_start_matches("nats://")
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    if let Ok(client) = async_nats::connect(address).await {
        let jetstream = async_nats::jetstream::new(client);
        let _ = jetstream
            .delete_stream(mpos_bus::stream_name(Some(namespace), "routing"))
            .await;
    }
}

async fn bus(url: &str) -> Bus {
    mpos_bus::connect(url)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {url}: {error} (infra/up.sh)"))
}

/// A `RulesPublished` event of routing, as its outbox relay publishes it.
fn rules_published(tenant: &str, version: u64, position: u64, acquirer: &str) -> EventEnvelope {
    let payload = pb::RulesPublished {
        tenant_id: tenant.to_owned(),
        version,
        rules: Some(common::rules(&[acquirer])),
    };
    EventEnvelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant.to_owned(),
        aggregate_type: "rules".into(),
        aggregate_id: tenant.to_owned(),
        sequence: version,
        global_position: position,
        occurred_at: Some(mpos_proto::timestamp_from_micros(1_796_601_600_000_000)),
        event_type: "mpos.routing.v1.RulesPublished".into(),
        event_version: "1.0".into(),
        payload: payload.encode_to_vec(),
        previous_hash: vec![0; 32],
        hash: vec![0xab; 32],
        correlation_id: "corr-1".into(),
        causation_id: "cause-1".into(),
        traceparent: String::new(),
        actor: "user:ops@acme".into(),
        service: "routing".into(),
    }
}

/// Three events: acme's versions 1 and 2 and globex's version 1.
fn three() -> Vec<EventEnvelope> {
    vec![
        rules_published("acme", 1, 1, "acq-a"),
        rules_published("globex", 1, 2, "acq-b"),
        rules_published("acme", 2, 3, "acq-b"),
    ]
}

/// Publishes [`three`] on the broker of `url`.
async fn publish_three(url: &str) -> Vec<EventEnvelope> {
    let sent = three();
    bus(url)
        .await
        .publisher
        .publish(&sent)
        .await
        .expect("publish");
    sent
}

/// Runs `mposctl`; its exit status and the JSON lines it printed.
fn mposctl(args: &[&str]) -> (i32, Vec<Value>) {
    let output = Command::new(env!("CARGO_BIN_EXE_mposctl"))
        .args(args)
        .output()
        .expect("run mposctl");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line:?}"))
        })
        .collect();
    (output.status.code().unwrap_or(-1), lines)
}

/// Tailing acme's events from the start prints its two events, decoded, then the summary.
fn assert_acme_from_the_start(url: &str, sent: &[EventEnvelope]) {
    let (status, lines) = mposctl(&[
        "events",
        "tail",
        "--bus",
        url,
        "--service",
        "routing",
        "--from-start",
        "--tenant",
        "acme",
        "--limit",
        "2",
    ]);
    assert_eq!(status, 0, "{lines:?}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, sent) in lines[..2].iter().zip([&sent[0], &sent[2]]) {
        assert_eq!(line["event_id"], sent.event_id.as_str(), "{line}");
        assert_eq!(line["service"], "routing", "{line}");
        assert_eq!(line["tenant_id"], "acme", "{line}");
        assert_eq!(
            line["event_type"], "mpos.routing.v1.RulesPublished",
            "{line}"
        );
        assert_eq!(line["actor"], "user:ops@acme", "{line}");
        assert_eq!(line["occurred_at"], "2026-12-07T00:00:00.000000Z", "{line}");
        assert_eq!(line["hash"], "ab".repeat(32).as_str(), "{line}");
        assert_eq!(line["payload"]["tenantId"], "acme", "{line}");
    }
    // The proto3 JSON mapping: 64-bit integers as strings, camelCase names, oneofs by name.
    assert_eq!(lines[0]["payload"]["version"], "1", "{lines:?}");
    assert_eq!(lines[1]["payload"]["version"], "2", "{lines:?}");
    assert_eq!(
        lines[1]["payload"]["rules"]["rules"][0]["route"]["priority"]["acquirerIds"][0], "acq-b",
        "{lines:?}"
    );
    assert_eq!(
        lines[2],
        serde_json::json!({ "events": 2, "stopped": "limit" })
    );
}

#[tokio::test]
async fn nats_events_are_followed_filtered_and_decoded() {
    let namespace = namespace();
    let url = nats_url(&namespace);
    let sent = publish_three(&url).await;

    assert_acme_from_the_start(&url, &sent);

    // Every event, then quiet: it stops when idle.
    let (status, lines) = mposctl(&[
        "events",
        "tail",
        "--bus",
        &url,
        "--service",
        "routing",
        "--from-start",
        "--idle-exit",
        "1",
    ]);
    assert_eq!(status, 0, "{lines:?}");
    let ids: Vec<&str> = lines[..3]
        .iter()
        .filter_map(|line| line["event_id"].as_str())
        .collect();
    let sent_ids: Vec<&str> = sent.iter().map(|event| event.event_id.as_str()).collect();
    assert_eq!(ids, sent_ids);
    assert_eq!(
        lines[3],
        serde_json::json!({ "events": 3, "stopped": "idle" })
    );
    delete_stream(&namespace).await;
}

#[tokio::test]
async fn a_live_tail_prints_only_what_is_published_after_it_started() {
    let namespace = namespace();
    let url = nats_url(&namespace);
    let bus = bus(&url).await;
    let before = three();
    bus.publisher.publish(&before).await.expect("publish");

    let mut child = Command::new(env!("CARGO_BIN_EXE_mposctl"))
        .args([
            "events",
            "tail",
            "--bus",
            &url,
            "--service",
            "routing",
            "--limit",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn mposctl");
    let started = Instant::now();
    let mut after = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the tail printed nothing"
        );
        let event = rules_published("acme", 10 + after.len() as u64, 10, "acq-a");
        bus.publisher
            .publish(std::slice::from_ref(&event))
            .await
            .expect("publish");
        after.push(event.event_id);
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(status.success());
    let stdout = child.stdout.take().expect("stdout");
    let lines: Vec<Value> = BufReader::new(stdout)
        .lines()
        .map(|line| serde_json::from_str(&line.expect("line")).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let id = lines[0]["event_id"].as_str().unwrap_or_default();
    assert!(after.iter().any(|sent| sent == id), "{lines:?}");
    assert!(!before.iter().any(|sent| sent.event_id == id), "{lines:?}");
    delete_stream(&namespace).await;
}

#[tokio::test]
async fn kafka_events_are_followed_filtered_and_decoded() {
    let url = kafka_url(&namespace());
    let sent = publish_three(&url).await;

    assert_acme_from_the_start(&url, &sent);
}

#[test]
fn what_cannot_be_followed_is_a_clear_error() {
    let (status, lines) = mposctl(&[
        "events",
        "tail",
        "--bus",
        "memory://",
        "--service",
        "routing",
    ]);
    assert_eq!(status, 2, "{lines:?}");
    assert_eq!(lines[0]["code"], "bad_request", "{lines:?}");

    let url = nats_url(&namespace());
    let (status, lines) = mposctl(&["events", "tail", "--bus", &url, "--service", "ledger"]);
    assert_eq!(status, 2, "{lines:?}");
    assert_eq!(lines[0]["code"], "bad_request", "{lines:?}");

    // Nothing was ever published in this namespace: there is no stream to follow.
    let (status, lines) = mposctl(&["events", "tail", "--bus", &url, "--service", "routing"]);
    assert_eq!(status, 1, "{lines:?}");
    assert_eq!(lines[0]["code"], "unavailable", "{lines:?}");
}

#[tokio::test]
async fn a_kafka_stream_replays_into_a_file_each_event_once() {
    let url = kafka_url(&namespace());
    let sent = publish_three(&url).await;
    // Kafka keeps what is published twice (delivery is at least once): replay keeps one.
    bus(&url)
        .await
        .publisher
        .publish(&sent[1..2])
        .await
        .expect("publish again");
    let dir = tempfile::tempdir().expect("tempdir");
    let replay = |name: &str, filters: &[&str]| {
        let output = dir.path().join(name);
        let output_arg = output.display().to_string();
        let mut args = vec![
            "replay",
            "--bus",
            &url,
            "--service",
            "routing",
            "--output",
            &output_arg,
            "--idle-exit",
            "2",
        ];
        args.extend_from_slice(filters);
        let (status, lines) = mposctl(&args);
        let written: Vec<Value> = std::fs::read_to_string(&output)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON line"))
            .collect();
        (status, lines, written)
    };

    let (status, lines, written) = replay("all.jsonl", &[]);
    assert_eq!(status, 0, "{lines:?}");
    let summary = &lines[0];
    assert_eq!(summary["events_read"], 4, "{summary}");
    assert_eq!(summary["duplicates_skipped"], 1, "{summary}");
    assert_eq!(summary["events_written"], 3, "{summary}");
    let ids: Vec<&str> = written
        .iter()
        .filter_map(|line| line["event_id"].as_str())
        .collect();
    let sent_ids: Vec<&str> = sent.iter().map(|event| event.event_id.as_str()).collect();
    assert_eq!(ids, sent_ids);
    assert_eq!(written[2]["payload"]["version"], "2", "{written:?}");

    // From a position on, and one tenant.
    let (status, lines, written) =
        replay("later.jsonl", &["--from-position", "2", "--tenant", "acme"]);
    assert_eq!(status, 0, "{lines:?}");
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0]["event_id"], sent[2].event_id.as_str());
    assert_eq!(lines[0]["first_position"], 3, "{lines:?}");
}

/// Three events published now, after the three of [`three`]: positions 4 to 6.
fn three_more() -> Vec<EventEnvelope> {
    let now = mpos_proto::timestamp_from_micros(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_micros(),
        )
        .expect("micros"),
    );
    [("acme", 3, 4), ("globex", 2, 5), ("acme", 4, 6)]
        .into_iter()
        .map(|(tenant, version, position)| EventEnvelope {
            occurred_at: Some(now),
            ..rules_published(tenant, version, position, "acq-a")
        })
        .collect()
}

/// A broker replay seeks: with --from it starts at the offsets of that time, with
/// --from-offset at that offset (Kafka, from 0) or stream sequence (NATS, from 1), so what
/// was published before is not even read.
async fn a_broker_replay_seeks_to_a_time_or_an_offset(url: &str, second_batch_offset: u64) {
    publish_three(url).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let more = three_more();
    bus(url)
        .await
        .publisher
        .publish(&more)
        .await
        .expect("publish");
    let dir = tempfile::tempdir().expect("tempdir");
    let offset = second_batch_offset.to_string();
    for (name, seek) in [
        ("by-time.jsonl", ["--from", between.as_str()]),
        ("by-offset.jsonl", ["--from-offset", offset.as_str()]),
    ] {
        let output = dir.path().join(name).display().to_string();
        let mut args = vec![
            "replay",
            "--bus",
            url,
            "--service",
            "routing",
            "--output",
            &output,
            "--idle-exit",
            "2",
        ];
        args.extend_from_slice(&seek);
        let (status, lines) = mposctl(&args);
        assert_eq!(status, 0, "{name}: {lines:?}");
        let summary = &lines[0];
        assert_eq!(summary["events_read"], 3, "{name}: {summary}");
        assert_eq!(summary["events_written"], 3, "{name}: {summary}");
        assert_eq!(summary["first_position"], 4, "{name}: {summary}");
        assert_eq!(summary["last_position"], 6, "{name}: {summary}");
    }
}

#[tokio::test]
async fn a_kafka_replay_seeks_to_a_time_or_an_offset() {
    a_broker_replay_seeks_to_a_time_or_an_offset(&kafka_url(&namespace()), 3).await;
}

#[tokio::test]
async fn a_nats_replay_seeks_to_a_time_or_a_sequence() {
    let namespace = namespace();
    a_broker_replay_seeks_to_a_time_or_an_offset(&nats_url(&namespace), 4).await;
    delete_stream(&namespace).await;
}

/// `events nats-permissions` prints a tenant integrator's nats-server permissions: its own
/// consumers and subjects on every service's stream, and refuses names that would widen them.
#[test]
fn a_tenants_nats_permissions_are_printed() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mposctl"))
        .args([
            "events",
            "nats-permissions",
            "--tenant",
            "acme",
            "--consumer",
            "integration",
            "--namespace",
            "prod",
        ])
        .output()
        .expect("run");
    assert!(output.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(answer["consumers"], serde_json::json!(["acme_integration"]));
    assert_eq!(answer["inbox_prefix"], "_INBOX_acme");
    let publish = answer["permissions"]["publish"]["allow"]
        .as_array()
        .expect("publish");
    let subscribe = answer["permissions"]["subscribe"]["allow"]
        .as_array()
        .expect("subscribe");
    // Six services: a stream info, a filtered create and four consumer subjects each.
    assert_eq!(publish.len(), 1 + 6 * 6, "{answer}");
    assert!(publish.contains(&serde_json::json!(
        "$JS.API.CONSUMER.CREATE.PROD_MPOS_EVENTS_AUTHORIZATION.acme_integration.prod.mpos.events.authorization.acme.>"
    )));
    assert!(
        subscribe
            .iter()
            .skip(1)
            .all(|subject| subject.as_str().is_some_and(|s| s.ends_with(".acme.>"))),
        "{answer}"
    );
    for (tenant, consumer) in [("acme.>", "c"), ("acme_x", "c"), ("acme", "a.b")] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mposctl"))
            .args([
                "events",
                "nats-permissions",
                "--tenant",
                tenant,
                "--consumer",
                consumer,
            ])
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(2), "{tenant} {consumer}");
        let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        assert_eq!(answer["code"], "bad_request", "{answer}");
    }
}

/// `events kafka-acls` prints a tenant principal's ACLs: its own tenant topics and groups.
#[test]
fn a_tenants_kafka_acls_are_printed() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mposctl"))
        .args([
            "events",
            "kafka-acls",
            "--tenant",
            "acme",
            "--service",
            "routing",
        ])
        .output()
        .expect("run");
    assert!(output.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(answer["principal"], "User:acme");
    assert_eq!(answer["acls"][0]["name"], "mpos.routing.events.v1.acme");
    assert_eq!(answer["acls"][1]["name"], "acme_");
    assert_eq!(
        answer["commands"][1],
        "kafka-acls.sh --add --allow-principal User:acme --operation Read --group acme_ --resource-pattern-type prefixed"
    );
}
