//! `POST /predict`: a list of cart events (the reference design's shape,
//! extended with optional time and product attributes) → one purchase
//! probability each, from the online store's features (the same `compute`
//! as the feature API) and the model the registry's alias names.
//!
//! ```json
//! [{"user_id": 1, "product_id": 2, "user_session": "s", "price": 9.5}]
//! → {"predictions": [{"probability": 0.31, "will_purchase": false}],
//!    "model": {"name": "purchase_prediction_model", "version": "3", "alias": "champion"}}
//! ```

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cartflow_features::CartQuery;
use cartflow_online::OnlineReader;
use serde::Serialize;
use tracing::Instrument;

use crate::features_api::{CartEvent, QueryTimes};
use crate::latency::Latency;
use crate::model::ModelSlot;
use crate::prediction_log::{Answered, AnsweredCart, ModelVersion, PredictionLog, new_request_id};
use crate::{ApiError, observe};

pub const REQUESTS: &str = "cartflow_predict_requests_total";
pub const REQUEST_SECONDS: &str = "cartflow_predict_request_seconds";
pub const ITEMS: &str = "cartflow_predict_items_total";
/// Seconds from the newest event behind an answer (the session's or the
/// product's, by event time) to the answer: how fresh the features it used were.
pub const FEATURE_AGE: &str = "cartflow_predict_feature_age_seconds";

#[derive(Clone)]
pub struct Predictor {
    pub store: Arc<dyn OnlineReader>,
    pub model: Arc<ModelSlot>,
    pub latency: Arc<Latency>,
    /// Where answers are logged (`tracking.predictions`), if anywhere.
    pub log: Option<Arc<PredictionLog>>,
}

/// `POST /predict`.
pub async fn predict(
    State(p): State<Predictor>,
    headers: HeaderMap,
    body: Result<Json<Vec<CartEvent>>, JsonRejection>,
) -> Response {
    let started = Instant::now();
    let result = answer(&p, &headers, body).await;
    if result.is_ok() {
        p.latency.record(started.elapsed());
    }
    observe("/predict", result, started, REQUESTS, REQUEST_SECONDS)
}

async fn answer(
    p: &Predictor,
    headers: &HeaderMap,
    body: Result<Json<Vec<CartEvent>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(events) = body.map_err(ApiError::from_json)?;
    if events.is_empty() {
        return Err(ApiError::bad_request("expected a list of at least one cart event"));
    }
    if events.len() > crate::MAX_ROWS {
        return Err(ApiError::too_large(format!(
            "{} cart events: at most {} per request",
            events.len(),
            crate::MAX_ROWS
        )));
    }
    let served = p.model.current().ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!("no model to serve yet: {}@{} is not in the registry", p.model.name, p.model.alias),
    })?;
    let inputs = &served.model.inputs;
    let mut times = QueryTimes::new(p.store.as_ref());
    let mut attrs = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let time = times.get(e.event_time.as_deref(), || format!("[{i}].event_time")).await?;
        attrs.push((time, e.attrs()));
    }
    let queries: Vec<CartQuery> = events.iter().zip(&attrs).map(|(e, (time, given))| e.query(*time, given)).collect();
    // All of a batch's lookups at once: on Redis they share round trips.
    let answers = futures::future::try_join_all(queries.iter().map(|q| p.store.features(q)))
        .instrument(cartflow_trace::step("features"))
        .await
        .map_err(crate::store_error)?;
    let now = cartflow_core::time::now_micros();
    let age = metrics::histogram!(FEATURE_AGE);
    let mut rows = Vec::with_capacity(events.len() * inputs.len());
    for answer in &answers {
        if let Some(newest) = answer.session_time.max(answer.product_time) {
            age.record((now - newest).max(0) as f64 / 1e6);
        }
        rows.extend(inputs.iter().map(|input| input.encode_features(&answer.features)));
    }
    let probabilities = cartflow_trace::step("score")
        .in_scope(|| served.scorer.predict_batch(&rows, inputs.len()))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("scoring: {e}")))?;
    metrics::counter!(ITEMS).increment(events.len() as u64);
    let predictions: Vec<Prediction> = probabilities
        .iter()
        .map(|&probability| Prediction { probability, will_purchase: served.model.will_purchase(probability) })
        .collect();
    if let Some(log) = &p.log {
        let width = inputs.len();
        let sampled: Vec<usize> =
            (0..events.len()).filter(|&i| log.samples(events[i].user_session.as_deref().unwrap_or_default())).collect();
        let rows = if sampled.len() == events.len() {
            rows
        } else {
            sampled.iter().flat_map(|&i| &rows[i * width..(i + 1) * width]).copied().collect()
        };
        let carts = sampled
            .iter()
            .map(|&i| AnsweredCart {
                user_id: events[i].user_id,
                product_id: events[i].product_id,
                user_session: events[i].user_session.clone(),
                event_time: attrs[i].0,
                probability: predictions[i].probability,
                will_purchase: predictions[i].will_purchase,
            })
            .collect();
        log.offer(Answered {
            request_id: request_id(headers),
            time: now,
            model: served.logged_as.clone(),
            input_names: served.input_names.clone(),
            carts,
            inputs: rows,
        });
    }
    Ok(Json(Predictions { predictions, model: &served.logged_as }).into_response())
}

/// The caller's `x-request-id` (a proxy's, say), else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(new_request_id, str::to_owned)
}

/// The answer, serialized straight from these rather than through a JSON tree.
#[derive(Serialize)]
struct Predictions<'a> {
    predictions: Vec<Prediction>,
    model: &'a ModelVersion,
}

#[derive(Serialize)]
struct Prediction {
    probability: f64,
    will_purchase: bool,
}
