//! Global initialisation, in its own test process (it installs process-wide state).

use mpos_telemetry::{TelemetryConfig, TelemetryError, current_traceparent, init, metric_names};

#[test]
fn init_installs_everything_once() {
    let telemetry = init(&TelemetryConfig::new("init-test")).expect("first init");
    assert!(!telemetry.is_exporting());

    // The global recorder is the one behind `Telemetry::metrics`.
    metrics::counter!(metric_names::ERRORS_TOTAL, "service" => "init-test", "code" => "internal")
        .increment(1);
    let text = telemetry.metrics().render();
    assert!(
        text.contains("mpos_errors_total{service=\"init-test\",code=\"internal\"} 1"),
        "{text}"
    );
    assert!(text.contains("# HELP mpos_errors_total"), "{text}");

    // Spans get trace ids through the OpenTelemetry layer, without an exporter.
    let span = tracing::info_span!("request");
    let traceparent = span.in_scope(current_traceparent).expect("traceparent");
    assert!(traceparent.starts_with("00-"), "{traceparent}");
    tracing::info!(answer = 42, "structured log line");

    // The global propagator is W3C trace context.
    let mut headers = std::collections::HashMap::new();
    span.in_scope(|| {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&tracing::Span::current().context(), &mut headers);
        });
    });
    assert_eq!(headers.get("traceparent"), Some(&traceparent));

    // A second call fails instead of panicking.
    assert!(matches!(
        init(&TelemetryConfig::new("again")),
        Err(TelemetryError::AlreadyInitialized)
    ));
    drop(telemetry);
}
