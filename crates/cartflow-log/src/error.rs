use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid topic name {0:?}: use letters, digits, '.', '_' and '-'")]
    TopicName(String),
    #[error("topic {topic} has no partition {partition}")]
    NoPartition { topic: String, partition: u32 },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("consumer group {0:?} already has an active member; the embedded log allows one per group")]
    GroupBusy(String),
    #[error("this consumer has no group: it cannot commit")]
    NoGroup,
    #[error("no topic {0}")]
    NoTopic(String),
    #[error("topic {topic} may be in use: consumer group {group:?} has a running member; stop it first")]
    TopicInUse { topic: String, group: String },
    #[error("{0}")]
    Backend(String),
    /// The broker did not answer (down, restarting, unreachable): worth
    /// trying again once it is back, unlike [`LogError::Backend`].
    #[error("{0}")]
    Unavailable(String),
}

impl LogError {
    /// Whether the log's backing service or disk failed, not the request:
    /// the same work can succeed once the broker is back or space is freed.
    pub fn is_transient(&self) -> bool {
        match self {
            LogError::Unavailable(_) => true,
            LogError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| LogError::Io { path: path.into(), source })
    }
}
