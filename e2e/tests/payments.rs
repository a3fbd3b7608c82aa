//! The payment path end to end: the whole platform in process (see `mpos_e2e`), a PED and a
//! SoftPOS phone of the terminal simulator paying through the real device APIs, two acquirer
//! simulators behind routing, and a scan of every bus message, log line and event of the run
//! for card data and key values.
//!
//! Over PostgreSQL and NATS (and Kafka when `MPOS_TEST_KAFKA_URL` is set) when the test
//! environment names them (`MPOS_TEST_POSTGRES_URL`, `MPOS_TEST_NATS_URL`; CI sets them);
//! the approved payment also on SQLite and the in-process bus (the embedded platform).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use attestation_token::{Claims, Verdict};
use mpos_e2e::capture::{self, Item, Needles};
use mpos_e2e::{Backends, DECLINED_AMOUNT, FLOOR_LIMIT, PHONE, Platform, TENANT, chip, visa};
use mpos_proto::authorization::{DeclineReason, PaymentResponse, PaymentStatus};
use paycrypto::pin::Pin;
use terminal_sim::SimError;
use terminal_sim::card::{test_card, test_cards};
use terminal_sim::emv::CardDecision;
use terminal_sim::payment::Payment;
use terminal_sim::terminal::Terminal;

fn assert_declined(response: &PaymentResponse, reason: DeclineReason) {
    assert!(!response.approved, "{response:?}");
    assert_eq!(response.decline_reason(), reason, "{response:?}");
    assert_eq!(response.status(), PaymentStatus::Declined, "{response:?}");
}

