//! `cartflow registry serve`: the MLflow-compatible tracking server and its
//! web UI, behind the same tokens, limits and listener as every server (the
//! embedded registry is served in-process by [`crate::wiring::registry`]).

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::{RegistryCommand, RegistryServeArgs};
use crate::wiring::{listen, registry};

pub fn run(ctx: &Ctx, command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Serve(a) => serve(ctx, a),
    }
}

fn serve(ctx: &Ctx, a: RegistryServeArgs) -> Result<()> {
    let addr = a.addr.clone().unwrap_or_else(|| ctx.cfg.registry.addr.clone());
    let listener = listen::listen(ctx, &addr, "the registry", &a.listen)?;
    let opened = ctx.open_when_up("the registry's store", false, || {
        listen::runtime().block_on(registry::open(ctx, a.store.clone(), a.artifacts.clone()))
    })?;
    let url = listener.url();
    let describe = opened.store.describe();
    println!("registry on {url}: MLflow API /api/2.0/mlflow/…, artifacts /api/2.0/mlflow-artifacts/…, UI /ui/");
    match &listener.admin {
        Some(admin) => {
            println!("token     {}", admin.shown());
            println!("use it from MLflow: MLFLOW_TRACKING_URI={url} MLFLOW_TRACKING_TOKEN={}", admin.for_shell());
        }
        None => println!("use it from MLflow: MLFLOW_TRACKING_URI={url}"),
    }
    let app = registry::app(opened, describe, listener.tokens.clone());
    listen::runtime()
        .block_on(listener.server.serve(app, listen::stopped(ctx.control.clone())))
        .context("serving the registry")
}
