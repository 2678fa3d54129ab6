//! The OTLP exporter: OpenTelemetry's SDK batching spans on its own thread
//! and sending them as OTLP/HTTP protobuf (port 4318: SigNoz, Jaeger, Tempo,
//! the OpenTelemetry Collector, otelite all take it).

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SamplingResult, SdkTracerProvider, ShouldSample, Tracer};
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

/// `[telemetry]`: where traces go and how many. The standard variables win
/// over it: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`),
/// `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_SDK_DISABLED`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceConfig {
    /// An OTLP/HTTP collector, e.g. `http://127.0.0.1:4318`; none: no traces.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of this process [default: `cartflow-<command>`].
    pub service_name: Option<String>,
    /// Share of requests and stage batches traced (a trace's first span decides).
    pub sample_ratio: f64,
    /// Share of events traced through every stage from where they enter.
    pub record_ratio: f64,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig { otlp_endpoint: None, service_name: None, sample_ratio: 0.01, record_ratio: 0.0001 }
    }
}

static TRACER: OnceLock<Tracer> = OnceLock::new();
static RECORD_RATIO: OnceLock<f64> = OnceLock::new();

pub(crate) fn tracer() -> Option<&'static Tracer> {
    TRACER.get()
}

/// The configured share of records traced end to end.
pub fn record_ratio() -> f64 {
    RECORD_RATIO.get().copied().unwrap_or(0.0)
}

/// Exporting is on while this lives; dropping it sends what is buffered.
pub struct Exporting {
    provider: SdkTracerProvider,
    pub endpoint: String,
    pub service: String,
}

impl Drop for Exporting {
    fn drop(&mut self) {
        crate::ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("warning: traces not all sent to {}: {e}", self.endpoint);
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The `tracing` layer that makes OpenTelemetry spans of `tracing`'s.
pub type Layer<S> = OpenTelemetryLayer<S, Tracer>;

/// Starts exporting when an endpoint is configured, and returns the
/// `tracing` layer to add to the subscriber; `None` when traces are off.
pub fn install<S>(cfg: &TraceConfig, default_service: &str) -> Result<Option<(Exporting, Layer<S>)>, String>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let from_env = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| format!("{}/v1/traces", base.trim_end_matches('/'))));
    let endpoint = match (from_env, &cfg.otlp_endpoint) {
        (Some(url), _) => url,
        (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
        (None, None) => return Ok(None),
    };
    if let Some(protocol) = env("OTEL_EXPORTER_OTLP_PROTOCOL").filter(|p| p != "http/protobuf") {
        return Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: cartflow sends OTLP over HTTP (http/protobuf, port 4318)"
        ));
    }
    let sample_ratio = match env("OTEL_TRACES_SAMPLER_ARG") {
        Some(v) => v.parse::<f64>().map_err(|_| format!("OTEL_TRACES_SAMPLER_ARG={v}: not a number"))?,
        None => cfg.sample_ratio,
    };
    let service =
        env("OTEL_SERVICE_NAME").or_else(|| cfg.service_name.clone()).unwrap_or_else(|| default_service.into());
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(UreqClient::new())
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(RecordRoots(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(sample_ratio)))))
        .with_resource(Resource::builder().with_service_name(service.clone()).build())
        .build();
    let tracer = provider.tracer("cartflow");
    let _ = TRACER.set(tracer.clone());
    let _ = RECORD_RATIO.set(cfg.record_ratio);
    opentelemetry::global::set_tracer_provider(provider.clone());
    crate::ENABLED.store(true, Ordering::Relaxed);
    // Where in cartflow-trace a span was opened says nothing: its name and attributes do.
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_tracked_inactivity(false).with_location(false);
    Ok(Some((Exporting { provider, endpoint, service }, layer)))
}

/// The SDK's parent-based ratio sampler, except that a record's root span
/// (kind producer, no parent) is always kept: [`crate::RecordSampler`]
/// already chose that record, by count.
#[derive(Debug, Clone)]
struct RecordRoots(Sampler);

impl ShouldSample for RecordRoots {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let root = parent.is_none_or(|cx| !cx.has_active_span());
        let sampler = if root && *kind == SpanKind::Producer { &Sampler::AlwaysOn } else { &self.0 };
        sampler.should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

/// OTLP's HTTP calls over ureq, which the build already has: the exporter's
/// own clients would bring reqwest 0.13 beside object_store's 0.12. The SDK
/// exports from its own thread, so a blocking call there holds up nothing.
#[derive(Debug)]
struct UreqClient(ureq::Agent);

impl UreqClient {
    fn new() -> UreqClient {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build();
        UreqClient(config.new_agent())
    }
}

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let mut response = self.0.run(request.map(|body| body.to_vec()))?;
        let status = response.status();
        let body = response.body_mut().with_config().limit(4 << 20).read_to_vec()?;
        Ok(Response::builder().status(status).body(Bytes::from(body))?)
    }
}
