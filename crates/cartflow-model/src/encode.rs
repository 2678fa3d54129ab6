//! Features into numbers. The trees split on numbers only, so a category
//! (brand, category levels) becomes the purchase rate its carts had in the
//! training window, pulled toward the overall rate when it had few carts.
//! The table travels in the model file, so serving encodes exactly as
//! training did. Missing stays missing (NaN): the trees learned a branch for it.

use std::collections::BTreeMap;

use cartflow_features::{CartFeatures, FeatureDef, Value};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Encoding {
    /// The value itself.
    Number,
    /// The smoothed purchase rate of the category's carts in the training
    /// window; `prior` (the overall rate) for a category not seen there.
    PurchaseRate { prior: f64, rates: BTreeMap<String, f64> },
}

impl Encoding {
    pub fn encode(&self, value: Value<'_>) -> f64 {
        match (self, value) {
            (_, Value::Null) => f64::NAN,
            (Self::Number, Value::Int(i)) => i as f64,
            (Self::Number, Value::Float(f)) => f,
            (Self::PurchaseRate { prior, rates }, Value::Str(s)) => rates.get(s).copied().unwrap_or(*prior),
            // A number where a category was learned (or the reverse) cannot
            // come from the catalogue; treat it as unknown rather than guess.
            (Self::Number, Value::Str(_)) => f64::NAN,
            (Self::PurchaseRate { prior, .. }, _) => *prior,
        }
    }
}

/// One model input: a feature of the catalogue and its encoding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputFeature {
    pub name: String,
    pub encoding: Encoding,
}

impl InputFeature {
    fn def(&self) -> &'static FeatureDef {
        // Model::from_json and the trainer only build inputs from catalogue names.
        cartflow_features::spec::feature(&self.name).expect("model inputs are catalogue features")
    }

    pub fn encode_features(&self, features: &CartFeatures) -> f64 {
        self.encoding.encode((self.def().get)(features))
    }
}
