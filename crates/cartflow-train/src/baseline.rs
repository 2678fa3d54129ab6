//! Baselines the model must beat, on the same encoded inputs: the base rate
//! (every cart gets the training window's purchase rate) and an L2
//! logistic regression. Fitted by Newton's method here: it is a yardstick
//! of 20 inputs, not worth a linear-algebra dependency.

use crate::encode::Encoded;

/// Ridge strength on standardized inputs.
const L2: f64 = 1e-3;
const NEWTON_STEPS: usize = 25;

/// A fitted logistic regression: standardization, then weights (bias first).
#[derive(Debug, Clone)]
pub struct Logistic {
    mean: Vec<f64>,
    scale: Vec<f64>,
    weights: Vec<f64>,
}

impl Logistic {
    /// Fits on `train`. Missing inputs take the column's mean.
    pub fn fit(train: &Encoded) -> Self {
        let d = train.cols;
        let mut mean = vec![0.0; d];
        let mut scale = vec![1.0; d];
        for c in 0..d {
            let present: Vec<f64> = train.column(c).iter().copied().filter(|v| !v.is_nan()).collect();
            if present.is_empty() {
                continue;
            }
            let m = present.iter().sum::<f64>() / present.len() as f64;
            let var = present.iter().map(|v| (v - m).powi(2)).sum::<f64>() / present.len() as f64;
            mean[c] = m;
            scale[c] = if var > 0.0 { var.sqrt() } else { 1.0 };
        }
        let mut model = Self { mean, scale, weights: vec![0.0; d + 1] };
        let rows: Vec<Vec<f64>> =
            (0..train.rows).map(|r| model.features(|c| train.column_major[c * train.rows + r], d)).collect();
        for _ in 0..NEWTON_STEPS {
            // Gradient and Hessian of the penalised log loss.
            let mut grad = vec![0.0; d + 1];
            let mut hess = vec![vec![0.0; d + 1]; d + 1];
            for (x, &y) in rows.iter().zip(&train.labels) {
                let p = model.probability(x);
                let w = p * (1.0 - p);
                for i in 0..=d {
                    grad[i] += (p - y) * x[i];
                    for j in 0..=i {
                        hess[i][j] += w * x[i] * x[j];
                    }
                }
            }
            for i in 0..=d {
                grad[i] += L2 * model.weights[i] * train.rows as f64;
                hess[i][i] += L2 * train.rows as f64;
                // Mirror the lower triangle the loop above filled.
                let (upper, lower) = hess.split_at_mut(i);
                for (j, row) in upper.iter_mut().enumerate() {
                    row[i] = lower[0][j];
                }
            }
            let Some(step) = solve(hess, grad) else { break };
            let mut moved = 0.0f64;
            for (w, s) in model.weights.iter_mut().zip(step) {
                *w -= s;
                moved = moved.max(s.abs());
            }
            if moved < 1e-8 {
                break;
            }
        }
        model
    }

    /// 1 (the bias), then each input standardized, missing as the mean (0).
    fn features(&self, value: impl Fn(usize) -> f64, d: usize) -> Vec<f64> {
        std::iter::once(1.0)
            .chain((0..d).map(|c| {
                let v = value(c);
                if v.is_nan() { 0.0 } else { (v - self.mean[c]) / self.scale[c] }
            }))
            .collect()
    }

    fn probability(&self, x: &[f64]) -> f64 {
        cartflow_model::trees::sigmoid(x.iter().zip(&self.weights).map(|(x, w)| x * w).sum())
    }

    pub fn predict(&self, data: &Encoded) -> Vec<f64> {
        (0..data.rows)
            .map(|r| self.probability(&self.features(|c| data.column_major[c * data.rows + r], data.cols)))
            .collect()
    }
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting; `None` when singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, below) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (offset, row) in below.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[col + 1 + offset] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}
