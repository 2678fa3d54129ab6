//! The prediction server `cartflow serve` and `cartflow run` start: the
//! online store (with its streamer beside it when embedded), the model from
//! the registry (whose API and UI it also serves when embedded), the
//! dashboard's insights, this process's tokens and TLS, put together by
//! [`cartflow_serve::ServerBuilder`].

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use cartflow_http::AdminToken;
use cartflow_online::OnlineBackend;
use cartflow_registry::RegistryLocation;
use cartflow_serve::prediction_log::{self, PredictionLog, PredictionWriter};
use cartflow_serve::{RunningServer, ServerBuilder};
use cartflow_stream::feature_streamer::StreamerStats;

use super::insights::LakeInsights;
use super::registry::RegistrySource;
use crate::backends::Backends;
use crate::cli::ListenArgs;
use crate::commands::Ctx;
use crate::telemetry::{self, thousands};

/// Where to serve from; unset fields come from the configuration.
#[derive(Default)]
pub struct ServeOptions {
    pub addr: Option<String>,
    pub online: Option<OnlineBackend>,
    pub registry: Option<RegistryLocation>,
    pub listen: ListenArgs,
}

/// A server running on its own threads until the context stops.
pub struct Started {
    pub server: RunningServer,
    /// `None` when serving with `--no-auth`.
    pub admin: Option<AdminToken>,
    /// Where the model comes from and the features, for messages (no credentials).
    pub registry_url: String,
    pub online: String,
    streamer: Option<JoinHandle<Result<StreamerStats>>>,
}

impl Started {
    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// Waits until Ctrl-C (or a failure) has stopped the server; returns
    /// what the feature streamer beside it did.
    pub fn wait(self) -> Result<Option<StreamerStats>> {
        self.server.wait().context("serving predictions")?;
        self.streamer.map(|s| s.join().map_err(|_| anyhow::anyhow!("the feature streamer panicked"))?).transpose()
    }

    /// Waits, then says what the streamer did.
    pub fn wait_and_report(self) -> Result<()> {
        if let Some(stats) = self.wait()? {
            println!("streamed {} events into the online store while serving", thousands(stats.read));
        }
        Ok(())
    }
}

pub fn start(ctx: &Ctx, o: ServeOptions) -> Result<Started> {
    let cfg = &ctx.cfg;
    let access = super::listen::access(ctx, &o.listen)?;
    let tls = super::listen::tls(ctx, &o.listen)?;
    let online = o.online.unwrap_or_else(|| cfg.features.online.clone());
    let store = ctx.open_when_up("the online store", false, || cfg.open_online(Some(&online)))?;
    let control = ctx.control.with_drain(false);
    // The embedded store lives in this process: its streamer must run here.
    let streamer = online.is_embedded().then(|| super::streamer::spawn(ctx, store.clone(), &control));

    let registry = o.registry.unwrap_or_else(|| cfg.registry.url.clone());
    let client = super::registry::client(ctx, &registry)?;
    telemetry::metrics_handle();
    cartflow_serve::describe_metrics();
    let health = ctx.health.clone();
    let describe = store.describe();
    let insights = LakeInsights::new(cfg.lake_location(), client.clone(), registry.is_embedded());
    let mut builder =
        ServerBuilder::new(store, Arc::new(RegistrySource { client }), &cfg.registry.model_name, &cfg.serve.alias)
            .tokens(access.tokens)
            .tls(tls)
            .limits(cfg.serve.limits())
            .poll_every(Duration::from_secs(cfg.serve.poll_secs.max(1)))
            .insights(Arc::new(insights))
            .telemetry(cartflow_serve::Telemetry {
                metrics: Arc::new(|| telemetry::metrics_handle().render()),
                status: Arc::new(move || serde_json::json!({ "online_store": describe, "stages": health.snapshot() })),
            });
    if cfg.serve.prediction_log_sample > 0.0 {
        builder = builder.prediction_log(prediction_log(ctx)?);
    }
    // The embedded registry is also served here, on the same address and tokens.
    if registry.is_embedded() {
        let opened = super::listen::runtime().block_on(super::registry::open(ctx, None, None))?;
        builder = builder.routes(cartflow_registry::routes(opened));
    }
    let addr = o.addr.unwrap_or_else(|| cfg.serve.addr.clone());
    let bound = builder.bind(&addr).context("starting the prediction server")?;
    let stopped = control.clone();
    let server = bound.spawn(super::listen::runtime().handle().clone(), move || stopped.stopped())?;
    let (registry_url, online) = (registry.describe(), online.describe());
    Ok(Started { server, admin: access.admin, registry_url, online, streamer })
}

/// What a person needs to use the server, in a few lines.
pub fn print_started(s: &Started, indent: &str) {
    let slot = &s.server.slot;
    let model = match slot.current() {
        Some(m) => format!("{} v{} (@{})", m.name, m.version, m.alias),
        None => format!("none yet: waiting for {}@{}", slot.name, slot.alias),
    };
    let url = s.url();
    println!("{indent}serving   {url} — model {model} from {}; features from {}", s.registry_url, s.online);
    println!(
        "{indent}          POST /predict, POST /features, /dashboard, /ui/ (registry), /api/2.0/mlflow/…, /metrics, /health, /ready"
    );
    match &s.admin {
        Some(admin) => {
            println!("{indent}token     {}", admin.shown());
            println!("{indent}          open {url}/dashboard?token={}", admin.for_shell());
        }
        None => println!("{indent}token     none asked (--no-auth): open {url}/dashboard"),
    }
}

/// The prediction log on the configured event log. Its connection, topic and
/// producer are made on the first write, the producer again after a failure: a server
/// starts and serves while the log (a Kafka broker) is away, dropping
/// (and counting) the predictions it could not log meanwhile.
fn prediction_log(ctx: &Ctx) -> Result<PredictionLog> {
    let writer = LogWriter { cfg: ctx.cfg.clone(), log: None, producer: None };
    PredictionLog::start(Box::new(writer), ctx.cfg.serve.prediction_log_sample)
        .context("starting the prediction log's writer")
}

/// Writes the prediction log's batches with the event log's producer.
struct LogWriter {
    cfg: crate::config::Config,
    log: Option<Box<dyn cartflow_log::EventLog>>,
    producer: Option<Box<dyn cartflow_log::Producer>>,
}

impl LogWriter {
    fn send_all(&mut self, records: &[(String, Vec<u8>)]) -> Result<()> {
        let producer = match &mut self.producer {
            Some(p) => p,
            None => {
                let log = match &mut self.log {
                    Some(log) => log,
                    None => self.log.insert(self.cfg.open_log()?),
                };
                log.ensure_topic(prediction_log::TOPIC, 0)?;
                self.producer.insert(log.producer()?)
            }
        };
        for (key, value) in records {
            producer.send(cartflow_log::ProducerRecord::new(prediction_log::TOPIC, Some(key.as_bytes()), value))?;
        }
        producer.flush()?;
        Ok(())
    }
}

impl PredictionWriter for LogWriter {
    fn write(&mut self, records: &[(String, Vec<u8>)]) -> std::result::Result<(), String> {
        self.send_all(records).map_err(|e| {
            self.producer = None;
            format!("{e:#}")
        })
    }
}
