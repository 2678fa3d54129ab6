//! cartflow's HTTP APIs (axum). [`router`] serves the feature API alone
//! (`cartflow features serve`); [`app`] serves everything `cartflow serve`
//! and `cartflow run` answer on one address: predictions, features, the
//! dashboard, any extra router (the registry), `/ready`, `/status`. Both sit
//! behind API tokens with a scope per route, body and time limits
//! ([`cartflow_http`]); `/health` alone is open, and says only "ok" (or, with a 503, which
//! stages wait for a backing service).
//! Errors are JSON `{"error": …}` with a 4xx or 5xx status, never a 200.

pub mod builder;
pub mod dashboard;
pub mod features_api;
pub mod history;
pub mod latency;
pub mod model;
pub mod predict;
pub mod prediction_log;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cartflow_http::auth::{Scope, Tokens, scoped};
use cartflow_http::{Limits, headers};
use cartflow_online::{OnlineError, OnlineReader};

pub use builder::{BoundServer, RunningServer, ServerBuilder};
pub use cartflow_http::ApiError;
pub use predict::FEATURE_AGE;

/// Rows (cart events, Feast entity rows) one request may ask about: the
/// answer and the work stay bounded whatever the body limit is.
pub const MAX_ROWS: usize = 1000;

/// The online store failed: a 503 that says why (its messages never hold a password).
pub fn store_error(e: OnlineError) -> ApiError {
    tracing::error!("online store: {e}");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("online store: {e}"))
}

/// Counts and times a request, then turns its result into the response.
pub fn observe<T: IntoResponse>(
    route: &'static str,
    result: Result<T, ApiError>,
    started: Instant,
    requests: &'static str,
    seconds: &'static str,
) -> Response {
    let status = result.as_ref().map_or_else(|e| e.status, |_| StatusCode::OK);
    metrics::counter!(requests, "route" => route, "status" => status.as_str().to_owned()).increment(1);
    metrics::histogram!(seconds, "route" => route).record(started.elapsed().as_secs_f64());
    match result {
        Ok(body) => body.into_response(),
        Err(e) => e.into_response(),
    }
}

/// What `/metrics` and `/status` show, from the process that serves them.
#[derive(Clone)]
pub struct Telemetry {
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// The details behind a token: stages, stores (credentials redacted), the model.
    pub status: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
}

pub fn describe_metrics() {
    metrics::describe_counter!(features_api::REQUESTS, "Feature API requests, by route and status.");
    metrics::describe_histogram!(
        features_api::REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Feature API request latency, by route."
    );
    metrics::describe_counter!(predict::REQUESTS, "Prediction requests, by status.");
    metrics::describe_histogram!(predict::REQUEST_SECONDS, metrics::Unit::Seconds, "Prediction request latency.");
    metrics::describe_counter!(predict::ITEMS, "Cart events scored.");
    metrics::describe_histogram!(
        predict::FEATURE_AGE,
        metrics::Unit::Seconds,
        "Age of the newest event (by event time) behind each scored cart event's features."
    );
    metrics::describe_counter!(model::SWAPS, "Models loaded and swapped in.");
    metrics::describe_counter!(model::LOAD_ERRORS, "Failed attempts to follow the registry's alias.");
    prediction_log::describe_metrics();
}

/// Everything [`app`] serves, and its limits.
pub struct Server {
    pub store: Arc<dyn OnlineReader>,
    pub model: Arc<model::ModelSlot>,
    pub insights: Arc<dyn dashboard::Insights>,
    pub tokens: Arc<Tokens>,
    pub telemetry: Telemetry,
    /// Mounted beside the APIs (the registry's API and UI), behind the same
    /// tokens; it brings its own limits (artifact uploads stream for longer).
    pub extra: Option<Router>,
    pub limits: Limits,
    /// Where answered predictions are logged, if anywhere.
    pub predictions: Option<Arc<prediction_log::PredictionLog>>,
}

/// Predictions, features, the dashboard, `/ready`, `/status`, `/health`,
/// `/metrics` and `extra` on one router.
pub fn app(s: Server) -> Router {
    let latency = Arc::new(latency::Latency::default());
    let predictor = predict::Predictor {
        store: s.store.clone(),
        model: s.model.clone(),
        latency: latency.clone(),
        log: s.predictions.clone(),
    };
    let history = Arc::new(history::History::default());
    history::History::sample(&history, s.telemetry.metrics.clone());
    let board = dashboard::Dashboard {
        telemetry: s.telemetry.clone(),
        latency,
        model: s.model.clone(),
        insights: s.insights,
        previous: Default::default(),
        history,
    };
    let (status, slot, ready_slot) = (s.telemetry.status.clone(), s.model.clone(), s.model);
    let telemetry = Telemetry {
        metrics: s.telemetry.metrics.clone(),
        status: Arc::new(move || {
            let mut details = status();
            details["model"] = slot.describe();
            details
        }),
    };
    let mut app = feature_routes(s.store)
        .merge(telemetry_routes(&telemetry))
        .merge(Router::new().route("/predict", scoped(Scope::Predict, post(predict::predict))).with_state(predictor))
        .merge(headers::pages(
            Router::new().route("/dashboard", scoped(Scope::RegistryRead, get(dashboard::page))).with_state(board),
        ))
        .route(
            "/ready",
            get(move || async move {
                let body = axum::Json(ready_slot.describe());
                let status =
                    if ready_slot.current().is_some() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (status, body)
            }),
        )
        .route("/", get(|| async { axum::response::Redirect::to("/dashboard") }));
    app = s.limits.apply(app);
    if let Some(extra) = s.extra {
        app = app.merge(extra);
    }
    cartflow_http::finish(app, s.tokens)
}

fn feature_routes(store: Arc<dyn OnlineReader>) -> Router {
    Router::new()
        .route("/features", scoped(Scope::FeaturesRead, post(features_api::features)))
        .route("/get-online-features", scoped(Scope::FeaturesRead, post(features_api::get_online_features)))
        .with_state(store)
}

/// `/metrics` and `/status` (behind the `metrics` scope), and the open `/health`.
pub fn telemetry_routes(telemetry: &Telemetry) -> Router {
    let (metrics, status, health_status) =
        (telemetry.metrics.clone(), telemetry.status.clone(), telemetry.status.clone());
    Router::new()
        .route(
            "/metrics",
            scoped(
                Scope::Metrics,
                get(move || async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics()) }),
            ),
        )
        .route("/status", scoped(Scope::Metrics, get(move || async move { axum::Json(status()) })))
        .route("/health", get(move || async move { health(&health_status()) }))
}

/// `/health`, open to all: "ok", or a 503 naming the stages that wait for a
/// backing service to come back (why is in `/status`, behind a token).
fn health(status: &serde_json::Value) -> (StatusCode, axum::Json<serde_json::Value>) {
    let waiting: Vec<&String> = status["stages"]
        .as_object()
        .map(|stages| stages.iter().filter(|(_, s)| !s["waiting"].is_null()).map(|(name, _)| name).collect())
        .unwrap_or_default();
    if waiting.is_empty() {
        (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ok" })))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "status": "waiting", "stages": waiting })))
    }
}

/// The feature API with `/metrics`, `/status` and `/health`, behind `tokens`.
pub fn router(store: Arc<dyn OnlineReader>, telemetry: Telemetry, tokens: Arc<Tokens>, limits: Limits) -> Router {
    cartflow_http::finish(limits.apply(feature_routes(store).merge(telemetry_routes(&telemetry))), tokens)
}
