//! A consumer over librdkafka. Two things differ from the embedded log and
//! are handled here so that stages see the same contract:
//! - a group's partitions are handed out asynchronously, so creating a group
//!   consumer waits for its first assignment;
//! - Kafka's (eager) rebalance takes every partition away and hands some back
//!   at the committed offsets. Partitions this consumer keeps are handed back
//!   at its own positions (the rebalance callback assigns them with those
//!   offsets), so a stage notices only partitions it gained or lost, through
//!   [`Consumer::take_rebalance`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{KafkaLog, REQUEST_TIMEOUT, backend};
use crate::{
    CommittedOffset, Consumer, ConsumerConfig, EventLog as _, LogError, OffsetReset, Rebalance, Record, Result,
    Subscription, TopicPartition,
};

/// How long a new group member waits for its first assignment.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Shared with librdkafka's rebalance callback.
#[derive(Default)]
struct GroupState {
    /// Next offset to read per partition, as of the end of the last poll.
    positions: Mutex<HashMap<(String, i32), i64>>,
    /// The partitions assigned by the last rebalance; `None` between a
    /// revocation and the assignment that follows it.
    assigned: Mutex<Option<Vec<(String, i32)>>>,
    /// Bumped by every rebalance.
    generation: AtomicU64,
}

impl ClientContext for GroupState {}

impl ConsumerContext for GroupState {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let assigned = if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            let positions = self.positions.lock().expect("positions");
            let mut list = Vec::new();
            for e in tpl.elements() {
                list.push((e.topic().to_owned(), e.partition()));
            }
            for (topic, p) in &list {
                if let Some(at) = positions.get(&(topic.clone(), *p)) {
                    let _ = tpl.set_partition_offset(topic, *p, Offset::Offset(*at));
                }
            }
            if let Err(e) = consumer.assign(tpl) {
                tracing::error!("kafka: assigning partitions: {e}");
            }
            Some(list)
        } else {
            if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                tracing::warn!("kafka: rebalance error {:?}", RDKafkaErrorCode::from(err));
            }
            if let Err(e) = consumer.unassign() {
                tracing::error!("kafka: revoking partitions: {e}");
            }
            None
        };
        *self.assigned.lock().expect("assignment") = assigned;
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Where an asynchronous commit's failure surfaces. None is fatal: the
    /// stage's outputs say where it resumes, and the next commit carries on.
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result
            && !lost_to_rebalance(&e)
        {
            tracing::warn!("kafka: an offset commit failed ({e}); the next one carries on");
        }
    }
}

pub struct KafkaConsumer {
    consumer: BaseConsumer<GroupState>,
    grouped: bool,
    reset: OffsetReset,
    assignment: Vec<TopicPartition>,
    positions: HashMap<TopicPartition, u64>,
    seen_generation: u64,
    rebalance: Option<Rebalance>,
    /// Records that arrived while waiting for the first assignment.
    early: Vec<Record>,
    topic_names: HashMap<String, Arc<str>>,
}