/// key-injection's SoftPOS key API refuses, and records nothing for, a request without a
/// token, with a token for another device, with a token that names no attested key, and
/// with a certificate other than the one the token names.
async fn softpos_key_requests_are_refused_without_a_bound_token(platform: &Platform) {
    use attestation_token::Confirmation;
    use base64::Engine as _;
    let http =
        terminal_sim::client::server_auth_client(std::slice::from_ref(&platform.server_root))
            .expect("client");
    let url = format!(
        "{}/v1/tenants/{TENANT}/devices/{PHONE}/keys",
        platform.ki_softpos_url
    );
    let key = terminal_sim::softpos::AttestedKey::generate().expect("key");
    let (verdict, leaf) = platform.attest_phone_with(&key).await;
    let token = verdict["token"].as_str().expect("token").to_owned();
    let body = serde_json::json!({
        "attestedCertificate": base64::engine::general_purpose::STANDARD.encode(&leaf)
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let issue = |sub: &str, cnf: Option<Confirmation>| {
        platform
            .token_issuer
            .issue(&Claims {
                iss: "mpos:attestation".into(),
                sub: sub.into(),
                tenant: TENANT.into(),
                verdict: Verdict::Allow,
                reasons: Vec::new(),
                iat: now,
                nbf: now,
                exp: now + 600,
                jti: format!("forged-{sub}"),
                policy_version: 1,
                cnf,
            })
            .expect("token")
    };
    let injections_before = platform
        .store(key_injection::SERVICE)
        .read_aggregate_type(key_injection::injection::AGGREGATE_TYPE)
        .await
        .expect("read")
        .len();
    let cases = [
        (None, body.clone(), 401, "no token"),
        (
            Some(issue("sp-other", Some(Confirmation::of_certificate(&leaf)))),
            body.clone(),
            401,
            "another device's token",
        ),
        (
            Some(issue(PHONE, None)),
            body.clone(),
            403,
            "a token naming no key",
        ),
        (
            Some(issue(
                PHONE,
                Some(Confirmation::of_certificate(b"another key")),
            )),
            body.clone(),
            403,
            "a token naming another key",
        ),
        (
            Some(token.clone()),
            serde_json::json!({"attestedCertificate": base64::engine::general_purpose::STANDARD.encode(b"not it")}),
            403,
            "another certificate than the token's",
        ),
    ];
    for (bearer, body, status, case) in cases {
        let mut request = http.post(&url).json(&body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.expect("send");
        assert_eq!(response.status().as_u16(), status, "{case}");
        let error: serde_json::Value = response.json().await.expect("json");
        assert!(error["code"].is_string(), "{case}: {error}");
    }
    assert_eq!(
        platform
            .store(key_injection::SERVICE)
            .read_aggregate_type(key_injection::injection::AGGREGATE_TYPE)
            .await
            .expect("read")
            .len(),
        injections_before,
        "a refused request recorded an injection"
    );
}

/// The 0200s simulator `index` received.
fn authorizations(platform: &Platform, index: usize) -> u64 {
    platform.sims[index].received().count("0200")
}

async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sim_rules() -> String {
    mpos_e2e::test_card_rules()
}

/// Approved: chip and PIN, the ARQC verified by the issuer through the hsm-proxy, the ARPC
/// verified by the card.
async fn approved(platform: &Platform, terminal: &mut Terminal) {
    let before = authorizations(platform, 0);
    let (payment, card) = chip(&visa(), "approved-1", 1_000, CardDecision::Arqc, 10);
    let response = terminal.pay(payment).await.expect("pay");
    assert!(response.approved, "{response:?}");
    assert_eq!(response.status(), PaymentStatus::Approved);
    assert_eq!(response.response_code, "00");
    assert_eq!(response.acquirer_id, "acq-a");
    assert!(!response.auth_code.is_empty(), "{response:?}");
    assert!(
        card.verify_arpc(&response.issuer_emv_data),
        "the card refuses the issuer's ARPC: {response:?}"
    );
    assert_eq!(authorizations(platform, 0), before + 1);
    let status = terminal
        .payment_status(&response.payment_id)
        .await
        .expect("status");
    assert_eq!(status.status(), PaymentStatus::Approved);
    let recorded = platform.payment(&response.payment_id).await;
    assert_eq!(recorded["status"], "PAYMENT_STATUS_APPROVED", "{recorded}");

    // The operator's list of the tenant's payments (the console's live list) shows it, masked,
    // with its terminal; another tenant's list does not; a limit out of range is refused.
    let list = |tenant: &str, limit: u32| {
        format!(
            "{}/v1/tenants/{tenant}/payments?limit={limit}",
            platform.auth_api
        )
    };
    let listed = platform
        .call(reqwest::Method::GET, &list(TENANT, 50), None)
        .await;
    let entry = listed["payments"]
        .as_array()
        .and_then(|payments| {
            payments
                .iter()
                .find(|entry| entry["paymentId"] == response.payment_id.as_str())
        })
        .unwrap_or_else(|| panic!("the payment is not listed: {listed}"));
    assert_eq!(entry["terminalId"], terminal.terminal_id(), "{entry}");
    assert_eq!(entry["status"], "PAYMENT_STATUS_APPROVED", "{entry}");
    assert_eq!(entry["acquirerId"], "acq-a", "{entry}");
    assert!(
        entry["maskedPan"]
            .as_str()
            .is_some_and(|pan| pan.contains('*')),
        "{entry}"
    );
    let theirs = platform
        .call(
            reqwest::Method::GET,
            &list(mpos_e2e::SIM_TENANTS[1], 50),
            None,
        )
        .await;
    assert!(
        !theirs.to_string().contains(&response.payment_id),
        "another tenant's list shows the payment: {theirs}"
    );
    // Its history: every event in order, the checks and the HSM's work included.
    let history = |tenant: &str| {
        format!(
            "{}/v1/tenants/{tenant}/payments/{}/history",
            platform.auth_api, response.payment_id
        )
    };
    let recorded = platform
        .call(reqwest::Method::GET, &history(TENANT), None)
        .await;
    let types: Vec<&str> = recorded["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|entry| entry["event"]["@type"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        types,
        [
            "mpos.authorization.v1.PaymentReceived",
            "mpos.authorization.v1.PaymentChecked",
            "mpos.authorization.v1.CardDataDecrypted",
            "mpos.authorization.v1.PaymentRouted",
            "mpos.authorization.v1.PaymentApproved",
        ],
        "{recorded}"
    );
    let (status, _) = platform
        .try_call(
            reqwest::Method::GET,
            &history(mpos_e2e::SIM_TENANTS[1]),
            None,
        )
        .await;
    assert_eq!(status, 404, "another tenant's history");
    let (status, error) = platform
        .try_call(reqwest::Method::GET, &list(TENANT, 0), None)
        .await;
    assert_eq!(
        (status, &error["code"]),
        (400, &serde_json::json!("bad_request")),
        "{error}"
    );
}

#[tokio::test]
async fn the_payment_path_end_to_end_on_postgres_and_nats() {
    let Some(backends) = Backends::postgres_and_nats() else {
        eprintln!(
            "skipped: MPOS_TEST_POSTGRES_URL and MPOS_TEST_NATS_URL name the PostgreSQL and NATS to run on"
        );
        return;
    };
    let started = Instant::now();
    let logs = capture::logs();
    let (nats_url, namespace) = backends.nats.clone().expect("nats");
    let bus = capture::NatsCapture::start(&nats_url, &namespace).await;
    let platform = Platform::start(backends, &sim_rules()).await;
    let mut terminal = platform.provision().await;
    eprintln!("provisioned in {:?}", started.elapsed());

    // 1. Approved.
    approved(&platform, &mut terminal).await;

    // 2. Declined by the issuer: the amount rule answers 51.
    let (payment, _) = chip(
        &visa(),
        "declined-1",
        DECLINED_AMOUNT,
        CardDecision::Arqc,
        11,
    );
    let response = terminal.pay(payment).await.expect("pay");
    assert_declined(&response, DeclineReason::IssuerDeclined);
    assert_eq!(response.response_code, "51");

    // 3. Wrong PIN: the issuer checks it against the PVV on file.
    let (mut payment, _) = chip(&visa(), "wrong-pin-1", 1_200, CardDecision::Arqc, 12);
    payment.pin = Some(Pin::new("9999").expect("pin"));
    let response = terminal.pay(payment).await.expect("pay");
    assert_declined(&response, DeclineReason::IssuerDeclined);
    assert_eq!(response.response_code, "55");

    // 4. Blocked BIN (the terminal's parameters): no acquirer sees it.
    let seen = (authorizations(&platform, 0), authorizations(&platform, 1));
    let blocked = test_card("blocked-bin").expect("blocked");
    let (payment, _) = chip(&blocked, "blocked-bin-1", 1_000, CardDecision::Arqc, 13);
    let response = terminal.pay(payment).await.expect("pay");
    assert_declined(&response, DeclineReason::BinBlocked);

    // 5. A TC above the floor limit.
    let (payment, _) = chip(&visa(), "offline-1", FLOOR_LIMIT + 1, CardDecision::Tc, 14);
    let response = terminal.pay(payment).await.expect("pay");
    assert_declined(&response, DeclineReason::OverFloorLimit);
    assert_eq!(
        seen,
        (authorizations(&platform, 0), authorizations(&platform, 1)),
        "a payment declined by a check reached an acquirer"
    );

    // 6. A SoftPOS phone with an expired attestation token (signed by the attestation
    // service's key).
    let mut phone = platform.phone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expired = platform
        .token_issuer
        .issue(&Claims {
            iss: "mpos:attestation".into(),
            sub: PHONE.into(),
            tenant: TENANT.into(),
            verdict: Verdict::Allow,
            reasons: Vec::new(),
            iat: now - 7_200,
            nbf: now - 7_200,
            exp: now - 3_600,
            jti: "expired-1".into(),
            policy_version: 1,
            cnf: None,
        })
        .expect("token");
    phone.set_attestation_token(expired);
    let mut payment = Payment::purchase("phone-expired-1", 900, "EUR", visa().track2.clone());
    payment.entry_mode = mpos_proto::authorization::EntryMode::Contactless;
    let response = phone.pay(payment).await.expect("pay");
    assert_declined(&response, DeclineReason::AttestationInvalid);
    // The phone reads the answer again with a valid token (a new attestation) as its bearer
    // token.
    let verdict = platform.attest_phone().await;
    phone.set_attestation_token(verdict["token"].as_str().expect("token"));
    let status = phone
        .payment_status(&response.payment_id)
        .await
        .expect("status");
    assert_eq!(status.decline_reason(), DeclineReason::AttestationInvalid);

    // 6b. The phone attested with a key of its own receives its DUKPT initial key from
    // key-injection (ECDH to the attested key; the attestation token, which names the key's
    // certificate, is its credential) and pays contactless: approved.
    softpos_key_requests_are_refused_without_a_bound_token(&platform).await;
    // A contactless card with online PIN entered on the phone: PIN and ARQC verified by the
    // issuer simulator, the ARPC accepted by the card.
    let mut keyed = platform.keyed_phone().await;
    let (mut payment, card) = chip(&visa(), "phone-approved-1", 1_100, CardDecision::Arqc, 30);
    payment.entry_mode = mpos_proto::authorization::EntryMode::Contactless;
    let response = keyed.pay(payment).await.expect("pay");
    assert!(response.approved, "{response:?}");
    assert_eq!(response.status(), PaymentStatus::Approved, "{response:?}");
    assert!(card.verify_arpc(&response.issuer_emv_data), "{response:?}");

    // The device API's errors: a malformed request is refused (nothing recorded), an
    // unknown payment is not found, a device of an unknown vendor cannot connect.
    let refused = terminal
        .pay(Payment::purchase("", 100, "EUR", visa().track2.clone()))
        .await
        .expect_err("no idempotency key");
    assert!(
        matches!(&refused, SimError::Refused { status: 400, code, .. } if code == "bad_request"),
        "{refused}"
    );
    assert!(matches!(
        terminal.payment_status("p-nope").await,
        Err(SimError::Refused { status: 404, .. })
    ));
    let mut stranger = platform.stranger();
    let (payment, _) = chip(&visa(), "stranger-1", 100, CardDecision::Arqc, 9);
    let result = stranger.pay(payment).await;
    assert!(
        matches!(result, Err(SimError::Transport { .. })),
        "{result:?}"
    );

    // 9. The same request twice: one authorization, the same answer.
    let before = authorizations(&platform, 0);
    let (payment, _) = chip(&visa(), "duplicate-1", 1_300, CardDecision::Arqc, 15);
    let request = terminal.prepare_payment(&payment).expect("prepare");
    let first = terminal.submit(&request).await.expect("first");
    let again = terminal.resend(&request).await.expect("again");
    assert!(first.approved, "{first:?}");
    assert_eq!(first, again);
    // The key used again for another payment (a new amount, newly enciphered card data): the
    // payment is not read before its checks (ADR 27), and its commit tells the reuse apart.
    let (other, _) = chip(&visa(), "duplicate-1", 1_301, CardDecision::Arqc, 15);
    let reused = terminal.pay(other).await;
    assert!(
        matches!(
            &reused,
            Err(SimError::Refused { status: 409, code, message, .. })
                if code == "conflict" && message.contains("idempotency key")
        ),
        "{reused:?}"
    );
    assert_eq!(authorizations(&platform, 0), before + 1);
    // The terminal reverses it (the card refused the issuer's answer): delivered to A and
    // acknowledged.
    let reversal = terminal.reverse(&first.payment_id).await.expect("reverse");
    assert!(
        matches!(
            reversal.status(),
            PaymentStatus::ReversalPending | PaymentStatus::Reversed
        ),
        "{reversal:?}"
    );
    until(
        "the terminal's reversal",
        Duration::from_secs(20),
        || async {
            terminal
                .payment_status(&first.payment_id)
                .await
                .expect("status")
                .status()
                == PaymentStatus::Reversed
        },
    )
    .await;

    // 7. Acquirer A does not answer: timed out, then reversed once A answers again.
    platform.sims[0].set_blackhole(Some("0200"), true);
    platform.sims[0].set_blackhole(Some("0400"), true);
    platform.sims[0].set_blackhole(Some("0401"), true);
    let (payment, _) = chip(&visa(), "timeout-1", 1_400, CardDecision::Arqc, 16);
    let response = terminal.pay(payment).await.expect("pay");
    assert!(!response.approved, "{response:?}");
    assert!(
        matches!(
            response.status(),
            PaymentStatus::TimedOut | PaymentStatus::ReversalPending
        ),
        "{response:?}"
    );
    let timed_out = response.payment_id.clone();
    platform.sims[0].clear_faults();
    until(
        "the reversal at acquirer A",
        Duration::from_secs(20),
        || async {
            platform.sims[0].received().messages.iter().any(|message| {
                matches!(message.mti.as_str(), "0400" | "0401") && message.response_code.is_some()
            })
        },
    )
    .await;
    let received = platform.sims[0].received();
    for reversal in received
        .messages
        .iter()
        .filter(|message| matches!(message.mti.as_str(), "0400" | "0401"))
    {
        assert_eq!(reversal.pan_last4, None, "a reversal carries no PAN");
        assert!(reversal.reverses.is_some(), "{reversal:?}");
    }
    until("the payment reversed", Duration::from_secs(20), || async {
        terminal
            .payment_status(&timed_out)
            .await
            .expect("status")
            .status()
            == PaymentStatus::Reversed
    })
    .await;

    // 8. Acquirer A down: B approves, routing's exchange shows both.
    platform.sims[0].refuse_connections(true);
    platform.taps[0].go_down();
    platform.sims[0].drop_connections();
    let before_b = authorizations(&platform, 1);
    let (payment, card) = chip(&visa(), "fallback-1", 1_500, CardDecision::Arqc, 17);
    let response = terminal.pay(payment).await.expect("pay");
    assert!(response.approved, "{response:?}");
    assert_eq!(response.acquirer_id, "acq-b");
    assert!(card.verify_arpc(&response.issuer_emv_data));
    assert_eq!(authorizations(&platform, 1), before_b + 1);
    let exchange = platform.exchange(&response.payment_id).await;
    let text = exchange.to_string();
    assert!(
        text.contains("acq-a") && text.contains("acq-b"),
        "{exchange}"
    );
    eprintln!("exchange of the fallback: {exchange}");

    // 10. The scan: no PAN, track 2, clear PIN block or clear key anywhere.
    let mut needles = Needles::default();
    for card in test_cards() {
        let pan = card.pan().expose().to_owned();
        needles.text(&format!("{} PAN", card.name), &pan);
        if pan.len() % 2 == 0 {
            needles.hex(&format!("{} PAN (BCD)", card.name), &pan);
        }
        let track = format!("{pan}D{}201100000000", card.expiry);
        needles.text(&format!("{} track 2", card.name), &track);
        needles.text(&format!("{} track 2", card.name), &track.replace('D', "="));
        needles.hex(
            &format!("{} PIN block", card.name),
            &mpos_e2e::clear_pin_block(&card.pin, card.pan()),
        );
    }
    needles.hex(
        "wrong PIN block",
        &mpos_e2e::clear_pin_block(&Pin::new("9999").expect("pin"), visa().pan()),
    );
    for key in mpos_e2e::clear_keys() {
        needles.hex(&format!("key {}…", &key[..4]), &key);
    }
    // The needles are right: the PAN and track 2 are in what acquirer A received (off the
    // bus), as they must be.
    let sent = platform.taps[0].sent();
    let found = needles.found_in(&sent);
    assert!(found.iter().any(|name| name == "visa PAN"), "{found:?}");
    assert!(found.iter().any(|name| name == "visa track 2"), "{found:?}");

    let mut items = bus.items();
    let bus_count = items.len();
    let events = capture::event_items(&platform.all_events().await);
    let event_count = events.len();
    items.extend(events);
    if let Some(kafka) = platform.backends.kafka_url.clone() {
        let services = [
            "terminal-management",
            "hsm-proxy",
            "key-injection",
            "attestation",
            "routing",
            "authorization",
        ];
        let records = capture::kafka_items(&kafka, &services, Duration::from_secs(1)).await;
        assert!(!records.is_empty(), "nothing on kafka");
        eprintln!("kafka records: {}", records.len());
        items.extend(records);
    }
    let log_bytes = logs.contents();
    let log_lines = log_bytes.split(|byte| *byte == b'\n').count();
    items.extend(log_bytes.split(|byte| *byte == b'\n').map(|line| Item {
        source: "log".into(),
        bytes: line.to_vec(),
    }));
    eprintln!(
        "scanned {bus_count} bus messages, {event_count} events, {log_lines} log lines in {:?}",
        started.elapsed()
    );
    assert!(bus_count > 0 && event_count > 0 && log_lines > 0);
    let leaks = needles.leaks(&items);
    assert!(leaks.is_empty(), "leaks:\n{}", leaks.join("\n"));
    // The operator looks at the attestation dashboard: its read models catch up.
    let dashboard = platform
        .call(
            reqwest::Method::GET,
            &format!(
                "{}/v1/tenants/{TENANT}/attestation/dashboard",
                platform.att_api
            ),
            None,
        )
        .await;
    assert!(dashboard.is_object(), "{dashboard}");
    let backends = platform.backends.clone();
    platform.stop().await;
    // After the whole mixed workload: every read model equals its replay from the log, and
    // its replay from the service's stream on NATS and on Kafka (decoded from protobuf back
    // into the log's events, in log order).
    let mut buses = vec![backends.bus_url.clone()];
    buses.extend(backends.kafka_url.clone());
    for service in READ_MODEL_SERVICES {
        for bus in &buses {
            let summary = replay_read_models_with(&backends, service, &["--bus", bus], "all");
            assert!(summary.status, "{service} from {bus}: {}", summary.json);
            assert_eq!(summary.json["source"], "bus", "{}", summary.json);
            for model in summary.json["read_models"].as_array().expect("read models") {
                assert_eq!(model["identical"], true, "{service} from {bus}: {model}");
            }
        }
        let summary = replay_read_models(&backends, service);
        assert!(summary.status, "{service}: {}", summary.json);
        assert!(
            summary.json["read_models"]
                .as_array()
                .expect("read models")
                .iter()
                .any(|model| model["live"]["documents"].as_u64() > Some(0)),
            "{service}: the workload left documents: {}",
            summary.json
        );
    }
    assert_feeds_replay(&backends, true);
    eprintln!("done in {:?}", started.elapsed());
}

/// Every read model a service keeps of another service's stream equals its replay: the
/// followed log, up to the live checkpoint, through the documents part of the service's own
/// follower into a scratch store. Those of terminal-management's stream are never empty after
/// a payment; terminal-management's copy of attestation's verdicts is empty where no SoftPOS
/// device was attested (`softpos`: whether the run attested one).
fn assert_feeds_replay(backends: &Backends, softpos: bool) {
    for (service, read_model, followed) in [
        ("authorization", "auth-tms", "terminal-management"),
        ("authorization", "auth-ki", "key-injection"),
        ("routing", "routing-tms", "terminal-management"),
        ("attestation", "att-tms", "terminal-management"),
        ("key-injection", "ki-tms", "terminal-management"),
        ("terminal-management", "tm-attestation", "attestation"),
    ] {
        let source = backends.database_url(followed);
        let summary = replay_read_models_with(
            backends,
            service,
            &["--source-database", &source],
            read_model,
        );
        assert!(summary.status, "{read_model}: {}", summary.json);
        let model = &summary.json["read_models"][0];
        assert_eq!(model["name"], read_model, "{}", summary.json);
        assert_eq!(model["identical"], true, "{read_model}: {}", summary.json);
        if followed != "attestation" || softpos {
            assert!(
                model["live"]["documents"].as_u64() > Some(0),
                "{read_model}: the workload left documents: {}",
                summary.json
            );
        }
    }
}

#[tokio::test]
async fn the_embedded_platform_approves_a_payment() {
    let _ = capture::logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let platform = Platform::start(Backends::sqlite(dir.path()), &sim_rules()).await;
    let mut terminal = platform.provision().await;
    approved(&platform, &mut terminal).await;
    let backends = platform.backends.clone();
    platform.stop().await;

    // Every read model equals its replay; then one document of routing's acquirers is
    // changed in the database behind the service's back, and the replay names it.
    for service in READ_MODEL_SERVICES {
        let summary = replay_read_models(&backends, service);
        assert!(summary.status, "{service}: {}", summary.json);
    }
    assert_feeds_replay(&backends, false);
    let store = mpos_es::EventStore::connect(&backends.database_url("routing"), "routing")
        .await
        .expect("routing's log");
    let name = "routing-acquirers";
    let mut documents = store.list_documents(name, None).await.expect("documents");
    assert!(!documents.is_empty());
    documents.truncate(1);
    documents[0].payload = documents[0]
        .payload
        .replacen('{', r#"{"tampered":true,"#, 1);
    let consumer = format!("projection:{name}");
    let position = store.consumer_position(&consumer).await.expect("position");
    store
        .commit_document_changes(name, &documents, &[], &consumer, position, position)
        .await
        .expect("tamper");
    store.close().await;
    let summary = replay_read_models(&backends, "routing");
    assert!(!summary.status, "{}", summary.json);
    assert_eq!(
        summary.json["code"], "verification_failed",
        "{}",
        summary.json
    );
    let models = summary.json["report"]["read_models"]
        .as_array()
        .expect("the report's read models");
    for model in models {
        assert_eq!(
            model["identical"],
            model["name"] != name,
            "{}",
            summary.json
        );
    }
}

/// The services that keep read models of their own log.
const READ_MODEL_SERVICES: [&str; 4] = [
    "terminal-management",
    "attestation",
    "routing",
    "authorization",
];

/// What `mposctl replay --read-model all` answered.
struct Replayed {
    status: bool,
    json: serde_json::Value,
}

/// Runs `mposctl replay --read-model all` on `service`'s database.
fn replay_read_models(backends: &Backends, service: &str) -> Replayed {
    replay_read_models_with(backends, service, &[], "all")
}

/// As [`replay_read_models`], with more arguments, of one read model or `all`.
fn replay_read_models_with(
    backends: &Backends,
    service: &str,
    more: &[&str],
    read_model: &str,
) -> Replayed {
    let mposctl = mpos_e2e::processes::bin_dir().join("mposctl");
    assert!(
        mposctl.exists(),
        "{} is missing: build the workspace's binaries first (cargo build --bins)",
        mposctl.display()
    );
    let output = std::process::Command::new(&mposctl)
        .args([
            "replay",
            "--read-model",
            read_model,
            "--service",
            service,
            "--database",
        ])
        .arg(backends.database_url(service))
        .args(more)
        .output()
        .expect("mposctl runs");
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "mposctl answered no JSON ({error}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    Replayed {
        status: output.status.success(),
        json,
    }
}
