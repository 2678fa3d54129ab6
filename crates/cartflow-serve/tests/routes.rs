//! The prediction server's routes in process (`Router::oneshot`, no socket):
//! each route's scope, its method, its errors as JSON with a 4xx/5xx status,
//! and the model swapped in when the alias moves.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use cartflow_features::FeatureSet;
use cartflow_http::{Limits, Scope, TokenConfig, Tokens};
use cartflow_model::{Encoding, Ensemble, InputFeature, Model, Node};
use cartflow_online::MemoryStore;
use cartflow_serve::model::{ModelSlot, ModelSource, SourceError};
use cartflow_serve::{Server, Telemetry, app};
use serde_json::{Value, json};
use tower::ServiceExt;

const PREDICT: &str = "predict-token-0123456789";
const FEATURES: &str = "features-token-0123456789";

/// A registry of one model whose alias points where the test says.
#[derive(Default)]
struct Alias(Mutex<Option<String>>);

impl ModelSource for Alias {
    fn resolve(&self, _: &str, _: &str) -> Result<Option<String>, SourceError> {
        Ok(self.0.lock().unwrap().clone())
    }

    fn model_file(&self, _: &str, version: &str) -> Result<Vec<u8>, SourceError> {
        // Version n scores every cart at sigmoid(n - 1): v1 says 0.5.
        let mut ensemble = Ensemble { base_score: version.parse::<f64>()? - 1.0, ..Ensemble::default() };
        ensemble.push_tree(&[Node::leaf(0.0)]);
        let inputs = vec![InputFeature { name: "price".into(), encoding: Encoding::Number }];
        Ok(Model::new(FeatureSet::V1, inputs, ensemble, 0.5).to_json())
    }

    fn describe(&self) -> String {
        "a test's alias".into()
    }
}

fn server() -> (Router, Arc<ModelSlot>, Arc<Alias>) {
    let tokens = Tokens::new(&[
        TokenConfig { name: "scorer".into(), token: PREDICT.into(), scopes: vec![Scope::Predict] },
        TokenConfig { name: "reader".into(), token: FEATURES.into(), scopes: vec![Scope::FeaturesRead] },
    ])
    .unwrap();
    let slot = Arc::new(ModelSlot::new("purchase_prediction_model", "champion"));
    let app = app(Server {
        store: Arc::new(MemoryStore::new(cartflow_features::DEFAULT_SESSION_TTL)),
        model: slot.clone(),
        insights: Arc::new(NoLake),
        tokens: Arc::new(tokens),
        telemetry: Telemetry { metrics: Arc::new(|| "# HELP x y\n".into()), status: Arc::new(|| json!({})) },
        extra: None,
        limits: Limits { max_body_bytes: 4096, ..Limits::default() },
        predictions: None,
    });
    (app, slot, Arc::new(Alias::default()))
}

struct NoLake;

impl cartflow_serve::dashboard::Insights for NoLake {
    fn gold(&self) -> Result<Vec<cartflow_serve::dashboard::Table>, cartflow_serve::dashboard::InsightsError> {
        Err("no lake".into())
    }

    fn model_report(
        &self,
        _: &cartflow_serve::model::ServedModel,
    ) -> Result<cartflow_serve::dashboard::ModelReport, cartflow_serve::dashboard::InsightsError> {
        Err("no registry".into())
    }
}

async fn call(app: &Router, method: &str, uri: &str, token: Option<&str>, body: Option<String>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let response = app.clone().oneshot(req.body(body.map_or_else(Body::empty, Body::from)).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())))
}

fn carts(n: usize) -> String {
    let cart = json!({ "user_id": 1, "product_id": 2, "user_session": "s", "price": 35.5,
                       "event_time": "2019-10-01T10:00:00Z" });
    Value::Array(vec![cart; n]).to_string()
}

