//! `mpos_feed::estate` (the estate other services keep from terminal-management's stream)
//! against terminal-management itself: an estate and parameters made over the admin API, its
//! log followed with `mpos_feed::follow` into the estate projection, and every terminal's
//! effective parameters and version there equal to what
//! `GET …/terminals/{t}/effective-parameters` answers — after the setup, and again after moves,
//! changes, a decommissioning and a closure. Here rather than in mpos-feed because
//! terminal-management depends on mpos-feed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestService, embedded};
use mpos_bus::EventEnvelope;
use mpos_errors::ServiceError;
use mpos_es::{Document, EventStore};
use mpos_feed::estate::{EstateView, TerminalEstate, estate_documents};
use mpos_feed::follow::{Applied, FeedNames, FeedSource, Follower, Overlay};
use mpos_feed::tms::{TerminalKind, TerminalStatus};
use mpos_proto::terminal_management as pb;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NAMES: FeedNames = FeedNames {
    source: "terminal-management",
    projection: "estate",
    consumer: "estate-feed",
    durable: "estate",
    event_type: None,
};

/// Keeps the estate documents; no work.
struct EstateFollower {
    view: EstateView,
}

impl Follower for EstateFollower {
    type Work = ();

    async fn apply(
        &self,
        overlay: &Overlay,
        envelope: &EventEnvelope,
    ) -> Result<Applied<()>, ServiceError> {
        Ok((estate_documents(&self.view, overlay, envelope).await?, None))
    }

    async fn work(&self, _: &Overlay, _: &str, _: Vec<()>) -> Result<(), ServiceError> {
        Ok(())
    }

    async fn committed(&self, _: &[Document], _: &[String]) -> Result<(), ServiceError> {
        Ok(())
    }
}

async fn call(
    service: &TestService,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let (status, answer) = service.call_as(key, method, path, Some(body)).await;
    assert!((200..300).contains(&status), "{path}: {status} {answer}");
    answer
}

async fn post(service: &TestService, key: &str, path: &str, body: Value) -> Value {
    call(service, key, reqwest::Method::POST, path, body).await
}

async fn put(service: &TestService, key: &str, path: &str, body: Value) -> Value {
    call(service, key, reqwest::Method::PUT, path, body).await
}

/// A tenant with an operator key, its nodes (id, kind, parent) and SoftPOS terminals
/// (id, parent).
async fn estate(
    service: &TestService,
    tenant_id: &str,
    nodes: &[(&str, &str, &str)],
    terminals: &[(&str, &str)],
) -> String {
    let key = service
        .tenant_with_key(tenant_id, "API_KEY_ROLE_OPERATOR")
        .await;
    for (node, kind, parent) in nodes {
        post(
            service,
            &key,
            &format!("/v1/tenants/{tenant_id}/nodes"),
            json!({"nodeId": node, "kind": kind, "parentId": parent, "name": node}),
        )
        .await;
    }
    for (terminal, parent) in terminals {
        post(
            service,
            &key,
            &format!("/v1/tenants/{tenant_id}/terminals"),
            json!({"terminalId": terminal, "kind": "TERMINAL_KIND_SOFTPOS", "parentId": parent}),
        )
        .await;
    }
    key
}

fn tenant_parameters() -> Value {
    json!({
        "floorLimits": [{"currency": "EUR", "amount": "5000"}, {"currency": "USD", "amount": "4000"}],
        "terminalActionCodes": {"denial": "0010000000", "online": "FC50BCF800", "defaultCode": "FC50BCA000"},
        "merchantCategoryCode": "5411",
        "transactionCurrency": "EUR",
        "terminalCountryCode": "276",
        "contactlessTransactionLimit": "15000",
        "contactlessFloorLimit": "5000",
        "cvmRequiredLimit": "5000",
        "randomSelection": {"threshold": "1000", "targetPercent": 10, "maxTargetPercent": 50},
        "offlineLimits": {"perTransactionAmount": "2000", "maxCount": 20, "maxTotalAmount": "20000"},
        "blockedBinRanges": [{"low": "400000", "high": "400099"}]
    })
}

/// The last position of terminal-management's log.
async fn head(service: &TestService) -> u64 {
    service
        .store
        .read_after(0, 100_000)
        .await
        .expect("read")
        .last()
        .map_or(0, |event| event.global_position)
}

