//! MLflow's REST API over the [`Store`], and its artifact API over an
//! object store. Every endpoint is declared once in [`router`], with the
//! HTTP method MLflow's server gives it (another method is a 405) and the
//! scope it needs: `registry:read` for what only reads, `registry:write` for
//! the rest. Handlers sit by concern: [`tracking`] (experiments, runs),
//! [`models`] (registered models, versions, aliases), [`logged`] (MLflow 3's
//! logged models), [`artifacts`].

mod artifacts;
mod fields;
mod logged;
mod models;
mod tracking;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use cartflow_http::auth::scoped;
use cartflow_http::{Limits, Scope};
use object_store::ObjectStore;
use serde_json::json;

pub(crate) use fields::Fields;

use crate::store::Store;
use crate::{ErrorCode, RegistryError, Result};

/// The store, where artifacts live, and what one request may cost.
#[derive(Clone)]
pub struct Registry {
    pub store: Store,
    pub artifacts: Arc<dyn ObjectStore>,
    /// Key prefix of artifacts inside `artifacts`.
    pub artifact_prefix: String,
    pub limits: RegistryLimits,
}

/// Limits of the registry's routes.
#[derive(Debug, Clone, Copy)]
pub struct RegistryLimits {
    /// The JSON API's body and time limits.
    pub api: Limits,
    /// Largest artifact one upload may put; uploads stream to the store, so
    /// this bounds disk, not memory.
    pub max_artifact_bytes: u64,
    /// How long one artifact upload or download may take.
    pub artifact_timeout: Duration,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits {
            api: Limits::default(),
            max_artifact_bytes: 1 << 30,
            artifact_timeout: Duration::from_secs(600),
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = match self.code {
            ErrorCode::ResourceDoesNotExist => StatusCode::NOT_FOUND,
            ErrorCode::ResourceAlreadyExists | ErrorCode::InvalidParameterValue => StatusCode::BAD_REQUEST,
            ErrorCode::RequestLimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!("registry: {}", self.message);
        }
        (status, axum::Json(json!({ "error_code": self.code.as_str(), "message": self.message }))).into_response()
    }
}

pub(crate) type Answer = Result<axum::Json<serde_json::Value>>;

pub(crate) fn empty() -> Answer {
    Ok(axum::Json(json!({})))
}

/// `items[offset..offset + max]` and the token of the next page, if any.
/// `max_results` defaults to `default` and may not exceed `most` (MLflow's rule).
pub(crate) fn page<T>(items: Vec<T>, f: &Fields, default: usize, most: usize) -> Result<(Vec<T>, Option<String>)> {
    let max = match f.opt_i64("max_results")? {
        None => default,
        Some(n) if n < 1 => return Err(RegistryError::invalid(format!("max_results {n}: at least 1"))),
        Some(n) if n as u64 > most as u64 => {
            return Err(RegistryError::invalid(format!("max_results {n}: at most {most}")));
        }
        Some(n) => n as usize,
    };
    let start: usize = f
        .opt_str("page_token")
        .filter(|t| !t.is_empty())
        .map_or(Ok(0), |t| t.parse().map_err(|_| RegistryError::invalid(format!("bad page_token {t:?}"))))?;
    let next = (items.len() > start + max).then(|| (start + max).to_string());
    Ok((items.into_iter().skip(start).take(max).collect(), next))
}

/// Filters and sorts off the async threads: a long filter over many runs
/// must not hold up the requests beside it.
pub(crate) async fn search<T: crate::filter::Searchable + Send + 'static>(
    items: Vec<T>,
    filter: String,
    order_by: Vec<String>,
    models: bool,
) -> Result<Vec<T>> {
    tokio::task::spawn_blocking(move || {
        let mut items =
            if models { crate::filter::filter_models(items, &filter)? } else { crate::filter::filter(items, &filter)? };
        crate::filter::order(&mut items, &order_by)?;
        Ok(items)
    })
    .await
    .map_err(|e| RegistryError::internal(format!("search: {e}")))?
}

fn read(route: MethodRouter<Registry>) -> MethodRouter<Registry> {
    scoped(Scope::RegistryRead, route)
}

fn write(route: MethodRouter<Registry>) -> MethodRouter<Registry> {
    scoped(Scope::RegistryWrite, route)
}

macro_rules! mlflow {
    ($path:literal) => {
        concat!("/api/2.0/mlflow/", $path)
    };
}

