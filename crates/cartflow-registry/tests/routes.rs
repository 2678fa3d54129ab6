//! The registry's MLflow routes in process (`Router::oneshot`, no socket), on
//! SQLite in a temporary directory: the calls a training run makes, in
//! order; each write route refused to a read-only token and on GET; MLflow's
//! error shape.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use cartflow_http::{Scope, TokenConfig, Tokens};
use serde_json::{Value, json};
use tower::ServiceExt;

const WRITER: &str = "routes-writer-0123456789";
const READER: &str = "routes-reader-0123456789";

async fn registry(dir: &std::path::Path) -> Router {
    let store = format!("sqlite://{}", dir.join("mlflow.db").display());
    let registry = cartflow_registry::open(&store, &dir.join("artifacts").display().to_string()).await.unwrap();
    let tokens = Tokens::new(&[
        TokenConfig {
            name: "writer".into(),
            token: WRITER.into(),
            scopes: vec![Scope::RegistryWrite, Scope::RegistryRead],
        },
        TokenConfig { name: "reader".into(), token: READER.into(), scopes: vec![Scope::RegistryRead] },
    ])
    .unwrap();
    cartflow_http::finish(cartflow_registry::app(registry), Arc::new(tokens))
}

async fn call(app: &Router, method: &str, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(format!("/api/2.0/mlflow/{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn ok(app: &Router, method: &str, path: &str, body: Value) -> Value {
    let (status, answer) = call(app, method, path, WRITER, Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{method} {path} {body}: {answer}");
    answer
}

#[tokio::test]
async fn a_training_runs_calls_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let app = registry(dir.path()).await;
    let experiment = ok(&app, "POST", "experiments/create", json!({ "name": "carts" })).await["experiment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = ok(&app, "POST", "runs/create", json!({ "experiment_id": experiment, "run_name": "train-v2" })).await;
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_owned();
    ok(
        &app,
        "POST",
        "runs/log-batch",
        json!({ "run_id": run_id, "metrics": [{ "key": "valid_roc_auc", "value": 0.81, "timestamp": 1, "step": 0 }],
                "params": [{ "key": "max_depth", "value": "6" }] }),
    )
    .await;
    let found = ok(
        &app,
        "POST",
        "runs/search",
        json!({ "experiment_ids": [experiment], "filter": "metrics.valid_roc_auc > 0.8 and params.max_depth = '6'" }),
    )
    .await;
    assert_eq!(found["runs"].as_array().map(Vec::len), Some(1), "{found}");
    ok(&app, "POST", "registered-models/create", json!({ "name": "purchase_prediction_model" })).await;
    let version = ok(
        &app,
        "POST",
        "model-versions/create",
        json!({ "name": "purchase_prediction_model", "source": "runs:/x/model", "run_id": run_id }),
    )
    .await;
    assert_eq!(version["model_version"]["version"], "1");
    ok(
        &app,
        "POST",
        "registered-models/alias",
        json!({ "name": "purchase_prediction_model", "alias": "champion", "version": "1" }),
    )
    .await;
    let (status, by_alias) =
        call(&app, "GET", "registered-models/alias?name=purchase_prediction_model&alias=champion", READER, None).await;
    assert_eq!(status, StatusCode::OK, "{by_alias}");
    assert_eq!(by_alias["model_version"]["run_id"], run_id.as_str());
    // MLflow's client adds this filter to every search of registered models.
    let (status, models) = call(
        &app,
        "GET",
        "registered-models/search?filter=tag.%60mlflow.prompt.is_prompt%60%20!%3D%20%27true%27",
        READER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{models}");
    assert_eq!(models["registered_models"][0]["name"], "purchase_prediction_model");
    // An unknown model: MLflow's error shape, with its code.
    let (status, missing) = call(&app, "GET", "registered-models/get?name=nope", READER, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    assert_eq!(missing["error_code"], "RESOURCE_DOES_NOT_EXIST", "{missing}");
}

/// Every write route of MLflow's API, by its method.
const WRITES: [(&str, &str); 12] = [
    ("POST", "experiments/create"),
    ("POST", "experiments/delete"),
    ("POST", "runs/create"),
    ("POST", "runs/log-batch"),
    ("POST", "runs/log-inputs"),
    ("POST", "logged-models"),
    ("POST", "registered-models/create"),
    ("DELETE", "registered-models/delete"),
    ("POST", "registered-models/alias"),
    ("POST", "model-versions/create"),
    ("PATCH", "model-versions/update"),
    ("POST", "model-versions/transition-stage"),
];

#[tokio::test]
async fn writes_need_the_write_scope_and_are_never_a_get() {
    let dir = tempfile::tempdir().unwrap();
    let app = registry(dir.path()).await;
    for (method, path) in WRITES {
        let (status, body) = call(&app, method, path, READER, Some(json!({}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} with a read token: {body}");
        assert_eq!(body["error_code"], "PERMISSION_DENIED", "{method} {path}: {body}");
        if path == "registered-models/alias" {
            continue; // its GET reads the alias, as MLflow's does
        }
        let (status, body) = call(&app, "GET", path, WRITER, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "GET {path}: {body}");
    }
    let (status, body) = call(&app, "POST", "experiments/create", "not-a-token-at-all-000", Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error_code"], "UNAUTHENTICATED", "{body}");
}
