//! The tracking half of the store: experiments, runs, params, metrics, tags.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{
    MAX_EXPERIMENT_NAME_LEN, MAX_EXPERIMENT_TAG_VALUE_LEN, MAX_METRICS_PER_BATCH, MAX_PARAM_VALUE_LEN,
    MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VALUE_LEN, Store, artifact_location, check_len, check_name, metric_from,
    parse_id, run_info_from, tag_from, unset, upsert,
};
use crate::proto::{Experiment, Metric, Param, Run, RunData, RunInfo, Tag, now_ms};
use crate::{RegistryError, Result};

impl Store {
    // ---- experiments

    pub async fn create_experiment(&self, name: &str, tags: &[Tag]) -> Result<String> {
        check_name("experiment name", name, MAX_EXPERIMENT_NAME_LEN)?;
        for tag in tags {
            check_len("experiment tag", &tag.key, &tag.value, MAX_EXPERIMENT_TAG_VALUE_LEN)?;
        }
        if crate::found(self.experiment_by_name(name).await)? {
            return Err(RegistryError::exists(format!("experiment {name:?} already exists")));
        }
        let id: i64 = sqlx::query("SELECT COALESCE(MAX(experiment_id), 0) + 1 AS id FROM experiments")
            .fetch_one(&self.pool)
            .await?
            .try_get("id")?;
        let now = now_ms();
        sqlx::query("INSERT INTO experiments VALUES ($1, $2, $3, 'active', $4, $4)")
            .bind(id)
            .bind(name)
            .bind(artifact_location(id))
            .bind(now)
            .execute(&self.pool)
            .await?;
        for tag in tags {
            self.set_experiment_tag(&id.to_string(), tag).await?;
        }
        Ok(id.to_string())
    }

    async fn experiment_from(&self, row: AnyRow) -> Result<Experiment> {
        let id: i64 = row.try_get("experiment_id")?;
        let tags = sqlx::query("SELECT key, value FROM experiment_tags WHERE experiment_id = $1 ORDER BY key")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(tag_from)
            .collect::<Result<_>>()?;
        Ok(Experiment {
            experiment_id: id.to_string(),
            name: row.try_get("name")?,
            artifact_location: row.try_get("artifact_location")?,
            lifecycle_stage: row.try_get("lifecycle_stage")?,
            creation_time: row.try_get("creation_time")?,
            last_update_time: row.try_get("last_update_time")?,
            tags,
        })
    }

