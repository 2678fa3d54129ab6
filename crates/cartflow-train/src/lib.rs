//! Training a cart-purchase model from the offline training set:
//!
//! - [`frame`]: the training set in memory and the time split;
//! - [`encode`]: input encodings fitted on the training window;
//! - [`booster`]: gradient-boosted trees (forust), converted to the model's
//!   own ensemble;
//! - [`tune`]: TPE search with ASHA pruning, trials in parallel;
//! - [`metrics`], [`baseline`], [`plots`]: how good it is, against what, drawn.
//!
//! [`train`] runs them in order and returns the model, its metrics and its
//! artifacts as bytes; reading the set and logging to a registry are the
//! caller's. Scoring an existing model on the same window ([`score`]) is how
//! a new model is compared with the champion.

pub mod baseline;
pub mod booster;
pub mod encode;
pub mod frame;
pub mod metrics;
pub mod plots;
pub mod promote;
pub mod study;
pub mod tune;

use std::time::{Duration, Instant};

use cartflow_features::FeatureSet;
use cartflow_model::Model;
use serde::Serialize;

pub use booster::Params;
pub use frame::{Frame, Split};
pub use metrics::Metrics;
pub use study::{LocalStudy, Observation, Study};
pub use tune::{Observer, TrialReport, TrialState, TuneConfig};

use crate::encode::Encoded;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Input(String),
    #[error("booster: {0}")]
    Booster(String),
    #[error(transparent)]
    Plot(#[from] plots::PlotError),
}

/// The training window's share of the span.
pub const TRAIN_SHARE: f64 = 0.8;

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub feature_set: FeatureSet,
    pub tune: TuneConfig,
}

/// Sizes and rates of the two windows.
#[derive(Debug, Clone, Serialize)]
pub struct SplitSummary {
    pub cut: i64,
    pub train_rows: usize,
    pub valid_rows: usize,
    pub train_base_rate: f64,
    pub valid_base_rate: f64,
}

