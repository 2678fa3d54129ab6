//! The feature API:
//!
//! - `POST /features`: one cart event (`user_id`, `product_id`,
//!   `user_session`, optional `event_time`, `price`, `brand`,
//!   `category_code`) → its features by name;
//! - `POST /get-online-features`: Feast's feature-server request and
//!   response (`features` or `feature_service`, columnar `entities`,
//!   `full_feature_names`) → `metadata.feature_names` and `results` with
//!   `values`, `statuses` and `event_timestamps` per feature.
//!
//! Both answer through the online store's `features`, which runs the shared
//! `compute`. A query without `event_time` is answered as of the newest
//! event the store holds (the stream's now).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::Response;
use cartflow_core::time::{self, Micros, rfc3339};
use cartflow_features::spec::{self, FeatureDef, FeatureSet, Value};
use cartflow_features::{CartAttrs, CartQuery};
use cartflow_online::{Answer, OnlineReader};
use serde::Deserialize;
use serde_json::{Map, Value as Json_, json};

use crate::ApiError;

pub const REQUESTS: &str = "cartflow_feature_requests_total";
pub const REQUEST_SECONDS: &str = "cartflow_feature_request_seconds";

/// One cart event, as `POST /features` and `POST /predict` take it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartEvent {
    pub user_id: i64,
    pub product_id: i64,
    #[serde(default)]
    pub user_session: Option<String>,
    /// RFC 3339 or the dataset's `2019-10-01 00:00:00 UTC`; default: the
    /// newest event the online store holds.
    #[serde(default)]
    pub event_time: Option<String>,
    #[serde(default)]
    pub price: Option<f64>,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub category_code: Option<String>,
}

impl CartEvent {
    pub fn attrs(&self) -> CartAttrs {
        CartAttrs {
            price: self.price,
            brand: self.brand.clone(),
            category_code: self.category_code.clone(),
            complete: false,
        }
    }

    /// The query for this cart at `time`, with the attributes it gave.
    pub fn query<'a>(&'a self, time: Micros, attrs: &'a CartAttrs) -> CartQuery<'a> {
        CartQuery {
            time,
            user_id: self.user_id,
            product_id: self.product_id,
            user_session: self.user_session.as_deref(),
            attrs: Some(attrs),
        }
    }
}

/// The times of a request's queries: given ones parsed; missing ones the
/// store's newest event time (else now), asked of the store once per request.
pub struct QueryTimes<'a> {
    store: &'a dyn OnlineReader,
    default: Option<Micros>,
}

impl<'a> QueryTimes<'a> {
    pub fn new(store: &'a dyn OnlineReader) -> Self {
        QueryTimes { store, default: None }
    }

    /// `field` names the value in an error message.
    pub async fn get(&mut self, given: Option<&str>, field: impl Fn() -> String) -> Result<Micros, ApiError> {
        if let Some(s) = given {
            return time::parse_timestamp(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{}: {s:?} is not a time (RFC 3339 or `2019-10-01 00:00:00 UTC`)",
                    field()
                ))
            });
        }
        if let Some(t) = self.default {
            return Ok(t);
        }
        let t = self.store.watermark().await.map_err(crate::store_error)?.unwrap_or_else(time::now_micros);
        self.default = Some(t);
        Ok(t)
    }
}

fn json_value(v: Value<'_>) -> Json_ {
    match v {
        Value::Null => Json_::Null,
        Value::Int(i) => json!(i),
        Value::Float(x) => json!(x),
        Value::Str(s) => json!(s),
    }
}

fn service(name: Option<&str>) -> Result<FeatureSet, ApiError> {
    match name {
        None => Ok(FeatureSet::V2),
        Some(n) => FeatureSet::from_service(n)
            .ok_or_else(|| ApiError::not_found(format!("feature_service {n:?}: expected cart_v1 or cart_v2"))),
    }
}

/// `POST /features`.
pub async fn features(
    State(store): State<Arc<dyn OnlineReader>>,
    body: Result<Json<Map<String, Json_>>, JsonRejection>,
) -> Response {
    let started = Instant::now();
    let result = answer_features(store.as_ref(), body).await;
    crate::observe("/features", result, started, REQUESTS, REQUEST_SECONDS)
}

/// Takes `field` out of `body`, typed.
fn take<T: serde::de::DeserializeOwned>(body: &mut Map<String, Json_>, field: &str) -> Result<Option<T>, ApiError> {
    body.remove(field)
        .filter(|v| !v.is_null())
        .map(|v| serde_json::from_value(v).map_err(|e| unprocessable(format!("{field}: {e}"))))
        .transpose()
}

fn unprocessable(message: String) -> ApiError {
    ApiError { status: axum::http::StatusCode::UNPROCESSABLE_ENTITY, message }
}

