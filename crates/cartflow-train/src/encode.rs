//! Fits the model's input encodings on the training window and turns rows
//! into the number matrix the booster reads. Encoding itself is
//! [`cartflow_model::Encoding::encode`], the function the server calls.

use std::collections::BTreeMap;

use cartflow_features::FeatureSet;
use cartflow_model::{Encoding, InputFeature};

use crate::TrainError;
use crate::frame::{Column, Frame};

/// A category with `n` carts, `k` bought, encodes as `(k + M·prior) / (n + M)`:
/// rare categories stay near the overall rate instead of memorising a few carts.
pub const SMOOTHING_CARTS: f64 = 20.0;

/// The inputs of `set`, categories encoded by their purchase rate in
/// `train` only (the validation window stays unseen).
pub fn fit_inputs(frame: &Frame, set: FeatureSet, train: &[usize]) -> Vec<InputFeature> {
    let prior = frame.positives(train) as f64 / train.len().max(1) as f64;
    frame
        .features
        .iter()
        .zip(&frame.columns)
        .filter(|(def, _)| def.set <= set)
        .map(|(def, column)| {
            let encoding = match column {
                Column::Str { codes, dict } => {
                    let mut counts = vec![(0u32, 0u32); dict.len()];
                    for &r in train {
                        if let Some(code) = codes[r] {
                            let c = &mut counts[code as usize];
                            c.0 += 1;
                            c.1 += frame.label[r] as u32;
                        }
                    }
                    let rates: BTreeMap<String, f64> = dict
                        .iter()
                        .zip(counts)
                        .filter(|(_, (n, _))| *n > 0)
                        .map(|(value, (n, k))| {
                            (value.clone(), (k as f64 + SMOOTHING_CARTS * prior) / (n as f64 + SMOOTHING_CARTS))
                        })
                        .collect();
                    Encoding::PurchaseRate { prior, rates }
                }
                Column::Int(_) | Column::Float(_) => Encoding::Number,
            };
            InputFeature { name: def.name.to_owned(), encoding }
        })
        .collect()
}

/// `rows` of `frame` encoded: inputs column after column (the booster's
/// layout), and the labels as 0/1.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub rows: usize,
    pub cols: usize,
    pub column_major: Vec<f64>,
    pub labels: Vec<f64>,
}

impl Encoded {
    pub fn new(frame: &Frame, inputs: &[InputFeature], rows: &[usize]) -> Result<Self, TrainError> {
        let mut column_major = Vec::with_capacity(rows.len() * inputs.len());
        for input in inputs {
            let column = frame.column(&input.name)?;
            column_major.extend(rows.iter().map(|&r| input.encoding.encode(column.value(r))));
        }
        let labels = rows.iter().map(|&r| f64::from(u8::from(frame.label[r]))).collect();
        Ok(Self { rows: rows.len(), cols: inputs.len(), column_major, labels })
    }

    pub fn column(&self, col: usize) -> &[f64] {
        &self.column_major[col * self.rows..(col + 1) * self.rows]
    }

    /// The same values row after row, as the model's batch inference reads them.
    pub fn row_major(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.column_major.len());
        for r in 0..self.rows {
            out.extend((0..self.cols).map(|c| self.column_major[c * self.rows + r]));
        }
        out
    }

    pub fn base_rate(&self) -> f64 {
        self.labels.iter().sum::<f64>() / self.rows.max(1) as f64
    }
}
