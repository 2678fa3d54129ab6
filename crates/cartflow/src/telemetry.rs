//! What a person sees of a running command: log lines (tracing), progress
//! bars on a terminal (indicatif), `/metrics`, `/status` and `/health`
//! over HTTP when `--metrics-addr` is given, and traces over OTLP when an
//! endpoint is configured (`cartflow-trace`).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use tracing_subscriber::Layer as _;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One short line per event, for people.
    #[default]
    Text,
    /// One JSON object per line, with the fields of the spans it is in
    /// (a request's or batch's `trace_id`), for log shippers.
    Json,
}

/// Log lines on stderr (`RUST_LOG` filters them), and traces when
/// `[telemetry]` or the `OTEL_*` variables name a collector: then spans are
/// exported while the returned guard lives, and sent when it drops.
pub fn init_logging(
    quiet: bool,
    format: LogFormat,
    traces: &cartflow_trace::TraceConfig,
    service: &str,
) -> anyhow::Result<Option<cartflow_trace::Exporting>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false);
    // The filter is the log lines' own: `--quiet` keeps spans, which go to the exporter at info.
    let fmt = match format {
        LogFormat::Text => fmt.compact().with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(false).with_filter(filter).boxed(),
    };
    let exporting = cartflow_trace::export::install(traces, service).map_err(anyhow::Error::msg)?;
    let (guard, layer) = exporting.map_or((None, None), |(guard, layer)| {
        (Some(guard), Some(layer.with_filter(tracing_subscriber::filter::LevelFilter::INFO)))
    });
    // Another subscriber already set (a test harness) keeps its own.
    let _ = tracing_subscriber::registry().with(fmt).with(layer).try_init();
    if let Some(g) = &guard {
        tracing::info!("traces to {} as {}", g.endpoint, g.service);
    }
    Ok(guard)
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process.
pub fn metrics_handle() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let mut builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
            )
            .expect("valid buckets");
        // Ages of events and records span milliseconds to minutes; a full
        // name is matched before the suffix above.
        use cartflow_stream::metrics::{EVENT_AGE, FRESHNESS, FRESHNESS_BUCKETS};
        for age in [FRESHNESS, EVENT_AGE, cartflow_serve::FEATURE_AGE] {
            builder =
                builder.set_buckets_for_metric(Matcher::Full(age.into()), &FRESHNESS_BUCKETS).expect("valid buckets");
        }
        let handle = builder.install_recorder().expect("one metrics recorder per process");
        cartflow_stream::metrics::describe();
        cartflow_http::server::describe_metrics();
        handle
    })
}

/// What `/health` reports: a status per stage, set by the stages.
#[derive(Clone, Default)]
pub struct Health(Arc<Mutex<serde_json::Map<String, Value>>>);

impl Health {
    pub fn set(&self, stage: &str, value: Value) {
        self.0.lock().expect("health lock").insert(stage.to_owned(), value);
    }

    pub fn clear(&self, stage: &str) {
        self.0.lock().expect("health lock").remove(stage);
    }

    /// Every stage's latest report.
    pub fn snapshot(&self) -> Value {
        Value::Object(self.0.lock().expect("health lock").clone())
    }
}

/// `/metrics`, `/status` (stages and uptime) and `/health` behind `tokens`, for a stage's `--metrics-addr`.
pub fn metrics_app(health: Health, tokens: Arc<cartflow_http::Tokens>) -> Router {
    let handle = metrics_handle();
    let started = Instant::now();
    let telemetry = cartflow_serve::Telemetry {
        metrics: Arc::new(move || handle.render()),
        status: Arc::new(move || json!({ "uptime_secs": started.elapsed().as_secs(), "stages": health.snapshot() })),
    };
    cartflow_http::finish(cartflow_serve::telemetry_routes(&telemetry), tokens)
}

/// A progress bar on stderr when it is a terminal and not `--quiet`; hidden otherwise.
pub fn progress(quiet: bool, total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
        return bar;
    }
    let template = match total {
        Some(_) => "{prefix:>10} [{bar:30}] {human_pos}/{human_len} ({rate}, {eta}) {msg}",
        None => "{prefix:>10} {spinner} {human_pos} ({rate}) {msg}",
    };
    let style = ProgressStyle::with_template(template).expect("valid template").progress_chars("=> ").with_key(
        "rate",
        |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/s", thousands(s.per_sec() as u64));
        },
    );
    bar.set_style(style);
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
