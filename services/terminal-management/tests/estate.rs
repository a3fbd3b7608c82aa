//! Black-box tests of the estate API (merchants, stores, terminal groups, terminals) and of
//! tenant API keys with roles, over real HTTP, on the embedded default and on PostgreSQL +
//! NATS JetStream.

mod common;

use std::time::Duration;

use common::{TestService, embedded};
use mpos_bus::SubscribeOptions;
use mpos_proto::terminal_management as pb;
use serde_json::json;

/// merchant m-1 → store s-1 → group g-1, and a second store s-2 (by `token`).
async fn estate(service: &TestService, token: &str, tenant: &str) {
    for (node, kind, parent) in [
        ("m-1", "NODE_KIND_MERCHANT", ""),
        ("s-1", "NODE_KIND_STORE", "m-1"),
        ("s-2", "NODE_KIND_STORE", "m-1"),
        ("g-1", "NODE_KIND_TERMINAL_GROUP", "s-1"),
    ] {
        let (status, body) = service
            .post_as(
                token,
                &format!("/v1/tenants/{tenant}/nodes"),
                json!({"nodeId": node, "kind": kind, "parentId": parent, "name": format!("{node} name")}),
            )
            .await;
        assert_eq!(status, 201, "{node}: {body}");
        assert_eq!(body["status"], "NODE_STATUS_OPEN");
        assert_eq!(body["parentId"].as_str().unwrap_or(""), parent);
    }
}

async fn bind_softpos(
    service: &TestService,
    token: &str,
    tenant: &str,
    terminal: &str,
    parent: &str,
) -> (u16, serde_json::Value) {
    service
        .post_as(
            token,
            &format!("/v1/tenants/{tenant}/terminals"),
            json!({"terminalId": terminal, "kind": "TERMINAL_KIND_SOFTPOS", "parentId": parent, "label": "phone"}),
        )
        .await
}

fn actor(event: &mpos_es::StoredEvent) -> String {
    let map: std::collections::HashMap<String, String> =
        serde_json::from_str(&event.event.metadata).expect("metadata");
    mpos_es::CommandMetadata::from_map(&map).actor
}

