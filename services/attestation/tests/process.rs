//! The attestation binary as its own process (the distributed deployment), configured only by
//! `MPOS_*` variables, on PostgreSQL + NATS JetStream + Kafka: the token key from its file is
//! the published one, a policy edit reaches Kafka through the outbox, SIGTERM stops it cleanly;
//! a bad setting stops it with one clear line.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;

const OPERATOR: &str = "operator-token-for-attestation-process-0123456789";

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn named(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// The child process, killed if the test ends before it stopped it.
struct Child(Option<std::process::Child>);

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A P-256 key as the PKCS#8 PEM file `MPOS_ATT_TOKEN_KEY` names, and its public point.
fn token_key() -> (String, Vec<u8>) {
    use ring::signature::KeyPair as _;
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("key");
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("pair");
    let body = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).expect("base64 is ascii"))
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    (pem, pair.public_key().as_ref().to_vec())
}

#[tokio::test]
async fn the_binary_publishes_its_key_and_events_and_stops_cleanly() {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let postgres = env(
        "MPOS_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let namespace = named("attproc");
    let nats = format!(
        "{}?namespace={namespace}",
        env("MPOS_TEST_NATS_URL", "nats://127.0.0.1:4222")
    );
    let kafka = format!(
        "{}?namespace={namespace}",
        env("MPOS_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, public_point) = token_key();
    let key_file = dir.path().join("token.pem");
    std::fs::write(&key_file, pem).expect("write");
    let (http, admin, device) = (port(), port(), port());

    let spawned = Command::new(env!("CARGO_BIN_EXE_attestation"))
        .env_clear()
        .env(
            "MPOS_DATABASE_URL",
            format!("{postgres}?schema={}", named("attproc_")),
        )
        .env("MPOS_BUS_URL", &nats)
        .env("MPOS_KAFKA_URL", &kafka)
        .env("MPOS_CHAIN_SIGNING_KEY", "3c".repeat(32))
        .env("MPOS_OPERATOR_TOKEN", OPERATOR)
        .env("MPOS_ATT_TOKEN_KEY", &key_file)
        .env("MPOS_ATT_TOKEN_KID", "att-2026-12")
        .env("MPOS_ATT_STATUS_LIST", "none")
        .env("MPOS_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("MPOS_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("MPOS_ATT_DEVICE_ADDR", format!("127.0.0.1:{device}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut child = Child(Some(spawned));
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    while !client
        .get(format!("http://127.0.0.1:{admin}/readyz"))
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
    {
        assert!(started.elapsed() < Duration::from_secs(30), "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The published verification key is the configured one.
    let keys: serde_json::Value = client
        .get(format!("http://127.0.0.1:{http}/v1/attestation/token-keys"))
        .send()
        .await
        .expect("keys")
        .json()
        .await
        .expect("json");
    assert_eq!(keys["keys"][0]["kid"], "att-2026-12");
    let published = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(keys["keys"][0]["sec1"].as_str().expect("sec1"))
        .expect("base64url");
    assert_eq!(published, public_point);
    // The trust anchors are Google's two roots.
    let trust: serde_json::Value = client
        .get(format!("http://127.0.0.1:{http}/v1/attestation/trust"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("trust")
        .json()
        .await
        .expect("json");
    assert_eq!(trust["anchors"], 2, "{trust}");

    // A policy edit reaches Kafka through the outbox.
    let response = client
        .put(format!(
            "http://127.0.0.1:{http}/v1/tenants/acme/attestation-policy"
        ))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"policy": {"minOsVersion": 140000}, "comment": "android 14"}))
        .send()
        .await
        .expect("policy");
    assert_eq!(response.status().as_u16(), 200);
    let bus = mpos_bus::connect(&kafka).await.expect("kafka");
    let mut stream = bus
        .subscriber
        .subscribe(mpos_bus::SubscribeOptions::new(
            attestation::SERVICE,
            "process-test",
        ))
        .await
        .expect("subscribe");
    let delivery = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("on kafka in time")
        .expect("open")
        .expect("delivery");
    assert_eq!(
        delivery.envelope.event_type,
        "mpos.attestation.v1.PolicyPublished"
    );
    assert_eq!(delivery.envelope.tenant_id, "acme");
    assert_eq!(delivery.envelope.actor, "operator:platform");

    let mut process = child.0.take().expect("running");
    let stopped = Command::new("kill")
        .args(["-TERM", &process.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    assert!(
        process.wait().expect("wait").success(),
        "clean exit on SIGTERM"
    );
}

#[test]
fn a_bad_trust_anchor_setting_stops_the_binary_with_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_attestation"))
        .env_clear()
        .env("MPOS_DATABASE_URL", "sqlite::memory:")
        .env("MPOS_BUS_URL", "memory://")
        .env("MPOS_CHAIN_SIGNING_KEY", "3c".repeat(32))
        .env("MPOS_OPERATOR_TOKEN", OPERATOR)
        .env("MPOS_ATT_ANCHORS", "ftp://example.org/roots.pem")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("MPOS_ATT_ANCHORS: expected"), "{stderr}");
}
