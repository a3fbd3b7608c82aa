//! W3C trace context (`traceparent`, `tracestate`) in message headers.
//!
//! These helpers use a [`TraceContextPropagator`] of their own, so they work whether or not
//! [`init`](crate::init) ran (which also installs it as the global propagator). They read and
//! write the OpenTelemetry context of `tracing` spans, which exists when the
//! `tracing-opentelemetry` layer is installed (as [`init`](crate::init) does).

use std::collections::BTreeMap;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header that carries the trace and parent span ids.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of the current `tracing` span, e.g.
/// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`; `None` outside a span or without
/// the OpenTelemetry layer.
pub fn current_traceparent() -> Option<String> {
    let mut headers = BTreeMap::new();
    inject_headers(&mut headers);
    headers.remove(TRACEPARENT)
}

/// Makes `span` continue the trace of `traceparent` (from a NATS or Kafka header). Call it
/// before entering the span for the first time; an invalid `traceparent` is ignored, so the
/// span starts a new trace.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    let headers = BTreeMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let context = extract_context(&headers);
    if !context.span().span_context().is_valid() {
        tracing::debug!("ignoring an invalid traceparent header");
        return;
    }
    if let Err(error) = span.set_parent(context) {
        tracing::debug!(%error, "cannot set the parent of the span");
    }
}

/// Writes the current `tracing` span's trace context into `headers` (`traceparent` and, when
/// present, `tracestate`); writes nothing outside a span.
pub fn inject_headers(headers: &mut BTreeMap<String, String>) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// The trace context carried in `headers`, to pass to `OpenTelemetrySpanExt::set_parent`; an
/// empty context when there is none or it is invalid.
pub fn extract_context(headers: &BTreeMap<String, String>) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes header names in lowercase, as W3C trace context defines them.
struct HeaderInjector<'a>(&'a mut BTreeMap<String, String>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_ascii_lowercase(), value);
    }
}

/// Reads header names in any case (`traceparent`, `Traceparent`).
struct HeaderExtractor<'a>(&'a BTreeMap<String, String>);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .or_else(|| {
                self.0
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(key))
                    .map(|(_, value)| value)
            })
            .map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{TraceId, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Runs `f` with a subscriber whose OpenTelemetry layer uses a real SDK tracer without
    /// exporter, installed for this thread only.
    fn with_tracing<T>(f: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    fn trace_id_of(traceparent: &str) -> &str {
        traceparent.split('-').nth(1).unwrap_or_default()
    }

    #[test]
    fn inject_then_extract_keeps_the_trace_id() {
        with_tracing(|| {
            let span = tracing::info_span!("publish");
            let _entered = span.enter();
            let mut headers = BTreeMap::new();
            inject_headers(&mut headers);
            let traceparent = headers.get(TRACEPARENT).expect("traceparent injected");
            assert_eq!(traceparent.len(), 55, "{traceparent}");

            let extracted = extract_context(&headers);
            let expected = span.context().span().span_context().trace_id();
            assert_ne!(expected, TraceId::INVALID);
            assert_eq!(extracted.span().span_context().trace_id(), expected);
            assert_eq!(current_traceparent().as_deref(), Some(traceparent.as_str()));
        });
    }

    #[test]
    fn a_received_traceparent_is_continued() {
        let received = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        with_tracing(|| {
            let span = tracing::info_span!("handle");
            set_parent_from_traceparent(&span, received);
            let _entered = span.enter();
            let current = current_traceparent().expect("in a span");
            assert_eq!(trace_id_of(&current), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_ne!(current, received, "a new span id under the same trace");

            let child = tracing::info_span!("child");
            let _child = child.enter();
            let nested = current_traceparent().expect("in a child span");
            assert_eq!(trace_id_of(&nested), "4bf92f3577b34da6a3ce929d0e0e4736");
        });
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace() {
        with_tracing(|| {
            let span = tracing::info_span!("handle");
            set_parent_from_traceparent(&span, "not-a-traceparent");
            let _entered = span.enter();
            let current = current_traceparent().expect("in a span");
            assert_eq!(trace_id_of(&current).len(), 32);
        });
    }

    #[test]
    fn header_names_are_matched_in_any_case() {
        let headers = BTreeMap::from([(
            "Traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        )]);
        let context = extract_context(&headers);
        assert_eq!(
            context.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn nothing_outside_a_span_or_without_the_layer() {
        with_tracing(|| assert_eq!(current_traceparent(), None));
        let span = tracing::info_span!("no subscriber");
        let _entered = span.enter();
        assert_eq!(current_traceparent(), None);
        assert!(
            !extract_context(&BTreeMap::new())
                .span()
                .span_context()
                .is_valid()
        );
    }
}
