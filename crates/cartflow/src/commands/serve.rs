//! `cartflow serve`: predictions with the registry's champion, swapped when
//! the alias moves; the feature API; the dashboard; `/metrics`, `/health`,
//! `/ready`; with the embedded registry, its API and UI too. Behind API
//! tokens, over TLS when given a certificate. `cartflow run` starts the
//! same server before its pipeline.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cartflow_registry::Client;
use cartflow_serve::auth::{Scope, TokenConfig, Tokens};
use cartflow_serve::model::{ModelSlot, ModelSource};
use cartflow_stream::feature_streamer::StreamerStats;

use super::Ctx;
use super::insights::LakeInsights;
use crate::cli::ServeArgs;
use crate::telemetry::{self, thousands};

/// MLflow's variable for a tracking server's token; cartflow's client sends it too.
pub const TRACKING_TOKEN_ENV: &str = "MLFLOW_TRACKING_TOKEN";

/// The admin token of this data directory, created (and said so) on first use.
pub fn admin_token(data_dir: &Path) -> Result<(String, bool)> {
    let path = data_dir.join("auth").join("token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok((token.trim().to_owned(), false));
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(path.parent().expect("token path has a parent"))?;
    write_private(&path, &token).with_context(|| format!("writing the admin token to {}", path.display()))?;
    Ok((token, true))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())
}

/// The configured tokens and the admin token.
pub fn tokens(ctx: &Ctx, admin: &str) -> Result<Tokens> {
    let mut all = ctx.cfg.auth.tokens.clone();
    all.push(TokenConfig { name: "admin".into(), token: admin.to_owned(), scopes: vec![Scope::Admin] });
    Tokens::new(&all).map_err(|e| anyhow::anyhow!("auth.tokens: {e}"))
}

/// Model versions from an MLflow-compatible registry over its REST API.
struct RegistrySource {
    client: Client,
}

impl ModelSource for RegistrySource {
    fn resolve(&self, name: &str, alias: &str) -> Result<Option<String>, String> {
        Ok(self.client.version_by_alias(name, alias).map_err(|e| e.to_string())?.map(|v| v.version))
    }

    fn model_file(&self, name: &str, version: &str) -> Result<Vec<u8>, String> {
        let v = self.client.model_version(name, version).map_err(|e| e.to_string())?;
        self.client.download(&v.source, "model.json").map_err(|e| e.to_string())
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
    pub online: Option<String>,
    pub registry: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
}

/// A server running on its own threads until the context stops.
pub struct Started {
    pub url: String,
    pub admin_token: String,
    pub token_created: bool,
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
    let (admin, token_created) = admin_token(&cfg.data_dir)?;
    let tokens = Arc::new(tokens(ctx, &admin)?);
    let online = o.online.unwrap_or_else(|| cfg.features.online.clone());
    let store = cfg.open_online(Some(&online))?;
    let control = ctx.control.with_drain(false);
    // The embedded store lives in this process: its streamer must run here.
    let streamer = (online == "embedded").then(|| super::features::spawn_streamer(ctx, store.clone(), &control));

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let registry_url = o.registry.unwrap_or_else(|| cfg.registry.url.clone());
    let client = super::registry::client(ctx, &registry_url)?;
    // The embedded registry is also served here, on the same address and tokens.
    let extra = match registry_url.as_str() {
        "embedded" => Some(cartflow_registry::routes(rt.block_on(super::registry::open(ctx, None, None))?)),
        _ => None,
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
        tokens,
        telemetry: cartflow_serve::Telemetry {
            metrics: Arc::new(|| telemetry::metrics_handle().render()),
            health: Arc::new(
                move || serde_json::json!({ "status": "ok", "online_store": describe, "stages": health.snapshot() }),
            ),
        },
        extra,
        max_body_bytes: cfg.serve.max_body_kb.max(1) << 10,
        timeout: Duration::from_millis(cfg.serve.timeout_ms.max(1)),
    });

    let addr = o.addr.unwrap_or_else(|| cfg.serve.addr.clone());
    let listener = std::net::TcpListener::bind(&addr).with_context(|| format!("binding {addr}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let tls = match (
        o.tls_cert.unwrap_or_else(|| cfg.serve.tls_cert.clone()),
        o.tls_key.unwrap_or_else(|| cfg.serve.tls_key.clone()),
    ) {
        (c, k) if c.is_empty() && k.is_empty() => None,
        (c, k) if c.is_empty() || k.is_empty() => bail!("TLS needs both serve.tls_cert and serve.tls_key"),
        (c, k) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = rt
                .block_on(axum_server::tls_rustls::RustlsConfig::from_pem_file(&c, &k))
                .with_context(|| format!("loading the TLS certificate {c} and key {k}"))?;
            Some(config)
        }
    };
    let url = format!("{}://{local}", if tls.is_some() { "https" } else { "http" });
    let handle = axum_server::Handle::new();
    let stop = handle.clone();
    let stopping = control.clone();
    let server = std::thread::spawn(move || {
        rt.block_on(async move {
            tokio::spawn(async move {
                while !stopping.stopped() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                stop.graceful_shutdown(Some(Duration::from_secs(5)));
            });
            let service = app.into_make_service();
            match tls {
                Some(config) => axum_server::from_tcp_rustls(listener, config)?.handle(handle).serve(service).await,
                None => axum_server::from_tcp(listener)?.handle(handle).serve(service).await,
            }
            .context("serving")
        })
    });
    Ok(Started {
        url,
        admin_token: admin,
        token_created,
        registry_url: client_base(&registry_url),
        online,
        slot,
        source,
        server,
        streamer,
    })
}

fn client_base(url: &str) -> String {
    if url == "embedded" { "the embedded registry".into() } else { url.to_owned() }
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
    println!(
        "{indent}token     {}{}",
        s.admin_token,
        if s.token_created { " (new; kept in the data directory's auth/token)" } else { " (auth/token)" }
    );
    println!("{indent}          open {}/dashboard?token={}", s.url, s.admin_token);
}

pub fn run(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    let started = start(
        ctx,
        ServeOptions {
            addr: a.addr,
            online: a.online.online,
            registry: a.registry,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
        },
    )?;
    println!("cartflow serve (Ctrl-C stops)");
    print_started(&started, "  ");
    started.wait_and_report()
}
