//! A tree ensemble laid flat: every tree's nodes in one array, children by
//! index, so scoring is a tight loop over a few cache lines. Written here
//! rather than taken from the booster so the server scores without linking
//! the trainer, and so any booster's trees (forust today) load the same way.

use serde::{Deserialize, Serialize};

use crate::scorer::Scorer;

/// `feature` of a leaf.
pub const LEAF: u32 = u32::MAX;

/// A split (`feature`, go `left` when the value is below `value`, `missing`
/// when it is NaN) or a leaf (`feature == LEAF`, `value` is its log-odds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(rename = "f")]
    pub feature: u32,
    #[serde(rename = "v")]
    pub value: f64,
    #[serde(rename = "l")]
    pub left: u32,
    #[serde(rename = "r")]
    pub right: u32,
    #[serde(rename = "m")]
    pub missing: u32,
}

impl Node {
    pub fn leaf(value: f64) -> Self {
        Self { feature: LEAF, value, left: 0, right: 0, missing: 0 }
    }

    pub fn is_leaf(&self) -> bool {
        self.feature == LEAF
    }
}

/// Trees whose leaf values add up, with `base_score`, to the log-odds of a purchase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    pub base_score: f64,
    /// Each tree's root in `nodes`.
    pub roots: Vec<u32>,
    pub nodes: Vec<Node>,
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Ensemble {
    /// Appends a tree given as nodes whose children index into `tree`.
    pub fn push_tree(&mut self, tree: &[Node]) {
        let offset = self.nodes.len() as u32;
        self.roots.push(offset);
        self.nodes.extend(tree.iter().map(|n| {
            if n.is_leaf() {
                *n
            } else {
                Node { left: n.left + offset, right: n.right + offset, missing: n.missing + offset, ..*n }
            }
        }));
    }

    pub fn trees(&self) -> usize {
        self.roots.len()
    }

    /// Checks that scoring terminates and stays in bounds: children come
    /// after their parent, no node has two parents (each tree is a tree, so
    /// laying it out for the [`Scorer`] cannot blow up), splits name one of
    /// `inputs` features.
    pub fn check(&self, inputs: usize) -> Result<(), String> {
        let len = self.nodes.len();
        if let Some(root) = self.roots.iter().find(|&&r| r as usize >= len) {
            return Err(format!("tree root {root} is past the {len} nodes"));
        }
        let mut has_parent = vec![false; len];
        for &root in &self.roots {
            if std::mem::replace(&mut has_parent[root as usize], true) {
                return Err(format!("node {root} is the root of two trees"));
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.is_leaf() {
                continue;
            }
            if n.feature as usize >= inputs {
                return Err(format!("node {i} splits on input {} of {inputs}", n.feature));
            }
            for child in [n.left, n.right, n.missing] {
                if child as usize <= i || child as usize >= len {
                    return Err(format!("node {i} has child {child}: children follow their parent"));
                }
            }
            if n.left == n.right {
                return Err(format!("node {i} sends both sides to node {}", n.left));
            }
            let own_missing = n.missing != n.left && n.missing != n.right;
            for child in [n.left, n.right].into_iter().chain(own_missing.then_some(n.missing)) {
                if std::mem::replace(&mut has_parent[child as usize], true) {
                    return Err(format!("node {child} has two parents (node {i} is the second)"));
                }
            }
        }
        Ok(())
    }

    fn leaf_value(&self, root: u32, row: &[f64]) -> f64 {
        let mut node = &self.nodes[root as usize];
        while !node.is_leaf() {
            let v = row[node.feature as usize];
            let next = if v.is_nan() {
                node.missing
            } else if v < node.value {
                node.left
            } else {
                node.right
            };
            node = &self.nodes[next as usize];
        }
        node.value
    }

    /// The log-odds of one row of encoded inputs.
    pub fn raw_row(&self, row: &[f64]) -> f64 {
        self.roots.iter().fold(self.base_score, |sum, &root| sum + self.leaf_value(root, row))
    }

    /// The purchase probability of one row of encoded inputs.
    pub fn predict_row(&self, row: &[f64]) -> f64 {
        sigmoid(self.raw_row(row))
    }

    /// Probabilities of `rows` laid row after row, `inputs` values each.
    /// Compiles a [`Scorer`] first; keep one when scoring many batches.
    pub fn predict_batch(&self, rows: &[f64], inputs: usize) -> Vec<f64> {
        Scorer::new(self).predict_batch(rows, inputs).expect("rows of the ensemble's shape")
    }
}
