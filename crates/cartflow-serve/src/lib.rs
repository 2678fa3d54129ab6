//! cartflow's HTTP APIs (axum). [`router`] serves the feature API alone
//! with `/metrics` and `/health`; [`app`] serves everything `cartflow serve`
//! and `cartflow run` answer on one address: predictions, features, the
//! dashboard, any extra router (the registry), `/ready`, behind API tokens,
//! a body size limit and a timeout.
//! Errors are JSON `{"error": …}` with a 4xx or 5xx status, never a 200.

pub mod auth;
pub mod dashboard;
pub mod features_api;
pub mod latency;
pub mod model;
pub mod predict;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cartflow_online::{OnlineError, OnlineStore};
use serde_json::json;

/// A failed request: its status and a message that says what was wrong.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    /// The body was not the JSON asked for: axum's message names the field and position.
    pub fn from_json(e: JsonRejection) -> Self {
        ApiError { status: e.status(), message: e.body_text() }
    }

    pub fn store(e: OnlineError) -> Self {
        tracing::error!("online store: {e}");
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, message: format!("online store: {e}") }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message, "status": self.status.as_u16() }))).into_response()
    }
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

/// What `/metrics` and `/health` show, from the process that serves them.
#[derive(Clone)]
pub struct Telemetry {
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    pub health: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
}

pub fn describe_metrics() {
    metrics::describe_counter!(features_api::REQUESTS, "Feature API requests, by route and status.");
    metrics::describe_histogram!(features_api::REQUEST_SECONDS, "Feature API request latency, by route.");
    metrics::describe_counter!(predict::REQUESTS, "Prediction requests, by status.");
    metrics::describe_histogram!(predict::REQUEST_SECONDS, "Prediction request latency.");
    metrics::describe_counter!(predict::ITEMS, "Cart events scored.");
    metrics::describe_counter!(model::SWAPS, "Models loaded and swapped in.");
    metrics::describe_counter!(model::LOAD_ERRORS, "Failed attempts to follow the registry's alias.");
}

/// Everything [`app`] serves, and its limits.
pub struct Server {
    pub store: Arc<dyn OnlineStore>,
    pub model: Arc<model::ModelSlot>,
    pub insights: Arc<dyn dashboard::Insights>,
    pub tokens: Arc<auth::Tokens>,
    pub telemetry: Telemetry,
    /// Mounted beside the APIs (the registry's API and UI), behind the same tokens.
    pub extra: Option<Router>,
    pub max_body_bytes: usize,
    pub timeout: Duration,
}

/// Predictions, features, the dashboard, `/ready`, `/health`, `/metrics`
/// and `extra` on one router.
pub fn app(s: Server) -> Router {
    let latency = Arc::new(latency::Latency::default());
    let predictor = predict::Predictor { store: s.store.clone(), model: s.model.clone(), latency: latency.clone() };
    let board = dashboard::Dashboard {
        telemetry: s.telemetry.clone(),
        latency,
        model: s.model.clone(),
        insights: s.insights,
        previous: Default::default(),
    };
    let health = s.telemetry.health.clone();
    let (slot, ready_slot) = (s.model.clone(), s.model);
    let mut app = feature_routes(s.store)
        .merge(metrics_route(&s.telemetry))
        .merge(Router::new().route("/predict", post(predict::predict)).with_state(predictor))
        .merge(Router::new().route("/dashboard", get(dashboard::page)).with_state(board))
        .route(
            "/health",
            get(move || async move {
                let mut h = health();
                h["model"] = slot.describe();
                axum::Json(h)
            }),
        )
        .route(
            "/ready",
            get(move || async move {
                let body = axum::Json(ready_slot.describe());
                let status =
                    if ready_slot.current().is_some() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (status, body)
            }),
        )
        .route("/", get(|| async { axum::response::Redirect::to("/dashboard") }))
        .fallback(no_route);
    if let Some(extra) = s.extra {
        app = app.merge(extra);
    }
    let timeout = s.timeout;
    app.layer(axum::extract::DefaultBodyLimit::max(s.max_body_bytes))
        .layer(axum::middleware::from_fn(move |req, next| within(timeout, req, next)))
        .layer(axum::middleware::from_fn_with_state(s.tokens, auth::layer))
}

/// A request that takes longer than `limit` gets a JSON 503 (tower-http's
/// timeout answers an empty 408, and errors here always say what happened).
async fn within(limit: Duration, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("the request took longer than {} ms", limit.as_millis()),
        }
        .into_response(),
    }
}

fn feature_routes(store: Arc<dyn OnlineStore>) -> Router {
    Router::new()
        .route("/features", post(features_api::features))
        .route("/get-online-features", post(features_api::get_online_features))
        .with_state(store)
}

fn metrics_route(telemetry: &Telemetry) -> Router {
    let metrics = telemetry.metrics.clone();
    Router::new().route(
        "/metrics",
        get(move || async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics()) }),
    )
}

async fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}

/// The feature API with `/metrics` and `/health`.
pub fn router(store: Arc<dyn OnlineStore>, telemetry: Telemetry) -> Router {
    let health = telemetry.health.clone();
    feature_routes(store)
        .merge(metrics_route(&telemetry))
        .route("/health", get(move || async move { axum::Json(health()) }))
        .fallback(no_route)
}
