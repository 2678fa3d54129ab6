//! Usage: bench-lightgbm3 DIR ROUNDS — trains LightGBM (lightgbm3) and
//! cartflow's forust with the same fixed work on the same rows, both built
//! here in release, and prints time and validation AUC, then the model's
//! batch inference on one core.

use std::time::Instant;

use cartflow_train::Params;
use cartflow_train::encode::Encoded;
use cartflow_train::metrics::{log_loss, roc_auc};
use lightgbm3::{Booster, Dataset};

/// Row-major inputs (empty cells are NaN) and labels of a CSV with a header, label last.
fn read(path: &str) -> (Vec<f64>, Vec<f32>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let cols = lines.next().expect("a header").split(',').count() - 1;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for line in lines {
        let mut cells = line.split(',');
        x.extend(cells.by_ref().take(cols).map(|c| if c.is_empty() { f64::NAN } else { c.parse().expect("a number") }));
        y.push(cells.next().expect("a label").parse().expect("a 0/1 label"));
    }
    (x, y, cols)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, rounds) = (&args[1], &args[2]);
    let (train_x, train_y, cols) = read(&format!("{dir}/train.csv"));
    let (valid_x, valid_y, _) = read(&format!("{dir}/valid.csv"));
    let started = Instant::now();
    let train = Dataset::from_slice(&train_x, &train_y, cols as i32, true).expect("a dataset");
    let params = serde_json::json!({
        "objective": "binary", "learning_rate": 0.1, "max_depth": 6, "num_leaves": 63,
        "min_sum_hessian_in_leaf": 1.0, "lambda_l2": 1.0, "max_bin": 255, "num_iterations": rounds.parse::<i32>().unwrap(),
        "verbosity": -1,
    });
    let booster = Booster::train(train, &params).expect("training");
    let secs = started.elapsed().as_secs_f64();
    let p = booster.predict(&valid_x, cols as i32, true).expect("predictions");
    let y: Vec<f64> = valid_y.iter().map(|&v| v as f64).collect();
    println!(
        "{:<10} {secs:8.2} s  validation AUC {:.4}  log loss {:.4}",
        "lightgbm3",
        roc_auc(&p, &y),
        log_loss(&p, &y)
    );

    // forust through cartflow-train, the trainer `cartflow train` uses.
    let encoded = |x: &[f64], y: &[f32]| {
        let rows = y.len();
        let mut column_major = vec![0.0; x.len()];
        for r in 0..rows {
            for c in 0..cols {
                column_major[c * rows + r] = x[r * cols + c];
            }
        }
        Encoded { rows, cols, column_major, labels: y.iter().map(|&v| v as f64).collect() }
    };
    let (train, valid) = (encoded(&train_x, &train_y), encoded(&valid_x, &valid_y));
    let params = Params { rounds: rounds.parse().unwrap(), max_depth: 6, learning_rate: 0.1, ..Params::default() };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let fitted = cartflow_train::booster::fit_fixed(&params, &train, &valid, threads).expect("training");
    let secs = started.elapsed().as_secs_f64();
    let p = fitted.ensemble.predict_batch(&valid_x, cols);
    println!("{:<10} {secs:8.2} s  validation AUC {:.4}  log loss {:.4}", "forust", roc_auc(&p, &y), log_loss(&p, &y));

    let mut hundred = fitted.ensemble.clone();
    hundred.roots.truncate(100);
    let repeat = (2_000_000 / valid.rows.max(1)).max(1);
    let started = Instant::now();
    let scored: usize = (0..repeat).map(|_| std::hint::black_box(hundred.predict_batch(&valid_x, cols)).len()).sum();
    let per_sec = scored as f64 / started.elapsed().as_secs_f64();
    println!("inference  {} trees, batch, one core: {per_sec:.0} rows/s", hundred.roots.len());
}
