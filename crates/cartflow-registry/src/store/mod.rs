//! The registry's tables, on SQLite (a file in the data directory, the
//! default) or PostgreSQL, through sqlx's `Any` driver so that one set of SQL
//! serves both. Written for both dialects: `$n` placeholders in order,
//! `ON CONFLICT`, no vendor types.

//!
//! `tracking` holds experiments and runs, `models` the model registry,
//! `logged` MLflow 3's logged models and what runs read and made.

mod logged;
mod models;
mod tracking;

pub use logged::{NewLoggedModel, PENDING, READY, UPLOAD_FAILED};
pub use models::STAGES;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::proto::{Metric, RunInfo, Tag, now_ms};
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
  PRIMARY KEY (name, alias));
CREATE TABLE IF NOT EXISTS logged_models (model_id TEXT PRIMARY KEY, experiment_id BIGINT NOT NULL, name TEXT NOT NULL,
  artifact_location TEXT NOT NULL, creation_time BIGINT NOT NULL, last_updated_time BIGINT NOT NULL,
  status TEXT NOT NULL, lifecycle_stage TEXT NOT NULL, model_type TEXT NOT NULL, source_run_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logged_models_experiment ON logged_models (experiment_id);
CREATE TABLE IF NOT EXISTS logged_model_tags (model_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (model_id, key));
CREATE TABLE IF NOT EXISTS logged_model_params (model_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (model_id, key));
CREATE TABLE IF NOT EXISTS logged_model_metrics (model_id TEXT NOT NULL, run_uuid TEXT NOT NULL, key TEXT NOT NULL,
  value DOUBLE PRECISION NOT NULL, timestamp BIGINT NOT NULL, step BIGINT NOT NULL, dataset_name TEXT,
  dataset_digest TEXT);
CREATE INDEX IF NOT EXISTS logged_model_metrics_model ON logged_model_metrics (model_id);
CREATE TABLE IF NOT EXISTS run_datasets (run_uuid TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL,
  input TEXT NOT NULL, PRIMARY KEY (run_uuid, name, digest));
CREATE TABLE IF NOT EXISTS run_model_inputs (run_uuid TEXT NOT NULL, model_id TEXT NOT NULL,
  PRIMARY KEY (run_uuid, model_id));
CREATE TABLE IF NOT EXISTS run_model_outputs (run_uuid TEXT NOT NULL, model_id TEXT NOT NULL, step BIGINT NOT NULL,
  PRIMARY KEY (run_uuid, model_id, step))";

/// Columns added after a table's first release, added to older stores on open.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("model_versions", "model_id", "TEXT NOT NULL DEFAULT ''")];

/// MLflow's limits on what one value may hold (mlflow/utils/validation.py).
pub const MAX_KEY_LEN: usize = 250;
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
pub const MAX_TAG_VALUE_LEN: usize = 8000;
pub const MAX_EXPERIMENT_NAME_LEN: usize = 500;
pub const MAX_EXPERIMENT_TAG_VALUE_LEN: usize = 20_000;
pub const MAX_REGISTRY_TAG_VALUE_LEN: usize = 100_000;
pub const MAX_NAME_LEN: usize = 500;
pub const MAX_ALIAS_LEN: usize = 255;
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
pub const MAX_DATASET_INPUT_LEN: usize = 1 << 20;

/// Refuses an empty key, or a key or value longer than MLflow allows.
pub(crate) fn check_len(what: &str, key: &str, value: &str, max_value: usize) -> Result<()> {
    if key.is_empty() {
        return Err(RegistryError::invalid(format!("{what}: the key must not be empty")));
    }
    if key.chars().count() > MAX_KEY_LEN {
        return Err(RegistryError::invalid(format!(
            "{what} key of {} characters: at most {MAX_KEY_LEN}",
            key.chars().count()
        )));
    }
    if value.chars().count() > max_value {
        return Err(RegistryError::invalid(format!(
            "{what} {key:?}: a value of {} characters; at most {max_value}",
            value.chars().count()
        )));
    }
    Ok(())
}

/// Refuses an empty name or one longer than `max`.
pub(crate) fn check_name(what: &str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() {
        return Err(RegistryError::invalid(format!("{what} must not be empty")));
    }
    if name.chars().count() > max {
        return Err(RegistryError::invalid(format!("{what} of {} characters: at most {max}", name.chars().count())));
    }
    Ok(())
}

/// Where an experiment's artifacts go: served by this registry's artifact API.
fn artifact_location(experiment_id: i64) -> String {
    format!("mlflow-artifacts:/{experiment_id}")
}

fn parse_id(what: &str, id: &str) -> Result<i64> {
    id.parse().map_err(|_| RegistryError::invalid(format!("{what} {id:?} is not a number")))
}

#[derive(Clone)]
pub struct Store {
    pub(super) pool: AnyPool,
    /// Where the tables are, without credentials, for messages.
    describe: String,
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
        // A statement waits at most 3 s for a connection (sqlx keeps trying to
        // connect until then): while the database is away a request gets a 503
        // within the server's 10 s request timeout. Connections are checked
        // before use, so after a restart the pool opens new ones.
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(std::time::Duration::from_secs(3))
            .test_before_acquire(true)
            .connect(&url)
            .await?;
        for statement in SCHEMA.split(';') {
            sqlx::query(statement).execute(&pool).await?;
        }
        for (table, column, ddl) in ADDED_COLUMNS {
            // Both dialects answer a missing column with an error; only then is it added.
            let probe = format!("SELECT {column} FROM {table} WHERE 1 = 0");
            if sqlx::query(AssertSqlSafe(probe)).fetch_all(&pool).await.is_err() {
                sqlx::query(AssertSqlSafe(format!("ALTER TABLE {table} ADD COLUMN {column} {ddl}")))
                    .execute(&pool)
                    .await?;
            }
        }
        sqlx::query(
            "INSERT INTO experiments VALUES (0, 'Default', $1, 'active', $2, $2) ON CONFLICT (experiment_id) DO NOTHING",
        )
        .bind(artifact_location(0))
        .bind(now_ms())
        .execute(&pool)
        .await?;
        Ok(Self { pool, describe: cartflow_core::redact::url(&url) })
    }

    /// Where the tables are, without any password.
    pub fn describe(&self) -> String {
        self.describe.clone()
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

/// Deletes tag `key` of the thing `owner` names in `table` (its column `column`).
async fn unset<'q, T>(pool: &AnyPool, table: &str, column: &str, owner: T, key: &'q str) -> Result<()>
where
    T: 'q + Send + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    // `table` and `column` are this module's constants.
    sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE {column} = $1 AND key = $2")))
        .bind(owner)
        .bind(key)
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
