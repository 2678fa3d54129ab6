//! MLflow 3's logged models (`/api/2.0/mlflow/logged-models/…`), which
//! `mlflow.<flavor>.log_model` creates, uploads into and finalizes, and the
//! run inputs and outputs that link runs, datasets and models.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::json;

use super::{Answer, Fields, Registry, empty, page};
use crate::RegistryError;
use crate::proto::ModelOutput;
use crate::store::NewLoggedModel;

pub async fn create(State(r): State<Registry>, f: Fields) -> Answer {
    let (name, run, kind) = (f.opt_str("name"), f.opt_str("source_run_id"), f.opt_str("model_type"));
    let model = r
        .store
        .create_logged_model(NewLoggedModel {
            experiment_id: &f.str("experiment_id")?,
            name: name.as_deref(),
            source_run_id: run.as_deref().unwrap_or_default(),
            model_type: kind.as_deref().unwrap_or_default(),
            params: &f.tags("params")?,
            tags: &f.tags("tags")?,
        })
        .await?;
    Ok(Json(json!({ "model": model })))
}

pub async fn get(State(r): State<Registry>, Path(id): Path<String>, f: Fields) -> Answer {
    Ok(Json(json!({ "model": r.store.logged_model(&id, f.opt_bool("allow_deleted")?).await? })))
}

/// `PATCH logged-models/{id}`: MLflow's `finalize_logged_model`.
pub async fn finalize(State(r): State<Registry>, Path(id): Path<String>, f: Fields) -> Answer {
    Ok(Json(json!({ "model": r.store.finalize_logged_model(&id, &f.str("status")?).await? })))
}

pub async fn delete(State(r): State<Registry>, Path(id): Path<String>) -> Answer {
    r.store.delete_logged_model(&id).await?;
    empty()
}

pub async fn log_params(State(r): State<Registry>, Path(id): Path<String>, f: Fields) -> Answer {
    r.store.log_logged_model_params(&id, &f.tags("params")?).await?;
    empty()
}

pub async fn set_tags(State(r): State<Registry>, Path(id): Path<String>, f: Fields) -> Answer {
    r.store.set_logged_model_tags(&id, &f.tags("tags")?).await?;
    empty()
}

pub async fn delete_tag(State(r): State<Registry>, Path((id, key)): Path<(String, String)>) -> Answer {
    r.store.delete_logged_model_tag(&id, &key).await?;
    empty()
}

/// `order_by: [{"field_name": "metrics.auc", "ascending": false}]` as order-by clauses.
fn order_by(f: &Fields) -> crate::Result<Vec<String>> {
    f.array("order_by")
        .iter()
        .map(|o| {
            let field = o["field_name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| RegistryError::invalid("order_by[].field_name: required"))?;
            let ascending = o["ascending"].as_bool().unwrap_or(true);
            Ok(format!("{field} {}", if ascending { "ASC" } else { "DESC" }))
        })
        .collect()
}

pub async fn search(State(r): State<Registry>, f: Fields) -> Answer {
    let models = r.store.logged_models(&f.list("experiment_ids")).await?;
    let found = super::search(models, f.filter(), order_by(&f)?, false).await?;
    let (items, next) = page(found, &f, 100, 1000)?;
    Ok(Json(json!({ "models": items, "next_page_token": next })))
}

/// `GET logged-models/{id}/artifacts/directories?artifact_directory_path=…`: what MLflow's UI lists.
pub async fn list_artifacts(State(r): State<Registry>, Path(id): Path<String>, f: Fields) -> Answer {
    let model = r.store.logged_model(&id, false).await?;
    let root = crate::proto::artifact_root(&model.info.artifact_uri)?;
    let dir = f.opt_str("artifact_directory_path").unwrap_or_default();
    let path =
        [root.as_str(), dir.trim_matches('/')].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join("/");
    let prefix = if dir.trim_matches('/').is_empty() { String::new() } else { format!("{}/", dir.trim_matches('/')) };
    let files: Vec<_> = r
        .list_artifacts(&path)
        .await?
        .into_iter()
        .map(|(name, is_dir, size)| super::artifacts::entry(&format!("{prefix}{name}"), is_dir, size))
        .collect();
    Ok(Json(json!({ "files": files })))
}

pub async fn log_inputs(State(r): State<Registry>, f: Fields) -> Answer {
    let models: Vec<String> =
        f.array("models").iter().filter_map(|m| m["model_id"].as_str().map(str::to_owned)).collect();
    r.store.log_inputs(&f.run_id()?, f.array("datasets"), &models).await?;
    empty()
}

pub async fn log_outputs(State(r): State<Registry>, f: Fields) -> Answer {
    let models: Vec<ModelOutput> = serde_json::from_value(f.0["models"].clone())
        .map_err(|e| RegistryError::invalid(format!("models: a list of {{model_id, step}}: {e}")))?;
    r.store.log_outputs(&f.run_id()?, &models).await?;
    empty()
}