/// Waits until the feed has applied terminal-management's whole log.
async fn caught_up(service: &TestService, follower: &EventStore) {
    let head = head(service).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while follower
        .consumer_position(NAMES.consumer)
        .await
        .expect("position")
        < head
    {
        assert!(Instant::now() < deadline, "the feed did not reach {head}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state(status: TerminalStatus) -> pb::TerminalState {
    match status {
        TerminalStatus::Bound => pb::TerminalState::Bound,
        TerminalStatus::Active => pb::TerminalState::Active,
        TerminalStatus::Suspended => pb::TerminalState::Suspended,
        TerminalStatus::Blacklisted => pb::TerminalState::Blacklisted,
        TerminalStatus::SwappedOut => pb::TerminalState::SwappedOut,
        TerminalStatus::Decommissioned => pb::TerminalState::Decommissioned,
    }
}

/// The terminal in the estate view equals terminal-management's answers: place, state, kind,
/// version, effective parameters with their sources, or the same missing values.
async fn assert_same(
    service: &TestService,
    key: &str,
    view: &EstateView,
    tenant_id: &str,
    terminal_id: &str,
) -> TerminalEstate {
    let ours = view
        .terminal_estate(tenant_id, terminal_id)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{tenant_id}/{terminal_id} not in the estate view"));

    let (status, body) = service
        .get_as(
            key,
            &format!("/v1/tenants/{tenant_id}/terminals/{terminal_id}/effective-parameters"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let theirs: pb::EffectiveParametersResponse =
        serde_json::from_value(body.clone()).expect("EffectiveParametersResponse");
    assert_eq!(ours.version, theirs.version, "{terminal_id}: version");
    match ours.effective() {
        Ok(effective) => {
            assert!(theirs.missing.is_empty(), "{terminal_id}: {body}");
            assert_eq!(
                Some(effective.to_proto()),
                theirs.parameters,
                "{terminal_id}: effective parameters"
            );
        }
        Err(missing) => {
            assert_eq!(missing, theirs.missing.join(", "), "{terminal_id}: missing");
        }
    }

    let (status, body) = service
        .get_as(
            key,
            &format!("/v1/tenants/{tenant_id}/terminals/{terminal_id}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let terminal: pb::Terminal = serde_json::from_value(body).expect("Terminal");
    assert_eq!(
        i32::from(state(ours.status)),
        terminal.state,
        "{terminal_id}: state"
    );
    assert_eq!(ours.kind, TerminalKind::SoftPos);
    let parent = ours
        .terminal_group_id
        .clone()
        .unwrap_or_else(|| ours.store_id.clone());
    assert_eq!(parent, terminal.parent_id, "{terminal_id}: parent");
    ours
}

#[tokio::test]
async fn the_estate_view_answers_like_terminal_management() {
    let service = embedded().await;
    let acme = estate(
        &service,
        "acme",
        &[
            ("m-1", "NODE_KIND_MERCHANT", ""),
            ("s-1", "NODE_KIND_STORE", "m-1"),
            ("g-1", "NODE_KIND_TERMINAL_GROUP", "s-1"),
            ("s-2", "NODE_KIND_STORE", "m-1"),
            ("m-2", "NODE_KIND_MERCHANT", ""),
            ("s-3", "NODE_KIND_STORE", "m-2"),
        ],
        &[
            ("t-1", "g-1"),
            ("t-2", "s-1"),
            ("t-3", "s-2"),
            ("t-4", "g-1"),
        ],
    )
    .await;
    // Same ids in another tenant, with only part of the required values.
    let globex = estate(
        &service,
        "globex",
        &[
            ("m-1", "NODE_KIND_MERCHANT", ""),
            ("s-1", "NODE_KIND_STORE", "m-1"),
        ],
        &[("t-1", "s-1")],
    )
    .await;
    put(
        &service,
        &globex,
        "/v1/tenants/globex/parameters",
        json!({"transactionCurrency": "USD", "merchantCategoryCode": "7011"}),
    )
    .await;

    for (path, body) in [
        ("/v1/tenants/acme/parameters", tenant_parameters()),
        (
            "/v1/tenants/acme/nodes/m-1/parameters",
            json!({"contactlessTransactionLimit": "10000", "blockedBinRanges": [{"low": "520000", "high": "520099"}]}),
        ),
        (
            "/v1/tenants/acme/nodes/s-1/parameters",
            json!({"floorLimits": [{"currency": "EUR", "amount": "3000"}], "blockedBinRanges": [{"low": "510000", "high": "510999"}]}),
        ),
        (
            "/v1/tenants/acme/nodes/g-1/parameters",
            json!({
                "allowedBinRanges": {"ranges": [{"low": "400000", "high": "599999"}]},
                "blockedCardTokens": ["q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="],
                "terminalActionCodes": {"online": "FC50BCF000"},
                "cvmList": {"amountX": "0", "amountY": "0", "rules": [{"method": 2, "condition": 3}, {"method": 31, "condition": 0}]}
            }),
        ),
        (
            "/v1/tenants/acme/terminals/t-1/parameters",
            json!({"merchantCategoryCode": "5812", "blockedBinRanges": [{"low": "400000", "high": "400099"}]}),
        ),
        (
            "/v1/tenants/acme/nodes/s-2/parameters",
            json!({"allowedBinRanges": {}}),
        ),
    ] {
        put(&service, &acme, path, body).await;
    }
    // Activation is the operator's (on an attestation verdict).
    let (status, body) = service
        .post(
            "/v1/tenants/acme/terminals/t-1/activate",
            json!({"method": "ACTIVATION_METHOD_ATTESTATION", "evidence": "verdict-1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The estate projection, fed from terminal-management's log as `mposd` would.
    let dir = tempfile::tempdir().expect("tempdir");
    let follower_store = EventStore::connect(
        &format!("sqlite://{}", dir.path().join("follower.db").display()),
        "estate-follower",
    )
    .await
    .expect("follower store");
    let view = EstateView::new(follower_store.clone(), NAMES.projection);
    let cancel = CancellationToken::new();
    let running = tokio::spawn(mpos_feed::follow::run(
        follower_store.clone(),
        NAMES,
        FeedSource::Store {
            store: service.store.clone(),
            codec: Arc::new(terminal_management::codec()),
        },
        Arc::new(EstateFollower { view: view.clone() }),
        cancel.clone(),
    ));
    caught_up(&service, &follower_store).await;

    let t1 = assert_same(&service, &acme, &view, "acme", "t-1").await;
    assert_eq!(
        (t1.merchant_id.as_str(), t1.store_id.as_str(), t1.status),
        ("m-1", "s-1", TerminalStatus::Active)
    );
    assert!(
        t1.effective().is_ok(),
        "the comparison covers a complete set"
    );
    for terminal in ["t-2", "t-3", "t-4"] {
        assert_same(&service, &acme, &view, "acme", terminal).await;
    }
    let globex_t1 = assert_same(&service, &globex, &view, "globex", "t-1").await;
    assert!(
        globex_t1.effective().is_err(),
        "the comparison covers missing values"
    );

    // Moves, changes on and off the paths, a cleared level, a decommissioning and a closure,
    // followed live.
    post(
        &service,
        &acme,
        "/v1/tenants/acme/terminals/t-2/move",
        json!({"parentId": "s-3"}),
    )
    .await;
    put(
        &service,
        &acme,
        "/v1/tenants/acme/nodes/s-3/parameters",
        json!({"floorLimits": [{"currency": "EUR", "amount": "2000"}], "merchantCategoryCode": "5999"}),
    )
    .await;
    post(
        &service,
        &acme,
        "/v1/tenants/acme/terminals/t-4/move",
        json!({"parentId": "s-3"}),
    )
    .await;
    put(
        &service,
        &acme,
        "/v1/tenants/acme/nodes/g-1/parameters",
        json!({}),
    )
    .await;
    put(
        &service,
        &acme,
        "/v1/tenants/acme/nodes/s-1/parameters",
        json!({"contactlessFloorLimit": "4000"}),
    )
    .await;
    post(
        &service,
        &acme,
        "/v1/tenants/acme/terminals/t-3/decommission",
        json!({"reason": "retired"}),
    )
    .await;
    post(
        &service,
        &acme,
        "/v1/tenants/acme/nodes/s-2/close",
        json!({"reason": "moved out"}),
    )
    .await;
    caught_up(&service, &follower_store).await;

    for terminal in ["t-1", "t-2", "t-3", "t-4"] {
        assert_same(&service, &acme, &view, "acme", terminal).await;
    }
    assert_same(&service, &globex, &view, "globex", "t-1").await;
    let t2 = view
        .terminal_estate("acme", "t-2")
        .await
        .expect("read")
        .expect("t-2");
    assert_eq!(
        (
            t2.merchant_id.as_str(),
            t2.store_id.as_str(),
            t2.terminal_group_id.as_deref()
        ),
        ("m-2", "s-3", None)
    );
    let t3 = view
        .terminal_estate("acme", "t-3")
        .await
        .expect("read")
        .expect("t-3");
    assert!(t3.closed);
    assert_eq!(t3.status, TerminalStatus::Decommissioned);

    cancel.cancel();
    running.await.expect("feed");
    service.stop().await;
}
