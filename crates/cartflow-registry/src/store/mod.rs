//! The registry's tables, on SQLite (a file in the data directory, the
//! default) or PostgreSQL, through sqlx's `Any` driver so that one set of SQL
//! serves both. Written for both dialects: `$n` placeholders in order,
//! `ON CONFLICT`, no vendor types.

//!
//! `tracking` holds experiments and runs, `models` the model registry.

mod models;
mod tracking;

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
    pub(super) pool: AnyPool,
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
