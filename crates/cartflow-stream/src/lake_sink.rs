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
}

fn tp_key(tp: &TopicPartition) -> String {
    format!("{}/{}", tp.topic, tp.partition)
}

/// Rows of one commit, and the input range each partition contributes.
struct Pending {
    start: BTreeMap<TopicPartition, u64>,
    events: Vec<LakeEvent>,
    invalid: Vec<LakeInvalid>,
    bytes: usize,
    since: Option<Instant>,
}

impl Pending {
    fn new(start: BTreeMap<TopicPartition, u64>) -> Self {
        Pending { start, events: Vec::new(), invalid: Vec::new(), bytes: 0, since: None }
    }

    fn len(&self) -> usize {
        self.events.len() + self.invalid.len()
    }

    fn add(&mut self, records: Vec<Record>) {
        self.since.get_or_insert_with(Instant::now);
        for r in records {
            self.bytes += r.value.len();
            add_record(r, &mut self.events, &mut self.invalid);
        }
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
    let mut stage =
        LakeSink { lake, cfg, seq: 0, pending: Pending::new(BTreeMap::new()), stats: LakeSinkStats::default() };
    let mut input = Subscription::join(log, &cfg.group, &[VALIDATED, INVALID])?;
    crate::driver::drive(&mut input, &mut stage, control, progress)
}

/// The lake sink as a stage: rows buffered across polls, one commit (a
/// manifest, then its files) when the buffer is large or old enough.
struct LakeSink<'a> {
    lake: &'a Lake,
    cfg: &'a LakeSinkConfig,
    /// The last commit's number.
    seq: u64,
    pending: Pending,
    stats: LakeSinkStats,
}

impl<'a> Stage for LakeSink<'a> {
    type Input = Subscription<'a>;
    type Stats = LakeSinkStats;
    const NAME: &'static str = "lake-sink";

    fn batch_size(&self) -> usize {
        16_384
    }

    /// The manifests, not the group, say where to resume; the last commit's
    /// missing files are put again and a kill's staging files removed.
    fn assigned(&mut self, input: &mut Subscription<'a>, moved: Option<&Rebalance>) -> Result<()> {
        if let Some(change) = moved {
            return crate::one_member_only(Self::NAME, &self.cfg.group, change);
        }
        let last = self.lake.latest_manifest()?;
        let resume = last.as_ref().map(Manifest::next_offsets).unwrap_or_default();
        let mut start = BTreeMap::new();
        let consumer = input.consumer.as_mut();
        for tp in consumer.assignment() {
            let at = resume.get(&tp_key(&tp)).copied().unwrap_or(0);
            consumer.seek(&tp, at)?;
            start.insert(tp, at);
        }
        self.pending = Pending::new(start);
        self.seq = last.as_ref().map_or(0, |m| m.seq);
        if let Some(m) = &last {
            self.stats.repaired_files = repair(input.log, self.lake, m)?;
        }
        let removed = self.lake.remove_staging_files(last.as_ref())?;
        if removed > 0 {
            tracing::info!(removed, "removed staging files a killed lake sink left");
        }
        Ok(())
    }

    fn process(&mut self, batch: Vec<Record>, _: &Subscription<'a>) -> Result<()> {
        self.stats.read += batch.len() as u64;
        self.pending.add(batch);
        Ok(())
    }

    fn due(&self, finishing: bool) -> bool {
        let p = &self.pending;
        p.len() > 0
            && (p.len() >= self.cfg.max_records
                || p.bytes >= self.cfg.max_bytes
                || p.since.is_some_and(|t| t.elapsed() >= Duration::from_secs(self.cfg.max_age_secs))
                || finishing)
    }

    /// The commit: its manifest (the commit point), then its files.
    fn write(&mut self, input: &Subscription<'a>) -> Result<Vec<CommittedOffset>> {
        let consumer = input.consumer.as_ref();
        self.seq += 1;
        let seq = self.seq;
        let end: BTreeMap<TopicPartition, u64> =
            self.pending.start.keys().map(|tp| (tp.clone(), consumer.position(tp).unwrap_or(0))).collect();
        let inputs = self.pending.start.iter().map(|(tp, s)| (tp_key(tp), [*s, end[tp]])).collect();
        let files = Lake::encode(seq, &self.pending.events, &self.pending.invalid)?;
        self.lake.commit(seq, inputs, &files)?;
        let s = &mut self.stats;
        s.commits += 1;
        s.files += files.len() as u64;
        s.events += self.pending.events.len() as u64;
        s.invalid += self.pending.invalid.len() as u64;
        metrics::counter!(EVENTS_OUT, "stage" => Self::NAME, "topic" => "lake").increment(self.pending.len() as u64);
        tracing::debug!(seq, files = files.len(), rows = self.pending.len(), "lake commit");
        // The group's offsets are advisory here (the manifest is the truth): they show the lag.
        let offsets = end
            .iter()
            .map(|(tp, o)| CommittedOffset {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                offset: *o,
                metadata: format!("lake commit {seq}"),
            })
            .collect();
        self.pending = Pending::new(end);
        Ok(offsets)
    }

    fn stats(&mut self, lag: u64) -> &LakeSinkStats {
        self.stats.lag = lag;
        &self.stats
    }
}

/// Puts the files of the last commit that are missing (the writer died
/// between its manifest and its files), rebuilt from the commit's ranges.
fn repair(log: &dyn EventLog, lake: &Lake, m: &Manifest) -> Result<u64> {
    let missing = lake.missing_files(m)?;
    if missing.is_empty() {
        return Ok(0);
    }
    let (mut events, mut invalid) = (Vec::new(), Vec::new());
    for (key, [from, to]) in &m.inputs {
        let (topic, p) = key.rsplit_once('/').expect("manifest keys are topic/partition");
        let tp = TopicPartition::new(topic, p.parse().expect("manifest partitions are numbers"));
        cartflow_log::for_each_in_range(log, &tp, *from, *to, |r| add_record(r, &mut events, &mut invalid))?;
    }
    let files: Vec<_> =
        Lake::encode(m.seq, &events, &invalid)?.into_iter().filter(|f| missing.contains(&f.path)).collect();
    tracing::warn!(seq = m.seq, files = files.len(), "repairing the last lake commit: putting files a crash left out");
    lake.put_files(&files)?;
    Ok(files.len() as u64)
}
