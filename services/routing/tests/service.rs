//! The routing service in process: an hsm-proxy (soft backend), two acquirer simulators, the
//! in-process bus and SQLite; decisions by rules with their explanation, approvals and
//! declines, fallback and the breaker, timeouts and the store-and-forward of reversals
//! across a restart, completion advices in doubt stored and repeated (0221) across a restart
//! (on SQLite and on Postgres and NATS), unanswered attempts found at start, MACs through the
//! hsm-proxy, and no card data in the clear on the bus.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use acquirer_link::{HsmMac, MacProvider};
use acquirer_sim::RunningSim;
use common::*;
use mpos_proto::routing as pb;
use prost::Message as _;
use routing::exchange::{Exchange, ExchangeCommand};
use routing::rpc::RoutingClient;

struct Platform {
    backends: Backends,
    _hsm: Hsm,
    routing: Option<Routing>,
    _dir: tempfile::TempDir,
}

impl Platform {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backends = Backends::sqlite(dir.path());
        Self::on(backends, dir).await
    }

    async fn on(backends: Backends, dir: tempfile::TempDir) -> Self {
        let hsm = Hsm::start(&backends, dir.path()).await;
        let routing = Routing::start(&backends).await;
        Self {
            backends,
            _hsm: hsm,
            routing: Some(routing),
            _dir: dir,
        }
    }

    fn routing(&self) -> &Routing {
        self.routing.as_ref().unwrap()
    }

    async fn restart(&mut self) {
        if let Some(routing) = self.routing.take() {
            routing.stop().await;
        }
        self.routing = Some(Routing::start(&self.backends).await);
    }

    async fn configure(&self, acquirer: &str, settings: pb::AcquirerSettings) {
        self.routing()
            .router
            .configure_acquirer(&actor(), TENANT, acquirer, settings)
            .await
            .unwrap();
    }

    /// Configures `a` as acq-a and `b` as acq-b.
    async fn configure_both(&self, a: &RunningSim, b: &RunningSim) {
        self.configure("acq-a", settings(&a.addr().to_string()))
            .await;
        self.configure("acq-b", settings(&b.addr().to_string()))
            .await;
    }

    async fn publish(&self, rules: pb::RuleSet) -> u64 {
        self.routing()
            .router
            .publish_rules(&actor(), TENANT, rules, None)
            .await
            .unwrap()
            .version
    }

    async fn exchange(&self, payment: &str) -> Exchange {
        self.routing()
            .router
            .exchange(TENANT, payment)
            .await
            .unwrap()
    }
}

