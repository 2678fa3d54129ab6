//! MLflow's REST API over the [`Store`], and its artifact API over an
//! object store. Request bodies are read field by field because MLflow's
//! clients send int64 fields sometimes as numbers, sometimes as strings.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};

use crate::proto::{Metric, Tag, now_ms};
use crate::store::Store;
use crate::{ErrorCode, RegistryError, Result, filter};

/// The store and where artifacts live.
#[derive(Clone)]
pub struct Registry {
    pub store: Store,
    pub artifacts: Arc<dyn ObjectStore>,
    /// Key prefix of artifacts inside `artifacts`.
    pub artifact_prefix: String,
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = match self.code {
            ErrorCode::ResourceDoesNotExist => StatusCode::NOT_FOUND,
            ErrorCode::ResourceAlreadyExists | ErrorCode::InvalidParameterValue => StatusCode::BAD_REQUEST,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, axum::Json(json!({ "error_code": self.code.as_str(), "message": self.message }))).into_response()
    }
}

type Answer = Result<axum::Json<Value>>;

/// A request's fields: a JSON body, or a GET's query string.
struct Fields(Value);

impl Fields {
    fn from_body(body: &Bytes) -> Result<Self> {
        if body.is_empty() {
            return Ok(Self(json!({})));
        }
        serde_json::from_slice(body)
            .map(Self)
            .map_err(|e| RegistryError::invalid(format!("request body is not JSON: {e}")))
    }

    fn from_query(pairs: Vec<(String, String)>) -> Self {
        let mut map = serde_json::Map::new();
        for (k, v) in pairs {
            match map.get_mut(&k) {
                Some(Value::Array(list)) => list.push(Value::String(v)),
                Some(first) => *first = Value::Array(vec![first.take(), Value::String(v)]),
                None => {
                    map.insert(k, Value::String(v));
                }
            }
        }
        Self(Value::Object(map))
    }

    fn opt_str(&self, key: &str) -> Option<String> {
        match &self.0[key] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> Result<String> {
        self.opt_str(key).ok_or_else(|| RegistryError::invalid(format!("missing value for required parameter '{key}'")))
    }

    fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        match &self.0[key] {
            Value::Null => Ok(None),
            Value::Number(n) => {
                n.as_i64().map(Some).ok_or_else(|| RegistryError::invalid(format!("'{key}' must be an integer")))
            }
            Value::String(s) => s
                .parse()
                .map(Some)
                .map_err(|_| RegistryError::invalid(format!("'{key}' must be an integer, not {s:?}"))),
            _ => Err(RegistryError::invalid(format!("'{key}' must be an integer"))),
        }
    }

    fn list(&self, key: &str) -> Vec<String> {
        match &self.0[key] {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned).or_else(|| v.as_i64().map(|i| i.to_string())))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    fn tags(&self, key: &str) -> Result<Vec<Tag>> {
        match &self.0[key] {
            Value::Null => Ok(Vec::new()),
            v => serde_json::from_value(v.clone()).map_err(|e| RegistryError::invalid(format!("'{key}': {e}"))),
        }
    }

    fn metric(v: &Value) -> Result<Metric> {
        let f = Fields(v.clone());
        let value = match &v["value"] {
            Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            Value::String(s) => {
                s.parse().map_err(|_| RegistryError::invalid(format!("metric value {s:?} is not a number")))?
            }
            _ => return Err(RegistryError::invalid("a metric needs a numeric 'value'")),
        };
        Ok(Metric {
            key: f.str("key")?,
            value,
            timestamp: f.opt_i64("timestamp")?.unwrap_or_else(now_ms),
            step: f.opt_i64("step")?.unwrap_or(0),
        })
    }

    fn run_id(&self) -> Result<String> {
        self.opt_str("run_id")
            .or_else(|| self.opt_str("run_uuid"))
            .ok_or_else(|| RegistryError::invalid("missing value for required parameter 'run_id'"))
    }

    fn max_results(&self) -> Result<usize> {
        Ok(self.opt_i64("max_results")?.map_or(1000, |n| n.clamp(1, 50_000) as usize))
    }
}

/// `items[offset..offset + max]` and the token of the next page, if any.
fn page<T>(items: Vec<T>, f: &Fields) -> Result<(Vec<T>, Option<String>)> {
    let max = f.max_results()?;
    let start: usize = f
        .opt_str("page_token")
        .filter(|t| !t.is_empty())
        .map_or(Ok(0), |t| t.parse().map_err(|_| RegistryError::invalid(format!("bad page_token {t:?}"))))?;
    let next = (items.len() > start + max).then(|| (start + max).to_string());
    Ok((items.into_iter().skip(start).take(max).collect(), next))
}

