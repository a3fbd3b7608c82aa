//! Logs, traces, metrics and the admin listener, the same way in every service.
//!
//! - [`TelemetryConfig::from_vars`] reads `MPOS_LOG_FORMAT`, `MPOS_LOG` and `MPOS_OTLP_ENDPOINT`.
//! - [`init`] installs the global `tracing` subscriber (JSON logs on stdout by default), an
//!   OpenTelemetry layer (spans exported over OTLP/HTTP only when an endpoint is configured),
//!   the W3C trace-context propagator and the global `metrics` recorder.
//! - [`serve_admin`] answers `/livez`, `/readyz` and `/metrics` on a separate admin port.
//! - [`metric_names`] and [`labels`] are the instrumentation contract: every service uses these
//!   names (see `docs/observability.md`).
//! - [`inject_headers`], [`extract_context`], [`current_traceparent`] and
//!   [`set_parent_from_traceparent`] carry a trace across NATS and Kafka headers.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let vars = mpos_config::Vars::from_env();
//! let config = mpos_config::exit_on_error(mpos_telemetry::TelemetryConfig::from_vars(
//!     &vars,
//!     "terminal-management",
//! ));
//! let telemetry = mpos_telemetry::init(&config)?;
//! let readiness = mpos_telemetry::Readiness::new();
//! readiness.add_check("event_store", || async { Ok(()) });
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:9090").await?;
//! mpos_telemetry::serve_admin(listener, readiness, telemetry.metrics(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```

mod admin;
mod metrics_handle;
mod propagation;
mod readiness;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use mpos_config::{ConfigError, Vars};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use admin::serve_admin;
pub use metrics_handle::{MetricsHandle, describe_metrics, labels, metric_names};
pub use propagation::{
    TRACEPARENT, current_traceparent, extract_context, inject_headers, set_parent_from_traceparent,
};
pub use readiness::{CHECK_TIMEOUT, CheckStatus, Readiness, ReadinessReport};

/// Log output format (`MPOS_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line on stdout (the default; what log shippers read).
    #[default]
    Json,
    /// Human-readable single lines, for a terminal.
    Pretty,
}

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            _ => Err(UnknownLogFormat),
        }
    }
}

/// A `MPOS_LOG_FORMAT` value other than `json` or `pretty`.
#[derive(Debug, thiserror::Error)]
#[error("expected json or pretty")]
pub struct UnknownLogFormat;

/// Environment variable: log format, `json` (default) or `pretty`.
pub const VAR_LOG_FORMAT: &str = "MPOS_LOG_FORMAT";
/// Environment variable: log filter in `tracing` `EnvFilter` syntax, default `info`.
pub const VAR_LOG: &str = "MPOS_LOG";
/// Environment variable: OTLP/HTTP collector URL; trace export is off when unset.
pub const VAR_OTLP_ENDPOINT: &str = "MPOS_OTLP_ENDPOINT";

/// How a process logs and traces. `Debug` hides a password in the endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `service.name` of exported spans, e.g. `terminal-management` or `mposd`.
    pub service_name: String,
    /// Log output format.
    pub log_format: LogFormat,
    /// Log filter in `EnvFilter` syntax, e.g. `info` or `info,mpos_es=debug`.
    pub log_filter: String,
    /// OTLP/HTTP collector, e.g. `http://otel-collector:4318`; `None` turns export off.
    pub otlp_endpoint: Option<url::Url>,
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = self.otlp_endpoint.as_ref().map(|endpoint| {
            let mut shown = endpoint.clone();
            if shown.password().is_some() {
                // Fails only for URLs that cannot have a password; then there is none.
                let _ = shown.set_password(Some("***"));
            }
            shown.to_string()
        });
        f.debug_struct("TelemetryConfig")
            .field("service_name", &self.service_name)
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("otlp_endpoint", &endpoint)
            .finish()
    }
}

