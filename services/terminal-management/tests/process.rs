//! The terminal-management binary as its own process, configured only by `MPOS_*` variables,
//! on PostgreSQL + NATS JetStream + Kafka; SIGTERM stops it cleanly and signs the log head.

use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "operator-token-for-process-test-0123456789";
const SEED_HEX: &str = "0707070707070707070707070707070707070707070707070707070707070707";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Kills the service if the test fails before it stopped it: no process outlives its test
/// (a leftover one would hold its ports for the next run).
struct Service(Option<std::process::Child>);

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn the_service_binary_runs_on_real_infrastructure_and_stops_cleanly() {
    let postgres = std::env::var("MPOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let nats =
        std::env::var("MPOS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let kafka =
        std::env::var("MPOS_TEST_KAFKA_URL").unwrap_or_else(|_| "kafka://127.0.0.1:9092".into());
    let database = format!("{postgres}?schema={}", unique("tmproc_"));
    let kafka = format!("{kafka}?namespace={}", unique("tmproc"));
    let nats = format!("{nats}?namespace={}", unique("tmproc"));
    let (http_port, admin_port, device_port) = (free_port(), free_port(), free_port());

    let child = Command::new(env!("CARGO_BIN_EXE_terminal-management"))
        .env_clear()
        .env("MPOS_DATABASE_URL", &database)
        .env("MPOS_BUS_URL", &nats)
        .env("MPOS_KAFKA_URL", &kafka)
        .env("MPOS_CHAIN_SIGNING_KEY", SEED_HEX)
        .env("MPOS_OPERATOR_TOKEN", TOKEN)
        .env("MPOS_PARAMETER_SIGNING_KEY", "07".repeat(32))
        .env("MPOS_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("MPOS_ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
        .env("MPOS_DEVICE_ADDR", format!("127.0.0.1:{device_port}"))
        .env("MPOS_CHECKPOINT_INTERVAL_MS", "3600000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut service = Service(Some(child));

    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .send()
            .await
            && response.status().as_u16() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the service becomes ready");
    let response = client
        .post(format!("http://127.0.0.1:{http_port}/v1/tenants"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"tenantId": "acme", "name": "Acme Pay"}))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status().as_u16(), 201);

    // The event reaches Kafka from the separate process.
    let bus = mpos_bus::connect(&kafka).await.expect("kafka");
    let mut stream = bus
        .subscriber
        .subscribe(mpos_bus::SubscribeOptions::new(
            terminal_management::SERVICE,
            "process-test",
        ))
        .await
        .expect("subscribe");
    let delivery = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("delivery");
    assert_eq!(
        delivery.envelope.event_type,
        "mpos.terminal_management.v1.TenantCreated"
    );
    assert_eq!(delivery.envelope.tenant_id, "acme");

    let mut child = service.0.take().expect("running");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");

    // At shutdown the signer signed the head; the log verifies under the configured key.
    let store = mpos_es::EventStore::connect(&database, terminal_management::SERVICE)
        .await
        .expect("store");
    let seed: [u8; 32] = hex_seed();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    let report = mpos_es::verify(&store, &[key]).await.expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.events_checked, report.checkpoints_checked), (1, 1));
}

fn hex_seed() -> [u8; 32] {
    let mut seed = [0_u8; 32];
    for (index, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&SEED_HEX[index * 2..index * 2 + 2], 16).expect("hex");
    }
    seed
}

#[test]
fn a_missing_variable_stops_the_service_with_one_clear_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_terminal-management"))
        .env_clear()
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("MPOS_DATABASE_URL: expected"),
        "{stderr}"
    );
}
