//! The REST client the trainer logs with. It speaks only MLflow's public
//! API, so it works against cartflow's registry and against `mlflow server`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::proto::{LoggedModel, Metric, ModelVersion, Param, Run, RunInfo, Tag};
use crate::{ErrorCode, RegistryError, Result};

/// How long a request answered 503 TEMPORARILY_UNAVAILABLE is tried again.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// MLflow's tag naming a run's parent: the UI nests child runs under it.
pub const PARENT_RUN_TAG: &str = "mlflow.parentRunId";

#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// `Authorization` header value, when the server wants a token.
    auth: Option<String>,
}

fn code(s: &str) -> ErrorCode {
    match s {
        "RESOURCE_DOES_NOT_EXIST" => ErrorCode::ResourceDoesNotExist,
        "RESOURCE_ALREADY_EXISTS" => ErrorCode::ResourceAlreadyExists,
        "INVALID_PARAMETER_VALUE" => ErrorCode::InvalidParameterValue,
        "REQUEST_LIMIT_EXCEEDED" => ErrorCode::RequestLimitExceeded,
        "TEMPORARILY_UNAVAILABLE" => ErrorCode::TemporarilyUnavailable,
        _ => ErrorCode::InternalError,
    }
}

impl Client {
    /// A client of the tracking server at `base` (`http://127.0.0.1:5001`).
    pub fn new(base: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .new_agent();
        Self { base: base.trim_end_matches('/').to_owned(), agent, auth: None }
    }

