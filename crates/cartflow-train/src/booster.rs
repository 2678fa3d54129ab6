//! Gradient-boosted trees with forust (pure Rust), converted to the model
//! crate's flat ensemble as soon as they are trained: everything after this
//! module (metrics, the model file, serving) scores with cartflow's own
//! inference, so the trainer can be swapped without touching the server.

use cartflow_model::{Ensemble, Node};
use forust_ml::gradientbooster::ImportanceMethod;
use forust_ml::metric::Metric;
use forust_ml::objective::ObjectiveType;
use forust_ml::sampler::SampleMethod;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::encode::Encoded;
use crate::metrics::log_loss;

/// Rounds without a better validation loss before a trial stops adding trees.
pub const EARLY_STOPPING_ROUNDS: usize = 30;

/// One point of the search space.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub max_depth: usize,
    pub learning_rate: f64,
    /// Minimum hessian sum in a leaf (XGBoost's `min_child_weight`).
    pub min_child_weight: f64,
    /// Share of rows each tree sees.
    pub subsample: f64,
    /// Share of inputs each tree sees.
    pub colsample: f64,
    pub l2: f64,
    /// The most trees; early stopping usually keeps fewer.
    pub rounds: usize,
    /// Weight of a bought cart against an abandoned one (class imbalance).
    pub pos_weight: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            max_depth: 6,
            learning_rate: 0.1,
            min_child_weight: 1.0,
            subsample: 1.0,
            colsample: 1.0,
            l2: 1.0,
            rounds: 300,
            pos_weight: 1.0,
        }
    }
}

/// A trained ensemble and how it did on the validation window.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub ensemble: Ensemble,
    /// Trees kept (the best round under early stopping).
    pub trees: usize,
    pub valid_log_loss: f64,
    /// The ensemble's probabilities for the validation rows, in order.
    pub valid_predictions: Vec<f64>,
    /// Each input's share of the total split gain.
    pub importance: Vec<f64>,
}

/// Trains at most `min(budget, params.rounds)` trees on `train`, stopping
/// early on `valid`'s log loss, using `threads` cores.
pub fn fit(
    params: &Params,
    budget: usize,
    train: &Encoded,
    valid: &Encoded,
    seed: u64,
    threads: usize,
) -> Result<Fitted, TrainError> {
    fit_with(params, budget, train, valid, seed, threads, Some(EARLY_STOPPING_ROUNDS))
}

/// Trains exactly `params.rounds` trees, for comparing boosters at equal work.
pub fn fit_fixed(params: &Params, train: &Encoded, valid: &Encoded, threads: usize) -> Result<Fitted, TrainError> {
    fit_with(params, params.rounds, train, valid, 0, threads, None)
}

fn fit_with(
    params: &Params,
    budget: usize,
    train: &Encoded,
    valid: &Encoded,
    seed: u64,
    threads: usize,
    early_stopping: Option<usize>,
) -> Result<Fitted, TrainError> {
    let data = Matrix::new(&train.column_major, train.rows, train.cols);
    let eval = Matrix::new(&valid.column_major, valid.rows, valid.cols);
    let weights: Vec<f64> = train.labels.iter().map(|&y| if y > 0.5 { params.pos_weight } else { 1.0 }).collect();
    let eval_weights = vec![1.0; valid.rows];
    let sample_method = if params.subsample < 1.0 { SampleMethod::Random } else { SampleMethod::None };
    let mut booster = GradientBooster::default()
        .set_objective_type(ObjectiveType::LogLoss)
        .set_iterations(budget.min(params.rounds).max(1))
        .set_learning_rate(params.learning_rate as f32)
        .set_max_depth(params.max_depth)
        .set_min_leaf_weight(params.min_child_weight as f32)
        .set_l2(params.l2 as f32)
        .set_sample_method(sample_method)
        .set_subsample(params.subsample as f32)
        .set_colsample_bytree(params.colsample)
        .set_seed(seed)
        .set_parallel(threads > 1)
        .set_num_threads(Some(threads.max(1)))
        .set_initialize_base_score(true)
        .set_evaluation_metric(Some(Metric::LogLoss))
        .set_early_stopping_rounds(early_stopping);
    booster
        .fit(&data, &train.labels, &weights, Some(vec![(eval, &valid.labels, &eval_weights)]))
        .map_err(|e| TrainError::Booster(e.to_string()))?;

    let ensemble = convert(&booster);
    let predictions = ensemble.predict_batch(&valid.row_major(), valid.cols);
    let gains = booster.calculate_feature_importance(ImportanceMethod::TotalGain, true);
    let importance = (0..train.cols).map(|c| gains.get(&c).copied().unwrap_or(0.0) as f64).collect();
    Ok(Fitted {
        trees: ensemble.trees(),
        valid_log_loss: log_loss(&predictions, &valid.labels),
        valid_predictions: predictions,
        ensemble,
        importance,
    })
}

/// forust's trees up to its best round, node for node: a split sends a value
/// below `split_value` left, NaN to `missing_node`.
fn convert(booster: &GradientBooster) -> Ensemble {
    let kept = booster.prediction_iteration.unwrap_or(booster.trees.len());
    let mut ensemble = Ensemble { base_score: booster.base_score, ..Ensemble::default() };
    for tree in &booster.trees[..kept] {
        let nodes: Vec<Node> = tree
            .nodes
            .iter()
            .map(|n| {
                if n.is_leaf {
                    Node::leaf(n.weight_value as f64)
                } else {
                    Node {
                        feature: n.split_feature as u32,
                        value: n.split_value,
                        left: n.left_child as u32,
                        right: n.right_child as u32,
                        missing: n.missing_node as u32,
                    }
                }
            })
            .collect();
        ensemble.push_tree(&nodes);
    }
    ensemble
}

/// forust's own predictions of `data`, to check the conversion against.
#[cfg(test)]
pub(crate) fn forust_log_odds(params: &Params, train: &Encoded, data: &Encoded) -> (Ensemble, Vec<f64>) {
    let m = Matrix::new(&train.column_major, train.rows, train.cols);
    let mut booster = GradientBooster::default()
        .set_iterations(params.rounds)
        .set_max_depth(params.max_depth)
        .set_learning_rate(params.learning_rate as f32)
        .set_initialize_base_score(true)
        .set_parallel(false);
    booster.fit(&m, &train.labels, &vec![1.0; train.rows], None).unwrap();
    let d = Matrix::new(&data.column_major, data.rows, data.cols);
    (convert(&booster), booster.predict(&d, false))
}
