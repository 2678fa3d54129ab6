use std::sync::Mutex;

use cartflow_features::{FeatureSet, FeatureType};

use crate::booster::{Params, forust_log_odds};
use crate::encode::{Encoded, fit_inputs};
use crate::frame::{Column, Frame};
use crate::metrics::{at_threshold, average_precision, best_f1_threshold, log_loss, roc_auc};
use crate::{TrainConfig, TrainError, TrialReport, TrialState, TuneConfig, train};

/// xorshift64*: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Carts an hour apart whose purchase depends, not linearly, on views in
/// the session, the price and the brand; other features are noise.
fn frame(rows: usize, seed: u64) -> Frame {
    let mut rng = Rng(seed);
    let features: Vec<_> = FeatureSet::V2.features().collect();
    let brands: Vec<String> = ["acme", "zeta", "nova", "orb"].map(String::from).to_vec();
    let mut columns: Vec<Column> = features
        .iter()
        .map(|f| match f.dtype {
            FeatureType::Int64 => Column::Int(Vec::new()),
            FeatureType::Float64 => Column::Float(Vec::new()),
            FeatureType::String => Column::Str { codes: Vec::new(), dict: brands.clone() },
        })
        .collect();
    let mut label = Vec::new();
    for _ in 0..rows {
        let views = (rng.next() * 12.0) as i64;
        let price = 5.0 + rng.next() * 500.0;
        let brand = (rng.next() * 4.0) as u32;
        let signal = if (3..8).contains(&views) { 1.5 } else { -1.0 }
            + if price < 100.0 { 0.8 } else { -0.4 }
            + [0.9, -0.9, 0.0, 0.3][brand as usize];
        label.push(rng.next() < cartflow_model::trees::sigmoid(signal));
        for (def, column) in features.iter().zip(&mut columns) {
            match column {
                Column::Int(v) => {
                    v.push(Some(if def.name == "session_views" { views } else { (rng.next() * 5.0) as i64 }))
                }
                Column::Float(v) => {
                    v.push((rng.next() > 0.05).then_some(if def.name == "price" { price } else { rng.next() }))
                }
                Column::Str { codes, .. } => codes.push((def.name != "brand" || rng.next() > 0.1).then_some(brand)),
            }
        }
    }
    Frame { features, columns, event_time: (0..rows as i64).map(|h| h * 3_600_000_000).collect(), label }
}

fn config(trials: usize, parallel: usize) -> TrainConfig {
    TrainConfig { feature_set: FeatureSet::V2, tune: TuneConfig { trials, parallel, timeout: None, seed: 7, cores: 2 } }
}

#[test]
fn metrics_match_their_textbook_values() {
    let p = [0.1, 0.4, 0.35, 0.8];
    let y = [0.0, 0.0, 1.0, 1.0];
    assert_eq!(roc_auc(&p, &y), 0.75);
    assert!((average_precision(&p, &y) - 0.833_333_333).abs() < 1e-6);
    // Ties count half: a constant score ranks nothing.
    assert_eq!(roc_auc(&[0.3; 4], &y), 0.5);
    assert!((log_loss(&[0.5; 4], &y) - std::f64::consts::LN_2).abs() < 1e-12);
    let d = at_threshold(&p, &y, 0.35);
    assert_eq!((d.precision, d.recall, d.accuracy), (2.0 / 3.0, 1.0, 0.75));
    assert_eq!(best_f1_threshold(&p, &y), 0.35);
}

#[test]
fn converted_trees_score_exactly_as_forust_does() {
    let f = frame(3000, 1);
    let rows: Vec<usize> = (0..f.rows()).collect();
    let inputs = fit_inputs(&f, FeatureSet::V2, &rows);
    let data = Encoded::new(&f, &inputs, &rows).unwrap();
    let params = Params { rounds: 40, max_depth: 5, ..Params::default() };
    let (ensemble, forust) = forust_log_odds(&params, &data, &data);
    let ours = data.row_major();
    for (r, expected) in forust.iter().enumerate() {
        let got = ensemble.raw_row(&ours[r * data.cols..(r + 1) * data.cols]);
        assert!((got - expected).abs() < 1e-9, "row {r}: {got} != {expected}");
    }
}

