//! cartflow's HTTP APIs (axum). [`router`] serves the feature API with
//! `/metrics` and `/health`; the prediction API joins it later.
//! Errors are JSON `{"error": …}` with a 4xx or 5xx status, never a 200.

pub mod features_api;

use std::sync::Arc;
use std::time::Instant;

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
}

/// The feature API with `/metrics` and `/health`.
pub fn router(store: Arc<dyn OnlineStore>, telemetry: Telemetry) -> Router {
    let metrics = telemetry.metrics.clone();
    let health = telemetry.health.clone();
    let features = Router::new()
        .route("/features", post(features_api::features))
        .route("/get-online-features", post(features_api::get_online_features))
        .with_state(store);
    features
        .route(
            "/metrics",
            get(move || async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics()) }),
        )
        .route("/health", get(move || async move { axum::Json(health()) }))
        .fallback(|| async { ApiError::not_found("no such route") })
}
