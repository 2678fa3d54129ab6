//! The embedded event log: the default backend, files under `<data-dir>/log`.
//!
//! ```text
//! log/topics/<topic>/topic.json           {"partitions": N}
//! log/topics/<topic>/<partition>/<base>.log  segments of checksummed frames
//! log/topics/<topic>/<partition>/write.lock  appenders serialize on it
//! log/groups/<group>.json                 committed offsets (+ metadata)
//! log/groups/<group>.lock                 held by the group's one member
//! ```
//!
//! Appends are batched in memory and written on `flush` (or when a batch
//! passes 4 MiB); `flush` fsyncs per [`FsyncPolicy`]. A writer that finds a
//! torn frame at the tail (a crash mid-write) cuts it before appending; every
//! flushed record survives. Readers in any process follow the files.

mod frame;
mod groups;
mod reader;
mod segment;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use self::groups::Groups;
use self::reader::PartitionReader;
use self::writer::PartitionWriter;
use crate::error::{IoContext, LogError, Result};
use crate::{
    CommittedOffset, Consumer, ConsumerConfig, EventLog, GroupInfo, OffsetReset, PartitionInfo, Producer,
    ProducerRecord, Record, Subscription, TopicInfo, TopicPartition, partition_for_key,
};

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync on every flush: a flushed record survives power loss.
    EveryFlush,
    /// fsync on a flush at most this often; a crash of the process loses
    /// nothing flushed, a power loss up to this much.
    Interval(Duration),
    /// Leave it to the OS.
    Never,
}

impl FsyncPolicy {
    fn syncs(self) -> bool {
        self != FsyncPolicy::Never
    }
}

impl FromStr for FsyncPolicy {
    type Err = String;
    /// `flush`, `never`, or an interval such as `500ms` or `2s`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("fsync policy {s:?}: expected `flush`, `never` or an interval like `500ms` or `1s`");
        Ok(match s {
            "flush" | "always" => FsyncPolicy::EveryFlush,
            "never" => FsyncPolicy::Never,
            _ => {
                let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map(|i| s.split_at(i)).ok_or_else(bad)?;
                let n: u64 = num.parse().map_err(|_| bad())?;
                FsyncPolicy::Interval(match unit {
                    "ms" => Duration::from_millis(n),
                    "s" => Duration::from_secs(n),
                    _ => return Err(bad()),
                })
            }
        })
    }
}

/// The embedded log's settings as a person writes them (`[embedded_log]` in
/// cartflow.toml); [`EmbeddedConfig::options`] turns them into [`EmbeddedOptions`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// Partitions of a topic created on first use.
    pub partitions: u32,
    /// `flush` (fsync every flush), `never`, or an interval such as `200ms`.
    pub fsync: String,
    pub segment_mb: u64,
    /// Closed segments older than this are deleted; 0 keeps them.
    pub retention_hours: u64,
    /// Oldest closed segments go while a partition is larger; 0 is no limit.
    pub retention_mb: u64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig { partitions: 4, fsync: "flush".into(), segment_mb: 64, retention_hours: 168, retention_mb: 0 }
    }
}

impl EmbeddedConfig {
    pub fn options(&self) -> std::result::Result<EmbeddedOptions, String> {
        Ok(EmbeddedOptions {
            default_partitions: self.partitions.max(1),
            fsync: self.fsync.parse().map_err(|e| format!("embedded_log.fsync: {e}"))?,
            segment_bytes: self.segment_mb.max(1) << 20,
            retention_ms: (self.retention_hours > 0).then_some(self.retention_hours * 3_600_000),
            retention_bytes: (self.retention_mb > 0).then_some(self.retention_mb << 20),
        })
    }
}

#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Partitions of a topic created on first use.
    pub default_partitions: u32,
    pub fsync: FsyncPolicy,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Closed segments older than this are deleted.
    pub retention_ms: Option<u64>,
    /// Oldest closed segments are deleted while a partition is larger.
    pub retention_bytes: Option<u64>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            default_partitions: 4,
            fsync: FsyncPolicy::EveryFlush,
            segment_bytes: 64 << 20,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
        }
    }
}

/// Batches larger than this are written before `flush` (not yet fsynced).
const WRITE_THRESHOLD: usize = 4 << 20;

pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    opts: EmbeddedOptions,
    groups: Groups,
}

#[derive(Serialize, Deserialize)]
struct TopicMeta {
    partitions: u32,
}

impl EmbeddedLog {
    /// Opens (creating) the log under `root`.
    pub fn open(root: impl Into<PathBuf>, opts: EmbeddedOptions) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("topics")).at(&root)?;
        let groups = Groups::new(root.join("groups"));
        Ok(EmbeddedLog { inner: Arc::new(Inner { root, opts, groups }) })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }
}

impl Inner {
    fn topic_dir(&self, topic: &str) -> PathBuf {
        self.root.join("topics").join(topic)
    }

    fn partition_dir(&self, tp: &TopicPartition) -> PathBuf {
        self.topic_dir(&tp.topic).join(tp.partition.to_string())
    }