/// A cart event plus, optionally, `features` (names) and `feature_service`
/// (`cart_v1`, or `cart_v2` by default).
async fn answer_features(
    store: &dyn OnlineReader,
    body: Result<Json<Map<String, Json_>>, JsonRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Json(mut body) = body.map_err(ApiError::from_json)?;
    let names: Option<Vec<String>> = take(&mut body, "features")?;
    let set = service(take::<String>(&mut body, "feature_service")?.as_deref())?;
    // The rest is the cart: the same type, and checks, as `/predict`'s.
    let cart: CartEvent = serde_path_to_error::deserialize(Json_::Object(body))
        .map_err(|e| unprocessable(format!("Failed to deserialize the JSON body into the target type: {e}")))?;
    let defs: Vec<&FeatureDef> = match &names {
        None => set.features().collect(),
        Some(names) => names
            .iter()
            .map(|n| spec::feature(n).ok_or_else(|| ApiError::not_found(format!("features: no feature {n:?}"))))
            .collect::<Result<_, _>>()?,
    };
    let t = QueryTimes::new(store).get(cart.event_time.as_deref(), || "event_time".into()).await?;
    let attrs = cart.attrs();
    let answer = store.features(&cart.query(t, &attrs)).await.map_err(crate::store_error)?;
    let values: Map<String, Json_> =
        defs.iter().map(|d| (d.name.to_owned(), json_value((d.get)(&answer.features)))).collect();
    Ok(Json(json!({
        "user_id": cart.user_id,
        "product_id": cart.product_id,
        "user_session": cart.user_session,
        "event_time": rfc3339(t),
        "feature_service": set.service_name(),
        "features": values,
    })))
}

/// Feast's `POST /get-online-features` request. Fields this server does not
/// know are ignored, as Feast's own server (pydantic) ignores them: its
/// client adds new ones release by release.
#[derive(Debug, Deserialize)]
pub struct FeastRequest {
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub feature_service: Option<String>,
    /// Columns: `user_id` and `product_id` (required), `user_session`,
    /// and request data `event_time`, `price`, `brand`, `category_code`.
    pub entities: Map<String, Json_>,
    #[serde(default)]
    pub full_feature_names: bool,
    /// Feast 0.67's `metadata.feature_view_metadata`: cartflow's views are
    /// unversioned, so each is named without a version, as Feast does then.
    #[serde(default)]
    pub include_feature_view_version_metadata: bool,
}

const ENTITY_COLUMNS: [&str; 3] = ["user_id", "product_id", "user_session"];
const REQUEST_COLUMNS: [&str; 4] = ["event_time", "price", "brand", "category_code"];

/// `POST /get-online-features`.
pub async fn get_online_features(
    State(store): State<Arc<dyn OnlineReader>>,
    body: Result<Json<FeastRequest>, JsonRejection>,
) -> Response {
    let started = Instant::now();
    let result = answer_feast(store.as_ref(), body).await;
    crate::observe("/get-online-features", result, started, REQUESTS, REQUEST_SECONDS)
}

/// The requested features: Feast's `view:feature` references, or a service.
fn feast_features(req: &FeastRequest) -> Result<Vec<&'static FeatureDef>, ApiError> {
    match (&req.features, &req.feature_service) {
        (Some(_), Some(_)) => Err(ApiError::bad_request("give either features or feature_service, not both")),
        (None, None) => Err(ApiError::bad_request("give features (\"view:feature\", …) or feature_service")),
        (None, Some(s)) => Ok(service(Some(s))?.features().collect()),
        (Some(refs), None) => refs
            .iter()
            .map(|r| {
                let (view, name) = r.split_once(':').ok_or_else(|| {
                    ApiError::bad_request(format!("features: {r:?} is not a \"feature_view:feature\" reference"))
                })?;
                spec::feature(name)
                    .filter(|d| d.view == view)
                    .ok_or_else(|| ApiError::not_found(format!("features: no feature {name:?} in view {view:?}")))
            })
            .collect(),
    }
}

/// One column of `entities`, as many values as rows.
fn column<'a>(req: &'a FeastRequest, name: &str, rows: usize) -> Result<Option<&'a Vec<Json_>>, ApiError> {
    match req.entities.get(name) {
        None => Ok(None),
        Some(Json_::Array(values)) if values.len() == rows => Ok(Some(values)),
        Some(Json_::Array(values)) => {
            Err(ApiError::bad_request(format!("entities.{name}: {} values where user_id has {rows}", values.len())))
        }
        Some(_) => Err(ApiError::bad_request(format!("entities.{name}: expected a list"))),
    }
}

fn int_at(col: &[Json_], i: usize, name: &str) -> Result<i64, ApiError> {
    col[i].as_i64().ok_or_else(|| ApiError::bad_request(format!("entities.{name}[{i}]: expected an integer")))
}

fn str_at<'a>(col: Option<&'a Vec<Json_>>, i: usize, name: &str) -> Result<Option<&'a str>, ApiError> {
    match col.map(|c| &c[i]) {
        None | Some(Json_::Null) => Ok(None),
        Some(Json_::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("entities.{name}[{i}]: expected a string or null"))),
    }
}

