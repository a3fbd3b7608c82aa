//! The console over real HTTP: the page with its security headers, calls forwarded to a real
//! service listener exactly (method, path, query, body, the caller's token) and nothing
//! outside a service's API, a service that is down, and audit verification of a real SQLite
//! log, first intact, then altered behind the service's back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::any;
use ed25519_dalek::SigningKey;
use mpos_console::{AuditLogs, Console};
use mpos_es::{
    ChainSigner, EventStore, NewEvent, Projection, ProjectionRunner, Replayed, ReplayedReadModel,
    StoreError, StoredEvent, now_micros,
};
use mpos_http::OperatorAuth;
use secrecy::SecretString;
use serde_json::{Value, json};

const OPERATOR: &str = "operator-token-0123456789abcdef0123456789abcdef";

/// A service API that answers what it was asked: method, path, query, the caller's
/// authorization and content type, and the body.
async fn echo_service() -> SocketAddr {
    let app = Router::new().fallback(any(
        |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            };
            let status = if header("authorization").is_some() {
                axum::http::StatusCode::OK
            } else {
                axum::http::StatusCode::UNAUTHORIZED
            };
            (
                status,
                axum::Json(json!({
                    "method": method.as_str(),
                    "path": uri.path(),
                    "query": uri.query(),
                    "authorization": header("authorization"),
                    "contentType": header("content-type"),
                    "cookie": header("cookie"),
                    "body": String::from_utf8_lossy(&body),
                })),
            )
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

async fn serve(console: Console) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, console.router()).await.unwrap() });
    format!("http://{address}")
}

fn console() -> Console {
    Console::new(OperatorAuth::new(&SecretString::from(OPERATOR.to_owned()))).expect("console")
}