fn outcome(response: &pb::AuthorizeResponse) -> pb::ExchangeOutcome {
    pb::ExchangeOutcome::try_from(response.outcome).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decides_by_rules_approves_and_declines() {
    let platform = Platform::start().await;
    let a = sim(
        r#"{"rules": [{"name": "too much", "when": {"amount_min": 100000}, "then": {"decline": "51"}}]}"#,
        None,
    )
    .await;
    let b = sim("{}", None).await;
    platform.configure_both(&a, &b).await;
    let version = platform.publish(rules("acq-a", "acq-b")).await;
    let client = client(&platform.backends).await;

    let decision = client.decide(&decide_request("p-1", 1_000)).await.unwrap();
    assert_eq!(decision.rule_id, "visa-first");
    assert_eq!(decision.rule_version, version);
    let ids: Vec<_> = decision
        .candidates
        .iter()
        .map(|c| c.acquirer_id.as_str())
        .collect();
    assert_eq!(ids, ["acq-a", "acq-b"]);
    assert!(!decision.explanation.is_empty());
    // The same payment again: the recorded decision.
    let again = client.decide(&decide_request("p-1", 1_000)).await.unwrap();
    assert_eq!(again.decision_id, decision.decision_id);
    let recorded = platform.exchange("p-1").await;
    let decided = recorded.decided.unwrap();
    assert_eq!(decided.rule_version, version);
    assert_eq!(decided.explanation, decision.explanation);

    let approved = client
        .authorize(
            authorize_request("p-1", &decision.decision_id, 1_000),
            card(),
        )
        .await
        .unwrap();
    assert_eq!(outcome(&approved), pb::ExchangeOutcome::Approved);
    assert_eq!(approved.acquirer_id, "acq-a");
    assert_eq!(approved.response_code, "00");
    assert_eq!(approved.auth_code.len(), 6);
    assert_eq!(approved.rrn.len(), 12);
    assert!(approved.rrn.ends_with(&approved.stan));
    // A retry answers the recorded answer without another message.
    let retry = client
        .authorize(
            authorize_request("p-1", &decision.decision_id, 1_000),
            card(),
        )
        .await
        .unwrap();
    assert_eq!(retry.auth_code, approved.auth_code);
    assert_eq!(a.received().count("0200"), 1);

    // An issuer decline.
    let decision = client
        .decide(&decide_request("p-2", 150_000))
        .await
        .unwrap();
    let declined = client
        .authorize(
            authorize_request("p-2", &decision.decision_id, 150_000),
            card(),
        )
        .await
        .unwrap();
    assert_eq!(outcome(&declined), pb::ExchangeOutcome::Declined);
    assert_eq!(declined.response_code, "51");
    assert!(declined.auth_code.is_empty());
    // Nothing to reverse after a decline.
    let reverse = client
        .reverse(&pb::ReverseRequest {
            tenant_id: TENANT.into(),
            payment_id: "p-2".into(),
            reason: "terminal_request".into(),
        })
        .await
        .unwrap();
    assert!(!reverse.queued);

    // Bad input changes nothing and is a typed bad request.
    let mut bad = decide_request("p-3", 1);
    bad.bin = "4761".into();
    let error = client.decide(&bad).await.unwrap_err();
    assert_eq!(error.code(), mpos_errors::ErrorCode::BadRequest);
    assert!(platform.exchange("p-3").await.decided.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_goes_as_an_advice_to_the_pre_authorisations_acquirer() {
    let platform = Platform::start().await;
    let a = sim("{}", None).await;
    let b = sim("{}", None).await;
    platform.configure_both(&a, &b).await;
    platform.publish(rules("acq-a", "acq-b")).await;
    let client = client(&platform.backends).await;

    let mut decide = decide_request("pre-1", 5_000);
    decide.transaction_type = pb::TransactionType::PreAuthorization.into();
    let decision = client.decide(&decide).await.unwrap();
    let mut authorize = authorize_request("pre-1", &decision.decision_id, 5_000);
    authorize.transaction_type = pb::TransactionType::PreAuthorization.into();
    let pre = client.authorize(authorize, card()).await.unwrap();
    assert_eq!(outcome(&pre), pb::ExchangeOutcome::Approved);
    assert_eq!(a.received().count("0100"), 1);

    let mut decide = decide_request("done-1", 4_200);
    decide.transaction_type = pb::TransactionType::Completion.into();
    let decision = client.decide(&decide).await.unwrap();
    let mut completion = authorize_request("done-1", &decision.decision_id, 4_200);
    completion.transaction_type = pb::TransactionType::Completion.into();
    completion.original_payment_id = "pre-1".into();
    let done = client.authorize(completion, card()).await.unwrap();
    assert_eq!(outcome(&done), pb::ExchangeOutcome::Approved, "{done:?}");
    assert_eq!(done.acquirer_id, "acq-a");
    let received = a.received();
    assert_eq!(received.count("0220"), 1);
    let advice = received.messages.iter().find(|m| m.mti == "0220").unwrap();
    assert_eq!(advice.response_code.as_deref(), Some("00"));
    assert_eq!(advice.amount_minor, Some(4_200));
    // A completion of nothing approved is refused and sends nothing.
    let mut decide = decide_request("done-2", 100);
    decide.transaction_type = pb::TransactionType::Completion.into();
    let decision = client.decide(&decide).await.unwrap();
    let mut orphan = authorize_request("done-2", &decision.decision_id, 100);
    orphan.transaction_type = pb::TransactionType::Completion.into();
    orphan.original_payment_id = "never".into();
    let error = client.authorize(orphan, card()).await.unwrap_err();
    assert_eq!(error.code(), mpos_errors::ErrorCode::Conflict, "{error}");
    assert_eq!(a.received().count("0220"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_when_an_acquirer_refuses_connections_and_its_breaker_opens() {
    let platform = Platform::start().await;
    // Nothing listens on A's port: every connection is refused.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let b = sim("{}", None).await;
    let mut a_settings = settings(&dead_addr);
    a_settings.health = Some(pb::HealthPolicy {
        window_seconds: 60,
        min_requests: 2,
        max_error_percent: 50,
        max_timeout_percent: 50,
        cool_down_seconds: 300,
        half_open_probes: 1,
    });
    platform.configure("acq-a", a_settings).await;
    platform
        .configure("acq-b", settings(&b.addr().to_string()))
        .await;
    platform.publish(rules("acq-a", "acq-b")).await;
    let client = client(&platform.backends).await;

    for payment in ["f-1", "f-2"] {
        let decision = client.decide(&decide_request(payment, 500)).await.unwrap();
        assert_eq!(decision.candidates[0].acquirer_id, "acq-a");
        let response = client
            .authorize(
                authorize_request(payment, &decision.decision_id, 500),
                card(),
            )
            .await
            .unwrap();
        assert_eq!(
            outcome(&response),
            pb::ExchangeOutcome::Approved,
            "{response:?}"
        );
        assert_eq!(response.acquirer_id, "acq-b");
        assert_eq!(
            response.attempts[..2],
            ["acq-a: unavailable", "acq-b: approved"]
        );
        let exchange = platform.exchange(payment).await;
        assert_eq!(exchange.attempts.len(), 2);
        assert_eq!(exchange.attempts[0].sent.acquirer_id, "acq-a");
        assert!(exchange.reversal.is_none(), "nothing reached acq-a");
    }
    // Two errors of two: A's breaker is open, and the next decision leaves it out.
    let health = platform
        .routing()
        .router
        .acquirer_health(TENANT, "acq-a")
        .await
        .unwrap();
    assert_eq!(health.errors, 2);
    let decision = client.decide(&decide_request("f-3", 500)).await.unwrap();
    let ids: Vec<_> = decision
        .candidates
        .iter()
        .map(|c| c.acquirer_id.as_str())
        .collect();
    assert_eq!(ids, ["acq-b"]);
    let decided = platform.exchange("f-3").await.decided.unwrap();
    assert_eq!(decided.eliminated.len(), 1);
    assert_eq!(decided.eliminated[0].acquirer_id, "acq-a");
    assert!(
        decided.eliminated[0].reason.starts_with("circuit open"),
        "{:?}",
        decided.eliminated
    );
    // The breaker's change is in the log.
    let events = platform
        .routing()
        .store
        .read_aggregate("acquirer", "acme/acq-a", 0)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event.event_type == "mpos.routing.v1.AcquirerHealthChanged")
    );
    assert_eq!(b.received().count("0200"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_reversed_and_the_reversal_survives_a_restart() {
    let mut platform = Platform::start().await;
    let a = sim("{}", None).await;
    let b = sim("{}", None).await;
    platform.configure_both(&a, &b).await;
    platform.publish(rules("acq-a", "acq-b")).await;
    let client = client(&platform.backends).await;
    a.set_blackhole(None, true);

    let decision = client.decide(&decide_request("t-1", 700)).await.unwrap();
    let response = client
        .authorize(authorize_request("t-1", &decision.decision_id, 700), card())
        .await
        .unwrap();
    assert_eq!(outcome(&response), pb::ExchangeOutcome::TimedOut);
    assert_eq!(response.acquirer_id, "acq-a");
    let exchange = platform.exchange("t-1").await;
    let reversal = exchange.reversal.clone().expect("reversal queued");
    assert_eq!(reversal.queued.reason, "acquirer_timeout");
    assert_eq!(reversal.queued.acquirer_id, "acq-a");
    // The worker tries while A is still a black hole, and fails.
    eventually("a failed reversal delivery", || async {
        platform
            .exchange("t-1")
            .await
            .reversal
            .is_some_and(|r| r.failures >= 1)
    })
    .await;
    platform.restart().await;
    a.clear_faults();
    eventually("the reversal acknowledged", || async {
        platform
            .exchange("t-1")
            .await
            .reversal
            .is_some_and(|r| r.acknowledged.is_some())
    })
    .await;
    let received = a.received();
    assert_eq!(received.count("0200"), 1, "exactly one authorisation");
    assert_eq!(received.count("0400"), 1, "the first delivery is an 0400");
    assert!(received.count("0401") >= 1, "the repeats are 0401s");
    let original = received.messages.iter().find(|m| m.mti == "0200").unwrap();
    for reversal in received
        .messages
        .iter()
        .filter(|m| m.mti.starts_with("040"))
    {
        assert_eq!(reversal.pan_last4, None, "no card data in a reversal");
        assert_eq!(reversal.reverses, Some(original.seq));
        // Fields 18 and 22 repeat the original's.
        assert!(original.mcc.is_some() && original.pos_entry_mode.is_some());
        assert_eq!(reversal.mcc, original.mcc);
        assert_eq!(reversal.pos_entry_mode, original.pos_entry_mode);
    }
    assert_eq!(b.received().count("0200"), 0, "a timeout is not rerouted");
    // Reverse again: already queued, nothing new.
    let again = client
        .reverse(&pb::ReverseRequest {
            tenant_id: TENANT.into(),
            payment_id: "t-1".into(),
            reason: "terminal_request".into(),
        })
        .await
        .unwrap();
    assert!(again.queued);
    assert_eq!(again.acquirer_id, "acq-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_sent_and_never_answered_is_reversed_at_start() {
    let mut platform = Platform::start().await;
    let a = sim("{}", None).await;
    platform
        .configure("acq-a", settings(&a.addr().to_string()))
        .await;
    platform
        .configure("acq-b", settings(&a.addr().to_string()))
        .await;
    platform.publish(rules("acq-a", "acq-b")).await;
    let client = client(&platform.backends).await;
    client.decide(&decide_request("c-1", 900)).await.unwrap();
    // The process "crashed" after writing AcquirerRequestSent: the event, no answer.
    let exchanges = mpos_es::snapshot_framework::<Exchange>(&platform.routing().store, 50);
    let now = chrono::Utc::now();
    mpos_es::execute(
        &exchanges,
        "acme/c-1",
        ExchangeCommand::Send(pb::AcquirerRequestSent {
            tenant_id: TENANT.into(),
            payment_id: "c-1".into(),
            acquirer_id: "acq-a".into(),
            mti: "0200".into(),
            stan: "004242".into(),
            rrn: "500100004242".into(),
            attempt: 1,
            transaction_type: pb::TransactionType::Purchase.into(),
            amount_minor: 900,
            currency: "EUR".into(),
            transmitted_at: now.format("%m%d%H%M%S").to_string(),
            terminal_id: "TERM0001".into(),
            merchant_id: "MERCHANT0000001".into(),
            // Recorded before the MCC and entry mode were kept.
            ..pb::AcquirerRequestSent::default()
        }),
        mpos_es::CommandMetadata::default(),
    )
    .await
    .unwrap();
    platform.restart().await;
    eventually("the unanswered attempt reversed", || async {
        platform
            .exchange("c-1")
            .await
            .reversal
            .is_some_and(|r| r.acknowledged.is_some())
    })
    .await;
    let exchange = platform.exchange("c-1").await;
    let reversal = exchange.reversal.unwrap();
    assert_eq!(reversal.queued.reason, "unanswered_at_start");
    assert_eq!(reversal.queued.original_rrn, "500100004242");
    let answer = exchange.attempts[0].answer.clone().unwrap();
    assert_eq!(answer.outcome, i32::from(pb::ExchangeOutcome::TimedOut));
    let received = a.received();
    assert_eq!(received.count("0400"), 1);
    assert_eq!(received.messages[0].rrn.as_deref(), Some("500100004242"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macs_through_the_hsm_proxy() {
    let platform = Platform::start().await;
    platform._hsm.import("M3", "C", MAC_KEY, "zak").await;
    let mac: Arc<dyn MacProvider> = Arc::new(HsmMac::new(
        platform._hsm.client.clone(),
        TENANT,
        "alias/zak",
    ));
    let a = sim("{}", Some(mac)).await;
    let mut with_mac = settings(&a.addr().to_string());
    with_mac.zone_mac_key = "alias/zak".into();
    with_mac.response_timeout_ms = 3_000;
    platform.configure("acq-a", with_mac).await;
    platform
        .configure("acq-b", settings(&a.addr().to_string()))
        .await;
    platform.publish(rules("acq-a", "acq-b")).await;
    let client = client(&platform.backends).await;
    let decision = client.decide(&decide_request("m-1", 100)).await.unwrap();
    let response = client
        .authorize(authorize_request("m-1", &decision.decision_id, 100), card())
        .await
        .unwrap();
    assert_eq!(
        outcome(&response),
        pb::ExchangeOutcome::Approved,
        "{response:?}"
    );
    assert_eq!(
        response.response_code, "00",
        "the simulator checked the MAC"
    );
    assert_eq!(a.received().count("0200"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorize_request_on_the_bus_holds_no_card_data() {
    let platform = Platform::start().await;
    let a = sim("{}", None).await;
    platform
        .configure("acq-a", settings(&a.addr().to_string()))
        .await;
    platform
        .configure("acq-b", settings(&a.addr().to_string()))
        .await;
    platform.publish(rules("acq-a", "acq-b")).await;
    let client = client(&platform.backends).await;
    let decision = client.decide(&decide_request("s-1", 100)).await.unwrap();

    // What the client sends, built the same way, inspected byte by byte.
    let key: mpos_proto::common::SealingKey = client
        .call("GetSealingKey", &pb::GetSealingKeyRequest {})
        .await
        .unwrap();
    let sealer = mpos_seal::Sealer::new().unwrap();
    let sealed = sealer
        .seal(
            &mpos_seal::PublicKey::try_from(&key).unwrap(),
            &routing::card::card_context("s-1"),
            &card().encode_to_vec(),
        )
        .unwrap();
    let mut request = authorize_request("s-1", &decision.decision_id, 100);
    request.sealed_card = Some(sealed.into());
    let bytes = request.encode_to_vec();
    for secret in [PAN, "2812", &card().track2] {
        assert!(
            !bytes
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "{secret} in the clear"
        );
    }
    // And it authorises.
    let bus = mpos_bus::connect(&platform.backends.bus_url).await.unwrap();
    let reply = bus
        .requests
        .unwrap()
        .request(
            &routing::rpc::subject("Authorize"),
            mpos_bus::Message::new(bytes),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let response = pb::AuthorizeResponse::decode(reply.payload.as_ref()).unwrap();
    assert_eq!(outcome(&response), pb::ExchangeOutcome::Approved);
    // Sealed for another payment, it does not open: a typed error, nothing sent.
    let mut replayed = authorize_request("s-2", "", 100);
    client.decide(&decide_request("s-2", 100)).await.unwrap();
    replayed.sealed_card = request.sealed_card.clone();
    let error = client
        .call::<_, pb::AuthorizeResponse>("Authorize", &replayed)
        .await
        .unwrap_err();
    assert_eq!(error.code(), mpos_errors::ErrorCode::BadRequest, "{error}");
    assert_eq!(a.received().count("0200"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_postgres_and_nats() {
    let Some(backends) = Backends::postgres_and_nats() else {
        eprintln!("MPOS_TEST_POSTGRES_URL and MPOS_TEST_NATS_URL not set: skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::on(backends, dir).await;
    let a = sim("{}", None).await;
    platform
        .configure("acq-a", settings(&a.addr().to_string()))
        .await;
    platform
        .configure("acq-b", settings(&a.addr().to_string()))
        .await;
    platform.publish(rules("acq-a", "acq-b")).await;
    let client = client(&platform.backends).await;
    let decision = client.decide(&decide_request("n-1", 100)).await.unwrap();
    let response = client
        .authorize(authorize_request("n-1", &decision.decision_id, 100), card())
        .await
        .unwrap();
    assert_eq!(outcome(&response), pb::ExchangeOutcome::Approved);
    let exchange = platform.exchange("n-1").await;
    assert_eq!(exchange.attempts.len(), 1);
}

/// The event types recorded on an exchange.
async fn event_types(platform: &Platform, payment: &str) -> Vec<String> {
    platform
        .routing()
        .store
        .read_aggregate("exchange", &format!("{TENANT}/{payment}"), 0)
        .await
        .unwrap()
        .into_iter()
        .map(|stored| stored.event.event_type)
        .collect()
}

/// A pre-authorisation approved by acq-a (the simulator `a`), then a completion of it whose
/// 0220 gets no answer: the completion stands (`STORED`), the advice is stored, not
/// reversed, and repeated as 0221 (same STAN and RRN, no card data) across a restart of the
/// router until the simulator answers again.
/// Two simulators, acquirer A first and B second, and a pre-authorisation `payment` of
/// 50.00 approved by A.
async fn pre_authorised(
    platform: &Platform,
    payment: &str,
) -> (RunningSim, RunningSim, RoutingClient, pb::AuthorizeResponse) {
    let a = sim("{}", None).await;
    let b = sim("{}", None).await;
    platform.configure_both(&a, &b).await;
    platform.publish(rules("acq-a", "acq-b")).await;
    let client = client(&platform.backends).await;
    let mut decide = decide_request(payment, 5_000);
    decide.transaction_type = pb::TransactionType::PreAuthorization.into();
    let decision = client.decide(&decide).await.unwrap();
    let mut authorize = authorize_request(payment, &decision.decision_id, 5_000);
    authorize.transaction_type = pb::TransactionType::PreAuthorization.into();
    let pre = client.authorize(authorize, card()).await.unwrap();
    assert_eq!(outcome(&pre), pb::ExchangeOutcome::Approved, "{pre:?}");
    assert_eq!(pre.auth_code.len(), 6);
    (a, b, client, pre)
}

async fn a_completion_advice_in_doubt_is_stored_and_repeated(mut platform: Platform) {
    let (a, b, client, pre) = pre_authorised(&platform, "pre-s").await;

    // The acquirer stops answering: the 0220 times out.
    a.set_blackhole(None, true);
    let mut decide = decide_request("done-s", 4_200);
    decide.transaction_type = pb::TransactionType::Completion.into();
    let decision = client.decide(&decide).await.unwrap();
    let mut completion = authorize_request("done-s", &decision.decision_id, 4_200);
    completion.transaction_type = pb::TransactionType::Completion.into();
    completion.original_payment_id = "pre-s".into();
    let done = client.authorize(completion.clone(), card()).await.unwrap();
    assert_eq!(outcome(&done), pb::ExchangeOutcome::Stored, "{done:?}");
    assert_eq!(done.acquirer_id, "acq-a");
    assert_eq!(
        done.auth_code, pre.auth_code,
        "the completion stands on the pre-authorisation's approval code"
    );
    assert_eq!(done.attempts[..1], ["acq-a: timed_out"]);
    let exchange = platform.exchange("done-s").await;
    let advice = exchange.advice.clone().expect("the advice is stored");
    assert_eq!(advice.queued.reason, "acquirer_timeout");
    assert_eq!(advice.queued.acquirer_id, "acq-a");
    assert_eq!(advice.queued.original_mti, "0220");
    assert_eq!(advice.queued.original_stan, done.stan);
    assert_eq!(advice.queued.original_rrn, done.rrn);
    assert_eq!(advice.queued.approval_code, pre.auth_code);
    assert_eq!(advice.queued.original_data_elements.len(), 42);
    assert!(exchange.reversal.is_none(), "an advice is not reversed");
    let types = event_types(&platform, "done-s").await;
    assert!(types.iter().any(|t| t == "mpos.routing.v1.AdviceQueued"));
    assert!(!types.iter().any(|t| t == "mpos.routing.v1.ReversalQueued"));

    // The worker repeats it while the acquirer is still silent, and fails.
    eventually("a failed repeat of the advice", || async {
        platform
            .exchange("done-s")
            .await
            .advice
            .is_some_and(|advice| advice.failures >= 1)
    })
    .await;
    platform.restart().await;
    let exchange = platform.exchange("done-s").await;
    assert!(exchange.advice_pending(), "the advice survives the restart");
    assert!(exchange.reversal.is_none());
    a.clear_faults();
    eventually("the advice acknowledged", || async {
        platform
            .exchange("done-s")
            .await
            .advice
            .is_some_and(|advice| advice.acknowledged.is_some())
    })
    .await;
    let exchange = platform.exchange("done-s").await;
    let acknowledged = exchange.advice.unwrap().acknowledged.unwrap();
    assert_eq!(acknowledged.response_code, "00");
    assert!(acknowledged.attempts >= 2, "{acknowledged:?}");
    assert!(exchange.reversal.is_none());
    let types = event_types(&platform, "done-s").await;
    assert!(
        types
            .iter()
            .any(|t| t == "mpos.routing.v1.AdviceAttemptFailed")
    );
    assert!(
        types
            .iter()
            .any(|t| t == "mpos.routing.v1.AdviceAcknowledged")
    );
    assert!(
        !types
            .iter()
            .any(|t| t.starts_with("mpos.routing.v1.Reversal"))
    );

    // What arrived at the acquirer: one 0220 with the card, then 0221s without it.
    let received = a.received();
    assert_eq!(received.count("0220"), 1, "the advice went once as 0220");
    assert!(
        received.count("0221") >= 2,
        "repeats before and after the restart"
    );
    assert_eq!(
        received.count("0400") + received.count("0401"),
        0,
        "no reversal"
    );
    let advice = received.messages.iter().find(|m| m.mti == "0220").unwrap();
    assert_eq!(
        advice.stan.map(|stan| format!("{stan:06}")),
        Some(done.stan.clone())
    );
    assert_eq!(advice.pan_last4.as_deref(), Some(&PAN[PAN.len() - 4..]));
    let repeats: Vec<_> = received
        .messages
        .iter()
        .filter(|m| m.mti == "0221")
        .collect();
    for repeat in &repeats {
        assert_eq!(repeat.stan, advice.stan, "a repeat keeps the STAN");
        assert_eq!(repeat.rrn, advice.rrn, "a repeat keeps the RRN");
        assert_eq!(
            repeat.pan_last4, None,
            "no card data (fields 2, 35) in a repeat"
        );
        assert_eq!(
            repeat.approval_code.as_deref(),
            Some(pre.auth_code.as_str())
        );
        assert!(repeat.original_data.is_some());
        assert_eq!(
            repeat.original_data, advice.original_data,
            "field 90 as in the 0220"
        );
        assert_eq!(repeat.amount_minor, Some(4_200));
        assert_eq!(repeat.mcc, advice.mcc);
        assert_eq!(repeat.pos_entry_mode, advice.pos_entry_mode);
        assert_eq!(repeat.repeats, Some(advice.seq), "a duplicate of the 0220");
    }
    assert_eq!(
        repeats.last().and_then(|m| m.response_code.as_deref()),
        Some("00"),
        "the last repeat was acknowledged"
    );
    let captures = received.captures();
    assert_eq!(captures.len(), 1, "one capture, however many repeats");
    assert_eq!(captures[0].seq, advice.seq);
    assert_eq!(b.received().total, 0, "an advice is not rerouted");

    // A retry of the completion answers the recorded answer and sends nothing.
    let sent_before = a.received().total;
    let retry = client.authorize(completion, card()).await.unwrap();
    assert_eq!(outcome(&retry), pb::ExchangeOutcome::Stored);
    assert_eq!(retry.response_code, "00");
    assert_eq!(retry.auth_code, pre.auth_code);
    assert_eq!(a.received().total, sent_before);
}

/// A completion whose acquirer cannot be reached at all (the link is down before anything is
/// sent) is stored too, answered as standing, and delivered once the acquirer is reachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_the_acquirer_cannot_take_is_stored_and_sent_when_it_is_back() {
    let platform = Platform::start().await;
    let (a, b, client, pre) = pre_authorised(&platform, "pre-u").await;

    // Acquirer A moves to an address where nothing listens: every connection is refused.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    platform.configure("acq-a", settings(&dead_addr)).await;
    let mut decide = decide_request("done-u", 4_100);
    decide.transaction_type = pb::TransactionType::Completion.into();
    let decision = client.decide(&decide).await.unwrap();
    let mut completion = authorize_request("done-u", &decision.decision_id, 4_100);
    completion.transaction_type = pb::TransactionType::Completion.into();
    completion.original_payment_id = "pre-u".into();
    let done = client.authorize(completion, card()).await.unwrap();
    assert_eq!(outcome(&done), pb::ExchangeOutcome::Stored, "{done:?}");
    assert_eq!(done.auth_code, pre.auth_code);
    assert_eq!(done.attempts[..1], ["acq-a: unavailable"]);
    let advice = platform
        .exchange("done-u")
        .await
        .advice
        .expect("the advice is stored");
    assert_eq!(advice.queued.reason, "acquirer_unavailable");
    assert_eq!(advice.queued.acquirer_id, "acq-a");
    assert_eq!(a.received().count("0220"), 0, "nothing reached A");
    assert_eq!(b.received().total, 0, "a completion is not rerouted");

    // A is reachable again: the advice goes out (as a repeat, without card data) and is
    // acknowledged; it is captured once, never reversed.
    platform
        .configure("acq-a", settings(&a.addr().to_string()))
        .await;
    eventually("the stored advice acknowledged", || async {
        platform
            .exchange("done-u")
            .await
            .advice
            .is_some_and(|advice| advice.acknowledged.is_some())
    })
    .await;
    let received = a.received();
    assert!(received.count("0221") >= 1);
    assert_eq!(received.count("0400") + received.count("0401"), 0);
    let repeat = received.messages.iter().find(|m| m.mti == "0221").unwrap();
    assert_eq!(repeat.pan_last4, None, "no card data in a repeat");
    assert_eq!(
        repeat.approval_code.as_deref(),
        Some(pre.auth_code.as_str())
    );
    assert_eq!(repeat.amount_minor, Some(4_100));
    assert_eq!(received.captures().len(), 1, "one capture");
    assert!(platform.exchange("done-u").await.reversal.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_advice_that_times_out_is_repeated_until_acknowledged() {
    a_completion_advice_in_doubt_is_stored_and_repeated(Platform::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_advice_is_repeated_over_postgres_and_nats() {
    let Some(backends) = Backends::postgres_and_nats() else {
        eprintln!("MPOS_TEST_POSTGRES_URL and MPOS_TEST_NATS_URL not set: skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    a_completion_advice_in_doubt_is_stored_and_repeated(Platform::on(backends, dir).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_advice_sent_and_never_answered_is_repeated_at_start() {
    let mut platform = Platform::start().await;
    let a = sim("{}", None).await;
    platform
        .configure("acq-a", settings(&a.addr().to_string()))
        .await;
    platform
        .configure("acq-b", settings(&a.addr().to_string()))
        .await;
    platform.publish(rules("acq-a", "acq-b")).await;
    let client = client(&platform.backends).await;
    let mut decide = decide_request("c-2", 800);
    decide.transaction_type = pb::TransactionType::Completion.into();
    client.decide(&decide).await.unwrap();
    // The process "crashed" after writing the 0220's AcquirerRequestSent: no answer.
    let exchanges = mpos_es::snapshot_framework::<Exchange>(&platform.routing().store, 50);
    let now = chrono::Utc::now();
    let preauthorized = now - chrono::Duration::hours(1);
    let field90 = format!(
        "0100004200{}0000123456700000000000",
        preauthorized.format("%m%d%H%M%S")
    );
    mpos_es::execute(
        &exchanges,
        "acme/c-2",
        ExchangeCommand::Send(pb::AcquirerRequestSent {
            tenant_id: TENANT.into(),
            payment_id: "c-2".into(),
            acquirer_id: "acq-a".into(),
            mti: "0220".into(),
            stan: "004243".into(),
            rrn: "500100004243".into(),
            attempt: 1,
            transaction_type: pb::TransactionType::Completion.into(),
            amount_minor: 800,
            currency: "EUR".into(),
            transmitted_at: now.format("%m%d%H%M%S").to_string(),
            terminal_id: "TERM0001".into(),
            merchant_id: "MERCHANT0000001".into(),
            merchant_category_code: "5999".into(),
            entry_mode: pb::EntryMode::Contactless.into(),
            pin_capable: false,
            approval_code: "A1B2C3".into(),
            original_data_elements: field90.clone(),
        }),
        mpos_es::CommandMetadata::default(),
    )
    .await
    .unwrap();
    platform.restart().await;
    eventually(
        "the unanswered advice repeated and acknowledged",
        || async {
            platform
                .exchange("c-2")
                .await
                .advice
                .is_some_and(|advice| advice.acknowledged.is_some())
        },
    )
    .await;
    let exchange = platform.exchange("c-2").await;
    let advice = exchange.advice.unwrap();
    assert_eq!(advice.queued.reason, "unanswered_at_start");
    assert!(exchange.reversal.is_none());
    let received = a.received();
    assert_eq!(received.count("0400"), 0);
    assert_eq!(received.count("0221"), 1);
    let repeat = &received.messages[0];
    assert_eq!(repeat.mti, "0221");
    assert_eq!(repeat.stan, Some(4_243));
    assert_eq!(repeat.rrn.as_deref(), Some("500100004243"));
    assert_eq!(repeat.pan_last4, None);
    assert_eq!(repeat.approval_code.as_deref(), Some("A1B2C3"));
    assert_eq!(repeat.original_data.as_deref(), Some(field90.as_str()));
    assert_eq!(repeat.pos_entry_mode.as_deref(), Some("072"));
    assert_eq!(repeat.response_code.as_deref(), Some("00"));
    // An advice the acquirer never saw is its first capture.
    assert_eq!(received.captures().len(), 1);
}

/// `request` with the test card sealed to `router` (as [`RoutingClient::authorize`] seals it
/// to whichever replica answers its key request).
fn sealed_to(
    router: &routing::engine::Router,
    mut request: pb::AuthorizeRequest,
) -> pb::AuthorizeRequest {
    let recipient = mpos_seal::PublicKey::try_from(&router.sealing_key()).unwrap();
    let plaintext = card().encode_to_vec();
    let context = routing::card::card_context(&request.payment_id);
    let sealed = mpos_seal::Sealer::new()
        .unwrap()
        .seal(&recipient, &context, &plaintext)
        .unwrap();
    request.sealed_card = Some(mpos_proto::common::Sealed::from(sealed));
    request
}

/// Two replicas of routing on one log (ADR 20): a replica sees the rules changed through it
/// at once and those changed through the other within the configured time; an `Authorize`
/// on the exchange its `Decide` left in memory, after the other replica authorised that
/// payment meanwhile, sends nothing and answers what the log holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_see_each_others_changes_and_never_authorise_twice() {
    let platform = Platform::start().await;
    let a = sim("{}", None).await;
    let b = sim("{}", None).await;
    platform.configure_both(&a, &b).await;
    let first = platform.publish(rules("acq-a", "acq-b")).await;
    let one = &platform.routing().router;
    let other = Routing::start(&platform.backends).await;
    let two = &other.router;

    // The other replica reads the rules and keeps them.
    let decided = two
        .decide(&actor(), decide_request("p-1", 1_000))
        .await
        .unwrap();
    assert_eq!(decided.rule_version, first);
    assert_eq!(decided.candidates[0].acquirer_id, "acq-a");

    // A change through this replica is seen by it at once...
    let second = platform.publish(rules("acq-b", "acq-a")).await;
    assert!(second > first);
    let decided = one
        .decide(&actor(), decide_request("p-2", 1_000))
        .await
        .unwrap();
    assert_eq!(decided.rule_version, second);
    assert_eq!(decided.candidates[0].acquirer_id, "acq-b");
    // ... and by the other once its copy is older than the configured second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let decided = two
        .decide(&actor(), decide_request("p-3", 1_000))
        .await
        .unwrap();
    assert_eq!(decided.rule_version, second);
    assert_eq!(decided.candidates[0].acquirer_id, "acq-b");

    // p-3 was decided by the other replica, which keeps its exchange for the Authorize; this
    // replica authorises it first.
    let request = authorize_request("p-3", &decided.decision_id, 1_000);
    let approved = one
        .authorize(&actor(), sealed_to(one, request.clone()))
        .await
        .unwrap();
    assert_eq!(outcome(&approved), pb::ExchangeOutcome::Approved);
    assert_eq!(approved.acquirer_id, "acq-b");
    let sent = b.received().count("0200");
    assert_eq!(sent, 1);
    // The other replica, on the exchange as its Decide left it: its attempt is refused by
    // the log, nothing is sent, and the answer is the recorded one.
    let again = two
        .authorize(&actor(), sealed_to(two, request))
        .await
        .unwrap();
    assert_eq!(outcome(&again), pb::ExchangeOutcome::Approved);
    assert_eq!(again.auth_code, approved.auth_code);
    assert_eq!(again.rrn, approved.rrn);
    assert_eq!(b.received().count("0200"), sent);
    assert_eq!(a.received().count("0200"), 0);
    let exchange = platform.exchange("p-3").await;
    assert_eq!(exchange.attempts.len(), 1);
    other.stop().await;
}

/// ANSI X9.24-1:2009 A.4: the DUKPT test BDK (its A.4.2 PIN blocks are of PAN 4012345678909,
/// PIN 1234).
const X924_BDK: &str = "0123456789ABCDEFFEDCBA9876543210";
/// A zone PIN key known to the test.
const ZPK: &str = "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB";

fn x924_card() -> pb::CardSecrets {
    let pan = "4012345678909";
    pb::CardSecrets {
        pan: pan.into(),
        expiry: "2812".into(),
        track2: format!("{pan}=28122011234567"),
        pan_sequence_number: "01".into(),
    }
}

/// `Authorize` with the payment's route facts and the terminal's DUKPT PIN block, as the
/// payment path sends it (ADR 24): one call.
fn deciding_request(payment: &str, bin: &str, block: &str) -> pb::AuthorizeRequest {
    pb::AuthorizeRequest {
        route: Some(pb::RouteFacts {
            bin: bin.into(),
            pan_length: 13,
            terminal_group_id: String::new(),
        }),
        dukpt_pin_block: Some(pb::DukptPinBlock {
            bdk: "alias/bdk".into(),
            ksn: "FFFF9876543210E00001".into(),
            block: block.into(),
        }),
        ..authorize_request(payment, "", 1_000)
    }
}

/// ADR 24: `Authorize` carrying the payment's facts decides the route itself, translates the
/// terminal's DUKPT PIN block (X9.24-1:2009 A.4.2, KSN E00001) to the acquirer's zone PIN key,
/// records the decision with the request and answers both; a retry answers the same. A PIN
/// block that does not decipher sends nothing and records the decision alone; so does a
/// payment without a route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_decides_the_route_and_translates_the_dukpt_pin_block() {
    let logs = logs();
    let platform = Platform::start().await;
    platform._hsm.import("B0", "X", X924_BDK, "bdk").await;
    platform._hsm.import("P0", "B", ZPK, "zpk").await;
    let a = sim("{}", None).await;
    let b = sim("{}", None).await;
    for (id, sim) in [("acq-a", &a), ("acq-b", &b)] {
        let mut with_pin = settings(&sim.addr().to_string());
        with_pin.zone_pin_key = "alias/zpk".into();
        platform.configure(id, with_pin).await;
    }
    let mut visa_only = rules("acq-a", "acq-b");
    visa_only.default_route = None;
    let version = platform.publish(visa_only).await;
    let client = client(&platform.backends).await;

    let request = deciding_request("d-1", "40123456", "1B9C1845EB993A7A");
    let approved = client
        .authorize(request.clone(), x924_card())
        .await
        .unwrap();
    assert_eq!(
        outcome(&approved),
        pb::ExchangeOutcome::Approved,
        "{approved:?}"
    );
    assert_eq!(approved.acquirer_id, "acq-a");
    assert!(!approved.pin_block_invalid);
    let decision = approved.decision.clone().expect("the decision is answered");
    assert_eq!(decision.rule_id, "visa-first");
    assert_eq!(decision.rule_version, version);
    let ids: Vec<_> = decision
        .candidates
        .iter()
        .map(|c| c.acquirer_id.as_str())
        .collect();
    assert_eq!(ids, ["acq-a", "acq-b"]);
    assert_eq!(
        event_types(&platform, "d-1").await,
        [
            "mpos.routing.v1.RouteDecided",
            "mpos.routing.v1.AcquirerRequestSent",
            "mpos.routing.v1.AcquirerResponded"
        ]
    );
    let exchange = platform.exchange("d-1").await;
    assert_eq!(exchange.decided.unwrap().decision_id, decision.decision_id);
    assert!(exchange.attempts[0].sent.pin_capable);
    // A retry: the recorded answer and decision, no second message. The exchange is not
    // read before its first commit (ADR 27): the retry's is refused by the log, and nothing
    // of it is recorded.
    let retry = client.authorize(request, x924_card()).await.unwrap();
    assert_eq!(retry.auth_code, approved.auth_code);
    assert_eq!(retry.decision.unwrap().decision_id, decision.decision_id);
    assert_eq!(a.received().count("0200"), 1);
    // ... taken for what it is: no attempt to record the decision alone (it would be
    // refused the same way), so no warning about it.
    let text = logs.text();
    assert!(text.contains("exchange exists already; authorising on it"));
    assert!(!text.contains("routing decision not recorded"));
    assert_eq!(
        event_types(&platform, "d-1").await,
        [
            "mpos.routing.v1.RouteDecided",
            "mpos.routing.v1.AcquirerRequestSent",
            "mpos.routing.v1.AcquirerResponded"
        ]
    );

    // A block that is not ISO format 0 under the transaction's PIN key (checked here with
    // paycrypto): refused by the HSM, nothing sent, the decision recorded alone.
    let pin_key = paycrypto::dukpt::tdes::host_working_key(
        &paycrypto::SecretBytes::from_hex("bdk", X924_BDK).unwrap(),
        &paycrypto::dukpt::tdes::Ksn::from_hex("FFFF9876543210E00001").unwrap(),
        paycrypto::dukpt::tdes::KeyUsage::PinEncryption,
        paycrypto::dukpt::tdes::DataKeyDerivation::OneWay,
    )
    .unwrap();
    let garbage = "FFFFFFFFFFFFFFFF";
    assert!(
        paycrypto::pin::decrypt_pin_block(
            paycrypto::pin::PinBlockFormat::Iso0,
            &pin_key,
            &hex::decode(garbage).unwrap(),
            Some(&paycrypto::pin::Pan::new("4012345678909").unwrap()),
        )
        .is_err()
    );
    let refused = client
        .authorize(deciding_request("d-2", "40123456", garbage), x924_card())
        .await
        .unwrap();
    assert!(refused.pin_block_invalid, "{refused:?}");
    assert_eq!(outcome(&refused), pb::ExchangeOutcome::Unavailable);
    assert!(refused.decision.is_some());
    assert_eq!(
        event_types(&platform, "d-2").await,
        ["mpos.routing.v1.RouteDecided"]
    );
    assert_eq!(a.received().count("0200") + b.received().count("0200"), 1);

    // No rule for a Mastercard BIN and no default route: no route, the decision alone.
    let no_route = client
        .authorize(
            deciding_request("d-3", "51000000", "1B9C1845EB993A7A"),
            x924_card(),
        )
        .await
        .unwrap();
    let decision = no_route.decision.clone().unwrap();
    assert!(decision.candidates.is_empty());
    assert_eq!(decision.no_route_reason, "no_rule_matched");
    assert_eq!(outcome(&no_route), pb::ExchangeOutcome::Unavailable);
    assert_eq!(
        event_types(&platform, "d-3").await,
        ["mpos.routing.v1.RouteDecided"]
    );

    // A malformed DUKPT PIN block is a typed bad request that records nothing.
    let mut malformed = deciding_request("d-4", "40123456", "1B9C");
    let error = client
        .authorize(malformed.clone(), x924_card())
        .await
        .unwrap_err();
    assert_eq!(error.code(), mpos_errors::ErrorCode::BadRequest, "{error}");
    malformed.dukpt_pin_block = None;
    malformed.pin_block = "1B9C1845EB993A7A".into();
    malformed.dukpt_pin_block = Some(pb::DukptPinBlock {
        bdk: "alias/bdk".into(),
        ksn: "FFFF9876543210E00001".into(),
        block: "1B9C1845EB993A7A".into(),
    });
    let error = client.authorize(malformed, x924_card()).await.unwrap_err();
    assert_eq!(error.code(), mpos_errors::ErrorCode::BadRequest, "{error}");
    assert!(event_types(&platform, "d-4").await.is_empty());

    // acq-a's zone PIN key gone from the HSM: its translation fails, acq-b takes the payment.
    let mut missing_key = settings(&a.addr().to_string());
    missing_key.zone_pin_key = "alias/no-such-zpk".into();
    platform.configure("acq-a", missing_key).await;
    let fallback = client
        .authorize(
            deciding_request("d-5", "40123456", "1B9C1845EB993A7A"),
            x924_card(),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome(&fallback),
        pb::ExchangeOutcome::Approved,
        "{fallback:?}"
    );
    assert_eq!(fallback.acquirer_id, "acq-b");
    assert_eq!(
        fallback.attempts,
        ["acq-b: approved", "acq-a: skipped, PIN translation failed"]
    );

    // The log lines of a refused block and of a failed translation say which acquirer and
    // the error code, nothing else: no PIN block, PAN, key or key name. No line of the run
    // holds the card, a PIN block or a clear key.
    let text = logs.text();
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Ok(line) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let message = line["fields"]["message"].as_str().unwrap_or_default();
        if message == "pin block refused" || message == "pin translation failed" {
            let mut fields: Vec<&str> = line["fields"]
                .as_object()
                .expect("fields")
                .keys()
                .map(String::as_str)
                .collect();
            fields.sort_unstable();
            let expected: &[&str] = if message == "pin block refused" {
                &["code", "message"]
            } else {
                &["acquirer", "code", "message"]
            };
            assert_eq!(fields, expected, "{line}");
            assert!(
                [
                    "bad_request",
                    "not_found",
                    "unavailable",
                    "conflict",
                    "internal"
                ]
                .contains(&line["fields"]["code"].as_str().unwrap_or_default()),
                "{line}"
            );
            seen.insert(message.to_owned());
        }
    }
    assert_eq!(seen.len(), 2, "both lines were written: {seen:?}");
    for secret in [
        "4012345678909",
        "1B9C1845EB993A7A",
        garbage,
        "041274EDCBA9876F",
        X924_BDK,
        ZPK,
    ] {
        assert!(
            !text.to_ascii_uppercase().contains(secret),
            "a log line holds {}…",
            &secret[..4]
        );
    }
}
