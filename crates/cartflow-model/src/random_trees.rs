//! Random ensembles for the scorer's tests and benchmark: full or ragged
//! trees, missing values sent left, right or down a branch of their own.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{Ensemble, Node};

/// `trees` trees of at most `depth` levels over `inputs` inputs.
pub fn ensemble(seed: u64, trees: usize, depth: u32, inputs: u32) -> Ensemble {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut ensemble = Ensemble { base_score: rng.random_range(-2.0..0.0), ..Ensemble::default() };
    for _ in 0..trees {
        let mut nodes = Vec::new();
        grow(&mut rng, &mut nodes, depth, inputs);
        ensemble.push_tree(&nodes);
    }
    ensemble
}

/// Appends a subtree in depth-first order (children after their parent)
/// and returns its root's index.
fn grow(rng: &mut Xoshiro256PlusPlus, nodes: &mut Vec<Node>, depth: u32, inputs: u32) -> u32 {
    let at = nodes.len() as u32;
    if depth == 0 || rng.random_bool(0.1) {
        nodes.push(Node::leaf(rng.random_range(-0.5..0.5)));
        return at;
    }
    nodes.push(Node::leaf(0.0));
    let left = grow(rng, nodes, depth - 1, inputs);
    let right = grow(rng, nodes, depth - 1, inputs);
    let missing = match rng.random_range(0..10) {
        0 => grow(rng, nodes, depth - 1, inputs),
        1..5 => right,
        _ => left,
    };
    nodes[at as usize] =
        Node { feature: rng.random_range(0..inputs), value: rng.random_range(0.0..1.0), left, right, missing };
    at
}

/// `count` rows of `inputs` values in [0, 1), one in twenty missing.
pub fn rows(seed: u64, count: usize, inputs: usize) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..count * inputs).map(|_| if rng.random_bool(0.05) { f64::NAN } else { rng.random_range(0.0..1.0) }).collect()
}
