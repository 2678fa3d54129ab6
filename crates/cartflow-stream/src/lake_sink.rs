//! The lake sink: `validated` (and `invalid`) → Parquet files in the lake,
//! exactly once, by the manifest protocol of `cartflow_lake::lake`.
//!
//! The lake's manifests, not the group's commits, say where to resume: a
//! restart seeks each input to the end of the last committed range, and if
//! the last commit's files are not all there it re-reads that commit's ranges
//! and puts them again. Group offsets are still committed, so `cartflow
//! topics` shows the sink's lag.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cartflow_core::Event;
use cartflow_lake::{Lake, LakeEvent, LakeInvalid, Manifest};
use cartflow_log::{CommittedOffset, EventLog, Rebalance, Record, TopicPartition};
use serde::{Deserialize, Serialize};

use crate::driver::{Stage, Subscription};
use crate::metrics::EVENTS_OUT;
use crate::supervise::{Waiting, failed, supervise};
use crate::topics::*;
use crate::{Result, StageControl};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeSinkConfig {
    pub group: String,
    /// A commit (a file per table and hour) once this many records are buffered…
    pub max_records: usize,
    /// …or this many bytes of input…
    pub max_bytes: usize,
    /// …or the oldest buffered record waited this long.
    pub max_age_secs: u64,
}

