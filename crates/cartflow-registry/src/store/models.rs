//! The model registry's half of the store: registered models, their
//! versions, tags and aliases.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{
    MAX_ALIAS_LEN, MAX_NAME_LEN, MAX_REGISTRY_TAG_VALUE_LEN, Store, check_len, check_name, parse_id, tag_from, unset,
    upsert,
};
use crate::proto::{Alias, ModelVersion, RegisteredModel, Tag, now_ms};
use crate::{RegistryError, Result};

impl Store {
    // ---- registered models

    pub async fn create_registered_model(
        &self,
        name: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<RegisteredModel> {
        check_name("registered model name", name, MAX_NAME_LEN)?;
        for t in tags {
            check_len("registered model tag", &t.key, &t.value, MAX_REGISTRY_TAG_VALUE_LEN)?;
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
        let latest = latest_by_stage(self.model_versions(Some(name)).await?, &[]);
        Ok(RegisteredModel {
            name: name.to_owned(),
            creation_timestamp: row.try_get("creation_time")?,
            last_updated_timestamp: row.try_get("last_updated_time")?,
            description: row.try_get("description")?,
            latest_versions: latest,
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
        check_len("registered model tag", &tag.key, &tag.value, MAX_REGISTRY_TAG_VALUE_LEN)?;
        self.registered_model(name).await?;
        upsert(&self.pool, "registered_model_tags (name, key, value)", "name, key", name, tag).await
    }

    pub async fn delete_registered_model_tag(&self, name: &str, key: &str) -> Result<()> {
        self.registered_model(name).await?;
        unset(&self.pool, "registered_model_tags", "name", name, key).await
    }

    /// Renames a registered model with its versions, tags and aliases.
    pub async fn rename_registered_model(&self, name: &str, new_name: &str) -> Result<RegisteredModel> {
        check_name("registered model name", new_name, MAX_NAME_LEN)?;
        self.registered_model(name).await?;
        if name != new_name && crate::found(self.registered_model(new_name).await)? {
            return Err(RegistryError::exists(format!("registered model {new_name:?} already exists")));
        }
        let mut tx = self.pool.begin().await?;
        for table in
            ["registered_models", "registered_model_tags", "model_versions", "model_version_tags", "model_aliases"]
        {
            sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET name = $1 WHERE name = $2")))
                .bind(new_name)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.registered_model(new_name).await
    }

    // ---- model versions

    /// A new version of `name` from `source`. With `model_id` (MLflow 3's
    /// logged model), a missing run is the model's source run, as MLflow's
    /// server fills it in.
    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        model_id: &str,
        description: &str,
        tags: &[Tag],
    ) -> Result<ModelVersion> {
        self.registered_model(name).await?;
        if source.is_empty() {
            return Err(RegistryError::invalid("source: required (the model's artifact URI)"));
        }
        for t in tags {
            check_len("model version tag", &t.key, &t.value, MAX_REGISTRY_TAG_VALUE_LEN)?;
        }
        let run_id = match (run_id, model_id) {
            ("", m) if !m.is_empty() => self.logged_model(m, false).await?.info.source_run_id,
            (r, m) => {
                if !m.is_empty() {
                    self.logged_model(m, false).await?;
                }
                r.to_owned()
            }
        };
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let version: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 AS v FROM model_versions WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?
            .try_get("v")?;
        sqlx::query(
            "INSERT INTO model_versions (name, version, creation_time, last_updated_time, description, source, run_id, \
             status, current_stage, model_id) VALUES ($1, $2, $3, $3, $4, $5, $6, 'READY', 'None', $7)",
        )
        .bind(name)
        .bind(version)
        .bind(now)
        .bind(description)
        .bind(source)
        .bind(&run_id)
        .bind(model_id)
        .execute(&mut *tx)
        .await?;
        touch(&mut tx, name, now).await?;
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
            model_id: row.try_get("model_id")?,
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

    /// Moves a version to `stage` (None, Staging, Production, Archived; any
    /// case); with `archive_existing`, the versions in that stage go to Archived.
    pub async fn transition_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
    ) -> Result<ModelVersion> {
        let stage = STAGES.iter().find(|s| s.eq_ignore_ascii_case(stage)).ok_or_else(|| {
            RegistryError::invalid(format!(
                "Invalid Model Version stage: {stage}. Value must be one of {}.",
                STAGES.join(", ")
            ))
        })?;
        self.model_version(name, version).await?;
        let v = parse_id("version", version)?;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        if archive_existing && ["Staging", "Production"].contains(stage) {
            sqlx::query(
                "UPDATE model_versions SET current_stage = 'Archived', last_updated_time = $1 \
                 WHERE name = $2 AND current_stage = $3 AND version <> $4",
            )
            .bind(now)
            .bind(name)
            .bind(*stage)
            .bind(v)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE model_versions SET current_stage = $1, last_updated_time = $2 WHERE name = $3 AND version = $4",
        )
        .bind(*stage)
        .bind(now)
        .bind(name)
        .bind(v)
        .execute(&mut *tx)
        .await?;
        touch(&mut tx, name, now).await?;
        tx.commit().await?;
        self.model_version(name, version).await
    }

    /// The newest version in each of `stages` (every stage when empty).
    pub async fn latest_versions(&self, name: &str, stages: &[String]) -> Result<Vec<ModelVersion>> {
        self.registered_model(name).await?;
        Ok(latest_by_stage(self.model_versions(Some(name)).await?, stages))
    }

    pub async fn delete_model_version_tag(&self, name: &str, version: &str, key: &str) -> Result<()> {
        self.model_version(name, version).await?;
        sqlx::query("DELETE FROM model_version_tags WHERE name = $1 AND version = $2 AND key = $3")
            .bind(name)
            .bind(parse_id("version", version)?)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_model_version_tag(&self, name: &str, version: &str, tag: &Tag) -> Result<()> {
        check_len("model version tag", &tag.key, &tag.value, MAX_REGISTRY_TAG_VALUE_LEN)?;
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
        if alias.chars().count() > MAX_ALIAS_LEN {
            return Err(RegistryError::invalid(format!(
                "alias of {} characters: at most {MAX_ALIAS_LEN}",
                alias.chars().count()
            )));
        }
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

/// Marks a registered model as changed at `now`, in `tx`.
async fn touch(tx: &mut sqlx::Transaction<'_, sqlx::Any>, name: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE registered_models SET last_updated_time = $1 WHERE name = $2")
        .bind(now)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// MLflow's model version stages.
pub const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

/// The newest of `versions` in each stage asked (each stage present when none is).
fn latest_by_stage(versions: Vec<ModelVersion>, stages: &[String]) -> Vec<ModelVersion> {
    let wanted = |stage: &str| stages.is_empty() || stages.iter().any(|s| s.eq_ignore_ascii_case(stage));
    let mut latest: Vec<ModelVersion> = Vec::new();
    for v in versions.into_iter().filter(|v| wanted(&v.current_stage)) {
        let number = |v: &ModelVersion| v.version.parse::<i64>().unwrap_or(0);
        match latest.iter_mut().find(|l| l.current_stage == v.current_stage) {
            Some(l) if number(&v) > number(l) => *l = v,
            Some(_) => {}
            None => latest.push(v),
        }
    }
    latest.sort_by_key(|v| v.version.parse::<i64>().unwrap_or(0));
    latest
}
