//! Labelled predictions, summed so that a window is a merge of buckets: the
//! scores' distribution per label in fixed bins (for the ranking metrics
//! and the calibration table), and exact sums for the rest. The training's
//! metrics (cartflow-train) sort every score; a live stream cannot keep
//! them, so ROC AUC and PR AUC here count scores within one bin as ties,
//! which moves them by less than 0.001 at [`BINS`] bins (tested against the
//! exact ones).

use serde::{Deserialize, Serialize};

/// Score bins of width 1/BINS.
pub const BINS: usize = 1000;
/// The calibration table's rows: predicted probability in tenths.
pub const CALIBRATION_ROWS: usize = 10;
/// Probabilities are clamped this far from 0 and 1 in the log loss, as in training.
const EPS: f64 = 1e-15;

/// One labelled prediction: what the model said, and what the shopper did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub probability: f64,
    pub will_purchase: bool,
    pub bought: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// Per score bin: labelled positive, labelled negative. Kept sparse.
    bins: std::collections::BTreeMap<u16, [u64; 2]>,
    log_loss_sum: f64,
    brier_sum: f64,
    probability_sum: f64,
    /// Decisions: [bought and predicted, bought and not, not bought and predicted, neither].
    decisions: [u64; 4],
}

impl Default for Scorecard {
    fn default() -> Self {
        Scorecard {
            bins: Default::default(),
            log_loss_sum: 0.0,
            brier_sum: 0.0,
            probability_sum: 0.0,
            decisions: [0; 4],
        }
    }
}

/// What a [`Scorecard`] says: the figures the monitor exports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub labelled: u64,
    pub positives: u64,
    pub base_rate: f64,
    pub mean_probability: f64,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub log_loss: f64,
    pub brier: f64,
    pub precision: f64,
    pub recall: f64,
    /// Per tenth of predicted probability: (predictions, mean predicted, share bought).
    pub calibration: Vec<(u64, f64, f64)>,
}

