//! A commit of the lake: the input range of one partition it covers and the
//! files that hold it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// One commit: the records `[start, end)` of one input partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub topic: String,
    pub partition: u32,
    pub start: u64,
    pub end: u64,
    pub created_ms: i64,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// `topic/partition`, the key of [`crate::Lake::committed_offsets`].
    pub fn input(&self) -> String {
        format!("{}/{}", self.topic, self.partition)
    }

    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// A manifest of the layout before per-partition commits (one writer, a
/// sequence number, every partition in one commit): read only so that a lake
/// it wrote carries on where it stopped.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SingleWriterManifest {
    /// `topic/partition` → [first offset, end offset).
    pub inputs: std::collections::BTreeMap<String, [u64; 2]>,
}
