//! MLflow 3's half of the store: logged models (a model with an id, its own
//! artifacts, params, tags and metrics), and what runs read (datasets,
//! models) and made (models).

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{MAX_PARAM_VALUE_LEN, MAX_TAG_VALUE_LEN, Store, check_len, parse_id, tag_from, unset, upsert};
use crate::proto::{
    LoggedModel, LoggedModelData, LoggedModelInfo, ModelMetric, ModelOutput, ModelRef, Param, RunInputs, RunOutputs,
    Tag, now_ms,
};
use crate::{RegistryError, Result};

pub const PENDING: &str = "LOGGED_MODEL_PENDING";
pub const READY: &str = "LOGGED_MODEL_READY";
pub const UPLOAD_FAILED: &str = "LOGGED_MODEL_UPLOAD_FAILED";

/// What a new logged model starts with.
pub struct NewLoggedModel<'a> {
    pub experiment_id: &'a str,
    pub name: Option<&'a str>,
    pub source_run_id: &'a str,
    pub model_type: &'a str,
    pub params: &'a [Param],
    pub tags: &'a [Tag],
}

fn not_found(model_id: &str) -> RegistryError {
    RegistryError::not_found(format!("Logged model with ID '{model_id}' not found."))
}

impl Store {
    pub async fn create_logged_model(&self, new: NewLoggedModel<'_>) -> Result<LoggedModel> {
        let experiment = self.active_experiment(new.experiment_id).await?;
        if !new.source_run_id.is_empty() {
            self.run_info(new.source_run_id).await?;
        }
        let model_id = format!("m-{}", uuid::Uuid::new_v4().simple());
        let name = match new.name.filter(|n| !n.is_empty()) {
            Some(n) => {
                super::check_name("logged model name", n, super::MAX_NAME_LEN)?;
                n.to_owned()
            }
            None => format!("model-{}", &model_id[2..10]),
        };
        let now = now_ms();
        let artifacts = format!("{}/models/{model_id}/artifacts", experiment.artifact_location);
        sqlx::query("INSERT INTO logged_models VALUES ($1, $2, $3, $4, $5, $5, $6, 'active', $7, $8)")
            .bind(&model_id)
            .bind(parse_id("experiment_id", new.experiment_id)?)
            .bind(&name)
            .bind(&artifacts)
            .bind(now)
            .bind(PENDING)
            .bind(new.model_type)
            .bind(new.source_run_id)
            .execute(&self.pool)
            .await?;
        self.log_logged_model_params(&model_id, new.params).await?;
        self.set_logged_model_tags(&model_id, new.tags).await?;
        self.logged_model(&model_id, false).await
    }

    async fn logged_model_from(&self, row: &AnyRow) -> Result<LoggedModel> {
        let model_id: String = row.try_get("model_id")?;
        let rows = |table: &str| {
            sqlx::query(AssertSqlSafe(format!("SELECT key, value FROM {table} WHERE model_id = $1 ORDER BY key")))
                .bind(model_id.clone())
                .fetch_all(&self.pool)
        };
        let tags = rows("logged_model_tags").await?.iter().map(tag_from).collect::<Result<_>>()?;
        let params = rows("logged_model_params").await?.iter().map(tag_from).collect::<Result<_>>()?;
        let metrics =
            sqlx::query("SELECT * FROM logged_model_metrics WHERE model_id = $1 ORDER BY key, step, timestamp")
                .bind(&model_id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| {
                    Ok(ModelMetric {
                        key: r.try_get("key")?,
                        value: r.try_get("value")?,
                        timestamp: r.try_get("timestamp")?,
                        step: r.try_get("step")?,
                        dataset_name: r.try_get("dataset_name")?,
                        dataset_digest: r.try_get("dataset_digest")?,
                        model_id: model_id.clone(),
                        run_id: r.try_get("run_uuid")?,
                    })
                })
                .collect::<Result<_>>()?;
        Ok(LoggedModel {
            info: LoggedModelInfo {
                experiment_id: row.try_get::<i64, _>("experiment_id")?.to_string(),
                name: row.try_get("name")?,
                creation_timestamp_ms: row.try_get("creation_time")?,
                last_updated_timestamp_ms: row.try_get("last_updated_time")?,
                artifact_uri: row.try_get("artifact_location")?,
                status: row.try_get("status")?,
                model_type: row.try_get("model_type")?,
                source_run_id: row.try_get("source_run_id")?,
                lifecycle_stage: row.try_get("lifecycle_stage")?,
                model_id,
                tags,
            },
            data: LoggedModelData { params, metrics },
        })
    }