    /// Sends `token` as a bearer token, as MLflow's client does with
    /// `MLFLOW_TRACKING_TOKEN`.
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.auth = token.map(|t| format!("Bearer {t}"));
        self
    }

    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(auth) => request.header("authorization", auth),
            None => request,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `request` again while the server answers 503 TEMPORARILY_UNAVAILABLE
    /// (its database away), waiting 0.5 s doubling to 8 s, for up to a minute:
    /// as MLflow's own client retries a 503.
    fn retrying(&self, mut request: impl FnMut() -> Result<Vec<u8>>) -> Result<Vec<u8>> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(500);
        loop {
            match request() {
                Err(e) if e.code == ErrorCode::TemporarilyUnavailable && started.elapsed() + wait < RETRY_FOR => {
                    tracing::warn!("{e}; trying again in {:.1} s", wait.as_secs_f64());
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(8));
                }
                answer => return answer,
            }
        }
    }

    fn answer(
        &self,
        what: &str,
        response: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Vec<u8>> {
        let mut response = response.map_err(|e| RegistryError::internal(format!("{what} at {}: {e}", self.base)))?;
        let status = response.status();
        let body = response.body_mut().read_to_vec().map_err(|e| RegistryError::internal(format!("{what}: {e}")))?;
        if status.is_success() {
            return Ok(body);
        }
        let err: Value = serde_json::from_slice(&body).unwrap_or_default();
        Err(RegistryError {
            code: if status == 404 {
                ErrorCode::ResourceDoesNotExist
            } else {
                code(err["error_code"].as_str().unwrap_or(""))
            },
            message: format!(
                "{what}: {} ({status})",
                err["message"].as_str().unwrap_or(&String::from_utf8_lossy(&body))
            ),
        })
    }

    fn post(&self, endpoint: &str, body: Value) -> Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let bytes = self.retrying(|| {
            self.answer(
                endpoint,
                self.authorized(self.agent.post(&url))
                    .header("content-type", "application/json")
                    .send(body.to_string()),
            )
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::internal(format!("{endpoint}: answer is not JSON: {e}")))
    }

    fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let bytes = self.retrying(|| {
            self.answer(endpoint, self.authorized(self.agent.get(&url)).query_pairs(query.iter().copied()).call())
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::internal(format!("{endpoint}: answer is not JSON: {e}")))
    }

    fn parse<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T> {
        serde_json::from_value(v.clone())
            .map_err(|e| RegistryError::internal(format!("{what} in an unexpected shape: {e}")))
    }

    /// The id of experiment `name`, created if it does not exist.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        match self.get("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(v) => Ok(v["experiment"]["experiment_id"].as_str().unwrap_or_default().to_owned()),
            Err(e) if e.code == ErrorCode::ResourceDoesNotExist => {
                let v = self.post("experiments/create", json!({ "name": name }))?;
                Ok(v["experiment_id"].as_str().unwrap_or_default().to_owned())
            }
            Err(e) => Err(e),
        }
    }

    /// Starts a run, a child of `parent` when given.
    pub fn create_run(&self, experiment_id: &str, name: &str, parent: Option<&str>) -> Result<RunInfo> {
        let mut tags = vec![json!({ "key": "mlflow.source.name", "value": "cartflow train" })];
        if let Some(parent) = parent {
            tags.push(json!({ "key": PARENT_RUN_TAG, "value": parent }));
        }
        let v = self.post(
            "runs/create",
            json!({ "experiment_id": experiment_id, "run_name": name, "start_time": crate::proto::now_ms(), "tags": tags }),
        )?;
        Self::parse(&v["run"]["info"], "run")
    }

    pub fn run(&self, run_id: &str) -> Result<Run> {
        Self::parse(&self.get("runs/get", &[("run_id", run_id)])?["run"], "run")
    }

    /// Logs in batches of MLflow's limits (1000 metrics, 100 params, 100 tags per call).
    pub fn log_batch(&self, run_id: &str, metrics: &[Metric], params: &[Param], tags: &[Tag]) -> Result<()> {
        for chunk in metrics.chunks(1000) {
            self.post("runs/log-batch", json!({ "run_id": run_id, "metrics": chunk }))?;
        }
        for chunk in params.chunks(100) {
            self.post("runs/log-batch", json!({ "run_id": run_id, "params": chunk }))?;
        }
        for chunk in tags.chunks(100) {
            self.post("runs/log-batch", json!({ "run_id": run_id, "tags": chunk }))?;
        }
        Ok(())
    }

    pub fn finish_run(&self, run_id: &str, status: &str) -> Result<()> {
        self.post("runs/update", json!({ "run_id": run_id, "status": status, "end_time": crate::proto::now_ms() }))?;
        Ok(())
    }

    /// The artifact API URL of `artifact_uri`/`path`, for `mlflow-artifacts:` URIs.
    pub fn artifact_url(&self, artifact_uri: &str, path: &str) -> Result<String> {
        let root = crate::proto::artifact_root(artifact_uri)?;
        let joined = [root.as_str(), path.trim_matches('/')]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        Ok(format!("{}/api/2.0/mlflow-artifacts/artifacts/{joined}", self.base))
    }

    pub fn upload(&self, artifact_uri: &str, path: &str, bytes: &[u8]) -> Result<()> {
        let url = self.artifact_url(artifact_uri, path)?;
        self.answer(&format!("upload {path}"), self.authorized(self.agent.put(&url)).send(bytes))?;
        Ok(())
    }

    pub fn download(&self, artifact_uri: &str, path: &str) -> Result<Vec<u8>> {
        let url = self.artifact_url(artifact_uri, path)?;
        self.answer(&format!("download {artifact_uri}/{path}"), self.authorized(self.agent.get(&url)).call())
    }

    /// Creates registered model `name` unless it exists.
    pub fn ensure_registered_model(&self, name: &str, description: &str) -> Result<()> {
        match self.post("registered-models/create", json!({ "name": name, "description": description })) {
            Ok(_) => Ok(()),
            Err(e) if e.code == ErrorCode::ResourceAlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Registers `source` as a new version of `name`; `model_id` names the
    /// MLflow 3 logged model it is (its source is then `models:/<model_id>`).
    pub fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
        model_id: Option<&str>,
    ) -> Result<ModelVersion> {
        let mut body = json!({ "name": name, "source": source, "run_id": run_id });
        if let Some(id) = model_id {
            body["model_id"] = json!(id);
        }
        let v = self.post("model-versions/create", body)?;
        Self::parse(&v["model_version"], "model version")
    }

    /// Where a version's files are, as the server resolves its source
    /// (`models:/m-…` becomes the logged model's artifact location).
    pub fn download_uri(&self, name: &str, version: &str) -> Result<String> {
        let v = self.get("model-versions/get-download-uri", &[("name", name), ("version", version)])?;
        v["artifact_uri"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| RegistryError::internal(format!("{name} v{version}: no artifact_uri in the answer")))
    }

    /// One file of a registered version.
    pub fn version_file(&self, name: &str, version: &str, file: &str) -> Result<Vec<u8>> {
        self.download(&self.download_uri(name, version)?, file)
    }

    /// Starts an MLflow 3 logged model of `run` (pending until [`Self::finalize_logged_model`]).
    pub fn create_logged_model(
        &self,
        experiment_id: &str,
        name: &str,
        run: &str,
        params: &[Param],
    ) -> Result<LoggedModel> {
        let v = self.post(
            "logged-models",
            json!({ "experiment_id": experiment_id, "name": name, "source_run_id": run, "params": params }),
        )?;
        Self::parse(&v["model"], "logged model")
    }

    /// Marks a logged model's artifacts complete, and the run as its maker.
    pub fn finalize_logged_model(&self, model: &LoggedModel) -> Result<()> {
        let id = &model.info.model_id;
        let url = format!("{}/api/2.0/mlflow/logged-models/{id}", self.base);
        let body = json!({ "model_id": id, "status": crate::store::READY }).to_string();
        self.answer(
            "finalizing the logged model",
            self.authorized(self.agent.patch(&url)).header("content-type", "application/json").send(body),
        )?;
        self.post(
            "runs/outputs",
            json!({ "run_id": model.info.source_run_id, "models": [{ "model_id": id, "step": 0 }] }),
        )?;
        Ok(())
    }

    pub fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        self.post("registered-models/alias", json!({ "name": name, "alias": alias, "version": version }))?;
        Ok(())
    }

    pub fn model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        Self::parse(
            &self.get("model-versions/get", &[("name", name), ("version", version)])?["model_version"],
            "model version",
        )
    }

    /// The version `alias` points at, if the model and the alias exist.
    pub fn version_by_alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>> {
        match self.get("registered-models/alias", &[("name", name), ("alias", alias)]) {
            Ok(v) => Ok(Some(Self::parse(&v["model_version"], "model version")?)),
            Err(e) if e.code == ErrorCode::ResourceDoesNotExist => Ok(None),
            // MLflow's own server calls a missing alias an invalid parameter.
            Err(e) if e.code == ErrorCode::InvalidParameterValue && e.message.contains("not found") => Ok(None),
            Err(e) => Err(e),
        }
    }
}
