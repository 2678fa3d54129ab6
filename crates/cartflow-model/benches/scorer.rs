//! Batch inference on one core: `cargo bench -p cartflow-model`.
//! Random trees of the trainer's usual shape (depth 6) over 19 inputs, 100
//! and 500 trees; prints rows per second. `cartflow bench boosters` measures
//! the same on a trained model.

use std::time::Instant;

#[path = "../src/random_trees.rs"]
mod random_trees;

use cartflow_model::{Ensemble, Node, Scorer};

fn main() {
    const INPUTS: usize = 19;
    let rows = random_trees::rows(7, 100_000, INPUTS);
    for trees in [100, 500] {
        let ensemble = random_trees::ensemble(11, trees, 6, INPUTS as u32);
        let scorer = Scorer::new(&ensemble);
        let batch = rows_per_sec(|| scorer.predict_batch(&rows, INPUTS).expect("rows of 19 inputs").len());
        let walk = rows_per_sec(|| {
            let sum: f64 = rows.chunks_exact(INPUTS).map(|row| ensemble.predict_row(row)).sum();
            std::hint::black_box(sum);
            rows.len() / INPUTS
        });
        println!(
            "{trees} trees, depth 6, {INPUTS} inputs, one core: batch {batch:.0} rows/s, row by row {walk:.0} rows/s"
        );
    }
}

/// Runs `score` (which returns the rows it scored) for two seconds.
fn rows_per_sec(mut score: impl FnMut() -> usize) -> f64 {
    let started = Instant::now();
    let mut scored = 0;
    while started.elapsed().as_secs_f64() < 2.0 {
        scored += std::hint::black_box(score());
    }
    scored as f64 / started.elapsed().as_secs_f64()
}