async fn answer_feast(
    store: &dyn OnlineReader,
    body: Result<Json<FeastRequest>, JsonRejection>,
) -> Result<Json<Json_>, ApiError> {
    let Json(req) = body.map_err(ApiError::from_json)?;
    let defs = feast_features(&req)?;
    if let Some(unknown) =
        req.entities.keys().find(|k| !ENTITY_COLUMNS.contains(&k.as_str()) && !REQUEST_COLUMNS.contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "entities.{unknown}: not an entity or request column (user_id, product_id, user_session, event_time, price, brand, category_code)"
        )));
    }
    let rows = match req.entities.get("user_id") {
        Some(Json_::Array(v)) => v.len(),
        _ => return Err(ApiError::bad_request("entities.user_id: required, a list of integers")),
    };
    if rows > crate::MAX_ROWS {
        return Err(ApiError::too_large(format!("{rows} entity rows: at most {} per request", crate::MAX_ROWS)));
    }
    let users = column(&req, "user_id", rows)?.expect("checked above");
    let products = column(&req, "product_id", rows)?
        .ok_or_else(|| ApiError::bad_request("entities.product_id: required, a list of integers"))?;
    let sessions = column(&req, "user_session", rows)?;
    let times = column(&req, "event_time", rows)?;
    let prices = column(&req, "price", rows)?;
    let brands = column(&req, "brand", rows)?;
    let categories = column(&req, "category_code", rows)?;

    let mut answers: Vec<(Micros, Answer)> = Vec::with_capacity(rows);
    let mut query_times = QueryTimes::new(store);
    for i in 0..rows {
        let t = query_times.get(str_at(times, i, "event_time")?, || format!("entities.event_time[{i}]")).await?;
        let price = match prices.map(|c| &c[i]) {
            None | Some(Json_::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| ApiError::bad_request(format!("entities.price[{i}]: expected a number or null")))?,
            ),
        };
        let attrs = CartAttrs {
            price,
            brand: str_at(brands, i, "brand")?.map(str::to_owned),
            category_code: str_at(categories, i, "category_code")?.map(str::to_owned),
            complete: false,
        };
        let q = CartQuery {
            time: t,
            user_id: int_at(users, i, "user_id")?,
            product_id: int_at(products, i, "product_id")?,
            user_session: str_at(sessions, i, "user_session")?,
            attrs: Some(&attrs),
        };
        answers.push((t, store.features(&q).await.map_err(crate::store_error)?));
    }

    // Entity columns first, as Feast returns them.
    let epoch = rfc3339(0);
    let mut names = Vec::new();
    let mut results = Vec::new();
    for name in ENTITY_COLUMNS {
        if let Some(values) = req.entities.get(name) {
            names.push(json!(name));
            results.push(json!({
                "values": values,
                "statuses": vec!["PRESENT"; rows],
                "event_timestamps": vec![&epoch; rows],
            }));
        }
    }
    let mut views: Vec<&str> = Vec::new();
    for d in &defs {
        names.push(json!(if req.full_feature_names { format!("{}__{}", d.view, d.name) } else { d.name.to_owned() }));
        if !views.contains(&d.view) {
            views.push(d.view);
        }
        let (mut values, mut statuses, mut stamps) = (Vec::new(), Vec::new(), Vec::new());
        for (t, a) in &answers {
            let (status, value, at) = feast_value(d, a, *t);
            statuses.push(status);
            values.push(value);
            stamps.push(rfc3339(at.unwrap_or(0)));
        }
        results.push(json!({ "values": values, "statuses": statuses, "event_timestamps": stamps }));
    }
    let mut metadata = json!({ "feature_names": names });
    if req.include_feature_view_version_metadata {
        metadata["feature_view_metadata"] = views.iter().map(|v| json!({ "name": v })).collect();
    }
    Ok(Json(json!({ "metadata": metadata, "results": results })))
}

/// One feature of one row as Feast's server answers it: a view whose entity
/// the store does not hold is `NOT_FOUND` with no value (as Feast says of a
/// key never materialized), even where cartflow's own API computes one, such
/// as a new shopper's zero prior carts; a held entity's missing value is
/// `NULL_VALUE`. The cart's own attributes (view `cart_event`) come with the
/// request or from the product's state: found when they are there, and
/// `NOT_FOUND` when neither had them.
fn feast_value(d: &FeatureDef, a: &Answer, t: Micros) -> (&'static str, Json_, Option<Micros>) {
    let (found, at) = match d.view {
        spec::SESSION_ACTIVITY => (a.session_time.is_some(), a.session_time.map(|s| s.min(t))),
        spec::USER_HISTORY => (a.user_found, a.user_found.then_some(t)),
        _ => (a.product_time.is_some(), a.product_time.map(|p| p.min(t))),
    };
    match ((d.get)(&a.features), found) {
        (Value::Null, false) => ("NOT_FOUND", Json_::Null, None),
        (Value::Null, true) => ("NULL_VALUE", Json_::Null, at),
        (v, _) if d.view == spec::CART_EVENT => ("PRESENT", json_value(v), Some(at.unwrap_or(t))),
        (_, false) => ("NOT_FOUND", Json_::Null, None),
        (v, true) => ("PRESENT", json_value(v), at),
    }
}
