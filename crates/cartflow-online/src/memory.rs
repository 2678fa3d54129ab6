//! The embedded online store: the state in memory, and a snapshot file that
//! holds it together with the input offsets it reflects. A restart loads the
//! snapshot and the streamer resumes at its offsets, so nothing applied after
//! the snapshot is counted twice: it was never in the snapshot.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::thread::JoinHandle;

use cartflow_core::CommittedOffset;
use cartflow_core::time::Micros;
use cartflow_features::{CartQuery, Entities};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::{Answer, ApplyStats, Change, EntityCounts, OnlineError, OnlineReader, OnlineStore, Result, codec};

#[derive(Serialize, Deserialize)]
struct Inner {
    entities: Entities,
    offsets: Vec<CommittedOffset>,
}

pub struct MemoryStore {
    inner: RwLock<Inner>,
    /// Where snapshots go; `None` keeps nothing on disk (tests, benchmarks).
    snapshot: Option<PathBuf>,
    /// The snapshot being written in the background, if one is.
    writing: Mutex<Option<JoinHandle<Result<()>>>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OnlineError + '_ {
    move |source| OnlineError::Io { path: path.display().to_string(), source }
}

impl MemoryStore {
    /// A store without snapshots.
    pub fn new(session_ttl: Micros) -> Self {
        MemoryStore {
            inner: RwLock::new(Inner { entities: Entities::new(session_ttl), offsets: Vec::new() }),
            snapshot: None,
            writing: Mutex::new(None),
        }
    }

    /// Opens the store snapshotted at `path`, loading the snapshot when there is one.
    pub fn open(path: PathBuf, session_ttl: Micros) -> Result<Self> {
        let inner = match std::fs::read(&path) {
            Ok(bytes) => {
                let mut inner: Inner = codec::decode(&bytes, &path.display().to_string())?;
                // The TTL is configuration, not state: the current one applies.
                inner.entities.session_ttl = session_ttl;
                inner
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Inner { entities: Entities::new(session_ttl), offsets: Vec::new() }
            }
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(MemoryStore { inner: RwLock::new(inner), snapshot: Some(path), writing: Mutex::new(None) })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock leaves state mid-batch; the snapshot
        // on disk is still whole, so refusing to go on is the safe answer.
        self.inner.read().expect("online state lock poisoned")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().expect("online state lock poisoned")
    }

    /// Waits for the background snapshot, if one is being written, and
    /// returns its outcome: one snapshot at a time, each file whole.
    fn written(&self) -> Result<()> {
        let writing = self.writing.lock().expect("snapshot writer lock").take();
        writing.map_or(Ok(()), |w| w.join().expect("the snapshot writer panicked"))
    }

    /// Runs `f` over the state (the streamer's benchmarks and tests look inside).
    pub fn with_entities<R>(&self, f: impl FnOnce(&Entities) -> R) -> R {
        f(&self.read().entities)
    }
}

/// A store dropped in an orderly way leaves its last snapshot whole on disk.
impl Drop for MemoryStore {
    fn drop(&mut self) {
        if let Err(e) = self.written() {
            tracing::error!("writing the online store's snapshot: {e}");
        }
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
        Ok(stats)
    }

    fn offsets(&self) -> Result<Vec<CommittedOffset>> {
        Ok(self.read().offsets.clone())
    }

    fn expire(&self) -> Result<usize> {
        Ok(self.write().entities.expire_sessions().len())
    }

    fn checkpoint(&self) -> Result<()> {
        self.written()?;
        let Some(path) = &self.snapshot else { return Ok(()) };
        write_snapshot(path, &codec::encode(&*self.read()))
    }

    /// The state is encoded under the lock (the writer waits for that much),
    /// then written and synced off the writer's thread.
    fn checkpoint_in_background(&self) -> Result<()> {
        self.written()?;
        let Some(path) = &self.snapshot else { return Ok(()) };
        let bytes = codec::encode(&*self.read());
        let path = path.clone();
        let writer = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || write_snapshot(&path, &bytes))
            .map_err(io(Path::new("a snapshot writer thread")))?;
        *self.writing.lock().expect("snapshot writer lock") = Some(writer);
        Ok(())
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
        match &self.snapshot {
            Some(p) => format!("memory (snapshots at {})", p.display()),
            None => "memory".into(),
        }
    }
}

/// Whole or not at all: written aside, synced, then renamed over the old one.
fn write_snapshot(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
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