    pub async fn experiment(&self, id: &str) -> Result<Experiment> {
        let row = sqlx::query("SELECT * FROM experiments WHERE experiment_id = $1")
            .bind(parse_id("experiment_id", id)?)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| RegistryError::not_found(format!("no experiment with id {id}")))?;
        self.experiment_from(row).await
    }

    /// An experiment that may take new runs and models (not deleted).
    pub(super) async fn active_experiment(&self, id: &str) -> Result<Experiment> {
        let experiment = self.experiment(id).await?;
        if experiment.lifecycle_stage != "active" {
            return Err(RegistryError::invalid(format!("experiment {id} is deleted")));
        }
        Ok(experiment)
    }

    pub async fn experiment_by_name(&self, name: &str) -> Result<Experiment> {
        let row = sqlx::query("SELECT * FROM experiments WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| RegistryError::not_found(format!("no experiment named {name:?}")))?;
        self.experiment_from(row).await
    }

    /// Experiments in `stages` (active, deleted), newest first.
    pub async fn experiments(&self, stages: &[&str]) -> Result<Vec<Experiment>> {
        let rows = sqlx::query("SELECT * FROM experiments ORDER BY creation_time DESC, experiment_id DESC")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let e = self.experiment_from(row).await?;
            if stages.contains(&e.lifecycle_stage.as_str()) {
                out.push(e);
            }
        }
        Ok(out)
    }

    pub async fn set_experiment_stage(&self, id: &str, stage: &str) -> Result<()> {
        let done =
            sqlx::query("UPDATE experiments SET lifecycle_stage = $1, last_update_time = $2 WHERE experiment_id = $3")
                .bind(stage)
                .bind(now_ms())
                .bind(parse_id("experiment_id", id)?)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(RegistryError::not_found(format!("no experiment with id {id}")));
        }
        Ok(())
    }

    pub async fn rename_experiment(&self, id: &str, name: &str) -> Result<()> {
        check_name("experiment name", name, MAX_EXPERIMENT_NAME_LEN)?;
        let experiment = self.experiment(id).await?;
        if experiment.name != name && crate::found(self.experiment_by_name(name).await)? {
            return Err(RegistryError::exists(format!("experiment {name:?} already exists")));
        }
        sqlx::query("UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3")
            .bind(name)
            .bind(now_ms())
            .bind(parse_id("experiment_id", id)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_experiment_tag(&self, id: &str, key: &str) -> Result<()> {
        self.experiment(id).await?;
        unset(&self.pool, "experiment_tags", "experiment_id", parse_id("experiment_id", id)?, key).await
    }

    pub async fn set_experiment_tag(&self, id: &str, tag: &Tag) -> Result<()> {
        check_len("experiment tag", &tag.key, &tag.value, MAX_EXPERIMENT_TAG_VALUE_LEN)?;
        self.experiment(id).await?;
        upsert(
            &self.pool,
            "experiment_tags (experiment_id, key, value)",
            "experiment_id, key",
            parse_id("experiment_id", id)?,
            tag,
        )
        .await
    }

    // ---- runs

    pub async fn create_run(
        &self,
        experiment_id: &str,
        name: &str,
        user: &str,
        start_time: i64,
        tags: &[Tag],
    ) -> Result<Run> {
        let experiment = self.active_experiment(experiment_id).await?;
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let name = if name.is_empty() { format!("run-{}", &run_id[..8]) } else { name.to_owned() };
        sqlx::query("INSERT INTO runs VALUES ($1, $2, $3, $4, 'RUNNING', $5, NULL, 'active', $6)")
            .bind(&run_id)
            .bind(parse_id("experiment_id", experiment_id)?)
            .bind(&name)
            .bind(user)
            .bind(start_time)
            .bind(format!("{}/{run_id}/artifacts", experiment.artifact_location))
            .execute(&self.pool)
            .await?;
        let mut tags = tags.to_vec();
        tags.push(Tag { key: "mlflow.runName".into(), value: name });
        self.log_batch(&run_id, &[], &[], &tags).await?;
        self.run(&run_id).await
    }

    pub async fn run_info(&self, run_id: &str) -> Result<RunInfo> {
        let row = sqlx::query("SELECT * FROM runs WHERE run_uuid = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| RegistryError::not_found(format!("no run with id {run_id}")))?;
        run_info_from(&row)
    }

    pub async fn run(&self, run_id: &str) -> Result<Run> {
        let info = self.run_info(run_id).await?;
        let mut data = self.run_data("= $1", Some(run_id)).await?;
        let (inputs, outputs) = self.run_io("= $1", Some(run_id)).await?.remove(run_id).unwrap_or_default();
        Ok(Run { info, data: data.remove(run_id).unwrap_or_default(), inputs, outputs })
    }

    /// Params, tags and latest metrics of the runs whose id matches
    /// `condition` (with `$1` bound to `run_id` when given).
    async fn run_data(&self, condition: &str, run_id: Option<&str>) -> Result<HashMap<String, RunData>> {
        let fetch = |sql: String| {
            let query = sqlx::query(AssertSqlSafe(sql));
            let query = match run_id {
                Some(id) => query.bind(id.to_owned()),
                None => query,
            };
            query.fetch_all(&self.pool)
        };
        let mut data: HashMap<String, RunData> = HashMap::new();
        for (table, is_tag) in [("params", false), ("tags", true)] {
            let sql = format!("SELECT run_uuid, key, value FROM {table} WHERE run_uuid {condition} ORDER BY key");
            for row in fetch(sql).await? {
                let entry = data.entry(row.try_get("run_uuid")?).or_default();
                let tag = tag_from(&row)?;
                if is_tag { entry.tags.push(tag) } else { entry.params.push(tag) }
            }
        }
        // The latest value: highest step, then latest timestamp, then largest value (MLflow's rule).
        let sql = format!(
            "SELECT run_uuid, key, value, timestamp, step FROM metrics WHERE run_uuid {condition} ORDER BY key"
        );
        let mut latest: HashMap<(String, String), Metric> = HashMap::new();
        for row in fetch(sql).await? {
            let m = metric_from(&row)?;
            let slot = latest.entry((row.try_get("run_uuid")?, m.key.clone())).or_insert_with(|| m.clone());
            if (m.step, m.timestamp, m.value) > (slot.step, slot.timestamp, slot.value) {
                *slot = m;
            }
        }
        for ((run, _), m) in latest {
            data.entry(run).or_default().metrics.push(m);
        }
        data.values_mut().for_each(|d| d.metrics.sort_by(|a, b| a.key.cmp(&b.key)));
        Ok(data)
    }

    pub async fn update_run(
        &self,
        run_id: &str,
        status: Option<&str>,
        end_time: Option<i64>,
        name: Option<&str>,
    ) -> Result<RunInfo> {
        let info = self.run_info(run_id).await?;
        if let Some(status) = status
            && !["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"].contains(&status)
        {
            return Err(RegistryError::invalid(format!(
                "run status {status:?} is not one of RUNNING, SCHEDULED, FINISHED, FAILED, KILLED"
            )));
        }
        sqlx::query("UPDATE runs SET status = $1, end_time = $2, name = $3 WHERE run_uuid = $4")
            .bind(status.unwrap_or(&info.status))
            .bind(end_time.or(info.end_time))
            .bind(name.unwrap_or(&info.run_name))
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        if let Some(name) = name {
            self.log_batch(run_id, &[], &[], &[Tag { key: "mlflow.runName".into(), value: name.into() }]).await?;
        }
        self.run_info(run_id).await
    }

    pub async fn set_run_stage(&self, run_id: &str, stage: &str) -> Result<()> {
        self.run_info(run_id).await?;
        sqlx::query("UPDATE runs SET lifecycle_stage = $1 WHERE run_uuid = $2")
            .bind(stage)
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Logs metrics, params and tags at once. A param, once logged, keeps its value.
    pub async fn log_batch(&self, run_id: &str, metrics: &[Metric], params: &[Param], tags: &[Tag]) -> Result<()> {
        if metrics.len() > MAX_METRICS_PER_BATCH || params.len() + tags.len() > MAX_PARAMS_TAGS_PER_BATCH {
            return Err(RegistryError::invalid(format!(
                "a batch of {} metrics, {} params and {} tags: at most {MAX_METRICS_PER_BATCH} metrics and \
                 {MAX_PARAMS_TAGS_PER_BATCH} params and tags together",
                metrics.len(),
                params.len(),
                tags.len()
            )));
        }
        for p in params {
            check_len("param", &p.key, &p.value, MAX_PARAM_VALUE_LEN)?;
        }
        for t in tags {
            check_len("tag", &t.key, &t.value, MAX_TAG_VALUE_LEN)?;
        }
        for m in metrics {
            check_len("metric", &m.key, "", 0)?;
        }
        let info = self.run_info(run_id).await?;
        if info.lifecycle_stage != "active" {
            return Err(RegistryError::invalid(format!("run {run_id} is deleted")));
        }
        let mut tx = self.pool.begin().await?;
        for p in params {
            sqlx::query("INSERT INTO params VALUES ($1, $2, $3) ON CONFLICT (run_uuid, key) DO NOTHING")
                .bind(run_id)
                .bind(&p.key)
                .bind(&p.value)
                .execute(&mut *tx)
                .await?;
            let stored: String = sqlx::query("SELECT value FROM params WHERE run_uuid = $1 AND key = $2")
                .bind(run_id)
                .bind(&p.key)
                .fetch_one(&mut *tx)
                .await?
                .try_get("value")?;
            if stored != p.value {
                return Err(RegistryError::invalid(format!(
                    "param {:?} of run {run_id} was logged as {stored:?}; params cannot change (new value {:?})",
                    p.key, p.value
                )));
            }
        }
        for t in tags {
            sqlx::query(
                "INSERT INTO tags VALUES ($1, $2, $3) ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value",
            )
            .bind(run_id)
            .bind(&t.key)
            .bind(&t.value)
            .execute(&mut *tx)
            .await?;
        }
        for m in metrics {
            if !m.value.is_finite() {
                return Err(RegistryError::invalid(format!("metric {:?} is {}: only finite values", m.key, m.value)));
            }
            sqlx::query("INSERT INTO metrics VALUES ($1, $2, $3, $4, $5)")
                .bind(run_id)
                .bind(&m.key)
                .bind(m.value)
                .bind(if m.timestamp == 0 { now_ms() } else { m.timestamp })
                .bind(m.step)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_tag(&self, run_id: &str, key: &str) -> Result<()> {
        unset(&self.pool, "tags", "run_uuid", run_id, key).await
    }

    pub async fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        self.run_info(run_id).await?;
        sqlx::query(
            "SELECT key, value, timestamp, step FROM metrics WHERE run_uuid = $1 AND key = $2 ORDER BY step, timestamp",
        )
        .bind(run_id)
        .bind(key)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(metric_from)
        .collect()
    }

    /// Every run of `experiment_ids` in `stages`, with its data; filtering and
    /// ordering are [`crate::filter`]'s.
    pub async fn runs(&self, experiment_ids: &[String], stages: &[&str]) -> Result<Vec<Run>> {
        let ids = experiment_ids.iter().map(|id| parse_id("experiment_id", id)).collect::<Result<Vec<i64>>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Numbers parsed above: safe to splice.
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT * FROM runs WHERE experiment_id IN ({list}) ORDER BY start_time DESC, run_uuid"
        )))
        .fetch_all(&self.pool)
        .await?;
        let those = format!("IN (SELECT run_uuid FROM runs WHERE experiment_id IN ({list}))");
        let mut data = self.run_data(&those, None).await?;
        let mut io = self.run_io(&those, None).await?;
        let mut runs = Vec::new();
        for row in rows {
            let info = run_info_from(&row)?;
            if stages.contains(&info.lifecycle_stage.as_str()) {
                let data = data.remove(&info.run_id).unwrap_or_default();
                let (inputs, outputs) = io.remove(&info.run_id).unwrap_or_default();
                runs.push(Run { info, data, inputs, outputs });
            }
        }
        Ok(runs)
    }
}
