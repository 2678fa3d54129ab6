//! `cartflow registry serve`: the MLflow-compatible tracking server and its
//! web UI; also started in-process by `train` when the registry is embedded.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::routing::get;

use super::Ctx;
use crate::cli::{RegistryCommand, RegistryServeArgs};
use crate::telemetry;

pub fn run(ctx: &Ctx, command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Serve(a) => serve(ctx, a),
    }
}

/// The registry named by the configuration (and overrides), opened.
pub(super) async fn open(
    ctx: &Ctx,
    store: Option<String>,
    artifacts: Option<String>,
) -> Result<cartflow_registry::Registry> {
    let (default_store, default_artifacts) = ctx.cfg.registry_locations()?;
    let store = store.unwrap_or(default_store);
    let artifacts = artifacts.unwrap_or(default_artifacts);
    cartflow_registry::open(&store, &artifacts)
        .await
        .with_context(|| format!("opening the registry (store {store}, artifacts {artifacts})"))
}

fn app(registry: cartflow_registry::Registry, describe: String) -> axum::Router {
    telemetry::metrics_handle();
    cartflow_registry::app(registry).route("/metrics", get(|| async { telemetry::metrics_handle().render() })).route(
        "/health",
        get(move || async move { axum::Json(serde_json::json!({ "status": "ok", "registry": describe })) }),
    )
}

fn serve(ctx: &Ctx, a: RegistryServeArgs) -> Result<()> {
    let addr = a.addr.unwrap_or_else(|| ctx.cfg.registry.addr.clone());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let control = ctx.control.clone();
    rt.block_on(async {
        let registry = open(ctx, a.store, a.artifacts).await?;
        let listener =
            tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr} for the registry"))?;
        let local = listener.local_addr()?;
        println!(
            "registry on http://{local}: MLflow API /api/2.0/mlflow/…, artifacts /api/2.0/mlflow-artifacts/…, UI /ui/"
        );
        println!("use it from MLflow: MLFLOW_TRACKING_URI=http://{local}");
        axum::serve(listener, app(registry, local.to_string()))
            .with_graceful_shutdown(async move {
                while !control.stopped() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await
            .context("serving the registry")
    })
}

/// Serves this data directory's registry on a free loopback port from a
/// background thread, for as long as the process lives, behind the data
/// directory's admin token; returns its URL. Started once per process.
pub fn spawn_embedded(ctx: &Ctx) -> Result<String> {
    static URL: OnceLock<String> = OnceLock::new();
    if let Some(url) = URL.get() {
        return Ok(url.clone());
    }
    let (admin, _) = super::serve::admin_token(&ctx.cfg.data_dir)?;
    let tokens = Arc::new(super::serve::tokens(ctx, &admin)?);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let (registry, listener) = rt.block_on(async {
        let registry = open(ctx, None, None).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        anyhow::Ok((registry, listener))
    })?;
    let url = format!("http://{}", listener.local_addr()?);
    let app =
        app(registry, url.clone()).layer(axum::middleware::from_fn_with_state(tokens, cartflow_serve::auth::layer));
    std::thread::spawn(move || rt.block_on(async move { axum::serve(listener, app).await }));
    Ok(URL.get_or_init(|| url).clone())
}

/// A client of the registry at `url`: `embedded` is this data directory's,
/// served on loopback behind the admin token; any other URL is reached with
/// `MLFLOW_TRACKING_TOKEN` when it is set, as MLflow's own client does.
pub fn client(ctx: &Ctx, url: &str) -> Result<cartflow_registry::Client> {
    if url == "embedded" {
        let (admin, _) = super::serve::admin_token(&ctx.cfg.data_dir)?;
        return Ok(cartflow_registry::Client::new(&spawn_embedded(ctx)?).with_token(Some(&admin)));
    }
    let token = std::env::var(super::serve::TRACKING_TOKEN_ENV).ok();
    Ok(cartflow_registry::Client::new(url).with_token(token.as_deref()))
}
