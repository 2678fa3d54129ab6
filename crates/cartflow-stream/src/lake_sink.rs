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
use cartflow_log::{CommittedOffset, ConsumerConfig, EventLog, Record, TopicPartition};
use serde::{Deserialize, Serialize};

use crate::metrics::{BATCH_SECONDS, EVENTS_IN, EVENTS_OUT, measure_lag};
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
    let _running = crate::metrics::Running::start("lake-sink");
    let mut stats = LakeSinkStats::default();
    let mut consumer = log.consumer(ConsumerConfig::group(&cfg.group, &[VALIDATED, INVALID]))?;
    let last = lake.latest_manifest()?;
    let resume = last.as_ref().map(Manifest::next_offsets).unwrap_or_default();
    let mut start = BTreeMap::new();
    for tp in consumer.assignment() {
        let at = resume.get(&tp_key(&tp)).copied().unwrap_or(0);
        consumer.seek(&tp, at)?;
        start.insert(tp, at);
    }
    let mut seq = last.as_ref().map_or(0, |m| m.seq);
    if let Some(m) = &last {
        stats.repaired_files = repair(log, lake, m)?;
    }
    let removed = lake.remove_staging_files(last.as_ref())?;
    if removed > 0 {
        tracing::info!(removed, "removed staging files a killed lake sink left");
    }

    let mut pending = Pending::new(start);
    let mut checked_lag = Instant::now() - Duration::from_secs(1);
    loop {
        let stopped = control.stopped();
        let batch = if stopped { Vec::new() } else { consumer.poll(16_384, Duration::from_millis(200))? };
        if let Some(change) = consumer.take_rebalance() {
            crate::one_member_only("lake-sink", &cfg.group, &change)?;
        }
        let idle = batch.is_empty();
        stats.read += batch.len() as u64;
        count_in(&batch);
        pending.add(batch);
        if idle || checked_lag.elapsed() >= Duration::from_secs(1) {
            stats.lag = measure_lag("lake-sink", consumer.as_mut())?;
            checked_lag = Instant::now();
            progress(&stats);
        }
        let caught_up = idle && stats.lag == 0;
        let finishing = stopped || (caught_up && control.draining());
        let due = pending.len() >= cfg.max_records
            || pending.bytes >= cfg.max_bytes
            || pending.since.is_some_and(|t| t.elapsed() >= Duration::from_secs(cfg.max_age_secs))
            || finishing;
        if due && pending.len() > 0 {
            seq += 1;
            let started = Instant::now();
            let end: BTreeMap<TopicPartition, u64> =
                pending.start.keys().map(|tp| (tp.clone(), consumer.position(tp).unwrap_or(0))).collect();
            let inputs = pending.start.iter().map(|(tp, s)| (tp_key(tp), [*s, end[tp]])).collect();
            let files = Lake::encode(seq, &pending.events, &pending.invalid)?;
            lake.commit(seq, inputs, &files)?;
            let offsets: Vec<CommittedOffset> = end
                .iter()
                .map(|(tp, o)| CommittedOffset {
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                    offset: *o,
                    metadata: format!("lake commit {seq}"),
                })
                .collect();
            consumer.commit(&offsets)?;
            stats.commits += 1;
            stats.files += files.len() as u64;
            stats.events += pending.events.len() as u64;
            stats.invalid += pending.invalid.len() as u64;
            metrics::counter!(EVENTS_OUT, "stage" => "lake-sink", "topic" => "lake").increment(pending.len() as u64);
            metrics::histogram!(BATCH_SECONDS, "stage" => "lake-sink").record(started.elapsed().as_secs_f64());
            tracing::debug!(seq, files = files.len(), rows = pending.len(), "lake commit");
            pending = Pending::new(end);
            progress(&stats);
        }
        if finishing {
            break;
        }
    }
    Ok(stats)
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

fn count_in(batch: &[Record]) {
    let mut by_topic: BTreeMap<&str, u64> = BTreeMap::new();
    for r in batch {
        *by_topic.entry(&r.topic).or_default() += 1;
    }
    for (topic, n) in by_topic {
        metrics::counter!(EVENTS_IN, "stage" => "lake-sink", "topic" => topic.to_owned()).increment(n);
    }
}