impl Default for LakeSinkConfig {
    fn default() -> Self {
        LakeSinkConfig {
            group: "cartflow-lake-sink".into(),
            max_records: 500_000,
            max_bytes: 128 << 20,
            max_age_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LakeSinkStats {
    pub read: u64,
    pub events: u64,
    pub invalid: u64,
    pub commits: u64,
    pub files: u64,
    /// Files of an interrupted commit put again after a restart.
    pub repaired_files: u64,
    pub lag: u64,
    /// Set while the stage waits for a backing service to come back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

impl Waiting for LakeSinkStats {
    fn set_waiting(&mut self, why: Option<String>) {
        self.waiting = why;
    }
}

/// Rows of the next commit, per input partition, with where each starts.
struct Pending {
    parts: BTreeMap<TopicPartition, PartRows>,
    since: Option<Instant>,
}

/// One partition's rows since its last commit.
#[derive(Default)]
struct PartRows {
    start: u64,
    events: Vec<LakeEvent>,
    invalid: Vec<LakeInvalid>,
    /// Input bytes of those rows.
    bytes: usize,
}

impl PartRows {
    fn at(start: u64) -> Self {
        PartRows { start, ..PartRows::default() }
    }

    fn rows(&self) -> usize {
        self.events.len() + self.invalid.len()
    }
}

impl Pending {
    fn new() -> Self {
        Pending { parts: BTreeMap::new(), since: None }
    }

    /// Records of partitions this sink holds; the driver has dropped any of
    /// partitions that just moved.
    fn add(&mut self, records: Vec<Record>) {
        self.since.get_or_insert_with(Instant::now);
        for r in records {
            let Some(part) = self.parts.get_mut(&r.topic_partition()) else { continue };
            part.bytes += r.value.len();
            add_record(r, &mut part.events, &mut part.invalid);
        }
    }

    fn rows(&self) -> usize {
        self.parts.values().map(PartRows::rows).sum()
    }

    fn bytes(&self) -> usize {
        self.parts.values().map(|p| p.bytes).sum()
    }
}

/// One log record as a lake row.
fn add_record(r: Record, events: &mut Vec<LakeEvent>, invalid: &mut Vec<LakeInvalid>) {
    let header = |k: &str| r.header_str(k).unwrap_or_default().to_owned();
    if &*r.topic == VALIDATED {
        match Event::from_json(&r.value) {
            Ok(event) => {
                let op = r.header_str(CHANGE_OP).map(str::to_owned);
                events.push(LakeEvent { event, partition: r.partition, offset: r.offset, op });
                return;
            }
            Err(e) => {
                // Never expected: the validator wrote it. Keep it, visibly, rather than lose it.
                tracing::error!(partition = r.partition, offset = r.offset, "unreadable validated record: {e}");
                invalid.push(LakeInvalid {
                    received_ms: r.timestamp_ms,
                    reason: "unreadable_validated".into(),
                    field: String::new(),
                    message: e.to_string(),
                    source: format!("{}/{}/{}", r.topic, r.partition, r.offset),
                    location: None,
                    raw: String::from_utf8_lossy(&r.value).into_owned(),
                    partition: r.partition,
                    offset: r.offset,
                });
                return;
            }
        }
    }
    invalid.push(LakeInvalid {
        received_ms: r.timestamp_ms,
        reason: header(ERROR_REASON),
        field: header(ERROR_FIELD),
        message: header(ERROR_MESSAGE),
        source: header(SOURCE_POSITION),
        location: r.header_str(SOURCE_LOCATION).map(str::to_owned),
        raw: String::from_utf8_lossy(&r.value).into_owned(),
        partition: r.partition,
        offset: r.offset,
    });
}

pub fn run_lake_sink(
    log: &dyn EventLog,
    lake: &Lake,
    cfg: &LakeSinkConfig,
    control: &StageControl,
    progress: &mut dyn FnMut(&LakeSinkStats),
) -> Result<LakeSinkStats> {
    supervise(LakeSink::NAME, control, progress, |stats, progress| {
        let mut stage = LakeSink { lake, cfg, pending: Pending::new(), stats };
        let mut input =
            Subscription::join(log, &cfg.group, &[VALIDATED, INVALID]).map_err(|e| failed(e, stage.stats.clone()))?;
        crate::driver::drive(&mut input, &mut stage, control, progress).map_err(|e| failed(e, stage.stats.clone()))
    })
}

/// The lake sink as a stage: rows buffered across polls, then a commit per
/// partition held (a manifest, then its files) when the buffer is large or
/// old enough. Any number of sinks in one group share a lake: each commits
/// only the partitions the group gave it.
struct LakeSink<'a> {
    lake: &'a Lake,
    cfg: &'a LakeSinkConfig,
    pending: Pending,
    stats: LakeSinkStats,
}

impl<'a> LakeSink<'a> {
    /// Takes up a partition where its last commit ended: the commit's missing
    /// files are put again and a kill's staging files removed.
    fn resume(&mut self, input: &mut Subscription<'a>, tp: &TopicPartition) -> Result<()> {
        let last = self.lake.latest_manifest(&tp.topic, tp.partition)?;
        let at = match &last {
            Some(m) => m.end,
            None => self.lake.single_writer_offset(&tp.topic, tp.partition)?,
        };
        input.consumer.seek(tp, at)?;
        if let Some(m) = &last {
            self.stats.repaired_files += repair(input.log, self.lake, m)?;
        }
        let removed = self.lake.remove_staging_files(&tp.topic, tp.partition, last.as_ref(), at)?;
        if removed > 0 {
            tracing::info!(partition = %tp, removed, "removed staging files a killed lake sink left");
        }
        self.pending.parts.insert(tp.clone(), PartRows::at(at));
        Ok(())
    }
}

impl<'a> Stage for LakeSink<'a> {
    type Input = Subscription<'a>;
    type Stats = LakeSinkStats;
    const NAME: &'static str = "lake-sink";

    fn batch_size(&self) -> usize {
        16_384
    }

    /// The manifests, not the group, say where each partition resumes.
    /// Partitions kept through a rebalance keep their rows; those lost drop
    /// them (their new owner reads them again from the last commit).
    fn assigned(&mut self, input: &mut Subscription<'a>, moved: Option<&Rebalance>) -> Result<()> {
        let gained = match moved {
            None => input.consumer.assignment(),
            Some(change) => {
                for tp in &change.lost {
                    self.pending.parts.remove(tp);
                }
                change.gained.clone()
            }
        };
        for tp in &gained {
            self.resume(input, tp)?;
        }
        Ok(())
    }

    fn process(&mut self, batch: Vec<Record>, _: &Subscription<'a>) -> Result<()> {
        self.stats.read += batch.len() as u64;
        self.pending.add(batch);
        Ok(())
    }

    fn due(&self, finishing: bool) -> bool {
        let (p, rows) = (&self.pending, self.pending.rows());
        rows > 0
            && (rows >= self.cfg.max_records
                || p.bytes() >= self.cfg.max_bytes
                || p.since.is_some_and(|t| t.elapsed() >= Duration::from_secs(self.cfg.max_age_secs))
                || finishing)
    }

    /// A commit per partition with rows: its manifest (the commit point), then its files.
    fn write(&mut self, input: &Subscription<'a>) -> Result<Vec<CommittedOffset>> {
        let consumer = input.consumer.as_ref();
        let mut offsets = Vec::new();
        for (tp, part) in self.pending.parts.iter_mut() {
            // Every partition held has a position; one without is not committed from here.
            let Some(end) = consumer.position(tp) else { continue };
            if part.rows() > 0 {
                let files = Lake::encode(&tp.topic, tp.partition, part.start, &part.events, &part.invalid)?;
                self.lake.commit(&tp.topic, tp.partition, [part.start, end], &files)?;
                let s = &mut self.stats;
                s.commits += 1;
                s.files += files.len() as u64;
                s.events += part.events.len() as u64;
                s.invalid += part.invalid.len() as u64;
                let rows = part.rows() as u64;
                metrics::counter!(EVENTS_OUT, "stage" => Self::NAME, "topic" => "lake").increment(rows);
                tracing::debug!(partition = %tp, start = part.start, end, files = files.len(), rows, "lake commit");
                *part = PartRows::at(end);
            }
            // The group's offsets are advisory here (the manifests are the truth): they show the lag.
            let metadata = format!("lake commit to {end}");
            offsets.push(CommittedOffset {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                offset: end,
                metadata,
            });
        }
        self.pending.since = None;
        Ok(offsets)
    }

    fn stats(&mut self, lag: u64) -> &LakeSinkStats {
        self.stats.lag = lag;
        &self.stats
    }

    fn outputs(&self) -> u64 {
        self.stats.events + self.stats.invalid
    }
}

/// Puts the files of a partition's last commit that are missing (its writer
/// died between the manifest and the files), rebuilt from the commit's range.
fn repair(log: &dyn EventLog, lake: &Lake, m: &Manifest) -> Result<u64> {
    let missing = lake.missing_files(m)?;
    if missing.is_empty() {
        return Ok(0);
    }
    let (mut events, mut invalid) = (Vec::new(), Vec::new());
    let tp = TopicPartition::new(&m.topic, m.partition);
    cartflow_log::for_each_in_range(log, &tp, m.start, m.end, |r| add_record(r, &mut events, &mut invalid))?;
    let files: Vec<_> = Lake::encode(&m.topic, m.partition, m.start, &events, &invalid)?
        .into_iter()
        .filter(|f| missing.contains(&f.path))
        .collect();
    tracing::warn!(partition = %tp, start = m.start, files = files.len(), "repairing a lake commit: putting files a crash left out");
    lake.put_files(&files)?;
    Ok(files.len() as u64)
}
