//! The registry as the other pieces use it: opened from the configuration
//! with its limits, served in-process when embedded, reached with a client,
//! and read by the prediction server as the source of its model.

use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use cartflow_http::AdminToken;
use cartflow_registry::{Client, RegistryLocation};
use cartflow_serve::model::{ModelSlot, ModelSource, ServedModel, SourceError};

use crate::backends::Backends;
use crate::commands::Ctx;
use crate::telemetry;

/// MLflow's variable for a tracking server's token; cartflow's client sends it too.
pub const TRACKING_TOKEN_ENV: &str = "MLFLOW_TRACKING_TOKEN";

/// The registry named by the configuration (and overrides), opened with its limits.
pub async fn open(ctx: &Ctx, store: Option<String>, artifacts: Option<String>) -> Result<cartflow_registry::Registry> {
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
pub fn app(
    registry: cartflow_registry::Registry,
    describe: String,
    tokens: Arc<cartflow_http::Tokens>,
) -> axum::Router {
    telemetry::metrics_handle();
    cartflow_registry::gauges::spawn(registry.store.clone(), super::listen::runtime().handle());
    let telemetry = cartflow_serve::Telemetry {
        metrics: Arc::new(|| telemetry::metrics_handle().render()),
        status: Arc::new(move || serde_json::json!({ "registry": describe })),
    };
    cartflow_http::finish(cartflow_registry::app(registry).merge(cartflow_serve::telemetry_routes(&telemetry)), tokens)
}

/// Serves this data directory's registry on a free loopback port from a
/// background thread, for as long as the process lives, behind the data
/// directory's admin token; returns its URL. Started once per process.
fn spawn_embedded(ctx: &Ctx) -> Result<String> {
    static URL: OnceLock<String> = OnceLock::new();
    if let Some(url) = URL.get() {
        return Ok(url.clone());
    }
    let listener = super::listen::listen_internal(ctx, "the embedded registry")?;
    let registry = super::listen::runtime().block_on(open(ctx, None, None))?;
    let url = listener.url();
    let app = app(registry, url.clone(), listener.tokens.clone());
    // Never stopped: it serves the process's own train and serve until the process ends.
    super::listen::spawn(listener.server, app, cartflow_stream::StageControl::new(false), "registry")?;
    Ok(URL.get_or_init(|| url).clone())
}

/// A client of the registry: the embedded one is this data directory's,
/// served on loopback behind the admin token; a remote one is reached with
/// `MLFLOW_TRACKING_TOKEN` when it is set, as MLflow's own client does.
pub fn client(ctx: &Ctx, location: &RegistryLocation) -> Result<Client> {
    match location {
        RegistryLocation::Embedded => {
            let admin = AdminToken::of(&ctx.cfg.data_dir)?;
            Ok(Client::new(&spawn_embedded(ctx)?).with_token(Some(&admin.token)))
        }
        RegistryLocation::Remote { url } => {
            let token = std::env::var(TRACKING_TOKEN_ENV).ok();
            Ok(Client::new(url).with_token(token.as_deref()))
        }
    }
}

/// Model versions from an MLflow-compatible registry over its REST API.
pub struct RegistrySource {
    pub client: Client,
}

impl ModelSource for RegistrySource {
    fn resolve(&self, name: &str, alias: &str) -> Result<Option<String>, SourceError> {
        Ok(self.client.version_by_alias(name, alias)?.map(|v| v.version))
    }

    fn model_file(&self, name: &str, version: &str) -> Result<Vec<u8>, SourceError> {
        Ok(self.client.version_file(name, version, "model.json")?)
    }

    fn describe(&self) -> String {
        self.client.base().to_owned()
    }
}

/// The model the configured alias names in the configured registry, loaded
/// as the server would load it (`None`: no such version yet).
pub fn champion(ctx: &Ctx) -> Result<Option<Arc<ServedModel>>> {
    let source = RegistrySource { client: client(ctx, &ctx.cfg.registry.url)? };
    let slot = ModelSlot::new(&ctx.cfg.registry.model_name, &ctx.cfg.serve.alias);
    if let Err(e) = slot.refresh(&source) {
        tracing::warn!("no model yet: {e}");
    }
    Ok(slot.current())
}
