//! terminal-management acting on the attestation service's verdicts: genuine attestation
//! events (the attestation crate's device aggregate, run on its own SQLite log) followed from
//! that log, as `mposd` does. SoftPOS terminals are activated, suspended and resumed; a
//! person's suspension, PEDs, blacklisted and unknown terminals are left alone; a restart on
//! the same data changes nothing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use attestation::device::{Device, DeviceCommand};
use common::pki::{TestCa, TestDevice};
use common::{TestService, start_following};
use mpos_es::{CommandMetadata, Cqrs, EventStore, StoredEvent};
use mpos_feed::follow::FeedSource;
use mpos_proto::attestation as att;
use mpos_proto::terminal_management as pb;
use mpos_telemetry::Readiness;
use serde_json::json;
use terminal_management::verdicts;

const TENANT: &str = "acme";
const SECOND: i64 = 1_000_000;
const HOUR: i64 = 3_600 * SECOND;

/// The attestation service's log, written by its own device aggregate.
struct Attestation {
    store: EventStore,
    devices: Arc<Cqrs<Device>>,
    challenges: AtomicU64,
}

/// The tenant's policy: re-attest every hour, defaults otherwise.
fn policy() -> att::Policy {
    att::Policy {
        reattestation_interval_seconds: 3_600,
        ..att::Policy::default()
    }
}

/// What a healthy Android 15 phone's evidence shows; `rooted` as its SDK reports.
fn evidence(rooted: bool) -> att::EvidenceSummary {
    att::EvidenceSummary {
        leaf_sha256: "ab".repeat(32),
        attestation_security_level: attestation::rules::level::TEE.into(),
        keymint_security_level: attestation::rules::level::TEE.into(),
        verified_boot_state: "verified".into(),
        device_locked: true,
        os_version: 150_000,
        os_patch_level: 202_510,
        signals: Some(att::AppSignals {
            rooted,
            ..att::AppSignals::default()
        }),
        ..att::EvidenceSummary::default()
    }
}

impl Attestation {
    async fn open(dir: &std::path::Path) -> Self {
        let url = format!("sqlite://{}", dir.join("attestation.db").display());
        let store = EventStore::connect(&url, attestation::SERVICE)
            .await
            .expect("attestation store");
        let devices = mpos_es::snapshot_framework::<Device>(&store, 100);
        Self {
            store,
            devices,
            challenges: AtomicU64::new(0),
        }
    }

    /// Its log, as terminal-management follows it.
    fn source(&self) -> FeedSource {
        FeedSource::Store {
            store: self.store.clone(),
            codec: Arc::new(attestation::codec()),
        }
    }

    async fn run(&self, device: &str, command: DeviceCommand) {
        let metadata = CommandMetadata {
            tenant_id: TENANT.into(),
            correlation_id: uuid::Uuid::now_v7().to_string(),
            causation_id: String::new(),
            traceparent: String::new(),
            actor: "service:attestation".into(),
        };
        mpos_es::execute(
            &self.devices,
            &format!("{TENANT}/{device}"),
            command,
            metadata,
        )
        .await
        .expect("attestation command");
    }

    /// A challenge, and the device's evidence for it at `now_us`.
    async fn attest(&self, device: &str, now_us: i64, rooted: bool) {
        let n = self.challenges.fetch_add(1, Ordering::SeqCst);
        let challenge_id = format!("c-{n}");
        self.run(
            device,
            DeviceCommand::IssueChallenge {
                tenant_id: TENANT.into(),
                device_id: device.into(),
                challenge_id: challenge_id.clone(),
                challenge: vec![7; 32],
                now_us: now_us - SECOND,
                ttl_us: 300 * SECOND,
                play_integrity_requested: false,
            },
        )
        .await;
        self.run(
            device,
            DeviceCommand::Attest {
                challenge_id,
                summary: Box::new(evidence(rooted)),
                policy: policy(),
                policy_version: 1,
                now_us,
                token_id: format!("tok-{n}"),
            },
        )
        .await;
    }

    /// The monitoring sweep at `now_us`.
    async fn monitor(&self, device: &str, now_us: i64) {
        self.run(
            device,
            DeviceCommand::Monitor {
                policy: policy(),
                policy_version: 1,
                now_us,
            },
        )
        .await;
    }

    async fn events(&self) -> Vec<StoredEvent> {
        self.store.read_after(0, 10_000).await.expect("read")
    }

    /// The id of the last event of `event_type` (without the package).
    async fn last(&self, event_type: &str) -> StoredEvent {
        self.events()
            .await
            .into_iter()
            .rev()
            .find(|stored| stored.event.event_type == format!("mpos.attestation.v1.{event_type}"))
            .expect("event")
    }
}

