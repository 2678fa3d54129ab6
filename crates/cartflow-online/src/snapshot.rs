//! The embedded store's snapshots, taken from a copy of its state that a
//! thread of its own keeps. Every batch the store applies (and every expiry,
//! every replacement) is handed to that thread and applied to the copy in the
//! same order, so the copy is the store as it was a moment ago, together with
//! the input offsets of that moment. A snapshot encodes and writes the copy
//! while the store goes on applying: the streamer never waits for one.
//!
//! Why: encoding the state of 2M events (45 MB) takes about 300 ms, and done
//! under the store's lock it held every record behind it for as long, which
//! set the freshness p99. The price is the state twice in memory and each
//! batch applied twice, the second time on another core.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use cartflow_core::CommittedOffset;

use crate::memory::{Inner, merge_offsets};
use crate::{Change, OnlineError, Result, codec};

/// What the keeper of the copy is asked to do, in the store's order.
pub(crate) enum Op {
    Apply(Vec<Change>, Vec<CommittedOffset>),
    Expire,
    Replace(Inner),
    /// Write a snapshot of the copy; answer when it is durable, or (`None`)
    /// keep a failure for the next call to say.
    Snapshot(Option<SyncSender<Result<()>>>),
}

pub(crate) struct Snapshots {
    ops: Option<Sender<Op>>,
    keeper: Option<JoinHandle<()>>,
    /// A background snapshot's failure, said by the next call.
    failed: Arc<Mutex<Option<OnlineError>>>,
}

fn gone() -> OnlineError {
    OnlineError::Corrupt { what: "the online store's snapshot thread".into(), message: "it stopped (a panic)".into() }
}

impl Snapshots {
    /// Keeps `copy` (the store's state as loaded) on a thread of its own,
    /// snapshotting it to `path` when asked.
    pub fn start(path: PathBuf, copy: Inner) -> Result<Snapshots> {
        let (ops, received) = std::sync::mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let keeper = {
            let failed = failed.clone();
            std::thread::Builder::new()
                .name("online-snapshot".into())
                .spawn(move || keep(copy, &path, received, &failed))
                .map_err(|source| OnlineError::Io { path: "a snapshot thread".into(), source })?
        };
        Ok(Snapshots { ops: Some(ops), keeper: Some(keeper), failed })
    }

    pub fn send(&self, op: Op) {
        // Only a panicked keeper drops its end; the next snapshot asked says so.
        let _ = self.ops.as_ref().expect("open until dropped").send(op);
    }

    /// A snapshot of everything sent before, durable when this returns.
    pub fn now(&self) -> Result<()> {
        self.said()?;
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.send(Op::Snapshot(Some(answer)));
        answered.recv().map_err(|_| gone())?
    }

    /// A snapshot of everything sent before, written while the store goes on.
    pub fn soon(&self) -> Result<()> {
        self.said()?;
        if self.keeper.as_ref().is_some_and(|k| k.is_finished()) {
            return Err(gone());
        }
        self.send(Op::Snapshot(None));
        Ok(())
    }

    /// The failure of the last background snapshot, if it failed.
    fn said(&self) -> Result<()> {
        match self.failed.lock().expect("snapshot failure lock").take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A store dropped in an orderly way leaves the snapshots asked of it written.
impl Drop for Snapshots {
    fn drop(&mut self) {
        drop(self.ops.take());
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
        if let Err(e) = self.said() {
            tracing::error!("writing the online store's snapshot: {e}");
        }
    }
}

fn keep(mut copy: Inner, path: &Path, ops: Receiver<Op>, failed: &Mutex<Option<OnlineError>>) {
    for op in ops {
        match op {
            Op::Apply(changes, offsets) => {
                for c in &changes {
                    copy.entities.apply(&c.event, c.delete);
                }
                merge_offsets(&mut copy.offsets, &offsets);
            }
            Op::Expire => {
                copy.entities.expire_sessions();
            }
            Op::Replace(state) => copy = state,
            Op::Snapshot(answer) => {
                let written = write(path, &seal(&copy));
                match answer {
                    Some(answer) => {
                        let _ = answer.send(written);
                    }
                    None => {
                        if let Err(e) = written {
                            *failed.lock().expect("snapshot failure lock") = Some(e);
                        }
                    }
                }
            }
        }
    }
}

/// First byte of a snapshot file that carries a checksum: then the CRC-32 of
/// the rest (little-endian), then the encoded state. Without one, a damaged
/// byte could decode into wrong counts that nothing would notice. Snapshots
/// of earlier builds start with the codec's format byte and are read as they are.
const CHECKSUMMED: u8 = 0xC5;

/// A snapshot file's bytes for `state`.
pub(crate) fn seal(state: &Inner) -> Vec<u8> {
    let mut out = codec::encode_after(state, vec![CHECKSUMMED, 0, 0, 0, 0]);
    let crc = crc32fast::hash(&out[5..]);
    out[1..5].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The state a snapshot file holds; `Corrupt` when it was damaged.
pub(crate) fn unseal(bytes: &[u8], what: &str) -> Result<Inner> {
    match bytes {
        [CHECKSUMMED, crc @ ..] if crc.len() >= 4 => {
            let (crc, body) = crc.split_at(4);
            if crc32fast::hash(body).to_le_bytes() != crc {
                let message = "checksum mismatch: the file was damaged after it was written".into();
                return Err(OnlineError::Corrupt { what: what.to_owned(), message });
            }
            codec::decode(body, what)
        }
        _ => codec::decode(bytes, what),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OnlineError + '_ {
    move |source| OnlineError::Io { path: path.display().to_string(), source }
}

/// Whole or not at all: written aside, synced, then renamed over the old one.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}