impl KafkaConsumer {
    pub(super) fn new(log: &KafkaLog, config: ConsumerConfig) -> Result<Self> {
        let reset = match config.reset {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        };
        let mut c = log.config();
        c.set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", reset)
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", log.options.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (log.options.session_timeout_ms / 4).max(100).to_string());
        let tuning = [
            // A caught-up stage, and each range read's last fetch, waits at most this on the broker.
            // Kafka answers a fetch as soon as there is data, so a short wait costs only idle
            // requests (100/s per broker); nisshi lets it run its course, and at 100 ms records
            // waited 20-130 ms at the broker before a stage saw them (17-25 ms at 10): over Kafka +
            // Redis that alone put the feature store's freshness p99 past 200 ms.
            ("fetch.wait.max.ms", "10"),
            // librdkafka pauses a partition's fetches this long once its local
            // queue holds `queued.min.messages` (1 s by default): a stage that
            // drains the queue faster than that then sat idle, and the
            // validator ran at half speed.
            ("fetch.queue.backoff.ms", "10"),
        ];
        for (key, value) in tuning {
            // Defaults only: a user's `properties` win.
            if c.get(key).is_none() {
                c.set(key, value);
            }
        }
        match &config.group {
            Some(group) => c.set("group.id", group),
            // librdkafka assigns partitions only with a group id; this one
            // never joins (no subscription) and never commits.
            None => c.set("group.id", format!("cartflow-reader-{}", std::process::id())),
        };
        let consumer: BaseConsumer<GroupState> =
            c.create_with_context(GroupState::default()).map_err(|e| backend("creating a consumer", e))?;
        let mut me = KafkaConsumer {
            consumer,
            grouped: config.group.is_some(),
            reset: config.reset,
            assignment: Vec::new(),
            positions: HashMap::new(),
            seen_generation: 0,
            rebalance: None,
            early: Vec::new(),
            topic_names: HashMap::new(),
        };
        match (&config.group, config.subscription) {
            (Some(group), Subscription::Topics(topics)) => {
                for t in &topics {
                    log.ensure_topic(t, 0)?;
                }
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                me.consumer.subscribe(&names).map_err(|e| backend(&format!("subscribing to {names:?}"), e))?;
                me.join(group)?;
            }
            (_, Subscription::Topics(topics)) => {
                let mut partitions = Vec::new();
                for t in &topics {
                    log.ensure_topic(t, 0)?;
                    let ids =
                        log.partition_ids(t)?.ok_or_else(|| LogError::Backend(format!("kafka: topic {t} vanished")))?;
                    partitions.extend(ids.into_iter().map(|p| TopicPartition::new(t, p as u32)));
                }
                me.assign(partitions)?;
            }
            (_, Subscription::Partitions(partitions)) => me.assign(partitions)?,
        }
        Ok(me)
    }

    /// Polls until the group's first assignment arrives.
    fn join(&mut self, group: &str) -> Result<()> {
        let deadline = Instant::now() + JOIN_TIMEOUT;
        while self.seen_generation == 0 {
            if Instant::now() >= deadline {
                return Err(LogError::Backend(format!(
                    "kafka: group {group} assigned no partitions within {JOIN_TIMEOUT:?}: is the broker reachable?"
                )));
            }
            if let Some(m) = self.consumer.poll(Duration::from_millis(100)) {
                let m = m.map_err(|e| backend("polling", e))?;
                self.early.push(to_record(&mut self.topic_names, &m));
            }
            self.sync_assignment()?;
        }
        self.rebalance = None;
        // Records fetched before the positions were known: keep those at or after them.
        let positions = &self.positions;
        self.early.retain(|r| positions.get(&r.topic_partition()).is_some_and(|p| r.offset >= *p));
        for r in &self.early {
            self.positions.insert(r.topic_partition(), r.offset + 1);
        }
        Ok(())
    }

