//! `cartflow registry serve`: the MLflow-compatible tracking server and its
//! web UI, behind the same tokens, limits and listener as every server; also
//! started in-process by `train` when the registry is embedded.

use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use cartflow_registry::RegistryLocation;

use super::Ctx;
use super::http::AdminToken;
use crate::cli::{RegistryCommand, RegistryServeArgs};
use crate::telemetry;

pub fn run(ctx: &Ctx, command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Serve(a) => serve(ctx, a),
    }
}

/// The registry named by the configuration (and overrides), opened with its limits.
pub(super) async fn open(
    ctx: &Ctx,
    store: Option<String>,
    artifacts: Option<String>,
) -> Result<cartflow_registry::Registry> {
    let (default_store, default_artifacts) = ctx.cfg.registry_locations()?;
    let store = store.unwrap_or(default_store);
    let artifacts = artifacts.unwrap_or(default_artifacts);
    let mut registry = cartflow_registry::open(&store, &artifacts).await.with_context(|| {
        format!("opening the registry (store {}, artifacts {artifacts})", cartflow_core::redact::url(&store))
    })?;
    registry.limits = cartflow_registry::RegistryLimits {
        api: ctx.cfg.serve.limits(),
        max_artifact_bytes: ctx.cfg.registry.max_artifact_mb.max(1) << 20,
        ..Default::default()
    };
    Ok(registry)
}

/// The registry's API and UI with `/metrics`, `/status` and `/health`, behind `tokens`.
fn app(registry: cartflow_registry::Registry, describe: String, tokens: Arc<cartflow_http::Tokens>) -> axum::Router {
    telemetry::metrics_handle();
    let telemetry = cartflow_serve::Telemetry {
        metrics: Arc::new(|| telemetry::metrics_handle().render()),
        status: Arc::new(move || serde_json::json!({ "registry": describe })),
    };
    cartflow_http::finish(cartflow_registry::app(registry).merge(cartflow_serve::telemetry_routes(&telemetry)), tokens)
}

fn serve(ctx: &Ctx, a: RegistryServeArgs) -> Result<()> {
    let addr = a.addr.clone().unwrap_or_else(|| ctx.cfg.registry.addr.clone());
    let listener = super::http::listen(ctx, &addr, "the registry", &a.listen)?;
    let rt = super::http::runtime(2)?;
    let registry = rt.block_on(open(ctx, a.store, a.artifacts))?;
    let url = listener.url();
    let describe = registry.store.describe();
    println!("registry on {url}: MLflow API /api/2.0/mlflow/…, artifacts /api/2.0/mlflow-artifacts/…, UI /ui/");
    match &listener.admin {
        Some(admin) => {
            println!("token     {}", admin.shown());
            println!("use it from MLflow: MLFLOW_TRACKING_URI={url} MLFLOW_TRACKING_TOKEN={}", admin.for_shell());
        }
        None => println!("use it from MLflow: MLFLOW_TRACKING_URI={url}"),
    }
    let app = app(registry, describe, listener.tokens.clone());
    rt.block_on(listener.server.serve(app, super::http::stopped(ctx.control.clone()))).context("serving the registry")
}

/// Serves this data directory's registry on a free loopback port from a
/// background thread, for as long as the process lives, behind the data
/// directory's admin token; returns its URL. Started once per process.
pub fn spawn_embedded(ctx: &Ctx) -> Result<String> {
    static URL: OnceLock<String> = OnceLock::new();
    if let Some(url) = URL.get() {
        return Ok(url.clone());
    }
    let listener = super::http::listen_internal(ctx, "the embedded registry")?;
    let rt = super::http::runtime(1)?;
    let registry = rt.block_on(open(ctx, None, None))?;
    let url = listener.url();
    let app = app(registry, url.clone(), listener.tokens.clone());
    // Never stopped: it serves the process's own train and serve until the process ends.
    super::http::spawn(rt, listener.server, app, cartflow_stream::StageControl::new(false), "registry")?;
    Ok(URL.get_or_init(|| url).clone())
}

/// A client of the registry: the embedded one is this data directory's,
/// served on loopback behind the admin token; a remote one is reached with
/// `MLFLOW_TRACKING_TOKEN` when it is set, as MLflow's own client does.
pub fn client(ctx: &Ctx, location: &RegistryLocation) -> Result<cartflow_registry::Client> {
    match location {
        RegistryLocation::Embedded => {
            let admin = AdminToken::of(&ctx.cfg.data_dir)?;
            Ok(cartflow_registry::Client::new(&spawn_embedded(ctx)?).with_token(Some(&admin.token)))
        }
        RegistryLocation::Remote { url } => {
            let token = std::env::var(super::serve::TRACKING_TOKEN_ENV).ok();
            Ok(cartflow_registry::Client::new(url).with_token(token.as_deref()))
        }
    }
}
