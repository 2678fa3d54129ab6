//! The lake: events as Parquet on any object store (a local directory by
//! default, S3 or any S3-compatible server by URL), partitioned Hive-style by
//! EVENT hour, `events/year=YYYY/month=MM/day=DD/hour=HH/<topic>+<partition>+<offset>.parquet`,
//! with invalid records under `invalid/` by arrival hour.
//!
//! Files appear through a write-ahead manifest protocol (see [`lake`] and
//! docs/lake.md) that makes what a reader sees exactly once whatever moment a
//! writer dies.

pub mod lake;
pub mod layout;
pub mod location;
pub mod manifest;
pub mod runtime;
pub mod schema;
pub mod store;

pub use lake::{Lake, PendingFile, encode_parquet};
pub use location::LakeLocation;
pub use manifest::{FileEntry, Manifest};
pub use runtime::runtime;
pub use schema::{LakeEvent, LakeInvalid};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("object store {location}: {cause}")]
    Store { location: String, cause: object_store::Error },
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("lake location {0:?}: {1}")]
    Location(String, String),
    #[error("manifest {path}: {message}")]
    Manifest { path: String, message: String },
    /// Another writer committed this partition's range first: this one lost the partition.
    #[error("{manifest} was committed by another writer: this one no longer holds that partition")]
    Taken { manifest: String },
}

impl LakeError {
    /// Whether the store failed rather than the request: object_store has
    /// already retried with backoff (S3 away, a local disk full), so this is
    /// an outage worth waiting out. Not found, denied, invalid: not that.
    pub fn is_transient(&self) -> bool {
        matches!(self, LakeError::Store { cause: object_store::Error::Generic { .. }, .. })
    }
}

pub type Result<T, E = LakeError> = std::result::Result<T, E>;
