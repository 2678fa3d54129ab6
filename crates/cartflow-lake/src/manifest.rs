//! A commit of the lake: which input ranges it covers and which files hold them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Commit number, from 1, one after another.
    pub seq: u64,
    pub created_ms: i64,
    /// `topic/partition` → [first offset, end offset) this commit holds.
    pub inputs: BTreeMap<String, [u64; 2]>,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Where the next commit starts reading each input.
    pub fn next_offsets(&self) -> BTreeMap<String, u64> {
        self.inputs.iter().map(|(tp, [_, end])| (tp.clone(), *end)).collect()
    }

    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}
