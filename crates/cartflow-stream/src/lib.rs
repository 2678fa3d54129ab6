//! The streaming stages. Each reads and writes through the `EventLog` trait
//! only, so the same code runs on the embedded log and on Kafka:
//!
//! - [`produce`]: CSV files or the generator → `tracking.raw_user_behavior`;
//! - [`validator`]: raw and CDC topics → `validated` / `invalid`, exactly once;
//! - [`lake_sink`]: validated and invalid → Parquet in the lake, exactly once;
//! - [`feature_streamer`]: validated → the online feature store;
//! - [`alerts`]: the invalid rate over a window → log, metric, webhook.

pub mod alerts;
pub mod control;
mod exactly_once;
pub mod feature_streamer;
mod inject;
pub mod lake_sink;
pub mod metrics;
pub mod produce;
pub mod topics;
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
}

pub type Result<T, E = StageError> = std::result::Result<T, E>;
