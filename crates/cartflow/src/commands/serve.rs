//! `cartflow serve`: predictions with the registry's champion, swapped when
//! the alias moves; the feature API; the dashboard; `/metrics`, `/health`,
//! `/ready`; with the embedded registry, its API and UI too. Behind API
//! tokens, over TLS when given a certificate. `cartflow run` starts the
//! same server before its pipeline.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;
use cartflow_online::OnlineBackend;
use cartflow_registry::{Client, RegistryLocation};
use cartflow_serve::model::{ModelSlot, ModelSource};
use cartflow_stream::feature_streamer::StreamerStats;

use super::Ctx;
use super::http::AdminToken;
use super::insights::LakeInsights;
use crate::cli::{ListenArgs, ServeArgs};
use crate::telemetry::{self, thousands};

/// MLflow's variable for a tracking server's token; cartflow's client sends it too.
pub const TRACKING_TOKEN_ENV: &str = "MLFLOW_TRACKING_TOKEN";

/// Model versions from an MLflow-compatible registry over its REST API.
struct RegistrySource {
    client: Client,
}

impl ModelSource for RegistrySource {
    fn resolve(&self, name: &str, alias: &str) -> Result<Option<String>, String> {
        Ok(self.client.version_by_alias(name, alias).map_err(|e| e.to_string())?.map(|v| v.version))
    }

    fn model_file(&self, name: &str, version: &str) -> Result<Vec<u8>, String> {
        self.client.version_file(name, version, "model.json").map_err(|e| e.to_string())
    }

    fn describe(&self) -> String {
        self.client.base().to_owned()
    }
}

/// The slot for the configured model and alias, loaded once from `client`'s
/// registry (a failure is logged; the watcher retries).
fn follow(ctx: &Ctx, client: Client) -> (Arc<ModelSlot>, Arc<dyn ModelSource>) {
    let slot = Arc::new(ModelSlot::new(&ctx.cfg.registry.model_name, &ctx.cfg.serve.alias));
    let source: Arc<dyn ModelSource> = Arc::new(RegistrySource { client });
    if let Err(e) = slot.refresh(source.as_ref()) {
        tracing::warn!("no model yet: {e}");
    }
    (slot, source)
}

/// The model the configured alias names in the configured registry, loaded
/// as the server would load it (`None`: no such version yet).
pub fn champion(ctx: &Ctx) -> Result<Option<Arc<cartflow_serve::model::ServedModel>>> {
    let client = super::registry::client(ctx, &ctx.cfg.registry.url)?;
    Ok(follow(ctx, client).0.current())
}

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
    pub url: String,
    /// `None` when serving with `--no-auth`.
    pub admin: Option<AdminToken>,
    /// Where the model comes from and the features, for messages (no credentials).
    pub registry_url: String,
    pub online: String,
    pub slot: Arc<ModelSlot>,
    source: Arc<dyn ModelSource>,
    server: JoinHandle<Result<()>>,
    streamer: Option<JoinHandle<Result<StreamerStats>>>,
}

impl Started {
    /// Follows the alias now rather than at the next poll (after training).
    pub fn refresh_model(&self) -> Result<Option<String>> {
        self.slot.refresh(self.source.as_ref()).map_err(anyhow::Error::msg)
    }

    /// Waits until Ctrl-C (or a failure) has stopped the server; returns
    /// what the feature streamer beside it did.
    pub fn wait(self) -> Result<Option<StreamerStats>> {
        self.server.join().map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
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
    let addr = o.addr.unwrap_or_else(|| cfg.serve.addr.clone());
    let listener = super::http::listen(ctx, &addr, "the prediction server", &o.listen)?;
    let online = o.online.unwrap_or_else(|| cfg.features.online.clone());
    let store = cfg.open_online(Some(&online))?;
    let control = ctx.control.with_drain(false);
    // The embedded store lives in this process: its streamer must run here.
    let streamer = online.is_embedded().then(|| super::features::spawn_streamer(ctx, store.clone(), &control));

    let registry = o.registry.unwrap_or_else(|| cfg.registry.url.clone());
    let client = super::registry::client(ctx, &registry)?;
    // The embedded registry is also served here, on the same address and tokens.
    let rt = super::http::runtime(2)?;
    let extra = match registry {
        RegistryLocation::Embedded => {
            Some(cartflow_registry::routes(rt.block_on(super::registry::open(ctx, None, None))?))
        }
        RegistryLocation::Remote { .. } => None,
    };
    let (slot, source) = follow(ctx, client.clone());
    let stopped = control.clone();
    slot.watch(source.clone(), Duration::from_secs(cfg.serve.poll_secs.max(1)), move || stopped.stopped());

    telemetry::metrics_handle();
    cartflow_serve::describe_metrics();
    let health = ctx.health.clone();
    let describe = store.describe();
    let insights = LakeInsights::new(cfg.lake_location(), client, extra.is_some());
    let app = cartflow_serve::app(cartflow_serve::Server {
        store,
        model: slot.clone(),
        insights: Arc::new(insights),
        tokens: listener.tokens.clone(),
        telemetry: cartflow_serve::Telemetry {
            metrics: Arc::new(|| telemetry::metrics_handle().render()),
            status: Arc::new(move || serde_json::json!({ "online_store": describe, "stages": health.snapshot() })),
        },
        extra,
        limits: cfg.serve.limits(),
    });
    let url = listener.url();
    let admin = listener.admin.clone();
    let server = super::http::spawn(rt, listener.server, app, control, "serve")?;
    let (registry_url, online) = (registry.describe(), online.describe());
    Ok(Started { url, admin, registry_url, online, slot, source, server, streamer })
}

/// What a person needs to use the server, in a few lines.
pub fn print_started(s: &Started, indent: &str) {
    let model = match s.slot.current() {
        Some(m) => format!("{} v{} (@{})", m.name, m.version, m.alias),
        None => format!("none yet: waiting for {}@{}", s.slot.name, s.slot.alias),
    };
    println!("{indent}serving   {} — model {model} from {}; features from {}", s.url, s.registry_url, s.online);
    println!(
        "{indent}          POST /predict, POST /features, /dashboard, /ui/ (registry), /api/2.0/mlflow/…, /metrics, /health, /ready"
    );
    match &s.admin {
        Some(admin) => {
            println!("{indent}token     {}", admin.shown());
            println!("{indent}          open {}/dashboard?token={}", s.url, admin.for_shell());
        }
        None => println!("{indent}token     none asked (--no-auth): open {}/dashboard", s.url),
    }
}

pub fn run(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    let started =
        start(ctx, ServeOptions { addr: a.addr, online: a.online.online, registry: a.registry, listen: a.listen })?;
    println!("cartflow serve (Ctrl-C stops)");
    print_started(&started, "  ");
    started.wait_and_report()
}
