//! The ensemble recompiled for batch scoring, the way QuickScorer-era
//! engines lay trees out: every node 16 bytes, siblings side by side so the
//! next node is `first + offset` with no branch on the direction, leaves that
//! point at themselves so every walk of a tree takes the same number of steps,
//! and several rows walked in lock-step so their memory loads overlap.
//! Written by hand because no crate scores another booster's trees this way;
//! [`Ensemble::raw_row`] stays the reference it is tested against.

use crate::trees::{Ensemble, sigmoid};

/// Rows scored together: a block's inputs stay in cache while every tree
/// walks over them.
const BLOCK_ROWS: usize = 64;
/// Rows walked in lock-step inside a block: enough independent loads to
/// hide the latency of each, few enough to stay in registers.
const LANES: usize = 8;

/// Low bits of [`Step::feature_missing`]: the input a split reads; the top
/// two bits say where NaN goes, as an offset from `first` (0 left, 1 right,
/// 2 a missing branch of its own).
const FEATURE_MASK: u32 = (1 << 30) - 1;
const MISSING_SHIFT: u32 = 30;

#[derive(Debug, Clone, Copy)]
struct Step {
    /// Go to `first + 1` when the value is at least this; NaN for a leaf, so
    /// a leaf always goes to `first`, which is itself.
    threshold: f64,
    feature_missing: u32,
    first: u32,
}

/// An [`Ensemble`] ready for fast batch scoring; build it once per model.
#[derive(Debug, Clone)]
pub struct Scorer {
    base_score: f64,
    steps: Vec<Step>,
    /// Leaf values by step index (0 for splits).
    values: Vec<f64>,
    /// Each tree's root and the length of its longest walk.
    trees: Vec<(u32, u32)>,
    /// One more than the highest input a split reads.
    inputs: usize,
}

impl Scorer {
    /// Lays out `ensemble` breadth first, tree by tree. The ensemble must be
    /// well formed (as [`Ensemble::check`] ensures for a loaded file); a
    /// malformed one panics here rather than scoring out of bounds.
    pub fn new(ensemble: &Ensemble) -> Self {
        let mut scorer = Scorer {
            base_score: ensemble.base_score,
            steps: Vec::with_capacity(ensemble.nodes.len()),
            values: Vec::with_capacity(ensemble.nodes.len()),
            trees: Vec::with_capacity(ensemble.roots.len()),
            inputs: 1,
        };
        for &root in &ensemble.roots {
            let start = scorer.steps.len() as u32;
            let depth = scorer.push_tree(ensemble, root);
            scorer.trees.push((start, depth));
        }
        scorer
    }

    /// Appends one tree breadth first and returns its depth.
    fn push_tree(&mut self, ensemble: &Ensemble, root: u32) -> u32 {
        // (original node, depth) in the order they are laid out.
        let mut order = vec![(root, 0u32)];
        let mut at = 0;
        let mut depth = 0;
        while at < order.len() {
            let (original, d) = order[at];
            let node = ensemble.nodes[original as usize];
            let index = self.steps.len() as u32;
            depth = depth.max(d);
            if node.is_leaf() {
                self.steps.push(Step { threshold: f64::NAN, feature_missing: 0, first: index });
                self.values.push(node.value);
            } else {
                let first = (self.steps.len() - at + order.len()) as u32;
                let missing = if node.missing == node.left {
                    0
                } else if node.missing == node.right {
                    1
                } else {
                    order.push((node.missing, d + 1));
                    2
                };
                // The missing branch, when it has its own, was pushed first:
                // put left and right before it.
                let tail = order.split_off(order.len() - (missing == 2) as usize);
                order.push((node.left, d + 1));
                order.push((node.right, d + 1));
                order.extend(tail);
                self.inputs = self.inputs.max(node.feature as usize + 1);
                assert!(node.feature <= FEATURE_MASK, "split on input {}", node.feature);
                self.steps.push(Step {
                    threshold: node.value,
                    feature_missing: node.feature | (missing << MISSING_SHIFT),
                    first,
                });
                self.values.push(0.0);
            }
            at += 1;
        }
        depth
    }

    pub fn trees(&self) -> usize {
        self.trees.len()
    }

    /// One step of a walk: the next node for `row` from node `at`.
    #[inline(always)]
    fn next(&self, at: u32, row: &[f64]) -> u32 {
        // SAFETY: `new` makes every `first` (plus at most the missing
        // offset of its own split) a step of the same tree, and every
        // feature below `self.inputs`, which `predict_batch` checks
        // against the row length.
        unsafe {
            let step = self.steps.get_unchecked(at as usize);
            let v = *row.get_unchecked((step.feature_missing & FEATURE_MASK) as usize);
            let offset = if v.is_nan() { step.feature_missing >> MISSING_SHIFT } else { (v >= step.threshold) as u32 };
            step.first + offset
        }
    }

    /// Probabilities of `rows` laid row after row, `inputs` values each.
    pub fn predict_batch(&self, rows: &[f64], inputs: usize) -> Vec<f64> {
        assert!(inputs >= self.inputs, "the model reads {} inputs, rows hold {inputs}", self.inputs);
        assert!(rows.len().is_multiple_of(inputs), "rows hold whole rows of {inputs} inputs");
        let mut out = vec![self.base_score; rows.len() / inputs];
        for (block, sums) in rows.chunks(BLOCK_ROWS * inputs).zip(out.chunks_mut(BLOCK_ROWS)) {
            let mut lanes = block.chunks_exact(LANES * inputs).zip(sums.chunks_exact_mut(LANES));
            for (lane_rows, lane_sums) in &mut lanes {
                let lane_rows: [&[f64]; LANES] = std::array::from_fn(|k| &lane_rows[k * inputs..(k + 1) * inputs]);
                for &(root, depth) in &self.trees {
                    let mut at = [root; LANES];
                    for _ in 0..depth {
                        for k in 0..LANES {
                            at[k] = self.next(at[k], lane_rows[k]);
                        }
                    }
                    for k in 0..LANES {
                        lane_sums[k] += self.values[at[k] as usize];
                    }
                }
            }
            let done = sums.len() / LANES * LANES;
            for (row, sum) in block[done * inputs..].chunks_exact(inputs).zip(&mut sums[done..]) {
                self.add_trees(row, sum);
            }
        }
        out.iter_mut().for_each(|p| *p = sigmoid(*p));
        out
    }

    /// Adds each tree's leaf for one row to `sum`, in the order (and so
    /// with the rounding) of the lanes and of [`Ensemble::raw_row`].
    fn add_trees(&self, row: &[f64], sum: &mut f64) {
        for &(root, depth) in &self.trees {
            let at = (0..depth).fold(root, |at, _| self.next(at, row));
            *sum += self.values[at as usize];
        }
    }
}
