//! The event log: named topics split into partitions, records addressed by
//! offset, consumer groups that commit how far they have read. It is modelled
//! on Kafka so that the embedded backend here and the Kafka backend are
//! interchangeable behind [`EventLog`].
//!
//! Delivery is at-least-once: a consumer commits after its outputs are
//! durable, and a crash between the two replays records. Stages make that
//! exactly-once downstream by tagging outputs with their source position
//! (see `cartflow-stream`'s exactly-once output).

mod backend;
pub mod embedded;
mod error;
#[cfg(feature = "kafka")]
pub mod kafka;
mod kafka_options;
mod types;

use std::time::Duration;

pub use backend::LogBackend;
pub use cartflow_core::partitioner::{murmur2, partition_for_key};
pub use embedded::{EmbeddedConfig, EmbeddedLog, EmbeddedOptions, FsyncPolicy};
pub use error::{LogError, Result};
#[cfg(feature = "kafka")]
pub use kafka::KafkaLog;
pub use kafka_options::KafkaOptions;
pub use types::*;

/// A log backend: the embedded file log or Kafka.
pub trait EventLog: Send + Sync {
    /// Creates the topic when it does not exist (an existing topic keeps its
    /// partition count); 0 partitions: the log's default.
    fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()>;
    /// Every topic with its partitions' first and end offsets.
    fn topics(&self) -> Result<Vec<TopicInfo>>;
    /// One topic's partitions and offsets; `None` when it does not exist.
    fn topic(&self, name: &str) -> Result<Option<TopicInfo>>;
    /// Every consumer group with its committed offsets.
    fn groups(&self) -> Result<Vec<GroupInfo>>;
    /// Deletes a topic with its records (and, on the embedded log, the
    /// groups' committed offsets of it), like `kafka-topics --delete`.
    fn delete_topic(&self, topic: &str) -> Result<()>;
    fn producer(&self) -> Result<Box<dyn Producer>>;
    fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>>;
}

pub trait Producer: Send {
    /// Queues a record. It goes to the partition its key hashes to (Kafka's
    /// murmur2), or round robin without a key. It is durable only after `flush`.
    fn send(&mut self, record: ProducerRecord<'_>) -> Result<()>;
    /// Makes everything sent so far durable (per the backend's fsync policy)
    /// and returns the end offset of each partition this producer wrote to.
    fn flush(&mut self) -> Result<Vec<(TopicPartition, u64)>>;
}

pub trait Consumer: Send {
    /// Up to `max` records, waiting at most `timeout` for the first one.
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>>;
    /// Records the next offset to read for each partition (needs a group).
    fn commit(&mut self, offsets: &[CommittedOffset]) -> Result<()>;
    /// Like [`Consumer::commit`], but returns before the log has the offsets
    /// (Kafka's `commitAsync`): for stages whose outputs say where they resume,
    /// which lose nothing when a commit is lost, only replay a little more.
    /// Commits are sent in order. Where committing costs no round trip, it is `commit`.
    fn commit_async(&mut self, offsets: &[CommittedOffset]) -> Result<()> {
        self.commit(offsets)
    }
    /// The group's committed offsets for the assigned partitions.
    fn committed(&mut self) -> Result<Vec<CommittedOffset>>;
    /// The partitions this consumer reads now.
    fn assignment(&self) -> Vec<TopicPartition>;
    /// Moves the read position of one assigned partition.
    fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<()>;
    /// Next offset to be read from an assigned partition.
    fn position(&self, tp: &TopicPartition) -> Option<u64>;
    /// The current end offset of every assigned partition.
    fn end_offsets(&mut self) -> Result<Vec<(TopicPartition, u64)>>;
    /// The partitions the group moved to or from this consumer since the
    /// last call (Kafka's rebalances; the embedded log has one member per
    /// group, so never there). Stages recover their state for the gained ones.
    fn take_rebalance(&mut self) -> Option<Rebalance> {
        None
    }
}

/// The wall clock in milliseconds since the epoch: a record's default timestamp.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Hands each record of `[from, to)` of one partition to `each`, reading
/// outside any group: recovery scans, repairs and `tail` use it. Stops early
/// when the partition ends before `to`.
pub fn for_each_in_range(
    log: &dyn EventLog,
    tp: &TopicPartition,
    from: u64,
    to: u64,
    mut each: impl FnMut(Record),
) -> Result<()> {
    if from >= to {
        return Ok(());
    }
    let mut c = log.consumer(ConsumerConfig::assign(vec![tp.clone()]))?;
    c.seek(tp, from)?;
    let mut progressed = std::time::Instant::now();
    while let Some(at) = c.position(tp).filter(|at| *at < to) {
        let batch = c.poll(8192, Duration::from_millis(200))?;
        if batch.is_empty() {
            // A remote log can be slow to answer: stop only where the partition ends.
            let end = c.end_offsets()?.into_iter().find(|(p, _)| p == tp).map_or(0, |(_, e)| e);
            if end <= at && progressed.elapsed() > Duration::from_secs(1) {
                break;
            }
            if progressed.elapsed() > Duration::from_secs(30) {
                return Err(LogError::Backend(format!("reading {tp}: no record at offset {at} for 30 s")));
            }
            continue;
        }
        progressed = std::time::Instant::now();
        batch.into_iter().filter(|r| r.offset < to).for_each(&mut each);
    }
    Ok(())
}

/// The records of `[from, to)` of one partition.
pub fn read_range(log: &dyn EventLog, tp: &TopicPartition, from: u64, to: u64) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for_each_in_range(log, tp, from, to, |r| out.push(r))?;
    Ok(out)
}
