//! The registry's tables, on SQLite (a file in the data directory, the
//! default) or PostgreSQL, through sqlx's `Any` driver so that one set of SQL
//! serves both. Written for both dialects: `$n` placeholders in order,
//! `ON CONFLICT`, no vendor types.

use std::collections::HashMap;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::proto::{
    Alias, Experiment, Metric, ModelVersion, Param, RegisteredModel, Run, RunData, RunInfo, Tag, now_ms,
};
use crate::{RegistryError, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS experiments (experiment_id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE,
  artifact_location TEXT NOT NULL, lifecycle_stage TEXT NOT NULL, creation_time BIGINT NOT NULL,
  last_update_time BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS experiment_tags (experiment_id BIGINT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (experiment_id, key));
CREATE TABLE IF NOT EXISTS runs (run_uuid TEXT PRIMARY KEY, experiment_id BIGINT NOT NULL, name TEXT NOT NULL,
  user_id TEXT NOT NULL, status TEXT NOT NULL, start_time BIGINT NOT NULL, end_time BIGINT,
  lifecycle_stage TEXT NOT NULL, artifact_uri TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_experiment ON runs (experiment_id);
CREATE TABLE IF NOT EXISTS params (run_uuid TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (run_uuid, key));
CREATE TABLE IF NOT EXISTS tags (run_uuid TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (run_uuid, key));
CREATE TABLE IF NOT EXISTS metrics (run_uuid TEXT NOT NULL, key TEXT NOT NULL, value DOUBLE PRECISION NOT NULL,
  timestamp BIGINT NOT NULL, step BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_uuid, key);
CREATE TABLE IF NOT EXISTS registered_models (name TEXT PRIMARY KEY, creation_time BIGINT NOT NULL,
  last_updated_time BIGINT NOT NULL, description TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS registered_model_tags (name TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (name, key));
CREATE TABLE IF NOT EXISTS model_versions (name TEXT NOT NULL, version BIGINT NOT NULL, creation_time BIGINT NOT NULL,
  last_updated_time BIGINT NOT NULL, description TEXT NOT NULL, source TEXT NOT NULL, run_id TEXT NOT NULL,
  status TEXT NOT NULL, current_stage TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS model_version_tags (name TEXT NOT NULL, version BIGINT NOT NULL, key TEXT NOT NULL,
  value TEXT NOT NULL, PRIMARY KEY (name, version, key));
CREATE TABLE IF NOT EXISTS model_aliases (name TEXT NOT NULL, alias TEXT NOT NULL, version BIGINT NOT NULL,
  PRIMARY KEY (name, alias))";

/// Where an experiment's artifacts go: served by this registry's artifact API.
fn artifact_location(experiment_id: i64) -> String {
    format!("mlflow-artifacts:/{experiment_id}")
}

fn parse_id(what: &str, id: &str) -> Result<i64> {
    id.parse().map_err(|_| RegistryError::invalid(format!("{what} {id:?} is not a number")))
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Opens (and creates) the store at `url`: `sqlite://PATH` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let url = if let Some(path) = url.strip_prefix("sqlite://") {
            if !path.contains('?') { format!("sqlite://{path}?mode=rwc") } else { url.to_owned() }
        } else {
            url.to_owned()
        };
        // SQLite takes one writer at a time; more connections only wait on its lock.
        let connections = if url.starts_with("sqlite:") { 1 } else { 8 };
        let pool = AnyPoolOptions::new().max_connections(connections).connect(&url).await?;
        for statement in SCHEMA.split(';') {
            sqlx::query(statement).execute(&pool).await?;
        }
        sqlx::query(
            "INSERT INTO experiments VALUES (0, 'Default', $1, 'active', $2, $2) ON CONFLICT (experiment_id) DO NOTHING",
        )
        .bind(artifact_location(0))
        .bind(now_ms())
        .execute(&pool)
        .await?;
        Ok(Self { pool })
    }

    // ---- experiments

    pub async fn create_experiment(&self, name: &str, tags: &[Tag]) -> Result<String> {
        if name.is_empty() {
            return Err(RegistryError::invalid("experiment name must not be empty"));
        }
        if self.experiment_by_name(name).await.is_ok() {
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
        self.experiment(id).await?;
        sqlx::query("UPDATE experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3")
            .bind(name)
            .bind(now_ms())
            .bind(parse_id("experiment_id", id)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_experiment_tag(&self, id: &str, tag: &Tag) -> Result<()> {
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
        let experiment = self.experiment(experiment_id).await?;
        if experiment.lifecycle_stage != "active" {
            return Err(RegistryError::invalid(format!("experiment {experiment_id} is deleted")));
        }
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
        Ok(Run { info, data: data.remove(run_id).unwrap_or_default() })
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
        sqlx::query("DELETE FROM tags WHERE run_uuid = $1 AND key = $2")
            .bind(run_id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
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
        let mut data =
            self.run_data(&format!("IN (SELECT run_uuid FROM runs WHERE experiment_id IN ({list}))"), None).await?;
        let mut runs = Vec::new();
        for row in rows {
            let info = run_info_from(&row)?;
            if stages.contains(&info.lifecycle_stage.as_str()) {
                let data = data.remove(&info.run_id).unwrap_or_default();
                runs.push(Run { info, data });
            }
        }
        Ok(runs)
    }

    // ---- registered models

    pub async fn create_registered_model(
        &self,
        name: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<RegisteredModel> {
        if name.is_empty() {
            return Err(RegistryError::invalid("registered model name must not be empty"));
        }
        let now = now_ms();
        let done = sqlx::query("INSERT INTO registered_models VALUES ($1, $2, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(now)
            .bind(description)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(RegistryError::exists(format!("registered model {name:?} already exists")));
        }
        for t in tags {
            upsert(&self.pool, "registered_model_tags (name, key, value)", "name, key", name, t).await?;
        }
        self.registered_model(name).await
    }

    pub async fn registered_model(&self, name: &str) -> Result<RegisteredModel> {
        let row = sqlx::query("SELECT * FROM registered_models WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| RegistryError::not_found(format!("no registered model named {name:?}")))?;
        let tags = sqlx::query("SELECT key, value FROM registered_model_tags WHERE name = $1 ORDER BY key")
            .bind(name)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(tag_from)
            .collect::<Result<_>>()?;
        let aliases = self
            .aliases(name)
            .await?
            .into_iter()
            .map(|(alias, version)| Alias { alias, version: version.to_string() })
            .collect();
        let latest =
            self.model_versions(Some(name)).await?.into_iter().max_by_key(|v| v.version.parse::<i64>().unwrap_or(0));
        Ok(RegisteredModel {
            name: name.to_owned(),
            creation_timestamp: row.try_get("creation_time")?,
            last_updated_timestamp: row.try_get("last_updated_time")?,
            description: row.try_get("description")?,
            latest_versions: latest.into_iter().collect(),
            tags,
            aliases,
        })
    }

    pub async fn registered_models(&self) -> Result<Vec<RegisteredModel>> {
        let names: Vec<String> = sqlx::query("SELECT name FROM registered_models ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("name"))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for name in names {
            out.push(self.registered_model(&name).await?);
        }
        Ok(out)
    }

    pub async fn update_registered_model(&self, name: &str, description: &str) -> Result<RegisteredModel> {
        self.registered_model(name).await?;
        sqlx::query("UPDATE registered_models SET description = $1, last_updated_time = $2 WHERE name = $3")
            .bind(description)
            .bind(now_ms())
            .bind(name)
            .execute(&self.pool)
            .await?;
        self.registered_model(name).await
    }

    pub async fn delete_registered_model(&self, name: &str) -> Result<()> {
        self.registered_model(name).await?;
        let mut tx = self.pool.begin().await?;
        for table in
            ["model_aliases", "model_version_tags", "model_versions", "registered_model_tags", "registered_models"]
        {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE name = $1")))
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> Result<()> {
        self.registered_model(name).await?;
        upsert(&self.pool, "registered_model_tags (name, key, value)", "name, key", name, tag).await
    }

    // ---- model versions

    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<ModelVersion> {
        self.registered_model(name).await?;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let version: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 AS v FROM model_versions WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?
            .try_get("v")?;
        sqlx::query("INSERT INTO model_versions VALUES ($1, $2, $3, $3, $4, $5, $6, 'READY', 'None')")
            .bind(name)
            .bind(version)
            .bind(now)
            .bind(description)
            .bind(source)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE name = $2")
            .bind(now)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        for t in tags {
            self.set_model_version_tag(name, &version.to_string(), t).await?;
        }
        self.model_version(name, &version.to_string()).await
    }

    pub async fn model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        let v = parse_id("version", version)?;
        let row = sqlx::query("SELECT * FROM model_versions WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(v)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| RegistryError::not_found(format!("no version {version} of registered model {name:?}")))?;
        self.model_version_from(&row).await
    }

    async fn model_version_from(&self, row: &AnyRow) -> Result<ModelVersion> {
        let name: String = row.try_get("name")?;
        let version: i64 = row.try_get("version")?;
        let tags =
            sqlx::query("SELECT key, value FROM model_version_tags WHERE name = $1 AND version = $2 ORDER BY key")
                .bind(&name)
                .bind(version)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(tag_from)
                .collect::<Result<_>>()?;
        let aliases = self.aliases(&name).await?.into_iter().filter(|(_, v)| *v == version).map(|(a, _)| a).collect();
        Ok(ModelVersion {
            version: version.to_string(),
            creation_timestamp: row.try_get("creation_time")?,
            last_updated_timestamp: row.try_get("last_updated_time")?,
            description: row.try_get("description")?,
            source: row.try_get("source")?,
            run_id: row.try_get("run_id")?,
            status: row.try_get("status")?,
            current_stage: row.try_get("current_stage")?,
            name,
            tags,
            aliases,
        })
    }

    /// Versions of `name` (or of every model), newest first.
    pub async fn model_versions(&self, name: Option<&str>) -> Result<Vec<ModelVersion>> {
        let rows = match name {
            Some(name) => {
                sqlx::query("SELECT * FROM model_versions WHERE name = $1 ORDER BY version DESC")
                    .bind(name)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM model_versions ORDER BY name, version DESC").fetch_all(&self.pool).await?
            }
        };
        let mut out = Vec::new();
        for row in &rows {
            out.push(self.model_version_from(row).await?);
        }
        Ok(out)
    }

    pub async fn update_model_version(&self, name: &str, version: &str, description: &str) -> Result<ModelVersion> {
        self.model_version(name, version).await?;
        sqlx::query(
            "UPDATE model_versions SET description = $1, last_updated_time = $2 WHERE name = $3 AND version = $4",
        )
        .bind(description)
        .bind(now_ms())
        .bind(name)
        .bind(parse_id("version", version)?)
        .execute(&self.pool)
        .await?;
        self.model_version(name, version).await
    }

    pub async fn delete_model_version(&self, name: &str, version: &str) -> Result<()> {
        self.model_version(name, version).await?;
        let v = parse_id("version", version)?;
        let mut tx = self.pool.begin().await?;
        for table in ["model_aliases", "model_version_tags", "model_versions"] {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE name = $1 AND version = $2")))
                .bind(name)
                .bind(v)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_model_version_tag(&self, name: &str, version: &str, tag: &Tag) -> Result<()> {
        self.model_version(name, version).await?;
        sqlx::query(
            "INSERT INTO model_version_tags VALUES ($1, $2, $3, $4) ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(parse_id("version", version)?)
        .bind(&tag.key)
        .bind(&tag.value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- aliases

    async fn aliases(&self, name: &str) -> Result<Vec<(String, i64)>> {
        sqlx::query("SELECT alias, version FROM model_aliases WHERE name = $1 ORDER BY alias")
            .bind(name)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("alias")?, r.try_get("version")?)))
            .collect()
    }

    /// Points `alias` of `name` at `version` (moving it if it pointed elsewhere).
    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        self.model_version(name, version).await?;
        if alias.is_empty()
            || alias.eq_ignore_ascii_case("latest")
            || alias.starts_with('v') && alias[1..].parse::<u64>().is_ok()
        {
            return Err(RegistryError::invalid(format!("alias {alias:?} is reserved or empty")));
        }
        sqlx::query("INSERT INTO model_aliases VALUES ($1, $2, $3) ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version")
            .bind(name)
            .bind(alias)
            .bind(parse_id("version", version)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        self.registered_model(name).await?;
        sqlx::query("DELETE FROM model_aliases WHERE name = $1 AND alias = $2")
            .bind(name)
            .bind(alias)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        let version = self
            .aliases(name)
            .await?
            .into_iter()
            .find(|(a, _)| a == alias)
            .map(|(_, v)| v)
            .ok_or_else(|| RegistryError::not_found(format!("registered model {name:?} has no alias {alias:?}")))?;
        self.model_version(name, &version.to_string()).await
    }
}

/// Sets a tag of the thing `owner` names in `table` (keyed by `key`, the tag key last).
async fn upsert<'q, T>(pool: &AnyPool, table: &str, key: &str, owner: T, tag: &'q Tag) -> Result<()>
where
    T: 'q + Send + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    // `table` and `key` are this module's constants.
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} VALUES ($1, $2, $3) ON CONFLICT ({key}) DO UPDATE SET value = excluded.value"
    )))
    .bind(owner)
    .bind(&tag.key)
    .bind(&tag.value)
    .execute(pool)
    .await?;
    Ok(())
}

fn tag_from(row: &AnyRow) -> Result<Tag> {
    Ok(Tag { key: row.try_get("key")?, value: row.try_get("value")? })
}

fn metric_from(row: &AnyRow) -> Result<Metric> {
    Ok(Metric {
        key: row.try_get("key")?,
        value: row.try_get("value")?,
        timestamp: row.try_get("timestamp")?,
        step: row.try_get("step")?,
    })
}

fn run_info_from(row: &AnyRow) -> Result<RunInfo> {
    let run_id: String = row.try_get("run_uuid")?;
    Ok(RunInfo {
        run_uuid: run_id.clone(),
        run_id,
        run_name: row.try_get("name")?,
        experiment_id: row.try_get::<i64, _>("experiment_id")?.to_string(),
        user_id: row.try_get("user_id")?,
        status: row.try_get("status")?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        artifact_uri: row.try_get("artifact_uri")?,
        lifecycle_stage: row.try_get("lifecycle_stage")?,
    })
}