fn stages(f: &Fields) -> Vec<&'static str> {
    match f.opt_str("view_type").or_else(|| f.opt_str("run_view_type")).as_deref() {
        Some("DELETED_ONLY") => vec!["deleted"],
        Some("ALL") => vec!["active", "deleted"],
        _ => vec!["active"],
    }
}

async fn handle(registry: Registry, endpoint: String, f: Fields) -> Answer {
    let s = &registry.store;
    let empty = || Ok(axum::Json(json!({})));
    let answer = match endpoint.as_str() {
        "experiments/create" => {
            json!({ "experiment_id": s.create_experiment(&f.str("name")?, &f.tags("tags")?).await? })
        }
        "experiments/get" => json!({ "experiment": s.experiment(&f.str("experiment_id")?).await? }),
        "experiments/get-by-name" => json!({ "experiment": s.experiment_by_name(&f.str("experiment_name")?).await? }),
        "experiments/search" => {
            let mut all = s.experiments(&stages(&f)).await?;
            let keep = filter::name_filter(&f.opt_str("filter").unwrap_or_default())?;
            all.retain(|e| keep(&e.name));
            let (items, next) = page(all, &f)?;
            json!({ "experiments": items, "next_page_token": next })
        }
        "experiments/delete" => {
            return s.set_experiment_stage(&f.str("experiment_id")?, "deleted").await.and_then(|_| empty());
        }
        "experiments/restore" => {
            return s.set_experiment_stage(&f.str("experiment_id")?, "active").await.and_then(|_| empty());
        }
        "experiments/update" => {
            return s.rename_experiment(&f.str("experiment_id")?, &f.str("new_name")?).await.and_then(|_| empty());
        }
        "experiments/set-experiment-tag" => {
            let tag = Tag { key: f.str("key")?, value: f.opt_str("value").unwrap_or_default() };
            return s.set_experiment_tag(&f.str("experiment_id")?, &tag).await.and_then(|_| empty());
        }
        "runs/create" => {
            let run = s
                .create_run(
                    &f.opt_str("experiment_id").unwrap_or_else(|| "0".into()),
                    &f.opt_str("run_name").unwrap_or_default(),
                    &f.opt_str("user_id").unwrap_or_default(),
                    f.opt_i64("start_time")?.unwrap_or_else(now_ms),
                    &f.tags("tags")?,
                )
                .await?;
            json!({ "run": run })
        }
        "runs/get" => json!({ "run": s.run(&f.run_id()?).await? }),
        "runs/update" => {
            let info = s
                .update_run(
                    &f.run_id()?,
                    f.opt_str("status").as_deref(),
                    f.opt_i64("end_time")?,
                    f.opt_str("run_name").as_deref(),
                )
                .await?;
            json!({ "run_info": info })
        }
        "runs/delete" => return s.set_run_stage(&f.run_id()?, "deleted").await.and_then(|_| empty()),
        "runs/restore" => return s.set_run_stage(&f.run_id()?, "active").await.and_then(|_| empty()),
        "runs/log-metric" => {
            return s.log_batch(&f.run_id()?, &[Fields::metric(&f.0)?], &[], &[]).await.and_then(|_| empty());
        }
        "runs/log-parameter" => {
            let p = Tag { key: f.str("key")?, value: f.opt_str("value").unwrap_or_default() };
            return s.log_batch(&f.run_id()?, &[], &[p], &[]).await.and_then(|_| empty());
        }
        "runs/set-tag" => {
            let t = Tag { key: f.str("key")?, value: f.opt_str("value").unwrap_or_default() };
            return s.log_batch(&f.run_id()?, &[], &[], &[t]).await.and_then(|_| empty());
        }
        "runs/delete-tag" => return s.delete_tag(&f.run_id()?, &f.str("key")?).await.and_then(|_| empty()),
        "runs/log-batch" => {
            let metrics = f.0["metrics"]
                .as_array()
                .map(|m| m.iter().map(Fields::metric).collect::<Result<Vec<_>>>())
                .transpose()?
                .unwrap_or_default();
            return s
                .log_batch(&f.run_id()?, &metrics, &f.tags("params")?, &f.tags("tags")?)
                .await
                .and_then(|_| empty());
        }
        "runs/search" => {
            let runs = s.runs(&f.list("experiment_ids"), &stages(&f)).await?;
            let mut runs = filter::filter(runs, &f.opt_str("filter").unwrap_or_default())?;
            filter::order(&mut runs, &f.list("order_by"))?;
            let (items, next) = page(runs, &f)?;
            json!({ "runs": items, "next_page_token": next })
        }
        // MLflow 3's client lists a run's logged models beside its artifacts. This
        // registry does not store logged models (they cannot be created here), so
        // the true answer is none.
        "logged-models/search" => json!({ "models": [] }),
        "metrics/get-history" => json!({ "metrics": s.metric_history(&f.run_id()?, &f.str("metric_key")?).await? }),
        "registered-models/create" => {
            json!({ "registered_model": s.create_registered_model(&f.str("name")?, &f.opt_str("description").unwrap_or_default(), &f.tags("tags")?).await? })
        }
        "registered-models/get" => json!({ "registered_model": s.registered_model(&f.str("name")?).await? }),
        "registered-models/update" => {
            json!({ "registered_model": s.update_registered_model(&f.str("name")?, &f.opt_str("description").unwrap_or_default()).await? })
        }
        "registered-models/delete" => return s.delete_registered_model(&f.str("name")?).await.and_then(|_| empty()),
        "registered-models/search" => {
            let mut models = s.registered_models().await?;
            let keep = filter::name_filter(&f.opt_str("filter").unwrap_or_default())?;
            models.retain(|m| keep(&m.name));
            let (items, next) = page(models, &f)?;
            json!({ "registered_models": items, "next_page_token": next })
        }
        "registered-models/set-tag" => {
            let t = Tag { key: f.str("key")?, value: f.opt_str("value").unwrap_or_default() };
            return s.set_registered_model_tag(&f.str("name")?, &t).await.and_then(|_| empty());
        }
        "registered-models/get-latest-versions" => {
            let versions = s.model_versions(Some(&f.str("name")?)).await?;
            json!({ "model_versions": versions.into_iter().take(1).collect::<Vec<_>>() })
        }
        "model-versions/create" => {
            let v = s
                .create_model_version(
                    &f.str("name")?,
                    &f.str("source")?,
                    &f.opt_str("run_id").unwrap_or_default(),
                    &f.opt_str("description").unwrap_or_default(),
                    &f.tags("tags")?,
                )
                .await?;
            json!({ "model_version": v })
        }
        "model-versions/get" => json!({ "model_version": s.model_version(&f.str("name")?, &f.str("version")?).await? }),
        "model-versions/update" => {
            json!({ "model_version": s.update_model_version(&f.str("name")?, &f.str("version")?, &f.opt_str("description").unwrap_or_default()).await? })
        }
        "model-versions/delete" => {
            return s.delete_model_version(&f.str("name")?, &f.str("version")?).await.and_then(|_| empty());
        }
        "model-versions/set-tag" => {
            let t = Tag { key: f.str("key")?, value: f.opt_str("value").unwrap_or_default() };
            return s.set_model_version_tag(&f.str("name")?, &f.str("version")?, &t).await.and_then(|_| empty());
        }
        "model-versions/get-download-uri" => {
            json!({ "artifact_uri": s.model_version(&f.str("name")?, &f.str("version")?).await?.source })
        }
        "model-versions/search" => {
            let versions = s.model_versions(None).await?;
            let mut versions = filter::filter(versions, &f.opt_str("filter").unwrap_or_default())?;
            filter::order(&mut versions, &f.list("order_by"))?;
            let (items, next) = page(versions, &f)?;
            json!({ "model_versions": items, "next_page_token": next })
        }
        other => {
            return Err(RegistryError {
                code: ErrorCode::ResourceDoesNotExist,
                message: format!("no endpoint /api/2.0/mlflow/{other}"),
            });
        }
    };
    Ok(axum::Json(answer))
}

