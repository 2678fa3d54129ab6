//! Experiments and runs: `/api/2.0/mlflow/experiments/…`, `runs/…`, `metrics/…`.

use axum::Json;
use axum::extract::State;
use serde_json::json;

use super::{Answer, Fields, Registry, empty, page, search};
use crate::RegistryError;
use crate::proto::{ModelMetric, Tag, now_ms};

pub async fn create_experiment(State(r): State<Registry>, f: Fields) -> Answer {
    Ok(Json(json!({ "experiment_id": r.store.create_experiment(&f.str("name")?, &f.tags("tags")?).await? })))
}

pub async fn get_experiment(State(r): State<Registry>, f: Fields) -> Answer {
    Ok(Json(json!({ "experiment": r.store.experiment(&f.str("experiment_id")?).await? })))
}

pub async fn experiment_by_name(State(r): State<Registry>, f: Fields) -> Answer {
    Ok(Json(json!({ "experiment": r.store.experiment_by_name(&f.str("experiment_name")?).await? })))
}

pub async fn search_experiments(State(r): State<Registry>, f: Fields) -> Answer {
    let all = r.store.experiments(&f.stages()).await?;
    let found = search(all, f.filter(), f.list("order_by"), false).await?;
    let (items, next) = page(found, &f, 1000, 50_000)?;
    Ok(Json(json!({ "experiments": items, "next_page_token": next })))
}

pub async fn delete_experiment(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.set_experiment_stage(&f.str("experiment_id")?, "deleted").await?;
    empty()
}

pub async fn restore_experiment(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.set_experiment_stage(&f.str("experiment_id")?, "active").await?;
    empty()
}

pub async fn rename_experiment(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.rename_experiment(&f.str("experiment_id")?, &f.str("new_name")?).await?;
    empty()
}

pub async fn set_experiment_tag(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.set_experiment_tag(&f.str("experiment_id")?, &f.tag()?).await?;
    empty()
}

pub async fn delete_experiment_tag(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.delete_experiment_tag(&f.str("experiment_id")?, &f.str("key")?).await?;
    empty()
}

pub async fn create_run(State(r): State<Registry>, f: Fields) -> Answer {
    let run = r
        .store
        .create_run(
            &f.opt_str("experiment_id").unwrap_or_else(|| "0".into()),
            &f.opt_str("run_name").unwrap_or_default(),
            &f.opt_str("user_id").unwrap_or_default(),
            f.opt_i64("start_time")?.unwrap_or_else(now_ms),
            &f.tags("tags")?,
        )
        .await?;
    Ok(Json(json!({ "run": run })))
}

pub async fn get_run(State(r): State<Registry>, f: Fields) -> Answer {
    Ok(Json(json!({ "run": r.store.run(&f.run_id()?).await? })))
}

pub async fn update_run(State(r): State<Registry>, f: Fields) -> Answer {
    let status = f.opt_str("status");
    let name = f.opt_str("run_name");
    let info = r.store.update_run(&f.run_id()?, status.as_deref(), f.opt_i64("end_time")?, name.as_deref()).await?;
    Ok(Json(json!({ "run_info": info })))
}

pub async fn delete_run(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.set_run_stage(&f.run_id()?, "deleted").await?;
    empty()
}

pub async fn restore_run(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.set_run_stage(&f.run_id()?, "active").await?;
    empty()
}

/// A metric's link to a logged model (MLflow 3 logs autolog's scores so).
fn model_metric(f: &Fields, run_id: &str) -> crate::Result<Option<ModelMetric>> {
    let Some(model_id) = f.opt_str("model_id").filter(|m| !m.is_empty()) else { return Ok(None) };
    let m = f.metric()?;
    Ok(Some(ModelMetric {
        key: m.key,
        value: m.value,
        timestamp: m.timestamp,
        step: m.step,
        dataset_name: f.opt_str("dataset_name"),
        dataset_digest: f.opt_str("dataset_digest"),
        model_id,
        run_id: run_id.to_owned(),
    }))
}

pub async fn log_metric(State(r): State<Registry>, f: Fields) -> Answer {
    let run_id = f.run_id()?;
    r.store.log_batch(&run_id, &[f.metric()?], &[], &[]).await?;
    r.store.log_model_metrics(&run_id, &model_metric(&f, &run_id)?.into_iter().collect::<Vec<_>>()).await?;
    empty()
}

pub async fn log_param(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.log_batch(&f.run_id()?, &[], &[f.tag()?], &[]).await?;
    empty()
}

pub async fn set_tag(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.log_batch(&f.run_id()?, &[], &[], &[f.tag()?]).await?;
    empty()
}

pub async fn delete_tag(State(r): State<Registry>, f: Fields) -> Answer {
    r.store.delete_tag(&f.run_id()?, &f.str("key")?).await?;
    empty()
}

pub async fn log_batch(State(r): State<Registry>, f: Fields) -> Answer {
    let run_id = f.run_id()?;
    let rows: Vec<Fields> = f.array("metrics").iter().map(Fields::of).collect();
    let metrics = rows.iter().map(Fields::metric).collect::<crate::Result<Vec<_>>>()?;
    let linked = rows.iter().filter_map(|m| model_metric(m, &run_id).transpose()).collect::<crate::Result<Vec<_>>>()?;
    r.store.log_batch(&run_id, &metrics, &f.tags("params")?, &f.tags("tags")?).await?;
    r.store.log_model_metrics(&run_id, &linked).await?;
    empty()
}

/// MLflow 2's `runs/log-model`: the model's MLmodel, kept in the run's
/// `mlflow.log-model.history` tag as MLflow's server keeps it.
pub async fn log_model(State(r): State<Registry>, f: Fields) -> Answer {
    let run_id = f.run_id()?;
    let model: serde_json::Value = serde_json::from_str(&f.str("model_json")?)
        .map_err(|e| RegistryError::invalid(format!("model_json is not JSON: {e}")))?;
    const HISTORY: &str = "mlflow.log-model.history";
    let run = r.store.run(&run_id).await?;
    let mut history: Vec<serde_json::Value> =
        run.tag(HISTORY).and_then(|h| serde_json::from_str(h).ok()).unwrap_or_default();
    history.push(model);
    let tag = Tag { key: HISTORY.into(), value: serde_json::Value::Array(history).to_string() };
    r.store.log_batch(&run_id, &[], &[], &[tag]).await?;
    empty()
}

pub async fn search_runs(State(r): State<Registry>, f: Fields) -> Answer {
    let runs = r.store.runs(&f.list("experiment_ids"), &f.stages()).await?;
    let found = search(runs, f.filter(), f.list("order_by"), false).await?;
    let (items, next) = page(found, &f, 1000, 50_000)?;
    Ok(Json(json!({ "runs": items, "next_page_token": next })))
}

pub async fn metric_history(State(r): State<Registry>, f: Fields) -> Answer {
    let history = r.store.metric_history(&f.run_id()?, &f.str("metric_key")?).await?;
    let (items, next) = page(history, &f, 25_000, 25_000)?;
    Ok(Json(json!({ "metrics": items, "next_page_token": next })))
}