/// MLflow's tracking, registry and artifact APIs (the UI is [`crate::ui::router`]),
/// with MLflow's methods (mlflow/server/handlers.py `get_endpoints`).
pub fn router(registry: Registry) -> Router {
    use {logged as l, models as m, tracking as t};
    let api = Router::new()
        .route(mlflow!("experiments/create"), write(post(t::create_experiment)))
        .route(mlflow!("experiments/get"), read(get(t::get_experiment)))
        .route(mlflow!("experiments/get-by-name"), read(get(t::experiment_by_name)))
        .route(mlflow!("experiments/search"), read(get(t::search_experiments).post(t::search_experiments)))
        .route(mlflow!("experiments/delete"), write(post(t::delete_experiment)))
        .route(mlflow!("experiments/restore"), write(post(t::restore_experiment)))
        .route(mlflow!("experiments/update"), write(post(t::rename_experiment)))
        .route(mlflow!("experiments/set-experiment-tag"), write(post(t::set_experiment_tag)))
        .route(mlflow!("experiments/delete-experiment-tag"), write(post(t::delete_experiment_tag)))
        .route(mlflow!("runs/create"), write(post(t::create_run)))
        .route(mlflow!("runs/get"), read(get(t::get_run)))
        .route(mlflow!("runs/update"), write(post(t::update_run)))
        .route(mlflow!("runs/delete"), write(post(t::delete_run)))
        .route(mlflow!("runs/restore"), write(post(t::restore_run)))
        .route(mlflow!("runs/log-metric"), write(post(t::log_metric)))
        .route(mlflow!("runs/log-parameter"), write(post(t::log_param)))
        .route(mlflow!("runs/set-tag"), write(post(t::set_tag)))
        .route(mlflow!("runs/delete-tag"), write(post(t::delete_tag)))
        .route(mlflow!("runs/log-batch"), write(post(t::log_batch)))
        .route(mlflow!("runs/log-model"), write(post(t::log_model)))
        .route(mlflow!("runs/log-inputs"), write(post(l::log_inputs)))
        .route(mlflow!("runs/outputs"), write(post(l::log_outputs)))
        .route(mlflow!("runs/search"), read(post(t::search_runs)))
        .route(mlflow!("metrics/get-history"), read(get(t::metric_history)))
        .route(mlflow!("logged-models"), write(post(l::create)))
        .route(mlflow!("logged-models/search"), read(post(l::search)))
        .route(
            mlflow!("logged-models/{model_id}"),
            read(get(l::get)).merge(write(patch(l::finalize).delete(l::delete))),
        )
        .route(mlflow!("logged-models/{model_id}/params"), write(post(l::log_params)))
        .route(mlflow!("logged-models/{model_id}/tags"), write(patch(l::set_tags)))
        .route(mlflow!("logged-models/{model_id}/tags/{key}"), write(delete(l::delete_tag)))
        .route(mlflow!("logged-models/{model_id}/artifacts/directories"), read(get(l::list_artifacts)))
        .route(mlflow!("registered-models/create"), write(post(m::create_model)))
        .route(mlflow!("registered-models/get"), read(get(m::get_model)))
        .route(mlflow!("registered-models/update"), write(patch(m::update_model)))
        .route(mlflow!("registered-models/rename"), write(post(m::rename_model)))
        .route(mlflow!("registered-models/delete"), write(delete(m::delete_model)))
        .route(mlflow!("registered-models/search"), read(get(m::search_models)))
        .route(mlflow!("registered-models/set-tag"), write(post(m::set_model_tag)))
        .route(mlflow!("registered-models/delete-tag"), write(delete(m::delete_model_tag)))
        .route(mlflow!("registered-models/get-latest-versions"), read(get(m::latest_versions).post(m::latest_versions)))
        .route(
            mlflow!("registered-models/alias"),
            read(get(m::get_alias)).merge(write(post(m::set_alias).delete(m::delete_alias))),
        )
        .route(mlflow!("model-versions/create"), write(post(m::create_version)))
        .route(mlflow!("model-versions/get"), read(get(m::get_version)))
        .route(mlflow!("model-versions/update"), write(patch(m::update_version)))
        .route(mlflow!("model-versions/delete"), write(delete(m::delete_version)))
        .route(mlflow!("model-versions/set-tag"), write(post(m::set_version_tag)))
        .route(mlflow!("model-versions/delete-tag"), write(delete(m::delete_version_tag)))
        .route(mlflow!("model-versions/get-download-uri"), read(get(m::download_uri)))
        .route(mlflow!("model-versions/search"), read(get(m::search_versions)))
        .route(mlflow!("model-versions/transition-stage"), write(post(m::transition_stage)))
        .route("/version", get(|| async { concat!("cartflow ", env!("CARGO_PKG_VERSION")) }))
        .with_state(registry.clone());
    registry.limits.api.apply(api).merge(artifacts::router(registry))
}
