//! The model being served, and how it follows the registry: a watcher asks
//! the [`ModelSource`] which version the alias names and, when it moves,
//! loads the new file and swaps it in with one atomic store. Requests in
//! flight keep the `Arc` of the model they started with, so none is dropped
//! or scored by half of each.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use cartflow_core::time::{self, Micros};
use cartflow_model::{Model, Scorer};
use serde_json::{Value, json};

use crate::prediction_log::ModelVersion;

pub const SWAPS: &str = "cartflow_model_swaps_total";
pub const LOAD_ERRORS: &str = "cartflow_model_load_errors_total";

/// What a [`ModelSource`] fails with: its own error (a registry client's, say).
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Where model versions come from: the registry, by name and alias.
pub trait ModelSource: Send + Sync {
    /// The version `alias` names now (`None`: no such alias yet). Polled, so cheap.
    fn resolve(&self, name: &str, alias: &str) -> Result<Option<String>, SourceError>;
    /// The model file (`model.json`) of `version`.
    fn model_file(&self, name: &str, version: &str) -> Result<Vec<u8>, SourceError>;
    /// Where the versions come from, for messages.
    fn describe(&self) -> String;
}

/// Why the alias's model could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{from}: {source}")]
    Source { from: String, source: SourceError },
    #[error("{name}@{alias} (v{version}) is not a cartflow model: {source}")]
    Invalid { name: String, alias: String, version: String, source: cartflow_model::ModelError },
}

/// A loaded model with its compiled scorer and where it came from.
pub struct ServedModel {
    pub model: Model,
    pub scorer: Scorer,
    pub name: String,
    pub version: String,
    pub alias: String,
    pub loaded_at: Micros,
    /// Name, version and alias as answers and the prediction log give them, made once per load.
    pub logged_as: Arc<ModelVersion>,
    pub input_names: Arc<[String]>,
}

impl ServedModel {
    pub fn describe(&self) -> Value {
        json!({
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "trees": self.scorer.trees(),
            "feature_set": self.model.feature_set.service_name(),
            "loaded_at": time::rfc3339(self.loaded_at),
        })
    }
}

/// The model requests are scored with, swapped as a whole.
pub struct ModelSlot {
    pub name: String,
    pub alias: String,
    current: ArcSwapOption<ServedModel>,
    last_error: Mutex<Option<String>>,
}

impl ModelSlot {
    pub fn new(name: &str, alias: &str) -> Self {
        // At zero from the start, so `rate` and `increase` see the first swap or error.
        metrics::counter!(SWAPS).increment(0);
        metrics::counter!(LOAD_ERRORS).increment(0);
        Self {
            name: name.to_owned(),
            alias: alias.to_owned(),
            current: ArcSwapOption::empty(),
            last_error: Mutex::new(None),
        }
    }

    pub fn current(&self) -> Option<Arc<ServedModel>> {
        self.current.load_full()
    }

    /// What `/health` and `/ready` say about the model.
    pub fn describe(&self) -> Value {
        let error = self.last_error.lock().expect("model error lock").clone();
        match self.current() {
            Some(m) => json!({ "serving": m.describe(), "last_error": error }),
            None => {
                json!({ "serving": null, "waiting_for": format!("{}@{}", self.name, self.alias), "last_error": error })
            }
        }
    }

    /// Asks `source` once and swaps in the alias's version if it is not the
    /// one served. Returns the version loaded, if any. A failure keeps the
    /// current model and is remembered for `/health`.
    pub fn refresh(&self, source: &dyn ModelSource) -> Result<Option<String>, ModelError> {
        let result = self.try_refresh(source);
        let mut last = self.last_error.lock().expect("model error lock");
        match &result {
            Ok(_) => *last = None,
            Err(e) => {
                metrics::counter!(LOAD_ERRORS).increment(1);
                *last = Some(e.to_string());
            }
        }
        result
    }

    fn try_refresh(&self, source: &dyn ModelSource) -> Result<Option<String>, ModelError> {
        let from = |e| ModelError::Source { from: source.describe(), source: e };
        let Some(version) = source.resolve(&self.name, &self.alias).map_err(from)? else {
            return Ok(None);
        };
        if self.current().is_some_and(|m| m.version == version) {
            return Ok(None);
        }
        let bytes = source.model_file(&self.name, &version).map_err(from)?;
        let model = Model::from_json(&bytes).map_err(|e| ModelError::Invalid {
            name: self.name.clone(),
            alias: self.alias.clone(),
            version: version.clone(),
            source: e,
        })?;
        let scorer = Scorer::new(&model.ensemble);
        let logged_as =
            Arc::new(ModelVersion { name: self.name.clone(), version: version.clone(), alias: self.alias.clone() });
        let input_names = model.inputs.iter().map(|i| i.name.clone()).collect();
        let served = ServedModel {
            model,
            scorer,
            name: self.name.clone(),
            version: version.clone(),
            alias: self.alias.clone(),
            loaded_at: time::now_micros(),
            logged_as,
            input_names,
        };
        self.current.store(Some(Arc::new(served)));
        metrics::counter!(SWAPS).increment(1);
        tracing::info!("serving {} v{version} ({})", self.name, self.alias);
        Ok(Some(version))
    }

    /// Refreshes every `every` on a thread of its own (the source may block)
    /// until `stopped` says so.
    pub fn watch(
        self: &Arc<Self>,
        source: Arc<dyn ModelSource>,
        every: Duration,
        stopped: impl Fn() -> bool + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let slot = self.clone();
        std::thread::spawn(move || {
            while !stopped() {
                if let Err(e) = slot.refresh(source.as_ref()) {
                    tracing::warn!("model {}@{} from {}: {e}", slot.name, slot.alias, source.describe());
                }
                let until = std::time::Instant::now() + every;
                while std::time::Instant::now() < until && !stopped() {
                    std::thread::sleep(Duration::from_millis(50).min(every));
                }
            }
        })
    }
}
