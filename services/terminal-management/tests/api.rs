//! Black-box tests of the tenant admin API over real HTTP, on the embedded default (SQLite,
//! in-process bus) and on PostgreSQL + NATS JetStream + the Kafka-API broker.

mod common;

use std::time::Duration;

use common::{TOKEN, TestService, embedded};
use mpos_bus::SubscribeOptions;
use mpos_proto::terminal_management as pb;

async fn lifecycle(service: &TestService) {
    let (status, body) = service
        .post(
            "/v1/tenants",
            serde_json::json!({"tenantId": "acme", "name": "Acme Pay"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["tenantId"], "acme");
    assert_eq!(body["status"], "TENANT_STATUS_ACTIVE");

    let (status, body) = service
        .post(
            "/v1/tenants/acme/rename",
            serde_json::json!({"name": "Acme Payments"}),
        )
        .await;
    assert_eq!(
        (status, body["name"].as_str()),
        (200, Some("Acme Payments"))
    );
    let (status, body) = service
        .post(
            "/v1/tenants/acme/suspend",
            serde_json::json!({"reason": "chargebacks"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("TENANT_STATUS_SUSPENDED"))
    );
    let (status, body) = service
        .post("/v1/tenants/acme/reactivate", serde_json::json!({}))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("TENANT_STATUS_ACTIVE"))
    );
    // snake_case field names are accepted too (proto3 JSON mapping).
    let (status, _) = service
        .post(
            "/v1/tenants",
            serde_json::json!({"tenant_id": "globex", "name": "Globex"}),
        )
        .await;
    assert_eq!(status, 201);

    let (status, body) = service.get("/v1/tenants/acme").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["version"], "4",
        "four events applied (uint64 is a JSON string in proto3)"
    );
    let (status, body) = service.get("/v1/tenants").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["tenants"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["tenantId"].as_str())
        .collect();
    assert_eq!(ids, vec!["acme", "globex"]);
}

#[tokio::test]
async fn the_tenant_lifecycle_on_the_embedded_default() {
    let service = embedded().await;
    lifecycle(&service).await;
    let events = service.store.read_after(0, 100).await.expect("read");
    let types: Vec<&str> = events.iter().map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "mpos.terminal_management.v1.TenantCreated",
            "mpos.terminal_management.v1.TenantRenamed",
            "mpos.terminal_management.v1.TenantSuspended",
            "mpos.terminal_management.v1.TenantReactivated",
            "mpos.terminal_management.v1.TenantCreated",
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.metadata().actor == "operator:platform")
    );
    assert_eq!(events[0].event.tenant_id, "acme");
    assert_eq!(events[4].event.tenant_id, "globex");
    service.stop().await;
}

#[tokio::test]
async fn bad_requests_get_typed_errors_and_change_nothing() {
    let service = embedded().await;
    service
        .post(
            "/v1/tenants",
            serde_json::json!({"tenantId": "acme", "name": "Acme Pay"}),
        )
        .await;
    let before = service.event_count().await;

    let cases: Vec<(&str, serde_json::Value, u16, &str)> = vec![
        (
            "/v1/tenants",
            serde_json::json!({"tenantId": "Not Valid", "name": "x"}),
            400,
            "bad_request",
        ),
        (
            "/v1/tenants",
            serde_json::json!({"tenantId": "acme2", "name": "   "}),
            400,
            "bad_request",
        ),
        (
            "/v1/tenants",
            serde_json::json!({"tenantId": 17}),
            400,
            "bad_request",
        ),
        (
            "/v1/tenants",
            serde_json::json!({"tenantId": "acme", "name": "Again"}),
            409,
            "already_exists",
        ),
        (
            "/v1/tenants/nobody/rename",
            serde_json::json!({"name": "x"}),
            404,
            "not_found",
        ),
        (
            "/v1/tenants/acme/reactivate",
            serde_json::json!({}),
            409,
            "conflict",
        ),
        (
            "/v1/tenants/acme/suspend",
            serde_json::json!({"reason": ""}),
            400,
            "bad_request",
        ),
        ("/v1/nothing-here", serde_json::json!({}), 404, "not_found"),
    ];
    for (path, body, status, code) in cases {
        let (got_status, got_body) = service.post(path, body.clone()).await;
        assert_eq!(
            (got_status, got_body["code"].as_str()),
            (status, Some(code)),
            "{path} {body}: {got_body}"
        );
        assert!(got_body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Malformed JSON and a wrong content type.
    let response = service
        .client
        .post(service.url("/v1/tenants"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "bad_request");
    let response = service
        .client
        .post(service.url("/v1/tenants"))
        .bearer_auth(TOKEN)
        .body("tenantId=x")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 400);

    assert_eq!(
        service.event_count().await,
        before,
        "rejected requests wrote nothing"
    );
    // The service still works.
    let (status, _) = service.get("/v1/tenants/acme").await;
    assert_eq!(status, 200);
    service.stop().await;
}

#[tokio::test]
async fn the_api_requires_the_operator_token() {
    let service = embedded().await;
    let create = serde_json::json!({"tenantId": "acme", "name": "Acme"});
    let response = service
        .client
        .post(service.url("/v1/tenants"))
        .json(&create)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 401);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "unauthenticated");
    for token in ["wrong-token", &TOKEN[..TOKEN.len() - 1], ""] {
        let response = service
            .client
            .get(service.url("/v1/tenants"))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 401, "{token:?}");
    }
    let response = service
        .client
        .get(service.url("/v1/tenants"))
        .header("authorization", TOKEN)
        .send()
        .await
        .expect("send");
    assert_eq!(
        response.status().as_u16(),
        401,
        "the Bearer scheme is required"
    );
    assert_eq!(service.event_count().await, 0);
    service.stop().await;
}

