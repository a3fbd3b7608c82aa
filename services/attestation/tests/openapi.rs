//! The OpenAPI document: generated from the route tables the routers are built from,
//! published in `docs/openapi/`, served at `GET /openapi.json` on both listeners, every route
//! it documents answered by a handler, and the bodies that are not protobuf messages (the
//! token keys, the trust status) answered as their proto descriptions say.

use std::time::Duration;

use attestation::routes::{self, ADMIN_ROUTES, DEVICE_ROUTES, EVIDENCE_ROUTES};
use mpos_config::Vars;
use mpos_openapi::Route;
use mpos_service::{CommonConfig, Infrastructure};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "operator-token-for-attestation-openapi-0123456789";

fn document() -> Value {
    routes::openapi().expect("the route tables document")
}

#[test]
fn the_published_openapi_document_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/openapi/attestation.json");
    if let Err(error) = mpos_openapi::check_published(&document(), &path) {
        panic!("{error}");
    }
}

fn operation_ids(doc: &Value) -> Vec<&str> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .map(|operation| operation["operationId"].as_str().expect("operation id"))
        .collect()
}

#[test]
fn the_document_has_every_route_of_both_apis() {
    let doc = document();
    let operations = operation_ids(&doc);
    for route in ADMIN_ROUTES {
        assert!(
            operations.contains(&route.operation_id),
            "{}",
            route.operation_id
        );
    }
    // The token keys are on both listeners and documented once, on the admin API.
    for route in DEVICE_ROUTES {
        assert_eq!(
            operations.contains(&route.operation_id),
            route.path != "/v1/attestation/token-keys",
            "{}",
            route.operation_id
        );
    }
    assert_eq!(
        operations.len(),
        ADMIN_ROUTES.len() + DEVICE_ROUTES.len() - 1
    );
    // The admin listener's device routes are the device API's.
    for route in EVIDENCE_ROUTES {
        assert!(DEVICE_ROUTES.contains(route), "{}", route.operation_id);
    }

    // The device document has the device routes only.
    let device_doc = routes::device_openapi().expect("device document");
    let mut device_operations = operation_ids(&device_doc);
    device_operations.sort_unstable();
    let mut expected: Vec<&str> = DEVICE_ROUTES
        .iter()
        .map(|route| route.operation_id)
        .collect();
    expected.sort_unstable();
    assert_eq!(device_operations, expected);

    // The special bodies.
    let anchors = &doc["paths"]["/v1/attestation/trust/anchors"]["put"];
    let content = anchors["requestBody"]["content"]
        .as_object()
        .expect("content");
    assert_eq!(
        content.keys().collect::<Vec<_>>(),
        ["application/x-pem-file"]
    );
    assert!(anchors["responses"].get("403").is_some());
    let attest = &doc["paths"]["/v1/tenants/{tenant_id}/devices/{device_id}/attestations"]["post"];
    assert_eq!(attest["tags"], json!(["Devices"]));
    // No credentials: the evidence authenticates the device.
    assert_eq!(attest["security"], json!([]));
    assert_eq!(
        attest["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        json!("#/components/schemas/mpos.attestation.v1.AttestRequest")
    );
    let put_policy = &doc["paths"]["/v1/tenants/{tenant_id}/attestation-policy"]["put"];
    for status in ["400", "401", "403", "404", "409"] {
        assert!(put_policy["responses"].get(status).is_some(), "{status}");
    }
    let trust = &doc["components"]["schemas"]["mpos.attestation.v1.TrustStatus"];
    assert!(
        trust["properties"].get("anchors_sha256").is_some(),
        "{trust}"
    );
}

/// A running attestation service on SQLite and the in-process bus; `tls`: the device API
/// on its own TLS listener.
struct Service {
    cancel: CancellationToken,
    running: attestation::service::Running,
    admin: String,
    device: Option<(reqwest::Client, String)>,
    _dir: tempfile::TempDir,
}

impl Service {
    async fn start(tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let vars = Vars::from_pairs(vec![
            (
                "MPOS_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("att.db").display()),
            ),
            ("MPOS_BUS_URL", "memory://".to_owned()),
            ("MPOS_CHAIN_SIGNING_KEY", "2a".repeat(32)),
        ]);
        let common =
            CommonConfig::from_vars(&vars, attestation::SERVICE, "127.0.0.1:0", "127.0.0.1:0")
                .expect("config");
        let cancel = CancellationToken::new();
        let infrastructure = Infrastructure::default();
        let (store, bus) = infrastructure
            .connect(&common, &cancel)
            .await
            .expect("infrastructure");
        let anchors = dir.path().join("anchors.pem");
        let pki = terminal_sim::softpos::AttestationPki::new().expect("pki");
        std::fs::write(&anchors, pki.root_pem()).expect("write");
        let server =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("server");
        let device_tls = tls.then(|| {
            let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
            std::fs::write(&cert, server.cert.pem()).expect("write");
            std::fs::write(&key, server.signing_key.serialize_pem()).expect("write");
            device_identity::ServerIdentity::from_pem_files(&cert, &key).expect("tls identity")
        });
        let options = attestation::service::AttOptions {
            operator_token: SecretString::from(TOKEN.to_owned()),
            token_issuer: std::sync::Arc::new(
                attestation::service::generated_issuer("att-openapi".into()).expect("issuer"),
            ),
            trust: attestation_trust::TrustConfig::new(
                attestation_trust::Source::File(anchors),
                None,
            ),
            challenge_ttl: Duration::from_secs(120),
            monitor_interval: Duration::from_secs(3_600),
            feed: None,
            device_addr: tls.then(|| "127.0.0.1:0".parse().expect("addr")),
            device_tls,
        };
        let running = attestation::service::start(
            &common,
            store,
            &bus,
            &infrastructure,
            &options,
            TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            &cancel,
        )
        .await
        .expect("attestation");
        let device = running.device_addr.map(|address| {
            let client = reqwest::Client::builder()
                .add_root_certificate(
                    reqwest::Certificate::from_der(server.cert.der()).expect("certificate"),
                )
                .build()
                .expect("tls client");
            (client, format!("https://localhost:{}", address.port()))
        });
        Self {
            cancel,
            admin: format!("http://{}", running.http_addr),
            running,
            device,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.running.join().await;
    }
}

async fn served_document(client: &reqwest::Client, base: &str) -> Value {
    let response = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
        Some("application/json")
    );
    let served: Value = response.json().await.expect("json");
    let parsed: openapiv3::OpenAPI =
        serde_json::from_value(served.clone()).expect("parses as OpenAPI 3.0");
    assert_eq!(parsed.openapi, "3.0.3");
    assert_eq!(parsed.info.title, routes::INFO.title);
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_serve_their_document_without_credentials() {
    let service = Service::start(true).await;
    let client = reqwest::Client::new();
    assert_eq!(served_document(&client, &service.admin).await, document());
    let (device, base) = service.device.as_ref().expect("device listener");
    assert_eq!(
        served_document(device, base).await,
        routes::device_openapi().expect("device document")
    );
    service.stop().await;
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    route: &Route,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = client.request(
        route.method.http(),
        format!("{base}{}", route.example_path("x-1")),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if route.method.allows_body() {
        request = request.json(&json!({}));
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn is_fallback(status: u16, body: &Value) -> bool {
    status == 404 && body["message"] == json!("no such route")
}

fn assert_routed(status: u16, body: &Value, route: &Route, listener: &str) {
    assert!(
        !is_fallback(status, body) && status != 405,
        "{} {} is not routed on the {listener} listener: {status} {body}",
        route.method.as_str(),
        route.path
    );
}

async fn check_admin_routes(client: &reqwest::Client, base: &str) {
    for route in ADMIN_ROUTES {
        let (status, body) = call(client, base, route, Some(TOKEN)).await;
        assert_routed(status, &body, route, "admin");
        // Every authenticated admin route wants credentials.
        let (status, body) = call(client, base, route, None).await;
        let expected = if route.auth.is_authenticated() {
            401
        } else {
            200
        };
        assert_eq!(
            status,
            expected,
            "{} {}: {body}",
            route.method.as_str(),
            route.path
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_has_a_handler_on_its_listener() {
    // The device API on its own TLS listener: the admin listener has no device routes.
    let service = Service::start(true).await;
    let client = reqwest::Client::new();
    let explode = Route {
        path: "/v1/tenants/{tenant_id}/devices/{device_id}/explode",
        ..DEVICE_ROUTES[0]
    };
    let (status, body) = call(&client, &service.admin, &explode, Some(TOKEN)).await;
    assert!(is_fallback(status, &body), "{status} {body}");
    check_admin_routes(&client, &service.admin).await;
    for route in EVIDENCE_ROUTES {
        let (status, body) = call(&client, &service.admin, route, None).await;
        assert!(is_fallback(status, &body), "{} {status} {body}", route.path);
    }
    let (device, base) = service.device.as_ref().expect("device listener");
    for route in DEVICE_ROUTES {
        let (status, body) = call(device, base, route, None).await;
        assert_routed(status, &body, route, "device");
    }
    for route in ADMIN_ROUTES
        .iter()
        .filter(|route| route.auth.is_authenticated())
    {
        let (status, body) = call(device, base, route, Some(TOKEN)).await;
        assert!(is_fallback(status, &body), "{} {status} {body}", route.path);
    }
    service.stop().await;

    // Without a device listener the admin listener serves the device routes too.
    let service = Service::start(false).await;
    check_admin_routes(&client, &service.admin).await;
    for route in DEVICE_ROUTES {
        let (status, body) = call(&client, &service.admin, route, None).await;
        assert_routed(status, &body, route, "admin");
    }
    service.stop().await;
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_bodies_that_are_not_messages_are_as_documented() {
    let service = Service::start(false).await;
    let client = reqwest::Client::new();
    let doc = document();
    let schema = |name: &str| doc["components"]["schemas"][name]["properties"].clone();

    // The token keys are exactly the JSON of `TokenKeys`.
    let keys_body: Value = client
        .get(format!("{}/v1/attestation/token-keys", service.admin))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let message: mpos_proto::attestation::TokenKeys =
        serde_json::from_value(keys_body.clone()).expect("TokenKeys");
    assert_eq!(message.keys.len(), 1, "{keys_body}");
    assert_eq!(
        serde_json::to_value(&message).expect("json"),
        keys_body,
        "TokenKeys serializes as the served keys"
    );
    assert_eq!(
        keys(&keys_body["keys"][0]),
        keys(&schema("mpos.attestation.v1.TokenKey"))
    );

    // The trust status has exactly the documented keys.
    let trust: Value = client
        .get(format!("{}/v1/attestation/trust", service.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        keys(&trust),
        keys(&schema("mpos.attestation.v1.TrustStatus"))
    );
    service.stop().await;
}
