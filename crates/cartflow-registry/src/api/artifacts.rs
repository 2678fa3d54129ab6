//! MLflow's artifact API (`/api/2.0/mlflow-artifacts/artifacts/…`) over an
//! object store. Uploads and downloads stream: a model of a gigabyte costs
//! a buffer, not a gigabyte of memory, and an upload stops at
//! `max_artifact_bytes`. Files come back sandboxed, images inline and the
//! rest as downloads, so an uploaded page cannot run in the registry's origin.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cartflow_http::{Limits, Scope, auth::scoped};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{Value, json};

use super::{Answer, Fields, Registry, empty};
use crate::{ErrorCode, RegistryError, Result};

/// An object name's parts are file names on a local store: longer ones fail there.
const MAX_SEGMENT_BYTES: usize = 255;
const MAX_PATH_BYTES: usize = 1024;
/// Bytes buffered before an upload goes to the store in parts.
const UPLOAD_BUFFER: usize = 8 << 20;

/// One entry of a listing, as MLflow's `list_artifacts` answers.
pub(crate) fn entry(path: &str, is_dir: bool, size: u64) -> Value {
    if is_dir {
        json!({ "path": path, "is_dir": true })
    } else {
        json!({ "path": path, "is_dir": false, "file_size": size })
    }
}

impl Registry {
    /// The object key of an artifact path, refusing `.`, `..`, and names too long to store.
    fn object(&self, path: &str) -> Result<ObjectPath> {
        let path = path.trim_matches('/');
        if path.split('/').any(|p| p == ".." || p == ".") {
            return Err(RegistryError::invalid(format!("artifact path {path:?} may not contain '.' or '..'")));
        }
        if path.len() > MAX_PATH_BYTES || path.split('/').any(|p| p.len() > MAX_SEGMENT_BYTES) {
            return Err(RegistryError::invalid(format!(
                "artifact path of {} bytes: at most {MAX_PATH_BYTES}, and {MAX_SEGMENT_BYTES} per name",
                path.len()
            )));
        }
        let full =
            if self.artifact_prefix.is_empty() { path.to_owned() } else { format!("{}/{path}", self.artifact_prefix) };
        ObjectPath::parse(&full).map_err(|e| RegistryError::invalid(format!("artifact path {path:?}: {e}")))
    }

    pub async fn put_artifact(&self, path: &str, bytes: bytes::Bytes) -> Result<()> {
        self.artifacts.put(&self.object(path)?, PutPayload::from(bytes)).await?;
        Ok(())
    }

    pub async fn get_artifact(&self, path: &str) -> Result<bytes::Bytes> {
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
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("txt" | "csv" | "yaml" | "yml" | "md" | "html" | "py") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn upload(State(r): State<Registry>, Path(path): Path<String>, body: Body) -> Answer {
    let key = r.object(&path)?;
    let limit = r.limits.max_artifact_bytes;
    let mut writer = object_store::buffered::BufWriter::with_capacity(r.artifacts.clone(), key, UPLOAD_BUFFER);
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(RegistryError::invalid(format!("upload of {path}: {e}")));
            }
        };
        total += chunk.len() as u64;
        if total > limit {
            let _ = writer.abort().await;
            return Err(RegistryError {
                code: ErrorCode::RequestLimitExceeded,
                message: format!("artifact {path}: larger than registry.max_artifact_mb ({} MiB)", limit >> 20),
            });
        }
        writer.put(chunk).await?;
    }
    tokio::io::AsyncWriteExt::shutdown(&mut writer)
        .await
        .map_err(|e| RegistryError::internal(format!("storing {path}: {e}")))?;
    empty()
}

async fn download(State(r): State<Registry>, Path(path): Path<String>) -> Result<Response> {
    let found = r.artifacts.get(&r.object(&path)?).await?;
    let name = path.rsplit('/').next().unwrap_or("artifact");
    let headers = cartflow_http::headers::download(name, content_type(&path));
    Ok((headers, Body::from_stream(found.into_stream())).into_response())
}

/// Deletes a file or a folder of them; never the whole store.
async fn remove(State(r): State<Registry>, Path(path): Path<String>) -> Answer {
    if path.trim_matches('/').is_empty() {
        return Err(RegistryError::invalid("artifact path: give the file or folder to delete, not the store's root"));
    }
    let prefix = r.object(&path)?;
    let keys: Vec<ObjectPath> = r.artifacts.list(Some(&prefix)).map_ok(|m| m.location).try_collect().await?;
    for key in keys.into_iter().chain([prefix]) {
        match r.artifacts.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    empty()
}

async fn list(State(r): State<Registry>, f: Fields) -> Answer {
    let path = f.opt_str("path").unwrap_or_default();
    let files: Vec<Value> =
        r.list_artifacts(&path).await?.into_iter().map(|(name, is_dir, size)| entry(&name, is_dir, size)).collect();
    Ok(axum::Json(json!({ "files": files })))
}

/// The artifact routes, with their own limits: transfers stream, so they may
/// take longer than a JSON request; their size is bounded while streaming.
pub(super) fn router(registry: Registry) -> Router {
    let limits = Limits { timeout: registry.limits.artifact_timeout, ..registry.limits.api };
    let routes = Router::new()
        .route("/api/2.0/mlflow-artifacts/artifacts", scoped(Scope::RegistryRead, get(list)))
        .route(
            "/api/2.0/mlflow-artifacts/artifacts/{*path}",
            scoped(Scope::RegistryRead, get(download))
                .merge(scoped(Scope::RegistryWrite, axum::routing::put(upload).delete(remove))),
        )
        .with_state(registry);
    limits.apply(routes)
}
