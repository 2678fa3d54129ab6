//! What the warehouse holds: `_warehouse/state.json`, the one file that names
//! every live silver and gold file.
//!
//! A build writes new files under new names, then replaces the state (an
//! atomic put on every object store), then deletes files that neither the new
//! nor the previous state names. Readers open the state once, so a query sees
//! one whole build, and one that started on the previous build can finish.
//! A build that dies before the put leaves only unnamed files, which the next
//! build deletes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hours::Hour;

pub const STATE_FILE: &str = "_warehouse/state.json";

/// Bumped whenever the SQL of silver or gold changes, so every table is rebuilt.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub format: u32,
    pub built_at: String,
    /// Per event hour: what it was built from and the files it became.
    pub hours: BTreeMap<Hour, HourState>,
    /// Whole gold tables (dimensions, cart outcomes), rebuilt from silver.
    pub tables: BTreeMap<String, TableFile>,
    /// The lake sink's input position (`topic/partition` → next offset) when
    /// silver took in all of bronze; empty when a build left hours out.
    /// `features materialize` starts the online store there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lake_offsets: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HourState {
    /// Fingerprint of the bronze files this hour's rows depend on (the hour,
    /// and every hour back to 00:00 of the day before, for session order).
    pub inputs: String,
    pub silver: TableFile,
    pub fact_events: TableFile,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableFile {
    pub path: String,
    pub rows: u64,
    /// What the file was built from; for whole tables, all hours' inputs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub inputs: String,
}

impl State {
    /// Every file this state names.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.hours
            .values()
            .flat_map(|h| [h.silver.path.as_str(), h.fact_events.path.as_str()])
            .chain(self.tables.values().map(|t| t.path.as_str()))
    }

    pub fn silver_files(&self) -> Vec<&str> {
        self.hours.values().map(|h| h.silver.path.as_str()).collect()
    }

    pub fn fact_event_files(&self) -> Vec<&str> {
        self.hours.values().map(|h| h.fact_events.path.as_str()).collect()
    }

    pub fn silver_rows(&self) -> u64 {
        self.hours.values().map(|h| h.silver.rows).sum()
    }
}
