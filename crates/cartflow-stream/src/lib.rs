//! The streaming stages. Each reads and writes through the `EventLog` trait
//! only, so the same code runs on the embedded log and on Kafka, and each
//! consuming stage is a [`driver::Stage`] run by one loop, [`driver::drive`]:
//!
//! - [`produce`]: CSV files or the generator → `tracking.raw_user_behavior`;
//! - [`validator`]: raw and CDC topics → `validated` / `invalid`, exactly once;
//! - [`lake_sink`]: validated and invalid → Parquet in the lake, exactly once;
//! - [`feature_streamer`]: validated → the online feature store;
//! - [`monitor`]: predictions and validated → each model version's online metrics;
//! - [`alerts`]: the invalid rate over a window → log, metric, webhook;
//! - [`topology`]: produce → validate → lake, concurrently, draining in order.

pub mod alerts;
pub mod control;
pub mod driver;
mod exactly_once;
pub mod feature_streamer;
mod inject;
pub mod lake_sink;
pub mod metrics;
pub mod monitor;
pub mod produce;
pub mod supervise;
pub mod topics;
pub mod topology;
pub mod validator;

pub use control::StageControl;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Log(#[from] cartflow_log::LogError),
    #[error(transparent)]
    Csv(#[from] cartflow_sources::CsvError),
    #[error(transparent)]
    Lake(#[from] cartflow_lake::LakeError),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Group(String),
    /// An input's own error (PostgreSQL's, for the CDC capture).
    #[error(transparent)]
    Input(Box<dyn std::error::Error + Send + Sync>),
    /// A backing service did not answer (Redis, PostgreSQL) or the disk is
    /// full: the stage can start again once it is back.
    #[error("{0}")]
    Unavailable(String),
}

impl StageError {
    /// Whether a backing service or the disk failed, not the data or the
    /// configuration: [`supervise::supervise`] starts the stage again after a wait.
    pub fn is_transient(&self) -> bool {
        match self {
            StageError::Log(e) => e.is_transient(),
            StageError::Lake(e) => e.is_transient(),
            StageError::Unavailable(_) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = StageError> = std::result::Result<T, E>;

/// A feature streamer on an embedded online store keeps the state of all
/// its partitions in its own memory, so it runs as one process per group. A
/// rebalance that hands the same partitions back is fine; one that moves
/// them is not. (On Redis, streamers share the store and the work.)
pub(crate) fn one_member_only(stage: &str, group: &str, change: &cartflow_log::Rebalance) -> Result<()> {
    if change.gained.is_empty() && change.lost.is_empty() {
        return Ok(());
    }
    Err(StageError::Group(format!(
        "another {stage} process joined group {group:?} and partitions moved ({} gained, {} lost): \
         an embedded online store has one writer: give the streamers a Redis store (`--online redis://…`) \
         to share",
        change.gained.len(),
        change.lost.len()
    )))
}
