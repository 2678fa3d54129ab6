//! One event's way through the stages. A sampled record gets a root span
//! where it enters cartflow (`produce`, `cdc`) and carries that span's W3C
//! `traceparent` in its log headers; each stage that reads it opens a child
//! span (from poll to the commit that makes its output durable) and, where it
//! writes the record on, puts its own span's `traceparent` on the output. So
//! one trace shows one event: produce → validate → lake sink and features.
//!
//! These spans are made with OpenTelemetry's API, not `tracing`: they start
//! and end at batch boundaries, not around code, and no log line is inside them.

use std::time::SystemTime;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Link, Span as _, SpanKind, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Span, Tracer};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The log header that carries a record's trace context (W3C Trace Context).
pub const TRACEPARENT: &str = "traceparent";

/// The trace context a `traceparent` value names, if it is a valid one.
pub fn parse(traceparent: &[u8]) -> Option<Context> {
    let value = std::str::from_utf8(traceparent).ok()?;
    let cx = TraceContextPropagator::new().extract(&One(value));
    cx.span().span_context().is_valid().then_some(cx)
}

/// Where a stage read a record: OpenTelemetry's messaging attributes of its span.
pub struct ReadAt {
    pub topic: String,
    pub partition: u32,
    /// Its offset in the partition (the embedded log numbers records as Kafka does).
    pub offset: u64,
}

impl ReadAt {
    fn attributes(self) -> Vec<KeyValue> {
        vec![
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", self.topic),
            KeyValue::new("messaging.destination.partition.id", self.partition.to_string()),
            KeyValue::new("messaging.kafka.offset", self.offset as i64),
        ]
    }
}

/// A span of one record in one stage.
pub struct RecordSpan(Span);

impl RecordSpan {
    /// A new trace for a record entering cartflow; `None` when traces are off.
    pub fn root(name: &'static str) -> Option<RecordSpan> {
        let tracer = tracer()?;
        let span = tracer.span_builder(name).with_kind(SpanKind::Producer).start_with_context(tracer, &Context::new());
        Some(RecordSpan(span))
    }

    /// The next step of the trace a record's `traceparent` names, linked to
    /// the stage batch it is part of; `None` when traces are off or the
    /// header is not a valid trace context.
    pub fn follow(
        name: &'static str,
        traceparent: &[u8],
        at: Option<ReadAt>,
        batch: &tracing::Span,
    ) -> Option<RecordSpan> {
        let tracer = tracer()?;
        let parent = parse(traceparent)?;
        let mut builder = tracer.span_builder(name).with_kind(SpanKind::Consumer);
        if let Some(at) = at {
            builder = builder.with_attributes(at.attributes());
        }
        let batch = batch.context().span().span_context().clone();
        if batch.is_valid() {
            builder = builder.with_links(vec![Link::with_context(batch)]);
        }
        Some(RecordSpan(builder.start_with_context(tracer, &parent)))
    }

    /// This span as a `traceparent` value, for the record's next header.
    pub fn traceparent(&self) -> String {
        let cx = Context::new().with_remote_span_context(self.0.span_context().clone());
        let mut value = String::new();
        TraceContextPropagator::new().inject_context(&cx, &mut Collect(&mut value));
        value
    }

    /// Ends the span now: the stage's output of the record is durable.
    pub fn end(mut self) {
        self.0.end_with_timestamp(SystemTime::now());
    }
}

/// Picks one record in `every` to trace where records enter cartflow, and
/// keeps their root spans until the write that makes them durable.
#[derive(Default)]
pub struct RecordSampler {
    every: u64,
    seen: u64,
    unflushed: Vec<RecordSpan>,
}

impl RecordSampler {
    /// Traces a share `ratio` of records (0 or traces off: none).
    pub fn new(ratio: f64) -> RecordSampler {
        let every = if ratio > 0.0 { (1.0 / ratio.min(1.0)).round() as u64 } else { 0 };
        RecordSampler { every, ..RecordSampler::default() }
    }

    /// The configured share ([`crate::export::record_ratio`]).
    pub fn configured() -> RecordSampler {
        RecordSampler::new(crate::export::record_ratio())
    }

    /// The `traceparent` for this record's header when it is one of those
    /// traced: a root span named `name`, ended by [`Self::flushed`].
    pub fn root(&mut self, name: &'static str) -> Option<String> {
        if self.every == 0 || !crate::enabled() {
            return None;
        }
        self.seen += 1;
        if !(self.seen - 1).is_multiple_of(self.every) {
            return None;
        }
        let span = RecordSpan::root(name)?;
        let traceparent = span.traceparent();
        self.unflushed.push(span);
        Some(traceparent)
    }

    /// The records sampled so far are durable: ends their spans.
    pub fn flushed(&mut self) {
        for span in self.unflushed.drain(..) {
            span.end();
        }
    }
}

fn tracer() -> Option<&'static Tracer> {
    if !crate::enabled() {
        return None;
    }
    crate::export::tracer()
}

/// A carrier of the one header there is to read.
struct One<'a>(&'a str);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// A carrier that keeps the `traceparent` written into it (and drops
/// `tracestate`, which cartflow neither sets nor forwards).
struct Collect<'a>(&'a mut String);

impl Injector for Collect<'_> {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            *self.0 = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_parses_and_a_broken_one_does_not() {
        let cx = parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(cx.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(cx.span().span_context().is_sampled());
        for broken in [&b"00-zz"[..], b"", b"\xff\xfe", b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"] {
            assert!(parse(broken).is_none(), "{broken:?}");
        }
    }

    #[test]
    fn the_sampler_takes_one_in_every_n_and_none_when_traces_are_off() {
        assert_eq!(RecordSampler::new(0.25).every, 4);
        assert_eq!(RecordSampler::new(0.0).every, 0);
        assert_eq!(RecordSampler::new(7.0).every, 1);
        // No exporter in this process: nothing is sampled whatever the share.
        let mut all = RecordSampler::new(1.0);
        assert!((0..10).all(|_| all.root("produce").is_none()));
    }
}
