//! The Prometheus recorder and the instrumentation contract (metric and label names).

use std::fmt;
use std::sync::Arc;

use metrics::SetRecorderError;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Histogram buckets, in seconds, of every `*_seconds` metric: 5 ms to 5 min.
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The names every component records under, so that all services look alike on one
/// dashboard. Label keys are in [`labels`](crate::labels); `docs/observability.md` lists
/// which labels each metric carries.
pub mod metric_names {
    /// Counter: events appended to the event store. Labels: `service`, `aggregate_type`.
    pub const EVENTS_APPENDED_TOTAL: &str = "mpos_events_appended_total";
    /// Counter: outbox entries published. Labels: `service`, `sink`.
    pub const OUTBOX_PUBLISHED_TOTAL: &str = "mpos_outbox_published_total";
    /// Histogram: seconds from an event's commit to its publication. Labels: `service`, `sink`.
    pub const OUTBOX_LAG_SECONDS: &str = "mpos_outbox_lag_seconds";
    /// Counter: HTTP requests answered. Labels: `service`, `route`, `status`.
    pub const HTTP_REQUESTS_TOTAL: &str = "mpos_http_requests_total";
    /// Histogram: HTTP request duration in seconds. Labels: `service`, `route`.
    pub const HTTP_REQUEST_DURATION_SECONDS: &str = "mpos_http_request_duration_seconds";
    /// Counter: bus requests handled or sent. Labels: `service`, `subject`, `outcome`.
    pub const BUS_REQUESTS_TOTAL: &str = "mpos_bus_requests_total";
    /// Histogram: bus request duration in seconds. Labels: `service`, `subject`.
    pub const BUS_REQUEST_DURATION_SECONDS: &str = "mpos_bus_request_duration_seconds";
    /// Counter: errors returned to callers, by shared error code. Labels: `service`, `code`.
    pub const ERRORS_TOTAL: &str = "mpos_errors_total";
    /// Gauge: readiness of each check (1 ready, 0 not). Labels: `check`.
    pub const READINESS_CHECK_UP: &str = "mpos_readiness_check_up";
}

/// Label keys of the instrumentation contract. Label values name code paths (services,
/// routes, aggregate types, error codes), never data: no card data, secrets, tokens, ids of
/// merchants, terminals or transactions.
pub mod labels {
    /// The service name, e.g. `terminal-management`.
    pub const SERVICE: &str = "service";
    /// The aggregate type, e.g. `terminal`.
    pub const AGGREGATE_TYPE: &str = "aggregate_type";
    /// Where an outbox publishes to, e.g. `nats` or `kafka`.
    pub const SINK: &str = "sink";
    /// The route template, e.g. `/v1/terminals/{id}` (never the concrete path).
    pub const ROUTE: &str = "route";
    /// The HTTP status code, e.g. `200`.
    pub const STATUS: &str = "status";
    /// The bus subject template, e.g. `tms.terminal.register`.
    pub const SUBJECT: &str = "subject";
    /// `ok` or a shared error code name.
    pub const OUTCOME: &str = "outcome";
    /// A shared error code name ([`mpos_errors::ErrorCode::as_str`]).
    pub const CODE: &str = "code";
    /// A readiness check name, e.g. `event_store`.
    pub const CHECK: &str = "check";
}

/// Registers help texts and units for the contract's metrics with the current recorder.
/// [`init`](crate::init) calls it for the global recorder.
pub fn describe_metrics() {
    use metric_names::*;
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        EVENTS_APPENDED_TOTAL,
        Unit::Count,
        "events appended to the event store"
    );
    describe_counter!(
        OUTBOX_PUBLISHED_TOTAL,
        Unit::Count,
        "outbox entries published"
    );
    describe_histogram!(
        OUTBOX_LAG_SECONDS,
        Unit::Seconds,
        "seconds from commit to publication"
    );
    describe_counter!(HTTP_REQUESTS_TOTAL, Unit::Count, "http requests answered");
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "http request duration"
    );
    describe_counter!(BUS_REQUESTS_TOTAL, Unit::Count, "bus requests");
    describe_histogram!(
        BUS_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "bus request duration"
    );
    describe_counter!(ERRORS_TOTAL, Unit::Count, "errors returned, by error code");
    describe_gauge!(
        READINESS_CHECK_UP,
        "readiness check state at the last evaluation (1 ready, 0 not)"
    );
}

/// A Prometheus recorder and the handle that renders it as text.
#[derive(Clone)]
pub struct MetricsHandle {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsHandle").finish_non_exhaustive()
    }
}

impl MetricsHandle {
    /// A recorder that is not installed globally, for tests and embedding: record into it
    /// with [`MetricsHandle::in_scope`].
    pub fn standalone() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            // The bucket list is a non-empty constant; the fallback only guards against edits.
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        Self {
            recorder: Arc::new(recorder),
            handle,
        }
    }

    /// Installs this recorder as the process-wide `metrics` recorder.
    pub(crate) fn install_global(&self) -> Result<(), SetRecorderError<Arc<PrometheusRecorder>>> {
        metrics::set_global_recorder(Arc::clone(&self.recorder))
    }

    /// Runs `f` with this recorder as the thread's `metrics` recorder, so that `counter!` and
    /// friends inside record here (the global recorder is used outside).
    pub fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// The current values in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; [`serve_admin`](crate::serve_admin) runs
    /// it every few seconds.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_counters_and_histograms_render() {
        let metrics = MetricsHandle::standalone();
        metrics.in_scope(|| {
            describe_metrics();
            metrics::counter!(
                metric_names::EVENTS_APPENDED_TOTAL,
                labels::SERVICE => "tms",
                labels::AGGREGATE_TYPE => "terminal"
            )
            .increment(3);
            metrics::histogram!(metric_names::OUTBOX_LAG_SECONDS, labels::SERVICE => "tms")
                .record(0.02);
        });
        let text = metrics.render();
        assert!(
            text.contains(
                "mpos_events_appended_total{service=\"tms\",aggregate_type=\"terminal\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE mpos_outbox_lag_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("mpos_outbox_lag_seconds_bucket{service=\"tms\",le=\"0.025\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# HELP mpos_events_appended_total events appended"),
            "{text}"
        );
    }

    #[test]
    fn standalone_handles_are_independent() {
        let first = MetricsHandle::standalone();
        let second = MetricsHandle::standalone();
        first.in_scope(|| metrics::counter!("mpos_only_in_first_total").increment(1));
        assert!(first.render().contains("mpos_only_in_first_total"));
        assert!(!second.render().contains("mpos_only_in_first_total"));
    }
}