/// Waits until terminal-management applied every attestation event (its work is done before
/// its checkpoint moves).
async fn caught_up(service: &TestService, attestation: &Attestation) {
    let head = attestation
        .events()
        .await
        .last()
        .map_or(0, |stored| stored.global_position);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let at = service
            .store
            .consumer_position(verdicts::CONSUMER)
            .await
            .expect("position");
        if at >= head {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the verdict feed is at {at}, not {head}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn terminal(service: &TestService, terminal_id: &str) -> serde_json::Value {
    let (status, body) = service
        .get(&format!("/v1/tenants/{TENANT}/terminals/{terminal_id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn state(service: &TestService, terminal_id: &str) -> String {
    terminal(service, terminal_id).await["state"]
        .as_str()
        .expect("state")
        .to_owned()
}

/// The terminal's events in terminal-management's log, decoded, with their actors.
async fn terminal_events(
    service: &TestService,
    terminal_id: &str,
) -> Vec<(String, Vec<u8>, String)> {
    let codec = terminal_management::codec();
    service
        .store
        .read_after(0, 10_000)
        .await
        .expect("read")
        .into_iter()
        .filter(|stored| stored.event.aggregate_id == format!("{TENANT}/{terminal_id}"))
        .map(|stored| {
            let payload = codec.encode(&stored).expect("encode");
            (
                stored.event.event_type.clone(),
                payload,
                stored.metadata().actor,
            )
        })
        .collect()
}

async fn start(database: &str, attestation: &Attestation) -> TestService {
    start_following(
        database,
        &format!("memory://{}", common::unique("tm")),
        None,
        Readiness::new(),
        None,
        Some(attestation.source()),
    )
    .await
}

/// acme with merchant m-1 and store s-1, a SoftPOS terminal per id, a PED activated over mTLS,
/// and a blacklisted SoftPOS terminal; returns the tenant's operator key.
async fn estate(service: &TestService, softpos: &[&str], ped: &TestDevice) -> String {
    let key = service
        .tenant_with_key(TENANT, "API_KEY_ROLE_OPERATOR")
        .await;
    for (node, kind, parent) in [
        ("m-1", "NODE_KIND_MERCHANT", ""),
        ("s-1", "NODE_KIND_STORE", "m-1"),
    ] {
        let (status, body) = service
            .post_as(
                &key,
                &format!("/v1/tenants/{TENANT}/nodes"),
                json!({"nodeId": node, "kind": kind, "parentId": parent, "name": node}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    for terminal_id in softpos.iter().chain(&["blacklisted"]) {
        let (status, body) = service
            .post_as(
                &key,
                &format!("/v1/tenants/{TENANT}/terminals"),
                json!({"terminalId": terminal_id, "kind": "TERMINAL_KIND_SOFTPOS", "parentId": "s-1"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = service
        .post_as(
            &key,
            &format!("/v1/tenants/{TENANT}/terminals/blacklisted/blacklist"),
            json!({"reason": "stolen"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = service
        .post_as(
            &key,
            &format!("/v1/tenants/{TENANT}/terminals"),
            json!({"terminalId": "ped-1", "kind": "TERMINAL_KIND_PED", "parentId": "s-1", "certificatePem": ped.pem}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let response = ped
        .client()
        .post(format!("{}/v1/devices/activate", service.device_base))
        .json(&json!({}))
        .send()
        .await
        .expect("activate");
    assert_eq!(response.status().as_u16(), 200);
    key
}

#[tokio::test]
async fn softpos_terminals_follow_their_attestation_verdicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", dir.path().join("tm.db").display());
    let attestation = Attestation::open(dir.path()).await;
    let service = start(&database, &attestation).await;
    let vendor = TestCa::new("Vendor");
    let (status, body) = service
        .post(
            "/v1/manufacturer-cas",
            json!({"name": "Vendor", "certificatePem": vendor.pem}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let ped = vendor.device(&[0x01]);
    let key = estate(&service, &["phone-1", "phone-2"], &ped).await;
    let mut now = mpos_es::now_micros();

    // A passing attestation activates the bound terminal, on the attestation's account.
    attestation.attest("phone-1", now, false).await;
    caught_up(&service, &attestation).await;
    let phone = terminal(&service, "phone-1").await;
    assert_eq!(phone["state"], "TERMINAL_STATE_ACTIVE", "{phone}");
    assert_eq!(phone["activationMethod"], "ACTIVATION_METHOD_ATTESTATION");
    let attested = attestation.last("DeviceAttested").await;
    let events = terminal_events(&service, "phone-1").await;
    let (event_type, payload, actor) = events.last().expect("activated");
    assert_eq!(event_type, "mpos.terminal_management.v1.TerminalActivated");
    assert_eq!(actor, verdicts::ACTOR);
    let activated: pb::TerminalActivated = prost::Message::decode(payload.as_slice()).expect("pb");
    assert_eq!(activated.evidence, attested.event.event_id);

    // Monitoring: the re-attestation was missed, the verdict turns to BLOCK, the terminal is
    // suspended with a reason naming the attestation.
    now += 2 * HOUR;
    attestation.monitor("phone-1", now).await;
    assert_eq!(
        attestation
            .last("DeviceVerdictChanged")
            .await
            .event
            .sequence,
        attestation.last("ReattestationMissed").await.event.sequence + 1
    );
    caught_up(&service, &attestation).await;
    assert_eq!(state(&service, "phone-1").await, "TERMINAL_STATE_SUSPENDED");
    let events = terminal_events(&service, "phone-1").await;
    let (event_type, payload, actor) = events.last().expect("suspended");
    assert_eq!(event_type, "mpos.terminal_management.v1.TerminalSuspended");
    assert_eq!(actor, verdicts::ACTOR);
    let suspended: pb::TerminalSuspended = prost::Message::decode(payload.as_slice()).expect("pb");
    assert_eq!(
        suspended.reason,
        "attestation: verdict block (REATTESTATION_MISSED)"
    );

    // It passes again: resumed. A rooted phone is blocked again, then passes again.
    now += 60 * SECOND;
    attestation.attest("phone-1", now, false).await;
    caught_up(&service, &attestation).await;
    assert_eq!(state(&service, "phone-1").await, "TERMINAL_STATE_ACTIVE");
    now += 60 * SECOND;
    attestation.attest("phone-1", now, true).await;
    caught_up(&service, &attestation).await;
    assert_eq!(state(&service, "phone-1").await, "TERMINAL_STATE_SUSPENDED");
    now += 60 * SECOND;
    attestation.attest("phone-1", now, false).await;
    caught_up(&service, &attestation).await;
    assert_eq!(state(&service, "phone-1").await, "TERMINAL_STATE_ACTIVE");
    let kinds: Vec<String> = terminal_events(&service, "phone-1")
        .await
        .into_iter()
        .map(|(event_type, _, _)| event_type.replace("mpos.terminal_management.v1.Terminal", ""))
        .collect();
    assert_eq!(
        kinds,
        [
            "Bound",
            "Activated",
            "Suspended",
            "Resumed",
            "Suspended",
            "Resumed"
        ]
    );

    // A terminal the tenant suspended stays suspended whatever attestation says; a person
    // cannot pass a suspension off as attestation's.
    attestation.attest("phone-2", now, false).await;
    caught_up(&service, &attestation).await;
    assert_eq!(state(&service, "phone-2").await, "TERMINAL_STATE_ACTIVE");
    let (status, body) = service
        .post_as(
            &key,
            &format!("/v1/tenants/{TENANT}/terminals/phone-2/suspend"),
            json!({"reason": "Attestation: looks odd"}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));
    let (status, body) = service
        .post_as(
            &key,
            &format!("/v1/tenants/{TENANT}/terminals/phone-2/suspend"),
            json!({"reason": "lost by the merchant"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    now += 60 * SECOND;
    attestation.attest("phone-2", now, true).await;
    attestation.attest("phone-2", now + SECOND, false).await;
    caught_up(&service, &attestation).await;
    assert_eq!(state(&service, "phone-2").await, "TERMINAL_STATE_SUSPENDED");

    // PEDs, blacklisted and unknown terminals are not touched; the feed goes on past them.
    let ped_before = terminal(&service, "ped-1").await;
    let blacklisted_before = terminal(&service, "blacklisted").await;
    for device in ["ped-1", "blacklisted", "unknown-phone"] {
        attestation.attest(device, now, false).await;
        attestation.attest(device, now + SECOND, true).await;
    }
    caught_up(&service, &attestation).await;
    assert_eq!(terminal(&service, "ped-1").await, ped_before);
    assert_eq!(terminal(&service, "blacklisted").await, blacklisted_before);
    assert_eq!(ped_before["state"], "TERMINAL_STATE_ACTIVE");
    assert_eq!(blacklisted_before["state"], "TERMINAL_STATE_BLACKLISTED");
    let (status, _) = service
        .get(&format!("/v1/tenants/{TENANT}/terminals/unknown-phone"))
        .await;
    assert_eq!(status, 404);

    // A restart on the same data changes nothing; the feed then carries on.
    let events_before = service.event_count().await;
    service.stop().await;
    let service = start(&database, &attestation).await;
    caught_up(&service, &attestation).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(service.event_count().await, events_before);
    for (terminal_id, expected) in [
        ("phone-1", "TERMINAL_STATE_ACTIVE"),
        ("phone-2", "TERMINAL_STATE_SUSPENDED"),
        ("ped-1", "TERMINAL_STATE_ACTIVE"),
        ("blacklisted", "TERMINAL_STATE_BLACKLISTED"),
    ] {
        assert_eq!(
            state(&service, terminal_id).await,
            expected,
            "{terminal_id}"
        );
    }
    now += 60 * SECOND;
    attestation.attest("phone-1", now, true).await;
    caught_up(&service, &attestation).await;
    assert_eq!(state(&service, "phone-1").await, "TERMINAL_STATE_SUSPENDED");
    service.stop().await;
}
