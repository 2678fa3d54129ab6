//! Appending to one partition. Any number of processes may append to the same
//! partition: each append takes the partition's `write.lock` (flock), catches
//! up with what others wrote, cuts a torn tail left by a crashed writer, writes
//! and fsyncs per policy. Readers never lock.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::EmbeddedOptions;
use super::frame;
use super::segment::{Cursor, Stop, damaged, list_segments, read_tail, scan_to_end, segment_path, whole_frame_within};
use crate::error::{IoContext, Result};

pub(crate) struct PartitionWriter {
    dir: PathBuf,
    lock: File,
    active: Option<(u64, File)>,
    /// End of the whole frames of the active segment, as last seen under the lock.
    cur: Cursor,
    pending: Vec<u8>,
    pending_count: u64,
    unsynced: bool,
    scan_buf: Vec<u8>,
}

impl PartitionWriter {
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).at(dir)?;
        let lock_path = dir.join("write.lock");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).at(&lock_path)?;
        Ok(PartitionWriter {
            dir: dir.to_owned(),
            lock,
            active: None,
            cur: Cursor::default(),
            pending: Vec::new(),
            pending_count: 0,
            unsynced: false,
            scan_buf: Vec::new(),
        })
    }

    pub(crate) fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, headers: &[(&str, &[u8])], value: &[u8]) {
        frame::encode(&mut self.pending, timestamp_ms, key, headers, value);
        self.pending_count += 1;
    }

    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn needs_write(&self, fsync: bool) -> bool {
        self.pending_count > 0 || (fsync && self.unsynced)
    }

    /// Appends the queued frames (and fsyncs when `fsync`); returns the partition's end offset.
    pub(crate) fn write_out(&mut self, fsync: bool, opts: &EmbeddedOptions) -> Result<u64> {
        self.lock.lock().at(self.dir.join("write.lock"))?;
        let result = self.write_locked(fsync, opts);
        let _ = self.lock.unlock();
        result
    }

    fn write_locked(&mut self, fsync: bool, opts: &EmbeddedOptions) -> Result<u64> {
        self.sync_tail()?;
        let (base, file) = self.active.as_ref().expect("sync_tail opens a segment");
        let path = segment_path(&self.dir, *base);
        if !self.pending.is_empty() {
            file.write_all_at(&self.pending, self.cur.pos).at(&path)?;
            self.cur.pos += self.pending.len() as u64;
            self.cur.offset += self.pending_count;
            self.pending.clear();
            self.pending_count = 0;
            self.unsynced = true;
        }
        if fsync && self.unsynced {
            file.sync_data().at(&path)?;
            self.unsynced = false;
        }
        if self.cur.pos >= opts.segment_bytes {
            if self.unsynced && opts.fsync.syncs() {
                file.sync_data().at(&path)?;
                self.unsynced = false;
            }
            self.roll(opts)?;
        }
        Ok(self.cur.offset)
    }

    /// Catches up with the newest segment and its length; cuts a torn tail.
    fn sync_tail(&mut self) -> Result<()> {
        let newest = list_segments(&self.dir)?.last().copied();
        let same = matches!((newest, &self.active), (Some(n), Some((a, _))) if n == *a);
        if !same {
            self.activate(newest.unwrap_or(0))?;
        }
        let (base, file) = self.active.as_ref().expect("opened above");
        let path = segment_path(&self.dir, *base);
        let len = file.metadata().at(&path)?.len();
        if len == self.cur.pos {
            return Ok(());
        }
        if len < self.cur.pos {
            self.cur = Cursor { pos: 0, offset: *base };
        }
        if let Stop::Partial(why) | Stop::Damaged(why) = scan_to_end(file, &path, &mut self.cur, &mut self.scan_buf)? {
            if whole_frame_within(&read_tail(file, &path, self.cur.pos)?) {
                return Err(damaged(&path, self.cur, why));
            }
            tracing::warn!(
                segment = %path.display(),
                at = self.cur.pos,
                cut = len - self.cur.pos,
                "recovering the log: cutting a torn write ({why}) left by a crashed writer"
            );
            file.set_len(self.cur.pos).at(&path)?;
            file.sync_data().at(&path)?;
        }
        Ok(())
    }

    fn roll(&mut self, opts: &EmbeddedOptions) -> Result<()> {
        let base = self.cur.offset;
        self.activate(base)?;
        apply_retention(&self.dir, base, opts)
    }

    /// Makes the segment at `base` (created when missing) the one appended to.
    fn activate(&mut self, base: u64) -> Result<()> {
        let path = segment_path(&self.dir, base);
        let created = !path.exists();
        let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).at(&path)?;
        if created {
            sync_dir(&self.dir)?;
        }
        self.active = Some((base, file));
        self.cur = Cursor { pos: 0, offset: base };
        Ok(())
    }
}

/// Deletes whole closed segments older than the retention time, then the
/// oldest ones while the partition is larger than the retention size.
fn apply_retention(dir: &Path, active: u64, opts: &EmbeddedOptions) -> Result<()> {
    let mut closed = Vec::new();
    let mut total = 0u64;
    for base in list_segments(dir)? {
        let path = segment_path(dir, base);
        let meta = std::fs::metadata(&path).at(&path)?;
        total += meta.len();
        if base != active {
            closed.push((path, meta.len(), meta.modified().unwrap_or(SystemTime::now())));
        }
    }
    let now = SystemTime::now();
    for (path, len, modified) in closed {
        let too_old = opts
            .retention_ms
            .is_some_and(|ms| now.duration_since(modified).unwrap_or_default() > Duration::from_millis(ms));
        let too_big = opts.retention_bytes.is_some_and(|max| total > max);
        if !(too_old || too_big) {
            break;
        }
        std::fs::remove_file(&path).at(&path)?;
        total -= len;
        tracing::info!(segment = %path.display(), "retention removed a segment");
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
