//! The admin listener on a random port, with a real HTTP client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mpos_telemetry::{MetricsHandle, Readiness, labels, metric_names, serve_admin};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Admin {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    client: reqwest::Client,
}

impl Admin {
    async fn start(readiness: Readiness, metrics: MetricsHandle) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address: SocketAddr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_admin(listener, readiness, metrics, async move {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{address}"),
            stop: Some(stop),
            task,
            client: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("join").expect("serve");
    }
}

#[tokio::test]
async fn livez_is_ok() {
    let admin = Admin::start(Readiness::new(), MetricsHandle::standalone()).await;
    let response = admin.get("/livez").await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.expect("body"), "ok");
    admin.stop().await;
}

#[tokio::test]
async fn readyz_follows_its_checks() {
    let readiness = Readiness::new();
    let bus_up = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&bus_up);
    readiness.add_check("bus", move || {
        let up = flag.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(())
            } else {
                Err("no connection to nats".to_owned())
            }
        }
    });
    readiness.add_check("event_store", || async { Ok(()) });
    let admin = Admin::start(readiness, MetricsHandle::standalone()).await;

    let response = admin.get("/readyz").await;
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({
            "ready": false,
            "checks": {
                "bus": {"ok": false, "error": "no connection to nats"},
                "event_store": {"ok": true}
            }
        })
    );

    bus_up.store(true, Ordering::SeqCst);
    let response = admin.get("/readyz").await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({
            "ready": true,
            "checks": {"bus": {"ok": true}, "event_store": {"ok": true}}
        })
    );
    admin.stop().await;
}

#[tokio::test]
async fn metrics_renders_the_prometheus_text() {
    let metrics = MetricsHandle::standalone();
    metrics.in_scope(|| {
        metrics::counter!(
            metric_names::HTTP_REQUESTS_TOTAL,
            labels::SERVICE => "terminal-management",
            labels::ROUTE => "/v1/terminals/{id}",
            labels::STATUS => "200"
        )
        .increment(2);
    });
    let admin = Admin::start(Readiness::new(), metrics).await;
    let response = admin.get("/metrics").await;
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    assert!(
        text.contains(
            "mpos_http_requests_total{service=\"terminal-management\",route=\"/v1/terminals/{id}\",status=\"200\"} 2"
        ),
        "{text}"
    );
    admin.stop().await;
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let admin = Admin::start(Readiness::new(), MetricsHandle::standalone()).await;
    let response = admin.get("/admin/secret").await;
    assert_eq!(response.status().as_u16(), 404);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["message"], "no admin route /admin/secret");
    admin.stop().await;
}

#[tokio::test]
async fn shutdown_stops_the_listener() {
    let admin = Admin::start(Readiness::new(), MetricsHandle::standalone()).await;
    let base = admin.base.clone();
    admin.stop().await;
    let refused = reqwest::Client::new()
        .get(format!("{base}/livez"))
        .send()
        .await;
    assert!(refused.is_err());
}