async fn on_post(State(r): State<Registry>, Path(endpoint): Path<String>, body: Bytes) -> Answer {
    handle(r, endpoint, Fields::from_body(&body)?).await
}

async fn on_get(
    State(r): State<Registry>,
    Path(endpoint): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Answer {
    handle(r, endpoint, Fields::from_query(q)).await
}

async fn alias_get(State(r): State<Registry>, Query(q): Query<Vec<(String, String)>>) -> Answer {
    let f = Fields::from_query(q);
    Ok(axum::Json(json!({ "model_version": r.store.version_by_alias(&f.str("name")?, &f.str("alias")?).await? })))
}

async fn alias_set(State(r): State<Registry>, body: Bytes) -> Answer {
    let f = Fields::from_body(&body)?;
    r.store.set_alias(&f.str("name")?, &f.str("alias")?, &f.str("version")?).await?;
    Ok(axum::Json(json!({})))
}

async fn alias_delete(State(r): State<Registry>, Query(q): Query<Vec<(String, String)>>, body: Bytes) -> Answer {
    let f = if body.is_empty() { Fields::from_query(q) } else { Fields::from_body(&body)? };
    r.store.delete_alias(&f.str("name")?, &f.str("alias")?).await?;
    Ok(axum::Json(json!({})))
}

// ---- artifacts

impl Registry {
    /// The object key of an artifact path, refusing `..` and absolute paths.
    fn object(&self, path: &str) -> Result<ObjectPath> {
        let path = path.trim_start_matches('/');
        if path.split('/').any(|p| p == ".." || p == ".") {
            return Err(RegistryError::invalid(format!("artifact path {path:?} may not contain '.' or '..'")));
        }
        let full =
            if self.artifact_prefix.is_empty() { path.to_owned() } else { format!("{}/{path}", self.artifact_prefix) };
        ObjectPath::parse(&full).map_err(|e| RegistryError::invalid(format!("artifact path {path:?}: {e}")))
    }

    pub async fn put_artifact(&self, path: &str, bytes: Bytes) -> Result<()> {
        self.artifacts.put(&self.object(path)?, PutPayload::from(bytes)).await?;
        Ok(())
    }

    pub async fn get_artifact(&self, path: &str) -> Result<Bytes> {
        Ok(self.artifacts.get(&self.object(path)?).await?.bytes().await?)
    }

    /// Files and directories directly under `path`: (name, is_dir, size).
    pub async fn list_artifacts(&self, path: &str) -> Result<Vec<(String, bool, u64)>> {
        let dir = if path.trim_matches('/').is_empty() {
            (!self.artifact_prefix.is_empty()).then(|| ObjectPath::from(self.artifact_prefix.as_str()))
        } else {
            Some(self.object(path)?)
        };
        let listing = self.artifacts.list_with_delimiter(dir.as_ref()).await?;
        let mut out: Vec<(String, bool, u64)> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(|n| (n.to_owned(), true, 0)))
            // A file's own path is not an entry of it (MLflow asks, to tell files from directories).
            .chain(
                listing
                    .objects
                    .iter()
                    .filter(|o| Some(&o.location) != dir.as_ref())
                    .filter_map(|o| o.location.filename().map(|n| (n.to_owned(), false, o.size))),
            )
            .collect();
        out.sort();
        Ok(out)
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("txt" | "csv" | "yaml" | "yml" | "md") => "text/plain; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn artifact_put(State(r): State<Registry>, Path(path): Path<String>, body: Bytes) -> Answer {
    r.put_artifact(&path, body).await?;
    Ok(axum::Json(json!({})))
}

async fn artifact_get(State(r): State<Registry>, Path(path): Path<String>) -> Result<Response> {
    let bytes = r.get_artifact(&path).await?;
    Ok(([(header::CONTENT_TYPE, content_type(&path))], bytes).into_response())
}

async fn artifact_delete(State(r): State<Registry>, Path(path): Path<String>) -> Answer {
    let prefix = r.object(&path)?;
    let keys: Vec<ObjectPath> = r.artifacts.list(Some(&prefix)).map_ok(|m| m.location).try_collect().await?;
    for key in keys.into_iter().chain([prefix]) {
        match r.artifacts.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(axum::Json(json!({})))
}

async fn artifact_list(State(r): State<Registry>, Query(q): Query<Vec<(String, String)>>) -> Answer {
    let path = Fields::from_query(q).opt_str("path").unwrap_or_default();
    let files: Vec<Value> = r
        .list_artifacts(&path)
        .await?
        .into_iter()
        .map(|(name, is_dir, size)| {
            if is_dir {
                json!({ "path": name, "is_dir": true })
            } else {
                json!({ "path": name, "is_dir": false, "file_size": size })
            }
        })
        .collect();
    Ok(axum::Json(json!({ "files": files })))
}

/// MLflow's tracking, registry and artifact APIs (the UI is [`crate::ui::router`]).
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/api/2.0/mlflow/registered-models/alias", get(alias_get).post(alias_set).delete(alias_delete))
        .route("/api/2.0/mlflow/{*endpoint}", get(on_get).post(on_post).patch(on_post).delete(on_post))
        .route("/api/2.0/mlflow-artifacts/artifacts", get(artifact_list))
        .route(
            "/api/2.0/mlflow-artifacts/artifacts/{*path}",
            // Models and plots outgrow axum's 2 MB default body limit.
            get(artifact_get).put(artifact_put).delete(artifact_delete).layer(DefaultBodyLimit::max(ARTIFACT_LIMIT)),
        )
        .with_state(registry)
        .route("/version", get(|| async { concat!("cartflow ", env!("CARGO_PKG_VERSION")) }))
}

/// The largest artifact accepted in one request.
pub const ARTIFACT_LIMIT: usize = 1 << 30;
