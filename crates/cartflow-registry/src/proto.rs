//! MLflow's REST objects as JSON, field for field (mlflow/protos/service.proto
//! and model_registry.proto): what the Python client sends and parses.
//! int64 fields go out as numbers, ids as strings, as MLflow's server does.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

pub type Param = Tag;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default)]
    pub step: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub creation_time: i64,
    pub last_update_time: i64,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub run_uuid: String,
    pub run_name: String,
    pub experiment_id: String,
    pub user_id: String,
    pub status: String,
    pub start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunData {
    /// The latest value of each metric.
    pub metrics: Vec<Metric>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    pub data: RunData,
    #[serde(default)]
    pub inputs: RunInputs,
    #[serde(default)]
    pub outputs: RunOutputs,
}

/// What a run read: datasets (`mlflow.log_input`) and models.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunInputs {
    #[serde(default)]
    pub dataset_inputs: Vec<serde_json::Value>,
    #[serde(default)]
    pub model_inputs: Vec<ModelRef>,
}

/// What a run made: MLflow 3's logged models, by id and step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunOutputs {
    #[serde(default)]
    pub model_outputs: Vec<ModelOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    pub model_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelOutput {
    pub model_id: String,
    #[serde(default)]
    pub step: i64,
}

/// A metric logged against a logged model (autolog's training scores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetric {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
    pub model_id: String,
    pub run_id: String,
}

/// MLflow 3's logged model: a model with an id, artifacts of its own, and
/// the run it came from (`mlflow.<flavor>.log_model`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoggedModel {
    pub info: LoggedModelInfo,
    pub data: LoggedModelData,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoggedModelInfo {
    pub model_id: String,
    pub experiment_id: String,
    pub name: String,
    pub creation_timestamp_ms: i64,
    pub last_updated_timestamp_ms: i64,
    pub artifact_uri: String,
    /// `LOGGED_MODEL_PENDING`, `LOGGED_MODEL_READY` or `LOGGED_MODEL_UPLOAD_FAILED`.
    pub status: String,
    #[serde(default)]
    pub model_type: String,
    #[serde(default)]
    pub source_run_id: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(skip)]
    pub lifecycle_stage: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoggedModelData {
    #[serde(default)]
    pub params: Vec<Param>,
    #[serde(default)]
    pub metrics: Vec<ModelMetric>,
}

impl LoggedModel {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.info.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.data.params.iter().find(|p| p.key == key).map(|p| p.value.as_str())
    }

    /// The latest value of a metric.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.data.metrics.iter().filter(|m| m.key == key).max_by_key(|m| (m.step, m.timestamp)).map(|m| m.value)
    }
}

impl Run {
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.data.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.data.params.iter().find(|p| p.key == key).map(|p| p.value.as_str())
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alias {
    pub alias: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    #[serde(default)]
    pub description: String,
    pub source: String,
    #[serde(default)]
    pub run_id: String,
    pub status: String,
    pub current_stage: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// MLflow 3: the logged model this version registers, when it came from one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub latest_versions: Vec<ModelVersion>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub aliases: Vec<Alias>,
}

/// The artifact path of an `mlflow-artifacts:` URI (`mlflow-artifacts:/1/abc/artifacts` → `1/abc/artifacts`).
pub fn artifact_root(uri: &str) -> crate::Result<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
        crate::RegistryError::invalid(format!(
            "artifact URI {uri:?}: only mlflow-artifacts: URIs (the server stores artifacts) are supported"
        ))
    })?;
    // mlflow-artifacts://host:port/x and mlflow-artifacts:/x both name x on the server.
    let rest = rest.strip_prefix("//").map_or(rest, |r| r.find('/').map_or("", |i| &r[i..]));
    Ok(rest.trim_matches('/').to_owned())
}

/// Milliseconds since the epoch, MLflow's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