    fn partitions(&self, topic: &str) -> Result<Option<u32>> {
        let path = self.topic_dir(topic).join("topic.json");
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice::<TopicMeta>(&b)
                .map(|m| Some(m.partitions))
                .map_err(|e| LogError::Corrupt { path, message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(path),
        }
    }

    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32> {
        check_name(topic)?;
        if let Some(n) = self.partitions(topic)? {
            return Ok(n);
        }
        let dir = self.topic_dir(topic);
        std::fs::create_dir_all(&dir).at(&dir)?;
        // Unique per process and call: threads of one process may race here too.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = dir.join(format!(".topic.json.{}.{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
        // 0: the log's default, as on Kafka.
        let partitions = if partitions == 0 { self.opts.default_partitions } else { partitions };
        let bytes = serde_json::to_vec(&TopicMeta { partitions: partitions.max(1) }).expect("serializes");
        std::fs::write(&tmp, bytes).at(&tmp)?;
        // Two processes creating the topic at once both write the same count;
        // rename keeps exactly one whole file.
        std::fs::rename(&tmp, dir.join("topic.json")).at(&dir)?;
        writer::sync_dir(&dir)?;
        Ok(self.partitions(topic)?.unwrap_or(partitions))
    }

    fn topic_partitions(&self, topic: &str) -> Result<Vec<TopicPartition>> {
        let n = self.ensure_topic(topic, self.opts.default_partitions)?;
        Ok((0..n).map(|p| TopicPartition::new(topic, p)).collect())
    }
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err(LogError::TopicName(name.to_owned())) }
}

impl EventLog for EmbeddedLog {
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        self.inner.ensure_topic(topic, partitions).map(drop)
    }

    fn topics(&self) -> Result<Vec<TopicInfo>> {
        let dir = self.inner.root.join("topics");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .at(&dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            out.extend(self.topic(&name)?);
        }
        Ok(out)
    }

    fn topic(&self, name: &str) -> Result<Option<TopicInfo>> {
        let Some(n) = self.inner.partitions(name)? else {
            return Ok(None);
        };
        let mut partitions = Vec::new();
        for p in 0..n {
            let pdir = self.inner.partition_dir(&TopicPartition::new(name, p));
            let start = segment::list_segments(&pdir)?.first().copied().unwrap_or(0);
            let mut r = PartitionReader::new(&pdir);
            r.seek(start)?;
            partitions.push(PartitionInfo { partition: p, start, end: r.scan_to_end()? });
        }
        Ok(Some(TopicInfo { name: name.to_owned(), partitions }))
    }

    fn groups(&self) -> Result<Vec<GroupInfo>> {
        self.inner.groups.list()
    }

    /// Hides the topic's folder at once (a rename), forgets the groups'
    /// offsets of it, then removes the files. Refused while a group has a
    /// running member: it could be reading the topic.
    fn delete_topic(&self, topic: &str) -> Result<()> {
        check_name(topic)?;
        if self.inner.partitions(topic)?.is_none() {
            return Err(LogError::NoTopic(topic.to_owned()));
        }
        if let Some(group) = self.inner.groups.running()?.into_iter().next() {
            return Err(LogError::TopicInUse { topic: topic.to_owned(), group });
        }
        let dir = self.inner.topic_dir(topic);
        let trash = self.inner.root.join("topics").join(format!(".deleted-{topic}-{}", std::process::id()));
        std::fs::rename(&dir, &trash).at(&dir)?;
        writer::sync_dir(&self.inner.root.join("topics"))?;
        self.inner.groups.forget(topic)?;
        std::fs::remove_dir_all(&trash).at(&trash)
    }

    fn producer(&self) -> Result<Box<dyn Producer>> {
        Ok(Box::new(EmbeddedProducer {
            inner: self.inner.clone(),
            topics: HashMap::new(),
            writers: HashMap::new(),
            round_robin: 0,
            last_fsync: Instant::now(),
        }))
    }

    fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        let inner = self.inner.clone();
        let membership = match &config.group {
            Some(g) => {
                check_name(g)?;
                Some((g.clone(), inner.groups.join(g)?))
            }
            None => None,
        };
        let assignment = match &config.subscription {
            Subscription::Topics(topics) => {
                let mut all = Vec::new();
                for t in topics {
                    all.extend(inner.topic_partitions(t)?);
                }
                all
            }
            Subscription::Partitions(tps) => tps.clone(),
        };
        let committed = match &membership {
            Some((g, _)) => inner.groups.load(g)?,
            None => Vec::new(),
        };
        let mut readers = Vec::new();
        for tp in assignment {
            let dir = inner.partition_dir(&tp);
            let mut reader = PartitionReader::new(&dir);
            let start = match committed.iter().find(|c| *c.topic == *tp.topic && c.partition == tp.partition) {
                Some(c) => c.offset,
                None => match config.reset {
                    OffsetReset::Earliest => 0,
                    OffsetReset::Latest => {
                        let mut end = PartitionReader::new(&dir);
                        end.seek(0)?;
                        end.scan_to_end()?
                    }
                },
            };
            reader.seek(start)?;
            let ends = PartitionReader::new(&dir);
            readers.push(Assigned { tp, reader, ends, ends_seeked: false });
        }
        Ok(Box::new(EmbeddedConsumer { inner, membership, readers, next: 0 }))
    }
}

