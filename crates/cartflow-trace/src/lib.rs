//! Traces, the OpenTelemetry way, written once for every process:
//!
//! - [`export`]: the OTLP/HTTP exporter, set up from the standard
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_SERVICE_NAME` variables or
//!   cartflow's `[telemetry]` section, and the `tracing` layer that turns
//!   spans into OpenTelemetry spans;
//! - [`record`]: one event's way through the stages — a span per sampled
//!   record in each stage, parented by the W3C `traceparent` the record
//!   carries in its log headers, as Kafka's OpenTelemetry instrumentations do;
//! - [`step`] and [`request`]: spans of the stage driver and the HTTP layer.
//!
//! Off (no endpoint) it costs a relaxed atomic load where a span could start.

pub mod export;
pub mod record;

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use export::{Exporting, TraceConfig};
pub use record::{ReadAt, RecordSampler, RecordSpan, TRACEPARENT};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: only then are any made.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A span for one step of the work in progress (`features`, `score`): a
/// child of the current span when traces are on, nothing otherwise.
pub fn step(name: &'static str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!("step", otel.name = name)
}

/// The span of one HTTP request, continuing the caller's trace when it sent a
/// `traceparent`; its `trace_id` field puts the trace id on every log line
/// written while the request is served. `Span::none()` when traces are off.
pub fn request(method: &str, route: &str, traceparent: Option<&str>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if let Some(parent) = traceparent.and_then(|tp| record::parse(tp.as_bytes())) {
        let _ = span.set_parent(parent);
    }
    note_trace_id(&span);
    span
}

/// The span of one stage batch: from its first record to its commit.
pub fn batch(stage: &'static str) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "batch",
        otel.name = %format_args!("{stage} batch"),
        otel.kind = "consumer",
        stage,
        records = tracing::field::Empty,
        bytes = tracing::field::Empty,
        outputs = tracing::field::Empty,
        commit_ms = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    note_trace_id(&span);
    span
}

/// Records the span's trace id as its `trace_id` field, for log lines.
fn note_trace_id(span: &Span) {
    use opentelemetry::trace::TraceContextExt;
    let cx = span.context();
    let id = cx.span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}