impl TelemetryConfig {
    /// Reads `MPOS_LOG_FORMAT`, `MPOS_LOG` and `MPOS_OTLP_ENDPOINT`.
    pub fn from_vars(vars: &Vars, service_name: &str) -> Result<Self, ConfigError> {
        const FILTER_EXPECTED: &str = "a log filter like info or info,mpos_es=debug";
        let log_format = vars.parse(VAR_LOG_FORMAT, Some(LogFormat::Json), "json or pretty")?;
        let log_filter = vars.string(VAR_LOG, Some("info"), FILTER_EXPECTED)?;
        if EnvFilter::try_new(&log_filter).is_err() {
            return Err(ConfigError::invalid(VAR_LOG, FILTER_EXPECTED, &log_filter));
        }
        let otlp_endpoint = if vars.is_set(VAR_OTLP_ENDPOINT) {
            Some(vars.url(VAR_OTLP_ENDPOINT, None, &["http"])?)
        } else {
            None
        };
        Ok(Self {
            service_name: service_name.to_owned(),
            log_format,
            log_filter,
            otlp_endpoint,
        })
    }

    /// Defaults: JSON logs at `info`, no trace export.
    pub fn new(service_name: &str) -> Self {
        Self {
            service_name: service_name.to_owned(),
            log_format: LogFormat::Json,
            log_filter: "info".to_owned(),
            otlp_endpoint: None,
        }
    }

    /// The URL spans are posted to: the endpoint as given when it has a path, otherwise
    /// `/v1/traces` on it (the OTLP/HTTP convention).
    pub fn otlp_traces_url(&self) -> Option<url::Url> {
        let endpoint = self.otlp_endpoint.as_ref()?;
        if endpoint.path() == "/" || endpoint.path().is_empty() {
            endpoint.join("/v1/traces").ok()
        } else {
            Some(endpoint.clone())
        }
    }
}

/// Why [`init`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// [`init`] ran before in this process.
    #[error("telemetry is already initialised in this process")]
    AlreadyInitialized,
    /// The log filter does not parse.
    #[error("invalid log filter {filter:?}: {reason}")]
    InvalidFilter {
        /// The filter as given.
        filter: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The OTLP exporter cannot be built.
    #[error("cannot build the otlp exporter: {0}")]
    Exporter(String),
    /// Another global `tracing` subscriber is installed.
    #[error("cannot install the tracing subscriber: {0}")]
    Subscriber(String),
    /// Another global `metrics` recorder is installed.
    #[error("cannot install the metrics recorder: {0}")]
    MetricsRecorder(String),
}

/// Set by the first [`init`]; later calls fail instead of panicking.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Installed telemetry. Keep it alive for the life of the process: dropping it flushes pending
/// spans and shuts the tracer provider down.
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    metrics: MetricsHandle,
    exporting: bool,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.exporting)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// The handle of the global metrics recorder, for `/metrics`.
    pub fn metrics(&self) -> MetricsHandle {
        self.metrics.clone()
    }

    /// Whether spans are exported over OTLP.
    pub fn is_exporting(&self) -> bool {
        self.exporting
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(error) = provider.shutdown()
        {
            // The subscriber may be gone already; stderr is the one place left.
            eprintln!("tracer provider shutdown failed: {error}");
        }
    }
}