struct EmbeddedProducer {
    inner: Arc<Inner>,
    topics: HashMap<String, u32>,
    writers: HashMap<TopicPartition, PartitionWriter>,
    round_robin: u32,
    last_fsync: Instant,
}

impl Producer for EmbeddedProducer {
    fn send(&mut self, r: ProducerRecord<'_>) -> Result<()> {
        let n = match self.topics.get(r.topic) {
            Some(n) => *n,
            None => {
                let n = self.inner.ensure_topic(r.topic, self.inner.opts.default_partitions)?;
                self.topics.insert(r.topic.to_owned(), n);
                n
            }
        };
        let partition = match r.key {
            Some(k) => partition_for_key(k, n),
            None => {
                self.round_robin = self.round_robin.wrapping_add(1);
                self.round_robin % n
            }
        };
        let tp = TopicPartition::new(r.topic, partition);
        if !self.writers.contains_key(&tp) {
            let w = PartitionWriter::open(&self.inner.partition_dir(&tp))?;
            self.writers.insert(tp.clone(), w);
        }
        let w = self.writers.get_mut(&tp).expect("inserted above");
        let ts = r.timestamp_ms.unwrap_or_else(crate::now_ms);
        w.push(ts, r.key, r.headers, r.value);
        if w.pending_bytes() >= WRITE_THRESHOLD {
            w.write_out(false, &self.inner.opts)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Vec<(TopicPartition, u64)>> {
        let fsync = match self.inner.opts.fsync {
            FsyncPolicy::EveryFlush => true,
            FsyncPolicy::Interval(d) => self.last_fsync.elapsed() >= d,
            FsyncPolicy::Never => false,
        };
        let mut ends = Vec::new();
        for (tp, w) in &mut self.writers {
            if w.needs_write(fsync) {
                ends.push((tp.clone(), w.write_out(fsync, &self.inner.opts)?));
            }
        }
        if fsync {
            self.last_fsync = Instant::now();
        }
        Ok(ends)
    }
}

struct Assigned {
    tp: TopicPartition,
    reader: PartitionReader,
    /// A second reader that only counts, for end offsets.
    ends: PartitionReader,
    ends_seeked: bool,
}

struct EmbeddedConsumer {
    inner: Arc<Inner>,
    membership: Option<(String, File)>,
    readers: Vec<Assigned>,
    next: usize,
}

impl Consumer for EmbeddedConsumer {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut idle = Duration::from_millis(1);
        loop {
            // Round robin over partitions so none starves.
            let n = self.readers.len();
            for _ in 0..n {
                if out.len() >= max {
                    break;
                }
                let share = (max - out.len()).min(max / n + 1);
                let a = &mut self.readers[self.next];
                self.next = (self.next + 1) % n;
                a.reader.read(&a.tp.topic, a.tp.partition, share, &mut out)?;
            }
            let now = Instant::now();
            if !out.is_empty() || now >= deadline || self.readers.is_empty() {
                return Ok(out);
            }
            std::thread::sleep(idle.min(deadline - now));
            idle = (idle * 2).min(Duration::from_millis(20));
        }
    }

    fn commit(&mut self, offsets: &[CommittedOffset]) -> Result<()> {
        let (group, _) = self.membership.as_ref().ok_or(LogError::NoGroup)?;
        self.inner.groups.store(group, offsets)
    }

    fn committed(&mut self) -> Result<Vec<CommittedOffset>> {
        let Some((group, _)) = &self.membership else {
            return Ok(Vec::new());
        };
        let all = self.inner.groups.load(group)?;
        Ok(all
            .into_iter()
            .filter(|c| self.readers.iter().any(|a| *a.tp.topic == *c.topic && a.tp.partition == c.partition))
            .collect())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.readers.iter().map(|a| a.tp.clone()).collect()
    }

    fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<()> {
        let a = self
            .readers
            .iter_mut()
            .find(|a| a.tp == *tp)
            .ok_or_else(|| LogError::NoPartition { topic: tp.topic.to_string(), partition: tp.partition })?;
        a.reader.seek(offset)
    }

    fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.readers.iter().find(|a| a.tp == *tp).map(|a| a.reader.position())
    }

    fn end_offsets(&mut self) -> Result<Vec<(TopicPartition, u64)>> {
        let mut out = Vec::with_capacity(self.readers.len());
        for a in &mut self.readers {
            if !a.ends_seeked {
                // Counting starts at the reader's position: the end is never below it.
                a.ends.seek(a.reader.position())?;
                a.ends_seeked = true;
            }
            out.push((a.tp.clone(), a.ends.scan_to_end()?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
