//! Change data capture from PostgreSQL in Debezium's format: the reference
//! design's Debezium connector, as one cartflow stage.
//!
//! - [`pgoutput`]: the logical replication messages, decoded (no I/O);
//! - [`debezium`]: row changes as Debezium's change events (no I/O);
//! - [`position`]: where each record came from, and where a restart resumes (no I/O);
//! - [`capture`]: the stage: snapshot, then the slot's changes, into the log;
//! - [`slot`]: the replication slot, and the stage's input (snapshot pages, then the slot);
//! - [`table`]: the PostgreSQL session and the captured table;
//! - [`seed`]: a table of generated events to capture, for demos and tests.

pub mod capture;
pub mod debezium;
pub mod pgoutput;
pub mod position;
pub mod seed;
pub mod slot;
pub mod table;

pub use capture::{CdcConfig, CdcStats, run_cdc};

#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    #[error("postgres: {0}")]
    Postgres(String),
    /// PostgreSQL did not answer, or ended the session (a restart, a
    /// shutdown): the capture starts again once it is back.
    #[error("postgres: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Table(String),
    #[error(transparent)]
    Decode(#[from] pgoutput::DecodeError),
    #[error(transparent)]
    Log(#[from] cartflow_log::LogError),
    #[error("stopped during the snapshot; the next start resumes it")]
    Stopped,
    #[error(transparent)]
    Stage(#[from] cartflow_stream::StageError),
}

/// A capture's errors pass through the stage driver as its input's own.
impl From<CdcError> for cartflow_stream::StageError {
    fn from(e: CdcError) -> Self {
        match e {
            CdcError::Stage(e) => e,
            CdcError::Log(e) => cartflow_stream::StageError::Log(e),
            CdcError::Unavailable(message) => cartflow_stream::StageError::Unavailable(format!("postgres: {message}")),
            e => cartflow_stream::StageError::Input(Box::new(e)),
        }
    }
}

pub type Result<T, E = CdcError> = std::result::Result<T, E>;
