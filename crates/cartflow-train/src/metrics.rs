//! Validation metrics of probabilities against 0/1 labels: ranking (ROC AUC,
//! PR AUC), probability quality (log loss, Brier, calibration) and the
//! decision at a threshold (accuracy, precision, recall, F1). Pure.

use serde::Serialize;

/// Probabilities are clamped this far from 0 and 1 in the log loss, as scikit-learn does.
const EPS: f64 = 1e-15;

pub fn log_loss(p: &[f64], y: &[f64]) -> f64 {
    let sum: f64 = p
        .iter()
        .zip(y)
        .map(|(&p, &y)| {
            let p = p.clamp(EPS, 1.0 - EPS);
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        })
        .sum();
    sum / p.len().max(1) as f64
}

pub fn brier(p: &[f64], y: &[f64]) -> f64 {
    p.iter().zip(y).map(|(p, y)| (p - y).powi(2)).sum::<f64>() / p.len().max(1) as f64
}

/// One point per distinct score, from the highest down: (scores ≥ it that
/// are positive, that are negative).
fn sweep(p: &[f64], y: &[f64]) -> Vec<(f64, f64, f64)> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let mut points = Vec::new();
    let (mut tp, mut fp) = (0.0, 0.0);
    for (i, &r) in order.iter().enumerate() {
        if y[r] > 0.5 {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if order.get(i + 1).is_none_or(|&next| p[next] != p[r]) {
            points.push((p[r], tp, fp));
        }
    }
    points
}

/// Area under the ROC curve; ties count half, as in the Mann–Whitney statistic.
pub fn roc_auc(p: &[f64], y: &[f64]) -> f64 {
    let points = sweep(p, y);
    let Some(&(_, pos, neg)) = points.last() else { return f64::NAN };
    let (mut area, mut last_tp, mut last_fp) = (0.0, 0.0, 0.0);
    for &(_, tp, fp) in &points {
        area += (fp - last_fp) * (tp + last_tp) / 2.0;
        (last_tp, last_fp) = (tp, fp);
    }
    area / (pos * neg)
}

/// Average precision: the precision at each positive, averaged (scikit-learn's PR AUC).
pub fn average_precision(p: &[f64], y: &[f64]) -> f64 {
    let points = sweep(p, y);
    let Some(&(_, pos, _)) = points.last() else { return f64::NAN };
    let (mut ap, mut last_tp) = (0.0, 0.0);
    for &(_, tp, fp) in &points {
        ap += (tp - last_tp) / pos * tp / (tp + fp);
        last_tp = tp;
    }
    ap
}

/// At most `max` points of a curve, always keeping the first and the last.
fn thin(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points;
    }
    let step = points.len() as f64 / (max - 1) as f64;
    let mut out: Vec<(f64, f64)> = (0..max - 1).map(|i| points[(i as f64 * step) as usize]).collect();
    out.push(*points.last().expect("non-empty"));
    out
}

/// (false positive rate, true positive rate), from (0, 0) to (1, 1).
pub fn roc_curve(p: &[f64], y: &[f64]) -> Vec<(f64, f64)> {
    let points = sweep(p, y);
    let Some(&(_, pos, neg)) = points.last() else { return Vec::new() };
    let curve = std::iter::once((0.0, 0.0)).chain(points.iter().map(|&(_, tp, fp)| (fp / neg, tp / pos))).collect();
    thin(curve, 400)
}

/// (recall, precision), from the highest score down.
pub fn pr_curve(p: &[f64], y: &[f64]) -> Vec<(f64, f64)> {
    let points = sweep(p, y);
    let Some(&(_, pos, _)) = points.last() else { return Vec::new() };
    thin(points.iter().map(|&(_, tp, fp)| (tp / pos, tp / (tp + fp))).collect(), 400)
}

/// The decision "bought" at a threshold, judged.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AtThreshold {
    pub threshold: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

pub fn at_threshold(p: &[f64], y: &[f64], threshold: f64) -> AtThreshold {
    let (mut tp, mut fp, mut tn, mut fn_) = (0.0, 0.0, 0.0, 0.0);
    for (&p, &y) in p.iter().zip(y) {
        match (p >= threshold, y > 0.5) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, false) => tn += 1.0,
            (false, true) => fn_ += 1.0,
        }
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    AtThreshold {
        threshold,
        accuracy: ratio(tp + tn, tp + fp + tn + fn_),
        precision,
        recall,
        f1: ratio(2.0 * precision * recall, precision + recall),
    }
}

/// The threshold with the best F1 on these predictions.
pub fn best_f1_threshold(p: &[f64], y: &[f64]) -> f64 {
    let points = sweep(p, y);
    let Some(&(_, pos, _)) = points.last() else { return 0.5 };
    points
        .iter()
        .map(|&(score, tp, fp)| (score, 2.0 * tp / (tp + fp + pos)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0.5, |(score, _)| score)
}

/// Carts whose predicted probability fell in `[lower, upper)`: how many,
/// what was predicted on average, what share was bought.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

pub fn calibration(p: &[f64], y: &[f64], bins: usize) -> Vec<CalibrationBin> {
    let mut sums = vec![(0usize, 0.0, 0.0); bins];
    for (&p, &y) in p.iter().zip(y) {
        let bin = ((p * bins as f64) as usize).min(bins - 1);
        let s = &mut sums[bin];
        s.0 += 1;
        s.1 += p;
        s.2 += y;
    }
    sums.into_iter()
        .enumerate()
        .map(|(i, (count, sum_p, sum_y))| CalibrationBin {
            lower: i as f64 / bins as f64,
            upper: (i + 1) as f64 / bins as f64,
            count,
            mean_predicted: if count > 0 { sum_p / count as f64 } else { f64::NAN },
            observed_rate: if count > 0 { sum_y / count as f64 } else { f64::NAN },
        })
        .collect()
}

/// Everything reported for one set of predictions on the validation window.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub rows: usize,
    pub base_rate: f64,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub log_loss: f64,
    pub brier: f64,
    #[serde(flatten)]
    pub decision: AtThreshold,
    pub calibration: Vec<CalibrationBin>,
}

pub fn evaluate(p: &[f64], y: &[f64], threshold: f64) -> Metrics {
    Metrics {
        rows: p.len(),
        base_rate: y.iter().sum::<f64>() / y.len().max(1) as f64,
        roc_auc: roc_auc(p, y),
        pr_auc: average_precision(p, y),
        log_loss: log_loss(p, y),
        brier: brier(p, y),
        decision: at_threshold(p, y, threshold),
        calibration: calibration(p, y, 10),
    }
}

impl Metrics {
    /// The scalar metrics by name, as they are logged to the registry.
    pub fn scalars(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("roc_auc", self.roc_auc),
            ("pr_auc", self.pr_auc),
            ("log_loss", self.log_loss),
            ("brier", self.brier),
            ("accuracy", self.decision.accuracy),
            ("precision", self.decision.precision),
            ("recall", self.decision.recall),
            ("f1", self.decision.f1),
            ("threshold", self.decision.threshold),
        ]
    }
}