    /// A logged model; a deleted one only with `allow_deleted`.
    pub async fn logged_model(&self, model_id: &str, allow_deleted: bool) -> Result<LoggedModel> {
        let row = sqlx::query("SELECT * FROM logged_models WHERE model_id = $1")
            .bind(model_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found(model_id))?;
        let model = self.logged_model_from(&row).await?;
        if model.info.lifecycle_stage != "active" && !allow_deleted {
            return Err(not_found(model_id));
        }
        Ok(model)
    }

    /// The active logged models of `experiment_ids`, newest first.
    pub async fn logged_models(&self, experiment_ids: &[String]) -> Result<Vec<LoggedModel>> {
        let ids = experiment_ids.iter().map(|id| parse_id("experiment_id", id)).collect::<Result<Vec<i64>>>()?;
        if ids.is_empty() {
            return Err(RegistryError::invalid("experiment_ids: give at least one experiment"));
        }
        // Numbers parsed above: safe to splice.
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT * FROM logged_models WHERE experiment_id IN ({list}) AND lifecycle_stage = 'active' \
             ORDER BY creation_time DESC, model_id"
        )))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.logged_model_from(row).await?);
        }
        Ok(out)
    }

    async fn touch_logged_model(&self, model_id: &str) -> Result<()> {
        let done = sqlx::query("UPDATE logged_models SET last_updated_time = $1 WHERE model_id = $2")
            .bind(now_ms())
            .bind(model_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 { Err(not_found(model_id)) } else { Ok(()) }
    }

    /// Sets a logged model's status (`finalize`): READY once its artifacts are up.
    pub async fn finalize_logged_model(&self, model_id: &str, status: &str) -> Result<LoggedModel> {
        if ![PENDING, READY, UPLOAD_FAILED].contains(&status) {
            return Err(RegistryError::invalid(format!(
                "status {status:?}: one of {PENDING}, {READY}, {UPLOAD_FAILED}"
            )));
        }
        self.logged_model(model_id, false).await?;
        sqlx::query("UPDATE logged_models SET status = $1, last_updated_time = $2 WHERE model_id = $3")
            .bind(status)
            .bind(now_ms())
            .bind(model_id)
            .execute(&self.pool)
            .await?;
        self.logged_model(model_id, false).await
    }

    pub async fn delete_logged_model(&self, model_id: &str) -> Result<()> {
        self.logged_model(model_id, false).await?;
        sqlx::query("UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_time = $1 WHERE model_id = $2")
            .bind(now_ms())
            .bind(model_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_logged_model_tags(&self, model_id: &str, tags: &[Tag]) -> Result<()> {
        for t in tags {
            check_len("logged model tag", &t.key, &t.value, MAX_TAG_VALUE_LEN)?;
        }
        self.touch_logged_model(model_id).await?;
        for t in tags {
            upsert(&self.pool, "logged_model_tags (model_id, key, value)", "model_id, key", model_id, t).await?;
        }
        Ok(())
    }

    pub async fn delete_logged_model_tag(&self, model_id: &str, key: &str) -> Result<()> {
        self.touch_logged_model(model_id).await?;
        unset(&self.pool, "logged_model_tags", "model_id", model_id, key).await
    }

    /// Params, once logged, keep their value (as a run's).
    pub async fn log_logged_model_params(&self, model_id: &str, params: &[Param]) -> Result<()> {
        for p in params {
            check_len("logged model param", &p.key, &p.value, MAX_PARAM_VALUE_LEN)?;
        }
        self.touch_logged_model(model_id).await?;
        for p in params {
            sqlx::query("INSERT INTO logged_model_params VALUES ($1, $2, $3) ON CONFLICT (model_id, key) DO NOTHING")
                .bind(model_id)
                .bind(&p.key)
                .bind(&p.value)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Metrics a run logged against one of its logged models.
    pub async fn log_model_metrics(&self, run_id: &str, metrics: &[ModelMetric]) -> Result<()> {
        for m in metrics {
            self.logged_model(&m.model_id, false).await?;
            sqlx::query("INSERT INTO logged_model_metrics VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(&m.model_id)
                .bind(run_id)
                .bind(&m.key)
                .bind(m.value)
                .bind(m.timestamp)
                .bind(m.step)
                .bind(m.dataset_name.clone())
                .bind(m.dataset_digest.clone())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    // ---- run inputs and outputs

    /// `mlflow.log_input`: datasets (each a DatasetInput, kept as given) and models a run read.
    pub async fn log_inputs(&self, run_id: &str, datasets: &[serde_json::Value], models: &[String]) -> Result<()> {
        self.run_info(run_id).await?;
        for d in datasets {
            let field = |k: &str| d["dataset"][k].as_str().unwrap_or_default().to_owned();
            let (name, digest) = (field("name"), field("digest"));
            if name.is_empty() {
                return Err(RegistryError::invalid("datasets[].dataset.name: required"));
            }
            let input = d.to_string();
            if input.len() > super::MAX_DATASET_INPUT_LEN {
                return Err(RegistryError::invalid(format!("dataset {name:?}: over 1 MiB of schema and profile")));
            }
            sqlx::query(
                "INSERT INTO run_datasets VALUES ($1, $2, $3, $4) ON CONFLICT (run_uuid, name, digest) DO UPDATE SET input = excluded.input",
            )
            .bind(run_id)
            .bind(&name)
            .bind(&digest)
            .bind(&input)
            .execute(&self.pool)
            .await?;
        }
        for model_id in models {
            self.logged_model(model_id, false).await?;
            sqlx::query("INSERT INTO run_model_inputs VALUES ($1, $2) ON CONFLICT (run_uuid, model_id) DO NOTHING")
                .bind(run_id)
                .bind(model_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// `log_outputs`: the logged models a run made.
    pub async fn log_outputs(&self, run_id: &str, models: &[ModelOutput]) -> Result<()> {
        self.run_info(run_id).await?;
        for m in models {
            self.logged_model(&m.model_id, false).await?;
            sqlx::query(
                "INSERT INTO run_model_outputs VALUES ($1, $2, $3) ON CONFLICT (run_uuid, model_id, step) DO NOTHING",
            )
            .bind(run_id)
            .bind(&m.model_id)
            .bind(m.step)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// The inputs and outputs of the runs `condition` names (`$1` bound to `run_id` when given).
    pub(super) async fn run_io(
        &self,
        condition: &str,
        run_id: Option<&str>,
    ) -> Result<HashMap<String, (RunInputs, RunOutputs)>> {
        let fetch = |sql: String| {
            let query = sqlx::query(AssertSqlSafe(sql));
            let query = match run_id {
                Some(id) => query.bind(id.to_owned()),
                None => query,
            };
            query.fetch_all(&self.pool)
        };
        let mut io: HashMap<String, (RunInputs, RunOutputs)> = HashMap::new();
        let sql = format!("SELECT run_uuid, input FROM run_datasets WHERE run_uuid {condition} ORDER BY name, digest");
        for row in fetch(sql).await? {
            let input: String = row.try_get("input")?;
            let value = serde_json::from_str(&input).unwrap_or(serde_json::Value::Null);
            io.entry(row.try_get("run_uuid")?).or_default().0.dataset_inputs.push(value);
        }
        let sql =
            format!("SELECT run_uuid, model_id FROM run_model_inputs WHERE run_uuid {condition} ORDER BY model_id");
        for row in fetch(sql).await? {
            io.entry(row.try_get("run_uuid")?)
                .or_default()
                .0
                .model_inputs
                .push(ModelRef { model_id: row.try_get("model_id")? });
        }
        let sql = format!(
            "SELECT run_uuid, model_id, step FROM run_model_outputs WHERE run_uuid {condition} ORDER BY model_id, step"
        );
        for row in fetch(sql).await? {
            let output = ModelOutput { model_id: row.try_get("model_id")?, step: row.try_get("step")? };
            io.entry(row.try_get("run_uuid")?).or_default().1.model_outputs.push(output);
        }
        Ok(io)
    }
}