async fn lifecycle(service: &TestService) {
    let admin = service.tenant_with_key("acme", "API_KEY_ROLE_ADMIN").await;
    // The tenant's admin issues its own operator and read-only keys.
    let (status, body) = service
        .post_as(
            &admin,
            "/v1/tenants/acme/api-keys",
            json!({"role": "API_KEY_ROLE_OPERATOR", "label": "back office"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let operator = body["secret"].as_str().expect("secret").to_owned();
    let operator_key_id = body["keyId"].as_str().expect("key id").to_owned();
    assert!(operator.starts_with("mpk_") && operator.contains(&operator_key_id));
    let (_, body) = service
        .post_as(
            &admin,
            "/v1/tenants/acme/api-keys",
            json!({"role": "API_KEY_ROLE_READ_ONLY"}),
        )
        .await;
    let reader = body["secret"].as_str().expect("secret").to_owned();

    estate(service, &operator, "acme").await;
    let (status, body) = bind_softpos(service, &operator, "acme", "t-1", "g-1").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "TERMINAL_STATE_BOUND");
    assert_eq!(body["kind"], "TERMINAL_KIND_SOFTPOS");

    // Activation of a SoftPOS terminal is the platform's (the attestation verdict).
    let activate = json!({"method": "ACTIVATION_METHOD_ATTESTATION", "evidence": "verdict-1"});
    let (status, body) = service
        .post_as(
            &operator,
            "/v1/tenants/acme/terminals/t-1/activate",
            activate.clone(),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, body) = service
        .post("/v1/tenants/acme/terminals/t-1/activate", activate)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "TERMINAL_STATE_ACTIVE");
    assert_eq!(body["activationMethod"], "ACTIVATION_METHOD_ATTESTATION");

    for (action, state) in [
        ("suspend", "TERMINAL_STATE_SUSPENDED"),
        ("resume", "TERMINAL_STATE_ACTIVE"),
    ] {
        let (status, body) = service
            .post_as(
                &operator,
                &format!("/v1/tenants/acme/terminals/t-1/{action}"),
                json!({"reason": "lost and found"}),
            )
            .await;
        assert_eq!(
            (status, body["state"].as_str()),
            (200, Some(state)),
            "{body}"
        );
    }
    // Illegal transitions are typed conflicts and change nothing.
    let before = service.event_count().await;
    let (status, body) = service
        .post_as(
            &operator,
            "/v1/tenants/acme/terminals/t-1/resume",
            json!({}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));
    assert_eq!(
        body["message"],
        "the terminal is active: it cannot be resumed"
    );
    assert_eq!(service.event_count().await, before);

    // Move, then swap: the replacement carries on the history.
    let (status, body) = service
        .post_as(
            &operator,
            "/v1/tenants/acme/terminals/t-1/move",
            json!({"parentId": "s-2"}),
        )
        .await;
    assert_eq!(
        (status, body["parentId"].as_str()),
        (200, Some("s-2")),
        "{body}"
    );
    let (status, body) = service
        .post_as(
            &operator,
            "/v1/tenants/acme/terminals/t-1/swap",
            json!({"reason": "screen broken", "replacement": {"terminalId": "t-2", "kind": "TERMINAL_KIND_SOFTPOS", "parentId": "s-2"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["terminalId"].as_str(),
            body["replacesTerminalId"].as_str()
        ),
        (Some("t-2"), Some("t-1"))
    );
    let (_, body) = service
        .get_as(&reader, "/v1/tenants/acme/terminals/t-1")
        .await;
    assert_eq!(body["state"], "TERMINAL_STATE_SWAPPED_OUT");
    assert_eq!(body["replacedByTerminalId"], "t-2");

    // A store with a live terminal cannot close; once it is decommissioned it can.
    let (status, body) = service
        .post_as(
            &operator,
            "/v1/tenants/acme/nodes/s-2/close",
            json!({"reason": "moved out"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    for terminal in ["t-2"] {
        let (status, body) = service
            .post_as(
                &operator,
                &format!("/v1/tenants/acme/terminals/{terminal}/blacklist"),
                json!({"reason": "stolen"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = service
            .post_as(
                &operator,
                &format!("/v1/tenants/acme/terminals/{terminal}/decommission"),
                json!({"reason": "written off"}),
            )
            .await;
        assert_eq!(
            (status, body["state"].as_str()),
            (200, Some("TERMINAL_STATE_DECOMMISSIONED"))
        );
    }
    let (status, body) = service
        .post_as(
            &operator,
            "/v1/tenants/acme/nodes/s-2/close",
            json!({"reason": "moved out"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("NODE_STATUS_CLOSED")),
        "{body}"
    );
    let (status, body) = bind_softpos(service, &operator, "acme", "t-3", "s-2").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));
    assert_eq!(body["message"], "parent_id: s-2 is closed");

    // Reads: the tree by kind and by parent, and terminals by parent.
    let (status, body) = service
        .get_as(&reader, "/v1/tenants/acme/nodes?kind=store")
        .await;
    assert_eq!(status, 200);
    let stores: Vec<&str> = body["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|node| node["nodeId"].as_str())
        .collect();
    assert_eq!(stores, vec!["s-1", "s-2"]);
    let (_, body) = service
        .get_as(&reader, "/v1/tenants/acme/nodes?parent=s-1")
        .await;
    assert_eq!(body["nodes"][0]["nodeId"], "g-1");
    let (_, body) = service
        .get_as(&reader, "/v1/tenants/acme/terminals?parent=s-2")
        .await;
    assert_eq!(body["terminals"].as_array().map(Vec::len), Some(2));

    // Roles: the read-only key reads but cannot change or see keys; the operator key cannot
    // manage keys; nobody but the platform operator manages tenants.
    let (status, _) = bind_softpos(service, &reader, "acme", "t-9", "g-1").await;
    assert_eq!(status, 403);
    let (status, _) = service.get_as(&reader, "/v1/tenants/acme/api-keys").await;
    assert_eq!(status, 403);
    let (status, _) = service
        .post_as(
            &operator,
            "/v1/tenants/acme/api-keys",
            json!({"role": "API_KEY_ROLE_ADMIN"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = service
        .post_as(&admin, "/v1/tenants/acme/suspend", json!({"reason": "x"}))
        .await;
    assert_eq!(status, 403);
    let (status, body) = service.get_as(&admin, "/v1/tenants").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["tenants"].as_array().map(Vec::len),
        Some(1),
        "only its own tenant"
    );

    // Keys are listed without secrets; a revoked key no longer authenticates.
    let (status, body) = service.get_as(&admin, "/v1/tenants/acme/api-keys").await;
    assert_eq!(status, 200);
    let keys = body["apiKeys"].as_array().expect("keys");
    assert_eq!(keys.len(), 3);
    assert!(
        keys.iter()
            .all(|key| key.get("secret").is_none() || key["secret"] == "")
    );
    let (status, body) = service
        .post_as(
            &admin,
            &format!("/v1/tenants/acme/api-keys/{operator_key_id}/revoke"),
            json!({"reason": "employee left"}),
        )
        .await;
    assert_eq!((status, body["revoked"].as_bool()), (200, Some(true)));
    let (status, body) = service.get_as(&operator, "/v1/tenants/acme/nodes").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    // A suspended tenant's estate is frozen; reads still work.
    let (status, _) = service
        .post("/v1/tenants/acme/suspend", json!({"reason": "chargebacks"}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = service
        .post_as(
            &admin,
            "/v1/tenants/acme/nodes/m-1/rename",
            json!({"name": "New"}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));
    let (status, _) = service.get_as(&reader, "/v1/tenants/acme/nodes/m-1").await;
    assert_eq!(status, 200);

    // Every change is an event with its actor.
    let events = service.store.read_after(0, 1_000).await.expect("read");
    let bound = events
        .iter()
        .find(|event| event.event.event_type == "mpos.terminal_management.v1.TerminalBound")
        .expect("bound event");
    assert_eq!(actor(bound), format!("api-key:{operator_key_id}"));
    assert_eq!(bound.event.aggregate_id, "acme/t-1");
    let activated = events
        .iter()
        .find(|event| event.event.event_type == "mpos.terminal_management.v1.TerminalActivated")
        .expect("activated event");
    assert_eq!(actor(activated), "operator:platform");
    for event in &events {
        assert!(!actor(event).is_empty(), "{}", event.event.event_type);
        assert!(
            !event.event.payload.contains(&operator[21..]),
            "no API key secret in any event"
        );
    }
}

#[tokio::test]
async fn the_estate_and_terminal_lifecycle_on_the_embedded_default() {
    let service = embedded().await;
    lifecycle(&service).await;
    service.stop().await;
}

#[tokio::test]
async fn the_estate_and_terminal_lifecycle_on_postgres_nats_and_kafka() {
    let nats = common::nats_url();
    let kafka = common::kafka_url();
    let service = common::start(
        &common::postgres_url(),
        &nats,
        Some(&kafka),
        mpos_telemetry::Readiness::new(),
    )
    .await;
    lifecycle(&service).await;
    // The estate's events reach NATS JetStream and Kafka through the outbox, typed per
    // aggregate, in log order.
    let stored = service.store.read_after(0, 10_000).await.expect("read");
    for url in [&nats, &kafka] {
        let bus = mpos_bus::connect(url).await.expect("bus");
        let mut stream = bus
            .subscriber
            .subscribe(SubscribeOptions::new(
                terminal_management::SERVICE,
                "estate-test",
            ))
            .await
            .expect("subscribe");
        let mut bound = None;
        for event in &stored {
            let delivery = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .expect("in time")
                .expect("open")
                .expect("ok");
            assert_eq!(delivery.envelope.event_id, event.event.event_id, "{url}");
            if delivery.envelope.event_type == "mpos.terminal_management.v1.TerminalBound"
                && bound.is_none()
            {
                bound = Some(delivery.envelope.clone());
            }
            delivery.ack().await.expect("ack");
        }
        let bound = bound.expect("a TerminalBound event on the bus");
        assert_eq!(
            (bound.tenant_id.as_str(), bound.aggregate_type.as_str()),
            ("acme", "terminal"),
            "{url}"
        );
        let event: pb::TerminalBound =
            prost::Message::decode(bound.payload.as_slice()).expect("protobuf");
        assert_eq!(event.terminal_id, "t-1", "{url}");
    }
    service.stop().await;
}

/// Every tenant route, addressed at `acme` by another tenant's admin key: nothing is found,
/// nothing changes.
#[tokio::test]
async fn a_tenant_never_sees_or_changes_another_tenants_estate() {
    let service = embedded().await;
    let acme = service.tenant_with_key("acme", "API_KEY_ROLE_ADMIN").await;
    let globex = service
        .tenant_with_key("globex", "API_KEY_ROLE_ADMIN")
        .await;
    estate(&service, &acme, "acme").await;
    let (status, _) = bind_softpos(&service, &acme, "acme", "t-1", "g-1").await;
    assert_eq!(status, 201);
    let (_, body) = service.get_as(&acme, "/v1/tenants/acme/api-keys").await;
    let acme_key_id = body["apiKeys"][0]["keyId"]
        .as_str()
        .expect("key")
        .to_owned();
    let before = service.event_count().await;

    let reason = json!({"reason": "probe"});
    let requests: Vec<(reqwest::Method, String, Option<serde_json::Value>)> = vec![
        (reqwest::Method::GET, "/v1/tenants/acme".into(), None),
        (reqwest::Method::GET, "/v1/tenants/acme/api-keys".into(), None),
        (
            reqwest::Method::POST,
            "/v1/tenants/acme/api-keys".into(),
            Some(json!({"role": "API_KEY_ROLE_ADMIN"})),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/tenants/acme/api-keys/{acme_key_id}/revoke"),
            Some(reason.clone()),
        ),
        (reqwest::Method::GET, "/v1/tenants/acme/nodes".into(), None),
        (reqwest::Method::GET, "/v1/tenants/acme/nodes/m-1".into(), None),
        (
            reqwest::Method::POST,
            "/v1/tenants/acme/nodes".into(),
            Some(json!({"nodeId": "m-9", "kind": "NODE_KIND_MERCHANT", "name": "x"})),
        ),
        (
            reqwest::Method::POST,
            "/v1/tenants/acme/nodes/m-1/rename".into(),
            Some(json!({"name": "x"})),
        ),
        (
            reqwest::Method::POST,
            "/v1/tenants/acme/nodes/g-1/close".into(),
            Some(reason.clone()),
        ),
        (reqwest::Method::GET, "/v1/tenants/acme/terminals".into(), None),
        (reqwest::Method::GET, "/v1/tenants/acme/terminals/t-1".into(), None),
        (
            reqwest::Method::POST,
            "/v1/tenants/acme/terminals".into(),
            Some(json!({"terminalId": "t-9", "kind": "TERMINAL_KIND_SOFTPOS", "parentId": "g-1"})),
        ),
    ]
    .into_iter()
    .chain(
        ["suspend", "resume", "blacklist", "decommission"]
            .into_iter()
            .map(|action| {
                (
                    reqwest::Method::POST,
                    format!("/v1/tenants/acme/terminals/t-1/{action}"),
                    Some(reason.clone()),
                )
            }),
    )
    .chain([
        (
            reqwest::Method::POST,
            "/v1/tenants/acme/terminals/t-1/move".into(),
            Some(json!({"parentId": "s-2"})),
        ),
        (
            reqwest::Method::POST,
            "/v1/tenants/acme/terminals/t-1/swap".into(),
            Some(json!({"reason": "x", "replacement": {"terminalId": "t-8", "kind": "TERMINAL_KIND_SOFTPOS", "parentId": "s-2"}})),
        ),
    ])
    .collect();
    for (method, path, body) in requests {
        let (status, response) = service.call_as(&globex, method.clone(), &path, body).await;
        assert_eq!(
            (status, response["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {response}"
        );
    }
    // Platform routes are refused outright.
    let (status, _) = service
        .post_as(&globex, "/v1/tenants/acme/suspend", reason.clone())
        .await;
    assert_eq!(status, 403);
    let (status, _) = service
        .post_as(
            &globex,
            "/v1/tenants",
            json!({"tenantId": "evil", "name": "x"}),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(service.event_count().await, before, "nothing changed");
    // globex's own (empty) estate answers.
    let (status, body) = service
        .get_as(&globex, "/v1/tenants/globex/terminals")
        .await;
    assert_eq!(status, 200);
    // Proto3 JSON leaves an empty list out.
    assert_eq!(
        body["terminals"].as_array().map_or(0, Vec::len),
        0,
        "{body}"
    );
    service.stop().await;
}

#[tokio::test]
async fn bad_estate_requests_get_typed_errors_naming_the_field_and_change_nothing() {
    let service = embedded().await;
    let key = service
        .tenant_with_key("acme", "API_KEY_ROLE_OPERATOR")
        .await;
    estate(&service, &key, "acme").await;
    let before = service.event_count().await;
    let cases = [
        (
            "/v1/tenants/acme/nodes",
            json!({"nodeId": "bad id", "kind": "NODE_KIND_MERCHANT", "name": "x"}),
            400,
            "node_id must",
        ),
        (
            "/v1/tenants/acme/nodes",
            json!({"nodeId": "m-2", "name": "x"}),
            400,
            "kind must",
        ),
        (
            "/v1/tenants/acme/nodes",
            json!({"nodeId": "s-9", "kind": "NODE_KIND_STORE", "parentId": "g-1", "name": "x"}),
            400,
            "parent_id: g-1 is a terminal_group, a store needs a merchant",
        ),
        (
            "/v1/tenants/acme/nodes",
            json!({"nodeId": "s-9", "kind": "NODE_KIND_STORE", "parentId": "nope", "name": "x"}),
            400,
            "parent_id: no estate node nope",
        ),
        (
            "/v1/tenants/acme/nodes",
            json!({"nodeId": "m-1", "kind": "NODE_KIND_MERCHANT", "name": "again"}),
            409,
            "estate node already exists",
        ),
        (
            "/v1/tenants/acme/terminals",
            json!({"terminalId": "t-1", "kind": "TERMINAL_KIND_SOFTPOS", "parentId": "m-1"}),
            400,
            "parent_id: m-1 is a merchant",
        ),
        (
            "/v1/tenants/acme/terminals",
            json!({"terminalId": "t-1", "kind": "TERMINAL_KIND_PED", "parentId": "g-1"}),
            400,
            "certificate_pem: a PED is bound by its device certificate",
        ),
        (
            "/v1/tenants/acme/terminals",
            json!({"terminalId": "t-1", "parentId": "g-1"}),
            400,
            "kind must",
        ),
        (
            "/v1/tenants/acme/terminals/nope/suspend",
            json!({"reason": "x"}),
            404,
            "terminal not found",
        ),
        (
            "/v1/tenants/acme/nodes/m-1/close",
            json!({"reason": "x"}),
            409,
            "estate node still has 2 open child node(s)",
        ),
        (
            "/v1/tenants/acme/api-keys",
            json!({"role": "API_KEY_ROLE_UNSPECIFIED"}),
            403,
            "role",
        ),
    ];
    for (path, body, status, message) in cases {
        let (got, response) = service.post_as(&key, path, body.clone()).await;
        assert_eq!(got, status, "{path} {body}: {response}");
        assert!(
            response["message"]
                .as_str()
                .is_some_and(|text| text.starts_with(message) || text.contains(message)),
            "{path} {body}: {response}"
        );
    }
    assert_eq!(
        service.event_count().await,
        before,
        "rejected requests wrote nothing"
    );
    service.stop().await;
}

/// The estate model rebuilt from the log answers exactly like the live one.
#[tokio::test]
async fn the_estate_model_rebuilt_from_the_log_answers_identically() {
    let service = embedded().await;
    let key = service.tenant_with_key("acme", "API_KEY_ROLE_ADMIN").await;
    estate(&service, &key, "acme").await;
    for terminal in ["t-1", "t-2", "t-3"] {
        let (status, _) = bind_softpos(&service, &key, "acme", terminal, "g-1").await;
        assert_eq!(status, 201);
    }
    service
        .post_as(
            &key,
            "/v1/tenants/acme/terminals/t-2/blacklist",
            json!({"reason": "stolen"}),
        )
        .await;
    service
        .post_as(
            &key,
            "/v1/tenants/acme/nodes/s-2/rename",
            json!({"name": "Harbour"}),
        )
        .await;

    let (_, live_nodes) = service.get_as(&key, "/v1/tenants/acme/nodes").await;
    let (_, live_terminals) = service.get_as(&key, "/v1/tenants/acme/terminals").await;
    let (_, live_keys) = service.get_as(&key, "/v1/tenants/acme/api-keys").await;

    let fresh = terminal_management::model::Model::new(service.store.clone());
    fresh.catch_up().await.expect("replay");
    let nodes = pb::ListEstateNodesResponse {
        nodes: fresh
            .nodes("acme", None, None)
            .iter()
            .map(terminal_management::model::NodeEntry::to_proto)
            .collect(),
    };
    let terminals = pb::ListTerminalsResponse {
        terminals: fresh
            .terminals("acme", None)
            .iter()
            .map(|terminal| terminal.to_proto())
            .collect(),
    };
    let keys = pb::ListApiKeysResponse {
        api_keys: fresh
            .api_keys("acme")
            .iter()
            .map(terminal_management::model::ApiKeyEntry::to_proto)
            .collect(),
    };
    assert_eq!(serde_json::to_value(&nodes).expect("json"), live_nodes);
    assert_eq!(
        serde_json::to_value(&terminals).expect("json"),
        live_terminals
    );
    assert_eq!(serde_json::to_value(&keys).expect("json"), live_keys);
    assert_eq!(fresh.position(), service.event_count().await as u64);
    service.stop().await;
}
