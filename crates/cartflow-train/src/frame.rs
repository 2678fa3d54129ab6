//! The training set in memory, column by column, and the time split.
//!
//! Values keep the catalogue's types ([`Value`]) until they are encoded, so
//! the encodings see what the server will see.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use cartflow_features::{FeatureDef, FeatureSet, FeatureType, Value};

use crate::TrainError;

/// One feature's values; strings by dictionary code.
#[derive(Debug, Clone)]
pub enum Column {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Str { codes: Vec<Option<u32>>, dict: Vec<String> },
}

impl Column {
    pub fn value(&self, row: usize) -> Value<'_> {
        match self {
            Self::Int(v) => v[row].map_or(Value::Null, Value::Int),
            Self::Float(v) => v[row].map_or(Value::Null, Value::Float),
            Self::Str { codes, dict } => codes[row].map_or(Value::Null, |c| Value::Str(&dict[c as usize])),
        }
    }
}

/// The rows of a training set: cart time, every feature of the catalogue
/// (so a model of either set can be scored on it), the label.
#[derive(Debug, Clone)]
pub struct Frame {
    pub features: Vec<&'static FeatureDef>,
    pub columns: Vec<Column>,
    pub event_time: Vec<i64>,
    pub label: Vec<bool>,
}

fn column_of<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, TrainError> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| TrainError::Input(format!("the training set has no column {name:?}")))
}

fn wrong_type(name: &str, found: &DataType) -> TrainError {
    TrainError::Input(format!("training set column {name:?} is {found}, not the catalogue's type"))
}

impl Frame {
    /// Reads `batches` (the `features.cart_features` table).
    pub fn from_batches(batches: &[RecordBatch]) -> Result<Self, TrainError> {
        let features: Vec<&'static FeatureDef> = FeatureSet::V2.features().collect();
        let mut frame = Frame {
            columns: features
                .iter()
                .map(|f| match f.dtype {
                    FeatureType::Int64 => Column::Int(Vec::new()),
                    FeatureType::Float64 => Column::Float(Vec::new()),
                    FeatureType::String => Column::Str { codes: Vec::new(), dict: Vec::new() },
                })
                .collect(),
            features,
            event_time: Vec::new(),
            label: Vec::new(),
        };
        let mut dicts: Vec<std::collections::HashMap<String, u32>> = vec![Default::default(); frame.features.len()];
        for batch in batches {
            let time = column_of(batch, "event_time")?;
            let time = time
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| wrong_type("event_time", time.data_type()))?;
            frame.event_time.extend(time.iter().map(|t| t.unwrap_or_default()));
            let label = column_of(batch, "is_purchased")?;
            let label = label.as_boolean_opt().ok_or_else(|| wrong_type("is_purchased", label.data_type()))?;
            frame.label.extend(label.iter().map(|l| l.unwrap_or(false)));
            for ((def, column), dict) in frame.features.iter().zip(&mut frame.columns).zip(&mut dicts) {
                let array = column_of(batch, def.name)?;
                append(column, dict, def.name, array)?;
            }
        }
        frame.sort_by_time();
        Ok(frame)
    }

    pub fn column(&self, name: &str) -> Result<&Column, TrainError> {
        self.features
            .iter()
            .position(|f| f.name == name)
            .map(|i| &self.columns[i])
            .ok_or_else(|| TrainError::Input(format!("the model reads {name:?}, which is not a feature of this build")))
    }

    pub fn rows(&self) -> usize {
        self.label.len()
    }

    pub fn positives(&self, rows: &[usize]) -> usize {
        rows.iter().filter(|&&r| self.label[r]).count()
    }

    /// Rows in cart order, so "the earliest 80%" is a prefix.
    fn sort_by_time(&mut self) {
        let mut order: Vec<usize> = (0..self.rows()).collect();
        order.sort_by_key(|&r| self.event_time[r]);
        if order.iter().enumerate().all(|(i, &r)| i == r) {
            return;
        }
        fn permute<T: Copy>(v: &mut Vec<T>, order: &[usize]) {
            *v = order.iter().map(|&r| v[r]).collect();
        }
        permute(&mut self.event_time, &order);
        permute(&mut self.label, &order);
        for column in &mut self.columns {
            match column {
                Column::Int(v) => permute(v, &order),
                Column::Float(v) => permute(v, &order),
                Column::Str { codes, .. } => permute(codes, &order),
            }
        }
    }

    /// Splits by time: carts before `min + share × span` train, the rest
    /// validate. Never at random: the model is judged on a future it never saw.
    pub fn time_split(&self, share: f64) -> Result<Split, TrainError> {
        let (Some(&first), Some(&last)) = (self.event_time.first(), self.event_time.last()) else {
            return Err(TrainError::Input("the training set is empty: build it with `cartflow features build`".into()));
        };
        let cut = first + ((last - first) as f64 * share) as i64;
        let at = self.event_time.partition_point(|&t| t < cut);
        let split = Split { cut_micros: cut, train: (0..at).collect(), valid: (at..self.rows()).collect() };
        for (name, rows) in [("training", &split.train), ("validation", &split.valid)] {
            let positives = self.positives(rows);
            if positives == 0 || positives == rows.len() {
                return Err(TrainError::Input(format!(
                    "the {name} window has {} carts, {positives} bought: both outcomes are needed; \
                     build the training set over a longer span",
                    rows.len()
                )));
            }
        }
        Ok(split)
    }
}

fn append(
    column: &mut Column,
    dict: &mut std::collections::HashMap<String, u32>,
    name: &str,
    array: &dyn Array,
) -> Result<(), TrainError> {
    let wrong = || wrong_type(name, array.data_type());
    match column {
        Column::Int(v) => v.extend(array.as_primitive_opt::<Int64Type>().ok_or_else(wrong)?.iter()),
        Column::Float(v) => v.extend(array.as_primitive_opt::<Float64Type>().ok_or_else(wrong)?.iter()),
        Column::Str { codes, dict: values } => {
            let mut code = |s: Option<&str>| {
                s.map(|s| {
                    *dict.entry(s.to_owned()).or_insert_with(|| {
                        values.push(s.to_owned());
                        values.len() as u32 - 1
                    })
                })
            };
            match array.data_type() {
                DataType::Utf8 => codes.extend(array.as_string::<i32>().iter().map(&mut code)),
                DataType::LargeUtf8 => codes.extend(array.as_string::<i64>().iter().map(&mut code)),
                DataType::Utf8View => codes.extend(array.as_string_view().iter().map(&mut code)),
                _ => return Err(wrong()),
            }
        }
    }
    Ok(())
}

/// Row numbers of the two windows, and where they meet.
#[derive(Debug, Clone)]
pub struct Split {
    pub cut_micros: i64,
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
}