#[tokio::test]
async fn events_reach_the_in_process_bus_with_their_envelope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus_url = format!("memory://{}", common::unique("tm"));
    let database = format!("sqlite://{}", dir.path().join("tm.db").display());
    let service = common::start(&database, &bus_url, None, mpos_telemetry::Readiness::new()).await;
    service
        .post(
            "/v1/tenants",
            serde_json::json!({"tenantId": "acme", "name": "Acme Pay"}),
        )
        .await;
    let bus = mpos_bus::connect(&bus_url).await.expect("bus");
    let mut stream = bus
        .subscriber
        .subscribe(SubscribeOptions::new(terminal_management::SERVICE, "test"))
        .await
        .expect("subscribe");
    let delivery = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("ok");
    let envelope = delivery.envelope.clone();
    assert_eq!(envelope.service, "terminal-management");
    assert_eq!(
        (
            envelope.tenant_id.as_str(),
            envelope.aggregate_type.as_str()
        ),
        ("acme", "tenant")
    );
    assert_eq!((envelope.sequence, envelope.global_position), (1, 1));
    assert_eq!(envelope.actor, "operator:platform");
    assert!(uuid::Uuid::parse_str(&envelope.event_id).is_ok_and(|id| id.get_version_num() == 7));
    let created: pb::TenantCreated =
        prost::Message::decode(envelope.payload.as_slice()).expect("protobuf");
    assert_eq!(
        created,
        pb::TenantCreated {
            tenant_id: "acme".into(),
            name: "Acme Pay".into()
        }
    );
    delivery.ack().await.expect("ack");
    service.stop().await;
}

async fn collect(stream: &mut mpos_bus::EventStream, count: usize) -> Vec<mpos_bus::EventEnvelope> {
    let mut envelopes = Vec::new();
    while envelopes.len() < count {
        let delivery = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("events arrive in time")
            .expect("stream open")
            .expect("delivery");
        envelopes.push(delivery.envelope.clone());
        delivery.ack().await.expect("ack");
    }
    envelopes
}

/// The distributed deployment: PostgreSQL log, outbox to NATS JetStream and to Kafka.
#[tokio::test]
async fn events_flow_through_the_outbox_to_nats_and_kafka() {
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
    let stored = service.store.read_after(0, 100).await.expect("read");
    assert_eq!(stored.len(), 5);

    for url in [&nats, &kafka] {
        let bus = mpos_bus::connect(url).await.expect("bus");
        let mut stream = bus
            .subscriber
            .subscribe(SubscribeOptions::new(
                terminal_management::SERVICE,
                "integration-test",
            ))
            .await
            .expect("subscribe");
        let envelopes = collect(&mut stream, 5).await;
        for (envelope, event) in envelopes.iter().zip(&stored) {
            assert_eq!(envelope.event_id, event.event.event_id, "{url}");
            assert_eq!(envelope.global_position, event.global_position, "{url}");
            assert_eq!(envelope.hash, event.hash.to_vec(), "{url}");
            assert_eq!(envelope.event_type, event.event.event_type, "{url}");
        }
        let renamed: pb::TenantRenamed =
            prost::Message::decode(envelopes[1].payload.as_slice()).expect("protobuf");
        assert_eq!(renamed.new_name, "Acme Payments", "{url}");
    }
    service.stop().await;
}

