//! The embedded online store: the state in memory, and a snapshot file that
//! holds it together with the input offsets it reflects. A restart loads the
//! snapshot and the streamer resumes at its offsets, so nothing applied after
//! the snapshot is counted twice: it was never in the snapshot. Snapshots are
//! taken from a copy of the state on a thread of their own ([`crate::snapshot`]).

use std::path::PathBuf;
use std::sync::RwLock;

use cartflow_core::CommittedOffset;
use cartflow_core::time::Micros;
use cartflow_features::{CartQuery, Entities};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::snapshot::{Op, Snapshots, unseal};
use crate::{Answer, ApplyStats, Change, EntityCounts, OnlineError, OnlineReader, OnlineStore, Result};

#[derive(Serialize, Deserialize)]
pub(crate) struct Inner {
    pub entities: Entities,
    pub offsets: Vec<CommittedOffset>,
}

impl Inner {
    fn new(session_ttl: Micros) -> Inner {
        Inner { entities: Entities::new(session_ttl), offsets: Vec::new() }
    }
}

pub struct MemoryStore {
    inner: RwLock<Inner>,
    /// Where snapshots go, and what takes them; `None` keeps nothing on disk (tests, benchmarks).
    snapshots: Option<(PathBuf, Snapshots)>,
}

impl MemoryStore {
    /// A store without snapshots.
    pub fn new(session_ttl: Micros) -> Self {
        MemoryStore { inner: RwLock::new(Inner::new(session_ttl)), snapshots: None }
    }

    /// Opens the store snapshotted at `path`, loading the snapshot when there is one.
    pub fn open(path: PathBuf, session_ttl: Micros) -> Result<Self> {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(OnlineError::Io { path: path.display().to_string(), source }),
        };
        // The store and the snapshots' copy, each decoded from the one read.
        let what = path.display().to_string();
        let load = |bytes: Option<&[u8]>| -> Result<Inner> {
            let mut inner = match bytes {
                Some(bytes) => unseal(bytes, &what)?,
                None => Inner::new(session_ttl),
            };
            // The TTL is configuration, not state: the current one applies.
            inner.entities.session_ttl = session_ttl;
            Ok(inner)
        };
        let (inner, copy) = match load(bytes.as_deref()) {
            Ok(inner) => (inner, load(bytes.as_deref())?),
            Err(e @ OnlineError::Corrupt { .. }) => {
                // The state is a fold of the validated topic: started empty, the
                // streamer finds no offsets and reads the topic again from its start.
                let aside = path.with_extension("damaged");
                std::fs::rename(&path, &aside).map_err(|source| OnlineError::Io { path: what.clone(), source })?;
                tracing::warn!(
                    "{e}; moved it to {} and starting empty: the feature streamer rebuilds the state from the log",
                    aside.display()
                );
                (load(None)?, load(None)?)
            }
            Err(e) => return Err(e),
        };
        let snapshots = Snapshots::start(path.clone(), copy)?;
        Ok(MemoryStore { inner: RwLock::new(inner), snapshots: Some((path, snapshots)) })
    }

    /// Hands `op` to the snapshots' copy; called holding the write lock, so
    /// the copy sees the store's changes in the store's order.
    fn copy(&self, op: impl FnOnce() -> Op) {
        if let Some((_, snapshots)) = &self.snapshots {
            snapshots.send(op());
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock leaves state mid-batch; the snapshot
        // on disk is still whole, so refusing to go on is the safe answer.
        self.inner.read().expect("online state lock poisoned")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().expect("online state lock poisoned")
    }

    /// Runs `f` over the state (the streamer's benchmarks and tests look inside).
    pub fn with_entities<R>(&self, f: impl FnOnce(&Entities) -> R) -> R {
        f(&self.read().entities)
    }
}

fn counts(e: &Entities) -> EntityCounts {
    EntityCounts { sessions: e.sessions.len() as u64, users: e.users.len() as u64, products: e.products.len() as u64 }
}

impl OnlineStore for MemoryStore {
    fn apply(&self, changes: &[Change], offsets: &[CommittedOffset]) -> Result<ApplyStats> {
        let mut inner = self.write();
        let mut stats = ApplyStats::default();
        for c in changes {
            stats.add(inner.entities.apply(&c.event, c.delete));
        }
        merge_offsets(&mut inner.offsets, offsets);
        self.copy(|| Op::Apply(changes.to_vec(), offsets.to_vec()));
        Ok(stats)
    }

    fn offsets(&self) -> Result<Vec<CommittedOffset>> {
        Ok(self.read().offsets.clone())
    }

    fn expire(&self) -> Result<usize> {
        let mut inner = self.write();
        let expired = inner.entities.expire_sessions().len();
        self.copy(|| Op::Expire);
        Ok(expired)
    }

    fn checkpoint(&self) -> Result<()> {
        self.snapshots.as_ref().map_or(Ok(()), |(_, s)| s.now())
    }

    fn checkpoint_in_background(&self) -> Result<()> {
        self.snapshots.as_ref().map_or(Ok(()), |(_, s)| s.soon())
    }

    fn delete(&self) -> Result<()> {
        self.replace(Vec::new(), &[])?;
        Ok(())
    }

    fn replace(&self, partitions: Vec<Entities>, offsets: &[CommittedOffset]) -> Result<EntityCounts> {
        let mut inner = self.write();
        let ttl = inner.entities.session_ttl;
        inner.entities = Entities::new(ttl);
        for p in partitions {
            inner.entities.merge(p);
        }
        inner.offsets = offsets.to_vec();
        self.copy(|| Op::Replace(Inner { entities: inner.entities.clone(), offsets: inner.offsets.clone() }));
        Ok(counts(&inner.entities))
    }
}

impl OnlineReader for MemoryStore {
    fn counts(&self) -> Result<EntityCounts> {
        Ok(counts(&self.read().entities))
    }

    fn watermark(&self) -> BoxFuture<'_, Result<Option<Micros>>> {
        let w = self.read().entities.watermark;
        Box::pin(std::future::ready(Ok((w != Micros::MIN).then_some(w))))
    }

    fn features<'a>(&'a self, q: &'a CartQuery<'a>) -> BoxFuture<'a, Result<Answer>> {
        let inner = self.read();
        let e = &inner.entities;
        let answer = Answer::of(q, e.view(q.user_id, q.product_id, q.user_session), e.session_ttl);
        drop(inner);
        Box::pin(std::future::ready(Ok(answer)))
    }

    fn describe(&self) -> String {
        match &self.snapshots {
            Some((p, _)) => format!("memory (snapshots at {})", p.display()),
            None => "memory".into(),
        }
    }
}

/// Sets each partition's offset, keeping partitions the batch did not touch.
pub(crate) fn merge_offsets(into: &mut Vec<CommittedOffset>, new: &[CommittedOffset]) {
    for o in new {
        match into.iter_mut().find(|c| c.topic == o.topic && c.partition == o.partition) {
            Some(c) => c.offset = o.offset,
            None => into.push(o.clone()),
        }
    }
}