    /// Manual assignment from the start or the end of each partition.
    fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        for tp in &partitions {
            let at = self.reset_position(tp)?;
            self.positions.insert(tp.clone(), at);
        }
        self.assignment = partitions;
        self.apply_assignment()
    }

    fn apply_assignment(&self) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for tp in &self.assignment {
            let at = self.positions.get(tp).copied().unwrap_or(0);
            tpl.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(at as i64))
                .map_err(|e| backend("assigning", e))?;
        }
        self.consumer.assign(&tpl).map_err(|e| backend("assigning partitions", e))
    }

    /// Where a partition without a committed offset starts (`auto.offset.reset`).
    fn reset_position(&self, tp: &TopicPartition) -> Result<u64> {
        let (low, high) = self.watermarks(tp)?;
        Ok(if self.reset == OffsetReset::Earliest { low } else { high })
    }

    fn watermarks(&self, tp: &TopicPartition) -> Result<(u64, u64)> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(&tp.topic, tp.partition as i32, REQUEST_TIMEOUT)
            .map_err(|e| backend(&format!("reading {tp}'s offsets"), e))?;
        Ok((low.max(0) as u64, high.max(0) as u64))
    }

    /// After a rebalance: partitions gained start at the group's committed
    /// offset (or the reset policy's end); partitions kept keep their position.
    fn sync_assignment(&mut self) -> Result<()> {
        let generation = self.consumer.context().generation.load(Ordering::SeqCst);
        if generation == self.seen_generation {
            return Ok(());
        }
        // Eager rebalances revoke everything, then assign: wait for the
        // assignment, keeping the positions the callback hands back.
        let Some(now) = self.consumer.context().assigned.lock().expect("assignment").clone() else {
            return Ok(());
        };
        self.seen_generation = generation;
        let now: Vec<TopicPartition> = now.iter().map(|(t, p)| TopicPartition::new(t, *p as u32)).collect();
        let before: HashSet<&TopicPartition> = self.assignment.iter().collect();
        let after: HashSet<&TopicPartition> = now.iter().collect();
        let gained: Vec<TopicPartition> = now.iter().filter(|tp| !before.contains(tp)).cloned().collect();
        let lost: Vec<TopicPartition> = self.assignment.iter().filter(|tp| !after.contains(tp)).cloned().collect();
        for tp in &lost {
            self.positions.remove(tp);
        }
        if !gained.is_empty() {
            let committed = self.committed_for(&gained)?;
            for tp in &gained {
                let at = match committed.get(tp) {
                    Some(o) => *o,
                    None => self.reset_position(tp)?,
                };
                self.positions.insert(tp.clone(), at);
            }
        }
        tracing::info!(gained = gained.len(), lost = lost.len(), assigned = now.len(), "kafka: partitions rebalanced");
        let change = self.rebalance.get_or_insert_with(Rebalance::default);
        change.gained.extend(gained);
        change.lost.extend(lost);
        self.assignment = now;
        self.share_positions();
        Ok(())
    }

    fn committed_for(&self, partitions: &[TopicPartition]) -> Result<HashMap<TopicPartition, u64>> {
        Ok(self
            .committed_list(partitions)?
            .into_iter()
            .map(|c| (TopicPartition::new(&c.topic, c.partition), c.offset))
            .collect())
    }

    fn committed_list(&self, partitions: &[TopicPartition]) -> Result<Vec<CommittedOffset>> {
        let mut tpl = TopicPartitionList::new();
        for tp in partitions {
            tpl.add_partition(&tp.topic, tp.partition as i32);
        }
        let got = self
            .consumer
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|e| backend("reading committed offsets", e))?;
        Ok(super::committed_entries(&got))
    }

    /// Lets the next rebalance hand kept partitions back at these positions.
    fn share_positions(&self) {
        if !self.grouped {
            return;
        }
        let mut shared = self.consumer.context().positions.lock().expect("positions");
        shared.clear();
        shared.extend(self.positions.iter().map(|(tp, o)| ((tp.topic.to_string(), tp.partition as i32), *o as i64)));
    }

    fn commit_in(&mut self, offsets: &[CommittedOffset], mode: CommitMode) -> Result<()> {
        if !self.grouped {
            return Err(LogError::NoGroup);
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for c in offsets {
            let mut e = tpl.add_partition(&c.topic, c.partition as i32);
            e.set_offset(Offset::Offset(c.offset as i64)).map_err(|e| backend("committing", e))?;
            e.set_metadata(c.metadata.as_str());
        }
        match self.consumer.commit(&tpl, mode) {
            Ok(()) => Ok(()),
            Err(e) if lost_to_rebalance(&e) => {
                tracing::warn!(
                    "kafka: commit refused during a rebalance ({e}); the next owner recovers from the outputs"
                );
                Ok(())
            }
            Err(e) => Err(backend("committing offsets", e)),
        }
    }
}