fn bin(p: f64) -> u16 {
    ((p.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1) as u16
}

impl Scorecard {
    pub fn add(&mut self, o: Outcome) {
        let p = if o.probability.is_finite() { o.probability.clamp(0.0, 1.0) } else { 0.5 };
        let y = if o.bought { 1.0 } else { 0.0 };
        self.bins.entry(bin(p)).or_default()[usize::from(!o.bought)] += 1;
        let q = p.clamp(EPS, 1.0 - EPS);
        self.log_loss_sum -= y * q.ln() + (1.0 - y) * (1.0 - q).ln();
        self.brier_sum += (p - y).powi(2);
        self.probability_sum += p;
        self.decisions[usize::from(!o.bought) * 2 + usize::from(!o.will_purchase)] += 1;
    }

    pub fn merge(&mut self, other: &Scorecard) {
        for (b, [pos, neg]) in &other.bins {
            let mine = self.bins.entry(*b).or_default();
            mine[0] += pos;
            mine[1] += neg;
        }
        self.log_loss_sum += other.log_loss_sum;
        self.brier_sum += other.brier_sum;
        self.probability_sum += other.probability_sum;
        for (m, o) in self.decisions.iter_mut().zip(other.decisions) {
            *m += o;
        }
    }

    pub fn labelled(&self) -> u64 {
        self.decisions.iter().sum()
    }

    pub fn figures(&self) -> Figures {
        let [tp, fn_, fp, _tn] = self.decisions;
        let n = self.labelled();
        let positives = tp + fn_;
        let negatives = n - positives;
        let ratio = |a: u64, b: u64| if b > 0 { a as f64 / b as f64 } else { f64::NAN };
        // From the highest bin down, as the exact sweep goes from the highest score.
        let (mut roc, mut ap, mut above_pos, mut above_neg) = (0.0, 0.0, 0u64, 0u64);
        for [pos, neg] in self.bins.values().rev() {
            // A bin is one tie: half its pairs are ordered right (Mann–Whitney).
            roc += *neg as f64 * (above_pos as f64 + *pos as f64 / 2.0);
            above_pos += pos;
            above_neg += neg;
            if *pos > 0 {
                ap += *pos as f64 / positives as f64 * above_pos as f64 / (above_pos + above_neg) as f64;
            }
        }
        let mut calibration = vec![(0u64, 0.0, 0u64); CALIBRATION_ROWS];
        for (b, [pos, neg]) in &self.bins {
            let mid = (f64::from(*b) + 0.5) / BINS as f64;
            let row = &mut calibration[(usize::from(*b) * CALIBRATION_ROWS / BINS).min(CALIBRATION_ROWS - 1)];
            row.0 += pos + neg;
            row.1 += mid * (pos + neg) as f64;
            row.2 += pos;
        }
        Figures {
            labelled: n,
            positives,
            base_rate: ratio(positives, n),
            mean_probability: if n > 0 { self.probability_sum / n as f64 } else { f64::NAN },
            roc_auc: if positives > 0 && negatives > 0 { roc / (positives * negatives) as f64 } else { f64::NAN },
            pr_auc: if positives > 0 { ap } else { f64::NAN },
            log_loss: if n > 0 { self.log_loss_sum / n as f64 } else { f64::NAN },
            brier: if n > 0 { self.brier_sum / n as f64 } else { f64::NAN },
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, positives),
            calibration: calibration
                .into_iter()
                .map(|(count, mid_sum, pos)| {
                    (count, if count > 0 { mid_sum / count as f64 } else { f64::NAN }, ratio(pos, count))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cartflow_train::metrics;

    /// Scores that mean something (positives score higher on average), with a fixed seed.
    fn sample(n: usize) -> (Vec<f64>, Vec<f64>) {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut p, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let bought = next() < 0.3;
            let score = (next() * 0.7 + if bought { 0.25 } else { 0.0 }).min(1.0);
            p.push(score);
            y.push(if bought { 1.0 } else { 0.0 });
        }
        (p, y)
    }

    fn card(p: &[f64], y: &[f64]) -> Scorecard {
        let mut c = Scorecard::default();
        for (&p, &y) in p.iter().zip(y) {
            c.add(Outcome { probability: p, will_purchase: p >= 0.5, bought: y > 0.5 });
        }
        c
    }

    #[test]
    fn figures_match_the_trainings_exact_metrics() {
        let (p, y) = sample(20_000);
        let f = card(&p, &y).figures();
        let exact = metrics::at_threshold(&p, &y, 0.5);
        assert_eq!(f.labelled, 20_000);
        assert!((f.roc_auc - metrics::roc_auc(&p, &y)).abs() < 1e-3, "{} vs {}", f.roc_auc, metrics::roc_auc(&p, &y));
        assert!((f.pr_auc - metrics::average_precision(&p, &y)).abs() < 1e-3);
        assert!((f.log_loss - metrics::log_loss(&p, &y)).abs() < 1e-12);
        assert!((f.brier - metrics::brier(&p, &y)).abs() < 1e-12);
        assert!((f.precision - exact.precision).abs() < 1e-12);
        assert!((f.recall - exact.recall).abs() < 1e-12);
        assert!((f.base_rate - y.iter().sum::<f64>() / y.len() as f64).abs() < 1e-12);
        let rows: u64 = f.calibration.iter().map(|r| r.0).sum();
        assert_eq!(rows, 20_000);
    }

    #[test]
    fn a_merge_of_parts_is_the_whole() {
        let (p, y) = sample(5_000);
        let mut merged = card(&p[..2_000], &y[..2_000]);
        merged.merge(&card(&p[2_000..], &y[2_000..]));
        let whole = card(&p, &y);
        assert_eq!(merged.bins, whole.bins);
        assert_eq!(merged.decisions, whole.decisions);
        assert!((merged.figures().log_loss - whole.figures().log_loss).abs() < 1e-12);
    }

    #[test]
    fn one_label_only_has_no_ranking_figures() {
        let f = card(&[0.2, 0.9], &[0.0, 0.0]).figures();
        assert!(f.roc_auc.is_nan() && f.pr_auc.is_nan() && f.recall.is_nan());
        assert_eq!(f.base_rate, 0.0);
        assert!(Scorecard::default().figures().log_loss.is_nan());
    }
}