#[test]
fn the_split_is_by_time_and_needs_both_outcomes() {
    let f = frame(1000, 2);
    let split = f.time_split(0.8).unwrap();
    let last_train = *split.train.last().unwrap();
    assert!(
        split.valid.iter().all(|&r| f.event_time[r] >= split.cut_micros && f.event_time[last_train] < split.cut_micros)
    );
    assert_eq!(split.train.len() + split.valid.len(), 1000);

    let mut all_bought = f.clone();
    all_bought.label.iter_mut().for_each(|l| *l = true);
    let err = all_bought.time_split(0.8).unwrap_err().to_string();
    assert!(err.contains("both outcomes"), "{err}");
}

#[test]
fn tuning_beats_the_baselines_prunes_and_reports_every_trial() {
    let f = frame(12_000, 3);
    let reports = Mutex::new(Vec::<TrialReport>::new());
    let observer = |r: &TrialReport| reports.lock().unwrap().push(r.clone());
    let outcome = train(&f, &config(8, 2), &observer).unwrap();

    let logistic = outcome.baseline("logistic_regression").unwrap();
    let base = outcome.baseline("base_rate").unwrap();
    assert_eq!(base.roc_auc, 0.5);
    // Views matter only in a band: trees see it, a linear model cannot.
    assert!(outcome.metrics.roc_auc > logistic.roc_auc + 0.02, "{} vs {}", outcome.metrics.roc_auc, logistic.roc_auc);
    assert!(outcome.metrics.log_loss < base.log_loss);
    assert_eq!(outcome.trials.len(), 8);
    let reports = reports.into_inner().unwrap();
    assert!(reports.iter().any(|r| r.state == TrialState::Promoted));
    assert!(outcome.trials.iter().all(|t| t.state != TrialState::Promoted));
    assert_eq!(outcome.split.train_rows + outcome.split.valid_rows, 12_000);

    // The model file scores the validation window as the trainer did.
    let model = cartflow_model::Model::from_json(&outcome.model.to_json()).unwrap();
    let (p, y) = crate::score(&model, &f).unwrap();
    assert!((roc_auc(&p, &y) - outcome.metrics.roc_auc).abs() < 1e-12);

    let names: Vec<&str> = outcome.artifacts().unwrap().iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "model.json",
            "feature_spec.json",
            "metrics.json",
            "trials.json",
            "roc.svg",
            "pr.svg",
            "calibration.svg",
            "importance.svg"
        ]
    );
    let top = outcome.importance.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!(top.0, "session_views");
}

#[test]
fn asha_prunes_trials_that_fall_behind() {
    let f = frame(6000, 4);
    let outcome = train(&f, &config(12, 1), &|_: &TrialReport| {}).unwrap();
    let pruned = outcome.trials.iter().filter(|t| t.state == TrialState::Pruned).count();
    assert!(
        pruned > 0,
        "12 trials, none pruned: {:?}",
        outcome.trials.iter().map(|t| t.valid_log_loss).collect::<Vec<_>>()
    );
    // A pruned trial stopped at a rung below its own budget.
    assert!(outcome.trials.iter().filter(|t| t.state == TrialState::Pruned).all(|t| t.budget < t.params.rounds));
}

#[test]
fn a_model_reading_a_feature_this_build_lacks_is_refused() {
    let f = frame(500, 5);
    let mut inputs = fit_inputs(&f, FeatureSet::V1, &[0, 1, 2]);
    inputs[0].name = "shoe_size".into();
    let err = Encoded::new(&f, &inputs, &[0]).unwrap_err();
    assert!(matches!(err, TrainError::Input(ref m) if m.contains("shoe_size")), "{err}");
}
