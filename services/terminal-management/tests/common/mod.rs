//! Starts terminal-management on real infrastructure, on random ports, for black-box tests.

#![allow(dead_code, unreachable_pub)]

pub mod pki;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mpos_config::Vars;
use mpos_es::EventStore;
use mpos_service::{CommonConfig, Infrastructure};
use mpos_telemetry::{MetricsHandle, Readiness};
use secrecy::SecretString;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "operator-token-for-tests-0123456789abcdef";
pub const SIGNING_KEY: &str = "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a";

/// The parameter-signing seed of test services.
pub const PARAMETER_SEED: [u8; 32] = [7; 32];

pub struct TestService {
    pub base: String,
    /// The device API (mTLS), as `https://localhost:<port>`.
    pub device_base: String,
    pub admin: String,
    pub store: EventStore,
    pub client: reqwest::Client,
    cancel: CancellationToken,
    running: Option<terminal_management::service::Running>,
    _dir: Option<tempfile::TempDir>,
}

impl TestService {
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(running) = self.running.take() {
            running.join().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("post");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("get");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// A request with a given bearer token (a tenant API key).
    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn post_as(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.call_as(token, reqwest::Method::POST, path, Some(body))
            .await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        self.call_as(token, reqwest::Method::GET, path, None).await
    }

    /// Creates a tenant and returns a fresh API key of it with `role`
    /// (`API_KEY_ROLE_ADMIN`, …).
    pub async fn tenant_with_key(&self, tenant_id: &str, role: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/tenants",
                serde_json::json!({"tenantId": tenant_id, "name": tenant_id}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        self.key(tenant_id, role).await
    }

    /// A fresh API key of an existing tenant, issued by the operator.
    pub async fn key(&self, tenant_id: &str, role: &str) -> String {
        let (status, body) = self
            .post(
                &format!("/v1/tenants/{tenant_id}/api-keys"),
                serde_json::json!({"role": role, "label": "tests"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["secret"].as_str().expect("secret").to_owned()
    }

    pub async fn event_count(&self) -> usize {
        self.store.read_after(0, 10_000).await.expect("read").len()
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

pub fn postgres_url() -> String {
    let base = std::env::var("MPOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    format!("{base}?schema={}", unique("tm_"))
}

pub fn nats_url() -> String {
    let base =
        std::env::var("MPOS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    format!("{base}?namespace={}", unique("tm"))
}

pub fn kafka_url() -> String {
    let base =
        std::env::var("MPOS_TEST_KAFKA_URL").unwrap_or_else(|_| "kafka://127.0.0.1:9092".into());
    format!("{base}?namespace={}", unique("tm"))
}

/// SQLite in a temp dir and an in-process bus: the embedded default.
pub async fn embedded() -> TestService {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", dir.path().join("tm.db").display());
    let mut service = start(
        &database,
        &format!("memory://{}", unique("tm")),
        None,
        Readiness::new(),
    )
    .await;
    service._dir = Some(dir);
    service
}

/// [`embedded`] with another service's device routes on the device listener (as `mposd`
/// serves key-injection's).
pub async fn embedded_with_device_routes(routes: axum::Router) -> TestService {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", dir.path().join("tm.db").display());
    let mut service = start_with(
        &database,
        &format!("memory://{}", unique("tm")),
        None,
        Readiness::new(),
        Some(routes),
    )
    .await;
    service._dir = Some(dir);
    service
}

pub async fn start(
    database_url: &str,
    bus_url: &str,
    kafka_url: Option<&str>,
    readiness: Readiness,
) -> TestService {
    start_with(database_url, bus_url, kafka_url, readiness, None).await
}

pub async fn start_with(
    database_url: &str,
    bus_url: &str,
    kafka_url: Option<&str>,
    readiness: Readiness,
    more_device_routes: Option<axum::Router>,
) -> TestService {
    start_following(
        database_url,
        bus_url,
        kafka_url,
        readiness,
        more_device_routes,
        None,
    )
    .await
}

/// [`start_with`], following the attestation service's events from `attestation_feed`
/// (`None`: the bus).
pub async fn start_following(
    database_url: &str,
    bus_url: &str,
    kafka_url: Option<&str>,
    readiness: Readiness,
    more_device_routes: Option<axum::Router>,
    attestation_feed: Option<mpos_feed::follow::FeedSource>,
) -> TestService {
    let mut pairs = vec![
        ("MPOS_DATABASE_URL", database_url.to_owned()),
        ("MPOS_BUS_URL", bus_url.to_owned()),
        ("MPOS_CHAIN_SIGNING_KEY", SIGNING_KEY.to_owned()),
        ("MPOS_POLL_INTERVAL_MS", "50".to_owned()),
    ];
    if let Some(kafka) = kafka_url {
        pairs.push(("MPOS_KAFKA_URL", kafka.to_owned()));
    }
    let vars = Vars::from_pairs(pairs);
    let config = CommonConfig::from_vars(
        &vars,
        terminal_management::SERVICE,
        "127.0.0.1:0",
        "127.0.0.1:0",
    )
    .expect("config");
    let cancel = CancellationToken::new();
    let infrastructure = Infrastructure::default();
    infrastructure.register_checks(&readiness, kafka_url.is_some());
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    let admin = format!("http://{}", admin_listener.local_addr().expect("addr"));
    tokio::spawn(mpos_telemetry::serve_admin(
        admin_listener,
        readiness,
        MetricsHandle::standalone(),
        cancel.clone().cancelled_owned(),
    ));
    let (store, bus) = infrastructure
        .connect(&config, &cancel)
        .await
        .expect("connected");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let options = terminal_management::service::TmOptions {
        operator_token: SecretString::from(TOKEN.to_owned()),
        parameter_signing_key: ed25519_dalek::SigningKey::from_bytes(&PARAMETER_SEED),
        device_addr: "127.0.0.1:0".parse().expect("addr"),
        device_tls: Some(pki::server_tls()),
        more_device_routes,
        attestation_feed,
    };
    let running = terminal_management::service::start(
        &config,
        store.clone(),
        &bus,
        &infrastructure,
        &options,
        listener,
        &cancel,
    )
    .await
    .expect("start");
    TestService {
        base: format!("http://{}", running.http_addr),
        device_base: format!("https://localhost:{}", running.device_addr.port()),
        admin,
        store,
        client: reqwest::Client::new(),
        cancel,
        running: Some(running),
        _dir: None,
    }
}

/// A TCP proxy to a real server that a test can cut and restore, to take a dependency away.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (task_up, task_cut) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !task_up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = task_cut.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        });
        Self { addr, up, cut }
    }

    /// Refuses new connections and drops the open ones.
    pub fn take_down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn bring_up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
