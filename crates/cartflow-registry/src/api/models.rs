//! The model registry: `/api/2.0/mlflow/registered-models/…` and `model-versions/…`.

use axum::Json;
use axum::extract::State;
use serde_json::json;

use super::{Answer, Fields, Registry, empty, page, search};

pub async fn create_model(State(r): State<Registry>, f: Fields) -> Answer {
    let description = f.opt_str("description").unwrap_or_default();
    let model = r.store.create_registered_model(&f.str("name")?, &description, &f.tags("tags")?).await?;
    Ok(Json(json!({ "registered_model": model })))
}

pub async fn get_model(State(r): State<Registry>, f: Fields) -> Answer {
    Ok(Json(json!({ "registered_model": r.store.registered_model(&f.str("name")?).await? })))
}

pub async fn update_model(State(r): State<Registry>, f: Fields) -> Answer {
    let description = f.opt_str("description").unwrap_or_default();
    Ok(Json(json!({ "registered_model": r.store.update_registered_model(&f.str("name")?, &description).await? })))
}

pub async fn rename_model(State(r): State<Registry>, f: Fields) -> Answer {
    let model = r.store.rename_registered_model(&f.str("name")?, &f.str("new_name")?).await?;
    Ok(Json(json!({ "registered_model": model })))
}

pub async fn delete_model(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.delete_registered_model(&f.str("name")?).await?;
    empty()
}

pub async fn search_models(State(r): State<Registry>, f: Fields) -> Answer {
    let mut order_by = f.list("order_by");
    if order_by.is_empty() {
        order_by.push("name ASC".into());
    }
    let found = search(r.store.registered_models().await?, f.filter(), order_by, true).await?;
    let (items, next) = page(found, &f, 100, 1000)?;
    Ok(Json(json!({ "registered_models": items, "next_page_token": next })))
}

pub async fn set_model_tag(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.set_registered_model_tag(&f.str("name")?, &f.tag()?).await?;
    empty()
}

pub async fn delete_model_tag(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.delete_registered_model_tag(&f.str("name")?, &f.str("key")?).await?;
    empty()
}

pub async fn latest_versions(State(r): State<Registry>, f: Fields) -> Answer {
    let versions = r.store.latest_versions(&f.str("name")?, &f.list("stages")).await?;
    Ok(Json(json!({ "model_versions": versions })))
}

pub async fn get_alias(State(r): State<Registry>, f: Fields) -> Answer {
    Ok(Json(json!({ "model_version": r.store.version_by_alias(&f.str("name")?, &f.str("alias")?).await? })))
}

pub async fn set_alias(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.set_alias(&f.str("name")?, &f.str("alias")?, &f.str("version")?).await?;
    empty()
}

pub async fn delete_alias(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.delete_alias(&f.str("name")?, &f.str("alias")?).await?;
    empty()
}

pub async fn create_version(State(r): State<Registry>, f: Fields) -> Answer {
    let text = |k: &str| f.opt_str(k).unwrap_or_default();
    let version = r
        .store
        .create_model_version(
            &f.str("name")?,
            &f.str("source")?,
            &text("run_id"),
            &text("model_id"),
            &text("description"),
            &f.tags("tags")?,
        )
        .await?;
    Ok(Json(json!({ "model_version": version })))
}

pub async fn get_version(State(r): State<Registry>, f: Fields) -> Answer {
    Ok(Json(json!({ "model_version": r.store.model_version(&f.str("name")?, &f.str("version")?).await? })))
}

pub async fn update_version(State(r): State<Registry>, f: Fields) -> Answer {
    let description = f.opt_str("description").unwrap_or_default();
    let version = r.store.update_model_version(&f.str("name")?, &f.str("version")?, &description).await?;
    Ok(Json(json!({ "model_version": version })))
}

pub async fn delete_version(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.delete_model_version(&f.str("name")?, &f.str("version")?).await?;
    empty()
}

pub async fn set_version_tag(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.set_model_version_tag(&f.str("name")?, &f.str("version")?, &f.tag()?).await?;
    empty()
}

pub async fn delete_version_tag(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.delete_model_version_tag(&f.str("name")?, &f.str("version")?, &f.str("key")?).await?;
    empty()
}

/// Where a version's files are: its source, or for a `models:/m-…` source
/// (MLflow 3's logged model) that model's artifact location, as MLflow answers.
pub async fn download_uri(State(r): State<Registry>, f: Fields) -> Answer {
    let version = r.store.model_version(&f.str("name")?, &f.str("version")?).await?;
    let uri = match version.source.strip_prefix("models:/").filter(|id| id.starts_with("m-")) {
        Some(model_id) => r.store.logged_model(model_id, true).await?.info.artifact_uri,
        None => version.source,
    };
    Ok(Json(json!({ "artifact_uri": uri })))
}

pub async fn search_versions(State(r): State<Registry>, f: Fields) -> Answer {
    let found = search(r.store.model_versions(None).await?, f.filter(), f.list("order_by"), true).await?;
    let (items, next) = page(found, &f, 10_000, 200_000)?;
    Ok(Json(json!({ "model_versions": items, "next_page_token": next })))
}

pub async fn transition_stage(State(r): State<Registry>, f: Fields) -> Answer {
    let version = r
        .store
        .transition_stage(
            &f.str("name")?,
            &f.str("version")?,
            &f.str("stage")?,
            f.opt_bool("archive_existing_versions")?,
        )
        .await?;
    Ok(Json(json!({ "model_version": version })))
}
