//! The model file and everything needed to score with it, apart from the
//! trainer: the serving path loads a model without linking the booster.
//!
//! - [`encode`]: how each feature of the catalogue becomes one number
//!   (numbers as they are, categories by their smoothed purchase rate);
//! - [`trees`]: a flat tree ensemble, as stored, and its single-row inference;
//! - [`scorer`]: the same trees laid out for fast batch inference;
//! - [`Model`]: the two together with the feature set and the decision
//!   threshold, as `model.json`;
//! - [`mlflow`]: the model as an MLflow model directory (a pyfunc flavor).
//!
//! No I/O: callers read and write the bytes.

pub mod encode;
pub mod mlflow;
pub mod scorer;
pub mod trees;

use cartflow_features::{CartFeatures, FeatureSet};
use serde::{Deserialize, Serialize};

pub use encode::{Encoding, InputFeature};
pub use scorer::Scorer;
pub use trees::{Ensemble, Node};

/// Bumped when the file's meaning changes; older files are refused, not guessed at.
pub const MODEL_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("model file format {found}, this build reads {MODEL_FORMAT}")]
    Format { found: u32 },
    #[error("model file: {0}")]
    Invalid(String),
}

/// A trained model: inputs in order, the trees over them, and the
/// probability at or above which a cart is called a purchase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    pub format: u32,
    pub feature_set: FeatureSet,
    pub inputs: Vec<InputFeature>,
    pub ensemble: Ensemble,
    pub threshold: f64,
}

impl Model {
    pub fn new(feature_set: FeatureSet, inputs: Vec<InputFeature>, ensemble: Ensemble, threshold: f64) -> Self {
        Self { format: MODEL_FORMAT, feature_set, inputs, ensemble, threshold }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a model always serializes")
    }

    /// Reads a model file, checking that it can be scored: every input is a
    /// feature this build computes and every split names an input.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        #[derive(Deserialize)]
        struct Header {
            format: u32,
        }
        let found = serde_json::from_slice::<Header>(bytes)?.format;
        if found != MODEL_FORMAT {
            return Err(ModelError::Format { found });
        }
        let model: Model = serde_json::from_slice(bytes)?;
        if model.inputs.is_empty() {
            return Err(ModelError::Invalid("the model has no inputs: it cannot tell one cart from another".into()));
        }
        for input in &model.inputs {
            if cartflow_features::spec::feature(&input.name).is_none() {
                return Err(ModelError::Invalid(format!("input {:?} is not a feature of this build", input.name)));
            }
        }
        model.ensemble.check(model.inputs.len()).map_err(ModelError::Invalid)?;
        Ok(model)
    }

    /// The encoded inputs of one cart, in the model's order.
    pub fn encode(&self, features: &CartFeatures) -> Vec<f64> {
        self.inputs.iter().map(|input| input.encode_features(features)).collect()
    }

    /// The probability that this cart's item is bought.
    pub fn predict(&self, features: &CartFeatures) -> f64 {
        self.ensemble.predict_row(&self.encode(features))
    }

    pub fn will_purchase(&self, probability: f64) -> bool {
        probability >= self.threshold
    }
}

#[cfg(test)]
mod random_trees;
#[cfg(test)]
mod tests;
