//! The online feature store: the entity state ([`cartflow_features::Entities`])
//! kept current by `cartflow features stream` and read by the feature and
//! prediction APIs. Two backends behind [`OnlineStore`]:
//!
//! - [`MemoryStore`]: in process, snapshotted to a file with the input
//!   offsets it reflects, so a restart resumes from snapshot + log offset;
//! - [`RedisStore`]: on one server or a Redis Cluster, state per input
//!   partition so any number of streamers share it, each entity marked with
//!   the offset that wrote it, the offsets advanced by compare-and-set,
//!   EXPIRE for a session's time to live; stateless API replicas read it.
//!
//! Both apply events through the shared state machine and answer through the
//! shared `compute`, so they give the same features as the training set.

mod backend;
mod codec;
mod memory;
mod redis_store;
mod snapshot;

use cartflow_core::CommittedOffset;
use cartflow_core::Event;
use cartflow_core::time::Micros;
use cartflow_features::{CartFeatures, CartQuery, Entities, EntityView};
use futures::future::BoxFuture;

pub use backend::OnlineBackend;
pub use memory::MemoryStore;
pub use redis_store::{CLUSTER_SCHEMES, RedisStore};

#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    #[error("redis: {}", cartflow_core::redact::text(&.0.to_string()))]
    Redis(#[from] redis::RedisError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{what}: {message}")]
    Corrupt { what: String, message: String },
    #[error("{0}")]
    Config(String),
    /// The stored position of an input moved under this writer: another
    /// streamer holds the partition now.
    #[error("the online store's position for {input} was moved by another streamer, which holds it now")]
    Taken { input: String },
}

impl OnlineError {
    /// Whether Redis did not answer (down, restarting, failing over) or the
    /// disk is full, rather than refusing the request: worth trying again.
    pub fn is_transient(&self) -> bool {
        match self {
            OnlineError::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.is_cluster_error()
                    || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
            }
            OnlineError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}

pub type Result<T, E = OnlineError> = std::result::Result<T, E>;

/// One event for the state: counted, or (a CDC delete) taken back; with
/// its place in the input (stores shared by several writers keep state per
/// input partition, marked with offsets).
#[derive(Debug, Clone)]
pub struct Change {
    pub event: Event,
    pub delete: bool,
    pub partition: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub counted: u64,
    pub duplicates: u64,
    /// Deletes of events the state never held.
    pub unknown_deletes: u64,
}

impl ApplyStats {
    pub fn add(&mut self, applied: cartflow_features::Applied) {
        use cartflow_features::Applied;
        match applied {
            Applied::Counted => self.counted += 1,
            Applied::Duplicate => self.duplicates += 1,
            Applied::Unknown => self.unknown_deletes += 1,
        }
    }
}

/// A cart's features and what the store knew when it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub features: CartFeatures,
    /// The newest event time of each entity found (`None`: not in the store).
    pub session_time: Option<Micros>,
    pub user_found: bool,
    pub product_time: Option<Micros>,
}

impl Answer {
    pub fn of(q: &CartQuery<'_>, view: EntityView<'_>, session_ttl: Micros) -> Self {
        Answer {
            features: cartflow_features::compute(q, view, session_ttl),
            session_time: view.session.and_then(|s| s.last_time()),
            user_found: view.user.is_some(),
            product_time: view.product.and_then(|p| p.attrs.as_ref().map(|a| a.time)),
        }
    }
}

/// How many entities the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EntityCounts {
    pub sessions: u64,
    pub users: u64,
    pub products: u64,
}

/// What the servers may do with a store: read features, never change them.
pub trait OnlineReader: Send + Sync {
    fn counts(&self) -> Result<EntityCounts>;
    /// The newest event time applied: the stream's "now", the default time of a query.
    fn watermark(&self) -> BoxFuture<'_, Result<Option<Micros>>>;
    /// A cart's features from the stored state.
    fn features<'a>(&'a self, q: &'a CartQuery<'a>) -> BoxFuture<'a, Result<Answer>>;
    /// For messages: `memory (snapshot …)` or `redis://…`.
    fn describe(&self) -> String;
}

/// The whole store, as its one writer (the feature streamer, or
/// `features materialize`) holds it: reads, and the changes with the input
/// position they reflect.
pub trait OnlineStore: OnlineReader {
    /// Applies a batch and records `offsets` (the input position after it)
    /// atomically with the state it produced.
    fn apply(&self, changes: &[Change], offsets: &[CommittedOffset]) -> Result<ApplyStats>;
    /// The input position the stored state reflects.
    fn offsets(&self) -> Result<Vec<CommittedOffset>>;
    /// Whether several writers may share the store, each writing the input
    /// partitions it holds (Redis); an embedded store has one writer.
    fn shared(&self) -> bool {
        false
    }
    /// Drops what this writer keeps of `partitions` (they moved to or from
    /// another writer): read again from the store when next written.
    fn forget(&self, _partitions: &[u32]) {}
    /// Drops sessions whose visit ended; returns how many.
    fn expire(&self) -> Result<usize>;
    /// Makes what was applied durable (a snapshot; Redis is written through).
    fn checkpoint(&self) -> Result<()>;
    /// As [`OnlineStore::checkpoint`], writing to disk on another thread, so
    /// the writer goes on applying: durable later, or never if the process
    /// dies first (the older snapshot, with its older offsets, then stands).
    /// Fails with the previous background write's error, if it failed.
    fn checkpoint_in_background(&self) -> Result<()> {
        self.checkpoint()
    }
    /// Removes everything the store holds, its layout mark too (benchmarks
    /// clean up with it).
    fn delete(&self) -> Result<()>;
    /// Replaces the whole state and its input position (`features
    /// materialize`): `partitions[i]` is the state of input partition `i`'s events.
    fn replace(&self, partitions: Vec<Entities>, offsets: &[CommittedOffset]) -> Result<EntityCounts>;
}