/// Installs the global telemetry: `tracing` subscriber (logs on stdout in the configured
/// format, filtered by `log_filter`), an OpenTelemetry layer so that every span has a trace
/// id that propagates (exported over OTLP/HTTP only when `otlp_endpoint` is set), the W3C
/// trace-context propagator and the global `metrics` recorder.
///
/// Once per process: a second call returns [`TelemetryError::AlreadyInitialized`].
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let filter =
        EnvFilter::try_new(&config.log_filter).map_err(|error| TelemetryError::InvalidFilter {
            filter: config.log_filter.clone(),
            reason: error.to_string(),
        })?;
    if INITIALIZED
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err(TelemetryError::AlreadyInitialized);
    }

    let mut provider_builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(config.service_name.clone())
            .build(),
    );
    let traces_url = config.otlp_traces_url();
    if let Some(url) = &traces_url {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.as_str())
            .build()
            .map_err(|error| {
                // Nothing global is installed yet: a later call may try again.
                INITIALIZED.store(false, Ordering::SeqCst);
                TelemetryError::Exporter(error.to_string())
            })?;
        provider_builder = provider_builder.with_batch_exporter(exporter);
    }
    let provider = provider_builder.build();
    let tracer = provider.tracer(config.service_name.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());

    let fmt_layer = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stdout)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()
        .map_err(|error| TelemetryError::Subscriber(error.to_string()))?;

    let metrics = MetricsHandle::standalone();
    metrics
        .install_global()
        .map_err(|error| TelemetryError::MetricsRecorder(error.to_string()))?;
    describe_metrics();

    tracing::info!(
        service = %config.service_name,
        otlp_traces_url = traces_url.as_ref().map(url::Url::as_str),
        "telemetry initialised"
    );
    Ok(Telemetry {
        tracer_provider: Some(provider),
        metrics,
        exporting: traces_url.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let config = TelemetryConfig::from_vars(&vars(&[]), "tms").expect("defaults");
        assert_eq!(config, TelemetryConfig::new("tms"));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.log_filter, "info");
        assert!(config.otlp_endpoint.is_none());
        assert!(config.otlp_traces_url().is_none());
    }

    #[test]
    fn reads_every_variable() {
        let config = TelemetryConfig::from_vars(
            &vars(&[
                ("MPOS_LOG_FORMAT", "Pretty"),
                ("MPOS_LOG", "warn,mpos_es=debug"),
                ("MPOS_OTLP_ENDPOINT", "http://otel-collector:4318"),
            ]),
            "gateway",
        )
        .expect("valid");
        assert_eq!(config.service_name, "gateway");
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert_eq!(config.log_filter, "warn,mpos_es=debug");
        assert_eq!(
            config.otlp_traces_url().map(String::from).as_deref(),
            Some("http://otel-collector:4318/v1/traces")
        );
    }

    #[test]
    fn an_endpoint_with_a_path_is_used_as_given() {
        let config = TelemetryConfig::from_vars(
            &vars(&[("MPOS_OTLP_ENDPOINT", "http://collector:4318/custom/traces")]),
            "tms",
        )
        .expect("valid");
        assert_eq!(
            config.otlp_traces_url().map(String::from).as_deref(),
            Some("http://collector:4318/custom/traces")
        );
    }

    #[test]
    fn bad_otlp_endpoint_is_one_clear_line() {
        for (value, shown) in [
            ("grpc://collector:4317", "grpc://collector:4317"),
            ("collector:4318", "collector:4318"),
            (
                "https://user:topsecret@collector:4318",
                "https://***@collector:4318",
            ),
        ] {
            let error = TelemetryConfig::from_vars(&vars(&[("MPOS_OTLP_ENDPOINT", value)]), "tms")
                .expect_err(value)
                .to_string();
            assert_eq!(
                error,
                format!("MPOS_OTLP_ENDPOINT: expected a http:// URL, got {shown:?}")
            );
        }
    }

    #[test]
    fn debug_hides_an_endpoint_password() {
        let config = TelemetryConfig::from_vars(
            &vars(&[("MPOS_OTLP_ENDPOINT", "http://user:topsecret@collector:4318")]),
            "tms",
        )
        .expect("valid");
        let debug = format!("{config:?}");
        assert!(!debug.contains("topsecret"), "{debug}");
        assert!(debug.contains("http://user:***@collector:4318/"), "{debug}");
    }

    #[test]
    fn bad_log_format_and_filter() {
        let error = TelemetryConfig::from_vars(&vars(&[("MPOS_LOG_FORMAT", "xml")]), "tms")
            .expect_err("format")
            .to_string();
        assert_eq!(
            error,
            "MPOS_LOG_FORMAT: expected json or pretty, got \"xml\""
        );
        let error = TelemetryConfig::from_vars(&vars(&[("MPOS_LOG", "info,[[[")]), "tms")
            .expect_err("filter")
            .to_string();
        assert!(
            error.starts_with("MPOS_LOG: expected a log filter"),
            "{error}"
        );
    }

    #[test]
    fn init_rejects_a_bad_filter_without_side_effects() {
        let mut config = TelemetryConfig::new("tms");
        config.log_filter = "info,[[[".to_owned();
        assert!(matches!(
            init(&config),
            Err(TelemetryError::InvalidFilter { .. })
        ));
    }
}