#[tokio::test]
async fn each_route_asks_its_own_scope() {
    let (app, _, _) = server();
    assert_eq!(call(&app, "GET", "/health", None, None).await.0, StatusCode::OK);
    let (status, body) = call(&app, "POST", "/predict", None, Some(carts(1))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(call(&app, "POST", "/predict", Some(FEATURES), Some(carts(1))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&app, "POST", "/features", Some(PREDICT), Some("{}".into())).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&app, "GET", "/metrics", Some(PREDICT), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&app, "GET", "/dashboard", Some(FEATURES), None).await.0, StatusCode::FORBIDDEN);
    let (status, body) = call(
        &app,
        "POST",
        "/features",
        Some(FEATURES),
        Some(json!({ "user_id": 1, "product_id": 2, "event_time": "2019-10-01T10:00:00Z" }).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn predictions_follow_the_alias_and_errors_are_json() {
    let (app, slot, alias) = server();
    // No model yet: a 503 that says what it waits for, and /ready agrees.
    let (status, body) = call(&app, "POST", "/predict", Some(PREDICT), Some(carts(1))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("purchase_prediction_model@champion"), "{body}");
    assert_eq!(call(&app, "GET", "/ready", Some(PREDICT), None).await.0, StatusCode::SERVICE_UNAVAILABLE);

    *alias.0.lock().unwrap() = Some("1".into());
    assert_eq!(slot.refresh(alias.as_ref()).unwrap(), Some("1".into()));
    let (status, body) = call(&app, "POST", "/predict", Some(PREDICT), Some(carts(3))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["predictions"].as_array().unwrap().len(), 3);
    assert_eq!(body["predictions"][0]["probability"], json!(0.5));
    assert_eq!(body["model"]["version"], "1");
    assert_eq!(call(&app, "GET", "/ready", Some(PREDICT), None).await.0, StatusCode::OK);

    // The alias moves: the next request is scored by the new version.
    *alias.0.lock().unwrap() = Some("3".into());
    slot.refresh(alias.as_ref()).unwrap();
    let (_, body) = call(&app, "POST", "/predict", Some(PREDICT), Some(carts(1))).await;
    assert_eq!(body["model"]["version"], "3");
    assert!(body["predictions"][0]["probability"].as_f64().unwrap() > 0.85, "{body}");

    // Bad input: a 4xx naming what is wrong, never a 200.
    for (bad, want, says) in [
        ("[]".to_owned(), StatusCode::BAD_REQUEST, "at least one"),
        ("[{\"user_id\": \"x\"}]".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, "user_id"),
        (carts(200), StatusCode::PAYLOAD_TOO_LARGE, ""),
    ] {
        let (status, body) = call(&app, "POST", "/predict", Some(PREDICT), Some(bad.clone())).await;
        assert_eq!(status, want, "{bad:.60}: {body}");
        assert!(body.to_string().contains(says), "{bad:.60}: {body}");
    }
    let (status, body) = call(&app, "GET", "/predict", Some(PREDICT), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    let (status, body) = call(&app, "GET", "/nowhere", Some(PREDICT), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

/// `/health` is "ok" until a stage of the process waits for a backing
/// service: then a 503 that names the stage, and nothing of why.
#[tokio::test]
async fn health_names_the_stages_that_wait_for_a_backing_service() {
    let waiting = Arc::new(Mutex::new(None::<String>));
    let status = {
        let waiting = waiting.clone();
        move || json!({ "stages": { "validate": { "read": 5, "waiting": *waiting.lock().unwrap() }, "features": {} } })
    };
    let router = cartflow_serve::router(
        Arc::new(MemoryStore::new(cartflow_features::DEFAULT_SESSION_TTL)),
        Telemetry { metrics: Arc::new(String::new), status: Arc::new(status) },
        Arc::new(Tokens::new(&[]).unwrap()),
        Limits::default(),
    );
    assert_eq!(call(&router, "GET", "/health", None, None).await, (StatusCode::OK, json!({ "status": "ok" })));
    *waiting.lock().unwrap() =
        Some("kafka: flushing the producer: Local: Message timed out (at 127.0.0.1:9092)".into());
    let (status, body) = call(&router, "GET", "/health", None, None).await;
    assert_eq!(
        (status, body),
        (StatusCode::SERVICE_UNAVAILABLE, json!({ "status": "waiting", "stages": ["validate"] }))
    );
}