/// A trained model, how it did on the validation window, and how it got there.
pub struct Outcome {
    pub model: Model,
    pub params: Params,
    /// The number of the trial the model is.
    pub best_trial: usize,
    pub split: SplitSummary,
    pub metrics: Metrics,
    /// Baselines on the same window: `base_rate`, `logistic_regression`.
    pub baselines: Vec<(&'static str, Metrics)>,
    pub importance: Vec<(String, f64)>,
    pub trials: Vec<TrialReport>,
    pub timed_out: bool,
    pub seconds: f64,
    curves: Curves,
}

struct Curves {
    roc: Vec<(f64, f64)>,
    pr: Vec<(f64, f64)>,
    baseline_roc: Vec<(f64, f64)>,
    baseline_pr: Vec<(f64, f64)>,
}

/// Splits `frame` by time, tunes, and evaluates the best trial against the baselines.
pub fn train(frame: &Frame, config: &TrainConfig, observer: &dyn Observer) -> Result<Outcome, TrainError> {
    train_in(frame, config, observer, &LocalStudy::new(config.tune.trials))
}

/// As [`train`], with the trials kept in `study` (shared with other workers,
/// perhaps): the outcome is this worker's best trial.
pub fn train_in(
    frame: &Frame,
    config: &TrainConfig,
    observer: &dyn Observer,
    study: &dyn Study,
) -> Result<Outcome, TrainError> {
    let started = Instant::now();
    let split = frame.time_split(TRAIN_SHARE)?;
    let inputs = encode::fit_inputs(frame, config.feature_set, &split.train);
    let train_set = Encoded::new(frame, &inputs, &split.train)?;
    let valid_set = Encoded::new(frame, &inputs, &split.valid)?;

    let tuned = tune::tune(&train_set, &valid_set, &config.tune, observer, study)?;
    let (best, fitted) = tuned.best.ok_or_else(|| {
        TrainError::Input(format!(
            "no trial finished within the {:?} timeout: give it longer",
            config.tune.timeout.unwrap_or_default()
        ))
    })?;
    let y = &valid_set.labels;
    let p = &fitted.valid_predictions;
    let threshold = metrics::best_f1_threshold(p, y);

    let logistic = baseline::Logistic::fit(&train_set);
    let lp = logistic.predict(&valid_set);
    let base = vec![train_set.base_rate(); valid_set.rows];
    let baselines = vec![
        ("base_rate", metrics::evaluate(&base, y, metrics::best_f1_threshold(&base, y))),
        ("logistic_regression", metrics::evaluate(&lp, y, metrics::best_f1_threshold(&lp, y))),
    ];
    let importance = inputs.iter().map(|i| i.name.clone()).zip(fitted.importance.iter().copied()).collect();
    Ok(Outcome {
        split: SplitSummary {
            cut: split.cut_micros,
            train_rows: train_set.rows,
            valid_rows: valid_set.rows,
            train_base_rate: train_set.base_rate(),
            valid_base_rate: valid_set.base_rate(),
        },
        metrics: metrics::evaluate(p, y, threshold),
        curves: Curves {
            roc: metrics::roc_curve(p, y),
            pr: metrics::pr_curve(p, y),
            baseline_roc: metrics::roc_curve(&lp, y),
            baseline_pr: metrics::pr_curve(&lp, y),
        },
        model: Model::new(config.feature_set, inputs, fitted.ensemble, threshold),
        params: best.params,
        best_trial: best.trial,
        baselines,
        importance,
        trials: tuned.trials,
        timed_out: tuned.timed_out,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Validation-window probabilities of an existing model (the champion), with
/// its own encodings, on the split [`train`] uses.
pub fn score(model: &Model, frame: &Frame) -> Result<(Vec<f64>, Vec<f64>), TrainError> {
    let split = frame.time_split(TRAIN_SHARE)?;
    let valid = Encoded::new(frame, &model.inputs, &split.valid)?;
    Ok((model.ensemble.predict_batch(&valid.row_major(), valid.cols), valid.labels))
}

impl Outcome {
    pub fn baseline(&self, name: &str) -> Option<&Metrics> {
        self.baselines.iter().find(|(n, _)| *n == name).map(|(_, m)| m)
    }

    /// The run's files: the model, its inputs and encodings, the metrics,
    /// the trials, and the plots.
    pub fn artifacts(&self) -> Result<Vec<(&'static str, Vec<u8>)>, TrainError> {
        let json = |v: serde_json::Value| serde_json::to_vec_pretty(&v).expect("JSON values serialize");
        let spec: Vec<serde_json::Value> = self
            .model
            .inputs
            .iter()
            .map(|input| {
                let def = cartflow_features::spec::feature(&input.name).expect("inputs are catalogue features");
                serde_json::json!({
                    "name": input.name, "dtype": def.dtype, "view": def.view,
                    "description": def.description, "encoding": input.encoding,
                })
            })
            .collect();
        let baseline = |name| self.baseline(name).expect("both baselines are always computed");
        let logistic = baseline("logistic_regression");
        let plot = |r: Result<String, plots::PlotError>| r.map(String::into_bytes).map_err(TrainError::Plot);
        Ok(vec![
            ("model.json", self.model.to_json()),
            ("feature_spec.json", json(serde_json::json!({ "feature_set": self.model.feature_set, "inputs": spec }))),
            (
                "metrics.json",
                json(serde_json::json!({
                    "validation": self.metrics, "baselines": { "base_rate": baseline("base_rate"), "logistic_regression": logistic },
                    "split": self.split, "params": self.params, "trees": self.model.ensemble.trees(),
                    "importance": self.importance,
                })),
            ),
            ("trials.json", json(serde_json::to_value(&self.trials).expect("trials serialize"))),
            (
                "roc.svg",
                plot(plots::roc(&self.curves.roc, self.metrics.roc_auc, &self.curves.baseline_roc, logistic.roc_auc))?,
            ),
            (
                "pr.svg",
                plot(plots::precision_recall(
                    &self.curves.pr,
                    self.metrics.pr_auc,
                    &self.curves.baseline_pr,
                    logistic.pr_auc,
                    self.metrics.base_rate,
                ))?,
            ),
            ("calibration.svg", plot(plots::calibration(&self.metrics.calibration))?),
            ("importance.svg", plot(plots::importance(&self.importance))?),
        ])
    }
}

/// All cores of this machine.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A default search: `trials` trials, as many at once as there are cores.
pub fn default_tuning(trials: usize, timeout: Option<Duration>, seed: u64) -> TuneConfig {
    TuneConfig { trials, parallel: cores(), timeout, seed, cores: cores() }
}

#[cfg(test)]
mod tests;
