//! Spans reach an OTLP/HTTP collector (a local fake) when `MPOS_OTLP_ENDPOINT` is set.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use mpos_config::Vars;
use mpos_telemetry::{TelemetryConfig, init};

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, usize)>>>);

async fn collect(State(received): State<Received>, headers: HeaderMap, body: Bytes) {
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    received
        .0
        .lock()
        .expect("lock")
        .push((content_type, body.len()));
}

#[test]
fn spans_are_exported_and_flushed_on_drop() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let received = Received::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(received.clone());
    runtime.spawn(async move { axum::serve(listener, app).await });

    let vars = Vars::from_pairs([("MPOS_OTLP_ENDPOINT", format!("http://{address}"))]);
    let config = TelemetryConfig::from_vars(&vars, "export-test").expect("config");
    let telemetry = init(&config).expect("init");
    assert!(telemetry.is_exporting());
    tracing::info_span!("exported_span").in_scope(|| tracing::info!("inside"));
    drop(telemetry);

    // Shutdown flushed the batch; allow the collector task a moment to record it.
    let mut waited = Duration::ZERO;
    while received.0.lock().expect("lock").is_empty() && waited < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    }
    let requests = received.0.lock().expect("lock").clone();
    assert!(!requests.is_empty(), "no export reached the collector");
    assert!(
        requests
            .iter()
            .all(|(content_type, size)| content_type == "application/x-protobuf" && *size > 0),
        "{requests:?}"
    );
}