/// A record in the log's own type; `names` holds one shared name per topic,
/// so records do not each allocate it.
fn to_record(names: &mut HashMap<String, Arc<str>>, m: &BorrowedMessage<'_>) -> Record {
    let topic = match names.get(m.topic()) {
        Some(t) => t.clone(),
        None => {
            let t: Arc<str> = m.topic().into();
            names.insert(m.topic().to_owned(), t.clone());
            t
        }
    };
    let headers = m
        .headers()
        .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
        .unwrap_or_default();
    Record {
        topic,
        partition: m.partition() as u32,
        offset: m.offset() as u64,
        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

/// Commit failures that a rebalance causes: the new owner recovers from the
/// outputs, so they are not fatal.
fn lost_to_rebalance(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::ConsumerCommit(
            RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::State
        )
    )
}

impl Consumer for KafkaConsumer {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>> {
        let mut out = std::mem::take(&mut self.early);
        let deadline = Instant::now() + timeout;
        while out.len() < max {
            let wait = if out.is_empty() { deadline.saturating_duration_since(Instant::now()) } else { Duration::ZERO };
            // Owned before the rebalance bookkeeping, which needs `self`.
            let polled = self.consumer.poll(wait).map(|m| m.map(|m| to_record(&mut self.topic_names, &m)));
            self.sync_assignment()?;
            match polled {
                None if out.is_empty() && Instant::now() < deadline => continue,
                None => break,
                Some(Err(e)) => {
                    // Transport errors are retried by librdkafka; say so and go on.
                    tracing::warn!("kafka: {e}");
                    if out.is_empty() && Instant::now() >= deadline {
                        break;
                    }
                }
                Some(Ok(r)) => {
                    let Some(pos) = self.positions.get_mut(&r.topic_partition()) else { continue };
                    // A rebalance or a seek can bring back records already handed out.
                    if r.offset < *pos {
                        continue;
                    }
                    *pos = r.offset + 1;
                    out.push(r);
                }
            }
        }
        self.share_positions();
        Ok(out)
    }

    fn commit(&mut self, offsets: &[CommittedOffset]) -> Result<()> {
        self.commit_in(offsets, CommitMode::Sync)
    }

    /// Failures arrive later, in [`GroupState::commit_callback`].
    fn commit_async(&mut self, offsets: &[CommittedOffset]) -> Result<()> {
        self.commit_in(offsets, CommitMode::Async)
    }

    fn committed(&mut self) -> Result<Vec<CommittedOffset>> {
        if !self.grouped {
            return Ok(Vec::new());
        }
        self.committed_list(&self.assignment)
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.clone()
    }

    fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<()> {
        let Some(pos) = self.positions.get_mut(tp) else {
            return Err(LogError::Backend(format!("kafka: {tp} is not assigned to this consumer")));
        };
        if *pos == offset && self.early.iter().all(|r| r.topic_partition() != *tp || r.offset >= offset) {
            return Ok(());
        }
        *pos = offset;
        self.early.retain(|r| r.topic_partition() != *tp || r.offset >= offset);
        self.share_positions();
        if self.grouped
            && self
                .consumer
                .seek(&tp.topic, tp.partition as i32, Offset::Offset(offset as i64), REQUEST_TIMEOUT)
                .is_ok()
        {
            return Ok(());
        }
        // Not fetching yet (just assigned), or a manual assignment: assign
        // again with every partition at its position, as a rebalance would.
        self.apply_assignment()
    }

    fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.positions.get(tp).copied()
    }

    fn end_offsets(&mut self) -> Result<Vec<(TopicPartition, u64)>> {
        if self.assignment.is_empty() {
            return Ok(Vec::new());
        }
        // One ListOffsets request for every partition (`End` is timestamp
        // -1, which asks for the end), not a watermark query each: stages
        // measure their lag every second, and sixteen sequential queries
        // took 0.6 s of each second.
        let mut latest = TopicPartitionList::new();
        for tp in &self.assignment {
            latest
                .add_partition_offset(&tp.topic, tp.partition as i32, Offset::End)
                .map_err(|e| backend("reading end offsets", e))?;
        }
        let ends =
            self.consumer.offsets_for_times(latest, REQUEST_TIMEOUT).map_err(|e| backend("reading end offsets", e))?;
        self.assignment
            .iter()
            .map(|tp| {
                let end = match ends.find_partition(&tp.topic, tp.partition as i32).map(|e| (e.error(), e.offset())) {
                    Some((Ok(()), Offset::Offset(end))) => end.max(0) as u64,
                    Some((Err(e), _)) => return Err(backend(&format!("reading {tp}'s end offset"), e)),
                    _ => self.watermarks(tp)?.1,
                };
                // tansu under-reports the end by up to one batch (see
                // `KafkaLog::true_end`); never report less than what this
                // consumer has read.
                Ok((tp.clone(), end.max(self.positions.get(tp).copied().unwrap_or(0))))
            })
            .collect()
    }

    fn take_rebalance(&mut self) -> Option<Rebalance> {
        self.rebalance.take()
    }
}