/// The JSON answer of `GET url`, with `bearer` if given.
async fn get_json(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> Value {
    let mut request = client.get(url);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    request.send().await.unwrap().json().await.unwrap()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn the_page_is_served_under_a_strict_policy() {
    let base = serve(console()).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(root.status().as_u16(), 308);
    assert_eq!(root.headers()["location"], "/console/");
    for (path, content_type) in [
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    let index = client
        .get(format!("{base}/console/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(index.contains(r#"src="app.js""#), "{index}");
    assert!(!index.contains("<script>"), "no inline script: {index}");
    let missing = client
        .get(format!("{base}/console/secrets.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["code"], "not_found");
}

#[tokio::test]
async fn calls_are_forwarded_to_the_service_api_and_nowhere_else() {
    let service = echo_service().await;
    let console = console()
        .upstream("routing", &format!("http://{service}"))
        .unwrap()
        .upstream(
            "authorization",
            &format!("http://127.0.0.1:{}", closed_port()),
        )
        .unwrap();
    let base = serve(console).await;
    let client = reqwest::Client::new();

    let config = get_json(&client, &format!("{base}/console/api/config"), None).await;
    assert_eq!(
        config,
        json!({"services": ["authorization", "routing"], "audit": false, "replay": false})
    );

    // Forwarded as asked, with the caller's token and body; never the caller's cookies.
    let response = client
        .put(format!(
            "{base}/console/api/svc/routing/v1/tenants/acme/routing-rules?expected_version=3"
        ))
        .bearer_auth("mpk_tenant_key")
        .header("cookie", "session=1")
        .json(&json!({"rules": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let echoed: Value = response.json().await.unwrap();
    assert_eq!(
        echoed,
        json!({
            "method": "PUT",
            "path": "/v1/tenants/acme/routing-rules",
            "query": "expected_version=3",
            "authorization": "Bearer mpk_tenant_key",
            "contentType": "application/json",
            "cookie": null,
            "body": r#"{"rules":[]}"#,
        })
    );
    // The service's own answer comes back as it is, refusals included.
    let response = client
        .get(format!(
            "{base}/console/api/svc/routing/v1/tenants/acme/acquirers"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    // Nothing outside a service's API, no service the console does not know.
    for (path, status, code) in [
        ("/console/api/svc/routing/metrics", 404, "not_found"),
        (
            "/console/api/svc/key-injection/v1/tenants",
            404,
            "not_found",
        ),
        ("/console/api/svc/nowhere/v1/tenants", 404, "not_found"),
        (
            "/console/api/svc/authorization/v1/tenants/acme/payments",
            503,
            "unavailable",
        ),
    ] {
        let response = client
            .get(format!("{base}{path}"))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], code, "{path}: {error}");
        assert!(
            !error.to_string().contains("127.0.0.1"),
            "no address in the error: {error}"
        );
    }
    // Paths an HTTP client would normalize, sent as they are.
    for path in [
        "/console/api/svc/routing/v1/%2e%2e/metrics",
        "/console/api/svc/routing/v1/../../metrics",
        "/console/api/svc/routing/v1//x",
        "/console/api/svc/routing/v1/a%2Fb",
    ] {
        assert_eq!(raw_get(&base, path).await, 400, "{path}");
    }
    let response = client
        .patch(format!("{base}/console/api/svc/routing/v1/tenants/acme"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = client
        .post(format!(
            "{base}/console/api/svc/routing/v1/tenants/acme/acquirers"
        ))
        .bearer_auth(OPERATOR)
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
}

/// The status of `GET path` sent byte for byte, as no HTTP client library would send it.
async fn raw_get(base: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {OPERATOR}\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("{answer}"))
}

#[test]
fn upstreams_must_be_a_service_and_a_bare_http_url() {
    for (service, base) in [
        ("nowhere", "http://127.0.0.1:1"),
        ("routing", "ftp://127.0.0.1:1"),
        ("routing", "http://127.0.0.1:1/v1"),
        ("routing", "http://user@127.0.0.1:1"),
        ("routing", "not a url"),
    ] {
        assert!(
            console().upstream(service, base).is_err(),
            "{service} {base}"
        );
    }
}

fn event(aggregate: &str, sequence: u64) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        tenant_id: "acme".into(),
        aggregate_type: "counter".into(),
        aggregate_id: aggregate.into(),
        sequence,
        event_type: "mpos.test.v1.Incremented".into(),
        event_version: "1.0".into(),
        payload: json!({ "n": sequence }).to_string(),
        metadata: r#"{"actor":"test"}"#.into(),
        occurred_at_us: now_micros(),
    }
}

/// A POST to `url` with `bearer`, if any: the status and the JSON answer.
async fn post(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut request = client.post(url);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json::<Value>().await.unwrap(),
    )
}

#[tokio::test]
async fn audit_verification_is_the_operators_and_names_an_altered_event() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("routing.db").display());
    let store = EventStore::connect(&url, "routing").await.unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    for sequence in 1..=6 {
        store
            .append(vec![event("a", sequence)], None)
            .await
            .unwrap();
    }
    ChainSigner::new(store.clone(), key.clone())
        .sign_head()
        .await
        .unwrap()
        .expect("checkpoint");
    let console = console().audit(AuditLogs::new(
        vec![("routing".to_owned(), store.clone())],
        vec![key.verifying_key()],
    ));
    let base = serve(console).await;
    let client = reqwest::Client::new();
    let endpoint = format!("{base}/console/api/audit/verify");
    let verify = |bearer: Option<&'static str>| post(&client, &endpoint, bearer);
    assert_eq!(verify(None).await.0, 401);
    let (status, error) = verify(Some("mpk_tenant_key")).await;
    assert_eq!((status, &error["code"]), (403, &json!("forbidden")));

    let (status, report) = verify(Some(OPERATOR)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report,
        json!({"intact": true, "services": [{
            "service": "routing", "intact": true, "eventsChecked": 6,
            "checkpointsChecked": 1, "lastPosition": 6, "finding": null,
        }]})
    );

    // An attacker with write access to the database changes one event.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(r#"UPDATE es_events SET payload = '{"n":999}' WHERE global_position = 3"#)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (status, report) = verify(Some(OPERATOR)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["intact"], false, "{report}");
    let finding = &report["services"][0]["finding"];
    assert_eq!(finding["kind"], "altered", "{report}");
    assert_eq!(finding["position"], 3, "{report}");
    assert!(
        finding["message"]
            .as_str()
            .is_some_and(|message| message.contains("position 3")),
        "{report}"
    );
    store.close().await;
}

/// A read model of the test events: per aggregate, how many events and their total.
#[derive(Debug)]
struct Totals;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Total {
    events: u64,
    sum: u64,
}

impl Projection for Totals {
    type View = Total;
    fn name(&self) -> &'static str {
        "test-totals"
    }
    fn document_id(&self, event: &StoredEvent) -> Option<String> {
        Some(event.event.aggregate_id.clone())
    }
    fn apply(&self, view: &mut Total, event: &StoredEvent) -> Result<(), StoreError> {
        let payload: Value = serde_json::from_str(&event.event.payload)?;
        view.events += 1;
        view.sum += payload["n"].as_u64().unwrap_or(0);
        Ok(())
    }
}

fn totals() -> Vec<Box<dyn ReplayedReadModel>> {
    vec![Box::new(Replayed::new(Totals))]
}

#[tokio::test]
async fn the_read_models_replay_is_the_operators_and_names_a_read_model_that_differs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("routing.db").display());
    let store = EventStore::connect(&url, "routing").await.unwrap();
    for sequence in 1..=5 {
        for aggregate in ["a", "b"] {
            store
                .append(vec![event(aggregate, sequence)], None)
                .await
                .unwrap();
        }
    }
    // The live read model, as the service keeps it.
    let caught_up = ProjectionRunner::new(store.clone(), Totals)
        .catch_up()
        .await
        .unwrap();
    assert_eq!(caught_up, 10);
    let console = console().audit(
        AuditLogs::new(vec![("routing".to_owned(), store.clone())], Vec::new())
            .read_models("routing", totals),
    );
    let base = serve(console).await;
    let client = reqwest::Client::new();
    let config = get_json(&client, &format!("{base}/console/api/config"), None).await;
    assert_eq!(config["replay"], true, "{config}");
    let endpoint = format!("{base}/console/api/audit/replay");
    let replay = |bearer: Option<&'static str>| post(&client, &endpoint, bearer);
    assert_eq!(replay(None).await.0, 401);
    let (status, error) = replay(Some("mpk_tenant_key")).await;
    assert_eq!((status, &error["code"]), (403, &json!("forbidden")));

    let (status, report) = replay(Some(OPERATOR)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["identical"], true, "{report}");
    let service = &report["services"][0];
    assert_eq!(
        (&service["service"], &service["eventsRead"]),
        (&json!("routing"), &json!(10)),
        "{report}"
    );
    let model = &service["readModels"][0];
    assert_eq!(
        (&model["name"], &model["position"], &model["identical"]),
        (&json!("test-totals"), &json!(10), &json!(true)),
        "{report}"
    );
    assert_eq!(model["live"], model["replayed"], "{report}");
    assert_eq!(model["live"]["documents"], 2, "{report}");

    // A document changed in the database behind the service's back.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let changed = sqlx::query(
        r#"UPDATE es_documents SET payload = '{"events":5,"sum":999}' WHERE projection = 'test-totals' AND document_id = 'a'"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    pool.close().await;
    let (status, report) = replay(Some(OPERATOR)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["identical"], false, "{report}");
    let model = &report["services"][0]["readModels"][0];
    assert_eq!(model["identical"], false, "{report}");
    assert_ne!(
        model["live"]["digest"], model["replayed"]["digest"],
        "{report}"
    );
    store.close().await;
}

/// The `mpos-console` binary with `vars` (and nothing else from the environment).
fn binary(vars: &[(&str, String)]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mpos-console"));
    command
        .env_clear()
        .env("MPOS_LOG", "warn")
        .envs(vars.iter().map(|(name, value)| (*name, value.as_str())));
    command
}

#[tokio::test]
async fn the_binary_serves_the_console_in_front_of_a_deployment() {
    let service = echo_service().await;
    let mut child = binary(&[
        ("MPOS_CONSOLE_ADDR", "127.0.0.1:0".to_owned()),
        ("MPOS_OPERATOR_TOKEN", OPERATOR.to_owned()),
        ("MPOS_CONSOLE_API_ROUTING", format!("http://{service}")),
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .next()
            .expect("a line")
            .expect("read")
    })
    .await
    .unwrap();
    let page = line
        .strip_prefix("mpos-console: ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let base = page.trim_end_matches("/console/").to_owned();
    let client = reqwest::Client::new();
    let echoed = get_json(
        &client,
        &format!("{base}/console/api/svc/routing/v1/tenants/acme/acquirers"),
        Some("mpk_key"),
    )
    .await;
    assert_eq!(echoed["path"], "/v1/tenants/acme/acquirers");
    assert_eq!(echoed["authorization"], "Bearer mpk_key");
    // No audit logs given: verification is not offered.
    let config = get_json(&client, &format!("{base}/console/api/config"), None).await;
    assert_eq!(
        config,
        json!({"services": ["routing"], "audit": false, "replay": false})
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_bad_variable_stops_the_binary_with_one_line() {
    for (vars, named) in [
        (vec![], "MPOS_OPERATOR_TOKEN"),
        (
            vec![("MPOS_OPERATOR_TOKEN", OPERATOR.to_owned())],
            "MPOS_CONSOLE_API_TERMINAL_MANAGEMENT",
        ),
        (
            vec![
                ("MPOS_OPERATOR_TOKEN", OPERATOR.to_owned()),
                ("MPOS_CONSOLE_API_ROUTING", "ftp://host:1".to_owned()),
            ],
            "MPOS_CONSOLE_API_ROUTING",
        ),
        (
            vec![
                ("MPOS_OPERATOR_TOKEN", OPERATOR.to_owned()),
                ("MPOS_CONSOLE_API_ROUTING", "http://127.0.0.1:1".to_owned()),
                (
                    "MPOS_CONSOLE_AUDIT_DATABASE_ROUTING",
                    "sqlite:///tmp/none.db".to_owned(),
                ),
                ("MPOS_CONSOLE_TRUSTED_KEYS", "not-hex".to_owned()),
            ],
            "MPOS_CONSOLE_TRUSTED_KEYS",
        ),
    ] {
        let output = binary(&vars).output().expect("run");
        assert_eq!(output.status.code(), Some(78), "{named}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{named}: {stderr}");
        assert!(lines[0].contains(named), "{named}: {stderr}");
    }
}
