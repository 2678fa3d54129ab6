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
const _: () = assert!(BLOCK_ROWS.is_multiple_of(LANES));
/// Rows walked in lock-step inside a block: enough independent loads to
/// hide the latency of each, few enough to stay in registers.
const LANES: usize = 8;

/// Low bits of [`Step::feature_missing`]: the input a split reads (times
/// [`LANES`], its place in a transposed group of rows); the top
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

impl Step {
    /// Where a walk goes from this step when its input is `v`: NaN compares
    /// false, so `at_least` is 0 for it and the missing offset is added
    /// instead; no branch on the data. A leaf (NaN threshold, offset 0)
    /// stays where it is.
    #[inline(always)]
    fn then(&self, v: f64) -> u32 {
        let at_least = (v >= self.threshold) as u32;
        let offset = at_least | ((self.feature_missing >> MISSING_SHIFT) & (v.is_nan() as u32).wrapping_neg());
        self.first + offset
    }
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
                let scaled = node.feature as usize * LANES;
                assert!(scaled <= FEATURE_MASK as usize, "split on input {}", node.feature);
                self.steps.push(Step {
                    threshold: node.value,
                    feature_missing: scaled as u32 | (missing << MISSING_SHIFT),
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

    /// One step of lane `k`'s walk from node `at`; `lanes` holds a group's
    /// inputs feature by feature, `LANES` rows side by side.
    #[inline(always)]
    fn next(&self, at: u32, lanes: &[f64], k: usize) -> u32 {
        // SAFETY: `new` makes every `first` a step of the same tree, and
        // stores each split's input as `input * LANES` with
        // `input < self.inputs`; `predict_batch` checks
        // `self.inputs <= inputs` and hands over `inputs * LANES` values,
        // and `k < LANES`.
        unsafe {
            let step = self.steps.get_unchecked(at as usize);
            let v = *lanes.get_unchecked((step.feature_missing & FEATURE_MASK) as usize + k);
            step.then(v)
        }
    }

    /// One step of a lone row's walk from node `at`.
    #[inline(always)]
    fn next_alone(&self, at: u32, row: &[f64]) -> u32 {
        // SAFETY: as in `next`; `row` holds `inputs >= self.inputs` values.
        unsafe {
            let step = self.steps.get_unchecked(at as usize);
            let v = *row.get_unchecked((step.feature_missing & FEATURE_MASK) as usize / LANES);
            step.then(v)
        }
    }

    /// The raw score of one row walked alone: for the rows a batch leaves
    /// over after its full groups, which would otherwise take a whole
    /// group's work each (a request of one cart, eight times the walks).
    /// Here the lanes are trees: `LANES` trees walk the row in lock-step, so
    /// their loads overlap as a group's rows do; sums stay in tree order.
    fn raw_alone(&self, row: &[f64]) -> f64 {
        let mut sum = self.base_score;
        for trees in self.trees.chunks(LANES) {
            let mut at = [0u32; LANES];
            let mut depth = 0;
            for (at, &(root, d)) in at.iter_mut().zip(trees) {
                *at = root;
                depth = depth.max(d);
            }
            // Leaves point at themselves: a shallower tree just stays put.
            for _ in 0..depth {
                for at in &mut at[..trees.len()] {
                    *at = self.next_alone(*at, row);
                }
            }
            for &at in &at[..trees.len()] {
                sum += self.values[at as usize];
            }
        }
        sum
    }

    /// Probabilities of `rows` laid row after row, `inputs` values each.
    /// Rows of the wrong shape are an error, not a panic: this runs on
    /// requests.
    pub fn predict_batch(&self, rows: &[f64], inputs: usize) -> Result<Vec<f64>, String> {
        if inputs < self.inputs || !rows.len().is_multiple_of(inputs) {
            return Err(format!(
                "the model reads {} inputs a row; got {} values in rows of {inputs}",
                self.inputs,
                rows.len()
            ));
        }
        let n = rows.len() / inputs;
        let mut out = vec![self.base_score; n];
        // Whole groups walk in lock-step; the few rows after them alone.
        let grouped = n / LANES * LANES;
        if grouped > 0 {
            self.predict_groups(&rows[..grouped * inputs], inputs, &mut out[..grouped]);
        }
        for (sum, row) in out[grouped..].iter_mut().zip(rows[grouped * inputs..].chunks_exact(inputs)) {
            *sum = sigmoid(self.raw_alone(row));
        }
        Ok(out)
    }

    /// Scores whole groups of `LANES` rows into `out`.
    fn predict_groups(&self, rows: &[f64], inputs: usize, out: &mut [f64]) {
        // A block's rows, transposed group by group: [group][input][lane].
        let mut lanes = vec![0.0; BLOCK_ROWS * inputs];
        for (block, sums) in rows.chunks(BLOCK_ROWS * inputs).zip(out.chunks_mut(BLOCK_ROWS)) {
            let groups = sums.len() / LANES;
            for g in 0..groups {
                let group = &mut lanes[g * LANES * inputs..(g + 1) * LANES * inputs];
                for k in 0..LANES {
                    let r = g * LANES + k;
                    for (f, &v) in block[r * inputs..(r + 1) * inputs].iter().enumerate() {
                        group[f * LANES + k] = v;
                    }
                }
            }
            let mut acc = vec![[self.base_score; LANES]; groups];
            for &(root, depth) in &self.trees {
                for (group, acc) in lanes.chunks_exact(LANES * inputs).zip(acc.iter_mut()) {
                    let mut at = [root; LANES];
                    for _ in 0..depth {
                        for (k, at) in at.iter_mut().enumerate() {
                            *at = self.next(*at, group, k);
                        }
                    }
                    for k in 0..LANES {
                        acc[k] += self.values[at[k] as usize];
                    }
                }
            }
            for (sum, p) in sums.iter_mut().zip(acc.iter().flatten()) {
                *sum = sigmoid(*p);
            }
        }
    }
}