#[tokio::test]
async fn the_tenants_read_model_rebuilt_by_replay_equals_the_live_one() {
    let service = common::start(
        &common::postgres_url(),
        &common::nats_url(),
        None,
        mpos_telemetry::Readiness::new(),
    )
    .await;
    lifecycle(&service).await;
    let runner = mpos_es::ProjectionRunner::new(
        service.store.clone(),
        terminal_management::read_model::TenantsProjection,
    );
    runner.catch_up().await.expect("catch up");
    let live = runner.digest().await.expect("digest");
    let (_, listed_before) = service.get("/v1/tenants").await;
    runner.rebuild().await.expect("rebuild");
    assert_eq!(runner.digest().await.expect("digest"), live);
    let (_, listed_after) = service.get("/v1/tenants").await;
    assert_eq!(listed_after, listed_before);
    service.stop().await;
}

/// Readiness follows the event store: false while PostgreSQL is unreachable (the API answers
/// `unavailable`), true again once it is back; the service never goes down.
#[tokio::test]
async fn readiness_follows_the_database_and_recovers() {
    let base = std::env::var("MPOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut url = url::Url::parse(&base).expect("url");
    let target: std::net::SocketAddr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    )
    .parse()
    .expect("addr");
    let proxy = common::Proxy::start(target).await;
    url.set_port(Some(proxy.addr.port())).expect("port");
    let database = format!("{url}?schema={}", common::unique("tm_"));
    let service = common::start(
        &database,
        &common::nats_url(),
        None,
        mpos_telemetry::Readiness::new(),
    )
    .await;

    let ready = |service: &TestService| {
        let request = service.client.get(format!("{}/readyz", service.admin));
        async move { request.send().await.expect("readyz").status().as_u16() }
    };
    assert_eq!(ready(&service).await, 200);
    proxy.take_down();
    let mut status = 0;
    for _ in 0..50 {
        status = ready(&service).await;
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, 503,
        "readiness goes false while the database is away"
    );
    let (refused, body) = service
        .post(
            "/v1/tenants",
            serde_json::json!({"tenantId": "acme", "name": "Acme"}),
        )
        .await;
    assert_eq!(
        (refused, body["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );

    proxy.bring_up();
    for _ in 0..100 {
        status = ready(&service).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "readiness comes back with the database");
    let (created, _) = service
        .post(
            "/v1/tenants",
            serde_json::json!({"tenantId": "acme", "name": "Acme"}),
        )
        .await;
    assert_eq!(created, 201, "and the service works again");
    service.stop().await;
}

async fn wait_for_ready_status(service: &TestService, wanted: u16) -> (u16, serde_json::Value) {
    let mut last = (0, serde_json::Value::Null);
    for _ in 0..100 {
        let response = service
            .client
            .get(format!("{}/readyz", service.admin))
            .send()
            .await
            .expect("readyz");
        let status = response.status().as_u16();
        last = (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        );
        if status == wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Readiness follows NATS: false while the bus is unreachable, true once it is back.
#[tokio::test]
async fn readiness_follows_nats_and_recovers() {
    let base =
        std::env::var("MPOS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let target: std::net::SocketAddr = base
        .trim_start_matches("nats://")
        .parse()
        .expect("nats address");
    let proxy = common::Proxy::start(target).await;
    let bus = format!("nats://{}?namespace={}", proxy.addr, common::unique("tm"));
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", dir.path().join("tm.db").display());
    let service = common::start(&database, &bus, None, mpos_telemetry::Readiness::new()).await;

    assert_eq!(wait_for_ready_status(&service, 200).await.0, 200);
    proxy.take_down();
    let (status, body) = wait_for_ready_status(&service, 503).await;
    assert_eq!(
        status, 503,
        "readiness goes false while NATS is away: {body}"
    );
    // Commands still commit to the log (the outbox publishes later).
    let (created, _) = service
        .post(
            "/v1/tenants",
            serde_json::json!({"tenantId": "acme", "name": "Acme"}),
        )
        .await;
    assert_eq!(created, 201);
    proxy.bring_up();
    assert_eq!(
        wait_for_ready_status(&service, 200).await.0,
        200,
        "readiness comes back with NATS"
    );
    service.stop().await;
}

/// Kafka unreachable: the service still serves, readiness names Kafka.
#[tokio::test]
async fn an_unreachable_kafka_is_reported_and_does_not_stop_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", dir.path().join("tm.db").display());
    let bus = format!("memory://{}", common::unique("tm"));
    let service = common::start(
        &database,
        &bus,
        Some("kafka://127.0.0.1:1"),
        mpos_telemetry::Readiness::new(),
    )
    .await;
    let (created, _) = service
        .post(
            "/v1/tenants",
            serde_json::json!({"tenantId": "acme", "name": "Acme"}),
        )
        .await;
    assert_eq!(created, 201);
    let (status, body) = wait_for_ready_status(&service, 503).await;
    assert_eq!(status, 503);
    assert!(body.to_string().contains("kafka"), "{body}");
    service.stop().await;
}
